//! The bytes of an [`ArrowBatch`] between processes: timely serialises a container whenever an
//! exchange sends it to a worker of another process (`Config::Cluster`); in one process it is
//! handed over by pointer and none of this runs.
//!
//! Frame: the length of the payload as a little-endian `u64`, the payload, then zeros up to a
//! multiple of 8 bytes. Timely lays every field of a message on 8-byte boundaries (its own
//! `Vec` encoding pads so), and the frame keeps the next message's header aligned. A payload
//! length of 0 is `ArrowBatch(None)`.
//!
//! Payload: the Arrow IPC *stream* encoding of the batch (its schema message, its record batch
//! message, the end-of-stream marker). The stream format is the cheaper of the two: the file
//! format adds a magic number and a footer repeating the schema, for random access a single
//! batch never needs. Each batch carries its schema because batches of one channel may differ
//! in columns (windows emit what their groups hold) and a container has no channel state to
//! remember one in.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

use super::ArrowBatch;

/// Bytes of the length prefix.
const PREFIX: usize = 8;

/// Bytes this process has encoded for workers of other processes since it started.
static ENCODED_BYTES: AtomicU64 = AtomicU64::new(0);

/// Bytes of Arrow batches this process has encoded for workers of other processes (frames
/// included): what its exchanges sent over the network.
pub fn encoded_bytes() -> u64 {
    ENCODED_BYTES.load(Ordering::Relaxed)
}

thread_local! {
    /// The last batch `length_in_bytes` encoded on this thread, and its frame. Timely asks for
    /// the length and then, on the same thread, for the bytes of the same message: keeping the
    /// frame saves encoding every batch twice.
    static LAST: RefCell<Option<(RecordBatch, Vec<u8>)>> = const { RefCell::new(None) };
}

/// The frame of `batch` (see the module doc).
///
/// Panics if Arrow IPC cannot encode the batch. Timely counts a message's records on both
/// ends, so a substitute (no rows, or rows without columns) would either stall the rule's
/// progress for ever or hand the next operator rows it cannot read; every type Quiver makes
/// encodes, and a panic is contained like any other operator's.
fn frame(batch: Option<&RecordBatch>) -> Vec<u8> {
    let mut out = vec![0u8; PREFIX];
    if let Some(batch) = batch {
        let encoded = StreamWriter::try_new(&mut out, &batch.schema())
            .and_then(|mut w| {
                w.write(batch)?;
                w.finish()
            })
            .map_err(|e| e.to_string());
        if let Err(e) = encoded {
            panic!("an Arrow batch cannot be sent to another process: {e}");
        }
        let payload = (out.len() - PREFIX) as u64;
        out[..PREFIX].copy_from_slice(&payload.to_le_bytes());
    }
    out.resize(out.len().next_multiple_of(8), 0);
    out
}

/// True when `a` and `b` are the same batch (shared schema and columns), so one's frame is the
/// other's.
fn same(a: &RecordBatch, b: &RecordBatch) -> bool {
    Arc::ptr_eq(&a.schema(), &b.schema()) && crate::state::same_batch(a, b)
}

/// The frame of `batch`: the one `length_in_bytes` kept for it, or a fresh one.
fn take_frame(batch: Option<&RecordBatch>) -> Vec<u8> {
    let kept = LAST.with(|last| last.borrow_mut().take());
    match (kept, batch) {
        (Some((kept, bytes)), Some(b)) if same(&kept, b) => bytes,
        _ => frame(batch),
    }
}

/// Reads a frame back.
///
/// Panics on bytes that are no frame: the peer runs another encoding (a different Quiver
/// version), and there is no batch to go on with that timely would account correctly.
fn unframe(bytes: &[u8]) -> Option<RecordBatch> {
    let (prefix, rest) = bytes
        .split_first_chunk::<PREFIX>()
        .expect("an Arrow batch frame starts with its length");
    let len = u64::from_le_bytes(*prefix) as usize;
    if len == 0 {
        return None;
    }
    // Decoding copies the buffers out of timely's receive buffer: windows keep rows for as long
    // as the window is open, and a batch sharing that buffer would keep all of it alive.
    let payload = rest
        .get(..len)
        .expect("an Arrow batch frame holds the payload its length says");
    let mut reader = StreamReader::try_new(payload, None)
        .unwrap_or_else(|e| panic!("an Arrow batch from another process does not decode: {e}"));
    let batch = reader
        .next()
        .expect("an Arrow batch frame holds one batch")
        .unwrap_or_else(|e| panic!("an Arrow batch from another process does not decode: {e}"));
    Some(batch)
}

impl timely::dataflow::channels::ContainerBytes for ArrowBatch {
    fn from_bytes(bytes: timely::bytes::arc::Bytes) -> Self {
        ArrowBatch(unframe(&bytes))
    }

    fn length_in_bytes(&self) -> usize {
        let bytes = frame(self.0.as_ref());
        let len = bytes.len();
        if let Some(b) = &self.0 {
            LAST.with(|last| *last.borrow_mut() = Some((b.clone(), bytes)));
        }
        len
    }

    fn into_bytes<W: std::io::Write>(&self, writer: &mut W) {
        let bytes = take_frame(self.0.as_ref());
        // Timely's writer is the buffer it reserved `length_in_bytes` for: it cannot fail.
        writer
            .write_all(&bytes)
            .expect("timely reserves the bytes a message needs");
        ENCODED_BYTES.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, BinaryArray, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray,
        StringArray, StructArray, TimestampMillisecondArray, TimestampNanosecondArray, UInt64Array,
    };
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use arrow::record_batch::{RecordBatch, RecordBatchOptions};
    use timely::dataflow::channels::ContainerBytes;

    use crate::container::{ArrowBatch, empty_emission, is_empty_emission};

    /// What a peer reads from the bytes `batch` is written as, after checking that the written
    /// length is the announced one and a multiple of 8.
    fn round_trip(batch: &ArrowBatch) -> ArrowBatch {
        let announced = batch.length_in_bytes();
        let mut written = Vec::new();
        batch.into_bytes(&mut written);
        assert_eq!(written.len(), announced);
        assert_eq!(announced % 8, 0);
        ArrowBatch::from_bytes(timely::bytes::arc::BytesMut::from(written).freeze())
    }

    #[test]
    fn every_column_type_quiver_uses_comes_back_equal() {
        let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), None, Some(3)]),
            None,
            Some(vec![]),
        ]);
        let inner: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), None, Some("z")]));
        let structs = StructArray::from(vec![(
            Arc::new(Field::new("name", DataType::Utf8, true)),
            inner,
        )]);
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                "i32",
                Arc::new(Int32Array::from(vec![Some(1), None, Some(-3)])),
            ),
            (
                "i64",
                Arc::new(Int64Array::from(vec![Some(i64::MIN), Some(0), None])),
            ),
            (
                "u64",
                Arc::new(UInt64Array::from(vec![Some(u64::MAX), None, Some(7)])),
            ),
            (
                "f64",
                Arc::new(Float64Array::from(vec![Some(1.5), Some(f64::NAN), None])),
            ),
            (
                "utf8",
                Arc::new(StringArray::from(vec![Some("a"), None, Some("ü")])),
            ),
            (
                "binary",
                Arc::new(BinaryArray::from(vec![
                    Some(&b"\x00k"[..]),
                    None,
                    Some(b""),
                ])),
            ),
            (
                "bool",
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            ),
            (
                "ts_ms",
                Arc::new(TimestampMillisecondArray::from(vec![
                    Some(1),
                    None,
                    Some(3),
                ])),
            ),
            (
                "ts_ns_utc",
                Arc::new(
                    TimestampNanosecondArray::from(vec![None, Some(2), Some(3)])
                        .with_timezone("UTC"),
                ),
            ),
            ("list", Arc::new(list)),
            ("struct", Arc::new(structs)),
            ("nulls", arrow::array::new_null_array(&DataType::Null, 3)),
        ];
        let batch = RecordBatch::try_from_iter(columns).expect("columns of one length");
        let back = round_trip(&ArrowBatch(Some(batch.clone())));
        assert_eq!(back.0, Some(batch));
    }

    #[test]
    fn schema_metadata_and_nullability_come_back() {
        let schema = Schema::new(vec![Field::new("k", DataType::Utf8, false)])
            .with_metadata([("rule".to_string(), "r1".to_string())]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(StringArray::from(vec!["a"]))],
        )
        .expect("a valid batch");
        let back = round_trip(&ArrowBatch(Some(batch.clone())))
            .0
            .expect("a batch");
        assert_eq!(back.schema(), batch.schema());
    }

    #[test]
    fn the_empty_emission_still_counts_one_record() {
        use timely::Accountable;
        let empty = ArrowBatch(Some(empty_emission()));
        let back = round_trip(&empty);
        assert!(is_empty_emission(back.0.as_ref().expect("a batch")));
        assert_eq!(back.record_count(), 1);
    }

    #[test]
    fn rows_without_columns_keep_their_count() {
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(5)),
        )
        .expect("a batch of rows without columns");
        let back = round_trip(&ArrowBatch(Some(batch))).0.expect("a batch");
        assert_eq!((back.num_rows(), back.num_columns()), (5, 0));
    }

    #[test]
    fn no_batch_comes_back_as_no_batch() {
        let back = round_trip(&ArrowBatch(None));
        assert!(back.0.is_none());
    }

    #[test]
    fn the_length_kept_for_one_batch_is_not_written_for_another() {
        let a = RecordBatch::try_from_iter(vec![(
            "v",
            Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
        )])
        .expect("a batch");
        let b = RecordBatch::try_from_iter(vec![(
            "w",
            Arc::new(StringArray::from(vec!["only"])) as ArrayRef,
        )])
        .expect("a batch");
        // The length of `a` is asked for, then the bytes of `b`: `b`'s own bytes are written.
        let _ = ArrowBatch(Some(a)).length_in_bytes();
        let b = ArrowBatch(Some(b));
        let mut written = Vec::new();
        b.into_bytes(&mut written);
        let back = ArrowBatch::from_bytes(timely::bytes::arc::BytesMut::from(written).freeze());
        assert_eq!(back.0, b.0);
    }
}
