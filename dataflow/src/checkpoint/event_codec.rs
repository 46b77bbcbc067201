//! Source events as bytes for the input log: raw messages with their metadata, line blocks,
//! and Arrow rows (IPC). A record may put before its event the source's mark (its position
//! after the event) and, for a stream joined to the rule's FROM stream, the stream's number. A
//! source that reads its input again (the file source) may write the mark alone: the record
//! then ends with one `PLACE` byte instead of an event.

use std::sync::Arc;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;
use quiver_connectors::{RawMessage, SourceEvent};

const RAW: u8 = 1;
const LINES: u8 = 2;
const BATCH: u8 = 3;
/// A mark (the source's position after the event) comes next.
const MARKED: u8 = 4;
/// A joined stream's number (from 1) comes next.
const JOINED: u8 = 5;
/// In place of the event: the record holds only its mark, from which the source reads the
/// event again.
const PLACE: u8 = 6;

/// The bytes of a record: an event of the rule's stream `source` (0 for the FROM stream, `k`
/// for the `k`-th stream joined to it), with its source's mark, if any.
pub fn encode_record(
    source: u32,
    event: &SourceEvent,
    mark: Option<&[u8]>,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    encode_record_into(&mut out, source, Some(event), mark)?;
    Ok(out)
}

/// [`encode_record`] appended to `out` (the log writes it after the record's header, so the
/// event is encoded straight into the bytes written, not copied there). Without an event the
/// record holds only the mark, which it then needs.
pub fn encode_record_into(
    out: &mut Vec<u8>,
    source: u32,
    event: Option<&SourceEvent>,
    mark: Option<&[u8]>,
) -> Result<(), String> {
    if let Some(mark) = mark {
        out.push(MARKED);
        put_bytes(out, mark);
    }
    if source != 0 {
        out.push(JOINED);
        put_u32(out, source);
    }
    match event {
        Some(event) => encode_into(out, event),
        None if mark.is_some() => {
            out.push(PLACE);
            Ok(())
        }
        None => Err("a record without its event needs a mark".into()),
    }
}

/// A record's stream number, event (`None`: only its mark was logged) and mark.
pub type DecodedRecord = (u32, Option<SourceEvent>, Option<Vec<u8>>);

/// The stream number, event (`None`: only its mark was logged) and mark of a record written by
/// [`encode_record_into`] (or [`encode`]: the FROM stream, no mark).
pub fn decode_record(bytes: &[u8]) -> Result<DecodedRecord, String> {
    let mut r = Reader { bytes, at: 0 };
    let mut mark = None;
    if bytes.first() == Some(&MARKED) {
        r.at = 1;
        mark = Some(r.bytes()?.to_vec());
    }
    let mut source = 0;
    if bytes.get(r.at) == Some(&JOINED) {
        r.at += 1;
        source = r.u32()?;
        if source == 0 {
            return Err("a joined stream's record numbered 0".into());
        }
    }
    if bytes[r.at..] == [PLACE] {
        if mark.is_none() {
            return Err("a record holds neither its event nor a mark".into());
        }
        return Ok((source, None, mark));
    }
    Ok((source, Some(decode(&bytes[r.at..])?), mark))
}

/// The mark of a record's bytes, without decoding its event, and whether the record holds
/// its event.
pub fn mark_of(bytes: &[u8]) -> Result<(Option<Vec<u8>>, bool), String> {
    if bytes.first() != Some(&MARKED) {
        return Ok((None, true));
    }
    let mut r = Reader { bytes, at: 1 };
    let mark = r.bytes()?.to_vec();
    if bytes.get(r.at) == Some(&JOINED) {
        r.at += 1;
        r.u32()?;
    }
    // (An event's encoding starts with its kind and is longer than one byte.)
    Ok((Some(mark), bytes[r.at..] != [PLACE]))
}

/// The bytes of an event; `Err` for events that cannot be logged (rows decoded upstream).
pub fn encode(event: &SourceEvent) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    encode_into(&mut out, event)?;
    Ok(out)
}

/// [`encode`] appended to `out`.
fn encode_into(out: &mut Vec<u8>, event: &SourceEvent) -> Result<(), String> {
    match event {
        SourceEvent::Raw(messages) => {
            out.push(RAW);
            put_u32(out, messages.len() as u32);
            for m in messages {
                put_bytes(out, m.topic.as_bytes());
                out.push(m.qos.map_or(u8::MAX, |q| q));
                put_u32(out, m.message_id.map_or(u32::MAX, u32::from));
                put_bytes(out, &m.payload);
            }
        }
        SourceEvent::Lines { block, topic } => {
            out.push(LINES);
            put_bytes(out, topic.as_bytes());
            put_bytes(out, block);
        }
        SourceEvent::Batch(batch) => {
            out.push(BATCH);
            let mut w = StreamWriter::try_new(out, &batch.schema()).map_err(|e| e.to_string())?;
            w.write(batch).map_err(|e| e.to_string())?;
            w.finish().map_err(|e| e.to_string())?;
        }
        SourceEvent::Decoded { .. } | SourceEvent::Logged { .. } => {
            return Err("rows decoded by a shared source cannot be logged".into());
        }
    }
    Ok(())
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
    fn marks_travel_with_their_event() {
        let lines = SourceEvent::Lines {
            block: Bytes::from_static(b"a\n"),
            topic: Arc::from("f"),
        };
        let bytes = encode_record(0, &lines, Some(b"at 2")).unwrap();
        assert_eq!(mark_of(&bytes).unwrap(), (Some(b"at 2".to_vec()), true));
        let (source, event, mark) = decode_record(&bytes).unwrap();
        assert_eq!((source, mark.as_deref()), (0, Some(&b"at 2"[..])));
        assert!(matches!(event, Some(SourceEvent::Lines { .. })));
        let plain = encode_record(0, &lines, None).unwrap();
        assert_eq!(mark_of(&plain).unwrap(), (None, true));
        assert!(decode_record(&plain).unwrap().2.is_none());
    }

    #[test]
    fn a_place_record_holds_its_mark_alone() {
        let mut bytes = Vec::new();
        encode_record_into(&mut bytes, 0, None, Some(b"file at 7")).unwrap();
        // The mark and one byte: none of the event's bytes.
        assert_eq!(bytes.len(), 1 + 4 + 9 + 1);
        assert_eq!(
            mark_of(&bytes).unwrap(),
            (Some(b"file at 7".to_vec()), false)
        );
        let (source, event, mark) = decode_record(&bytes).unwrap();
        assert_eq!((source, event.is_none()), (0, true));
        assert_eq!(mark.as_deref(), Some(&b"file at 7"[..]));
        assert!(encode_record_into(&mut Vec::new(), 0, None, None).is_err());
        // An event whose encoding happens to end with the PLACE byte is still an event.
        let lines = SourceEvent::Lines {
            block: Bytes::from_static(&[PLACE]),
            topic: Arc::from("f"),
        };
        let bytes = encode_record(0, &lines, Some(b"m")).unwrap();
        assert_eq!(mark_of(&bytes).unwrap(), (Some(b"m".to_vec()), true));
        assert!(decode_record(&bytes).unwrap().1.is_some());
    }

    #[test]
    fn joined_events_keep_their_stream() {
        let raw = SourceEvent::Raw(vec![RawMessage::new(
            Bytes::from_static(b"j"),
            Arc::from("t/j"),
        )]);
        let (source, back, mark) = decode_record(&encode_record(2, &raw, None).unwrap()).unwrap();
        let Some(SourceEvent::Raw(m)) = back else {
            panic!("raw expected")
        };
        assert_eq!((source, &m[0].payload[..], mark), (2, &b"j"[..], None));
        let (source, _, mark) =
            decode_record(&encode_record(3, &raw, Some(b"m")).unwrap()).unwrap();
        assert_eq!((source, mark.as_deref()), (3, Some(&b"m"[..])));
        let (source, _, _) = decode_record(&encode_record(0, &raw, None).unwrap()).unwrap();
        assert_eq!(source, 0);
        assert!(decode_record(&[JOINED, 0, 0, 0, 0, RAW, 0, 0, 0, 0]).is_err());
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
