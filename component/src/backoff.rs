//! Reconnect delays: capped exponential backoff with jitter.

use std::time::Duration;

/// Delay generator: `min`, doubling on each failure up to `max`, each delay drawn from
/// its upper half so that several gateways do not reconnect in lockstep.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            failures: 0,
        }
    }

    /// Forgets past failures after a healthy session.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// The delay before the next attempt; `at_cap` jumps straight to the longest one
    /// (for failures only an admin can fix).
    pub(crate) fn next_delay(&mut self, at_cap: bool) -> Duration {
        let ceiling = if at_cap {
            self.max
        } else {
            // 2^16 s is far beyond any sane cap; saturating keeps overflow out.
            let factor = 1u32 << self.failures.min(16);
            self.min.saturating_mul(factor).min(self.max)
        };
        self.failures = self.failures.saturating_add(1);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(fastrand::u64(0..=spread))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn doubles_to_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let ceilings = [1, 2, 4, 8, 16, 32, 60, 60, 60];
        for c in ceilings {
            let d = b.next_delay(false);
            let c = Duration::from_secs(c);
            assert!(d >= c / 2 && d <= c, "{d:?} vs {c:?}");
        }
        b.reset();
        assert!(b.next_delay(false) <= Duration::from_secs(1));
    }

    #[test]
    fn admin_errors_wait_at_cap() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..3 {
            assert!(b.next_delay(true) >= Duration::from_secs(30));
        }
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..1000 {
            assert!(b.next_delay(false) <= Duration::from_secs(60));
        }
    }
}
