//! The blocking part of the file source: turns files into chunks of JSON-object payloads.
//!
//! Runs on a blocking thread ([`tokio::task::spawn_blocking`]) so file I/O never stalls the
//! async runtime. Memory is bounded by one chunk plus one line (or, for `fileType: json`, one
//! array element at a time: the document is streamed, not loaded whole).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};

use bytes::{Buf, Bytes, BytesMut};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserializer as _;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::config::{FileSourceConfig, FileType};
use super::cursor::Progress;
use super::input;
use super::split::{self, Part};
use crate::{ConnectorError, RawMessage, SourceEvent};

/// Rows per chunk (one `SourceEvent::Raw` each): large enough to amortise the per-event cost
/// on the workers, small enough that a chunk of ~100-byte rows stays around 100 KB.
pub const CHUNK_ROWS: usize = 1024;

/// Read buffer per file; larger than the default 8 KB to cut system calls on big files.
const READ_BUFFER: usize = 256 * 1024;

/// Takes one chunk of rows and how far the file is handed over with it; returns false when
/// nobody wants more (the rule stopped).
pub type Emit<'a> = dyn FnMut(SourceEvent, Progress) -> bool + Send + 'a;

/// Reads every input file once, in name order, applying `actionAfterRead` to each file read
/// whole. Returns the number of rows emitted, or `None` when the receiver went away before
/// the end.
pub fn read_input(
    config: &FileSourceConfig,
    emit: &mut Emit<'_>,
) -> Result<Option<u64>, ConnectorError> {
    let mut total = 0u64;
    for file in input::input_files(config)? {
        match read_file(config, &file, Progress::default(), emit)? {
            Some(rows) => total += rows,
            None => return Ok(None),
        }
    }
    Ok(Some(total))
}

/// Reads one file whole from `from` (what an earlier run handed over already, see
/// [`super::cursor`]), then applies `actionAfterRead` to it. Returns the number of rows
/// emitted, or `None` when the receiver went away first (the file is then left as it is).
pub fn read_file(
    config: &FileSourceConfig,
    file: &Path,
    from: Progress,
    emit: &mut Emit<'_>,
) -> Result<Option<u64>, ConnectorError> {
    let Some(rows) = read_rows(config, file, from, emit)? else {
        return Ok(None);
    };
    input::after_read(&config.after_read, file)?;
    Ok(Some(rows))
}

/// True when `file` goes out in blocks of whole lines ([`SourceEvent::Lines`]), cut where its
/// reads happen to end, rather than in chunks of rows.
pub(super) fn reads_blocks(config: &FileSourceConfig, file: &Path) -> bool {
    config.file_type_for(file) == FileType::Lines
        && config.ignore_start_lines == 0
        && config.ignore_end_lines == 0
        && config.send_interval.is_none()
}

/// [`read_file`] without `actionAfterRead`: the file is left as it is.
pub(super) fn read_rows(
    config: &FileSourceConfig,
    file: &Path,
    from: Progress,
    emit: &mut Emit<'_>,
) -> Result<Option<u64>, ConnectorError> {
    let file_type = config.file_type_for(file);
    let topic: Arc<str> = file.display().to_string().into();
    let reading = |reason: String| io_error(format!("reading \"{}\": {reason}", file.display()));
    // In a cluster, the lines (or records) of this process's byte range, up to `until`.
    let (from, until) = match config.share {
        None => (from, None),
        Some(share) => match split::part(config, file, file_type, share).map_err(reading)? {
            Part::Whole => (from, None),
            Part::Nothing => return Ok(Some(0)),
            Part::Span { start, end } => (
                Progress {
                    offset: start,
                    rows: 0,
                },
                Some(end),
            ),
        },
    };
    let open = |offset: u64| -> Result<Box<dyn Read + Send>, ConnectorError> {
        let opened = open_at(config, file, offset)?;
        Ok(match until {
            Some(end) => Box::new(opened.take(end.saturating_sub(offset))),
            None => opened,
        })
    };
    let mut rows = Rows::new(topic, config.send_interval, emit);
    rows.offset = from.offset;
    let finished = match file_type {
        // Lines and CSV read blocks of their own (no BufReader); JSON streams from one.
        FileType::Lines if reads_blocks(config, file) => read_blocks(open(from.offset)?, &mut rows),
        FileType::Lines => {
            let lines = LineReader::at(open(from.offset)?, config, from.offset);
            read_lines(lines, &mut rows)
        }
        FileType::Csv => {
            // Resumed part way, or a process's part of the file: the names are in the
            // header, before the position (a part that holds the header starts after it).
            let (names, start) = match from.offset {
                0 => (None, 0),
                offset => {
                    let mut head = LineReader::new(open_at(config, file, 0)?, config);
                    let names = csv_header(&mut head, config)
                        .map_err(reading)?
                        .unwrap_or(None);
                    (Some(names), offset.max(head.end))
                }
            };
            let lines = LineReader::at(open(start)?, config, start);
            rows.offset = start;
            read_csv(lines, config, names, &mut rows)
        }
        FileType::Json => {
            let opened = open_at(config, file, 0)?;
            read_json(
                BufReader::with_capacity(READ_BUFFER, opened),
                from.rows,
                &mut rows,
            )
        }
    }
    .map_err(reading)?;
    if !finished || !rows.flush() {
        return Ok(None);
    }
    tracing::debug!(file = %file.display(), rows = rows.count, "file source read a file");
    Ok(Some(rows.count))
}

/// Opens `file` and decompresses it, positioned `offset` bytes into its (decompressed) content:
/// a seek when it is not compressed, else the bytes before are read and dropped.
pub(super) fn open_at(
    config: &FileSourceConfig,
    file: &Path,
    offset: u64,
) -> Result<Box<dyn Read + Send>, ConnectorError> {
    let cannot = |e: String| io_error(format!("cannot open \"{}\": {e}", file.display()));
    let mut opened = File::open(file).map_err(|e| cannot(e.to_string()))?;
    let plain = config.decompression == crate::codec::compress::Compression::None;
    if plain && offset > 0 {
        opened
            .seek(SeekFrom::Start(offset))
            .map_err(|e| cannot(e.to_string()))?;
    }
    let mut reader = config.decompression.reader(opened).map_err(cannot)?;
    if !plain && offset > 0 {
        let skipped = std::io::copy(&mut reader.by_ref().take(offset), &mut std::io::sink())
            .map_err(|e| cannot(e.to_string()))?;
        if skipped < offset {
            return Err(cannot(format!(
                "it is shorter ({skipped} bytes) than the position read up to before ({offset})"
            )));
        }
    }
    Ok(reader)
}

pub(super) fn io_error(reason: String) -> ConnectorError {
    ConnectorError::Io {
        connector: "file",
        reason,
    }
}

/// Gathers rows into chunks and hands full chunks to the emitter.
struct Rows<'e, 'a> {
    buf: Vec<RawMessage>,
    topic: Arc<str>,
    chunk: usize,
    pause: Option<Duration>,
    emit: &'e mut Emit<'a>,
    count: u64,
    /// Lines and CSV: the end of the last row pushed, in bytes of the file.
    offset: u64,
    stopped: bool,
}

impl<'e, 'a> Rows<'e, 'a> {
    fn new(topic: Arc<str>, pause: Option<Duration>, emit: &'e mut Emit<'a>) -> Self {
        // With `sendInterval` each row travels alone, so the pause is between rows.
        let chunk = if pause.is_some() { 1 } else { CHUNK_ROWS };
        Rows {
            buf: Vec::with_capacity(chunk),
            topic,
            chunk,
            pause,
            emit,
            count: 0,
            offset: 0,
            stopped: false,
        }
    }

    /// Adds one row that ends at byte `end` of the file; false when the receiver is gone.
    fn push_at(&mut self, payload: Bytes, end: u64) -> bool {
        self.offset = end;
        self.push(payload)
    }

    /// Adds one row; false when the receiver is gone.
    fn push(&mut self, payload: Bytes) -> bool {
        self.buf.push(RawMessage::new(payload, self.topic.clone()));
        self.count += 1;
        if self.buf.len() >= self.chunk {
            return self.flush();
        }
        true
    }

    /// Sends what is gathered; false when the receiver is gone.
    fn flush(&mut self) -> bool {
        if self.stopped {
            return false;
        }
        if self.buf.is_empty() {
            return true;
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk));
        self.send(SourceEvent::Raw(chunk))
    }

    /// Sends one event; false when the receiver is gone.
    fn send(&mut self, event: SourceEvent) -> bool {
        let progress = Progress {
            offset: self.offset,
            rows: self.count,
        };
        if !(self.emit)(event, progress) {
            self.stopped = true;
            return false;
        }
        if let Some(p) = self.pause {
            std::thread::sleep(p);
        }
        true
    }
}

/// Physical lines of a file without their line ends, after dropping `ignoreStartLines` at the
/// start and holding back `ignoreEndLines` (only that many lines are buffered).
///
/// The file is read in blocks and each line is a slice of its block, so a line costs no
/// allocation or copy of its own; a block is freed when the last row read from it is.
struct LineReader<R> {
    inner: R,
    /// Read but not yet returned: the start of the next line(s).
    block: BytesMut,
    eof: bool,
    to_skip: usize,
    keep_tail: usize,
    /// Held back lines with the offset each ends at.
    tail: VecDeque<(Bytes, u64)>,
    first: bool,
    line_no: u64,
    /// Bytes of the file read as lines so far.
    consumed: u64,
    /// The offset the last line returned by `next` ends at (its line end included).
    end: u64,
}

impl<R: Read> LineReader<R> {
    fn new(inner: R, config: &FileSourceConfig) -> Self {
        LineReader {
            inner,
            block: BytesMut::new(),
            eof: false,
            to_skip: config.ignore_start_lines,
            keep_tail: config.ignore_end_lines,
            tail: VecDeque::with_capacity(config.ignore_end_lines.min(1024)),
            first: true,
            line_no: 0,
            consumed: 0,
            end: 0,
        }
    }

    /// A reader of the lines after byte `offset` (where `inner` is positioned): resumed part
    /// way, so nothing at the start of the file is skipped.
    fn at(inner: R, config: &FileSourceConfig, offset: u64) -> Self {
        let mut reader = LineReader::new(inner, config);
        if offset > 0 {
            reader.to_skip = 0;
            reader.first = false;
            reader.consumed = offset;
            reader.end = offset;
        }
        reader
    }

    /// The next physical line with its line end, or None at the end of the file.
    fn raw_line(&mut self) -> Result<Option<Bytes>, String> {
        let mut searched = 0;
        loop {
            if let Some(n) = memchr::memchr(b'\n', &self.block[searched..]) {
                self.consumed += (searched + n + 1) as u64;
                return Ok(Some(self.block.split_to(searched + n + 1).freeze()));
            }
            searched = self.block.len();
            if self.eof {
                self.consumed += self.block.len() as u64;
                return Ok((!self.block.is_empty()).then(|| self.block.split().freeze()));
            }
            // A new block; the unfinished line moves to its start (a copy of one line at most).
            let read = read_more(&mut self.inner, &mut self.block)
                .map_err(|e| format!("line {}: {e}", self.line_no + 1))?;
            self.eof = read == 0;
        }
    }

    /// The next line, or None at the end of the file.
    fn next(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            let Some(mut line) = self.raw_line()? else {
                // The lines still held back are the file's last `ignoreEndLines`: dropped.
                return Ok(None);
            };
            self.line_no += 1;
            if line.last() == Some(&b'\n') {
                line.truncate(line.len() - 1);
            }
            if line.last() == Some(&b'\r') {
                line.truncate(line.len() - 1);
            }
            if std::mem::take(&mut self.first) && line.starts_with(b"\xEF\xBB\xBF") {
                line.advance(3);
            }
            if self.to_skip > 0 {
                self.to_skip -= 1;
                continue;
            }
            if self.keep_tail == 0 {
                self.end = self.consumed;
                return Ok(Some(line));
            }
            self.tail.push_back((line, self.consumed));
            if self.tail.len() > self.keep_tail
                && let Some((line, end)) = self.tail.pop_front()
            {
                self.end = end;
                return Ok(Some(line));
            }
        }
    }
}

/// Appends up to [`READ_BUFFER`] bytes from `input` to `block`; returns how many (0 at the end).
/// The unread rest of `block` moves to the new allocation (a copy of one partial line).
fn read_more(input: &mut impl Read, block: &mut BytesMut) -> std::io::Result<usize> {
    // Into a Vec's spare capacity: `read_to_end` reads a file into it as it is, where
    // growing a BytesMut to read into would first zero every block (3% of W1's CPU).
    let mut buf = Vec::with_capacity(block.len() + READ_BUFFER);
    buf.extend_from_slice(block);
    let read = input
        .by_ref()
        .take(READ_BUFFER as u64)
        .read_to_end(&mut buf)?;
    *block = BytesMut::from(Bytes::from(buf));
    Ok(read)
}

/// `fileType: lines` without skipped lines or pauses: the file goes out in blocks of whole
/// lines ([`SourceEvent::Lines`]), and the workers split and decode them, so the reader does
/// no per-line work at all.
fn read_blocks(mut file: impl Read, rows: &mut Rows) -> Result<bool, String> {
    let mut block = BytesMut::new();
    let mut first = true;
    let mut eof = false;
    while !eof {
        let filled = block.len();
        let read = read_more(&mut file, &mut block).map_err(|e| e.to_string())?;
        eof = read == 0;
        // (Resumed part way, the file's start, and any BOM, is behind.)
        if std::mem::take(&mut first) && rows.offset == 0 && block.starts_with(b"\xEF\xBB\xBF") {
            block.advance(3);
            rows.offset = 3;
        }
        // Up to the last line end; a line longer than the block waits for the next read.
        let whole = if eof {
            block.len()
        } else {
            match memchr::memrchr(b'\n', &block[filled..]) {
                Some(n) => filled + n + 1,
                None => continue,
            }
        };
        if whole == 0 {
            continue;
        }
        let lines = block.split_to(whole).freeze();
        rows.offset += whole as u64;
        rows.count += memchr::memchr_iter(b'\n', &lines).count() as u64
            + u64::from(lines.last() != Some(&b'\n'));
        let topic = rows.topic.clone();
        if !rows.send(SourceEvent::Lines {
            block: lines,
            topic,
        }) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `fileType: lines`: every non-blank line is one JSON object, passed on undecoded (the
/// workers decode it; a malformed line becomes a per-row exception there).
fn read_lines(mut lines: LineReader<impl Read>, rows: &mut Rows) -> Result<bool, String> {
    while let Some(line) = lines.next()? {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if !rows.push_at(line, lines.end) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One CSV field as read.
#[derive(Debug, Default)]
struct Field {
    text: Vec<u8>,
    /// Written in quotes: always a string, never a number.
    quoted: bool,
}

/// `fileType: csv`: each record becomes one JSON object named by `columns`, the header row,
/// or `cols0`, `cols1`, ... Unquoted values that are JSON number literals become numbers, other
/// values strings; an unquoted empty value is left out (null).
///
/// `known`: the names when the reader was resumed after the header (else it reads the header).
fn read_csv<R: Read>(
    mut lines: LineReader<R>,
    config: &FileSourceConfig,
    known: Option<Option<Vec<String>>>,
    rows: &mut Rows,
) -> Result<bool, String> {
    let mut line = Bytes::new();
    let mut fields: Vec<Field> = Vec::new();
    let names = match known {
        Some(names) => names,
        None => match csv_header(&mut lines, config)? {
            Some(names) => names,
            None => return Ok(true),
        },
    };
    let mut extra_rows = 0u64;
    let mut payload = Vec::with_capacity(256);
    while next_record(&mut lines, &mut line, config.delimiter, &mut fields)? {
        payload.clear();
        if write_row(&mut payload, names.as_deref(), &fields) {
            extra_rows += 1;
        }
        if !rows.push_at(Bytes::copy_from_slice(&payload), lines.end) {
            return Ok(false);
        }
    }
    if extra_rows > 0 {
        tracing::warn!(
            "file source: {extra_rows} CSV rows had more values than columns; the extra values \
             were dropped"
        );
    }
    Ok(true)
}

/// The names of a CSV file's fields: `columns`, else the header (read here when the file has
/// one), else none (`cols0`, `cols1`, ...). `None` when the file ends before its header.
fn csv_header<R: Read>(
    lines: &mut LineReader<R>,
    config: &FileSourceConfig,
) -> Result<Option<Option<Vec<String>>>, String> {
    let mut names = config.columns.clone();
    if config.has_header {
        let (mut line, mut fields) = (Bytes::new(), Vec::new());
        if !next_record(lines, &mut line, config.delimiter, &mut fields)? {
            return Ok(None);
        }
        if names.is_none() {
            names = Some(
                fields
                    .iter()
                    .map(|f| String::from_utf8_lossy(&f.text).trim().to_string())
                    .collect(),
            );
        }
    }
    Ok(Some(names))
}

/// Reads the next CSV record into `fields` (RFC 4180 quoting; a quoted value may span lines;
/// leading blanks of a value are skipped; blank lines are skipped). False at the end.
fn next_record<R: Read>(
    lines: &mut LineReader<R>,
    line: &mut Bytes,
    delim: u8,
    fields: &mut Vec<Field>,
) -> Result<bool, String> {
    loop {
        match lines.next()? {
            Some(l) => *line = l,
            None => return Ok(false),
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            break;
        }
    }
    fields.clear();
    let start_line = lines.line_no;
    let mut cur = Field::default();
    let mut in_quotes = false;
    let mut at_start = true;
    let mut i = 0;
    loop {
        while i < line.len() {
            let b = line[i];
            i += 1;
            if in_quotes {
                if b == b'"' {
                    if line.get(i) == Some(&b'"') {
                        cur.text.push(b'"');
                        i += 1;
                    } else {
                        in_quotes = false;
                    }
                } else {
                    cur.text.push(b);
                }
            } else if b == delim {
                fields.push(std::mem::take(&mut cur));
                at_start = true;
            } else if at_start && (b == b' ' || b == b'\t') {
                // Leading blanks before a value are not part of it (as eKuiper reads CSV).
            } else if at_start && b == b'"' {
                in_quotes = true;
                cur.quoted = true;
                at_start = false;
            } else {
                at_start = false;
                cur.text.push(b);
            }
        }
        if !in_quotes {
            break;
        }
        // The quoted value goes on over the line break.
        cur.text.push(b'\n');
        let Some(next) = lines.next()? else {
            return Err(format!(
                "line {start_line}: a quoted CSV value is not closed before the end of the file"
            ));
        };
        *line = next;
        i = 0;
    }
    fields.push(cur);
    Ok(true)
}

/// Writes one CSV record as a JSON object; true when it had more values than names.
fn write_row(out: &mut Vec<u8>, names: Option<&[String]>, fields: &[Field]) -> bool {
    let mut extra = false;
    out.push(b'{');
    let mut first = true;
    for (i, f) in fields.iter().enumerate() {
        let name: Cow<'_, str> = match names {
            Some(names) => match names.get(i) {
                Some(n) => Cow::Borrowed(n.as_str()),
                None => {
                    extra = true;
                    continue;
                }
            },
            None => Cow::Owned(format!("cols{i}")),
        };
        if !f.quoted && f.text.is_empty() {
            continue;
        }
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        write_json_string(out, &name);
        out.push(b':');
        let trimmed = f.text.trim_ascii_end();
        if !f.quoted && is_json_number(trimmed) {
            out.extend_from_slice(trimmed);
        } else {
            write_json_string(out, &String::from_utf8_lossy(&f.text));
        }
    }
    out.push(b'}');
    extra
}

fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // Serialising a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// True for a JSON number literal: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`. Stricter
/// than Rust's float parsing on purpose: `007`, `+5`, `.5`, `inf` stay strings (codes, ids).
fn is_json_number(s: &[u8]) -> bool {
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while s.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if s.get(i) == Some(&b'-') {
        i += 1;
    }
    match s.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if s.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == s.len()
}

/// `fileType: json`: an array of objects (one row per element, streamed one element at a
/// time) or a single object (one row). The first `skip` rows were handed over before (a
/// resumed read): they are parsed and dropped.
fn read_json(reader: impl std::io::BufRead, skip: u64, rows: &mut Rows) -> Result<bool, String> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    match (&mut de).deserialize_any(Document {
        rows: &mut *rows,
        skip,
    }) {
        Ok(true) => de.end().map(|()| true).map_err(|e| e.to_string()),
        Ok(false) => Ok(false),
        // Stopping in the middle of an array makes serde report the unread rest as an error.
        Err(_) if rows.stopped => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// Visits the top level of a JSON document; `Ok(false)` when the receiver went away.
struct Document<'r, 'e, 'a> {
    rows: &'r mut Rows<'e, 'a>,
    /// Rows handed over before, dropped.
    skip: u64,
}

impl<'de> Visitor<'de> for Document<'_, '_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of objects or one JSON object")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<bool, A::Error> {
        while self.skip > 0 {
            if seq.next_element::<de::IgnoredAny>()?.is_none() {
                return Ok(true);
            }
            self.skip -= 1;
            self.rows.count += 1;
        }
        while let Some(item) = seq.next_element::<Value>()? {
            // Non-objects are passed on too: the decoder counts them as bad rows.
            let bytes = serde_json::to_vec(&item).map_err(de::Error::custom)?;
            if !self.rows.push(bytes.into()) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        let object: Value =
            serde::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
        if self.skip > 0 {
            return Ok(true);
        }
        let bytes = serde_json::to_vec(&object).map_err(de::Error::custom)?;
        Ok(self.rows.push(bytes.into()))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The rows of an event, as text.
    pub(in crate::file) fn texts(event: SourceEvent) -> Vec<String> {
        event
            .into_messages()
            .unwrap()
            .iter()
            .map(|m| String::from_utf8(m.payload.to_vec()).unwrap())
            .collect()
    }

    /// A CSV file of `rows` rows (a line to skip, a header, values over two lines, a last
    /// line to drop) and a JSON array of `rows` objects.
    pub(in crate::file) fn csv_and_json(rows: usize) -> (String, String) {
        let csv: String = std::iter::once("skip me\nname,id\n".to_string())
            .chain((0..rows).map(|i| format!("\"a\nb {i}\",{i}\n")))
            .chain(std::iter::once("tail\n".to_string()))
            .collect();
        let json = format!(
            "[{}]",
            (0..rows)
                .map(|i| format!("{{\"id\":{i}}}"))
                .collect::<Vec<_>>()
                .join(",\n ")
        );
        (csv, json)
    }

    /// The rows of each event a read of `file` from `from` hands over, with the progress after it.
    fn read_from(
        config: &FileSourceConfig,
        file: &Path,
        from: Progress,
    ) -> Vec<(Vec<String>, Progress)> {
        let mut out = Vec::new();
        read_file(config, file, from, &mut |event, progress| {
            out.push((texts(event), progress));
            true
        })
        .unwrap();
        out
    }

    /// Resumed after any event, a read hands over exactly the rows after it.
    #[test]
    fn a_read_resumed_after_an_event_hands_over_the_rest() {
        let dir = std::env::temp_dir().join(format!("quiver-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lines: String = (0..40).map(|i| format!("{{\"id\":{i}}}\n\n")).collect();
        let (csv, json) = csv_and_json(40);
        let big: String = (0..30_000)
            .map(|i| format!("{{\"id\":{i:>20}}}\n"))
            .collect();
        let big_gz = {
            use std::io::Write as _;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(big.as_bytes()).unwrap();
            gz.finish().unwrap()
        };
        let cases = [
            (
                "a.jsonl",
                lines.as_bytes(),
                serde_json::json!({"sendInterval": 1}),
            ),
            (
                "b.jsonl",
                lines.as_bytes(),
                serde_json::json!({"ignoreEndLines": 2}),
            ),
            (
                "c.csv",
                csv.as_bytes(),
                serde_json::json!({"ignoreStartLines": 1, "ignoreEndLines": 1, "sendInterval": 1}),
            ),
            (
                "d.json",
                json.as_bytes(),
                serde_json::json!({"sendInterval": 1}),
            ),
            ("e.jsonl", lines.as_bytes(), serde_json::json!({})),
            // Several read blocks: the resumed read seeks.
            ("f.jsonl", big.as_bytes(), serde_json::json!({})),
            // Compressed: the bytes before the offset are decompressed and dropped.
            (
                "g.jsonl.gz",
                big_gz.as_slice(),
                serde_json::json!({"decompression": "gzip"}),
            ),
        ];
        for (name, text, props) in cases {
            let file = dir.join(name);
            std::fs::write(&file, text).unwrap();
            let mut config = FileSourceConfig::parse("x", props.as_object().unwrap()).unwrap();
            // (No pause needed between rows here.)
            config.send_interval = config.send_interval.map(|_| Duration::ZERO);
            let whole = read_from(&config, &file, Progress::default());
            let all: Vec<String> = whole.iter().flat_map(|(r, _)| r.clone()).collect();
            assert!(all.len() >= 38, "{name}: {all:?}");
            for k in 0..whole.len() {
                let before: Vec<String> = whole[..=k].iter().flat_map(|(r, _)| r.clone()).collect();
                let rest: Vec<String> = read_from(&config, &file, whole[k].1)
                    .into_iter()
                    .flat_map(|(r, _)| r)
                    .collect();
                let mut joined = before;
                joined.extend(rest);
                assert_eq!(
                    joined, all,
                    "{name}: resumed after event {k} ({:?})",
                    whole[k].1
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn json_numbers() {
        for ok in ["0", "-1", "23.5", "1e9", "-0.5E-3", "12345678901234567890"] {
            assert!(is_json_number(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "", "-", "007", "+5", ".5", "5.", "inf", "NaN", "1e", "1,5", "0x10",
        ] {
            assert!(!is_json_number(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn csv_rows_as_json() {
        let mut out = Vec::new();
        let names = ["a".to_string(), "b".to_string(), "c".to_string()];
        let fields = vec![
            Field {
                text: b"12".to_vec(),
                quoted: false,
            },
            Field {
                text: b"007".to_vec(),
                quoted: true,
            },
            Field {
                text: Vec::new(),
                quoted: false,
            },
            Field {
                text: b"x".to_vec(),
                quoted: false,
            },
        ];
        assert!(write_row(&mut out, Some(&names), &fields));
        assert_eq!(out, br#"{"a":12,"b":"007"}"#);
        out.clear();
        assert!(!write_row(&mut out, None, &fields[..2]));
        assert_eq!(out, br#"{"cols0":12,"cols1":"007"}"#);
    }
}
