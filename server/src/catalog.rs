//! The persistent catalog: streams, rules (with their running state), the connection
//! profiles (confKeys) and the named connections made over REST, in SQLite.
//!
//! Every change is one transaction, so a crash mid-request never leaves half a rule behind.
//! On start the server replays the catalog into the engine: streams first, then rules, each
//! started again if it was running.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

/// What can go wrong with the catalog file.
#[derive(Debug, thiserror::Error)]
#[error("catalog: {0}")]
pub struct CatalogError(#[from] rusqlite::Error);

/// A stored rule: its JSON as submitted and whether it should run.
#[derive(Debug, Clone)]
pub struct StoredRule {
    /// The rule id.
    pub id: String,
    /// eKuiper's rule JSON.
    pub json: String,
    /// True when the rule should run after a restart.
    pub running: bool,
}

/// `get_keyed_state`'s store: the `keyed_state (key, val)` table of the catalog database, which
/// other programs write (`REPLACE INTO keyed_state VALUES ('threshold', '25')`), read through
/// a connection of its own so rules never wait for catalog writes.
#[derive(Debug)]
pub struct KeyedState {
    conn: Mutex<Connection>,
}

impl KeyedState {
    /// Opens the keyed-state table of `<dir>/quiver.db` (created by [`Catalog::open`]).
    pub fn open(dir: &Path) -> Result<KeyedState, CatalogError> {
        let conn = Connection::open(dir.join("quiver.db"))?;
        // Another program may be writing: wait for its lock briefly rather than fail.
        conn.busy_timeout(std::time::Duration::from_millis(200))?;
        Ok(KeyedState {
            conn: Mutex::new(conn),
        })
    }
}

impl quiver_compiler::functions::KeyedStateStore for KeyedState {
    fn get(&self, key: &str) -> Result<Option<String>, String> {
        use rusqlite::types::Value;
        let conn = self.conn.lock().expect("keyed state lock");
        let value: Option<Value> = conn
            .query_row(
                "SELECT val FROM keyed_state WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| e.to_string())?;
        Ok(match value {
            None | Some(Value::Null) => None,
            Some(Value::Integer(i)) => Some(i.to_string()),
            Some(Value::Real(f)) => Some(f.to_string()),
            Some(Value::Text(t)) => Some(t),
            Some(Value::Blob(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
        })
    }
}

/// The SQLite-backed catalog.
pub struct Catalog {
    conn: Mutex<Connection>,
}

impl Catalog {
    /// Opens (or creates) `<dir>/quiver.db`.
    pub fn open(dir: &Path) -> Result<Catalog, CatalogError> {
        let conn = Connection::open(dir.join("quiver.db"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS streams (
                 name TEXT PRIMARY KEY,
                 sql  TEXT NOT NULL,
                 seq  INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS rules (
                 id      TEXT PRIMARY KEY,
                 json    TEXT NOT NULL,
                 running INTEGER NOT NULL,
                 seq     INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS conf_keys (
                 source_type TEXT NOT NULL,
                 name        TEXT NOT NULL,
                 props       TEXT NOT NULL,
                 PRIMARY KEY (source_type, name)
             );
             CREATE TABLE IF NOT EXISTS connections (
                 id    TEXT PRIMARY KEY,
                 typ   TEXT NOT NULL,
                 props TEXT NOT NULL,
                 seq   INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS keyed_state (
                 key TEXT PRIMARY KEY,
                 val BLOB
             );",
        )?;
        Ok(Catalog {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, CatalogError> {
        let mut conn = self.conn.lock().expect("catalog lock");
        Ok(f(&mut conn)?)
    }

    /// Stream statements in creation order.
    pub fn streams(&self) -> Result<Vec<(String, String)>, CatalogError> {
        self.with(|c| {
            let mut st = c.prepare("SELECT name, sql FROM streams ORDER BY seq")?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
        })
    }

    /// Saves (or replaces) a stream.
    pub fn put_stream(&self, name: &str, sql: &str) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO streams (name, sql, seq)
                 VALUES (?1, ?2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM streams))
                 ON CONFLICT(name) DO UPDATE SET sql = excluded.sql",
                params![name, sql],
            )
            .map(drop)
        })
    }

    /// Removes a stream.
    pub fn delete_stream(&self, name: &str) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute("DELETE FROM streams WHERE name = ?1", params![name])
                .map(drop)
        })
    }

    /// Rules in creation order.
    pub fn rules(&self) -> Result<Vec<StoredRule>, CatalogError> {
        self.with(|c| {
            let mut st = c.prepare("SELECT id, json, running FROM rules ORDER BY seq")?;
            st.query_map([], |r| {
                Ok(StoredRule {
                    id: r.get(0)?,
                    json: r.get(1)?,
                    running: r.get::<_, i64>(2)? != 0,
                })
            })?
            .collect()
        })
    }

    /// Saves (or replaces) a rule.
    pub fn put_rule(&self, id: &str, json: &str, running: bool) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO rules (id, json, running, seq)
                 VALUES (?1, ?2, ?3, (SELECT COALESCE(MAX(seq), 0) + 1 FROM rules))
                 ON CONFLICT(id) DO UPDATE SET json = excluded.json, running = excluded.running",
                params![id, json, running as i64],
            )
            .map(drop)
        })
    }

    /// Records whether a rule should run after a restart.
    pub fn set_running(&self, id: &str, running: bool) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "UPDATE rules SET running = ?2 WHERE id = ?1",
                params![id, running as i64],
            )
            .map(drop)
        })
    }

    /// Removes a rule.
    pub fn delete_rule(&self, id: &str) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute("DELETE FROM rules WHERE id = ?1", params![id])
                .map(drop)
        })
    }

    /// Rewrites a stored rule's `tags` (kept in its JSON, as eKuiper keeps them) with `edit`
    /// applied to the current ones, in one transaction so concurrent edits never lose one.
    /// `None` when there is no such rule.
    pub fn edit_rule_tags(
        &self,
        id: &str,
        edit: impl FnOnce(Vec<String>) -> Vec<String>,
    ) -> Result<Option<Vec<String>>, CatalogError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let json: Option<String> = tx
                .query_row("SELECT json FROM rules WHERE id = ?1", params![id], |r| {
                    r.get(0)
                })
                .optional()?;
            let Some(json) = json else {
                return Ok(None);
            };
            let bad = |e: serde_json::Error| rusqlite::Error::ToSqlConversionFailure(Box::new(e));
            let mut rule: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&json).map_err(bad)?;
            let tags = edit(rule_tags(&rule));
            rule.insert("tags".into(), serde_json::json!(tags));
            let json = serde_json::to_string(&rule).map_err(bad)?;
            tx.execute(
                "UPDATE rules SET json = ?2 WHERE id = ?1",
                params![id, json],
            )?;
            tx.commit()?;
            Ok(Some(tags))
        })
    }

    /// Connection profiles made over REST: (source type, confKey, properties as JSON text),
    /// sorted by type and name.
    pub fn conf_keys(&self) -> Result<Vec<(String, String, String)>, CatalogError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT source_type, name, props FROM conf_keys ORDER BY source_type, name",
            )?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
    }

    /// Saves (or replaces) the profile `name` of `source_type` (lower case).
    pub fn put_conf_key(
        &self,
        source_type: &str,
        name: &str,
        props: &str,
    ) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO conf_keys (source_type, name, props) VALUES (?1, ?2, ?3)
                 ON CONFLICT(source_type, name) DO UPDATE SET props = excluded.props",
                params![source_type, name, props],
            )
            .map(drop)
        })
    }

    /// Removes a REST-made profile; false when there was none.
    pub fn delete_conf_key(&self, source_type: &str, name: &str) -> Result<bool, CatalogError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM conf_keys WHERE source_type = ?1 AND name = ?2",
                params![source_type, name],
            )
            .map(|n| n > 0)
        })
    }

    /// Named connections (`/connections`): (id, type, properties as JSON text), in creation
    /// order.
    pub fn connections(&self) -> Result<Vec<(String, String, String)>, CatalogError> {
        self.with(|c| {
            let mut st = c.prepare("SELECT id, typ, props FROM connections ORDER BY seq")?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
    }

    /// Saves (or replaces) connection `id`.
    pub fn put_connection(&self, id: &str, typ: &str, props: &str) -> Result<(), CatalogError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO connections (id, typ, props, seq)
                 VALUES (?1, ?2, ?3, (SELECT COALESCE(MAX(seq), 0) + 1 FROM connections))
                 ON CONFLICT(id) DO UPDATE SET typ = excluded.typ, props = excluded.props",
                params![id, typ, props],
            )
            .map(drop)
        })
    }

    /// Removes connection `id`; false when there was none.
    pub fn delete_connection(&self, id: &str) -> Result<bool, CatalogError> {
        self.with(|c| {
            c.execute("DELETE FROM connections WHERE id = ?1", params![id])
                .map(|n| n > 0)
        })
    }

    /// A stored rule's JSON.
    pub fn rule_json(&self, id: &str) -> Result<Option<String>, CatalogError> {
        self.with(|c| {
            c.query_row("SELECT json FROM rules WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()
        })
    }
}

/// The `tags` of a rule's JSON object (none when absent or not a list of strings).
pub fn rule_tags(rule: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    rule.get("tags")
        .and_then(serde_json::Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
