//! One open output file of the file sink: its layout (header, separators, footer), buffering
//! and compression.
//!
//! Bytes are gathered in memory and reach the file only at message boundaries: a plain file
//! gets one write per emission (or per [`CHUNK_BYTES`]), a compressed one a complete gzip
//! member or zstd frame per [`CHUNK_BYTES`] and at close. So the file never holds a partial
//! message between writes, and a compressed file is always a valid stream of whole frames
//! (`zcat`/`zstdcat` read concatenated ones). Close writes the footer, the last chunk and
//! syncs the file to disk.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::FileType;
use crate::codec::compress::Compression;

/// Most bytes gathered before they are written (compressed: the size of one frame).
pub const CHUNK_BYTES: usize = 256 << 10;

/// An open output file.
#[derive(Debug)]
pub(super) struct OutFile {
    path: PathBuf,
    file: File,
    file_type: FileType,
    compression: Compression,
    /// Bytes not yet written (uncompressed).
    pending: Vec<u8>,
    /// When it was opened, for `rollingInterval`.
    pub(super) opened: Instant,
    /// Messages written, for `rollingCount`.
    pub(super) messages: u64,
}

impl OutFile {
    /// Creates (or truncates, as eKuiper does) `path`, making its directory, and starts it
    /// with `header` (a CSV header line, if any).
    pub(super) fn create(
        path: &Path,
        file_type: FileType,
        compression: Compression,
        header: Option<&[u8]>,
    ) -> std::io::Result<OutFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = File::create(path)?;
        let mut pending = Vec::with_capacity(4096);
        match (file_type, header) {
            (FileType::Json, _) => pending.push(b'['),
            (FileType::Csv, Some(h)) => {
                pending.extend_from_slice(h);
                pending.push(b'\n');
            }
            _ => {}
        }
        Ok(OutFile {
            path: path.to_path_buf(),
            file,
            file_type,
            compression,
            pending,
            opened: Instant::now(),
            messages: 0,
        })
    }

    /// The file's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Adds one message: JSON files separate them with commas, the others end each with a
    /// line break.
    pub(super) fn push(&mut self, message: &[u8]) -> std::io::Result<()> {
        match self.file_type {
            FileType::Json => {
                if self.messages > 0 {
                    self.pending.push(b',');
                }
                self.pending.extend_from_slice(message);
            }
            FileType::Lines | FileType::Csv => {
                self.pending.extend_from_slice(message);
                self.pending.push(b'\n');
            }
        }
        self.messages += 1;
        if self.pending.len() >= CHUNK_BYTES {
            self.write_pending()?;
        }
        Ok(())
    }

    /// The end of an emission: a plain file gets what is gathered.
    pub(super) fn end_emission(&mut self) -> std::io::Result<()> {
        if self.compression == Compression::None {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Finishes the file: footer, last chunk, sync.
    pub(super) fn close(mut self) -> std::io::Result<PathBuf> {
        if self.file_type == FileType::Json {
            self.pending.push(b']');
        }
        self.write_pending()?;
        self.file.sync_all()?;
        Ok(self.path)
    }

    fn write_pending(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match self.compression {
            Compression::None => self.file.write_all(&self.pending)?,
            // One gzip member or zstd frame per chunk: the reader reads them as one stream.
            c => self.file.write_all(&c.compress(&self.pending))?,
        }
        self.pending.clear();
        Ok(())
    }
}
