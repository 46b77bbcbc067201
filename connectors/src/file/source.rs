//! The file source task: a blocking reader thread feeding the rule's bounded worker queues.

use async_trait::async_trait;

use super::config::FileSourceConfig;
use super::{input, reader};
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
            reader::read_file(&config, &file, &mut |chunk| {
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
        reader::read_input(&config, &mut |chunk| {
            out.blocking_send(out.predecode(chunk)).is_ok()
        })
    });
    finished(reader.await)
}
