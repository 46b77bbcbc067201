//! Messages as Kafka stores them: record batches (format v2) encoded for a produce request and
//! decoded from a fetch response.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Bytes a record adds beyond its key, value and headers (varint lengths, deltas, attributes),
/// counted generously so a request stays under `batchBytes`.
const RECORD_OVERHEAD: usize = 32;

/// One message: what a producer writes and a consumer reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The key (the partition is chosen by it), if any.
    pub key: Option<Bytes>,
    /// The payload.
    pub value: Bytes,
    /// Headers, in order.
    pub headers: Vec<(String, Bytes)>,
}

impl Message {
    /// A message with a value only.
    pub fn value(value: impl Into<Bytes>) -> Message {
        Message {
            value: value.into(),
            ..Message::default()
        }
    }

    /// About how many bytes the message takes in a record batch.
    pub fn size(&self) -> usize {
        RECORD_OVERHEAD
            + self.value.len()
            + self.key.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 8)
                .sum::<usize>()
    }
}

/// Encodes `msgs` as one record batch (format v2, not idempotent), gzip-compressed if asked.
pub fn encode(msgs: &[Message], gzip: bool) -> Result<Bytes, String> {
    let now = chrono::Utc::now().timestamp_millis();
    let records: Vec<Record> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut record = Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder keeps records in one batch while offset - sequence is constant,
                // and writes the first one's sequence as the batch's: -1, "not idempotent".
                sequence: i as i32 - 1,
                timestamp: now,
                key: m.key.clone(),
                value: Some(m.value.clone()),
                headers: Default::default(),
            };
            for (k, v) in &m.headers {
                record
                    .headers
                    .insert(StrBytes::from_string(k.clone()), Some(v.clone()));
            }
            record
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: if gzip {
            Compression::Gzip
        } else {
            Compression::None
        },
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options)
        .map_err(|e| format!("cannot encode messages: {e}"))?;
    Ok(buf.freeze())
}

/// The messages of a fetched partition at or after offset `from`, with their offsets. Control
/// records (transaction markers) are left out; a batch the broker cut off at the fetch's byte
/// limit (it may send a partial last one) is left for the next fetch.
pub fn decode(records: Bytes, from: i64) -> Result<Vec<(i64, Message)>, String> {
    let mut out = Vec::new();
    for mut batch in whole_batches(records) {
        let set =
            RecordBatchDecoder::decode(&mut batch).map_err(|e| format!("bad record batch: {e}"))?;
        for r in set.records {
            // A compressed batch starts before the offset asked for.
            if r.offset < from || r.control {
                continue;
            }
            let headers = r
                .headers
                .into_iter()
                .map(|(k, v)| (k.as_str().to_string(), v.unwrap_or_default()))
                .collect();
            out.push((
                r.offset,
                Message {
                    key: r.key,
                    value: r.value.unwrap_or_default(),
                    headers,
                },
            ));
        }
    }
    Ok(out)
}

/// The offset after the last record of `records` (control records included), if any: where
/// the next fetch starts even when every record was a transaction marker.
pub fn next_offset(records: &Bytes) -> Option<i64> {
    whole_batches(records.clone())
        .iter()
        // Base offset (8 bytes), length (4), leader epoch (4), magic (1), crc (4),
        // attributes (2), last offset delta (4).
        .filter(|b| b.len() >= 27)
        .map(|b| (&b[..8]).get_i64() + i64::from((&b[23..27]).get_i32()) + 1)
        .max()
}

/// Splits a fetched partition's records into whole record batches.
fn whole_batches(mut records: Bytes) -> Vec<Bytes> {
    let mut batches = Vec::new();
    // Each batch: base offset (8 bytes), then its length (4) counting what follows.
    while records.len() >= 12 {
        let length = (&records[8..12]).get_i32();
        let Some(total) = usize::try_from(length).ok().map(|l| l + 12) else {
            break;
        };
        if records.len() < total {
            break;
        }
        batches.push(records.split_to(total));
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_at(base: i64, values: &[&str]) -> Bytes {
        let msgs: Vec<Message> = values
            .iter()
            .map(|v| Message::value(Bytes::copy_from_slice(v.as_bytes())))
            .collect();
        let mut bytes = BytesMut::from(&encode(&msgs, false).unwrap()[..]);
        bytes[..8].copy_from_slice(&base.to_be_bytes());
        bytes.freeze()
    }

    #[test]
    fn batches_decode_to_the_messages() {
        let msgs = vec![
            Message {
                key: Some(Bytes::from_static(b"k")),
                value: Bytes::from_static(b"{\"a\":1}"),
                headers: vec![("h".into(), Bytes::from_static(b"v"))],
            },
            Message::value("xxx"),
        ];
        for gzip in [false, true] {
            let got = decode(encode(&msgs, gzip).unwrap(), 0).unwrap();
            assert_eq!(got, vec![(0, msgs[0].clone()), (1, msgs[1].clone())]);
        }
    }

    #[test]
    fn records_before_the_offset_and_cut_batches_are_skipped() {
        let mut buf = BytesMut::from(&batch_at(10, &["a", "b", "c"])[..]);
        buf.extend_from_slice(&batch_at(13, &["d"]));
        let whole = buf.freeze();
        let values = |got: Vec<(i64, Message)>| {
            got.into_iter()
                .map(|(o, m)| (o, String::from_utf8(m.value.to_vec()).unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            values(decode(whole.clone(), 11).unwrap()),
            [(11, "b".into()), (12, "c".into()), (13, "d".into())]
        );
        assert_eq!(next_offset(&whole), Some(14));
        let cut = whole.slice(..whole.len() - 2);
        assert_eq!(values(decode(cut.clone(), 0).unwrap()).len(), 3);
        assert_eq!(next_offset(&cut), Some(13));
        assert!(decode(Bytes::from_static(b"short"), 0).unwrap().is_empty());
        assert_eq!(next_offset(&Bytes::new()), None);
    }
}
