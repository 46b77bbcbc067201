//! The disk tier of the sink cache: pages of result batches in one SQLite file under the data
//! directory (`cache.db`, where eKuiper keeps its own), one row per page, each batch in Arrow
//! IPC so a resent row has exactly the types it had. Every call does blocking I/O: the cache
//! runs it on tokio's blocking threads.

use std::io::Cursor;
use std::path::Path;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use rusqlite::{Connection, params};

/// The cache file in the data directory.
const FILE: &str = "cache.db";

/// Why a disk operation failed.
pub type StoreError = String;

/// One sink's pages: `(rule, sink)` names them, `page` orders them.
pub struct DiskStore {
    conn: Connection,
    rule: String,
    sink: String,
}

fn sql(e: rusqlite::Error) -> StoreError {
    format!("sink cache: {e}")
}

/// Opens the cache file, creating its table; WAL so that sinks of several rules write without
/// waiting on each other's fsyncs, and a busy timeout for the moments they do.
fn open_file(dir: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(dir.join(FILE)).map_err(sql)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sql)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql)?;
    // Each commit reaches the disk: a page the cache counts as kept survives a power cut.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS sink_cache (
            rule TEXT NOT NULL, sink TEXT NOT NULL, page INTEGER NOT NULL,
            items INTEGER NOT NULL, data BLOB NOT NULL,
            PRIMARY KEY (rule, sink, page))",
    )
    .map_err(sql)?;
    Ok(conn)
}

impl DiskStore {
    /// The pages of `sink` of `rule` in the cache file under `dir`.
    pub fn open(dir: &Path, rule: &str, sink: &str) -> Result<DiskStore, StoreError> {
        Ok(DiskStore {
            conn: open_file(dir)?,
            rule: rule.to_string(),
            sink: sink.to_string(),
        })
    }

    /// The pages kept from earlier runs, oldest first: `(page, emissions)`.
    pub fn pages(&self) -> Result<Vec<(i64, usize)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT page, items FROM sink_cache WHERE rule = ?1 AND sink = ?2 ORDER BY page",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map(params![self.rule, self.sink], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as usize))
            })
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// Writes one page.
    pub fn put(&self, page: i64, items: &[RecordBatch]) -> Result<(), StoreError> {
        let data = encode(items)?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO sink_cache (rule, sink, page, items, data)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![self.rule, self.sink, page, items.len() as i64, data],
            )
            .map_err(sql)?;
        Ok(())
    }

    /// Reads one page back. A page that no longer decodes is an error naming it; the caller
    /// drops it and counts its emissions.
    pub fn get(&self, page: i64) -> Result<Vec<RecordBatch>, StoreError> {
        let data: Vec<u8> = self
            .conn
            .query_row(
                "SELECT data FROM sink_cache WHERE rule = ?1 AND sink = ?2 AND page = ?3",
                params![self.rule, self.sink, page],
                |r| r.get(0),
            )
            .map_err(sql)?;
        decode(&data).map_err(|e| format!("sink cache page {page} is corrupt: {e}"))
    }

    /// Removes one page.
    pub fn remove(&self, page: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM sink_cache WHERE rule = ?1 AND sink = ?2 AND page = ?3",
                params![self.rule, self.sink, page],
            )
            .map_err(sql)?;
        Ok(())
    }

    /// Removes every page of this sink.
    pub fn clear(&self) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM sink_cache WHERE rule = ?1 AND sink = ?2",
                params![self.rule, self.sink],
            )
            .map_err(sql)?;
        Ok(())
    }
}

/// Removes the pages of every sink of `rule` except those named in `keep` (a deleted rule
/// keeps none; an updated one only the sinks that still cache).
pub fn retain(dir: &Path, rule: &str, keep: &[String]) -> Result<(), StoreError> {
    if !dir.join(FILE).exists() {
        return Ok(());
    }
    let conn = open_file(dir)?;
    let mut stmt = conn
        .prepare("SELECT DISTINCT sink FROM sink_cache WHERE rule = ?1")
        .map_err(sql)?;
    let sinks: Vec<String> = stmt
        .query_map(params![rule], |r| r.get(0))
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    for sink in sinks.iter().filter(|s| !keep.contains(s)) {
        conn.execute(
            "DELETE FROM sink_cache WHERE rule = ?1 AND sink = ?2",
            params![rule, sink],
        )
        .map_err(sql)?;
    }
    Ok(())
}

/// A page's bytes: for each batch, its length (u32, little endian) and an Arrow IPC stream.
fn encode(items: &[RecordBatch]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    for batch in items {
        let mut one = Vec::new();
        let mut writer = StreamWriter::try_new(&mut one, &batch.schema())
            .map_err(|e| format!("sink cache: encoding a batch: {e}"))?;
        writer
            .write(batch)
            .and_then(|_| writer.finish())
            .map_err(|e| format!("sink cache: encoding a batch: {e}"))?;
        drop(writer);
        let len = u32::try_from(one.len())
            .map_err(|_| format!("sink cache: a batch of {} bytes is too large", one.len()))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&one);
    }
    Ok(out)
}

/// The batches of a page's bytes.
fn decode(mut data: &[u8]) -> Result<Vec<RecordBatch>, String> {
    let mut items = Vec::new();
    while !data.is_empty() {
        let (len, rest) = data.split_at_checked(4).ok_or("truncated length")?;
        let len = u32::from_le_bytes(len.try_into().expect("four bytes")) as usize;
        let (one, rest) = rest.split_at_checked(len).ok_or("truncated batch")?;
        let reader = StreamReader::try_new(Cursor::new(one), None).map_err(|e| e.to_string())?;
        for batch in reader {
            items.push(batch.map_err(|e| e.to_string())?);
        }
        data = rest;
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(v: f64) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("d", DataType::Utf8, true),
                Field::new("t", DataType::Float64, true),
            ])),
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None])),
                Arc::new(Float64Array::from(vec![v, 2.0])),
            ],
        )
        .unwrap()
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("quiver-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn pages_round_trip_in_order_and_survive_reopening() {
        let d = dir("round");
        let s = DiskStore::open(&d, "r1", "sink_rest_0").unwrap();
        s.put(2, &[batch(3.0)]).unwrap();
        s.put(1, &[batch(1.0), batch(2.0)]).unwrap();
        drop(s);
        let s = DiskStore::open(&d, "r1", "sink_rest_0").unwrap();
        assert_eq!(s.pages().unwrap(), vec![(1, 2), (2, 1)]);
        assert_eq!(s.get(1).unwrap(), vec![batch(1.0), batch(2.0)]);
        s.remove(1).unwrap();
        assert_eq!(s.pages().unwrap(), vec![(2, 1)]);
        // Another sink of the rule, and another rule, are apart.
        let other = DiskStore::open(&d, "r1", "sink_mqtt_1").unwrap();
        other.put(1, &[batch(9.0)]).unwrap();
        assert_eq!(other.pages().unwrap(), vec![(1, 1)]);
        retain(&d, "r1", &["sink_mqtt_1".into()]).unwrap();
        assert!(s.pages().unwrap().is_empty());
        assert_eq!(other.pages().unwrap().len(), 1);
        retain(&d, "r1", &[]).unwrap();
        assert!(other.pages().unwrap().is_empty());
    }

    #[test]
    fn a_corrupt_page_is_an_error_naming_it() {
        assert!(decode(&[9, 0, 0, 0, 1, 2]).is_err());
        let mut good = encode(&[batch(1.0)]).unwrap();
        good.truncate(good.len() - 3);
        assert!(decode(&good).is_err());
    }
}
