//! Interim stand-in for operator state (replaced by the full module).

use arrow::record_batch::RecordBatch;

/// One operator's saved state: named Arrow batches and named integers.
#[derive(Debug, Default, Clone)]
pub struct OpState {
    /// Named batches.
    pub batches: Vec<(String, RecordBatch)>,
    /// Named integers.
    pub numbers: Vec<(String, i64)>,
}

impl OpState {
    /// Bytes.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for (n, v) in &self.numbers {
            out.extend_from_slice(format!("{n}={v}\n").as_bytes());
        }
        Ok(out)
    }
    /// Back.
    pub fn decode(bytes: &[u8]) -> Result<OpState, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        let mut s = OpState::default();
        for line in text.lines() {
            let (n, v) = line.split_once('=').ok_or("bad")?;
            s.numbers.push((n.into(), v.parse().map_err(|_| "bad")?));
        }
        Ok(s)
    }
    /// Batch.
    pub fn batch(&self, name: &str) -> Option<&RecordBatch> {
        self.batches.iter().find(|(n, _)| n == name).map(|(_, b)| b)
    }
    /// Number.
    pub fn number(&self, name: &str) -> Option<i64> {
        self.numbers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
    /// Push.
    pub fn push_batch(&mut self, name: impl Into<String>, b: RecordBatch) {
        self.batches.push((name.into(), b));
    }
    /// Push.
    pub fn push_number(&mut self, name: impl Into<String>, v: i64) {
        self.numbers.push((name.into(), v));
    }
    /// Nest.
    pub fn nest(&mut self, prefix: &str, inner: OpState) {
        for (n, b) in inner.batches {
            self.batches.push((format!("{prefix}.{n}"), b));
        }
        for (n, v) in inner.numbers {
            self.numbers.push((format!("{prefix}.{n}"), v));
        }
    }
    /// Inner.
    pub fn inner(&self, prefix: &str) -> OpState {
        let p = format!("{prefix}.");
        OpState {
            batches: self
                .batches
                .iter()
                .filter_map(|(n, b)| Some((n.strip_prefix(&p)?.to_string(), b.clone())))
                .collect(),
            numbers: self
                .numbers
                .iter()
                .filter_map(|(n, v)| Some((n.strip_prefix(&p)?.to_string(), *v)))
                .collect(),
        }
    }
}
