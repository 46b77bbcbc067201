//! A source that is its own log (the file source): its input is durable and can be read again,
//! so the input log holds where each of its events lies (the record's mark), not the event,
//! and the records are not synced one by one.
//!
//! What makes that safe:
//! - the log is synced before a checkpoint commits (see the coordinator), so every record the
//!   checkpoint counts, and every record written before one of those, is durable;
//! - after a crash each worker's log may have lost a tail of records written after the last
//!   checkpoint. [`prepare`] keeps those that follow on from what the checkpoint holds without
//!   a gap (in the order the source handed its events over, which spreads them over the
//!   workers' logs) and cuts off the rest, so the log's last mark is where the source goes on
//!   reading;
//! - [`replay`] reads the kept records' events again from the input, cut as they were the first
//!   time, and hands each to its worker with its log position and the time it was logged at.
//!
//! A record whose input will not be there to read again (a file deleted or moved once read)
//! holds its event, and the source syncs the log before the file goes.

use std::collections::HashMap;

use quiver_connectors::file::FileSourceConfig;
use quiver_connectors::{SourceEvent, WakeFn};
use tokio::sync::mpsc::Sender;

use super::log::{InputLog, Record};

/// How a source reads again the events whose records hold only their marks.
pub trait Reread: Send + Sync {
    /// The order in which the source handed over the event of `mark`; `None` when the mark is
    /// not the source's.
    fn order(&self, mark: &[u8]) -> Option<u64>;

    /// Ok when the event of `mark` can still be read again (its input is there, unchanged);
    /// otherwise why not, naming the input.
    fn can_reread(&self, mark: &[u8]) -> Result<(), String>;

    /// Reads the events of `marks` (in order) again and hands each to `give` with its index;
    /// stops when `give` returns false.
    fn reread(
        &self,
        marks: &[&[u8]],
        give: &mut (dyn FnMut(usize, SourceEvent) -> bool + Send),
    ) -> Result<(), String>;
}

/// The file source's events, read again from its files.
pub struct FileReread(pub FileSourceConfig);

impl Reread for FileReread {
    fn order(&self, mark: &[u8]) -> Option<u64> {
        quiver_connectors::file::mark_order(mark)
    }

    fn can_reread(&self, mark: &[u8]) -> Result<(), String> {
        quiver_connectors::file::rereadable(mark)
    }

    fn reread(
        &self,
        marks: &[&[u8]],
        give: &mut (dyn FnMut(usize, SourceEvent) -> bool + Send),
    ) -> Result<(), String> {
        quiver_connectors::file::reread(&self.0, marks, give)
    }
}

/// The checkpoint part holding, for each worker, its log position and the order of the event at
/// it (`position.wN`, `order.wN`): the log may have trimmed that record away by a restart.
pub const HELD_PART: &str = "input_log.held";

/// What a checkpoint holds of a re-reading source's events: each worker's position and the
/// order of the event at it, kept across checkpoints while a position stays put (its record
/// may be trimmed from the log since).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Held(Vec<Option<(u64, u64)>>);

impl Held {
    /// What a committed checkpoint's [`HELD_PART`] says; empty for one without it (older).
    pub fn restored(parts: &std::collections::BTreeMap<String, Vec<u8>>) -> Held {
        let Some(state) = parts
            .get(HELD_PART)
            .and_then(|b| crate::state::OpState::decode(b).ok())
        else {
            return Held::default();
        };
        let workers = state.number("workers").unwrap_or(0).max(0) as usize;
        Held(
            (0..workers)
                .map(|w| {
                    let p = state.number(&format!("position.w{w}"))?;
                    let n = state.number(&format!("order.w{w}"))?;
                    Some((p as u64, n as u64))
                })
                .collect(),
        )
    }

    /// The latest event a checkpoint at `positions` holds, as far as this knows.
    pub fn latest(&self, positions: &[u64]) -> Option<u64> {
        positions
            .iter()
            .zip(&self.0)
            .filter_map(|(&p, h)| h.filter(|(at, _)| *at == p).map(|(_, n)| n))
            .max()
    }

    /// Brings this up to a checkpoint at `positions`, reading from `log` the orders of the
    /// events at positions that moved, and encodes it as the checkpoint's [`HELD_PART`].
    pub fn update(
        &mut self,
        log: &InputLog,
        reread: &dyn Reread,
        positions: &[u64],
    ) -> Result<Vec<u8>, String> {
        self.0.resize(positions.len(), None);
        let mut state = crate::state::OpState::default();
        state.push_number("workers", positions.len() as i64);
        for (w, &p) in positions.iter().enumerate() {
            if p == 0 {
                self.0[w] = None;
                continue;
            }
            if self.0[w].is_none_or(|(at, _)| at != p) {
                self.0[w] = log
                    .marks_after(w, p - 1)?
                    .next()
                    .transpose()?
                    .filter(|r| r.seq == p)
                    .and_then(|r| r.mark.as_deref().and_then(|m| reread.order(m)))
                    .map(|n| (p, n));
            }
            if let Some((at, n)) = self.0[w] {
                state.push_number(format!("position.w{w}"), at as i64);
                state.push_number(format!("order.w{w}"), n as i64);
            }
        }
        state.encode()
    }
}

/// The most records whose events are read again at once: memory stays bounded however many
/// records follow the checkpoint (a run cut here is read on from its next event's start).
pub const REREAD_RUN: usize = 4096;

/// What [`prepare`] found after the checkpoint.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Prepared {
    /// Records kept, to be replayed.
    pub kept: usize,
    /// Records cut off: the source reads their events again as it goes on.
    pub cut: usize,
}

/// Readies the log of a re-reading source for a run resuming from the checkpoint whose log
/// positions are `positions` and that holds the events up to `held` (its [`HELD_PART`]; the log
/// is read for checkpoints without it): keeps the records after it that follow on without a
/// gap from what it holds, and cuts off the others (see the module's documentation).
pub fn prepare(
    log: &InputLog,
    reread: &dyn Reread,
    positions: &[u64],
    held: Option<u64>,
) -> Result<Prepared, String> {
    let order = |r: &Record| {
        r.mark
            .as_deref()
            .and_then(|m| reread.order(m))
            .ok_or_else(|| format!("input log record {} has no position in the file", r.seq))
    };
    // The latest event the checkpoint holds: all before it are held or logged after it. The
    // record at a worker's position may have been trimmed away (its position stayed put over
    // two checkpoints while its next record opened a segment): the checkpoint says.
    let from_checkpoint = held.is_some();
    let mut held = held.unwrap_or(0);
    // Per worker, its records after the checkpoint: (seq, order).
    let mut after: Vec<Vec<(u64, u64)>> = Vec::new();
    // Order -> why its event cannot be replayed, if it cannot.
    let mut logged: HashMap<u64, Result<(), String>> = HashMap::new();
    for (w, &p) in positions.iter().enumerate().take(log.workers()) {
        if p > 0 {
            match log.marks_after(w, p - 1)?.next().transpose()? {
                Some(r) if r.seq == p => held = held.max(order(&r)?),
                _ if from_checkpoint => {}
                _ => tracing::warn!(
                    worker = w,
                    position = p,
                    "the checkpoint's input log record is missing"
                ),
            }
        }
        let mut records = Vec::new();
        for r in log.marks_after(w, p)? {
            let r = r?;
            let n = order(&r)?;
            let replayable = match (&r.mark, r.kept) {
                (_, true) => Ok(()),
                (Some(m), false) => reread.can_reread(m),
                (None, false) => Err(format!("input log record {} has no mark", r.seq)),
            };
            logged.insert(n, replayable);
            records.push((r.seq, n));
        }
        after.push(records);
    }
    // The first event after the checkpoint that cannot be replayed: lost in the crash, or in a
    // file changed since. The source goes on reading from there.
    let mut gap = held + 1;
    while logged.get(&gap).is_some_and(Result::is_ok) {
        gap += 1;
    }
    // Events up to the checkpoint's latest that it does not hold (another worker's, logged
    // before it) must be replayed: the source goes on after them. One that cannot be read again
    // (its file rewritten or gone since) would be lost: the rule does not start, and says so.
    let mut lost: Vec<(u64, String)> = logged
        .iter()
        .filter(|(n, _)| **n < gap)
        .filter_map(|(n, r)| r.as_ref().err().map(|e| (*n, e.clone())))
        .collect();
    if !lost.is_empty() {
        lost.sort();
        let events: Vec<String> = lost.iter().map(|(n, _)| n.to_string()).collect();
        return Err(format!(
            "events {} logged before the last checkpoint and not yet processed cannot be read again ({}): restore the file or reset the rule's state",
            events.join(", "),
            lost[0].1
        ));
    }
    let mut prepared = Prepared::default();
    for (w, records) in after.iter().enumerate() {
        let keep = records.iter().take_while(|(_, n)| *n < gap).count();
        prepared.kept += keep;
        if let Some(&(seq, _)) = records.get(keep) {
            prepared.cut += records.len() - keep;
            log.cut_after(w, seq - 1)?;
        }
    }
    Ok(prepared)
}

/// Feeds each worker's queue the events of its records after `positions`, in the order the
/// source handed them over: those whose records hold only their marks read again from the
/// source's input, a run at a time. Blocking. Returns the events replayed.
pub fn replay(
    log: &InputLog,
    reread: &dyn Reread,
    positions: &[u64],
    queues: &[Sender<SourceEvent>],
    wake: &WakeFn,
) -> Result<usize, String> {
    let mut replays = positions
        .iter()
        .enumerate()
        .take(queues.len())
        .map(|(w, &p)| log.read_after(w, p))
        .collect::<Result<Vec<_>, _>>()?;
    // Each worker's next record, with its order.
    let mut heads: Vec<Option<(u64, Record)>> = Vec::with_capacity(replays.len());
    let next = |replay: &mut super::log::Replay| -> Result<Option<(u64, Record)>, String> {
        let Some(r) = replay.next() else {
            return Ok(None);
        };
        let r = r?;
        let n = r
            .mark
            .as_deref()
            .and_then(|m| reread.order(m))
            .ok_or_else(|| format!("input log record {} has no position in the file", r.seq))?;
        Ok(Some((n, r)))
    };
    for replay in &mut replays {
        heads.push(next(replay)?);
    }
    let send = |w: usize, seq: u64, at: u64, event: SourceEvent| -> bool {
        let event = SourceEvent::Logged {
            seq,
            at,
            event: Box::new(event),
        };
        if queues[w].blocking_send(event).is_err() {
            return false;
        }
        wake(w);
        true
    };
    let stopped = || "the rule stopped during the replay".to_string();
    // Records whose events are read again together: (worker, seq, at, mark).
    let mut run: Vec<(usize, u64, u64, Vec<u8>)> = Vec::new();
    let flush = |run: &mut Vec<(usize, u64, u64, Vec<u8>)>| -> Result<usize, String> {
        if run.is_empty() {
            return Ok(0);
        }
        let marks: Vec<&[u8]> = run.iter().map(|(_, _, _, m)| m.as_slice()).collect();
        let mut sent = 0;
        let mut give = |k: usize, event: SourceEvent| {
            let (w, seq, at, _) = run[k];
            let ok = send(w, seq, at, event);
            sent += usize::from(ok);
            ok
        };
        reread.reread(&marks, &mut give)?;
        if sent < run.len() {
            return Err(stopped());
        }
        run.clear();
        Ok(sent)
    };
    let mut sent = 0;
    while let Some(w) = (0..heads.len())
        .filter(|&w| heads[w].is_some())
        .min_by_key(|&w| heads[w].as_ref().map(|(n, _)| *n))
    {
        let (_, r) = heads[w].take().expect("picked a worker with a record");
        heads[w] = next(&mut replays[w])?;
        match r.event {
            Some(event) => {
                sent += flush(&mut run)?;
                if !send(w, r.seq, r.at, event) {
                    return Err(stopped());
                }
                sent += 1;
            }
            None => {
                let mark = r.mark.expect("ordered records have marks");
                // `prepare` found it readable again: a file changed since then fails the replay
                // rather than lose its rows.
                reread.can_reread(&mark)?;
                run.push((w, r.seq, r.at, mark));
                if run.len() >= REREAD_RUN {
                    sent += flush(&mut run)?;
                }
            }
        }
    }
    sent += flush(&mut run)?;
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use quiver_connectors::RawMessage;
    use std::sync::Arc;

    /// Marks are the event's order in text, `x` before it when its input changed; an event
    /// read again is its mark.
    struct TextMarks;

    impl Reread for TextMarks {
        fn order(&self, mark: &[u8]) -> Option<u64> {
            std::str::from_utf8(mark)
                .ok()?
                .trim_start_matches('x')
                .parse()
                .ok()
        }

        fn can_reread(&self, mark: &[u8]) -> Result<(), String> {
            if mark.starts_with(b"x") {
                Err("changed".into())
            } else {
                Ok(())
            }
        }

        fn reread(
            &self,
            marks: &[&[u8]],
            give: &mut (dyn FnMut(usize, SourceEvent) -> bool + Send),
        ) -> Result<(), String> {
            for (k, m) in marks.iter().enumerate() {
                self.can_reread(m).unwrap();
                if !give(k, event(&format!("again {}", String::from_utf8_lossy(m)))) {
                    break;
                }
            }
            Ok(())
        }
    }

    fn event(text: &str) -> SourceEvent {
        SourceEvent::Raw(vec![RawMessage::new(
            Bytes::copy_from_slice(text.as_bytes()),
            Arc::from("t"),
        )])
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("quiver-reread-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Events 1, 2, ... spread over two workers' logs (odd ones on worker 0) as `marks` says,
    /// one word each: the event's mark, `+` after it when its record keeps its event, `-` for
    /// an event lost in a crash.
    fn logged(name: &str, marks: &str) -> InputLog {
        let log = InputLog::open(&dir(name), 2).unwrap();
        for (i, word) in marks.split(' ').enumerate() {
            if word == "-" {
                continue;
            }
            let mark = word.trim_end_matches('+');
            let kept = event(&format!("kept {mark}"));
            let keep = word.ends_with('+').then_some(&kept);
            log.append_place(i % 2, i as u64, keep, mark.as_bytes())
                .unwrap();
        }
        log
    }

    /// What each worker's queue got: (seq, at, text).
    type Got = Vec<Vec<(u64, u64, String)>>;

    /// Replays `log` after `positions` into two queues.
    fn replayed(log: &InputLog, positions: &[u64]) -> Got {
        let (tx, mut rx): (Vec<_>, Vec<_>) = (0..2).map(|_| tokio::sync::mpsc::channel(16)).unzip();
        let wake: WakeFn = Arc::new(|_| {});
        replay(log, &TextMarks, positions, &tx, &wake).unwrap();
        drop(tx);
        rx.iter_mut()
            .map(|rx| {
                let mut got = Vec::new();
                while let Ok(SourceEvent::Logged { seq, at, event }) = rx.try_recv() {
                    let m = event.into_messages().unwrap();
                    got.push((seq, at, String::from_utf8(m[0].payload.to_vec()).unwrap()));
                }
                got
            })
            .collect()
    }

    /// Logs `marks` (see [`logged`]), prepares the log for a checkpoint at `positions` and
    /// replays it: what was kept and cut, the last mark of worker 0, and what each worker got.
    fn restart(name: &str, marks: &str, positions: [u64; 2]) -> (Prepared, Option<Vec<u8>>, Got) {
        let log = logged(name, marks);
        let prepared = prepare(&log, &TextMarks, &positions, None).unwrap();
        (
            prepared,
            log.last_mark(0).unwrap(),
            replayed(&log, &positions),
        )
    }

    #[test]
    fn records_after_a_gap_are_cut_and_the_rest_read_again_in_order() {
        let again = |w0: &[(u64, u64, &str)], w1: &[(u64, u64, &str)]| {
            [w0, w1]
                .iter()
                .map(|w| w.iter().map(|&(s, a, t)| (s, a, t.to_string())).collect())
                .collect::<Vec<Vec<_>>>()
        };
        let cases = [
            // Worker 0: 1 3 5 7; worker 1: 2 4 (6 was lost); 5 keeps its event. The checkpoint
            // holds 1 and 3 (worker 0 at 2) and 2 (worker 1 at 1). Worker 0's last mark is the
            // event before the gap: where the source goes on.
            (
                "gap",
                "1 2 3 4 5+ - 7",
                [2, 1],
                (Prepared { kept: 2, cut: 1 }, "5"),
                again(&[(3, 4, "kept 5")], &[(2, 3, "again 4")]),
            ),
            // Worker 0: 1 3 x5 7 (5's file changed); worker 1: 2 4 6. The checkpoint holds 1
            // and 2: 3 and 4 are read again, the source goes on after 4.
            (
                "changed",
                "1 2 3 4 x5 6 7",
                [1, 1],
                (Prepared { kept: 2, cut: 3 }, "3"),
                again(&[(2, 2, "again 3")], &[(2, 3, "again 4")]),
            ),
            // Nothing logged after the checkpoint: nothing is cut or replayed.
            (
                "none",
                "1 2",
                [1, 1],
                (Prepared::default(), "1"),
                again(&[], &[]),
            ),
        ];
        for (name, marks, positions, (prepared, last), events) in cases {
            let got = restart(name, marks, positions);
            let want = (prepared, Some(last.as_bytes().to_vec()), events);
            assert_eq!(got, want, "{name}");
        }
    }

    /// Worker 0: 1 3 x5 7 (5's file changed); worker 1: 2 4 6. The checkpoint holds 1 to 3 and
    /// 6 (worker 0 at 2, worker 1 at 3): 5 is before what it holds, so the source will not read
    /// it again, and the log cannot replay it. The rule's start fails naming it, and nothing is
    /// cut.
    #[test]
    fn an_event_before_the_checkpoint_that_cannot_be_read_again_fails_the_start() {
        let log = logged("lost", "1 2 3 4 x5 6 7");
        let e = prepare(&log, &TextMarks, &[2, 3], None).unwrap_err();
        assert!(e.contains("events 5 ") && e.contains("changed"), "{e}");
        assert_eq!(log.last_mark(0).unwrap(), Some(b"7".to_vec()));
    }

    /// Events 1 2 (worker 1), 3 (worker 0, closing its segment), 4 (worker 1), 5 (worker 0).
    /// A checkpoint at positions [1, 2] holds 1 to 3; worker 0's position stays put over the
    /// next checkpoint, whose commit trims its first segment, record 3 with it. The checkpoint's
    /// own part still says it holds 3: 4 and 5 are kept and replayed, and the source goes on
    /// after 5, reading nothing twice.
    #[test]
    fn what_a_checkpoint_holds_survives_its_record_being_trimmed() {
        let log = InputLog::open(&dir("trimmed"), 2).unwrap();
        for (w, mark) in [(1, "1"), (1, "2"), (0, "3")] {
            log.append_place(w, 0, None, mark.as_bytes()).unwrap();
        }
        log.close_segment(0);
        for (w, mark) in [(1, "4"), (0, "5")] {
            log.append_place(w, 0, None, mark.as_bytes()).unwrap();
        }
        let positions = [1, 2];
        let part = Held::default()
            .update(&log, &TextMarks, &positions)
            .unwrap();
        log.truncate_through(0, 1).unwrap();
        let parts = [(HELD_PART.to_string(), part)].into_iter().collect();
        let held = Held::restored(&parts).latest(&positions);
        assert_eq!(held, Some(3));
        let prepared = prepare(&log, &TextMarks, &positions, held).unwrap();
        assert_eq!(prepared, Prepared { kept: 2, cut: 0 });
        assert_eq!(log.last_mark(0).unwrap(), Some(b"5".to_vec()));
        // A checkpoint without the part (older) has none.
        assert_eq!(Held::restored(&Default::default()).latest(&positions), None);
    }

    /// Counts the marks of the largest read again at once.
    #[derive(Default)]
    struct Widest(std::sync::atomic::AtomicUsize);

    impl Reread for Widest {
        fn order(&self, mark: &[u8]) -> Option<u64> {
            TextMarks.order(mark)
        }

        fn can_reread(&self, mark: &[u8]) -> Result<(), String> {
            TextMarks.can_reread(mark)
        }

        fn reread(
            &self,
            marks: &[&[u8]],
            give: &mut (dyn FnMut(usize, SourceEvent) -> bool + Send),
        ) -> Result<(), String> {
            self.0
                .fetch_max(marks.len(), std::sync::atomic::Ordering::Relaxed);
            TextMarks.reread(marks, give)
        }
    }

    /// Many records after the checkpoint are read again a bounded run at a time, every event
    /// once and in order.
    #[test]
    fn many_records_are_read_again_in_bounded_runs() {
        let n = 2 * REREAD_RUN + 10;
        let marks: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        let log = logged("many", &marks.join(" "));
        let widest = Widest::default();
        let (tx, mut rx): (Vec<_>, Vec<_>) = (0..2).map(|_| tokio::sync::mpsc::channel(n)).unzip();
        let wake: WakeFn = Arc::new(|_| {});
        let sent = replay(&log, &widest, &[0, 0], &tx, &wake).unwrap();
        assert_eq!(sent, n);
        let widest = widest.0.into_inner();
        assert!(widest <= REREAD_RUN && widest > 0, "{widest} marks at once");
        let order = |t: &String| t.trim_start_matches("again ").parse::<usize>().unwrap();
        let mut got = Vec::new();
        for rx in &mut rx {
            let mut worker = Vec::new();
            while let Ok(SourceEvent::Logged { event, .. }) = rx.try_recv() {
                let m = event.into_messages().unwrap();
                worker.push(String::from_utf8(m[0].payload.to_vec()).unwrap());
            }
            assert!(
                worker.is_sorted_by_key(order),
                "a worker's events out of order"
            );
            got.extend(worker);
        }
        got.sort_by_key(order);
        let want: Vec<String> = marks.iter().map(|m| format!("again {m}")).collect();
        assert_eq!(got, want);
    }
}
