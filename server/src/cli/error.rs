//! What can go wrong in a command, and the exit code each outcome gives scripts:
//! 0 success, 1 the server refused the request (4xx), 2 usage error (bad arguments or an
//! unreadable local file), 3 the server cannot be reached or failed (5xx).

use std::process::ExitCode;

/// A command's failure; its text is what the user reads on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered 4xx; the message is the server's.
    #[error("{message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's `message` (or its body, when it sent no JSON error).
        message: String,
    },
    /// The server answered 5xx; the message is the server's.
    #[error("server error ({status}): {message}")]
    ServerFailed {
        /// The HTTP status.
        status: u16,
        /// The server's `message` (or its body).
        message: String,
    },
    /// No answer: connection refused, TLS failure, timeout.
    #[error("cannot reach {host}: {reason}")]
    Unreachable {
        /// The `--host` asked for.
        host: String,
        /// What failed, in words.
        reason: String,
    },
    /// Arguments that do not make a request, or a local file that cannot be read or written.
    #[error("{0}")]
    Usage(String),
    /// The server answered 2xx with a body this client does not understand.
    #[error("unexpected answer from the server: {0}")]
    BadAnswer(String),
}

/// The process exit codes scripts can rely on (docs/cli.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 1: the server refused the request (4xx).
    Refused = 1,
    /// 2: a usage error.
    Usage = 2,
    /// 3: the server cannot be reached, failed (5xx) or answered something unreadable.
    Unreachable = 3,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

impl CliError {
    /// The exit code of this failure.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Refused { .. } => Exit::Refused,
            CliError::Usage(_) => Exit::Usage,
            CliError::ServerFailed { .. }
            | CliError::Unreachable { .. }
            | CliError::BadAnswer(_) => Exit::Unreachable,
        }
    }
}

/// A usage error with `message`.
pub fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}
