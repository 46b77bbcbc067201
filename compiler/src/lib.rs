//! Quiver's compiler: eKuiper SQL text to typed logical plans with executable expressions.
//!
//! Stages, one module each:
//! - [`ddl`]: `CREATE STREAM` and the other stream statements (own parser over sqlparser's
//!   tokenizer, since sqlparser has no `CREATE STREAM`);
//! - [`dialect`]: the sqlparser dialect for rule queries (eKuiper's strings, `->`, precedence);
//! - [`bind`]: AST to [`plan::LogicalPlan`], names and types checked, errors with positions;
//! - [`expr`] and [`eval`]: bound expressions that evaluate over whole Arrow batches;
//! - [`functions`]: the registry of SQL functions, one concept per file;
//! - [`plan`], [`window`], [`aggregate`], [`analytic`]: the logical plan and what its window,
//!   aggregate and analytic nodes carry; [`hit`] and [`hit_site`]: `last_hit_*` state;
//! - [`columns`]: the names of the hidden columns every crate adds or reads;
//! - [`ekuiper_text`]: expressions printed as eKuiper prints its AST, for its error texts;
//! - [`graph`]: eKuiper's graph rules (a JSON DAG of nodes) turned into the one SELECT they
//!   stand for, checked by the same parser;
//! - [`duration`]: the one duration grammar (SQL functions, rule options, connector configs);
//! - [`limits`]: the bounds on SQL input (text size, nesting, window sizes, pad widths).
//!
//! Imports point one way: `bind` -> `plan` -> `window`/`analytic` -> `expr` -> `functions`
//! -> `eval` -> `types`, with `columns`, `duration` and `hit_site` as leaves.
//!
//! Invariant: evaluation never fails a whole batch because of one bad row; bad rows are
//! flagged in [`eval::RowErrors`] and the caller drops and counts them.

pub mod aggregate;
pub mod analytic;
pub mod bind;
pub mod columns;
pub mod ddl;
pub mod dialect;
pub mod duration;
pub mod ekuiper_text;
pub mod error;
pub mod eval;
pub mod expr;
pub mod functions;
pub mod graph;
pub mod hit;
pub mod hit_site;
pub mod limits;
pub mod plan;
pub mod types;
pub mod window;

pub use bind::{StreamCatalog, compile_rule};
pub use ddl::{Statement, StreamDef, StreamKind, parse_create, parse_statement};
pub use error::{CompileError, Pos};
pub use functions::Registry;
pub use plan::{FieldLabel, LogicalPlan, ProjectItem, RulePlan};
