//! One operator's saved state as Arrow data: named record batches and named integers, and
//! their self-describing byte form (what a checkpoint writes for the operator).
//!
//! A leaf module (arrow and std only). Layout of [`OpState::encode`], all integers
//! little-endian:
//!
//! ```text
//! "QST1" | u32 numbers | numbers × (u32 name length, name, i64)
//!        | u32 batches | batches × (u32 name length, name, u64 length, Arrow IPC stream)
//!        | u64 FNV-1a hash of everything before it
//! ```
//!
//! Decoding checks the hash first and every length against the bytes left, so truncated or
//! garbled input is an error, never a panic or a huge allocation.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, UInt32Type};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

const MAGIC: &[u8; 4] = b"QST1";
/// Longest entry name accepted when decoding.
const MAX_NAME: usize = 4096;

/// One operator's saved state: named Arrow batches and named integers.
#[derive(Debug, Default, Clone)]
pub struct OpState {
    /// Named batches, in the order they were pushed.
    pub batches: Vec<(String, RecordBatch)>,
    /// Named integers, in the order they were pushed.
    pub numbers: Vec<(String, i64)>,
}

impl OpState {
    /// Self-describing bytes: a small header and one Arrow IPC stream per batch.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&len32(self.numbers.len())?.to_le_bytes());
        for (name, v) in &self.numbers {
            put_name(&mut out, name)?;
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&len32(self.batches.len())?.to_le_bytes());
        for (name, batch) in &self.batches {
            put_name(&mut out, name)?;
            let mut ipc = Vec::new();
            {
                let mut w = StreamWriter::try_new(&mut ipc, &batch.schema())
                    .map_err(|e| format!("state batch {name:?}: {e}"))?;
                w.write(batch)
                    .map_err(|e| format!("state batch {name:?}: {e}"))?;
                w.finish()
                    .map_err(|e| format!("state batch {name:?}: {e}"))?;
            }
            out.extend_from_slice(&(ipc.len() as u64).to_le_bytes());
            out.extend_from_slice(&ipc);
        }
        let hash = fnv1a(&out);
        out.extend_from_slice(&hash.to_le_bytes());
        Ok(out)
    }

    /// The state `encode` wrote; an error for anything else (truncated, garbled, too long).
    pub fn decode(bytes: &[u8]) -> Result<OpState, String> {
        if bytes.len() < MAGIC.len() + 8 + 8 {
            return Err("operator state: too short".into());
        }
        let (body, hash) = bytes.split_at(bytes.len() - 8);
        if fnv1a(body).to_le_bytes() != hash {
            return Err("operator state: checksum mismatch".into());
        }
        let mut r = Reader { bytes: body, at: 0 };
        if r.take(4)? != MAGIC {
            return Err("operator state: not a state (bad magic)".into());
        }
        let mut state = OpState::default();
        let n = r.u32()? as usize;
        // Each number takes at least 12 bytes: a count beyond that is garbage.
        if n > r.left() / 12 {
            return Err("operator state: number count beyond the data".into());
        }
        for _ in 0..n {
            let name = r.name()?;
            let v = i64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
            state.numbers.push((name, v));
        }
        let n = r.u32()? as usize;
        if n > r.left() / 12 {
            return Err("operator state: batch count beyond the data".into());
        }
        for _ in 0..n {
            let name = r.name()?;
            let len = u64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
            if len > r.left() as u64 {
                return Err(format!("operator state: batch {name:?} beyond the data"));
            }
            let ipc = r.take(len as usize)?;
            let batch =
                read_ipc(ipc).map_err(|e| format!("operator state: batch {name:?}: {e}"))?;
            state.batches.push((name, batch));
        }
        if r.left() != 0 {
            return Err("operator state: trailing bytes".into());
        }
        Ok(state)
    }

    /// The batch named `name`.
    pub fn batch(&self, name: &str) -> Option<&RecordBatch> {
        self.batches.iter().find(|(n, _)| n == name).map(|(_, b)| b)
    }

    /// The number named `name`.
    pub fn number(&self, name: &str) -> Option<i64> {
        self.numbers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// Adds a named batch.
    pub fn push_batch(&mut self, name: impl Into<String>, b: RecordBatch) {
        self.batches.push((name.into(), b));
    }

    /// Adds a named number.
    pub fn push_number(&mut self, name: impl Into<String>, v: i64) {
        self.numbers.push((name.into(), v));
    }

    /// Moves another state's entries in under `prefix.` (for composites).
    pub fn nest(&mut self, prefix: &str, inner: OpState) {
        for (n, b) in inner.batches {
            self.batches.push((format!("{prefix}.{n}"), b));
        }
        for (n, v) in inner.numbers {
            self.numbers.push((format!("{prefix}.{n}"), v));
        }
    }

    /// The entries under `prefix.`, without the prefix (the reverse of [`OpState::nest`]).
    pub fn inner(&self, prefix: &str) -> OpState {
        let p = format!("{prefix}.");
        let strip = |n: &str| n.strip_prefix(p.as_str()).map(str::to_string);
        OpState {
            batches: self
                .batches
                .iter()
                .filter_map(|(n, b)| strip(n).map(|n| (n, b.clone())))
                .collect(),
            numbers: self
                .numbers
                .iter()
                .filter_map(|(n, v)| strip(n).map(|n| (n, *v)))
                .collect(),
        }
    }

    /// The number named `name`, or an error naming what is missing.
    pub fn need_number(&self, name: &str) -> Result<i64, String> {
        self.number(name)
            .ok_or_else(|| format!("operator state: no number {name:?}"))
    }

    /// The batch named `name`, or an error naming what is missing.
    pub fn need_batch(&self, name: &str) -> Result<&RecordBatch, String> {
        self.batch(name)
            .ok_or_else(|| format!("operator state: no batch {name:?}"))
    }

    /// Saves arrays of any types and lengths under `name` exactly (one batch per data type).
    pub fn push_arrays(&mut self, name: &str, arrays: &[ArrayRef]) -> Result<(), String> {
        let mut types: Vec<DataType> = Vec::new();
        let mut per_type: Vec<Vec<&dyn Array>> = Vec::new();
        let (mut kind, mut offset, mut len) = (Vec::new(), Vec::new(), Vec::new());
        for a in arrays {
            let t = match types.iter().position(|t| t == a.data_type()) {
                Some(t) => t,
                None => {
                    types.push(a.data_type().clone());
                    per_type.push(Vec::new());
                    types.len() - 1
                }
            };
            offset.push(per_type[t].iter().map(|x| x.len()).sum::<usize>() as u32);
            len.push(a.len() as u32);
            kind.push(t as u32);
            per_type[t].push(a.as_ref());
        }
        self.push_batch(
            format!("{name}.index"),
            u32_batch(&[("type", kind), ("offset", offset), ("len", len)])?,
        );
        for (t, parts) in per_type.iter().enumerate() {
            let values = arrow::compute::concat(parts).map_err(|e| e.to_string())?;
            self.push_batch(format!("{name}.{t}"), one_column(values)?);
        }
        Ok(())
    }

    /// The arrays [`OpState::push_arrays`] saved under `name`.
    pub fn arrays(&self, name: &str) -> Result<Vec<ArrayRef>, String> {
        let index = self.need_batch(&format!("{name}.index"))?;
        let [kind, offset, len] = u32_columns(index, ["type", "offset", "len"])?;
        let mut out = Vec::with_capacity(index.num_rows());
        for i in 0..index.num_rows() {
            let values = self
                .need_batch(&format!("{name}.{}", kind.value(i)))?
                .column(0);
            let (o, l) = (offset.value(i) as usize, len.value(i) as usize);
            if o + l > values.len() {
                return Err(format!("operator state: {name:?} array {i} out of range"));
            }
            out.push(values.slice(o, l));
        }
        Ok(out)
    }

    /// Saves rows, each a (batch, position), under `name`: the distinct batches (clones of one
    /// batch count once), each cut to the rows used, and every row's place in them.
    pub fn push_rows<'a>(
        &mut self,
        name: &str,
        rows: impl Iterator<Item = (&'a RecordBatch, u32)>,
    ) -> Result<(), String> {
        let mut batches: Vec<(&RecordBatch, Vec<u32>)> = Vec::new();
        let mut places = Vec::new();
        for (batch, row) in rows {
            let b = match batches.iter().position(|(b, _)| same_batch(b, batch)) {
                Some(b) => b,
                None => {
                    batches.push((batch, Vec::new()));
                    batches.len() - 1
                }
            };
            batches[b].1.push(row);
            places.push((b, row));
        }
        // Each batch keeps only its used rows, in row order; `new_row[b]` maps old to new.
        let mut new_row: Vec<std::collections::HashMap<u32, u32>> = Vec::new();
        for (k, (batch, used)) in batches.iter_mut().enumerate() {
            used.sort_unstable();
            used.dedup();
            new_row.push(
                used.iter()
                    .enumerate()
                    .map(|(i, &r)| (r, i as u32))
                    .collect(),
            );
            let cut = if used.len() == batch.num_rows() {
                (*batch).clone()
            } else {
                arrow::compute::take_record_batch(batch, &UInt32Array::from(used.clone()))
                    .map_err(|e| e.to_string())?
            };
            self.push_batch(format!("{name}.{k}"), cut);
        }
        let (bs, rs): (Vec<u32>, Vec<u32>) = places
            .iter()
            .map(|&(b, r)| (b as u32, new_row[b][&r]))
            .unzip();
        self.push_number(format!("{name}.batches"), batches.len() as i64);
        self.push_batch(
            format!("{name}.rows"),
            u32_batch(&[("batch", bs), ("row", rs)])?,
        );
        Ok(())
    }

    /// The rows [`OpState::push_rows`] saved under `name`: rows of one batch share it again.
    pub fn rows(&self, name: &str) -> Result<Vec<(RecordBatch, u32)>, String> {
        let n = self.need_number(&format!("{name}.batches"))?;
        let batches = (0..n.max(0))
            .map(|k| self.need_batch(&format!("{name}.{k}")).cloned())
            .collect::<Result<Vec<_>, _>>()?;
        let places = self.need_batch(&format!("{name}.rows"))?;
        let [bs, rs] = u32_columns(places, ["batch", "row"])?;
        (0..places.num_rows())
            .map(|i| {
                let (b, r) = (bs.value(i) as usize, rs.value(i));
                match batches.get(b) {
                    Some(batch) if (r as usize) < batch.num_rows() => Ok((batch.clone(), r)),
                    _ => Err(format!("operator state: {name:?} row {i} out of range")),
                }
            })
            .collect()
    }
}

/// True when two batch handles share their columns (clones of one batch).
pub fn same_batch(a: &RecordBatch, b: &RecordBatch) -> bool {
    a.num_rows() == b.num_rows()
        && a.num_columns() == b.num_columns()
        && a.columns()
            .iter()
            .zip(b.columns())
            .all(|(x, y)| Arc::ptr_eq(x, y))
}

/// A batch of one nullable column `v`.
pub fn one_column(values: ArrayRef) -> Result<RecordBatch, String> {
    let schema = Schema::new(vec![Field::new("v", values.data_type().clone(), true)]);
    RecordBatch::try_new(Arc::new(schema), vec![values]).map_err(|e| e.to_string())
}

fn u32_batch(columns: &[(&str, Vec<u32>)]) -> Result<RecordBatch, String> {
    RecordBatch::try_from_iter(
        columns
            .iter()
            .map(|(n, v)| (*n, Arc::new(UInt32Array::from(v.clone())) as ArrayRef)),
    )
    .map_err(|e| e.to_string())
}

fn u32_columns<'a, const N: usize>(
    batch: &'a RecordBatch,
    names: [&str; N],
) -> Result<[&'a UInt32Array; N], String> {
    let mut out = Vec::with_capacity(N);
    for n in names {
        let c = batch
            .column_by_name(n)
            .and_then(|c| c.as_primitive_opt::<UInt32Type>())
            .ok_or_else(|| format!("operator state: no UInt32 column {n:?}"))?;
        out.push(c);
    }
    Ok(out.try_into().expect("N columns"))
}

fn len32(n: usize) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| "operator state: too many entries".to_string())
}

fn put_name(out: &mut Vec<u8>, name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME {
        return Err(format!("operator state: name longer than {MAX_NAME} bytes"));
    }
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

/// One batch from an IPC stream. Arrow's reader validates what it reads; the panic guard is
/// for a malformed stream that slips past its checks (the hash makes that unlikely).
fn read_ipc(ipc: &[u8]) -> Result<RecordBatch, String> {
    let read = || -> Result<RecordBatch, String> {
        let mut reader = StreamReader::try_new(ipc, None).map_err(|e| e.to_string())?;
        let batch = reader
            .next()
            .ok_or("no batch in the stream")?
            .map_err(|e| e.to_string())?;
        if reader.next().is_some() {
            return Err("more than one batch in the stream".into());
        }
        Ok(batch)
    };
    std::panic::catch_unwind(read).unwrap_or_else(|_| Err("malformed Arrow IPC".into()))
}

/// Reads the encoded form front to back, every read bounded by the bytes left.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.left() {
            return Err("operator state: truncated".into());
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn name(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        if n > MAX_NAME {
            return Err("operator state: name too long".into());
        }
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| "operator state: name not UTF-8".to_string())
    }
}

/// FNV-1a, 64 bits: cheap and enough to tell a damaged state from a good one.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, NullArray, StringArray};

    fn sample() -> OpState {
        let mut s = OpState::default();
        s.push_number("count", 42);
        s.push_number("neg", i64::MIN);
        let b = RecordBatch::try_from_iter([
            (
                "k",
                Arc::new(StringArray::from(vec![Some("a"), None])) as ArrayRef,
            ),
            (
                "f",
                Arc::new(Float64Array::from(vec![0.1 + 0.2, f64::NAN])) as ArrayRef,
            ),
        ])
        .unwrap();
        s.push_batch("rows", b);
        s
    }

    #[test]
    fn a_state_comes_back_from_its_bytes() {
        let s = sample();
        let back = OpState::decode(&s.encode().unwrap()).unwrap();
        assert_eq!(back.number("count"), Some(42));
        assert_eq!(back.number("neg"), Some(i64::MIN));
        assert_eq!(back.batch("rows"), s.batch("rows"));
        let f = back
            .batch("rows")
            .unwrap()
            .column(1)
            .as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!(f.value(0).to_bits(), (0.1f64 + 0.2).to_bits());
        assert!(back.batch("none").is_none());
    }

    #[test]
    fn truncated_or_garbled_bytes_are_an_error_not_a_panic() {
        let bytes = sample().encode().unwrap();
        for n in 0..bytes.len() {
            assert!(OpState::decode(&bytes[..n]).is_err(), "cut at {n}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x5a;
            assert!(OpState::decode(&bad).is_err(), "byte {i} flipped");
        }
        assert!(OpState::decode(&[0xff; 64]).is_err());
        // A valid frame around an absurd count is refused before allocating anything.
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        let h = fnv1a(&huge);
        huge.extend_from_slice(&h.to_le_bytes());
        assert!(OpState::decode(&huge).is_err());
        // Garbage that passes the hash still fails cleanly inside the IPC reader.
        let mut junk = MAGIC.to_vec();
        junk.extend_from_slice(&0u32.to_le_bytes());
        junk.extend_from_slice(&1u32.to_le_bytes());
        junk.extend_from_slice(&1u32.to_le_bytes());
        junk.push(b'x');
        junk.extend_from_slice(&16u64.to_le_bytes());
        junk.extend_from_slice(&[0xff; 16]);
        let h = fnv1a(&junk);
        junk.extend_from_slice(&h.to_le_bytes());
        assert!(OpState::decode(&junk).is_err());
    }

    #[test]
    fn nested_states_come_back_under_their_prefix() {
        let mut outer = OpState::default();
        outer.nest("0", sample());
        outer.push_number("own", 1);
        let inner = outer.inner("0");
        assert_eq!(inner.number("count"), Some(42));
        assert_eq!(inner.number("own"), None);
        assert!(inner.batch("rows").is_some());
        assert!(outer.inner("1").numbers.is_empty());
    }

    #[test]
    fn arrays_of_mixed_types_come_back_exactly() {
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(StringArray::from(vec!["x"])),
            Arc::new(NullArray::new(3)),
            Arc::new(Int64Array::from(vec![Some(3), None])),
        ];
        let mut s = OpState::default();
        s.push_arrays("cells", &arrays).unwrap();
        let s = OpState::decode(&s.encode().unwrap()).unwrap();
        let back = s.arrays("cells").unwrap();
        assert_eq!(back.len(), 4);
        for (a, b) in arrays.iter().zip(&back) {
            assert_eq!(a.to_data(), b.to_data());
        }
    }

    #[test]
    fn rows_share_their_batch_again_and_keep_only_used_rows() {
        let a = RecordBatch::try_from_iter([(
            "v",
            Arc::new(Int64Array::from(vec![10, 11, 12, 13])) as ArrayRef,
        )])
        .unwrap();
        let b = RecordBatch::try_from_iter([(
            "w",
            Arc::new(StringArray::from(vec!["p", "q"])) as ArrayRef,
        )])
        .unwrap();
        let mut s = OpState::default();
        s.push_rows("rows", [(&a, 3), (&b, 1), (&a, 1)].into_iter())
            .unwrap();
        let s = OpState::decode(&s.encode().unwrap()).unwrap();
        let back = s.rows("rows").unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[0].0.num_rows(), 2, "only rows 1 and 3 of a are kept");
        assert!(same_batch(&back[0].0, &back[2].0));
        let v = |(b, r): &(RecordBatch, u32)| {
            arrow::util::display::array_value_to_string(b.column(0), *r as usize).unwrap()
        };
        assert_eq!(back.iter().map(v).collect::<Vec<_>>(), ["13", "q", "11"]);
    }
}
