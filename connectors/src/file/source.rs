//! The file source task: a blocking reader thread feeding the rule's bounded worker queues.

use async_trait::async_trait;

use super::config::FileSourceConfig;
use super::reader;
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

/// Reads the input once on a blocking thread, which sends straight to the workers' queues
/// (their bounds hold it back); returns the rows sent.
async fn read_once(config: FileSourceConfig, out: &SourceOutput) -> Result<u64, ConnectorError> {
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
    let read = reader.await.map_err(|e| ConnectorError::Io {
        connector: "file",
        reason: format!("the reader thread failed: {e}"),
    })?;
    // `None`: the rule stopped before the end of the input.
    read?.ok_or(ConnectorError::Closed)
}
