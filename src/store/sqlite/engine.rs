//! The engine thread: owns the connection and runs jobs in order.
//!
//! Hot-path jobs (authorization, accounting) run inside one *group
//! transaction* that stays open across jobs and is committed
//! - as soon as nothing is queued while an accounting record waits for it
//!   (accounting is acknowledged only after the commit that holds it), or
//!   [`ACCT_WAIT`] after that record joined if jobs keep coming,
//! - after [`IDLE_COMMIT`] without a new job,
//! - or when it is [`MAX_GROUP_AGE`] old.
//!
//! A commit writes each page the group touched once, however many batches
//! touched it, which keeps the WAL small under constant load (a commit per
//! small batch rewrote the same session and index pages hundreds of times a
//! second). Each job runs under its own savepoint, so a job that fails
//! rolls back alone. Every other job (admin, listings, housekeeping) runs
//! alone, after the group is committed, in its own transaction.

use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::checkpoint::WalGate;
use super::memory::{self, AuthMemory, Memory};
use crate::store::StoreError;

/// The longest a group transaction stays open: the most authorization
/// effects (and auth events) a crash can lose is this much.
pub const MAX_GROUP_AGE: Duration = Duration::from_millis(20);
/// A group with nothing new for this long is committed.
pub const IDLE_COMMIT: Duration = Duration::from_millis(5);
/// While an accounting record waits for the commit, jobs already queued join
/// the group for at most this long; then it is committed even if more wait
/// (authorization effects keep the queue busy under load).
pub const ACCT_WAIT: Duration = Duration::from_millis(1);
/// How often the engine looks for commits of other processes (the CLI), busy
/// or idle: a change made there counts within this (plus a few milliseconds).
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

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
    fn run(self: Box<Self>, conn: &Connection, memory: &Mutex<AuthMemory>) -> GroupOutcome;
    /// The group transaction could not be started: answer the caller.
    fn fail(self: Box<Self>, error: StoreError);
    /// Whether the job runs under a savepoint of its own, so that its failure
    /// rolls back its writes alone. A job whose writes are each valid on their
    /// own may do without (a savepoint copies every page the job first touches).
    fn savepoint(&self) -> bool {
        true
    }
}

pub enum Job {
    /// Runs alone, after the group transaction (if any) is committed. With
    /// `writes`, what authorization holds in memory is read again after it.
    Solo {
        run: Box<dyn FnOnce(&mut Connection) + Send>,
        writes: bool,
    },
    Group(Box<dyn GroupJob>),
}

struct Group {
    began: Instant,
    waiting: Vec<AfterCommit>,
    /// When the first job that waits for this commit joined.
    first_waiting: Option<Instant>,
}

/// The engine loop: runs until every sender is dropped, then commits what is open.
pub fn run(mut conn: Connection, rx: Receiver<Job>, gate: &WalGate, memory: &Memory) {
    let mut group: Option<Group> = None;
    let mut checked = Instant::now();
    loop {
        if checked.elapsed() >= CHECK_EVERY {
            checked = Instant::now();
            if let Err(e) = memory::lock(memory).check(&conn) {
                tracing::error!(error = %e, "reading the database's data version failed");
            }
        }
        let job = match &group {
            None => match rx.recv_timeout(CHECK_EVERY) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            Some(g) => {
                let age = g.began.elapsed();
                let acct_waited = g.first_waiting.is_some_and(|t| t.elapsed() >= ACCT_WAIT);
                let next = if age >= MAX_GROUP_AGE || acct_waited {
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
                        commit(&conn, group.take(), memory);
                        gate.pause_point();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        match job {
            Job::Solo { run, writes } => {
                commit(&conn, group.take(), memory);
                run(&mut conn);
                if writes {
                    memory::lock(memory).invalidate_all();
                }
            }
            Job::Group(job) => {
                if group.is_none() {
                    match exec(&conn, "BEGIN IMMEDIATE") {
                        Ok(()) => {
                            group = Some(Group {
                                began: Instant::now(),
                                waiting: Vec::new(),
                                first_waiting: None,
                            })
                        }
                        Err(e) => {
                            job.fail(e.into());
                            continue;
                        }
                    }
                }
                let savepoint = job.savepoint();
                if savepoint {
                    if let Err(e) = exec(&conn, "SAVEPOINT job") {
                        job.fail(e.into());
                        continue;
                    }
                }
                let outcome = job.run(&conn, memory);
                if savepoint {
                    let mut ended = Ok(());
                    if matches!(outcome, GroupOutcome::Failed) {
                        ended = exec(&conn, "ROLLBACK TO job");
                    }
                    if let Err(e) = ended.and_then(|()| exec(&conn, "RELEASE job")) {
                        tracing::error!(error = %e, "ending a savepoint failed");
                    }
                }
                if let (GroupOutcome::AfterCommit(f), Some(g)) = (outcome, group.as_mut()) {
                    g.waiting.push(f);
                    g.first_waiting.get_or_insert_with(Instant::now);
                }
            }
        }
    }
    commit(&conn, group.take(), memory);
}

fn commit(conn: &Connection, group: Option<Group>, memory: &Mutex<AuthMemory>) {
    let Some(group) = group else { return };
    let result = exec(conn, "COMMIT").map_err(|e| {
        memory::lock(memory).invalidate_all();
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
