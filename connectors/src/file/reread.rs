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
use super::cursor::{Cursor, FileId, Progress, event_crc};
use super::reader;
use crate::SourceEvent;

/// The order of a logged event among the source's events (its cursor's count); `None` for a
/// mark that is not a cursor.
pub fn mark_order(mark: &[u8]) -> Option<u64> {
    parse(mark).map(|c| c.n)
}

/// Whether the event of `mark` can be read again: the mark says where it began, and its file
/// is still there, the same file (device and inode), no shorter than when it was read (rows
/// appended since are fine). Its bytes are checked against the mark's checksum as they are read
/// again ([`reread`]). The error says why not, naming the file.
pub fn rereadable(mark: &[u8]) -> Result<(), String> {
    let c = parse(mark).ok_or("an input log mark is not a file cursor")?;
    if c.from.is_none() {
        return Err(format!(
            "the input log mark of event {} in \"{}\" does not say where it began",
            c.n,
            c.file.display()
        ));
    }
    check_file(&c)
}

/// Ok when `c`'s file still holds what was read from it.
fn check_file(c: &Cursor) -> Result<(), String> {
    if FileId::of(&c.file).is_some_and(|now| c.id.still_holds(&now)) {
        Ok(())
    } else {
        Err(format!(
            "\"{}\" was replaced, shortened or removed since its rows were read",
            c.file.display()
        ))
    }
}

/// Ok when `event`, read again, has the checksum its cursor `c` logged.
fn check_crc(c: &Cursor, event: &SourceEvent) -> Result<(), String> {
    match c.crc {
        Some(crc) if crc != event_crc(event) => Err(format!(
            "\"{}\" changed since its rows were read: event {} read again differs",
            c.file.display(),
            c.n
        )),
        _ => Ok(()),
    }
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
    check_file(&run[0])?;
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
    let (mut next, mut wanted, mut astray, mut differs) = (0, true, None, None);
    let mut emit = |event: SourceEvent, progress: Progress| {
        if !same(&progress, &run[next].progress) {
            astray = Some(progress);
            return false;
        }
        if let Err(e) = check_crc(&run[next], &event) {
            differs = Some(e);
            return false;
        }
        wanted = give(base + next, event);
        next += 1;
        wanted && next < run.len()
    };
    reader::read_rows(config, file, from, &mut emit).map_err(|e| e.to_string())?;
    if let Some(e) = differs {
        return Err(e);
    }
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
        check_crc(c, &event)?;
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
                let crc = Some(event_crc(&event));
                events.push(rows(event));
                let cursor = Cursor {
                    n: marks.len() as u64 + 1,
                    round: 0,
                    file: file.clone(),
                    id,
                    progress,
                    from: Some(std::mem::replace(&mut before, progress)),
                    crc,
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
            assert_eq!(rereadable(&marks[0]), Ok(()));
            assert_eq!(mark_order(&marks[2]), Some(3));
        }
        // Rows appended to a file (or a touch) keep its events readable again; rows rewritten
        // in place are caught by their checksum; a shorter file cannot be read again, and the
        // error names it.
        let file = dir.join("g.jsonl");
        let config = FileSourceConfig::parse("x", &serde_json::Map::new()).unwrap();
        let first = "{\"id\": 1}\n";
        std::fs::write(&file, first).unwrap();
        let block = SourceEvent::Lines {
            block: Bytes::from(first),
            topic: "t".into(),
        };
        let mark = Cursor {
            n: 4,
            round: 0,
            file: file.clone(),
            id: FileId::of(&file).unwrap(),
            progress: Progress {
                offset: first.len() as u64,
                rows: 0,
            },
            from: Some(Progress::default()),
            crc: Some(event_crc(&block)),
        }
        .encode();
        let again = |mark: &[u8]| {
            let mut got = Vec::new();
            reread(&config, &[mark], &mut |_, e| {
                got.extend(rows(e));
                true
            })
            .map(|()| got)
        };
        std::fs::write(&file, format!("{first}{{\"id\": 2}}\n")).unwrap();
        assert_eq!(rereadable(&mark), Ok(()));
        assert_eq!(again(&mark), Ok(vec![first.trim_end().to_string()]));
        std::fs::write(&file, "{\"id\": 9}\n{\"id\": 2}\n").unwrap();
        assert_eq!(rereadable(&mark), Ok(()), "the same file, no shorter");
        let e = again(&mark).unwrap_err();
        assert!(e.contains("g.jsonl") && e.contains("event 4"), "{e}");
        std::fs::write(&file, "{}\n").unwrap();
        let e = rereadable(&mark).unwrap_err();
        assert!(e.contains("g.jsonl") && e.contains("shortened"), "{e}");
        assert!(again(&mark).is_err());
        // A mark from before marks said where their events began is not read again.
        let old = br#"{"n":1,"round":0,"file":[47],"id":{"dev":0,"ino":0,"len":0,"mtime_ns":0},"progress":{"offset":1,"rows":0}}"#;
        assert!(rereadable(old).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
