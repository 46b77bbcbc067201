//! A cluster's file input as the leader listed it: the files and their lengths, which every
//! process reads its part of, instead of each listing and measuring for itself.
//!
//! Each process would otherwise take a file's length when it reaches the file: a file appended
//! to in between gives the processes ranges of different lengths, so the lines between the two
//! ranges' cuts are lost or read twice; a file one process lists and another does not is read
//! in part. The engine hands the source an [`AgreeListing`]: on the leader it passes the
//! leader's own listing to every other process (through the cluster's command sequence) and
//! returns it; on a follower it waits for the leader's and returns that. Every process then
//! reads the same files, each up to the leader's length, whatever was appended since.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::config::FileSourceConfig;
use super::input;
use crate::ConnectorError;

/// The input's files in name order, with their lengths in bytes.
pub type Listing = Vec<(PathBuf, u64)>;

/// Agrees this process's listing (or why it could not list) with the cluster's (see the
/// module's doc). The second argument says when to give up waiting: the rule stopped.
pub type AgreeFn =
    dyn Fn(Result<Listing, String>, &dyn Fn() -> bool) -> Result<Listing, String> + Send + Sync;

/// Set by the engine on a cluster's split file input, never by a property.
#[derive(Clone)]
pub struct AgreeListing(pub Arc<AgreeFn>);

impl std::fmt::Debug for AgreeListing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgreeListing")
    }
}

/// The listing every process reads: the files, and each one's length as the leader measured
/// (by path, which orders them by name as the listing does).
#[derive(Debug, Clone, Default)]
pub struct Agreed {
    lengths: BTreeMap<PathBuf, u64>,
}

impl Agreed {
    /// The agreed files, in name order.
    pub fn files(&self) -> Vec<PathBuf> {
        self.lengths.keys().cloned().collect()
    }

    /// The agreed length of `file`, if it is one of the agreed files.
    pub fn length(&self, file: &std::path::Path) -> Option<u64> {
        self.lengths.get(file).copied()
    }
}

impl From<Listing> for Agreed {
    fn from(listing: Listing) -> Self {
        Agreed {
            lengths: listing.into_iter().collect(),
        }
    }
}

/// This process's listing of `config`'s input: its files and their lengths now (a file gone
/// since it was listed is left out).
pub fn measure(config: &FileSourceConfig) -> Result<Listing, ConnectorError> {
    Ok(input::input_files(config)?
        .into_iter()
        .filter_map(|f| std::fs::metadata(&f).ok().map(|m| (f, m.len())))
        .collect())
}

/// Agrees the listing of `config`'s input through its [`AgreeListing`], if it has one (once:
/// it is taken): the config to read with, holding the agreed listing. Blocking.
pub fn agree(
    mut config: FileSourceConfig,
    stopped: &dyn Fn() -> bool,
) -> Result<FileSourceConfig, ConnectorError> {
    let Some(agree) = config.agree.take() else {
        return Ok(config);
    };
    // A listing that failed still goes through: the leader tells the others there is nothing
    // to read (and fails with its error); a follower reads the leader's files.
    let mine = measure(&config).map_err(|e| e.to_string());
    let agreed = (agree.0)(mine, stopped).map_err(|reason| ConnectorError::Io {
        connector: "file",
        reason,
    })?;
    config.agreed = Some(Arc::new(Agreed::from(agreed)));
    Ok(config)
}
