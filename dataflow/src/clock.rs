//! The wall clock, read one way everywhere.

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The clock as a timely timestamp: milliseconds since the Unix epoch.
pub fn now_time() -> u64 {
    now_ms().max(0) as u64
}
