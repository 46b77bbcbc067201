//! The operators of a rule, one per file: plain structs behind [`crate::chain::BatchOperator`],
//! each holding its state in itself (the unit a checkpoint will write), testable on batches
//! without timely.

pub mod analytic;
pub mod filter;
pub mod join_streams;
pub mod join_table;
pub mod key;
pub mod limit;
pub mod prepare;
pub mod project;
pub mod row_number;
pub mod rows_aggregate;
pub mod sort;
pub mod table_key;
pub mod watermark;
