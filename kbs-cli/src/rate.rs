//! A byte-rate limit shared by the tasks of one process: `kbs backup --max-bytes-per-sec`
//! (key and value bytes fetched) and `kbs restore --max-bytes-per-sec` (produced).

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// A token bucket holding one second's bytes, served in the order callers ask: each reserves
/// its bytes at once, then waits its turn, so no partition starves behind others that keep
/// asking. The bucket starts empty, so no more than the rate allows moves in the first
/// second either. The rate holds per process; workers of a shared job each limit themselves.
#[derive(Debug)]
pub(crate) struct ByteRateLimit {
    per_sec: f64,
    /// When the bucket is next empty of reservations ("theoretical arrival time").
    empty_at: Mutex<Instant>,
}

impl ByteRateLimit {
    /// A limit of `bytes_per_sec` (at least 1), with an empty bucket.
    pub(crate) fn new(bytes_per_sec: u64) -> Self {
        ByteRateLimit {
            per_sec: bytes_per_sec.max(1) as f64,
            empty_at: Mutex::new(Instant::now() + Duration::from_secs(1)),
        }
    }

    /// Reserves `bytes` and returns how long the caller must wait before moving them.
    pub(crate) async fn reserve(&self, bytes: u64) -> Duration {
        let mut empty_at = self.empty_at.lock().await;
        let now = Instant::now();
        let start = (*empty_at).max(now);
        *empty_at = start + Duration::from_secs_f64(bytes as f64 / self.per_sec);
        empty_at
            .saturating_duration_since(now)
            .saturating_sub(Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `got` is `want` less the little time that passed between the calls.
    fn about(got: Duration, want_ms: u64) -> bool {
        let want = Duration::from_millis(want_ms);
        got <= want && want - got < Duration::from_millis(50)
    }

    #[tokio::test]
    async fn callers_wait_in_the_order_they_asked_from_the_first_byte() {
        let limit = ByteRateLimit::new(1_000);
        let wait = limit.reserve(600).await;
        assert!(about(wait, 600), "the bucket starts empty: {wait:?}");
        let wait = limit.reserve(400).await;
        assert!(about(wait, 1_000), "behind the one before: {wait:?}");
        let wait = limit.reserve(1_500).await;
        assert!(about(wait, 2_500), "{wait:?}");
    }
}
