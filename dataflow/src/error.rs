//! Engine errors, each mapping to one REST status.

use quiver_compiler::CompileError;
use quiver_connectors::ConnectorError;

/// Why an engine request failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Invalid SQL (400), with position.
    #[error("{0}")]
    Compile(#[from] CompileError),
    /// Invalid request (400).
    #[error("{0}")]
    Invalid(String),
    /// Invalid connector configuration (400).
    #[error("{0}")]
    Connector(#[from] ConnectorError),
    /// Unknown name (404).
    #[error("{0}")]
    NotFound(String),
    /// Name already taken (409).
    #[error("{0}")]
    Duplicate(String),
    /// Still referenced (409).
    #[error("{0}")]
    InUse(String),
    /// The runtime failed to start.
    #[error("runtime: {0}")]
    Runtime(String),
}
