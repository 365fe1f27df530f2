//! A per-second cap on drop log lines, so a flood of bad packets cannot fill the disk.
//! The metrics still count every drop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub struct LogLimiter {
    per_second: u64,
    /// (second << 20) | count-in-that-second, updated without a lock.
    state: AtomicU64,
}

impl LogLimiter {
    pub fn new(per_second: u64) -> Self {
        LogLimiter {
            per_second,
            state: AtomicU64::new(0),
        }
    }

    pub fn allow(&self) -> bool {
        let sec = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let (s, c) = (cur >> 20, cur & 0xfffff);
            let next = if s == sec {
                if c >= self.per_second {
                    return false;
                }
                cur + 1
            } else {
                (sec << 20) | 1
            };
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn caps_per_second() {
        let l = super::LogLimiter::new(3);
        let allowed = (0..10).filter(|_| l.allow()).count();
        // At most 3 per second; the test may straddle a second boundary.
        assert!((3..=6).contains(&allowed), "{allowed}");
    }
}
