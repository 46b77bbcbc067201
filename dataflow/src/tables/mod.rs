//! Tables: scan tables (arranged by differential dataflow, or a checkpointed rule's own copy)
//! and lookup tables (asked per batch).

pub mod arrangement;
pub mod feed;
pub mod lookup;
pub mod own;
pub mod rows;
pub mod state;

use std::sync::Arc;

/// The table a join reads: rows in memory (scan) or a store asked per batch (lookup).
#[derive(Debug, Clone)]
pub enum TableSide {
    /// A scan table, arranged on the workers.
    Scan(Arc<crate::tables::feed::TableFeed>),
    /// A lookup table.
    Lookup(Arc<crate::tables::lookup::LookupTable>),
}
