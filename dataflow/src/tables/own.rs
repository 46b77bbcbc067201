//! A rule's own copy of a scan table, for rules with qos 1 and 2.
//!
//! A scan table's shared arrangement lives outside every rule's checkpoint: after a crash it
//! holds only what its source sends again, and a replay would join against the table as it is
//! then. A checkpointed rule therefore reads the table with a source of its own (as eKuiper
//! gives every rule its own table instance): the table's events go into worker 0's input log
//! between the FROM stream's, tagged with the table's source number, and this copy is kept by
//! the join operator on worker 0 and saved in the rule's checkpoints. A replay then applies
//! the same table changes between the same stream rows, so every row is joined against the
//! table exactly as it was the first time.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use quiver_compiler::expr::Expr;
use quiver_connectors::codec::json::JsonDecoder;

use crate::state::OpState;
use crate::tables::rows::{batch_key_texts, decode};

/// The schema metadata key naming the table source a batch of table rows came from.
const SOURCE_KEY: &str = "quiver.table_source";

/// `batch` (a table's decoded rows) tagged with the rule's source number of its table.
pub fn tag(batch: RecordBatch, source: u32) -> RecordBatch {
    let mut metadata = batch.schema_ref().metadata().clone();
    metadata.insert(SOURCE_KEY.to_string(), source.to_string());
    let schema = Schema::new(batch.schema_ref().fields().clone()).with_metadata(metadata);
    // The row count is given for rows without columns (`{}` into a schemaless table).
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::new(schema), batch.columns().to_vec(), &options)
        .expect("the same columns under the same fields")
}

/// The table source a batch of table rows is tagged with (`None` for stream rows).
pub fn source_of(batch: &RecordBatch) -> Option<u32> {
    batch.schema_ref().metadata().get(SOURCE_KEY)?.parse().ok()
}

/// One held row: its `KEY` text (keyed tables), its join key text and its JSON object text.
struct Held {
    key: Option<String>,
    join: Option<String>,
    text: String,
}

/// A rule's copy of a scan table, indexed by one join's table-side keys.
pub struct OwnTable {
    /// The rule's number for the table's source (its records in the input log carry it).
    pub source: u32,
    key: Option<String>,
    retain: Option<usize>,
    join_keys: Vec<Expr>,
    decoder: JsonDecoder,
    /// Arrival numbers handed out so far.
    seq: u64,
    rows: BTreeMap<u64, Held>,
    /// Keyed tables: `KEY` text → the arrival number of its row.
    by_key: HashMap<String, u64>,
    /// Unkeyed tables: arrival numbers, oldest first (`RETAIN_SIZE` drops from the front).
    order: VecDeque<u64>,
    /// Join key text → arrival numbers of the rows with it.
    by_join: HashMap<String, BTreeSet<u64>>,
}

/// What [`OwnTable::read`] found for a batch's keys: the rows (decoded, in one batch) and the
/// positions of each key's rows in it.
pub type Found = (Option<RecordBatch>, HashMap<String, Vec<u32>>);

impl OwnTable {
    /// An empty copy of a table with `KEY` column `key` and `RETAIN_SIZE` `retain`, decoded
    /// with `decoder`, indexed by `join_keys`.
    pub fn new(
        source: u32,
        key: Option<String>,
        retain: Option<usize>,
        join_keys: Vec<Expr>,
        decoder: JsonDecoder,
    ) -> Self {
        OwnTable {
            source,
            key,
            retain,
            join_keys,
            decoder,
            seq: 0,
            rows: BTreeMap::new(),
            by_key: HashMap::new(),
            order: VecDeque::new(),
            by_join: HashMap::new(),
        }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when no row is held.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Applies a batch of the table's rows as its shared feed does: upserts by `KEY` (a row
    /// without a `KEY` value is skipped and counted in the return value), or appends and
    /// trims to `RETAIN_SIZE`.
    pub fn apply(&mut self, batch: &RecordBatch) -> usize {
        let texts: Vec<String> =
            quiver_connectors::codec::encode::batch_to_json_objects(batch, true)
                .into_iter()
                .map(|r| String::from_utf8(r).expect("the encoder writes UTF-8"))
                .collect();
        // The rows arrive decoded with the table's decoder: their join keys are read off them.
        let joins = batch_key_texts(&self.join_keys, batch);
        let keys: Vec<Option<String>> = match &self.key {
            Some(k) => match quiver_compiler::eval::column_by_name(batch, k) {
                Some(col) => crate::keys::keys_of(std::slice::from_ref(col), batch.num_rows()),
                None => vec![None; texts.len()],
            },
            None => vec![None; texts.len()],
        };
        let mut skipped = 0;
        for ((text, join), key) in texts.into_iter().zip(joins).zip(keys) {
            if self.key.is_some() && key.is_none() {
                skipped += 1;
                continue;
            }
            self.seq += 1;
            self.insert(self.seq, Held { key, join, text });
        }
        skipped
    }

    /// Holds `row` as arrival number `seq`, replacing its key's row or trimming the oldest
    /// (the row itself, with `RETAIN_SIZE` 0).
    fn insert(&mut self, seq: u64, row: Held) {
        let replaced = row
            .key
            .as_ref()
            .and_then(|k| self.by_key.insert(k.clone(), seq));
        if let Some(j) = &row.join {
            self.by_join.entry(j.clone()).or_default().insert(seq);
        }
        let keyed = row.key.is_some();
        self.rows.insert(seq, row);
        if let Some(old) = replaced {
            self.remove(old);
        }
        if !keyed {
            self.order.push_back(seq);
            if let Some(n) = self.retain {
                while self.order.len() > n {
                    if let Some(old) = self.order.pop_front() {
                        self.remove(old);
                    }
                }
            }
        }
    }

    fn remove(&mut self, seq: u64) {
        let Some(old) = self.rows.remove(&seq) else {
            return;
        };
        if let Some(j) = &old.join
            && let Some(set) = self.by_join.get_mut(j)
        {
            set.remove(&seq);
            if set.is_empty() {
                self.by_join.remove(j);
            }
        }
    }

    /// The rows matching `keys` (stream rows' join key texts), decoded in arrival order, and
    /// where each key's rows are in that batch.
    pub fn read(&self, keys: &[Option<String>]) -> Result<Found, String> {
        let mut wanted: Vec<&String> = keys.iter().flatten().collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut texts: Vec<&str> = Vec::new();
        let mut index: HashMap<String, Vec<u32>> = HashMap::new();
        for k in wanted {
            let Some(seqs) = self.by_join.get(k) else {
                continue;
            };
            for seq in seqs {
                if let Some(row) = self.rows.get(seq) {
                    index.entry(k.clone()).or_default().push(texts.len() as u32);
                    texts.push(&row.text);
                }
            }
        }
        Ok((decode(&self.decoder, &texts)?, index))
    }

    /// The rows held, as a checkpoint keeps them.
    pub fn save(&self) -> Result<OpState, String> {
        let seqs = Int64Array::from_iter_values(self.rows.keys().map(|s| *s as i64));
        let keys = StringArray::from_iter(self.rows.values().map(|r| r.key.as_deref()));
        let joins = StringArray::from_iter(self.rows.values().map(|r| r.join.as_deref()));
        let texts = StringArray::from_iter_values(self.rows.values().map(|r| r.text.as_str()));
        let schema = Schema::new(vec![
            Field::new("seq", DataType::Int64, false),
            Field::new("key", DataType::Utf8, true),
            Field::new("join", DataType::Utf8, true),
            Field::new("text", DataType::Utf8, false),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(seqs),
            Arc::new(keys),
            Arc::new(joins),
            Arc::new(texts),
        ];
        let rows = RecordBatch::try_new(Arc::new(schema), columns).map_err(|e| e.to_string())?;
        let mut state = OpState::default();
        state.push_number("source", i64::from(self.source));
        state.push_number("seq", self.seq as i64);
        state.push_batch("rows", rows);
        Ok(state)
    }

    /// Replaces the rows with those [`OwnTable::save`] kept (of the same table and join).
    pub fn load(&mut self, state: &OpState) -> Result<(), String> {
        if state.need_number("source")? != i64::from(self.source) {
            return Err("table state: saved for another of the rule's tables".into());
        }
        let rows = state.need_batch("rows")?;
        let column = |name: &str| {
            rows.column_by_name(name)
                .ok_or_else(|| format!("table state: no column {name:?}"))
        };
        let seqs = column("seq")?
            .as_primitive_opt::<arrow::datatypes::Int64Type>()
            .ok_or("table state: seq is not Int64")?;
        let [keys, joins, texts] =
            ["key", "join", "text"].map(|n| column(n).map(|c| c.as_string_opt::<i32>()));
        let (Some(keys), Some(joins), Some(texts)) = (keys?, joins?, texts?) else {
            return Err("table state: a text column is not Utf8".into());
        };
        self.rows.clear();
        self.by_key.clear();
        self.order.clear();
        self.by_join.clear();
        let text = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_string());
        for i in 0..rows.num_rows() {
            let seq = u64::try_from(seqs.value(i)).map_err(|_| "table state: a negative seq")?;
            let row = Held {
                key: text(keys, i),
                join: text(joins, i),
                text: texts.value(i).to_string(),
            };
            self.insert(seq, row);
        }
        self.seq = u64::try_from(state.need_number("seq")?).unwrap_or(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{batch, ints, strings};

    fn table(key: Option<&str>, retain: Option<usize>) -> OwnTable {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]);
        let decoder = JsonDecoder::new(Some(Arc::new(schema)), false);
        let join = vec![Expr::Column {
            name: "id".into(),
            ty: quiver_compiler::types::SqlType::Any,
        }];
        OwnTable::new(1, key.map(String::from), retain, join, decoder)
    }

    fn rows(ids: &[&str], vals: &[i64]) -> RecordBatch {
        let ids: Vec<Option<&str>> = ids.iter().map(|s| Some(*s)).collect();
        let vals: Vec<Option<i64>> = vals.iter().map(|v| Some(*v)).collect();
        batch(vec![("id", strings(&ids)), ("v", ints(&vals))])
    }

    fn values(t: &OwnTable, id: &str) -> Vec<String> {
        let key = format!("{}\u{1f}", serde_json::json!(id));
        let (found, index) = t.read(&[Some(key.clone())]).unwrap();
        let Some(found) = found else {
            return Vec::new();
        };
        let v = found.column_by_name("v").unwrap();
        index
            .get(&key)
            .map(|rows| {
                rows.iter()
                    .map(|r| arrow::util::display::array_value_to_string(v, *r as usize).unwrap())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_keyed_table_keeps_the_last_row_of_each_key() {
        let mut t = table(Some("id"), None);
        t.apply(&rows(&["a", "b"], &[1, 2]));
        t.apply(&rows(&["a"], &[3]));
        assert_eq!(values(&t, "a"), ["3"]);
        assert_eq!(values(&t, "b"), ["2"]);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn an_unkeyed_table_keeps_its_last_retain_size_rows() {
        let mut t = table(None, Some(2));
        t.apply(&rows(&["a", "a", "a"], &[1, 2, 3]));
        assert_eq!(values(&t, "a"), ["2", "3"]);
    }

    #[test]
    fn retain_size_zero_keeps_nothing() {
        let mut t = table(None, Some(0));
        t.apply(&rows(&["a", "a"], &[1, 2]));
        assert!(t.is_empty());
        assert_eq!(values(&t, "a"), Vec::<String>::new());
    }

    #[test]
    fn saved_rows_load_into_a_fresh_copy() {
        let mut t = table(Some("id"), None);
        t.apply(&rows(&["a", "b"], &[1, 2]));
        t.apply(&rows(&["a"], &[3]));
        let saved = OpState::decode(&t.save().unwrap().encode().unwrap()).unwrap();
        let mut fresh = table(Some("id"), None);
        fresh.load(&saved).unwrap();
        assert_eq!(values(&fresh, "a"), ["3"]);
        assert_eq!(values(&fresh, "b"), ["2"]);
        // Arrival numbers go on after the saved ones: a later upsert still replaces.
        fresh.apply(&rows(&["b"], &[4]));
        assert_eq!(values(&fresh, "b"), ["4"]);
        assert_eq!(fresh.len(), 2);
    }

    #[test]
    fn tagged_table_rows_name_their_source() {
        let b = rows(&["a"], &[1]);
        assert_eq!(source_of(&b), None);
        assert_eq!(source_of(&tag(b, 3)), Some(3));
    }
}
