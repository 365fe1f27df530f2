//! The duplicate-request cache (RFC 5080 §2.2.2).
//!
//! A NAS that does not hear back resends the same request (same source, Identifier
//! and Request Authenticator). A duplicate of an answered request gets the cached
//! reply byte for byte; a duplicate of a request still being worked on is dropped.
//! Entries expire after a fixed lifetime. Time is passed in; nothing reads a clock.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Identifies one request: (source address and port, Identifier, Request Authenticator).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DedupKey {
    pub source: SocketAddr,
    pub identifier: u8,
    pub authenticator: [u8; 16],
}

#[derive(Debug)]
enum Entry {
    InProgress,
    Answered(Vec<u8>),
}

/// What the cache says about an incoming request.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<'a> {
    /// First time: it is now marked in progress; call `answered` or `forget` later.
    New,
    /// Being worked on: drop this copy.
    InProgress,
    /// Answered already: send these bytes again.
    Answered(&'a [u8]),
}

/// Room a cache keeps however empty it gets.
const MIN_ROOM: usize = 1024;

#[derive(Debug)]
pub struct DuplicateCache {
    entries: HashMap<DedupKey, (Instant, Entry)>,
    /// Insertion order, for expiry without scanning the map.
    order: VecDeque<(Instant, DedupKey)>,
    lifetime: Duration,
    capacity: usize,
}

impl DuplicateCache {
    /// `lifetime`: how long an entry lives; `capacity`: most entries kept. When
    /// full, the oldest entry makes room: retransmissions come within a second or
    /// two, so the oldest is the least likely to be asked for again, and a rate
    /// spike costs at worst a repeated decision, never a refused request.
    pub fn new(lifetime: Duration, capacity: usize) -> Self {
        DuplicateCache {
            entries: HashMap::with_capacity(capacity.min(65536)),
            order: VecDeque::with_capacity(capacity.min(65536)),
            lifetime,
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drop entries older than the lifetime. After a burst the cache gives
    /// its room back: once it holds less than a quarter of what it has room
    /// for, it shrinks to twice what it holds (never below `MIN_ROOM`).
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.order.front() {
            if now.saturating_duration_since(at) < self.lifetime {
                break;
            }
            self.order.pop_front();
            // Only remove if the map entry is the one this order slot refers to
            // (it may have been forgotten and re-inserted since).
            if let Some((t, _)) = self.entries.get(&key) {
                if *t == at {
                    self.entries.remove(&key);
                }
            }
        }
        let room = self.entries.capacity();
        if room > 2 * MIN_ROOM && self.entries.len() * 4 < room {
            self.entries
                .shrink_to((self.entries.len() * 2).max(MIN_ROOM));
        }
        let room = self.order.capacity();
        if room > 2 * MIN_ROOM && self.order.len() * 4 < room {
            self.order.shrink_to((self.order.len() * 2).max(MIN_ROOM));
        }
    }

    /// Look up a request and, if new, mark it in progress.
    pub fn check(&mut self, key: DedupKey, now: Instant) -> Seen<'_> {
        self.expire(now);
        if self.entries.contains_key(&key) {
            return match &self.entries[&key].1 {
                Entry::InProgress => Seen::InProgress,
                Entry::Answered(reply) => Seen::Answered(reply),
            };
        }
        while self.entries.len() >= self.capacity {
            let Some((at, old)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&old).is_some_and(|(t, _)| *t == at) {
                self.entries.remove(&old);
            }
        }
        // Forgotten entries leave their slot in `order` until it expires; when
        // those pile up (every request forgotten, as refusals are), drop them.
        if self.order.len() >= 2 * self.capacity.max(MIN_ROOM) {
            let entries = &self.entries;
            self.order
                .retain(|(at, k)| entries.get(k).is_some_and(|(t, _)| t == at));
        }
        self.entries.insert(key, (now, Entry::InProgress));
        self.order.push_back((now, key));
        Seen::New
    }

    /// Record the reply sent for `key`; later duplicates get these bytes.
    pub fn answered(&mut self, key: DedupKey, reply: Vec<u8>) {
        if let Some(e) = self.entries.get_mut(&key) {
            e.1 = Entry::Answered(reply);
        }
    }

    /// Forget a request that got no reply (e.g. storage failed), so the NAS's
    /// retransmission is processed afresh.
    pub fn forget(&mut self, key: &DedupKey) {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u8) -> DedupKey {
        DedupKey {
            source: "127.0.0.1:5000".parse().unwrap(),
            identifier: id,
            authenticator: [id; 16],
        }
    }

    #[test]
    fn forgotten_entries_do_not_pile_up_and_room_is_given_back() {
        let t0 = Instant::now();
        let mut c = DuplicateCache::new(Duration::from_secs(5), 4096);
        for i in 0..100_000u32 {
            let k = DedupKey {
                source: "127.0.0.1:5000".parse().unwrap(),
                identifier: i as u8,
                authenticator: [(i >> 8) as u8; 16],
            };
            let mut k = k;
            k.authenticator[..4].copy_from_slice(&i.to_be_bytes());
            assert_eq!(c.check(k, t0), Seen::New);
            c.forget(&k);
        }
        assert!(c.order.len() <= 2 * 4096, "{}", c.order.len());
        // A burst that filled the cache, then quiet: the room goes back.
        for i in 0..4096u32 {
            let mut k = key(0);
            k.authenticator[..4].copy_from_slice(&i.to_be_bytes());
            c.check(k, t0);
            c.answered(k, vec![0; 40]);
        }
        assert_eq!(c.len(), 4096);
        c.expire(t0 + Duration::from_secs(6));
        assert!(c.is_empty());
        assert!(
            c.entries.capacity() <= 2 * MIN_ROOM,
            "{}",
            c.entries.capacity()
        );
        assert!(c.order.capacity() <= 4 * MIN_ROOM, "{}", c.order.capacity());
    }

    #[test]
    fn lifecycle() {
        let t0 = Instant::now();
        let mut c = DuplicateCache::new(Duration::from_secs(5), 10);
        assert_eq!(c.check(key(1), t0), Seen::New);
        assert_eq!(c.check(key(1), t0), Seen::InProgress);
        c.answered(key(1), vec![1, 2, 3]);
        assert_eq!(
            c.check(key(1), t0 + Duration::from_secs(1)),
            Seen::Answered(&[1, 2, 3])
        );
        // A different authenticator with the same id is a new request.
        let mut k2 = key(1);
        k2.authenticator = [9; 16];
        assert_eq!(c.check(k2, t0), Seen::New);
        // Expiry.
        assert_eq!(c.check(key(1), t0 + Duration::from_secs(5)), Seen::New);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn forget_and_capacity() {
        let t0 = Instant::now();
        let mut c = DuplicateCache::new(Duration::from_secs(5), 2);
        assert_eq!(c.check(key(1), t0), Seen::New);
        c.forget(&key(1));
        assert_eq!(c.check(key(1), t0), Seen::New);
        assert_eq!(c.check(key(2), t0), Seen::New);
        // Full: the oldest (key 1) makes room for key 3.
        assert_eq!(c.check(key(3), t0), Seen::New);
        assert_eq!(c.len(), 2);
        assert_eq!(c.check(key(2), t0), Seen::InProgress);
        assert_eq!(c.check(key(3), t0), Seen::InProgress);
        assert_eq!(c.check(key(1), t0), Seen::New, "key 1 was evicted");
        // A stale order slot of a re-inserted key does not evict the newer entry.
        let mut c = DuplicateCache::new(Duration::from_secs(5), 4);
        assert_eq!(c.check(key(1), t0), Seen::New);
        c.forget(&key(1));
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(c.check(key(1), t1), Seen::New);
        let t2 = t0 + Duration::from_secs(6);
        assert_eq!(c.check(key(1), t2), Seen::InProgress);
    }
}
