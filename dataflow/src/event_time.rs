//! The dataflow time of event-time rules: twice the watermark, in milliseconds.
//!
//! A checkpoint is a dataflow time every source must pass. In event time the sources' time is
//! the watermark, which only rows move, so an idle stream could never pass a checkpoint taken
//! just after its watermark, and the results before it (held by qos 2 sinks until it commits)
//! would wait for the next row. With the watermark at even times, the odd time just past it
//! is a checkpoint an idle source can move to without moving the watermark: the windows see
//! the same watermark at both times.

/// The dataflow time of watermark `ms`.
pub fn time_of(ms: u64) -> u64 {
    ms.saturating_mul(2)
}

/// The watermark (ms) at dataflow time `time` (the end of time stays the end of time).
pub fn watermark_of(time: u64) -> u64 {
    if time == u64::MAX { u64::MAX } else { time / 2 }
}

/// True for a time between two watermark times, where an idle source may meet a checkpoint.
pub fn is_between(time: u64) -> bool {
    time % 2 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_times_fall_between_watermarks() {
        assert_eq!(watermark_of(time_of(1_700_000_000_123)), 1_700_000_000_123);
        assert_eq!(
            watermark_of(time_of(5) + 1),
            5,
            "the time after a watermark is still it"
        );
        assert!(is_between(time_of(5) + 1) && !is_between(time_of(5)));
        assert_eq!(watermark_of(u64::MAX), u64::MAX);
    }
}
