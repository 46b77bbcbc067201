//! Where a file source at qos 1 or 2 had got to: a cursor stored with every event it hands
//! over, in the event's own input log record (its mark), so after a restart the source goes on
//! after the last event the log holds, neither reading a row twice nor skipping one.
//!
//! Lines and CSV files resume at a byte offset of the (decompressed) file; a JSON file, which
//! cannot be entered part way, is read again from its start and the rows already handed over
//! are skipped. A file is recognised by its device and inode, and must be no shorter than when
//! it was read: a file replaced or shortened since is read afresh from its start, and the log
//! says so; rows appended to it are read after the cursor.
//!
//! A cursor also says where its event began (`from`), so the log need not hold the event: a
//! restart reads the events after the last checkpoint again from the file (see
//! [`super::reread`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How far a reader has handed over one file: what goes with each event it sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Lines and CSV: bytes of the (decompressed) file up to the end of the last row handed
    /// over.
    pub offset: u64,
    /// JSON: rows handed over.
    pub rows: u64,
}

/// Which file a cursor is in: a file with another identity at the same path is another file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i64,
}

impl FileId {
    /// The identity of the file at `path` now; `None` when it is not there.
    pub fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec()),
        })
    }

    /// True when the file now at this path, with identity `now`, is still the one read (same
    /// device and inode) and still holds every byte read then (no shorter): appending to it or
    /// touching it keeps what was read. Whether those bytes are still the same is up to the
    /// events' checksums (see [`Cursor::crc`]).
    pub fn still_holds(&self, now: &FileId) -> bool {
        self.dev == now.dev && self.ino == now.ino && now.len >= self.len
    }
}

/// The checksum of an event's bytes (its rows' payloads), which a restart checks the event
/// read again against.
pub fn event_crc(event: &crate::SourceEvent) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    match event {
        crate::SourceEvent::Lines { block, .. } => crc.update(block),
        crate::SourceEvent::Raw(messages) => {
            for m in messages {
                // The length too, so rows cut elsewhere do not sum the same.
                crc.update(&(m.payload.len() as u64).to_le_bytes());
                crc.update(&m.payload);
            }
        }
        // The file reader hands over no other kind of event.
        _ => {}
    }
    crc.finalize()
}

/// The source's position after one event it handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Counts the events handed over since the rule's state began: the largest is the latest
    /// (events are spread over the workers' logs).
    pub n: u64,
    /// Which read of the input (`interval` starts another), from 0.
    pub round: u64,
    /// The file the event came from (as its bytes: a file name need not be UTF-8).
    #[serde(with = "path_bytes")]
    pub file: PathBuf,
    /// That file's identity when it was read.
    pub id: FileId,
    /// How far that file was handed over.
    pub progress: Progress,
    /// How far it was handed over before the event: the event is the rows from here to
    /// `progress`, which a restart reads again from the file (see [`super::reread`]). Absent in
    /// marks written before the log stopped holding file events (their records hold them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Progress>,
    /// The checksum of the event's bytes ([`event_crc`]): the event read again after a restart
    /// must match it. Absent in marks written before it was kept (not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc: Option<u32>,
}

impl Cursor {
    /// The cursor as a log record's mark.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a cursor serialises")
    }

    /// The latest of the marks a rule's input log holds (one per worker); marks that are not
    /// cursors are passed over.
    pub fn latest(marks: &[Vec<u8>]) -> Option<Cursor> {
        marks
            .iter()
            .filter_map(|m| serde_json::from_slice::<Cursor>(m).ok())
            .max_by_key(|c| c.n)
    }
}

/// A path as the bytes of its name, which JSON keeps whatever their encoding.
mod path_bytes {
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(path.as_os_str().as_bytes())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        Ok(PathBuf::from(OsString::from_vec(Vec::<u8>::deserialize(
            d,
        )?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_cursor_is_the_last_handed_over() {
        let id = FileId {
            dev: 1,
            ino: 2,
            len: 3,
            mtime_ns: 4,
        };
        let at = |n, offset| Cursor {
            n,
            round: 0,
            file: PathBuf::from("/in.jsonl"),
            id,
            progress: Progress { offset, rows: 0 },
            from: Some(Progress::default()),
            crc: None,
        };
        let marks = vec![
            at(7, 70).encode(),
            b"not a cursor".to_vec(),
            at(8, 80).encode(),
        ];
        assert_eq!(Cursor::latest(&marks), Some(at(8, 80)));
        assert_eq!(Cursor::latest(&[]), None);
    }

    #[test]
    fn a_file_name_that_is_not_utf8_survives_the_mark() {
        use std::os::unix::ffi::OsStringExt;
        let cursor = Cursor {
            n: 1,
            round: 0,
            file: PathBuf::from(std::ffi::OsString::from_vec(b"/in-\xff.jsonl".to_vec())),
            id: FileId {
                dev: 1,
                ino: 2,
                len: 3,
                mtime_ns: 4,
            },
            progress: Progress { offset: 5, rows: 0 },
            from: None,
            crc: Some(7),
        };
        assert_eq!(Cursor::latest(&[cursor.encode()]), Some(cursor));
    }

    #[test]
    fn a_changed_file_has_another_identity() {
        let dir = std::env::temp_dir().join(format!("quiver-cursor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.txt");
        std::fs::write(&path, b"one\n").unwrap();
        let before = FileId::of(&path).unwrap();
        assert_eq!(FileId::of(&path), Some(before));
        std::fs::write(&path, b"one\ntwo\n").unwrap();
        assert_ne!(FileId::of(&path), Some(before));
        assert_eq!(FileId::of(&dir.join("missing")), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
