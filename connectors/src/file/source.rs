//! The file source task: a blocking reader thread feeding the rule through a bounded channel.

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::config::FileSourceConfig;
use super::reader;
use crate::{ConnectorError, Source, SourceEvent, SourceOutput};

/// Chunks read ahead of the rule. With the rule's own bounded queues this caps what a file
/// source holds in memory, however large the file.
const READ_AHEAD: usize = 4;

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

/// Reads the input once on a blocking thread; returns the rows sent.
async fn read_once(config: FileSourceConfig, out: &SourceOutput) -> Result<u64, ConnectorError> {
    let (tx, mut rx) = mpsc::channel::<SourceEvent>(READ_AHEAD);
    // Rules whose rows one worker reads have the reader thread decode (`predecode`), in
    // parallel with that worker. Spreading the decoding over more threads was measured: on
    // two cores it was slower than this one extra thread.
    let decode = out.clone();
    let reader = tokio::task::spawn_blocking(move || {
        // A failed send means this task is gone (the rule stopped): the reader stops too.
        reader::read_input(&config, &mut |chunk| {
            tx.blocking_send(decode.predecode(chunk)).is_ok()
        })
    });
    let mut sent = Ok(());
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = out.send(chunk).await {
            sent = Err(e);
            break;
        }
    }
    // Unblocks a reader still waiting to send, so it ends before we wait for it.
    drop(rx);
    let read = reader.await.map_err(|e| ConnectorError::Io {
        connector: "file",
        reason: format!("the reader thread failed: {e}"),
    })?;
    sent?;
    Ok(read?.unwrap_or_default())
}
