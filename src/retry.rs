//! Backoff for retried AWS calls: exponential with full jitter.

use std::time::Duration;

/// The wait before retry number `attempt` (1-based): uniform in
/// [20 ms, min(100 ms × 2^attempt, 10 s)].
pub fn backoff(attempt: u32) -> Duration {
    let cap = Duration::from_millis(100 * (1u64 << attempt.min(7))).min(Duration::from_secs(10));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let mut x = u64::from(nanos) ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    cap.mul_f64((x % 1000) as f64 / 1000.0).max(Duration::from_millis(20))
}
