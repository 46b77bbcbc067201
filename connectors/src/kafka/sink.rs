//! The Kafka sink: one message per result row (a JSON object, or the row's `dataTemplate`
//! output), as eKuiper's kafka sink writes them, with `key` and `headers` rendered per row.
//!
//! A batch's messages are grouped by partition (by key with Kafka's murmur2, else the next
//! partition in turn) and written as record batches of at most `kafkaBatchSize` messages and
//! `batchBytes` bytes, each produce request awaited (`requiredACKs`) before the next, so
//! messages of one partition keep their order. A failed request is tried again up to
//! `maxAttempts` times on a fresh connection; then the batch counts as failed (the rule keeps
//! running, the next batch connects again), as eKuiper's sink does without a resend cache.

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use super::client::Client;
use super::config::{Headers, KafkaSinkConfig};
use super::partitioner;
use super::records::{self, Message};
use crate::codec::encode;
use crate::{ConnectorError, Sink};

/// Writes result rows to a Kafka topic.
#[derive(Debug)]
pub struct KafkaSink {
    config: KafkaSinkConfig,
    client: Client,
    /// The partition keyless messages go to next.
    next_partition: i32,
}

impl KafkaSink {
    /// A sink with `config`; it connects on the first write.
    pub fn new(config: KafkaSinkConfig) -> Self {
        let client = Client::new(config.connection.clone());
        KafkaSink {
            config,
            client,
            next_partition: 0,
        }
    }

    /// The settings this sink was created with.
    pub fn config(&self) -> &KafkaSinkConfig {
        &self.config
    }

    /// The message of one row: `value` with the key and headers rendered over `row`.
    fn message(&self, value: Bytes, row: &Value) -> Result<Message, String> {
        let key = match &self.config.key {
            None => None,
            Some(k) => Some(Bytes::from(k.render(row)?)),
        };
        let headers = match &self.config.headers {
            Headers::None => Vec::new(),
            Headers::Map(map) => map
                .iter()
                .map(|(name, v)| Ok((name.clone(), Bytes::from(v.render(row)?))))
                .collect::<Result<_, String>>()?,
            Headers::Template(t) => {
                let text = t.render(row)?;
                let map: serde_json::Map<String, Value> =
                    serde_json::from_str(&text).map_err(|e| {
                        format!("\"headers\" rendered \"{text}\", not a JSON object: {e}")
                    })?;
                map.into_iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => Ok((k, Bytes::from(s))),
                        other => Err(format!(
                            "\"headers\" rendered header \"{k}\" as {other}, not a string"
                        )),
                    })
                    .collect::<Result<_, String>>()?
            }
        };
        Ok(Message {
            key,
            value,
            headers,
        })
    }

    /// True when the key or headers depend on the row.
    fn needs_rows(&self) -> bool {
        self.config.key.as_ref().is_some_and(|k| k.is_template())
            || match &self.config.headers {
                Headers::None => false,
                Headers::Map(map) => map.iter().any(|(_, v)| v.is_template()),
                Headers::Template(t) => t.is_template(),
            }
    }

    /// The rows of `batch` as objects when a key or header template reads them, else none.
    fn rows(&self, batch: &RecordBatch) -> Vec<Value> {
        if !self.needs_rows() {
            return Vec::new();
        }
        encode::batch_to_rows(batch, self.config.send_nil)
            .into_iter()
            .map(Value::Object)
            .collect()
    }

    /// Messages for `values`, the i-th rendered over the i-th of `rows` (or over the first
    /// row, or none, when there are fewer).
    fn messages(&self, values: Vec<Bytes>, rows: &[Value]) -> Result<Vec<Message>, ConnectorError> {
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let row = rows.get(i).or(rows.first()).unwrap_or(&Value::Null);
                self.message(v, row)
            })
            .collect::<Result<_, _>>()
            .map_err(|e| io_error(format!("sink {}: {e}", self.config.topic)))
    }

    /// Writes `messages`: grouped by partition, in order within each, in record batches of
    /// at most `kafkaBatchSize` messages and `batchBytes` bytes.
    async fn write(&mut self, messages: Vec<Message>) -> Result<(), ConnectorError> {
        if messages.is_empty() {
            return Ok(());
        }
        let topic = self.config.topic.clone();
        let partitions = self
            .client
            .partition_count(&topic)
            .await
            .map_err(|e| io_error(format!("sink {topic}: {e}")))?;
        let keyless = self.next_partition % partitions;
        self.next_partition = (keyless + 1) % partitions;
        let mut by_partition: Vec<Vec<Message>> = vec![Vec::new(); partitions as usize];
        for m in messages {
            let p = match &m.key {
                Some(k) => partitioner::for_key(k, partitions),
                None => keyless,
            };
            by_partition[p as usize].push(m);
        }
        let total: usize = by_partition.iter().map(Vec::len).sum();
        let mut failed = 0;
        let mut first = None;
        for (partition, msgs) in by_partition.into_iter().enumerate() {
            let mut written_here = 0;
            for chunk in chunks(&msgs, self.config.batch_size, self.config.batch_bytes) {
                let records = records::encode(chunk, self.config.gzip)
                    .map_err(|e| io_error(format!("sink {topic}: {e}")));
                let written = match records {
                    Ok(r) => self
                        .client
                        .produce(&topic, partition as i32, r, self.config.required_acks)
                        .await
                        .map_err(|e| io_error(format!("sink {topic}: {e}"))),
                    Err(e) => Err(e),
                };
                if let Err(e) = written {
                    // The rest of this partition would land out of order after the gap.
                    failed += msgs.len() - written_here;
                    first.get_or_insert(e);
                    break;
                }
                written_here += chunk.len();
            }
        }
        match first {
            None => Ok(()),
            Some(e) if failed >= total => Err(e),
            Some(e) => Err(io_error(format!(
                "{failed} of {total} messages not written; the first failure: {e}"
            ))),
        }
    }
}

impl KafkaSink {
    /// Writes rendered payloads (a `dataTemplate`'s), one message each, in the sink's format;
    /// `rows` are what templated keys and headers read (none for fixed ones).
    async fn write_payloads(
        &mut self,
        payloads: &[Vec<u8>],
        rows: &[Value],
    ) -> Result<(), ConnectorError> {
        let values = self
            .config
            .format
            .payloads(payloads, true)?
            .into_iter()
            .map(Bytes::from)
            .collect();
        let messages = self.messages(values, rows)?;
        self.write(messages).await
    }
}

#[async_trait]
impl Sink for KafkaSink {
    async fn collect_list(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        // One message per row, whatever the format.
        let values: Vec<Bytes> = self
            .config
            .format
            .messages(batch, true, self.config.send_nil, false)?
            .into_iter()
            .map(Bytes::from)
            .collect();
        let rows = self.rows(batch);
        let messages = self.messages(values, &rows)?;
        self.write(messages).await
    }

    fn accepts_payloads(&self) -> bool {
        true
    }

    async fn collect_payloads(&mut self, payloads: &[Vec<u8>]) -> Result<(), ConnectorError> {
        if self.needs_rows() {
            return Err(io_error(format!(
                "sink {}: a templated key or headers need the rows the payload was made from",
                self.config.topic
            )));
        }
        self.write_payloads(payloads, &[]).await
    }

    async fn collect_rendered(
        &mut self,
        batch: &RecordBatch,
        payloads: &[Vec<u8>],
    ) -> Result<(), ConnectorError> {
        let rows = self.rows(batch);
        self.write_payloads(payloads, &rows).await
    }
}

/// Splits `msgs` into runs of at most `size` messages and about `bytes` bytes (a message
/// larger than that goes alone; the broker decides whether it is too large).
fn chunks(msgs: &[Message], size: usize, bytes: u64) -> Vec<&[Message]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut sum = 0u64;
    for (i, m) in msgs.iter().enumerate() {
        let s = m.size() as u64;
        if i > start && (i - start >= size || sum + s > bytes) {
            out.push(&msgs[start..i]);
            start = i;
            sum = 0;
        }
        sum += s;
    }
    if start < msgs.len() {
        out.push(&msgs[start..]);
    }
    out
}

fn io_error(reason: String) -> ConnectorError {
    ConnectorError::Io {
        connector: "kafka",
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: usize) -> Message {
        Message::value(vec![b'x'; n])
    }

    #[test]
    fn key_and_headers_are_rendered_over_the_row() {
        let sink = |headers: Value| {
            KafkaSink::new(
                KafkaSinkConfig::parse(&serde_json::json!({
                    "brokers": "a:1", "topic": "t", "key": "k-{{.device}}", "headers": headers
                }))
                .unwrap(),
            )
        };
        let row = serde_json::json!({"device": "d1", "v": 2});
        let s = sink(Value::String("{\"dev\": \"{{.device}}\"}".into()));
        assert!(s.needs_rows());
        let m = s.message(Bytes::from_static(b"x"), &row).unwrap();
        assert_eq!(m.key.as_deref(), Some(&b"k-d1"[..]));
        assert_eq!(
            m.headers,
            vec![("dev".to_string(), Bytes::from_static(b"d1"))]
        );
        let s = sink(Value::String("{\"v\": {{.v}}}".into()));
        let e = s.message(Bytes::new(), &row).unwrap_err();
        assert!(e.contains("not a string"), "{e}");
        let s = sink(Value::String("{{.device}}".into()));
        assert!(
            s.message(Bytes::new(), &row)
                .unwrap_err()
                .contains("not a JSON object")
        );
    }

    #[test]
    fn chunks_keep_count_and_size_limits() {
        let msgs: Vec<Message> = (0..5).map(|_| msg(10)).collect();
        let lens = |c: Vec<&[Message]>| c.iter().map(|c| c.len()).collect::<Vec<_>>();
        assert_eq!(lens(chunks(&msgs, 2, u64::MAX)), [2, 2, 1]);
        let one = msg(10).size() as u64;
        assert_eq!(lens(chunks(&msgs, 100, one * 3)), [3, 2]);
        // A message over the byte limit goes alone rather than never.
        assert_eq!(lens(chunks(&msgs, 100, 1)), [1, 1, 1, 1, 1]);
    }
}
