//! A rule's input log: every event its source delivers is written here, and synced, before a
//! worker sees it, so what the source acknowledged survives a crash and is read again from the
//! last checkpoint's position.
//!
//! One log per worker (events are spread round-robin, and each worker's position is its own),
//! in segment files `input-w<worker>-<first seq>.log`. A record is `len u32, crc u32, seq u64,
//! at u64, event`, where `crc` covers what follows it and `at` is the processing time the event
//! was logged at, which it keeps when replayed. A source that reads its input again after a
//! restart (the file source) stores its position after the event in the same record (a mark),
//! so the log and the position cannot disagree; such a source may log the mark alone, and read
//! the event again from its input after a restart ([`InputLog::append_place`], not synced
//! record by record: [`InputLog::sync`] runs before a checkpoint commits). A torn last record
//! (a crash mid-write) is cut off when the log is opened. Segments whose every record is before
//! the committed checkpoint are deleted.

use std::fs::{self, File};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use quiver_connectors::SourceEvent;

use super::event_codec;

/// A segment is closed and a new one begun beyond this many bytes.
const SEGMENT_BYTES: u64 = 16 << 20;
/// The largest record read back (an event is at most a few MiB: a file block, an MQTT packet).
const MAX_RECORD: usize = 256 << 20;
const HEADER: usize = 4 + 4 + 8 + 8;

/// One logged event as read back.
#[derive(Debug)]
pub struct Record {
    /// Its sequence number in its worker's log (from 1).
    pub seq: u64,
    /// The processing time (ms) it was logged at.
    pub at: u64,
    /// The rule's stream it came from: 0 for the FROM stream, `k` for the `k`-th joined one.
    pub source: u32,
    /// The event; `None` when the record holds only its mark (its source reads the event
    /// again from it), or when only marks were read.
    pub event: Option<SourceEvent>,
    /// True when the record holds its event (whether or not it was read).
    pub kept: bool,
    /// The source's position after the event, when it gave one.
    pub mark: Option<Vec<u8>>,
}

/// The input logs of one rule's workers.
pub struct InputLog {
    dir: PathBuf,
    workers: Vec<Mutex<WorkerLog>>,
    /// Held by whoever syncs a worker's log, one per worker: a second syncer waits for the
    /// first one's fsync, which covers what the second needs if the first took the dirty
    /// flag, instead of seeing the log clean and returning before the bytes are on disk.
    syncing: Vec<Mutex<()>>,
    /// Set by the first failed write or sync, and returned by every later one: after a failed
    /// fsync Linux may drop the unwritten pages and report the next fsync fine, so nothing
    /// written before it may be taken as durable again.
    failed: std::sync::OnceLock<String>,
    /// How the rule's source reads again the events its records hold only the marks of.
    reread: std::sync::OnceLock<std::sync::Arc<dyn super::reread::Reread>>,
}

struct WorkerLog {
    file: File,
    /// The sequence number the next record gets.
    next: u64,
    /// Bytes in the open segment.
    bytes: u64,
    /// The open segment may hold bytes not synced yet.
    dirty: bool,
}

impl InputLog {
    /// Opens (or creates) the logs of `workers` workers in `dir`, cutting off torn tails.
    pub fn open(dir: &Path, workers: usize) -> Result<InputLog, String> {
        fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create input log directory {}: {e}", dir.display()))?;
        let syncing = (0..workers).map(|_| Mutex::new(())).collect();
        let workers = (0..workers)
            .map(|w| open_worker(dir, w).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(InputLog {
            dir: dir.to_path_buf(),
            workers,
            syncing,
            failed: std::sync::OnceLock::new(),
            reread: std::sync::OnceLock::new(),
        })
    }

    /// Says how the rule's source reads again an event whose record holds only its mark (set
    /// once, before the log is replayed).
    pub fn set_reread(&self, reread: std::sync::Arc<dyn super::reread::Reread>) {
        let _ = self.reread.set(reread);
    }

    /// How the rule's source reads its events again, when it does.
    pub fn reread(&self) -> Option<&std::sync::Arc<dyn super::reread::Reread>> {
        self.reread.get()
    }

    /// The number of workers with a log.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The last sequence number logged for `worker` (0 when nothing was).
    pub fn last_seq(&self, worker: usize) -> u64 {
        self.workers[worker].lock().expect("log lock").next - 1
    }

    /// Writes an event of the rule's stream `source` (0: the FROM stream, `k`: the `k`-th joined
    /// stream, which the record keeps) with its source's `mark`, if any, for `worker`, synced to
    /// disk, and returns its sequence number.
    pub fn append(
        &self,
        worker: usize,
        at: u64,
        source: u32,
        event: &SourceEvent,
        mark: Option<&[u8]>,
    ) -> Result<u64, String> {
        self.append_as(worker, at, source, event, mark, true)
    }

    /// [`InputLog::append`], synced only when `sync`: an unsynced record is durable once a
    /// later [`InputLog::sync`] returns (a source that acknowledges its input does so only
    /// then). A crash of the process keeps it (it is in the page cache); a power cut may lose
    /// it, and what was not acknowledged is sent again.
    pub fn append_as(
        &self,
        worker: usize,
        at: u64,
        source: u32,
        event: &SourceEvent,
        mark: Option<&[u8]>,
        sync: bool,
    ) -> Result<u64, String> {
        self.write(worker, at, sync, |record| {
            event_codec::encode_record_into(record, source, Some(event), mark)
        })
    }

    /// Writes where an event of a source that reads its input again lies in that input
    /// (`mark`), for `worker`, with the event itself only when `event` is given; returns its
    /// sequence number. Not synced: what the checkpoint counts is synced before it commits
    /// (see [`InputLog::sync`]), and a record lost in a crash is read again from the input.
    pub fn append_place(
        &self,
        worker: usize,
        at: u64,
        event: Option<&SourceEvent>,
        mark: &[u8],
    ) -> Result<u64, String> {
        self.write(worker, at, false, |record| {
            event_codec::encode_record_into(record, 0, event, Some(mark))
        })
    }

    /// Syncs every worker's log: what was written before the call is durable when it returns.
    pub fn sync(&self) -> Result<(), String> {
        let io = |e: std::io::Error| format!("cannot sync the input log: {e}");
        for (log, syncing) in self.workers.iter().zip(&self.syncing) {
            let _turn = syncing.lock().expect("log sync lock");
            self.check()?;
            // Synced outside the log's lock, so the source goes on writing meanwhile; a log
            // with nothing unsynced is passed over.
            let file = {
                let mut log = log.lock().expect("log lock");
                if !log.dirty {
                    continue;
                }
                let file = log.file.try_clone().map_err(io)?;
                log.dirty = false;
                file
            };
            if let Err(e) = file.sync_data() {
                log.lock().expect("log lock").dirty = true;
                return Err(self.fail(io(e)));
            }
        }
        Ok(())
    }

    /// The first failure of a write or sync, if any.
    fn check(&self) -> Result<(), String> {
        match self.failed.get() {
            Some(reason) => Err(format!("the input log failed earlier: {reason}")),
            None => Ok(()),
        }
    }

    /// Records `reason` as the log's failure (the first one stays) and returns it.
    fn fail(&self, reason: String) -> String {
        let _ = self.failed.set(reason.clone());
        reason
    }

    /// Makes `worker`'s next record open a new segment.
    #[cfg(test)]
    pub(super) fn close_segment(&self, worker: usize) {
        self.workers[worker].lock().expect("log lock").bytes = SEGMENT_BYTES;
    }

    /// Writes one record for `worker`, its body encoded by `body`, synced when `sync`.
    fn write(
        &self,
        worker: usize,
        at: u64,
        sync: bool,
        body: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
    ) -> Result<u64, String> {
        // The header is filled in once the record's bytes (and, under the lock, its sequence
        // number) are known; the event is encoded straight after it.
        let mut record = vec![0; HEADER];
        body(&mut record)?;
        let len = (record.len() - 4) as u32;
        record[0..4].copy_from_slice(&len.to_le_bytes());
        record[16..24].copy_from_slice(&at.to_le_bytes());
        let io = |e: std::io::Error| self.fail(format!("cannot write the input log: {e}"));
        let mut log = self.workers[worker].lock().expect("log lock");
        self.check()?;
        if log.bytes >= SEGMENT_BYTES {
            // A closed segment is durable before the next one gets a record, so a crash
            // loses at most the end of the last segment, which opening the log cuts off.
            log.file.sync_data().map_err(io)?;
            let next = log.next;
            log.file = create_segment(&self.dir, worker, next).map_err(|e| self.fail(e))?;
            log.bytes = 0;
            log.dirty = false;
        }
        let seq = log.next;
        record[8..16].copy_from_slice(&seq.to_le_bytes());
        let crc = crc32fast::hash(&record[8..]);
        record[4..8].copy_from_slice(&crc.to_le_bytes());
        log.file.write_all(&record).map_err(io)?;
        if sync {
            log.file.sync_data().map_err(io)?;
        } else {
            log.dirty = true;
        }
        log.next += 1;
        log.bytes += record.len() as u64;
        Ok(seq)
    }

    /// Removes `worker`'s records after sequence number `after` (records of a re-reading
    /// source that a restart reads again from its input instead); the next record gets
    /// `after + 1`.
    pub fn cut_after(&self, worker: usize, after: u64) -> Result<(), String> {
        let mut log = self.workers[worker].lock().expect("log lock");
        if after + 1 >= log.next {
            return Ok(());
        }
        let io = |e: std::io::Error| format!("cannot cut the input log: {e}");
        let mut kept = None;
        for (first, path) in segments(&self.dir, worker)? {
            if first > after {
                fs::remove_file(&path).map_err(io)?;
            } else {
                kept = Some(path);
            }
        }
        let (file, bytes) = match kept {
            None => (create_segment(&self.dir, worker, after + 1)?, 0),
            Some(path) => {
                let mut file = File::options()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(io)?;
                let mut end = 0u64;
                {
                    let mut reader = BufReader::new(&mut file);
                    while let Ok(Some((seq, _, body))) = read_record(&mut reader) {
                        if seq > after {
                            break;
                        }
                        end += (HEADER + body.len()) as u64;
                    }
                }
                file.set_len(end).map_err(io)?;
                file.sync_all().map_err(io)?;
                file.seek(SeekFrom::End(0)).map_err(io)?;
                (file, end)
            }
        };
        super::store::sync_dir(&self.dir).map_err(io)?;
        *log = WorkerLog {
            file,
            next: after + 1,
            bytes,
            dirty: true,
        };
        Ok(())
    }

    /// The records of `worker` after sequence number `after`, in order. Reads segment by
    /// segment, so replaying a long log holds one record at a time.
    pub fn read_after(&self, worker: usize, after: u64) -> Result<Replay, String> {
        let last = self.last_seq(worker);
        let segments = segments(&self.dir, worker)?;
        // The segments that may hold records after `after`: the last one starting at or
        // before `after + 1`, and every later one.
        let from = segments
            .iter()
            .rposition(|(first, _)| *first <= after + 1)
            .unwrap_or(0);
        Ok(Replay {
            segments: segments[from..].iter().map(|(_, p)| p.clone()).collect(),
            reader: None,
            after,
            last,
            marks_only: false,
        })
    }

    /// [`InputLog::read_after`] that reads the records' marks and leaves their events out.
    pub fn marks_after(&self, worker: usize, after: u64) -> Result<Replay, String> {
        let mut replay = self.read_after(worker, after)?;
        replay.marks_only = true;
        Ok(replay)
    }

    /// The mark of `worker`'s last record, if it has one. The last record is never trimmed
    /// (the open segment stays), so this is where the source had got to.
    pub fn last_mark(&self, worker: usize) -> Result<Option<Vec<u8>>, String> {
        let last = self.last_seq(worker);
        if last == 0 {
            return Ok(None);
        }
        match self.marks_after(worker, last - 1)?.next() {
            Some(r) => r.map(|r| r.mark),
            None => Ok(None),
        }
    }

    /// Deletes the segments of `worker` that hold nothing after sequence number `through`.
    pub fn truncate_through(&self, worker: usize, through: u64) -> Result<(), String> {
        let log = self.workers[worker].lock().expect("log lock");
        let last = log.next - 1;
        let segments = segments(&self.dir, worker)?;
        for pair in segments.windows(2) {
            // A segment ends where the next one begins. The one holding the last record stays
            // even when the next one is empty (a crash between its creation and its first
            // record): its mark says where a re-reading source had got to.
            if pair[1].0 <= through + 1 && pair[1].0 <= last {
                let _ = fs::remove_file(&pair[0].1);
            }
        }
        Ok(())
    }

    /// Removes every log file (the rule's state was reset or the rule deleted).
    pub fn clear(dir: &Path) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with("input-w") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Reads a worker's log from a position onwards (see [`InputLog::read_after`]).
pub struct Replay {
    segments: std::collections::VecDeque<PathBuf>,
    reader: Option<BufReader<File>>,
    after: u64,
    /// The last record that existed when the replay began: the end of the replay.
    last: u64,
    /// Records come back with their marks and an empty event (not decoded).
    marks_only: bool,
}

impl Replay {
    /// The sequence number the replay ends at.
    pub fn last(&self) -> u64 {
        self.last
    }
}

impl Iterator for Replay {
    type Item = Result<Record, String>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.after >= self.last {
                return None;
            }
            if self.reader.is_none() {
                let path = self.segments.pop_front()?;
                match File::open(&path) {
                    Ok(f) => self.reader = Some(BufReader::new(f)),
                    Err(e) => return Some(Err(format!("cannot read {}: {e}", path.display()))),
                }
            }
            let reader = self.reader.as_mut().expect("opened above");
            match read_record(reader) {
                Ok(Some((seq, at, body))) => {
                    if seq <= self.after {
                        continue;
                    }
                    self.after = seq;
                    if self.marks_only {
                        return Some(event_codec::mark_of(&body).map(|(mark, kept)| Record {
                            seq,
                            at,
                            source: 0,
                            event: None,
                            kept,
                            mark,
                        }));
                    }
                    return Some(
                        event_codec::decode_record(&body).map(|(source, event, mark)| Record {
                            seq,
                            at,
                            source,
                            kept: event.is_some(),
                            event,
                            mark,
                        }),
                    );
                }
                Ok(None) => self.reader = None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Reads one record: `Ok(None)` at a clean end or a torn tail, `Err` for a damaged record in
/// the middle.
fn read_record(r: &mut impl Read) -> Result<Option<(u64, u64, Vec<u8>)>, String> {
    let mut len = [0u8; 4];
    if !read_full(r, &mut len)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes(len) as usize;
    if !(HEADER - 4..=MAX_RECORD).contains(&len) {
        return Err("an input log record has an impossible length".into());
    }
    let mut rest = vec![0u8; len];
    if !read_full(r, &mut rest)? {
        return Ok(None);
    }
    let crc = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
    if crc32fast::hash(&rest[4..]) != crc {
        return Ok(None);
    }
    let seq = u64::from_le_bytes(rest[4..12].try_into().expect("8 bytes"));
    let at = u64::from_le_bytes(rest[12..20].try_into().expect("8 bytes"));
    Ok(Some((seq, at, rest[20..].to_vec())))
}

/// Fills `buf`; false when the input ends first (at its start or part way).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<bool, String> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read the input log: {e}")),
        }
    }
    Ok(true)
}

/// A worker's segments, by first sequence number.
fn segments(dir: &Path, worker: usize) -> Result<Vec<(u64, PathBuf)>, String> {
    let prefix = format!("input-w{worker}-");
    let mut out: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let first = name
                .strip_prefix(&prefix)?
                .strip_suffix(".log")?
                .parse()
                .ok()?;
            Some((first, e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}

fn create_segment(dir: &Path, worker: usize, first: u64) -> Result<File, String> {
    let path = dir.join(format!("input-w{worker}-{first:020}.log"));
    let file = File::options()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    super::store::sync_dir(dir).map_err(|e| format!("cannot sync {}: {e}", dir.display()))?;
    Ok(file)
}

/// Opens a worker's last segment for appending, after cutting off a torn tail.
fn open_worker(dir: &Path, worker: usize) -> Result<WorkerLog, String> {
    let segments = segments(dir, worker)?;
    let Some((first, path)) = segments.last() else {
        return Ok(WorkerLog {
            file: create_segment(dir, worker, 1)?,
            next: 1,
            bytes: 0,
            dirty: false,
        });
    };
    let io = |e: std::io::Error| format!("cannot open {}: {e}", path.display());
    let mut file = File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let mut next = *first;
    let mut good = 0u64;
    {
        let mut reader = BufReader::new(&mut file);
        while let Ok(Some((seq, _, body))) = read_record(&mut reader) {
            next = seq + 1;
            good += (HEADER + body.len()) as u64;
        }
    }
    let len = file.metadata().map_err(io)?.len();
    if len > good {
        tracing::warn!(
            file = %path.display(),
            "input log ends in a torn record ({} bytes); cutting it off",
            len - good
        );
        file.set_len(good).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    file.seek(SeekFrom::End(0)).map_err(io)?;
    // What a killed run wrote may be in the page cache only.
    Ok(WorkerLog {
        file,
        next,
        bytes: good,
        dirty: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use quiver_connectors::RawMessage;
    use std::sync::Arc;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("quiver-log-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn event(text: &str) -> SourceEvent {
        SourceEvent::Raw(vec![RawMessage::new(
            Bytes::copy_from_slice(text.as_bytes()),
            Arc::from("t"),
        )])
    }

    fn payloads(replay: Replay) -> Vec<(u64, u64, String)> {
        replay
            .map(|r| {
                let r = r.unwrap();
                let Some(SourceEvent::Raw(m)) = r.event else {
                    panic!("raw")
                };
                (
                    r.seq,
                    r.at,
                    String::from_utf8(m[0].payload.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn records_survive_reopening_and_replay_after_a_position() {
        let d = dir("reopen");
        let log = InputLog::open(&d, 2).unwrap();
        assert_eq!(log.append(0, 100, 0, &event("a"), None).unwrap(), 1);
        assert_eq!(log.append(0, 101, 0, &event("b"), None).unwrap(), 2);
        assert_eq!(log.append(1, 102, 0, &event("c"), None).unwrap(), 1);
        drop(log);
        let log = InputLog::open(&d, 2).unwrap();
        assert_eq!((log.last_seq(0), log.last_seq(1)), (2, 1));
        assert_eq!(log.append(0, 103, 0, &event("d"), None).unwrap(), 3);
        assert_eq!(
            payloads(log.read_after(0, 1).unwrap()),
            vec![(2, 101, "b".into()), (3, 103, "d".into())]
        );
        assert!(payloads(log.read_after(1, 1).unwrap()).is_empty());
    }

    #[test]
    fn the_last_mark_survives_reopening() {
        let d = dir("marks");
        let log = InputLog::open(&d, 2).unwrap();
        assert_eq!(log.last_mark(0).unwrap(), None);
        log.append(0, 1, 0, &event("a"), Some(b"one")).unwrap();
        log.append(0, 2, 0, &event("b"), Some(b"two")).unwrap();
        log.append(1, 3, 0, &event("c"), None).unwrap();
        drop(log);
        let log = InputLog::open(&d, 2).unwrap();
        assert_eq!(log.last_mark(0).unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(log.last_mark(1).unwrap(), None);
        let r: Vec<_> = log.read_after(0, 0).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(r[0].mark.as_deref(), Some(&b"one"[..]));
        assert!(matches!(&r[0].event, Some(SourceEvent::Raw(m)) if m.len() == 1));
    }

    /// A sync passes over the logs with nothing unsynced, and covers every unsynced record.
    #[test]
    fn a_sync_covers_unsynced_records_and_passes_over_clean_logs() {
        let d = dir("dirty");
        let log = InputLog::open(&d, 2).unwrap();
        let dirty = |w: usize| log.workers[w].lock().unwrap().dirty;
        assert!(!dirty(0) && !dirty(1), "new logs hold nothing");
        log.append_place(0, 1, None, b"one").unwrap();
        assert!(dirty(0) && !dirty(1));
        log.sync().unwrap();
        assert!(!dirty(0));
        log.append_place(1, 2, None, b"two").unwrap();
        assert!(dirty(1) && !dirty(0));
        log.sync().unwrap();
        assert!(!dirty(1));
        drop(log);
        // Reopened after a kill, what the last run wrote may be in the page cache only.
        let log = InputLog::open(&d, 2).unwrap();
        assert!(log.workers[0].lock().unwrap().dirty);
    }

    /// After a failed sync nothing is taken as durable again: every later sync and write
    /// fails with the first reason (Linux may report the next fsync fine after dropping pages).
    #[test]
    fn a_failure_is_returned_by_every_later_sync_and_write() {
        let d = dir("failed");
        let log = InputLog::open(&d, 1).unwrap();
        log.append_as(0, 1, 0, &event("a"), None, false).unwrap();
        log.fail("cannot sync the input log: Input/output error".into());
        for e in [
            log.sync().unwrap_err(),
            log.append_as(0, 2, 0, &event("b"), None, false)
                .unwrap_err(),
            log.append(0, 3, 0, &event("c"), None).unwrap_err(),
        ] {
            assert!(e.contains("Input/output error"), "{e}");
        }
    }

    #[test]
    fn place_records_hold_their_marks_and_are_cut_after_a_position() {
        let d = dir("places");
        let log = InputLog::open(&d, 1).unwrap();
        log.append_place(0, 1, None, b"one").unwrap();
        log.append_place(0, 2, Some(&event("kept")), b"two")
            .unwrap();
        log.append_place(0, 3, None, b"three").unwrap();
        log.workers[0].lock().unwrap().bytes = SEGMENT_BYTES;
        log.append_place(0, 4, None, b"four").unwrap();
        log.sync().unwrap();
        let r: Vec<_> = log.read_after(0, 0).unwrap().map(|r| r.unwrap()).collect();
        let seen: Vec<_> = r
            .iter()
            .map(|r| (r.seq, r.kept, r.event.is_some(), r.mark.clone().unwrap()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (1, false, false, b"one".to_vec()),
                (2, true, true, b"two".to_vec()),
                (3, false, false, b"three".to_vec()),
                (4, false, false, b"four".to_vec()),
            ]
        );
        let kept: Vec<bool> = log
            .marks_after(0, 0)
            .unwrap()
            .map(|r| r.unwrap().kept)
            .collect();
        assert_eq!(kept, vec![false, true, false, false]);
        // Cut after 2: the rest of the first segment and the whole second one go.
        log.cut_after(0, 2).unwrap();
        assert_eq!(log.last_seq(0), 2);
        assert_eq!(segments(&d, 0).unwrap().len(), 1);
        assert_eq!(log.append_place(0, 5, None, b"again").unwrap(), 3);
        drop(log);
        let log = InputLog::open(&d, 1).unwrap();
        let marks: Vec<_> = log
            .marks_after(0, 0)
            .unwrap()
            .map(|r| r.unwrap().mark.unwrap())
            .collect();
        assert_eq!(
            marks,
            vec![b"one".to_vec(), b"two".to_vec(), b"again".to_vec()]
        );
        assert_eq!(log.last_mark(0).unwrap().as_deref(), Some(&b"again"[..]));
        // Cut after everything: the next record is the first.
        log.cut_after(0, 0).unwrap();
        assert_eq!(log.last_seq(0), 0);
        assert_eq!(log.append_place(0, 6, None, b"first").unwrap(), 1);
    }

    #[test]
    fn a_torn_tail_is_cut_off() {
        let d = dir("torn");
        let log = InputLog::open(&d, 1).unwrap();
        log.append(0, 1, 0, &event("kept"), None).unwrap();
        log.append(0, 2, 0, &event("torn"), None).unwrap();
        drop(log);
        let (_, path) = segments(&d, 0).unwrap().pop().unwrap();
        let len = fs::metadata(&path).unwrap().len();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let log = InputLog::open(&d, 1).unwrap();
        assert_eq!(log.last_seq(0), 1);
        log.append(0, 3, 0, &event("after"), None).unwrap();
        assert_eq!(
            payloads(log.read_after(0, 0).unwrap()),
            vec![(1, 1, "kept".into()), (2, 3, "after".into())]
        );
    }

    #[test]
    fn truncation_keeps_what_is_after_the_position() {
        let d = dir("truncate");
        let log = InputLog::open(&d, 1).unwrap();
        for i in 0..3u64 {
            log.append(0, i, 0, &event(&i.to_string()), None).unwrap();
            // A new segment per record.
            log.workers[0].lock().unwrap().bytes = SEGMENT_BYTES;
        }
        log.append(0, 9, 0, &event("3"), None).unwrap();
        assert_eq!(segments(&d, 0).unwrap().len(), 4);
        log.truncate_through(0, 2).unwrap();
        assert_eq!(segments(&d, 0).unwrap().len(), 2);
        let seqs: Vec<u64> = payloads(log.read_after(0, 2).unwrap())
            .iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(seqs, vec![3, 4]);
        // An empty last segment (created, then a crash before its first record) keeps the
        // one before it, which holds the last record.
        let next = log.workers[0].lock().unwrap().next;
        drop(create_segment(&d, 0, next).unwrap());
        drop(log);
        let log = InputLog::open(&d, 1).unwrap();
        log.truncate_through(0, next - 1).unwrap();
        assert_eq!(
            payloads(log.read_after(0, next - 2).unwrap()),
            vec![(next - 1, 9, "3".into())]
        );
    }
}
