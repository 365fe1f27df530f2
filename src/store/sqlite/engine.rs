//! The engine thread: owns the connection and runs jobs in order.
//!
//! Hot-path jobs (authorization, accounting) run inside one *group
//! transaction* that stays open across jobs and is committed
//! - as soon as nothing is queued while an accounting record waits for it
//!   (accounting is acknowledged only after the commit that holds it),
//! - after [`IDLE_COMMIT`] without a new job,
//! - or when it is [`MAX_GROUP_AGE`] old.
//!
//! A commit writes each page the group touched once, however many batches
//! touched it, which keeps the WAL small under constant load (a commit per
//! small batch rewrote the same session and index pages hundreds of times a
//! second). Each job runs under its own savepoint, so a job that fails
//! rolls back alone. Every other job (admin, listings, housekeeping) runs
//! alone, after the group is committed, in its own transaction.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::checkpoint::WalGate;
use crate::model::{Plan, Voucher};
use crate::store::StoreError;

/// The longest a group transaction stays open: the most authorization
/// effects (and auth events) a crash can lose is this much.
pub const MAX_GROUP_AGE: Duration = Duration::from_millis(20);
/// A group with nothing new for this long is committed.
pub const IDLE_COMMIT: Duration = Duration::from_millis(5);

/// Run once the group that holds a job's writes has committed (`Ok`) or
/// failed to (`Err`, and the job's writes are gone).
pub type AfterCommit = Box<dyn FnOnce(Result<(), String>) + Send>;

/// What became of a group job.
pub enum GroupOutcome {
    /// Its writes are in the group; nothing waits for the commit.
    Done,
    /// Its writes are in the group; run this after the commit.
    AfterCommit(AfterCommit),
    /// It failed and has answered its caller; its writes are rolled back.
    Failed,
}

/// A job that runs inside the group transaction.
pub trait GroupJob: Send {
    fn run(self: Box<Self>, conn: &Connection, cache: &mut VoucherCache) -> GroupOutcome;
    /// The group transaction could not be started: answer the caller.
    fn fail(self: Box<Self>, error: StoreError);
}

pub enum Job {
    /// Runs alone, after the group transaction (if any) is committed.
    Solo(Box<dyn FnOnce(&mut Connection) + Send>),
    Group(Box<dyn GroupJob>),
}

struct Group {
    began: Instant,
    waiting: Vec<AfterCommit>,
}

/// Vouchers with their plans as last read, by code (`None`: no such code), so
/// that a login does not read its voucher again while nothing changed it.
///
/// It is emptied whenever it could be wrong: when another connection (the
/// CLI in another process) has committed since it was filled (SQLite's
/// `data_version`), before any job outside the group (admin changes in this
/// process), when a job or a commit is rolled back; and the entries of
/// vouchers that this process's own writes change (activation, MAC binding,
/// usage) are dropped by those writes.
#[derive(Default)]
pub struct VoucherCache {
    by_code: HashMap<String, Option<(Voucher, Plan)>>,
    code_of: HashMap<i64, String>,
    data_version: Option<i64>,
}

/// More entries than this and the cache starts over.
const CACHE_MAX: usize = 100_000;

impl VoucherCache {
    /// Empty the cache if another connection has committed since it was filled.
    pub fn check(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        if self.data_version != Some(version) {
            self.clear();
            self.data_version = Some(version);
        }
        Ok(())
    }

    pub fn get(&self, code: &str) -> Option<&Option<(Voucher, Plan)>> {
        self.by_code.get(code)
    }

    pub fn insert(&mut self, code: &str, found: Option<(Voucher, Plan)>) {
        if self.by_code.len() >= CACHE_MAX {
            self.clear();
        }
        if let Some((v, _)) = &found {
            self.code_of.insert(v.id, code.to_owned());
        }
        self.by_code.insert(code.to_owned(), found);
    }

    /// Drop a voucher this process has just written.
    pub fn forget(&mut self, voucher_id: i64) {
        if let Some(code) = self.code_of.remove(&voucher_id) {
            self.by_code.remove(&code);
        }
    }

    pub fn clear(&mut self) {
        self.by_code.clear();
        self.code_of.clear();
    }
}

/// The engine loop: runs until every sender is dropped, then commits what is open.
pub fn run(mut conn: Connection, rx: Receiver<Job>, gate: &WalGate) {
    let mut group: Option<Group> = None;
    let mut cache = VoucherCache::default();
    loop {
        let job = match &group {
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
            Some(g) => {
                let age = g.began.elapsed();
                let next = if age >= MAX_GROUP_AGE {
                    Err(RecvTimeoutError::Timeout)
                } else if !g.waiting.is_empty() {
                    // Accounting waits: take what is already queued, then commit.
                    rx.try_recv().map_err(|e| match e {
                        TryRecvError::Empty => RecvTimeoutError::Timeout,
                        TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                    })
                } else {
                    rx.recv_timeout(IDLE_COMMIT.min(MAX_GROUP_AGE - age))
                };
                match next {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => {
                        commit(&conn, group.take(), &mut cache);
                        gate.pause_point();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        match job {
            Job::Solo(f) => {
                commit(&conn, group.take(), &mut cache);
                cache.clear();
                f(&mut conn);
            }
            Job::Group(job) => {
                if group.is_none() {
                    match exec(&conn, "BEGIN IMMEDIATE") {
                        Ok(()) => {
                            group = Some(Group {
                                began: Instant::now(),
                                waiting: Vec::new(),
                            })
                        }
                        Err(e) => {
                            job.fail(e.into());
                            continue;
                        }
                    }
                }
                if let Err(e) = exec(&conn, "SAVEPOINT job") {
                    job.fail(e.into());
                    continue;
                }
                let outcome = job.run(&conn, &mut cache);
                let mut ended = Ok(());
                if matches!(outcome, GroupOutcome::Failed) {
                    cache.clear();
                    ended = exec(&conn, "ROLLBACK TO job");
                }
                if let Err(e) = ended.and_then(|()| exec(&conn, "RELEASE job")) {
                    tracing::error!(error = %e, "ending a savepoint failed");
                }
                if let (GroupOutcome::AfterCommit(f), Some(g)) = (outcome, group.as_mut()) {
                    g.waiting.push(f);
                }
            }
        }
    }
    commit(&conn, group.take(), &mut cache);
}

fn commit(conn: &Connection, group: Option<Group>, cache: &mut VoucherCache) {
    let Some(group) = group else { return };
    let result = exec(conn, "COMMIT").map_err(|e| {
        cache.clear();
        tracing::error!(error = %e, "committing a group of writes failed; rolled back");
        let _ = conn.execute_batch("ROLLBACK");
        e.to_string()
    });
    for f in group.waiting {
        f(result.clone());
    }
}

/// A transaction-control statement, prepared once.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Busy handler for the engine: short sleeps, so that a lock held briefly by
/// another connection (a checkpoint, the CLI) costs about as long as it is
/// held, not SQLite's default back-off of up to 100 ms a step. Gives up after
/// about 5 s.
pub fn busy_wait(attempt: i32) -> bool {
    if attempt >= 25_000 {
        return false;
    }
    std::thread::sleep(Duration::from_micros(200));
    true
}
