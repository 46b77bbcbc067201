//! Source events as bytes for the input log: raw messages with their metadata, line blocks,
//! and Arrow rows (IPC); an event of a stream joined to the rule's FROM stream is tagged with
//! the stream's number.

use std::sync::Arc;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;
use quiver_connectors::{RawMessage, SourceEvent};

const RAW: u8 = 1;
const LINES: u8 = 2;
const BATCH: u8 = 3;
/// An event of a joined stream: its number (from 1), then the event.
const JOINED: u8 = 4;

/// The bytes of an event of the rule's stream `source`: 0 for the FROM stream, `k` for the
/// `k`-th stream joined to it.
pub fn encode_from(source: u32, event: &SourceEvent) -> Result<Vec<u8>, String> {
    if source == 0 {
        return encode(event);
    }
    let inner = encode(event)?;
    let mut out = Vec::with_capacity(5 + inner.len());
    out.push(JOINED);
    put_u32(&mut out, source);
    out.extend_from_slice(&inner);
    Ok(out)
}

/// The stream number and the event of `bytes` written by [`encode_from`].
pub fn decode_from(bytes: &[u8]) -> Result<(u32, SourceEvent), String> {
    if bytes.first() != Some(&JOINED) {
        return Ok((0, decode(bytes)?));
    }
    let mut r = Reader { bytes, at: 1 };
    let source = r.u32()?;
    if source == 0 {
        return Err("a joined stream's record numbered 0".into());
    }
    Ok((source, decode(&bytes[r.at..])?))
}

/// The bytes of an event; `Err` for events that cannot be logged (rows decoded upstream).
pub fn encode(event: &SourceEvent) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match event {
        SourceEvent::Raw(messages) => {
            out.push(RAW);
            put_u32(&mut out, messages.len() as u32);
            for m in messages {
                put_bytes(&mut out, m.topic.as_bytes());
                out.push(m.qos.map_or(u8::MAX, |q| q));
                put_u32(&mut out, m.message_id.map_or(u32::MAX, u32::from));
                put_bytes(&mut out, &m.payload);
            }
        }
        SourceEvent::Lines { block, topic } => {
            out.push(LINES);
            put_bytes(&mut out, topic.as_bytes());
            put_bytes(&mut out, block);
        }
        SourceEvent::Batch(batch) => {
            out.push(BATCH);
            let mut w =
                StreamWriter::try_new(&mut out, &batch.schema()).map_err(|e| e.to_string())?;
            w.write(batch).map_err(|e| e.to_string())?;
            w.finish().map_err(|e| e.to_string())?;
        }
        SourceEvent::Decoded { .. } | SourceEvent::Logged { .. } => {
            return Err("rows decoded by a shared source cannot be logged".into());
        }
    }
    Ok(out)
}

/// The event of `bytes` written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<SourceEvent, String> {
    let mut r = Reader { bytes, at: 1 };
    match bytes.first() {
        Some(&RAW) => {
            let n = r.u32()? as usize;
            // Each message takes at least 13 bytes: a bound before allocating.
            if n > bytes.len() / 13 {
                return Err("message count out of bounds".into());
            }
            let mut messages = Vec::with_capacity(n);
            for _ in 0..n {
                let topic = r.string()?;
                let qos = r.u8()?;
                let id = r.u32()?;
                let payload = Bytes::copy_from_slice(r.bytes()?);
                messages.push(RawMessage {
                    payload,
                    topic,
                    qos: (qos != u8::MAX).then_some(qos),
                    message_id: u16::try_from(id).ok(),
                });
            }
            Ok(SourceEvent::Raw(messages))
        }
        Some(&LINES) => {
            let topic = r.string()?;
            let block = Bytes::copy_from_slice(r.bytes()?);
            Ok(SourceEvent::Lines { block, topic })
        }
        Some(&BATCH) => {
            let mut reader = StreamReader::try_new(&bytes[1..], None).map_err(|e| e.to_string())?;
            match reader.next() {
                Some(Ok(b)) => Ok(SourceEvent::Batch(b)),
                Some(Err(e)) => Err(e.to_string()),
                None => Err("an empty row record".into()),
            }
        }
        _ => Err("an unknown record kind".into()),
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or("a record runs past its end")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<Arc<str>, String> {
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(Arc::from)
            .map_err(|_| "a topic is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let raw = SourceEvent::Raw(vec![
            RawMessage {
                payload: Bytes::from_static(br#"{"a":1}"#),
                topic: Arc::from("t/1"),
                qos: Some(1),
                message_id: Some(7),
            },
            RawMessage::new(Bytes::from_static(b"x"), Arc::from("t/2")),
        ]);
        let back = decode(&encode(&raw).unwrap()).unwrap();
        let SourceEvent::Raw(m) = back else {
            panic!("raw expected")
        };
        assert_eq!(m.len(), 2);
        assert_eq!(&m[0].payload[..], br#"{"a":1}"#);
        assert_eq!(
            (&*m[0].topic, m[0].qos, m[0].message_id),
            ("t/1", Some(1), Some(7))
        );
        assert_eq!((m[1].qos, m[1].message_id), (None, None));
        let lines = SourceEvent::Lines {
            block: Bytes::from_static(b"a\nb\n"),
            topic: Arc::from("f.txt"),
        };
        let SourceEvent::Lines { block, topic } = decode(&encode(&lines).unwrap()).unwrap() else {
            panic!("lines expected")
        };
        assert_eq!((&block[..], &*topic), (&b"a\nb\n"[..], "f.txt"));
    }

    #[test]
    fn joined_events_keep_their_stream() {
        let raw = SourceEvent::Raw(vec![RawMessage::new(
            Bytes::from_static(b"j"),
            Arc::from("t/j"),
        )]);
        let (source, back) = decode_from(&encode_from(2, &raw).unwrap()).unwrap();
        let SourceEvent::Raw(m) = back else {
            panic!("raw expected")
        };
        assert_eq!((source, &m[0].payload[..]), (2, &b"j"[..]));
        let (source, _) = decode_from(&encode_from(0, &raw).unwrap()).unwrap();
        assert_eq!(source, 0);
        assert!(decode_from(&[JOINED, 0, 0, 0, 0, RAW, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        for bytes in [
            &b""[..],
            &[1, 255, 255, 255, 255][..],
            &[2, 9, 0, 0, 0, b'a'][..],
            &[9][..],
        ] {
            assert!(decode(bytes).is_err());
        }
    }
}
