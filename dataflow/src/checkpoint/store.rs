//! A rule's committed checkpoints: one file each, written whole, synced and renamed into place.
//!
//! A file is `QCKP1\n`, a length-prefixed JSON header (epoch, plan fingerprint, and each part's
//! name, length and CRC-32), the parts' bytes, and a CRC-32 of everything before it. A file is
//! only ever seen whole under its final name (rename after `fsync`, then the directory is
//! synced), so a crash leaves the previous checkpoint in place; a file damaged afterwards
//! (truncated, bits flipped) fails its checks and the previous one is used, with a log line
//! saying so. The newest [`KEEP`] files are kept, so there is always one to fall back on.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const MAGIC: &[u8] = b"QCKP1\n";
/// Committed checkpoints kept per rule: the newest and the one before it.
pub const KEEP: usize = 2;
/// The largest header read back (names and lengths only).
const MAX_HEADER: usize = 1 << 20;

/// One committed checkpoint: the state of every operator and source of a rule at one epoch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Checkpoint {
    /// Its epoch, increasing over the rule's life.
    pub epoch: u64,
    /// What the rule's plan looked like (state only fits the plan that saved it).
    pub fingerprint: String,
    /// Each participant's state, by name (`source.w0`, `window.3.w1`, ...).
    pub parts: BTreeMap<String, Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    epoch: u64,
    fingerprint: String,
    parts: Vec<PartHeader>,
}

#[derive(Serialize, Deserialize)]
struct PartHeader {
    name: String,
    len: u64,
    crc: u32,
}

/// The checkpoint files of one rule, in their own directory.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

impl CheckpointStore {
    /// The store in `dir`, created if missing.
    pub fn open(dir: &Path) -> Result<CheckpointStore, String> {
        fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create checkpoint directory {}: {e}", dir.display()))?;
        Ok(CheckpointStore {
            dir: dir.to_path_buf(),
        })
    }

    fn file(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!("ckpt-{epoch:020}.qck"))
    }

    /// The epochs of the checkpoint files present, newest first.
    pub fn epochs(&self) -> Vec<u64> {
        let mut epochs: Vec<u64> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("ckpt-")?
                    .strip_suffix(".qck")?
                    .parse()
                    .ok()
            })
            .collect();
        epochs.sort_unstable_by(|a, b| b.cmp(a));
        epochs
    }

    /// Writes `checkpoint` durably, then drops all but the newest [`KEEP`] files.
    pub fn commit(&self, checkpoint: &Checkpoint) -> Result<(), String> {
        let bytes = encode(checkpoint)?;
        let path = self.file(checkpoint.epoch);
        let tmp = self.dir.join(format!(".ckpt-{:020}.tmp", checkpoint.epoch));
        let io = |e: std::io::Error| format!("cannot write checkpoint {}: {e}", path.display());
        {
            let mut f = File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        fs::rename(&tmp, &path).map_err(io)?;
        sync_dir(&self.dir).map_err(io)?;
        for old in self.epochs().into_iter().skip(KEEP) {
            let _ = fs::remove_file(self.file(old));
        }
        Ok(())
    }

    /// The newest checkpoint that reads back whole. A damaged newer file is logged and
    /// skipped; `None` when there is none.
    pub fn latest(&self) -> Option<Checkpoint> {
        for epoch in self.epochs() {
            let path = self.file(epoch);
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| decode(&b))
            {
                Ok(c) if c.epoch == epoch => return Some(c),
                Ok(_) => tracing::warn!(
                    file = %path.display(),
                    "checkpoint file holds another epoch than its name; using the previous one"
                ),
                Err(e) => tracing::warn!(
                    file = %path.display(),
                    "checkpoint file is damaged ({e}); using the previous one"
                ),
            }
        }
        None
    }

    /// Removes every checkpoint of the rule (its plan changed, or the rule was deleted).
    pub fn clear(&self) {
        for epoch in self.epochs() {
            let _ = fs::remove_file(self.file(epoch));
        }
    }
}

/// Syncs a directory, so a rename in it survives a power cut.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn encode(c: &Checkpoint) -> Result<Vec<u8>, String> {
    let header = Header {
        epoch: c.epoch,
        fingerprint: c.fingerprint.clone(),
        parts: c
            .parts
            .iter()
            .map(|(name, bytes)| PartHeader {
                name: name.clone(),
                len: bytes.len() as u64,
                crc: crc32fast::hash(bytes),
            })
            .collect(),
    };
    let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    let body: usize = c.parts.values().map(Vec::len).sum();
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + body + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    for bytes in c.parts.values() {
        out.extend_from_slice(bytes);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
    let body_len = bytes
        .len()
        .checked_sub(4)
        .filter(|&n| n >= MAGIC.len() + 4)
        .ok_or("the file is too short")?;
    let (body, crc) = bytes.split_at(body_len);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err("its checksum does not match (torn or overwritten)".into());
    }
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("it is not a checkpoint file")?;
    let (len, rest) = rest.split_at(4);
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    if len > MAX_HEADER || len > rest.len() {
        return Err("its header length is out of bounds".into());
    }
    let (header, mut data) = rest.split_at(len);
    let header: Header =
        serde_json::from_slice(header).map_err(|e| format!("its header is unreadable: {e}"))?;
    let mut parts = BTreeMap::new();
    for part in header.parts {
        let len = usize::try_from(part.len).map_err(|_| "a part is too long")?;
        if len > data.len() {
            return Err(format!("part {} runs past the end", part.name));
        }
        let (bytes, rest) = data.split_at(len);
        if crc32fast::hash(bytes) != part.crc {
            return Err(format!("part {} fails its checksum", part.name));
        }
        parts.insert(part.name, bytes.to_vec());
        data = rest;
    }
    if !data.is_empty() {
        return Err("it has bytes after its last part".into());
    }
    Ok(Checkpoint {
        epoch: header.epoch,
        fingerprint: header.fingerprint,
        parts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("quiver-ckpt-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn checkpoint(epoch: u64) -> Checkpoint {
        let mut parts = BTreeMap::new();
        parts.insert("source.w0".to_string(), vec![epoch as u8; 100]);
        parts.insert("window.3.w0".to_string(), b"state".to_vec());
        Checkpoint {
            epoch,
            fingerprint: "plan".into(),
            parts,
        }
    }

    #[test]
    fn commits_read_back_and_only_the_newest_two_stay() {
        let store = CheckpointStore::open(&dir("keep")).unwrap();
        assert_eq!(store.latest(), None);
        for epoch in 1..=4 {
            store.commit(&checkpoint(epoch)).unwrap();
        }
        assert_eq!(store.epochs(), vec![4, 3]);
        assert_eq!(store.latest(), Some(checkpoint(4)));
    }

    #[test]
    fn a_torn_newest_file_falls_back_to_the_previous_one() {
        let store = CheckpointStore::open(&dir("torn")).unwrap();
        store.commit(&checkpoint(1)).unwrap();
        store.commit(&checkpoint(2)).unwrap();
        let newest = store.file(2);
        let len = fs::metadata(&newest).unwrap().len();
        File::options()
            .write(true)
            .open(&newest)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        assert_eq!(store.latest(), Some(checkpoint(1)));
        // A flipped bit is caught as well.
        let mut bytes = fs::read(store.file(1)).unwrap();
        bytes[20] ^= 1;
        fs::write(store.file(1), bytes).unwrap();
        assert_eq!(store.latest(), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"QCKP1\n",
            b"QCKP1\n\xff\xff\xff\xff....",
            &[0u8; 64],
        ] {
            assert!(decode(bytes).is_err());
        }
    }
}
