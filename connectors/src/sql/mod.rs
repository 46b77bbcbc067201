//! The `sql` connector: eKuiper's SQL source, sink and lookup table.
//!
//! - Source (`TYPE="sql"`): queries a table (`internalSqlQueryCfg`) or a statement of the
//!   user's (`templateSqlQueryCfg`) every `interval` and sends the new rows on as JSON
//!   messages, resuming past the largest index value seen (kept in memory).
//! - Sink (`sql` action): writes each batch in one transaction as one multi-row `INSERT`, or
//!   per `rowkindField` as inserts, updates, upserts and deletes on `keyField`.
//! - Lookup (`KIND="lookup"`, MySQL/MariaDB): `DATASOURCE` is the table and the lookup
//!   table's `KEY` its key column; each batch sends one `SELECT * FROM <table> WHERE <key>
//!   IN (?, ?, ...)`.
//!
//! Source and sink reach MySQL/MariaDB, PostgreSQL and SQLite through [`driver`], from
//! eKuiper's `url` forms. Identifiers are quoted per dialect and every value is a bound
//! parameter, never text in a statement.

mod config;
pub mod driver;
mod lookup;
mod sink;
mod sink_config;
mod source;
mod source_config;
mod statement;

pub use config::SqlLookupConfig;
pub use lookup::SqlLookup;
pub use sink::SqlSink;
pub use sink_config::{SINK_OWN_KEYS, SqlSinkConfig};
pub use source::SqlSource;
pub use source_config::{IndexField, QuerySpec, SqlSourceConfig};
