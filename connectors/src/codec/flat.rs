//! A fast decoder for the common case: one flat JSON object per message, into a schema of
//! strings, floats, integers and booleans.
//!
//! arrow-json builds a tape of every token and then walks it once per column, which costs
//! about twice the bytes' worth of work for the small flat objects IoT devices send. This
//! decoder reads each message once, straight into the column builders. It accepts only input
//! on which its result is the same as arrow-json's; anything else (an array payload, a nested
//! value for a schema field, a number where a string is declared, an escaped key, a duplicate
//! key, malformed JSON) makes it give up on the whole group, and the caller decodes the group
//! with arrow-json, which also reports the errors.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringArray,
};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::RawMessage;

/// Nesting allowed in the values of keys outside the schema, which are skipped.
const MAX_SKIP_DEPTH: usize = 64;

/// Why the fast path gave up; the caller then takes the general path.
#[derive(Debug, PartialEq, Eq)]
pub struct Unsupported;

type Parsed<T> = Result<T, Unsupported>;

/// The column types the fast path writes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Utf8,
    Float64,
    Int64,
    Boolean,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Utf8 => DataType::Utf8,
            Kind::Float64 => DataType::Float64,
            Kind::Int64 => DataType::Int64,
            Kind::Boolean => DataType::Boolean,
        }
    }
}

/// Decodes flat JSON objects for one schema; built once per stream.
#[derive(Debug)]
pub struct FlatDecoder {
    schema: SchemaRef,
    kinds: Vec<Kind>,
    names: Vec<Box<[u8]>>,
    /// The columns the rule reads. The others are checked as they would be decoded (so the
    /// same input gives up) but left null.
    read: Vec<bool>,
}

impl FlatDecoder {
    /// A decoder for `schema`, or None when a field has a type the fast path does not write.
    pub fn new(schema: SchemaRef) -> Option<Self> {
        let kinds = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 => Some(Kind::Utf8),
                DataType::Float64 => Some(Kind::Float64),
                DataType::Int64 => Some(Kind::Int64),
                DataType::Boolean => Some(Kind::Boolean),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        if kinds.is_empty() {
            return None;
        }
        let names = schema
            .fields()
            .iter()
            .map(|f| f.name().as_bytes().into())
            .collect();
        let read = vec![true; kinds.len()];
        Some(FlatDecoder {
            schema,
            kinds,
            names,
            read,
        })
    }

    /// The same decoder, filling only the columns named in `columns` (in any ASCII case); the
    /// others are null.
    pub fn reading(&self, columns: &std::collections::BTreeSet<String>) -> Self {
        FlatDecoder {
            schema: self.schema.clone(),
            kinds: self.kinds.clone(),
            names: self.names.clone(),
            read: self
                .schema
                .fields()
                .iter()
                // Ignoring ASCII case: expressions look a column up by its exact name, else
                // ignoring case, so this marks at least every column they can reach.
                .map(|f| columns.iter().any(|c| c.eq_ignore_ascii_case(f.name())))
                .collect(),
        }
    }

    /// Decodes one row per message, or gives up.
    pub fn decode(&self, messages: &[RawMessage]) -> Parsed<RecordBatch> {
        let bytes = messages.iter().map(|m| m.payload.len()).sum();
        let mut rows = Rows::new(self, messages.len(), bytes);
        for m in messages {
            rows.push(&m.payload, false)?;
        }
        Ok(rows.finish())
    }

    /// Decodes one row per non-blank line of `block` (see [`lines`]), or gives up.
    pub fn decode_lines(&self, block: &[u8]) -> Parsed<RecordBatch> {
        // A guess at the row count from the first line's length (at least 16 bytes, so a
        // block starting with a blank line reserves no more than that allows); the builders
        // grow if needed.
        let first = memchr::memchr(b'\n', block).unwrap_or(block.len()) + 1;
        let mut rows = Rows::new(self, block.len() / first.max(16) + 1, block.len());
        // One check for the whole block (the common case, and a word-at-a-time loop over
        // 256 KB) instead of one per line.
        let ascii = block.is_ascii();
        for (start, end) in lines(block) {
            rows.push(&block[start..end], ascii)?;
        }
        Ok(rows.finish())
    }

    fn field(&self, key: &[u8]) -> Option<usize> {
        self.names.iter().position(|n| **n == *key)
    }
}

/// A column being built.
enum Builder {
    /// A column (of this kind) the rule does not read: checked, and null in every row.
    Unread(Kind),
    /// Strings are gathered as bytes and checked as UTF-8 once per column, not per value.
    Utf8(BinaryBuilder),
    Float64(Float64Builder),
    Int64(Int64Builder),
    Boolean(BooleanBuilder),
}

impl Builder {
    fn append_null(&mut self) {
        match self {
            Builder::Unread(_) => {}
            Builder::Utf8(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Boolean(b) => b.append_null(),
        }
    }

    fn finish(&mut self, rows: usize) -> ArrayRef {
        match self {
            Builder::Unread(kind) => arrow::array::new_null_array(&kind.data_type(), rows),
            Builder::Utf8(b) => Arc::new(
                StringArray::try_from_binary(b.finish())
                    .expect("strings are slices of UTF-8 payloads between ASCII quotes"),
            ),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Boolean(b) => Arc::new(b.finish()),
        }
    }
}

/// The rows of one group: builders, which fields the current row set, and the previous row's
/// shape.
struct Rows<'d> {
    decoder: &'d FlatDecoder,
    builders: Vec<Builder>,
    /// `set[f] == row` when the current row gave field `f` a value.
    set: Vec<usize>,
    row: usize,
    /// The previous row's shape, to read the next one by (see [`Shape`]).
    shape: Shape,
}

/// The bytes around the values of the previous row: before each value, everything from the
/// end of the value before it (or the start of the payload) to the value, as
/// `,"temperature":`, with the value's field; after the last one, the rest of the payload.
///
/// Rows of one source are usually printed by one program, so they repeat these bytes
/// exactly. Matching each separator as one compare replaces the per-token steps (whitespace,
/// punctuation, key lookup); a separator that differs hands the row to the token-by-token
/// path at that point, with nothing appended yet for the value it did not reach. A key in a
/// separator has no escapes (the token path gives up on those), so equal bytes are the same
/// key.
#[derive(Default)]
struct Shape {
    before: Vec<(Box<[u8]>, Option<usize>)>,
    /// Empty until a row has been read: a row's end holds at least its closing brace.
    end: Box<[u8]>,
}

impl<'d> Rows<'d> {
    /// Builders for about `n` rows from about `bytes` bytes of JSON.
    fn new(decoder: &'d FlatDecoder, n: usize, bytes: usize) -> Self {
        let read_columns = decoder.read.iter().filter(|r| **r).count().max(1);
        let builders = decoder
            .kinds
            .iter()
            .zip(&decoder.read)
            .map(|(&k, read)| match k {
                _ if !read => Builder::Unread(k),
                // Strings take a share of the payload bytes; the builder grows if it is more.
                Kind::Utf8 => Builder::Utf8(BinaryBuilder::with_capacity(n, bytes / read_columns)),
                Kind::Float64 => Builder::Float64(Float64Builder::with_capacity(n)),
                Kind::Int64 => Builder::Int64(Int64Builder::with_capacity(n)),
                Kind::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(n)),
            })
            .collect();
        Rows {
            decoder,
            builders,
            set: vec![usize::MAX; decoder.kinds.len()],
            row: 0,
            shape: Shape::default(),
        }
    }

    fn finish(mut self) -> RecordBatch {
        let rows = self.row;
        let columns = self.builders.iter_mut().map(|b| b.finish(rows)).collect();
        RecordBatch::try_new(self.decoder.schema.clone(), columns)
            .expect("every column has one value per row")
    }

    /// Appends the row of one message; `ascii`: the payload is known to be ASCII.
    fn push(&mut self, payload: &[u8], ascii: bool) -> Parsed<()> {
        // Outside strings valid JSON is ASCII, so a valid payload has valid strings: one check
        // per message instead of one per string (arrow-json also rejects non-UTF-8 anywhere).
        if !ascii && !payload.is_ascii() && std::str::from_utf8(payload).is_err() {
            return Err(Unsupported);
        }
        let mut p = Cursor { b: payload, i: 0 };
        // The previous row's separators, as far as they match.
        let mut position = 0;
        if !self.shape.end.is_empty() {
            for (sep, field) in &self.shape.before {
                if !p.eat(sep) {
                    break;
                }
                match *field {
                    Some(f) => {
                        self.set[f] = self.row;
                        p.value(&mut self.builders[f])?;
                    }
                    None => p.skip(0)?,
                }
                position += 1;
            }
            if position == self.shape.before.len() && same(&p.b[p.i..], &self.shape.end) {
                self.end_row();
                return Ok(());
            }
        }
        // Token by token from here: the start of the payload, or the end of a value. The
        // separators from here on are this row's, recorded as they are read.
        self.shape.before.truncate(position);
        let mut after = p.i;
        if position == 0 {
            p.ws();
            p.expect(b'{')?;
            p.ws();
            if p.peek() == Some(b'}') {
                p.i += 1;
                return self.close(p, after);
            }
        } else if !self.separator(&mut p)? {
            return self.close(p, after);
        }
        loop {
            let field = self.decoder.field(p.key()?);
            p.ws();
            p.expect(b':')?;
            p.ws();
            self.shape.before.push((p.b[after..p.i].into(), field));
            match field {
                Some(f) => {
                    if self.set[f] == self.row {
                        return Err(Unsupported); // a duplicate key
                    }
                    self.set[f] = self.row;
                    p.value(&mut self.builders[f])?;
                }
                None => p.skip(0)?,
            }
            after = p.i;
            if !self.separator(&mut p)? {
                return self.close(p, after);
            }
        }
    }

    /// After a value: true at a comma (and the whitespace after it), false at the closing
    /// brace.
    #[inline]
    fn separator(&self, p: &mut Cursor<'_>) -> Parsed<bool> {
        p.ws();
        match p.next() {
            Some(b',') => {
                p.ws();
                Ok(true)
            }
            Some(b'}') => Ok(false),
            _ => Err(Unsupported),
        }
    }

    /// Ends a row read token by token, whose last value ends at `after`: only whitespace may
    /// follow the object. The rest of the payload ends the shape for the next row.
    fn close(&mut self, mut p: Cursor<'_>, after: usize) -> Parsed<()> {
        p.ws();
        if p.i != p.b.len() {
            return Err(Unsupported);
        }
        self.shape.end = p.b[after..].into();
        self.end_row();
        Ok(())
    }

    /// Nulls for the fields the row did not give, and on to the next row.
    #[inline]
    fn end_row(&mut self) {
        for (f, builder) in self.builders.iter_mut().enumerate() {
            if self.set[f] != self.row {
                builder.append_null();
            }
        }
        self.row += 1;
    }
}

/// The (start, end) of each non-blank line of `block`: lines end at `\n`; a `\r` before it
/// is not part of the line; a line of whitespace only is skipped (as the file source does).
pub fn lines(block: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        while start < block.len() {
            let end = memchr::memchr(b'\n', &block[start..]).map_or(block.len(), |n| start + n);
            let line = (
                start,
                end - usize::from(end > start && block[end - 1] == b'\r'),
            );
            start = end + 1;
            if !block[line.0..line.1].iter().all(u8::is_ascii_whitespace) {
                return Some(line);
            }
        }
        None
    })
}

/// Byte equality for short keys: word compares instead of a call to `memcmp`.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let mut i = 0;
    while i + 8 <= n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    // The last, overlapping word covers the rest.
    i == n || word(a, n - 8) == word(b, n - 8)
}

/// Eight bytes from `at` as a little-endian word.
#[inline]
fn word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The index of the first byte of `w` (little-endian) that is a quote or a backslash.
#[inline]
fn quote_or_backslash(w: u64) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    // The lowest flagged byte is exact (a borrow only flags bytes above a real zero byte).
    let hits = zero(w ^ (ONES * u64::from(b'"'))) | zero(w ^ (ONES * u64::from(b'\\')));
    (hits != 0).then(|| hits.trailing_zeros() as usize / 8)
}

/// How many of the bytes of `w` (little-endian), from the first, are ASCII digits.
#[inline]
fn leading_digits(w: u64) -> usize {
    const LOW: u64 = 0x0F0F_0F0F_0F0F_0F0F;
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    let x = w ^ 0x3030_3030_3030_3030;
    // A byte is a digit when its high nibble is now 0 and its low nibble is under 10 (adding
    // 6 carries into the high nibble from 10 up; bytes cannot carry into each other).
    let not_digit = (x & HIGH) | (((x & LOW) + 0x0606_0606_0606_0606) & HIGH);
    not_digit.trailing_zeros() as usize / 8
}

/// The value of the first `n` (1 to 8) bytes of `w`, which are ASCII digits, the first being
/// the most significant (three multiplications instead of one per digit).
#[inline]
fn digits_value(w: u64, n: usize) -> u64 {
    // The digits move to the high bytes; the low bytes become leading zeros.
    let v = (w & 0x0F0F_0F0F_0F0F_0F0F) << (8 * (8 - n));
    let v = (v.wrapping_mul(10 << 8 | 1) >> 8) & 0x00FF_00FF_00FF_00FF;
    let v = (v.wrapping_mul(100 << 16 | 1) >> 16) & 0x0000_FFFF_0000_FFFF;
    v.wrapping_mul(10000 << 32 | 1) >> 32
}

/// Powers of ten up to 10^8, to shift a mantissa left by a run of digits.
const POW10_U64: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// Exact powers of ten as f64 (every one up to 10^22 is representable).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A position in one payload (already checked to be UTF-8).
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += 1;
        c
    }

    fn expect(&mut self, c: u8) -> Parsed<()> {
        if self.next() == Some(c) {
            Ok(())
        } else {
            Err(Unsupported)
        }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// Steps over `bytes` when they come next.
    #[inline]
    fn eat(&mut self, bytes: &[u8]) -> bool {
        match self.b.get(self.i..self.i + bytes.len()) {
            Some(next) if same(next, bytes) => {
                self.i += bytes.len();
                true
            }
            _ => false,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Parsed<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Unsupported)
        }
    }

    /// A key: a string without escapes.
    fn key(&mut self) -> Parsed<&'a [u8]> {
        match self.string()? {
            (s, false) => Ok(s),
            (_, true) => Err(Unsupported),
        }
    }

    /// A string's raw bytes between the quotes, and whether it has escapes. Like arrow-json,
    /// raw control characters pass through.
    #[inline]
    fn string(&mut self) -> Parsed<(&'a [u8], bool)> {
        self.expect(b'"')?;
        let start = self.i;
        let mut escaped = false;
        let mut i = start;
        while i < self.b.len() {
            // Eight bytes at a time up to the next quote or backslash.
            while i + 8 <= self.b.len() {
                match quote_or_backslash(word(self.b, i)) {
                    Some(at) => {
                        i += at;
                        break;
                    }
                    None => i += 8,
                }
            }
            let Some(&c) = self.b.get(i) else { break };
            match c {
                b'"' => {
                    self.i = i + 1;
                    return Ok((&self.b[start..i], escaped));
                }
                b'\\' => {
                    escaped = true;
                    i += 2;
                }
                _ => i += 1,
            }
        }
        Err(Unsupported)
    }

    /// A JSON number, checked against JSON's grammar: its text, and its value when it is an
    /// integer or a decimal of at most 19 digits without exponent (`mantissa / 10^scale`).
    #[inline]
    fn number(&mut self) -> Parsed<Number<'a>> {
        let start = self.i;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let mut mantissa: u64 = 0;
        let mut digits = 0usize;
        match self.peek() {
            Some(b'0') => {
                self.i += 1;
                digits = 1;
            }
            Some(b'1'..=b'9') => self.digits(&mut mantissa, &mut digits),
            _ => return Err(Unsupported),
        }
        let mut scale = 0usize;
        let mut exponent = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            let before = digits;
            self.digits(&mut mantissa, &mut digits);
            scale = digits - before;
            if scale == 0 {
                return Err(Unsupported);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            exponent = true;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            let (mut ignored, mut exp_digits) = (0, 0);
            self.digits(&mut ignored, &mut exp_digits);
            if exp_digits == 0 {
                return Err(Unsupported);
            }
        }
        Ok(Number {
            text: &self.b[start..self.i],
            negative,
            // 19 digits always fit a u64; more may have wrapped.
            mantissa: (digits <= 19 && !exponent).then_some(mantissa),
            scale,
        })
    }

    /// Skips decimal digits, accumulating them into `mantissa` (wrapping past 19 digits).
    #[inline]
    fn digits(&mut self, mantissa: &mut u64, count: &mut usize) {
        // Up to eight at a time: a millisecond timestamp is two steps instead of thirteen.
        // Wrapping arithmetic gives the same value either way. Near the end of the payload
        // (a row's last value) the word is its last eight bytes shifted down, with zeros,
        // which are not digits, in place of the bytes past the end.
        let len = self.b.len();
        while self.i < len && len >= 8 {
            let w = if self.i + 8 <= len {
                word(self.b, self.i)
            } else {
                word(self.b, len - 8) >> (8 * (8 - (len - self.i)))
            };
            let n = leading_digits(w);
            if n == 0 {
                return;
            }
            *mantissa = mantissa
                .wrapping_mul(POW10_U64[n])
                .wrapping_add(digits_value(w, n));
            *count += n;
            self.i += n;
            if n < 8 {
                return;
            }
        }
        while let Some(c @ b'0'..=b'9') = self.peek() {
            *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
            *count += 1;
            self.i += 1;
        }
    }

    /// Reads a value of a schema field into its column.
    #[inline]
    fn value(&mut self, builder: &mut Builder) -> Parsed<()> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            builder.append_null();
            return Ok(());
        }
        match builder {
            // Checked as if it were read, so that the same input gives up either way.
            Builder::Unread(kind) => match kind {
                Kind::Utf8 => self.skip_string()?,
                // A number that passes JSON's grammar always converts to f64.
                Kind::Float64 => {
                    self.number()?;
                }
                Kind::Int64 => {
                    self.number()?.integer()?;
                }
                Kind::Boolean => match self.peek() {
                    Some(b't') => self.literal(b"true")?,
                    _ => self.literal(b"false")?,
                },
            },
            Builder::Utf8(b) => {
                let (raw, escaped) = self.string()?;
                if escaped {
                    let quoted = &self.b[self.i - raw.len() - 2..self.i];
                    let s: String = serde_json::from_slice(quoted).map_err(|_| Unsupported)?;
                    b.append_value(s);
                } else {
                    // Checked as UTF-8 with the whole column when the batch is finished.
                    b.append_value(raw);
                }
            }
            Builder::Float64(b) => b.append_value(self.number()?.float()?),
            Builder::Int64(b) => b.append_value(self.number()?.integer()?),
            Builder::Boolean(b) => match self.peek() {
                Some(b't') => {
                    self.literal(b"true")?;
                    b.append_value(true);
                }
                _ => {
                    self.literal(b"false")?;
                    b.append_value(false);
                }
            },
        }
        Ok(())
    }

    /// Skips a string outside the schema. arrow-json reads those too and fails on a bad escape
    /// (`\q`, a lone surrogate), so escaped ones are checked the same way.
    fn skip_string(&mut self) -> Parsed<()> {
        let (raw, escaped) = self.string()?;
        if escaped {
            let quoted = &self.b[self.i - raw.len() - 2..self.i];
            serde_json::from_slice::<String>(quoted).map_err(|_| Unsupported)?;
        }
        Ok(())
    }

    /// Skips a value of a key outside the schema.
    fn skip(&mut self, depth: usize) -> Parsed<()> {
        if depth > MAX_SKIP_DEPTH {
            return Err(Unsupported);
        }
        match self.peek().ok_or(Unsupported)? {
            b'"' => self.skip_string(),
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'[' => self.skip_items(b']', depth, false),
            b'{' => self.skip_items(b'}', depth, true),
            _ => self.number().map(drop),
        }
    }

    /// Skips an array's or object's items, the opening bracket included.
    fn skip_items(&mut self, close: u8, depth: usize, keyed: bool) -> Parsed<()> {
        self.i += 1;
        self.ws();
        if self.peek() == Some(close) {
            self.i += 1;
            return Ok(());
        }
        loop {
            if keyed {
                self.skip_string()?;
                self.ws();
                self.expect(b':')?;
                self.ws();
            }
            self.skip(depth + 1)?;
            self.ws();
            match self.next() {
                Some(b',') => self.ws(),
                Some(c) if c == close => return Ok(()),
                _ => return Err(Unsupported),
            }
        }
    }
}

/// A number as read: see [`Cursor::number`].
struct Number<'a> {
    text: &'a [u8],
    negative: bool,
    mantissa: Option<u64>,
    scale: usize,
}

impl Number<'_> {
    /// The value as f64, rounded as `str::parse` (and arrow-json) round it.
    #[inline]
    fn float(&self) -> Parsed<f64> {
        match self.mantissa {
            // Both operands are exact, and IEEE division rounds once: the correctly rounded
            // value, without the general algorithm.
            Some(m) if m <= 1 << 53 && self.scale < POW10.len() => {
                let v = m as f64 / POW10[self.scale];
                Ok(if self.negative { -v } else { v })
            }
            _ => std::str::from_utf8(self.text)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or(Unsupported),
        }
    }

    /// The value as i64; a fraction, exponent or overflow is left to arrow-json (which
    /// truncates fractions).
    #[inline]
    fn integer(&self) -> Parsed<i64> {
        match self.mantissa {
            Some(m) if self.scale == 0 => {
                if self.negative {
                    0i64.checked_sub_unsigned(m).ok_or(Unsupported)
                } else {
                    i64::try_from(m).map_err(|_| Unsupported)
                }
            }
            _ => Err(Unsupported),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("device", DataType::Utf8, true),
            Field::new("temperature", DataType::Float64, true),
            Field::new("humidity", DataType::Int64, true),
            Field::new("on", DataType::Boolean, true),
        ]))
    }

    fn msgs(payloads: &[&str]) -> Vec<RawMessage> {
        payloads
            .iter()
            .map(|p| RawMessage::new(p.as_bytes().to_vec(), "t".into()))
            .collect()
    }

    /// The general path's result for the same messages.
    fn general(payloads: &[&str]) -> RecordBatch {
        let d = crate::codec::json::JsonDecoder::general(Some(schema()));
        let out = d.decode(&msgs(payloads));
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        out.batches.into_iter().next().unwrap()
    }

    #[test]
    fn agrees_with_arrow_json_where_it_decodes() {
        let cases: &[&[&str]] = &[
            &[
                r#"{"device":"dev-1","temperature":21.5,"humidity":40,"ts":17,"on":true}"#,
                r#" { "humidity" : -3 , "device" : "d\"2\u00e9" , "extra": {"a":[1,{"b":"}"}]} }"#,
                r#"{}"#,
                r#"{"temperature":25,"on":null,"device":null,"x":[]}"#,
                r#"{"temperature":-0.0e-2,"humidity":9223372036854775807,"on":false}"#,
                "{\"device\":\"tr\u{e8}s\",\"temperature\":1E3}\n",
            ],
            // Strings longer than a word, quotes and escapes at every offset of one.
            &[
                r#"{"device":"abcdefgh","temperature":1}"#,
                r#"{"device":"abcdefghijklmnopq\"rst\\","temperature":2}"#,
                r#"{"device":"a\"","temperature":3}"#,
                r#"{"device":"abcdefg\u00e9hi\n","temperature":4,"extra":"12345678\"9"}"#,
                r#"{"device":"ééééééééé","temperature":5}"#,
            ],
            // Numbers on both sides of the exact-division shortcut.
            &[
                r#"{"temperature":0.1,"humidity":-9223372036854775808}"#,
                r#"{"temperature":123456789012345678,"humidity":0}"#,
                r#"{"temperature":9007199254740993.5,"humidity":-0}"#,
                r#"{"temperature":1.7976931348623157e308}"#,
                r#"{"temperature":5e-324}"#,
                r#"{"temperature":-0.000000000000000000000123}"#,
                r#"{"temperature":12345678901234567890123}"#,
                "{\"device\":\"a\tb\"}",
            ],
            // Keys in another order than the previous row's, and an unknown key where a
            // known one was before.
            &[
                r#"{"a":1,"device":"x","temperature":2}"#,
                r#"{"temperature":3,"device":"y","a":1}"#,
                r#"{"device":"z","a":1,"temperature":4}"#,
            ],
        ];
        let flat = FlatDecoder::new(schema()).unwrap();
        for payloads in cases {
            let fast = flat.decode(&msgs(payloads)).expect("flat objects decode");
            assert_eq!(fast, general(payloads), "{payloads:?}");
        }
        // A rule reading some columns gets the same values in those (named in any case),
        // and nulls in the others.
        for read in [&["device", "temperature"][..], &["HUMIDITY", "on"], &[]] {
            let columns = read.iter().map(|c| c.to_string()).collect();
            let some = flat.reading(&columns);
            for payloads in cases {
                let fast = some.decode(&msgs(payloads)).expect("flat objects decode");
                let all = general(payloads);
                for (i, field) in schema().fields().iter().enumerate() {
                    if read.iter().any(|c| c.eq_ignore_ascii_case(field.name())) {
                        assert_eq!(fast.column(i), all.column(i), "{payloads:?} {read:?}");
                    } else {
                        assert_eq!(fast.column(i).null_count(), all.num_rows(), "{read:?}");
                        assert_eq!(fast.column(i).data_type(), field.data_type());
                    }
                }
            }
        }
    }

    #[test]
    fn follows_the_previous_rows_shape_only_where_it_holds() {
        // Each group repeats a shape and then leaves it at another point: another key, order,
        // spacing, a key more or less, an empty object, a trailing newline.
        let base = r#"{"device":"a","temperature":1.5,"humidity":2,"on":true}"#;
        let others = [
            r#"{"device":"b","temperature":2.5,"humidity":3,"on":false}"#,
            r#"{"device":"c","temperature":3.5,"humidity":4}"#,
            r#"{"device":"d","temperature":4.5,"humidity":5,"on":true,"x":[1]}"#,
            r#"{"device":"e","temperature":5.5,"on":true,"humidity":6}"#,
            r#"{"device":"f", "temperature":6.5,"humidity":7,"on":null}"#,
            r#"{"device":"g","temperature":7.5,"humidity":8,"on":true} "#,
            "{\"device\":\"h\",\"temperature\":8.5,\"humidity\":9,\"on\":true}\n",
            r#"{"temperature":9.5,"device":"i","humidity":10,"on":true}"#,
            r#"{}"#,
            r#" {"device":"j","temperature":10.5,"humidity":11,"on":true}"#,
            r#"{"device":"k","temperature":null,"humidity":12,"on":true}"#,
        ];
        for other in others {
            let payloads = [base, other, base, other, other, base];
            let fast = FlatDecoder::new(schema())
                .unwrap()
                .decode(&msgs(&payloads))
                .expect("flat objects decode");
            assert_eq!(fast, general(&payloads), "{other}");
        }
    }

    #[test]
    fn numbers_of_every_length_at_every_offset() {
        // Digits are read up to eight at a time: runs of 1 to 25 digits, ending at and near
        // the end of the payload.
        let mut payloads = Vec::new();
        for len in 1..=25 {
            let digits: String = (0..len).map(|i| char::from(b'1' + (i % 9) as u8)).collect();
            let short = &digits[..len.min(18)];
            payloads.push(format!(r#"{{"humidity":{short}}}"#));
            payloads.push(format!(r#"{{"humidity":-{short},"device":"x"}}"#));
            payloads.push(format!(r#"{{"temperature":{digits}}}"#));
            payloads.push(format!(r#"{{"temperature":{digits}.{digits}}}"#));
            payloads.push(format!(r#"{{"temperature":0.{digits}e-{}}}"#, len % 7));
        }
        let payloads: Vec<&str> = payloads.iter().map(String::as_str).collect();
        let fast = FlatDecoder::new(schema())
            .unwrap()
            .decode(&msgs(&payloads))
            .expect("numbers decode");
        assert_eq!(fast, general(&payloads));
    }

    #[test]
    fn gives_up_where_arrow_json_decides() {
        let flat = FlatDecoder::new(schema()).unwrap();
        // Columns a rule does not read are checked all the same: the same input gives up.
        let none = flat.reading(&Default::default());
        for payload in [
            r#"[{"device":"a"}]"#,
            r#"{"device":1}"#,
            r#"{"temperature":"21.5"}"#,
            r#"{"humidity":40.5}"#,
            r#"{"humidity":99999999999999999999}"#,
            r#"{"device":"a","device":"b"}"#,
            r#"{"dev\u0069ce":"a"}"#,
            r#"{"device":"a"} x"#,
            r#"{"device":"a""#,
            r#"{"device":"abcdefghijklmnop"#,
            r#"{"device":"abcdefghijklmno\"#,
            r#"{"temperature":01}"#,
            r#"{"temperature":1.}"#,
            r#"{"on":"yes"}"#,
            r#"{"x":{"y":[1,2}}"#,
            // Bad escapes outside the schema: arrow-json reads those strings too, and fails.
            r#"{"device":"d1","path":"C:\Users\x"}"#,
            r#"{"device":"d1","x":"\ud800"}"#,
            r#"{"device":"d1","x":"\u12"}"#,
            r#"{"device":"d1","x":{"a\q":1}}"#,
        ] {
            assert_eq!(
                flat.decode(&msgs(&[payload])),
                Err(Unsupported),
                "{payload}"
            );
            assert_eq!(
                none.decode(&msgs(&[payload])),
                Err(Unsupported),
                "unread: {payload}"
            );
        }
        // The same after a row whose shape the bad one starts with.
        let good = r#"{"device":"a","temperature":1}"#;
        for payload in [
            r#"{"device":"a","temperature":1} x"#,
            r#"{"device":"a","temperature":1}}"#,
            r#"{"device":"a","temperature":01}"#,
            r#"{"device":"a","device":"b"}"#,
            r#"{"device":"a","temperature":1,"device":"b"}"#,
            r#"{"device":"a","temperature":1,}"#,
            r#"{"device":"a","temperature":"1"}"#,
            r#"{"device":"a","temperature":1"#,
        ] {
            assert_eq!(
                flat.decode(&msgs(&[good, payload])),
                Err(Unsupported),
                "after a good row: {payload}"
            );
        }
    }

    #[test]
    fn nested_types_are_not_for_the_fast_path() {
        let s = Arc::new(Schema::new(vec![Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        )]));
        assert!(FlatDecoder::new(s).is_none());
    }
}
