//! The login guard: voucher codes are short, so guessing them must be slow.
//!
//! Failed logins that look like guessing (an unknown code, a wrong or missing
//! password) are counted per device — the NAS plus the customer's MAC
//! (Calling-Station-Id), or the User-Name when the NAS sends no MAC — and per
//! NAS:
//!
//! - A device with `device_failures` such failures within `window` is blocked
//!   for `block`; each further block of the same device doubles, up to
//!   `max_block`. A customer who mistypes a code twice is never bothered; a
//!   script trying codes gets `device_failures` tries per block.
//! - A NAS with `nas_failures` such failures within `window` (many devices
//!   guessing, or one changing its MAC) is *guarded* for `window`: devices
//!   that failed there are refused, devices that logged in before pass, and
//!   devices it has not seen are let through at `guarded_new_per_second`.
//!
//! A refused request is answered at once with a Reject whose Reply-Message says
//! to wait, without storage work; the refusals are counted and summed up in the
//! auth log (one row per device or NAS and flush, with a count), not one row
//! each. The state is bounded: at most `max_devices` devices are tracked.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Settings of the login guard (`[guard]` in the config file).
#[derive(Clone, Copy, Debug)]
pub struct GuardConfig {
    /// Failures of one device within `window` that block it; 0 turns the guard off.
    pub device_failures: u32,
    /// How long failures are remembered, and how long a NAS stays guarded.
    pub window: Duration,
    /// A device's first block; each next one doubles.
    pub block: Duration,
    /// The longest block.
    pub max_block: Duration,
    /// Failures at one NAS within `window` that guard it.
    pub nas_failures: u32,
    /// While a NAS is guarded, devices not seen before that may try per second.
    pub guarded_new_per_second: u32,
    /// Most devices tracked at once (memory bound).
    pub max_devices: usize,
    /// Rejects decided by storage are sent this much later (FreeRADIUS's
    /// `reject_delay`); zero sends them at once.
    pub reject_delay: Duration,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            device_failures: 5,
            window: Duration::from_secs(60),
            block: Duration::from_secs(60),
            max_block: Duration::from_secs(15 * 60),
            nas_failures: 100,
            guarded_new_per_second: 5,
            max_devices: 50_000,
            reject_delay: Duration::ZERO,
        }
    }
}

/// Why a request was refused without being decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Its device failed too often.
    Device,
    /// Its NAS is guarded and the device failed there, or is new and over the rate.
    Nas,
}

impl Scope {
    pub fn label(self) -> &'static str {
        match self {
            Scope::Device => "device",
            Scope::Nas => "nas",
        }
    }
}

/// What [`LoginGuard::record`] saw start, for the log and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Started {
    DeviceBlock(Duration),
    NasGuard,
}

/// Refusals held back from the auth log, summed up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldSummary {
    pub nas_id: i64,
    pub nas_name: String,
    pub scope: Scope,
    /// The device's MAC, when the device is known by one.
    pub mac: Option<String>,
    /// The last User-Name refused.
    pub username: String,
    pub count: u64,
    /// Unix seconds of the first and last refusal.
    pub first: i64,
    pub last: i64,
}

#[derive(Default)]
struct Held {
    count: u64,
    first: i64,
    last: i64,
    username: String,
}

impl Held {
    fn add(&mut self, now: i64, username: &str) {
        if self.count == 0 {
            self.first = now;
        }
        self.count += 1;
        self.last = now;
        if self.username != username {
            self.username.clear();
            self.username.push_str(username);
        }
    }
}

struct Device {
    /// Known by its MAC (else by its User-Name).
    by_mac: bool,
    failures: u32,
    window_start: Instant,
    blocked_until: Option<Instant>,
    /// Blocks so far; the next one lasts `block × 2^trips`.
    trips: u32,
    last_seen: Instant,
    /// Logged in successfully here: passes a guarded NAS.
    good: bool,
    nas_name: String,
    held: Held,
}

struct Nas {
    failures: u32,
    window_start: Instant,
    guarded_until: Option<Instant>,
    tokens: f64,
    refilled: Instant,
    nas_name: String,
    held: Held,
}

#[derive(Default)]
struct State {
    /// Devices by NAS id, then by MAC (or User-Name): looked up by borrowed
    /// text, so a request costs no allocation.
    devices: HashMap<i64, HashMap<Box<str>, Device>>,
    /// Devices in `devices`, over all NASes.
    tracked: usize,
    nas: HashMap<i64, Nas>,
    pruned: Option<Instant>,
}

pub struct LoginGuard {
    config: GuardConfig,
    state: Mutex<State>,
}

/// What a request is known by to the guard.
pub struct Who<'a> {
    pub nas_id: i64,
    pub nas_name: &'a str,
    pub mac: Option<&'a str>,
    pub username: &'a str,
}

impl Who<'_> {
    /// What the device is known by: its MAC, else its User-Name.
    fn id(&self) -> &str {
        self.mac.unwrap_or(self.username)
    }
}

impl LoginGuard {
    pub fn new(config: GuardConfig) -> Self {
        LoginGuard {
            config,
            state: Mutex::new(State::default()),
        }
    }

    fn enabled(&self) -> bool {
        self.config.device_failures > 0
    }

    /// `Some((scope, wait))` when the request must be refused without a
    /// decision; `now_unix` stamps the auth-log summary.
    pub fn check(&self, who: &Who<'_>, now: Instant, now_unix: i64) -> Option<(Scope, Duration)> {
        if !self.enabled() {
            return None;
        }
        let mut state = self.state.lock().expect("guard lock poisoned");
        let state = &mut *state;
        let device = state
            .devices
            .get_mut(&who.nas_id)
            .and_then(|m| m.get_mut(who.id()));
        let (failed_here, good) = match &device {
            Some(d) => (d.failures > 0 || d.trips > 0, d.good),
            None => (false, false),
        };
        if let Some(d) = device {
            d.last_seen = now;
            if let Some(until) = d.blocked_until.filter(|u| *u > now) {
                d.held.add(now_unix, who.username);
                return Some((Scope::Device, until - now));
            }
        }
        let nas = state.nas.get_mut(&who.nas_id)?;
        let until = nas.guarded_until.filter(|u| *u > now)?;
        if good {
            return None;
        }
        if !failed_here {
            let rate = f64::from(self.config.guarded_new_per_second);
            let elapsed = now.saturating_duration_since(nas.refilled).as_secs_f64();
            nas.tokens = (nas.tokens + elapsed * rate).min(rate.max(1.0));
            nas.refilled = now;
            if nas.tokens >= 1.0 {
                nas.tokens -= 1.0;
                return None;
            }
        }
        nas.held.add(now_unix, who.username);
        Some((Scope::Nas, until - now))
    }

    /// Count a decided login: `failed` for a reject that looks like guessing,
    /// else a success (an accept) or a reject of another kind (`None`: ignored).
    pub fn record(&self, who: &Who<'_>, failed: Option<bool>, now: Instant) -> Vec<Started> {
        let mut started = Vec::new();
        let Some(failed) = failed else {
            return started;
        };
        if !self.enabled() {
            return started;
        }
        let c = &self.config;
        let mut state = self.state.lock().expect("guard lock poisoned");
        let state = &mut *state;
        let known = state
            .devices
            .get(&who.nas_id)
            .is_some_and(|m| m.contains_key(who.id()));
        if !known {
            if state.tracked >= c.max_devices {
                prune(state, c, now);
            }
            if state.tracked >= c.max_devices {
                // Full of live entries: the NAS-wide guard below still counts.
                if failed {
                    started.extend(count_nas_failure(state, c, who, now));
                }
                return started;
            }
            state.devices.entry(who.nas_id).or_default().insert(
                who.id().into(),
                Device {
                    by_mac: who.mac.is_some(),
                    failures: 0,
                    window_start: now,
                    blocked_until: None,
                    trips: 0,
                    last_seen: now,
                    good: false,
                    nas_name: who.nas_name.to_owned(),
                    held: Held::default(),
                },
            );
            state.tracked += 1;
        }
        let d = state
            .devices
            .get_mut(&who.nas_id)
            .and_then(|m| m.get_mut(who.id()))
            .expect("inserted above");
        d.last_seen = now;
        if !failed {
            d.good = true;
            d.failures = 0;
            d.trips = 0;
            return started;
        }
        if now.saturating_duration_since(d.window_start) > c.window {
            d.failures = 0;
            d.window_start = now;
        }
        d.failures += 1;
        if d.failures >= c.device_failures {
            let block = c
                .block
                .saturating_mul(1u32 << d.trips.min(16))
                .min(c.max_block);
            d.trips = d.trips.saturating_add(1);
            d.failures = 0;
            d.window_start = now;
            d.blocked_until = Some(now + block);
            started.push(Started::DeviceBlock(block));
        }
        started.extend(count_nas_failure(state, c, who, now));
        started
    }

    /// Take the refusals held back since the last call, one summary per device
    /// or NAS that had any, for the auth log. Also forgets idle devices.
    pub fn take_held(&self, now: Instant) -> Vec<HeldSummary> {
        let mut state = self.state.lock().expect("guard lock poisoned");
        let state = &mut *state;
        let mut out = Vec::new();
        for (nas_id, id, d) in state
            .devices
            .iter_mut()
            .flat_map(|(nas_id, m)| m.iter_mut().map(move |(id, d)| (*nas_id, id, d)))
        {
            if d.held.count > 0 {
                let held = std::mem::take(&mut d.held);
                out.push(HeldSummary {
                    nas_id,
                    nas_name: d.nas_name.clone(),
                    scope: Scope::Device,
                    mac: d.by_mac.then(|| id.to_string()),
                    username: held.username,
                    count: held.count,
                    first: held.first,
                    last: held.last,
                });
            }
        }
        for (nas_id, n) in state.nas.iter_mut() {
            if n.held.count > 0 {
                let held = std::mem::take(&mut n.held);
                out.push(HeldSummary {
                    nas_id: *nas_id,
                    nas_name: n.nas_name.clone(),
                    scope: Scope::Nas,
                    mac: None,
                    username: held.username,
                    count: held.count,
                    first: held.first,
                    last: held.last,
                });
            }
        }
        prune(state, &self.config, now);
        out
    }

    /// Devices tracked now.
    pub fn tracked(&self) -> usize {
        self.state
            .lock()
            .expect("guard lock poisoned")
            .devices
            .len()
    }
}

/// How long a device that logged in is remembered as one (it passes a guarded NAS).
const GOOD_FOR: Duration = Duration::from_secs(86_400);

fn count_nas_failure(
    state: &mut State,
    c: &GuardConfig,
    who: &Who<'_>,
    now: Instant,
) -> Option<Started> {
    let rate = f64::from(c.guarded_new_per_second);
    let nas = state.nas.entry(who.nas_id).or_insert_with(|| Nas {
        failures: 0,
        window_start: now,
        guarded_until: None,
        tokens: rate,
        refilled: now,
        nas_name: who.nas_name.to_owned(),
        held: Held::default(),
    });
    if now.saturating_duration_since(nas.window_start) > c.window {
        nas.failures = 0;
        nas.window_start = now;
    }
    nas.failures = nas.failures.saturating_add(1);
    if c.nas_failures > 0 && nas.failures >= c.nas_failures {
        let was_guarded = nas.guarded_until.is_some_and(|u| u > now);
        nas.guarded_until = Some(now + c.window);
        nas.failures = 0;
        nas.window_start = now;
        if !was_guarded {
            return Some(Started::NasGuard);
        }
    }
    None
}

/// Forget what no longer matters: devices idle for longer than the longest
/// block and not blocked (devices that logged in, after a day), and NAS entries
/// that are neither guarded nor counting. When the table is still full, only
/// blocked devices and those with failures stay: devices that logged in are
/// re-learnt at their next login. At most once a second unless full.
fn prune(state: &mut State, c: &GuardConfig, now: Instant) {
    let full = state.tracked >= c.max_devices;
    if !full
        && state
            .pruned
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
    {
        return;
    }
    state.pruned = Some(now);
    let keep_for = c.max_block.max(c.window);
    let blocked = |d: &Device| d.held.count > 0 || d.blocked_until.is_some_and(|u| u > now);
    retain_devices(state, |d| {
        let keep = if d.good {
            GOOD_FOR.max(keep_for)
        } else {
            keep_for
        };
        blocked(d) || now.saturating_duration_since(d.last_seen) < keep
    });
    if state.tracked >= c.max_devices {
        // Still full of recent entries: keep the blocked ones and those with failures.
        retain_devices(state, |d| blocked(d) || d.failures > 0);
    }
    state.nas.retain(|_, n| {
        n.held.count > 0
            || n.guarded_until.is_some_and(|u| u > now)
            || now.saturating_duration_since(n.window_start) < c.window
    });
}

fn retain_devices(state: &mut State, mut keep: impl FnMut(&Device) -> bool) {
    let mut tracked = 0;
    state.devices.retain(|_, m| {
        m.retain(|_, d| keep(d));
        if m.capacity() > 4 * m.len().max(256) {
            m.shrink_to_fit();
        }
        tracked += m.len();
        !m.is_empty()
    });
    state.tracked = tracked;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who<'a>(mac: Option<&'a str>, user: &'a str) -> Who<'a> {
        Who {
            nas_id: 1,
            nas_name: "n",
            mac,
            username: user,
        }
    }

    fn guard() -> LoginGuard {
        LoginGuard::new(GuardConfig {
            device_failures: 3,
            nas_failures: 10,
            guarded_new_per_second: 2,
            ..GuardConfig::default()
        })
    }

    #[test]
    fn a_device_is_blocked_after_its_failures_and_blocks_double() {
        let g = guard();
        let t0 = Instant::now();
        let w = who(Some("AA:00:00:00:00:01"), "CODE1");
        assert_eq!(g.check(&w, t0, 0), None);
        assert!(g.record(&w, Some(true), t0).is_empty());
        assert!(g.record(&w, Some(true), t0).is_empty());
        // Two mistakes never block.
        assert_eq!(g.check(&w, t0, 0), None);
        assert_eq!(
            g.record(&w, Some(true), t0),
            vec![Started::DeviceBlock(Duration::from_secs(60))]
        );
        let (scope, wait) = g.check(&w, t0 + Duration::from_secs(1), 1).unwrap();
        assert_eq!(scope, Scope::Device);
        assert_eq!(wait, Duration::from_secs(59));
        // Another device at the same NAS is not affected.
        assert_eq!(g.check(&who(Some("AA:00:00:00:00:02"), "X"), t0, 0), None);
        // After the block, three more failures block for twice as long.
        let t1 = t0 + Duration::from_secs(61);
        assert_eq!(g.check(&w, t1, 61), None);
        g.record(&w, Some(true), t1);
        g.record(&w, Some(true), t1);
        assert_eq!(
            g.record(&w, Some(true), t1),
            vec![Started::DeviceBlock(Duration::from_secs(120))]
        );
        // The refusals are summed up once, then forgotten.
        let held = g.take_held(t1);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].count, 1);
        assert_eq!(held[0].mac.as_deref(), Some("AA:00:00:00:00:01"));
        assert!(g.take_held(t1).is_empty());
    }

    #[test]
    fn success_and_other_rejects_reset_or_do_not_count() {
        let g = guard();
        let t = Instant::now();
        let w = who(None, "CODE2");
        g.record(&w, Some(true), t);
        g.record(&w, Some(true), t);
        g.record(&w, None, t);
        g.record(&w, Some(false), t);
        g.record(&w, Some(true), t);
        g.record(&w, Some(true), t);
        assert_eq!(g.check(&w, t, 0), None, "the success reset the count");
        // Failures older than the window are forgotten.
        let later = t + Duration::from_secs(61);
        g.record(&w, Some(true), later);
        assert_eq!(g.check(&w, later, 0), None);
    }

    #[test]
    fn a_guarded_nas_refuses_failed_devices_and_rations_new_ones() {
        let g = guard();
        let t = Instant::now();
        let good = who(Some("GOOD"), "G");
        g.record(&good, Some(true), t);
        g.record(&good, Some(false), t);
        let mut started = Vec::new();
        for i in 0..10 {
            let mac = format!("M{i}");
            started.extend(g.record(&who(Some(&mac), "X"), Some(true), t));
        }
        assert!(started.contains(&Started::NasGuard), "{started:?}");
        // A device that failed here once is refused while the NAS is guarded.
        assert_eq!(g.check(&who(Some("M0"), "X"), t, 0).unwrap().0, Scope::Nas);
        // One that logged in before passes.
        assert_eq!(g.check(&good, t, 0), None);
        // New devices: two per second.
        let new: Vec<_> = (0..5)
            .map(|i| g.check(&who(Some(&format!("N{i}")), "Y"), t, 0))
            .collect();
        assert_eq!(new.iter().filter(|v| v.is_none()).count(), 2, "{new:?}");
        // The guard ends after the window.
        let later = t + Duration::from_secs(61);
        assert_eq!(g.check(&who(Some("M0"), "X"), later, 0), None);
    }

    #[test]
    fn the_table_is_bounded() {
        let g = LoginGuard::new(GuardConfig {
            max_devices: 100,
            nas_failures: 0,
            ..GuardConfig::default()
        });
        let t = Instant::now();
        for i in 0..1000 {
            let mac = format!("M{i}");
            g.record(&who(Some(&mac), "X"), Some(true), t);
        }
        assert!(g.tracked() <= 100, "{}", g.tracked());
    }

    #[test]
    fn off_when_device_failures_is_zero() {
        let g = LoginGuard::new(GuardConfig {
            device_failures: 0,
            ..GuardConfig::default()
        });
        let t = Instant::now();
        let w = who(Some("A"), "X");
        for _ in 0..100 {
            g.record(&w, Some(true), t);
        }
        assert_eq!(g.check(&w, t, 0), None);
    }
}
