//! A file source's events read again from their files after a restart.
//!
//! At qos 1 and 2 the rule's input log holds, for each event of a file source, where it lies in
//! its file (its [`Cursor`]: from where to where), not the event itself: the file is durable
//! and can be read again. After a restart the events the last checkpoint does not hold are read
//! again here, cut exactly as they were the first time, so each worker gets the same events as
//! before the crash.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;

use super::config::{FileSourceConfig, FileType};
use super::cursor::{Cursor, FileId, Progress};
use super::reader;
use crate::SourceEvent;

/// The order of a logged event among the source's events (its cursor's count); `None` for a
/// mark that is not a cursor.
pub fn mark_order(mark: &[u8]) -> Option<u64> {
    parse(mark).map(|c| c.n)
}

/// True when the event of `mark` can be read again: the mark says where it began, and its
/// file is still there, unchanged.
pub fn rereadable(mark: &[u8]) -> bool {
    parse(mark).is_some_and(|c| c.from.is_some() && FileId::of(&c.file) == Some(c.id))
}

/// Reads the events of `marks` (in the order they were handed over) again from their files and
/// hands each to `give` with its index in `marks`; stops when `give` returns false. The events
/// of one file that follow each other are read in one pass.
pub fn reread(
    config: &FileSourceConfig,
    marks: &[&[u8]],
    give: &mut (dyn FnMut(usize, SourceEvent) -> bool + Send),
) -> Result<(), String> {
    let cursors = marks
        .iter()
        .map(|m| {
            parse(m)
                .filter(|c| c.from.is_some())
                .ok_or_else(|| "an input log mark does not say where its event began".to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Read again at once: a pause between rows was taken the first time.
    let mut config = config.clone();
    if config.send_interval.is_some() {
        config.send_interval = Some(Duration::ZERO);
    }
    let mut i = 0;
    while i < cursors.len() {
        let mut end = i + 1;
        while end < cursors.len()
            && cursors[end].file == cursors[i].file
            && cursors[end].id == cursors[i].id
            && cursors[end].from == Some(cursors[end - 1].progress)
        {
            end += 1;
        }
        if !read_run(&config, &cursors[i..end], i, give)? {
            return Ok(());
        }
        i = end;
    }
    Ok(())
}

fn parse(mark: &[u8]) -> Option<Cursor> {
    serde_json::from_slice(mark).ok()
}

/// Reads `run`, events of one file each beginning where the one before ended, handing the
/// `k`-th as `base + k`; false when `give` wanted no more.
fn read_run(
    config: &FileSourceConfig,
    run: &[Cursor],
    base: usize,
    give: &mut (dyn FnMut(usize, SourceEvent) -> bool + Send),
) -> Result<bool, String> {
    let file = &run[0].file;
    let from = run[0].from.unwrap_or_default();
    if FileId::of(file) != Some(run[0].id) {
        return Err(format!(
            "\"{}\" changed or went away since its rows were read: they cannot be read again",
            file.display()
        ));
    }
    if reader::reads_blocks(config, file) {
        return read_blocks(config, file, run, base, give);
    }
    // Chunks of rows: each event began with an empty chunk where the one before ended, so a
    // read from the first one's start cuts the same chunks.
    let json = config.file_type_for(file) == FileType::Json;
    let same = |a: &Progress, b: &Progress| {
        if json {
            a.rows == b.rows
        } else {
            a.offset == b.offset
        }
    };
    let (mut next, mut wanted, mut astray) = (0, true, None);
    let mut emit = |event: SourceEvent, progress: Progress| {
        if !same(&progress, &run[next].progress) {
            astray = Some(progress);
            return false;
        }
        wanted = give(base + next, event);
        next += 1;
        wanted && next < run.len()
    };
    reader::read_rows(config, file, from, &mut emit).map_err(|e| e.to_string())?;
    if let Some(p) = astray {
        return Err(format!(
            "\"{}\" read again does not end an event where it did ({:?} against {:?})",
            file.display(),
            p,
            run[next].progress
        ));
    }
    if wanted && next < run.len() {
        return Err(format!(
            "\"{}\" ended before the rows read from it the first time",
            file.display()
        ));
    }
    Ok(wanted)
}

/// Blocks of whole lines: cut where the first run's reads happened to end, so each is read
/// again as the bytes between its cursors.
fn read_blocks(
    config: &FileSourceConfig,
    file: &Path,
    run: &[Cursor],
    base: usize,
    give: &mut (dyn FnMut(usize, SourceEvent) -> bool + Send),
) -> Result<bool, String> {
    let from = run[0].from.unwrap_or_default();
    let mut input = reader::open_at(config, file, from.offset).map_err(|e| e.to_string())?;
    let topic: std::sync::Arc<str> = file.display().to_string().into();
    let mut at = from.offset;
    for (k, c) in run.iter().enumerate() {
        let len = c
            .progress
            .offset
            .checked_sub(at)
            .ok_or("a mark goes backwards")?;
        let mut block = Vec::with_capacity(len as usize);
        input
            .by_ref()
            .take(len)
            .read_to_end(&mut block)
            .map_err(|e| format!("reading \"{}\" again: {e}", file.display()))?;
        if block.len() as u64 != len {
            return Err(format!(
                "\"{}\" ended before the rows read from it the first time",
                file.display()
            ));
        }
        let mut block = Bytes::from(block);
        // The first block went out without the file's byte order mark.
        if at == 0 && block.starts_with(b"\xEF\xBB\xBF") {
            block = block.slice(3..);
        }
        at = c.progress.offset;
        let event = SourceEvent::Lines {
            block,
            topic: topic.clone(),
        };
        if !give(base + k, event) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::reader::tests::{csv_and_json, texts as rows};

    /// Read again from their marks, a file's events are the events of the first read, from
    /// the first one or from any later one.
    #[test]
    fn events_read_again_from_their_marks_are_the_same_events() {
        let dir = std::env::temp_dir().join(format!("quiver-reread-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Several read blocks (of 256 KiB) and several chunks of rows.
        let lines: String = (0..20_000)
            .map(|i| format!("{{\"id\":{i:>30}}}\n"))
            .collect();
        let short: String = (0..40).map(|i| format!("{{\"id\":{i}}}\n")).collect();
        let with_bom = format!("\u{feff}{lines}");
        let (csv, json) = csv_and_json(2500);
        let gz = {
            use std::io::Write as _;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(lines.as_bytes()).unwrap();
            gz.finish().unwrap()
        };
        let cases = [
            // Blocks of lines, cut where the reads ended.
            ("a.jsonl", with_bom.as_bytes(), serde_json::json!({})),
            (
                "b.jsonl.gz",
                gz.as_slice(),
                serde_json::json!({"decompression": "gzip"}),
            ),
            // Chunks of rows.
            (
                "c.jsonl",
                lines.as_bytes(),
                serde_json::json!({"ignoreEndLines": 2}),
            ),
            (
                "d.csv",
                csv.as_bytes(),
                serde_json::json!({"ignoreStartLines": 1, "ignoreEndLines": 1}),
            ),
            ("e.json", json.as_bytes(), serde_json::json!({})),
            (
                "f.jsonl",
                short.as_bytes(),
                serde_json::json!({"sendInterval": 1}),
            ),
        ];
        for (name, text, props) in cases {
            let file = dir.join(name);
            std::fs::write(&file, text).unwrap();
            let mut config = FileSourceConfig::parse("x", props.as_object().unwrap()).unwrap();
            config.send_interval = config.send_interval.map(|_| Duration::ZERO);
            let id = FileId::of(&file).unwrap();
            // The first read, with each event's mark as the source writes it.
            let (mut events, mut marks) = (Vec::new(), Vec::new());
            let mut before = Progress::default();
            reader::read_rows(&config, &file, before, &mut |event, progress| {
                events.push(rows(event));
                let cursor = Cursor {
                    n: marks.len() as u64 + 1,
                    round: 0,
                    file: file.clone(),
                    id,
                    progress,
                    from: Some(std::mem::replace(&mut before, progress)),
                };
                marks.push(cursor.encode());
                true
            })
            .unwrap()
            .unwrap();
            assert!(events.len() >= 3, "{name}: {} events", events.len());
            for start in [0, 1, events.len() - 1] {
                let wanted: Vec<&[u8]> = marks[start..].iter().map(Vec::as_slice).collect();
                let mut again = Vec::new();
                reread(&config, &wanted, &mut |k, event| {
                    again.push((k, rows(event)));
                    true
                })
                .unwrap();
                let expected: Vec<_> = events[start..].iter().cloned().enumerate().collect();
                assert_eq!(again, expected, "{name}: read again from event {start}");
            }
            // Every other event: each run is read from its own start.
            let odd: Vec<&[u8]> = marks.iter().skip(1).step_by(2).map(Vec::as_slice).collect();
            let mut again = Vec::new();
            reread(&config, &odd, &mut |_, event| {
                again.push(rows(event));
                true
            })
            .unwrap();
            let expected: Vec<_> = events.iter().skip(1).step_by(2).cloned().collect();
            assert_eq!(again, expected, "{name}: every other event");
            assert!(rereadable(&marks[0]));
            assert_eq!(mark_order(&marks[2]), Some(3));
        }
        // A file changed since cannot be read again, and says so.
        let file = dir.join("a.jsonl");
        let before = Cursor {
            n: 1,
            round: 0,
            file: file.clone(),
            id: FileId::of(&file).unwrap(),
            progress: Progress {
                offset: 10,
                rows: 0,
            },
            from: Some(Progress::default()),
        }
        .encode();
        std::fs::write(&file, "{\"id\": 1}\n").unwrap();
        assert!(!rereadable(&before));
        let config = FileSourceConfig::parse("x", &serde_json::Map::new()).unwrap();
        let e = reread(&config, &[&before], &mut |_, _| true).unwrap_err();
        assert!(e.contains("changed or went away"), "{e}");
        // A mark from before marks said where their events began is not read again.
        let old = br#"{"n":1,"round":0,"file":[47],"id":{"dev":0,"ino":0,"len":0,"mtime_ns":0},"progress":{"offset":1,"rows":0}}"#;
        assert!(!rereadable(old));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
