//! The file source task: a blocking reader thread feeding the rule's bounded worker queues.
//!
//! For a rule with qos 1 or 2 the rule's input log records where each event lies in its file
//! (a cursor, see [`super::cursor`]) rather than the event: a restart reads the events after
//! the last checkpoint again from the file ([`super::reread`]) and goes on after the last
//! cursor the log holds.

use async_trait::async_trait;

use super::config::{AfterRead, FileSourceConfig};
use super::cursor::{Cursor, FileId, Progress, event_crc};
use super::{input, listing, reader};
use crate::{ConnectorError, Source, SourceOutput};

/// Reads a file (or a directory of files) once, or again every `interval`.
#[derive(Debug)]
pub struct FileSource {
    config: FileSourceConfig,
}

impl FileSource {
    /// A source reading what `config` names. Nothing is opened until it runs.
    pub fn new(config: FileSourceConfig) -> Self {
        FileSource { config }
    }
}

#[async_trait]
impl Source for FileSource {
    async fn run(&mut self, out: SourceOutput) -> Result<(), ConnectorError> {
        if self.config.agree.is_some() {
            // A cluster's split input: the leader's files and lengths, once.
            let (config, closed) = (self.config.clone(), out.clone());
            self.config = blocking(move || listing::agree(config, &|| closed.is_closed())).await?;
        }
        if out.is_logged() {
            return run_logged(self.config.clone(), out).await;
        }
        loop {
            let rows = read_once(self.config.clone(), &out).await?;
            tracing::info!(
                path = %self.config.path.display(),
                rows,
                "file source reached the end of its input"
            );
            match self.config.interval {
                None => return Ok(()),
                Some(pause) => tokio::time::sleep(pause).await,
            }
        }
    }
}

/// Files a `parallel` source reads at the same time: enough to overlap one file's I/O and
/// decompression with another's on the small machines Quiver runs on, without a thread per
/// file of a large directory.
pub const PARALLEL_READERS: usize = 4;

/// Reads the input once: file by file on one blocking thread, or with `parallel` up to
/// [`PARALLEL_READERS`] files at a time, each on its own. Returns the rows sent.
async fn read_once(config: FileSourceConfig, out: &SourceOutput) -> Result<u64, ConnectorError> {
    if !config.parallel {
        return read_sequentially(config, out).await;
    }
    let files = input::input_files(&config)?;
    let mut total = 0;
    let mut running = tokio::task::JoinSet::new();
    for file in files {
        if running.len() >= PARALLEL_READERS
            && let Some(done) = running.join_next().await
        {
            total += finished(done)?;
        }
        let (config, out) = (config.clone(), out.clone());
        running.spawn_blocking(move || {
            reader::read_file(&config, &file, Progress::default(), &mut |chunk, _| {
                out.blocking_send(out.predecode(chunk)).is_ok()
            })
        });
    }
    while let Some(done) = running.join_next().await {
        total += finished(done)?;
    }
    Ok(total)
}

/// The rows a reader thread sent, or why it stopped.
fn finished(
    done: Result<Result<Option<u64>, ConnectorError>, tokio::task::JoinError>,
) -> Result<u64, ConnectorError> {
    let read = done.map_err(|e| ConnectorError::Io {
        connector: "file",
        reason: format!("the reader thread failed: {e}"),
    })?;
    // `None`: the rule stopped before the end of the input.
    read?.ok_or(ConnectorError::Closed)
}

/// Reads the input once on a blocking thread, which sends straight to the workers' queues
/// (their bounds hold it back); returns the rows sent.
async fn read_sequentially(
    config: FileSourceConfig,
    out: &SourceOutput,
) -> Result<u64, ConnectorError> {
    // Rules whose rows one worker reads share their decoding between this thread and that
    // worker (`predecode`: whichever has room). Spreading the decoding over more threads
    // was measured: on two cores it was slower than this one extra thread.
    let out = out.clone();
    let reader = tokio::task::spawn_blocking(move || {
        // A failed send means the rule stopped: the reader stops too.
        reader::read_input(&config, &mut |chunk, _| {
            out.blocking_send(out.predecode(chunk)).is_ok()
        })
    });
    finished(reader.await)
}

/// The source of a rule with qos 1 or 2: each event's place is logged (its cursor), and a
/// restart goes on after the last cursor in the log. Files are read one after another (the
/// engine refuses `parallel` for such rules), so one cursor says where the whole input is.
async fn run_logged(config: FileSourceConfig, out: SourceOutput) -> Result<(), ConnectorError> {
    let marks = out.clone();
    let mut resume = blocking(move || Ok(Cursor::latest(&marks.logged_marks()))).await?;
    let mut round = resume.as_ref().map_or(0, |c| c.round);
    let mut handed = resume.as_ref().map_or(0, |c| c.n);
    if let Some(c) = &resume {
        tracing::info!(
            file = %c.file.display(),
            offset = c.progress.offset,
            rows = c.progress.rows,
            "file source resumes where its input log ends"
        );
    }
    loop {
        let (config_, out_, from) = (config.clone(), out.clone(), resume.take());
        let (rows, h) = blocking(move || {
            let rows = read_round(&config_, &out_, round, from, &mut handed)?;
            Ok((rows, handed))
        })
        .await?;
        handed = h;
        let rows = rows.ok_or(ConnectorError::Closed)?;
        tracing::info!(
            path = %config.path.display(),
            rows,
            "file source reached the end of its input"
        );
        match config.interval {
            None => return Ok(()),
            // On the runtime, so stopping the rule ends the pause.
            Some(pause) => tokio::time::sleep(pause).await,
        }
        round += 1;
    }
}

/// True when the last event handed over from `c`'s file reads again with the checksum `c`
/// logged (a cursor from before checksums, or without its start, is taken as it is).
fn last_event_reads_the_same(config: &FileSourceConfig, c: &Cursor) -> bool {
    if c.crc.is_none() || c.from.is_none() {
        return true;
    }
    let Ok(mark) = serde_json::to_vec(c) else {
        return true;
    };
    super::reread::reread(config, &[&mark], &mut |_, _| false).is_ok()
}

/// Runs `f` on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ConnectorError> + Send + 'static,
) -> Result<T, ConnectorError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ConnectorError::Io {
            connector: "file",
            reason: format!("the reader thread failed: {e}"),
        })?
}

/// Reads the input once (round `round`), after `resume` when it is in this round; every event
/// is logged with its cursor, `handed` counting them, and the event itself too when the file
/// is deleted or moved once read. Returns the rows sent, or `None` when
/// the rule stopped first.
fn read_round(
    config: &FileSourceConfig,
    out: &SourceOutput,
    round: u64,
    resume: Option<Cursor>,
    handed: &mut u64,
) -> Result<Option<u64>, ConnectorError> {
    let mut files = input::input_files(config)?;
    let mut from = None;
    // A cursor in a file this stream no longer reads (its path changed) says nothing here.
    let ours = |c: &Cursor| c.file == config.path || c.file.parent() == Some(&*config.path);
    if let Some(c) = resume.as_ref().filter(|c| !ours(c)) {
        tracing::warn!(
            file = %c.file.display(),
            path = %config.path.display(),
            "the input log's position is in a file this stream does not read: it is read from its start"
        );
    }
    if let Some(c) = resume.filter(|c| c.round == round && ours(c)) {
        // Files before the cursor's (in name order) were read whole in this round.
        files.retain(|f| *f >= c.file);
        if files.first() == Some(&c.file) {
            // Rows appended since do not move the rows read; a file rewritten in place (same
            // inode, no shorter) would, and its last event no longer reads the same.
            if FileId::of(&c.file).is_some_and(|now| c.id.still_holds(&now))
                && last_event_reads_the_same(config, &c)
            {
                from = Some(c.progress);
            } else {
                tracing::warn!(
                    file = %c.file.display(),
                    "the file changed or was replaced since it was read up to byte {} (row {}): it is read afresh from its start",
                    c.progress.offset,
                    c.progress.rows
                );
            }
        }
    }
    // A file that `actionAfterRead` deletes or moves will not be there to read again: its
    // events are kept in the log, which is synced before the file goes.
    let keep = config.after_read != AfterRead::Keep;
    let mut total = 0;
    for (i, file) in files.into_iter().enumerate() {
        let Some(id) = FileId::of(&file) else {
            // Gone since it was listed (another reader moved it): nothing to read.
            continue;
        };
        let mut before = if i == 0 { from.take() } else { None }.unwrap_or_default();
        let start = before;
        let mut emit = |chunk: crate::SourceEvent, progress: Progress| {
            *handed += 1;
            let mark = Cursor {
                n: *handed,
                round,
                file: file.clone(),
                id,
                progress,
                from: Some(std::mem::replace(&mut before, progress)),
                // Kept events are not read again.
                crc: (!keep).then(|| event_crc(&chunk)),
            }
            .encode();
            out.blocking_send_place(chunk, &mark, keep).is_ok()
        };
        match reader::read_rows(config, &file, start, &mut emit)? {
            Some(rows) => total += rows,
            None => return Ok(None),
        }
        if keep {
            out.sync_log()?;
        }
        input::after_read(&config.after_read, &file)?;
    }
    Ok(Some(total))
}
