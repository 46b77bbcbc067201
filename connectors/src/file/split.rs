//! A file input split across the processes of a cluster: process `p` of `P` reads, of each
//! file, the whole lines (CSV: records) that begin in its byte range `[len·p/P, len·(p+1)/P)`.
//!
//! A line belongs to the range its first byte is in. A range that does not start at 0 starts
//! at the first line that begins in it: at its start when the byte before is a line end, else
//! just after the first line end at or after its start. A range reads its last line through to
//! that line's end, past the range's end: it stops where the next range starts. So the ranges'
//! lines are the file's lines, each read by one process, whatever the processes and lengths
//! (a range inside one long line reads nothing). The ranges are taken of the file's length as
//! the leader listed it (`listing.rs`), so lines appended since are read by no process.
//!
//! CSV: a quoted value may hold line ends, which do not end a record, so a CSV range finds
//! where its records begin by following the quotes from the file's start (a scan of the bytes
//! before its end, not a parse into rows). The header is read by every process for the column
//! names, and is a row of no range.
//!
//! A file that cannot be entered part way but can be read whole by any one process (a
//! compressed file, a JSON document) is read whole by one process: the one its name hashes to
//! ([`Share::owns_whole`]), so a folder of such files is spread over the processes. What
//! cannot be split at all is read by the leader alone (see [`unsplittable`]).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::config::{AfterRead, FileSourceConfig, FileType};
use crate::codec::compress::Compression;

/// The part of a cluster's file input one process reads: process `process` of `processes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// This process's index, from 0.
    pub process: usize,
    /// The processes that read the input, each its part.
    pub processes: usize,
}

impl Share {
    /// The byte range `[len·p/P, len·(p+1)/P)` of a file of `len` bytes.
    fn range(self, len: u64) -> (u64, u64) {
        let at = |p: usize| (u128::from(len) * p as u128 / self.processes.max(1) as u128) as u64;
        (at(self.process), at(self.process + 1))
    }

    /// True when this process reads `file` whole, for files read whole by one process: the
    /// one the CRC32 of the file's name picks. The name alone decides, so two processes that
    /// listed the folder at different moments still agree on every file both saw (a listing
    /// index would move every file after one added in between).
    pub fn owns_whole(self, file: &Path) -> bool {
        let name = file.file_name().map_or(file.as_os_str(), |n| n);
        let hash = crc32fast::hash(name.as_encoded_bytes());
        hash as usize % self.processes.max(1) == self.process
    }
}

/// Why the input of `config` cannot be split across processes, so the leader reads it whole;
/// `None` when every process can read its part.
pub fn unsplittable(config: &FileSourceConfig) -> Option<&'static str> {
    if config.interval.is_some() {
        Some("a file read again every interval may have changed by the next read")
    } else if config.after_read != AfterRead::Keep {
        Some("actionAfterRead would delete or move the file while other processes read it")
    } else if config.ignore_start_lines > 0 || config.ignore_end_lines > 0 {
        Some("ignoreStartLines and ignoreEndLines count lines from the ends of the whole file")
    } else if config.send_interval.is_some() {
        Some("sendInterval paces the rows of the whole input, not of each process's part")
    } else {
        None
    }
}

/// What one process reads of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// All of it.
    Whole,
    /// The whole lines (or CSV records) in bytes `start..end`: `start` is where the first
    /// one begins, `end` where the last one ends (the next range's `start`).
    Span { start: u64, end: u64 },
    /// None of it.
    Nothing,
}

/// The part of `file` (of type `file_type`) that process `share` reads. A CSV part that does
/// not start at 0 may still hold the header: the reader skips it.
pub(super) fn part(
    config: &FileSourceConfig,
    file: &Path,
    file_type: FileType,
    share: Share,
) -> Result<Part, String> {
    if file_type == FileType::Json || config.decompression != Compression::None {
        // Neither can be entered part way: each file is read whole, by one process.
        return Ok(if share.owns_whole(file) {
            Part::Whole
        } else {
            Part::Nothing
        });
    }
    let mut opened = File::open(file).map_err(|e| e.to_string())?;
    // The leader's length when it listed the input: what was appended since is read by no
    // process, so every range is cut of the same length.
    let len = match config.agreed.as_ref().and_then(|a| a.length(file)) {
        Some(len) => len,
        None => opened.metadata().map_err(|e| e.to_string())?.len(),
    };
    let (start, end) = match file_type {
        FileType::Csv => csv_span(&mut opened, len, share, config.delimiter),
        _ => line_span(&mut opened, len, share),
    }
    .map_err(|e| e.to_string())?;
    Ok(if start < end {
        Part::Span { start, end }
    } else {
        Part::Nothing
    })
}

/// Bytes searched at a time for a line end, and read at a time by the CSV scan.
const SCAN_BLOCK: u64 = 64 * 1024;

/// The lines of `file` (`len` bytes) that begin in `share`'s range: `(start, end)`.
fn line_span(file: &mut (impl Read + Seek), len: u64, share: Share) -> std::io::Result<(u64, u64)> {
    let (from, to) = share.range(len);
    Ok((line_start(file, len, from)?, line_start(file, len, to)?))
}

/// Where the first line that begins at or after byte `x` begins: `x` itself when it is 0 or
/// the byte before it ends a line, else just after the first line end after `x`, else `len`.
fn line_start(file: &mut (impl Read + Seek), len: u64, x: u64) -> std::io::Result<u64> {
    if x == 0 || x >= len {
        return Ok(x.min(len));
    }
    // From the byte before `x`: a line end there makes `x` a line's first byte.
    let mut at = x - 1;
    file.seek(SeekFrom::Start(at))?;
    let mut block = Vec::with_capacity(SCAN_BLOCK as usize);
    loop {
        block.clear();
        let read = file.by_ref().take(SCAN_BLOCK).read_to_end(&mut block)?;
        if read == 0 {
            return Ok(len);
        }
        if let Some(n) = memchr::memchr(b'\n', &block) {
            return Ok((at + n as u64 + 1).min(len));
        }
        at += read as u64;
    }
}

/// The CSV records of `file` (`len` bytes) that begin in `share`'s range: `(start, end)`.
/// Follows the quotes from the file's start up to the range's end (the last range: its start).
fn csv_span(
    file: &mut (impl Read + Seek),
    len: u64,
    share: Share,
    delimiter: u8,
) -> std::io::Result<(u64, u64)> {
    let (from, to) = share.range(len);
    if from == 0 && to >= len {
        return Ok((0, len));
    }
    file.seek(SeekFrom::Start(0))?;
    let mut records = Records::new(file.by_ref().take(len), delimiter);
    let start = records.start_at_or_after(from)?;
    let end = if to >= len {
        len
    } else {
        records.start_at_or_after(to)?
    };
    Ok((start, end))
}

/// Where a CSV file's records begin, found by following its quotes as the reader does
/// (`reader::next_record`): a line end outside quotes ends a record; a quote opens a quoted
/// value only at a value's start (after blanks); in one, `""` is a quote and `"` closes it.
struct Records<R> {
    inner: R,
    block: Vec<u8>,
    /// The next byte of `block` to look at.
    next: usize,
    /// The file offset of `block[0]`.
    block_at: u64,
    state: Quoting,
    /// Outside quotes: nothing but blanks since the record's or value's start.
    at_start: bool,
    delimiter: u8,
    started: bool,
    /// The last record start found: a range's start may be the next range's too.
    found: u64,
}

/// Where the scan is with respect to quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    Outside,
    Inside,
    /// Inside, just after a quote: another quote makes it an escaped one, anything else
    /// closed the value.
    InsideAfterQuote,
}

impl<R: Read> Records<R> {
    /// A scan of the records of `inner`, positioned at the file's start.
    fn new(inner: R, delimiter: u8) -> Self {
        Records {
            inner,
            block: Vec::new(),
            next: 0,
            block_at: 0,
            state: Quoting::Outside,
            at_start: true,
            delimiter,
            started: false,
            found: 0,
        }
    }

    /// Where the first record that begins at or after byte `x` begins (the file's length
    /// when none does). Calls go forward: `x` no less than the last call's.
    fn start_at_or_after(&mut self, x: u64) -> std::io::Result<u64> {
        if x <= self.found {
            return Ok(self.found);
        }
        loop {
            if self.next == self.block.len() {
                self.block_at += self.block.len() as u64;
                self.block.clear();
                self.next = 0;
                let read = self
                    .inner
                    .by_ref()
                    .take(SCAN_BLOCK)
                    .read_to_end(&mut self.block)?;
                if read == 0 {
                    // The end of the file ends the last record.
                    self.found = self.block_at;
                    return Ok(self.found);
                }
                // The reader drops a byte order mark before the first line.
                if !std::mem::replace(&mut self.started, true)
                    && self.block.starts_with(b"\xEF\xBB\xBF")
                {
                    self.next = 3;
                }
            }
            let b = self.block[self.next];
            self.next += 1;
            if self.step(b) {
                let begins = self.block_at + self.next as u64;
                if begins >= x {
                    self.found = begins;
                    return Ok(begins);
                }
            }
        }
    }

    /// Takes byte `b`; true when it ends a record (the next record begins after it).
    fn step(&mut self, b: u8) -> bool {
        match (self.state, b) {
            (Quoting::Inside, b'"') => self.state = Quoting::InsideAfterQuote,
            (Quoting::Inside, _) => {}
            (Quoting::InsideAfterQuote, b'"') => self.state = Quoting::Inside,
            // Outside, or just after the closing quote (whose value began, so not at a start).
            (Quoting::Outside | Quoting::InsideAfterQuote, _) => {
                self.state = Quoting::Outside;
                if b == b'\n' {
                    self.at_start = true;
                    return true;
                }
                if b == self.delimiter {
                    self.at_start = true;
                } else if self.at_start && (b == b' ' || b == b'\t') {
                    // Blanks before a value are not part of it.
                } else if self.at_start && b == b'"' {
                    self.state = Quoting::Inside;
                    self.at_start = false;
                } else {
                    self.at_start = false;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::super::cursor::Progress;
    use super::super::reader::{read_file, tests::texts};
    use super::*;
    use std::io::Cursor;
    use std::path::PathBuf;
    use std::time::Duration;

    /// The spans of `text` for each of `processes` processes: lines, or CSV records.
    fn spans(text: &[u8], processes: usize, csv: bool) -> Vec<(u64, u64)> {
        let len = text.len() as u64;
        (0..processes)
            .map(|process| {
                let share = Share { process, processes };
                let mut file = Cursor::new(text);
                if csv {
                    csv_span(&mut file, len, share, b',').unwrap()
                } else {
                    line_span(&mut file, len, share).unwrap()
                }
            })
            .collect()
    }

    /// The spans cover `text` end to end, in order, each starting where a line begins.
    fn check_spans(text: &[u8], processes: usize, csv: bool) -> Vec<(u64, u64)> {
        let spans = spans(text, processes, csv);
        let mut at = 0;
        for (p, &(start, end)) in spans.iter().enumerate() {
            assert_eq!(start, at, "process {p} of {processes}: {spans:?}");
            assert!(end >= start, "process {p} of {processes}: {spans:?}");
            assert!(
                start == 0 || text[start as usize - 1] == b'\n',
                "process {p} of {processes} starts mid-line: {spans:?}"
            );
            at = end;
        }
        assert_eq!(at, text.len() as u64, "{processes}: {spans:?}");
        spans
    }

    #[test]
    fn a_line_beginning_exactly_at_a_range_start_belongs_to_that_range() {
        // 10 bytes: the second line begins at byte 5, where process 1 of 2's range begins.
        let text = b"aaaa\nbbbb\n";
        assert_eq!(spans(text, 2, false), vec![(0, 5), (5, 10)]);
        assert_eq!(spans(text, 2, true), vec![(0, 5), (5, 10)]);
        // One byte earlier (byte 4), it is process 0's: it begins in its range.
        let text = b"aaa\nbbbbb\n";
        assert_eq!(spans(text, 2, false), vec![(0, 10), (10, 10)]);
        assert_eq!(spans(text, 2, true), vec![(0, 10), (10, 10)]);
        // One byte later (byte 6), process 1's range begins with the line end before it.
        let text = b"aaaaa\nbbb\n";
        assert_eq!(spans(text, 2, false), vec![(0, 6), (6, 10)]);
        assert_eq!(spans(text, 2, true), vec![(0, 6), (6, 10)]);
    }

    #[test]
    fn a_range_inside_one_long_line_reads_nothing() {
        let mut text = vec![b'x'; 1000];
        text.extend_from_slice(b"\nshort\n");
        let spans = check_spans(&text, 4, false);
        assert_eq!(
            spans,
            vec![(0, 1001), (1001, 1001), (1001, 1001), (1001, 1007)]
        );
        // A line longer than a scan block.
        let mut text = vec![b'y'; 3 * SCAN_BLOCK as usize];
        text.push(b'\n');
        assert_eq!(
            check_spans(&text, 3, false),
            vec![
                (0, text.len() as u64),
                (text.len() as u64, text.len() as u64),
                (text.len() as u64, text.len() as u64)
            ]
        );
    }

    #[test]
    fn crlf_no_trailing_newline_empty_files_and_more_processes_than_lines() {
        check_spans(b"a\r\nbb\r\nccc\r\n", 2, false);
        check_spans(b"a\r\nbb\r\nccc", 2, false);
        assert_eq!(spans(b"", 3, false), vec![(0, 0); 3]);
        assert_eq!(spans(b"", 3, true), vec![(0, 0); 3]);
        let text = b"1\n22\n3\n";
        for processes in 1..=20 {
            check_spans(text, processes, false);
            check_spans(text, processes, true);
        }
        // Every boundary of a file of varied lines, for every number of processes up to 40.
        let text: String = (0..60)
            .map(|i| format!("{}\n", "z".repeat(i * 7 % 13)))
            .collect();
        for processes in 1..=40 {
            check_spans(text.as_bytes(), processes, false);
        }
    }

    #[test]
    fn a_csv_record_with_line_ends_in_quotes_is_read_by_one_range() {
        let text = b"h1,h2\n1,\"a\nb\nc\"\n2, \"x\"\"\ny\"\n3,\"\"\n4,z\"\nw\n";
        // Where records begin: after the header, after each record.
        let begins = [0u64, 6, 16, 27, 32, 37, 39];
        assert_eq!(text.len(), 39);
        for processes in 1..=text.len() + 2 {
            for (start, end) in check_spans(text, processes, true) {
                assert!(begins.contains(&start), "{processes}: {start}");
                assert!(begins.contains(&end) || end == text.len() as u64);
            }
        }
        // A range starting inside the first quoted value begins at the next record.
        let mut records = Records::new(Cursor::new(&text[..]), b',');
        assert_eq!(records.start_at_or_after(9).unwrap(), 16);
        // `""` in quotes is a quote: the value goes on over the line end.
        assert_eq!(records.start_at_or_after(17).unwrap(), 27);
        // `z"` is no quoted value: the line end after it ends the record.
        assert_eq!(records.start_at_or_after(35).unwrap(), 37);
        assert_eq!(records.start_at_or_after(38).unwrap(), 39);
    }

    #[test]
    fn a_byte_order_mark_is_no_part_of_the_first_value() {
        // The quote after the mark opens a quoted value, as the reader reads it.
        let text = b"\xEF\xBB\xBF\"a\nb\",1\n2,3\n";
        let mut records = Records::new(Cursor::new(&text[..]), b',');
        assert_eq!(records.start_at_or_after(1).unwrap(), 11);
    }

    /// Every row of `name` as one reader reads it, and as `processes` processes read it
    /// together, in order.
    fn whole_and_split(name: &str, text: &[u8], props: serde_json::Value, processes: usize) {
        let dir = std::env::temp_dir().join(format!("quiver-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        let mut config = FileSourceConfig::parse("x", props.as_object().unwrap()).unwrap();
        // (A paced input is not split, but a reader of lines one by one is tried here too.)
        config.send_interval = config.send_interval.map(|_| Duration::ZERO);
        let read = |config: &FileSourceConfig| {
            let mut rows = Vec::new();
            read_file(config, &file, Progress::default(), &mut |event, _| {
                rows.extend(texts(event));
                true
            })
            .unwrap();
            rows
        };
        let whole = read(&config);
        let mut split = Vec::new();
        for process in 0..processes {
            config.share = Some(Share { process, processes });
            split.extend(read(&config));
        }
        assert_eq!(split, whole, "{name} on {processes} processes");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn processes_together_read_every_row_once() {
        let lines: String = (0..500)
            .map(|i| format!("{{\"id\":{i},\"pad\":\"{}\"}}\n", "p".repeat(i * 31 % 97)))
            .collect();
        let crlf = lines.replace('\n', "\r\n");
        let unterminated = lines.trim_end();
        let csv: String = std::iter::once("\u{feff}name,id\n".to_string())
            .chain((0..300).map(|i| format!("\"a\nb {i}\"\"\",{i}\n\n")))
            .collect();
        for processes in [1, 2, 3, 7, 64, 2000] {
            for (name, text, props) in [
                ("a.jsonl", lines.as_str(), serde_json::json!({})),
                ("b.jsonl", crlf.as_str(), serde_json::json!({})),
                ("c.jsonl", unterminated, serde_json::json!({})),
                // Line by line, not in blocks.
                (
                    "d.jsonl",
                    lines.as_str(),
                    serde_json::json!({"sendInterval": 1}),
                ),
                ("e.csv", csv.as_str(), serde_json::json!({})),
                (
                    "f.csv",
                    csv.as_str(),
                    serde_json::json!({"columns": ["x", "y"], "hasHeader": true}),
                ),
                ("g.jsonl", "", serde_json::json!({})),
            ] {
                whole_and_split(name, text.as_bytes(), props, processes);
            }
            // Read whole, by the one process the name picks.
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, lines.as_bytes()).unwrap();
            let gz = gz.finish().unwrap();
            let gzip = serde_json::json!({"decompression": "gzip"});
            whole_and_split("h.jsonl.gz", &gz, gzip, processes);
            let doc = format!("[{}]", lines.trim_end().replace('\n', ","));
            whole_and_split("i.json", doc.as_bytes(), serde_json::json!({}), processes);
        }
    }

    #[test]
    fn whole_files_are_spread_over_the_processes_by_name() {
        let files: Vec<PathBuf> = (0..40)
            .map(|i| PathBuf::from(format!("/in/part-{i:03}.jsonl.gz")))
            .collect();
        for processes in [1, 2, 3] {
            let mut owners = vec![0; processes];
            for file in &files {
                let owning: Vec<usize> = (0..processes)
                    .filter(|&process| Share { process, processes }.owns_whole(file))
                    .collect();
                assert_eq!(owning.len(), 1, "{} on {processes}", file.display());
                owners[owning[0]] += 1;
            }
            // Every process takes a share of 40 files (each at least a fifth of its even one).
            assert!(
                owners.iter().all(|&n| n * 5 * processes >= 40),
                "{owners:?}"
            );
            // The name decides, not the folder it is listed in.
            let moved = PathBuf::from("/elsewhere/part-007.jsonl.gz");
            let share = Share {
                process: 0,
                processes,
            };
            assert_eq!(share.owns_whole(&moved), share.owns_whole(&files[7]));
        }
    }

    #[test]
    fn what_cannot_be_entered_part_way_is_not_split() {
        let parse = |props: serde_json::Value| {
            FileSourceConfig::parse("x.jsonl", props.as_object().unwrap()).unwrap()
        };
        assert_eq!(
            unsplittable(&parse(serde_json::json!({"fileType": "csv"}))),
            None
        );
        // Read whole, each file by one process.
        for props in [
            serde_json::json!({"fileType": "json"}),
            serde_json::json!({"decompression": "gzip"}),
        ] {
            assert_eq!(unsplittable(&parse(props.clone())), None, "{props}");
        }
        for props in [
            serde_json::json!({"interval": "1s"}),
            serde_json::json!({"actionAfterRead": 1}),
            serde_json::json!({"ignoreStartLines": 1}),
            serde_json::json!({"ignoreEndLines": 1}),
            serde_json::json!({"sendInterval": "10ms"}),
        ] {
            assert!(unsplittable(&parse(props.clone())).is_some(), "{props}");
        }
    }
}
