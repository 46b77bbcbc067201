//! Reading and decoding a table's rows for a batch of join keys, with a per-worker cache.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::record_batch::RecordBatch;
use quiver_compiler::eval::EvalContext;
use quiver_compiler::expr::Expr;
use quiver_connectors::RawMessage;
use quiver_connectors::codec::json::JsonDecoder;

/// Table rows one worker's joins have decoded, by arrival number, for a table with a schema
/// (so every decoded chunk has the same columns). A row version never changes (an update is a
/// new row with a new number), so entries never go stale.
#[derive(Default)]
pub(crate) struct RowCache {
    chunks: Vec<RecordBatch>,
    at: HashMap<u64, (usize, usize)>,
}

impl RowCache {
    /// True when the row with this arrival number is decoded already.
    pub fn contains(&self, seq: u64) -> bool {
        self.at.contains_key(&seq)
    }

    /// Rows held.
    pub(crate) fn len(&self) -> usize {
        self.at.len()
    }

    /// Decodes `rows` (not held yet) as one more chunk.
    pub fn add(&mut self, decoder: &JsonDecoder, rows: &[(u64, &str)]) -> Result<(), String> {
        let texts: Vec<&str> = rows.iter().map(|(_, t)| *t).collect();
        let Some(chunk) = decode(decoder, &texts)? else {
            return Ok(());
        };
        if let Some(first) = self.chunks.first()
            && first.schema() != chunk.schema()
        {
            return Err("table rows decoded with different columns".into());
        }
        let c = self.chunks.len();
        for (r, (seq, _)) in rows.iter().enumerate() {
            self.at.insert(*seq, (c, r));
        }
        self.chunks.push(chunk);
        Ok(())
    }

    /// The held rows `seqs`, in order, as one batch.
    pub fn take(&self, seqs: &[u64]) -> Result<Option<RecordBatch>, String> {
        let Some(first) = self.chunks.first().filter(|_| !seqs.is_empty()) else {
            return Ok(None);
        };
        let indices: Vec<(usize, usize)> = seqs
            .iter()
            .map(|seq| {
                self.at
                    .get(seq)
                    .copied()
                    .ok_or("a table row is not decoded")
            })
            .collect::<Result<_, _>>()?;
        let columns = (0..first.num_columns())
            .map(|col| {
                let arrays: Vec<&dyn arrow::array::Array> =
                    self.chunks.iter().map(|b| b.column(col).as_ref()).collect();
                arrow::compute::interleave(&arrays, &indices)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        RecordBatch::try_new(first.schema(), columns)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

/// Decodes row texts into the table's columns: one batch whose row `i` is `texts[i]`, or
/// `None` when there is no row.
pub fn decode(decoder: &JsonDecoder, texts: &[&str]) -> Result<Option<RecordBatch>, String> {
    if texts.is_empty() {
        return Ok(None);
    }
    let topic: Arc<str> = Arc::from("");
    let messages: Vec<RawMessage> = texts
        .iter()
        .map(|t| RawMessage::new(t.as_bytes().to_vec(), topic.clone()))
        .collect();
    let decoded = decoder.decode(&messages);
    if decoded.batches.len() == 1 && decoded.rows() == texts.len() {
        return Ok(decoded.batches.into_iter().next());
    }
    // Schemaless rows whose fields change type decode in groups: row by row keeps the order.
    let mut parts = Vec::with_capacity(messages.len());
    for m in &messages {
        let one = decoder.decode(std::slice::from_ref(m));
        match one.batches.into_iter().next() {
            Some(b) if b.num_rows() == 1 => parts.push(b),
            _ => {
                return Err(one
                    .errors
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| "a table row no longer decodes".into()));
            }
        }
    }
    Ok(crate::batch::concat_results(&parts))
}

/// The key text of each row (`None` where a key value is missing).
pub(crate) fn key_texts(
    decoder: &JsonDecoder,
    keys: &[Expr],
    texts: &[&str],
) -> Vec<Option<String>> {
    match decode(decoder, texts) {
        Ok(Some(b)) => batch_key_texts(keys, &b),
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::warn!("table rows left out of an index: {e}");
            vec![None; texts.len()]
        }
    }
}

/// The key text of each row of decoded table rows (`None` where a key value is missing).
pub(crate) fn batch_key_texts(keys: &[Expr], batch: &RecordBatch) -> Vec<Option<String>> {
    let rows = batch.num_rows();
    let mut ctx = EvalContext::new(rows);
    let arrays: Result<Vec<ArrayRef>, String> = keys
        .iter()
        .map(|k| k.eval(batch, &mut ctx).map(|v| v.into_array(rows)))
        .collect();
    match arrays {
        Ok(arrays) => crate::keys::keys_of(&arrays, rows),
        Err(e) => {
            tracing::warn!("table rows left out of an index: {e}");
            vec![None; rows]
        }
    }
}
