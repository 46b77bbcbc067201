//! The `sql` connector: eKuiper's SQL lookup source (`TYPE="sql", KIND="lookup"`) for
//! MySQL/MariaDB.
//!
//! `DATASOURCE` is the table and the lookup table's `KEY` its key column; the profile's `url`
//! (eKuiper also reads `dburl`) names the server, e.g. `mysql://root@127.0.0.1:3306/test`.
//! Each batch sends one `SELECT * FROM <table> WHERE <key> IN (?, ?, ...)`: identifiers are
//! quoted, the keys are bound parameters, never text in the statement.

mod config;
mod lookup;

pub use config::SqlLookupConfig;
pub use lookup::SqlLookup;
