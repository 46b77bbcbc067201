//! The `file` connector: eKuiper's bounded file input (`TYPE="file"`) and the `file` sink
//! (see [`FileSink`]).
//!
//! The source:
//!
//! `DATASOURCE` names the file, relative to the profile's `path` (a base directory) unless it
//! is absolute; a directory is read file by file in name order. `fileType` says how a file
//! splits into rows: `json` (an array of objects, or one object), `lines` (one JSON object per
//! line) or `csv`; unset, it follows the extension (`.jsonl`/`.ndjson`: lines, `.csv`: csv,
//! else json). Each row travels as one JSON-object payload, 1,024 rows per event, decoded on
//! the workers. A stream whose `FORMAT` is not JSON reads every file as lines, each line one
//! message in that format (`fileType` json or csv is refused there, as eKuiper's csv and json
//! readers make JSON rows).
//!
//! Contract: the file is streamed, never loaded whole (bounded memory, back-pressure from the
//! rule). At the end of the input the source returns, so the rule finishes: every open window
//! emits and the status reads "input ended" (unless `interval` asks to read it again). A
//! missing or unreadable file fails the source with the path in the message; a malformed row
//! in a `lines` file is a per-row exception counted by the decoder, not a failure.
//!
//! In a cluster, every process reads its byte range of each file for rules that any worker may
//! take rows of (see `split.rs`), of the files and lengths the leader listed (`listing.rs`);
//! what cannot be split ([`unsplittable`]) is read whole on the leader.
//!
//! CSV values: unquoted JSON number literals become numbers (so schemaless streams compare
//! them as numbers), everything else, and anything quoted, a string. The source does not see
//! the stream's schema, so an unquoted `123` in a `STRING` column is refused by the typed
//! decoder (a per-row exception); quote such values.

mod config;
mod cursor;
mod input;
mod listing;
mod reader;
mod reread;
mod sink;
mod sink_config;
mod source;
mod split;
mod writer;

pub use crate::codec::compress::Compression;

/// The compressions of files: gzip members and zstd frames concatenate, so each chunk the sink
/// writes is one and the reader reads them as one stream.
pub(crate) const FILE_COMPRESSIONS: &[Compression] = &[Compression::Gzip, Compression::Zstd];
pub use config::{AfterRead, FileSourceConfig, FileType};
pub use listing::{AgreeFn, AgreeListing, Listing};
pub use reader::CHUNK_ROWS;
pub use reread::{mark_order, reread, rereadable};
pub use sink::{FileSink, MAX_OPEN_FILES};
pub use sink_config::{
    DEFAULT_CHECK_INTERVAL, DEFAULT_ROLLING_COUNT, FileSinkConfig, NamePattern, SINK_OWN_KEYS,
};
pub use source::{FileSource, PARALLEL_READERS};
pub use split::{Share, unsplittable};
pub use writer::CHUNK_BYTES;
