//! Connector errors.

/// What can go wrong creating or running a connector.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// No connector of that type is registered.
    #[error("unknown {kind} type \"{name}\"; known types: {known}")]
    UnknownType {
        /// `source` or `sink`.
        kind: &'static str,
        /// The requested type.
        name: String,
        /// The registered types.
        known: String,
    },
    /// The configuration is invalid.
    #[error("invalid {connector} configuration: {reason}")]
    Config {
        /// The connector type.
        connector: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An I/O or protocol failure while running.
    #[error("{connector}: {reason}")]
    Io {
        /// The connector type.
        connector: &'static str,
        /// What failed.
        reason: String,
    },
    /// The far end refused this data itself (an HTTP 4xx answer): sending it again would be
    /// refused again, so a sink cache drops it instead of resending it.
    #[error("{connector}: {reason}")]
    Rejected {
        /// The connector type.
        connector: &'static str,
        /// What was refused, and why.
        reason: String,
    },
    /// A failure that must stop the rule, such as a plugin that panicked (its state is
    /// unknown, so writing on would be wrong).
    #[error("{connector}: {reason}")]
    Fatal {
        /// The connector type.
        connector: String,
        /// What failed.
        reason: String,
    },
    /// The rule stopped while the connector was waiting on it.
    #[error("the rule was stopped")]
    Closed,
}

/// The reason of a configuration error, for tests; any other error fails the test.
#[cfg(test)]
pub(crate) fn config_reason(e: ConnectorError) -> String {
    match e {
        ConnectorError::Config { reason, .. } => reason,
        other => panic!("expected a config error, got {other}"),
    }
}
