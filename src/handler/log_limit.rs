//! A per-second cap on drop log lines, so a flood of bad packets cannot fill the disk.
//! The metrics still count every drop, and the first line let through after a
//! flood says how many were held back, so the log never silently under-reports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bits of the state word that hold the count within the current second.
const COUNT_BITS: u32 = 20;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

pub struct LogLimiter {
    per_second: u64,
    /// (second << 20) | events-in-that-second, updated without a lock. Events past
    /// `per_second` are still counted (saturating) so they can be reported.
    state: AtomicU64,
}

impl LogLimiter {
    pub fn new(per_second: u64) -> Self {
        LogLimiter {
            per_second: per_second.min(COUNT_MASK),
            state: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when this event may be logged, with `n` the events suppressed in
    /// the last second that had any; `None` when it must not be logged.
    pub fn allow(&self) -> Option<u64> {
        let sec = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.allow_at(sec)
    }

    fn allow_at(&self, sec: u64) -> Option<u64> {
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let (s, c) = (cur >> COUNT_BITS, cur & COUNT_MASK);
            let (next, answer) = if s == sec {
                let next = if c < COUNT_MASK { cur + 1 } else { cur };
                (next, (c < self.per_second).then_some(0))
            } else {
                (
                    (sec << COUNT_BITS) | 1,
                    Some(c.saturating_sub(self.per_second)),
                )
            };
            if next == cur {
                return answer;
            }
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return answer,
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LogLimiter;

    #[test]
    fn caps_per_second() {
        let l = LogLimiter::new(3);
        let allowed = (0..10).filter(|_| l.allow().is_some()).count();
        // At most 3 per second; the test may straddle a second boundary.
        assert!((3..=6).contains(&allowed), "{allowed}");
    }

    #[test]
    fn reports_what_it_held_back() {
        let l = LogLimiter::new(3);
        let answers: Vec<_> = (0..10).map(|_| l.allow_at(100)).collect();
        assert_eq!(&answers[..3], &[Some(0), Some(0), Some(0)]);
        assert!(answers[3..].iter().all(Option::is_none));
        // The first event of a later second is logged and carries the count.
        assert_eq!(l.allow_at(105), Some(7));
        assert_eq!(l.allow_at(105), Some(0));
    }
}
