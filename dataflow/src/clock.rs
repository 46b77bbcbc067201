//! Wall-clock time as eKuiper reports it: milliseconds since the Unix epoch.

/// Milliseconds since the Unix epoch (0 if the clock is before it). Signed, as the status
/// timestamps and metrics that store it are.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
