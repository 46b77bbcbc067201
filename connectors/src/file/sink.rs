//! The `file` sink: writes results to files, eKuiper's way (`lines`, `json` or `csv` files,
//! rolled by time and message count, optionally compressed).
//!
//! - A message is what other sinks send: the emission's rows as one JSON array, or one row
//!   with `sendSingle` (a `dataTemplate`'s output as it is). A `lines` file holds one message a
//!   line, a `json` file one array of messages, a `csv` file one line a row under an optional
//!   header (the `fields` order, else the first row's field names sorted, as eKuiper).
//! - `path` may be a template over the row (the emission's first row without `sendSingle`);
//!   each rendered path is a file of its own.
//! - A file rolls after `rollingCount` messages, or once it has been open `rollingInterval`
//!   (checked every `checkInterval`). The next message opens a new file, named with its
//!   creation time per `rollingNamePattern`; without one the same name is truncated, as in
//!   eKuiper.
//! - Files are written on a thread of the sink's own, so slow disks never block the async
//!   runtime; each emission waits for its write (back-pressure). Rule stop closes every
//!   file: footer, last compressed frame, flush and sync.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::FileType;
use super::sink_config::{FileSinkConfig, NamePattern};
use super::writer::OutFile;
use crate::codec::encode;
use crate::codec::sink_format::{Encoding, SinkFormat};
use crate::{ConnectorError, Sink};

/// Most files one sink keeps open (templated paths); opening one more rolls the oldest.
pub const MAX_OPEN_FILES: usize = 256;

/// One message for one file.
#[derive(Debug)]
struct Message {
    /// The rendered `path`.
    path: String,
    bytes: Vec<u8>,
    /// The CSV header line, for a file this message opens.
    header: Option<Arc<[u8]>>,
}

type Reply = oneshot::Sender<Result<(), String>>;

enum Command {
    Write(Vec<Message>, Reply),
    Close(Reply),
}

/// Writes results to files.
#[derive(Debug)]
pub struct FileSink {
    config: Arc<FileSinkConfig>,
    /// The writer thread's queue; one command is in flight at a time.
    tx: Option<SyncSender<Command>>,
}

impl FileSink {
    /// A sink with `config`; files are opened when the first message arrives.
    pub fn new(config: FileSinkConfig) -> Self {
        FileSink {
            config: Arc::new(config),
            tx: None,
        }
    }

    async fn send(&mut self, messages: Vec<Message>) -> Result<(), ConnectorError> {
        if messages.is_empty() {
            return Ok(());
        }
        self.connect().await?;
        let (reply, done) = oneshot::channel();
        let tx = self.tx.as_ref().expect("connected above");
        // Never blocks: the previous command was answered, so the one slot is free.
        tx.send(Command::Write(messages, reply))
            .map_err(|_| io_error("the writer thread stopped".into()))?;
        done.await
            .map_err(|_| io_error("the writer thread stopped".into()))?
            .map_err(io_error)
    }

    /// The rows of `batch` as objects, when the path or the CSV layout needs them.
    fn rows(&self, batch: &RecordBatch) -> Vec<Map<String, Value>> {
        let c = &self.config;
        if c.path.is_template() || c.file_type == FileType::Csv {
            // CSV keeps every column, null ones as empty cells.
            encode::batch_to_rows(batch, c.send_nil || c.file_type == FileType::Csv)
        } else {
            Vec::new()
        }
    }

    /// A `lines` file's messages in a byte `format` (delimited, binary, urlencoded). A
    /// templated path is rendered per row, so each row's message goes to its own file.
    fn formatted(
        &self,
        format: &SinkFormat,
        batch: &RecordBatch,
    ) -> Result<Vec<Message>, ConnectorError> {
        let c = &self.config;
        // Delimited messages end their lines; the file ends each message's line itself.
        let ends_lines = matches!(format.encoding, Encoding::Delimited { .. });
        let pieces: Vec<(String, Vec<u8>)> = if c.path.is_template() {
            let rows = self.rows(batch);
            let mut out = Vec::new();
            for (i, row) in rows.iter().enumerate() {
                let path = self.path_for(Some(row)).map_err(io_error)?;
                for bytes in format.messages(&batch.slice(i, 1), true, c.send_nil, true)? {
                    out.push((path.clone(), bytes));
                }
            }
            out
        } else {
            let path = self.path_for(None).map_err(io_error)?;
            format
                .messages(batch, c.send_single, c.send_nil, c.omit_if_empty)?
                .into_iter()
                .map(|bytes| (path.clone(), bytes))
                .collect()
        };
        Ok(pieces
            .into_iter()
            .map(|(path, mut bytes)| {
                if ends_lines && bytes.last() == Some(&b'\n') {
                    bytes.pop();
                }
                Message {
                    path,
                    bytes,
                    header: None,
                }
            })
            .collect())
    }

    fn path_for(&self, row: Option<&Map<String, Value>>) -> Result<String, String> {
        let row = row.map_or(Value::Null, |r| Value::Object(r.clone()));
        self.config.path.render(&row)
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn connect(&mut self) -> Result<(), ConnectorError> {
        if self.tx.is_some() {
            return Ok(());
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let config = self.config.clone();
        std::thread::Builder::new()
            .name("quiver-file-sink".into())
            .spawn(move || run(&config, rx))
            .map_err(|e| io_error(format!("starting the writer thread: {e}")))?;
        self.tx = Some(tx);
        Ok(())
    }

    async fn collect_list(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        let c = self.config.clone();
        let n = batch.num_rows();
        if n == 0
            && (c.omit_if_empty
                || c.send_single
                || c.file_type == FileType::Csv
                || c.path.is_template())
        {
            return Ok(());
        }
        if let Some(format) = &c.line_format {
            let messages = self.formatted(format, batch)?;
            return self.send(messages).await;
        }
        let rows = self.rows(batch);
        let csv = (c.file_type == FileType::Csv).then(|| Csv::new(&c, rows.first()));
        let header = csv.as_ref().and_then(|t| t.header.clone());
        let mut messages = Vec::new();
        if c.send_single {
            let json = match &csv {
                Some(_) => Vec::new(),
                None => encode::batch_to_json_objects(batch, c.send_nil),
            };
            for i in 0..n {
                let bytes = match &csv {
                    Some(t) => t.line(&rows[i]),
                    None => json[i].clone(),
                };
                messages.push(Message {
                    path: self.path_for(rows.get(i)).map_err(io_error)?,
                    bytes,
                    header: header.clone(),
                });
            }
        } else {
            let bytes = match &csv {
                Some(t) => t.lines(&rows),
                None => encode::batch_to_json_array(batch, c.send_nil),
            };
            messages.push(Message {
                path: self.path_for(rows.first()).map_err(io_error)?,
                bytes,
                header,
            });
        }
        self.send(messages).await
    }

    fn accepts_payloads(&self) -> bool {
        true
    }

    async fn collect_payloads(&mut self, payloads: &[Vec<u8>]) -> Result<(), ConnectorError> {
        if self.config.path.is_template() {
            return Err(io_error(
                "a templated path needs the rows the payload was made from".into(),
            ));
        }
        let path = self.path_for(None).map_err(io_error)?;
        let messages = payloads
            .iter()
            .map(|p| Message {
                path: path.clone(),
                bytes: p.clone(),
                header: None,
            })
            .collect();
        self.send(messages).await
    }

    async fn collect_rendered(
        &mut self,
        batch: &RecordBatch,
        payloads: &[Vec<u8>],
    ) -> Result<(), ConnectorError> {
        if !self.config.path.is_template() {
            return self.collect_payloads(payloads).await;
        }
        let rows = self.rows(batch);
        let per_row = self.config.send_single && payloads.len() == rows.len();
        let messages = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Ok(Message {
                    path: self.path_for(rows.get(if per_row { i } else { 0 }))?,
                    bytes: p.clone(),
                    header: None,
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(io_error)?;
        self.send(messages).await
    }

    async fn close(&mut self) -> Result<(), ConnectorError> {
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        let (reply, done) = oneshot::channel();
        if tx.send(Command::Close(reply)).is_err() {
            return Err(io_error("the writer thread stopped".into()));
        }
        done.await
            .map_err(|_| io_error("the writer thread stopped".into()))?
            .map_err(io_error)
    }
}

/// The CSV layout of one emission: its columns and header.
struct Csv {
    columns: Vec<String>,
    delimiter: String,
    header: Option<Arc<[u8]>>,
}

impl Csv {
    fn new(c: &FileSinkConfig, first: Option<&Map<String, Value>>) -> Csv {
        let columns: Vec<String> = match (&c.fields, first) {
            (Some(fields), _) => fields.clone(),
            // serde_json maps iterate in key order: eKuiper sorts the header too.
            (None, Some(row)) => row.keys().cloned().collect(),
            (None, None) => Vec::new(),
        };
        let header = c.has_header.then(|| {
            let cells: Vec<String> = columns
                .iter()
                .map(|name| quote(name, &c.delimiter))
                .collect();
            Arc::from(cells.join(&c.delimiter).into_bytes())
        });
        Csv {
            columns,
            delimiter: c.delimiter.clone(),
            header,
        }
    }

    fn line(&self, row: &Map<String, Value>) -> Vec<u8> {
        let cells: Vec<String> = self
            .columns
            .iter()
            .map(|name| match row.get(name) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => quote(s, &self.delimiter),
                Some(other) => quote(&other.to_string(), &self.delimiter),
            })
            .collect();
        cells.join(&self.delimiter).into_bytes()
    }

    fn lines(&self, rows: &[Map<String, Value>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                out.push(b'\n');
            }
            out.extend_from_slice(&self.line(row));
        }
        out
    }
}

/// A CSV cell, quoted (RFC 4180) when it holds the delimiter, a quote or a line break.
fn quote(cell: &str, delimiter: &str) -> String {
    if cell.contains(delimiter) || cell.contains(['"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_string()
    }
}

/// The writer thread: owns every open file, answers commands, rolls files by age.
fn run(config: &FileSinkConfig, rx: Receiver<Command>) {
    let mut files = Files {
        config,
        open: HashMap::new(),
        last_stamp: 0,
    };
    let mut last_check = Instant::now();
    loop {
        let command = match config.rolling_interval {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(_) => {
                let wait = config.check_interval.saturating_sub(last_check.elapsed());
                rx.recv_timeout(wait.max(Duration::from_millis(1)))
            }
        };
        match command {
            Ok(Command::Write(messages, reply)) => {
                let _ = reply.send(files.write(messages));
            }
            Ok(Command::Close(reply)) => {
                let _ = reply.send(files.close_all());
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // The sink was dropped without close: still finish the files.
                if let Err(e) = files.close_all() {
                    tracing::warn!("file sink: {e}");
                }
                return;
            }
        }
        if let Some(interval) = config.rolling_interval
            && last_check.elapsed() >= config.check_interval
        {
            last_check = Instant::now();
            if let Err(e) = files.roll_older_than(interval) {
                tracing::warn!("file sink: {e}");
            }
        }
    }
}

/// The open files, by rendered path.
struct Files<'a> {
    config: &'a FileSinkConfig,
    open: HashMap<String, OutFile>,
    /// The last creation time put in a name: names stay unique within a millisecond.
    last_stamp: i64,
}

impl Files<'_> {
    fn write(&mut self, messages: Vec<Message>) -> Result<(), String> {
        let mut first_error: Option<String> = None;
        let mut touched: Vec<String> = Vec::new();
        for m in messages {
            if !self.open.contains_key(&m.path) {
                match self.open_file(&m.path, m.header.as_deref()) {
                    Ok(f) => {
                        self.open.insert(m.path.clone(), f);
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                        continue;
                    }
                }
            }
            let file = self.open.get_mut(&m.path).expect("opened above");
            if let Err(e) = file.push(&m.bytes) {
                first_error.get_or_insert(format!("writing {}: {e}", file.path().display()));
                self.open.remove(&m.path);
                continue;
            }
            let full = self
                .config
                .rolling_count
                .is_some_and(|n| file.messages >= n);
            if full {
                let file = self.open.remove(&m.path).expect("open");
                if let Err(e) = close(file) {
                    first_error.get_or_insert(e);
                }
            } else if !touched.contains(&m.path) {
                touched.push(m.path);
            }
        }
        for path in touched {
            if let Some(file) = self.open.get_mut(&path)
                && let Err(e) = file.end_emission()
            {
                first_error.get_or_insert(format!("writing {}: {e}", file.path().display()));
                self.open.remove(&path);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn open_file(&mut self, path: &str, header: Option<&[u8]>) -> Result<OutFile, String> {
        if self.open.len() >= MAX_OPEN_FILES {
            let oldest = self
                .open
                .iter()
                .min_by_key(|(_, f)| f.opened)
                .map(|(k, _)| k.clone())
                .expect("files are open");
            close(self.open.remove(&oldest).expect("open"))?;
        }
        let real = self.named(path);
        OutFile::create(
            &real,
            self.config.file_type,
            self.config.compression,
            header,
        )
        .map_err(|e| format!("creating {}: {e}", real.display()))
    }

    /// The file name for `path`, with its creation time per `rollingNamePattern`.
    fn named(&mut self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if self.config.name_pattern == NamePattern::None {
            return path.to_path_buf();
        }
        let stamp = chrono::Utc::now()
            .timestamp_millis()
            .max(self.last_stamp + 1);
        self.last_stamp = stamp;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let named = match self.config.name_pattern {
            NamePattern::Prefix => format!("{stamp}-{name}"),
            _ => match name.rsplit_once('.') {
                Some((stem, ext)) if !stem.is_empty() => format!("{stem}-{stamp}.{ext}"),
                _ => format!("{name}-{stamp}"),
            },
        };
        path.with_file_name(named)
    }

    fn roll_older_than(&mut self, age: Duration) -> Result<(), String> {
        let old: Vec<String> = self
            .open
            .iter()
            .filter(|(_, f)| f.opened.elapsed() >= age)
            .map(|(k, _)| k.clone())
            .collect();
        let mut first_error = None;
        for key in old {
            if let Err(e) = close(self.open.remove(&key).expect("open")) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn close_all(&mut self) -> Result<(), String> {
        let mut first_error = None;
        for (_, file) in self.open.drain() {
            if let Err(e) = close(file) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn close(file: OutFile) -> Result<(), String> {
    let path = file.path().display().to_string();
    file.close()
        .map(|_| ())
        .map_err(|e| format!("closing {path}: {e}"))
}

fn io_error(reason: String) -> ConnectorError {
    ConnectorError::Io {
        connector: "file",
        reason,
    }
}
