//! WAL checkpoints on their own thread and connection.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold, on the writer, with an fsync of the database file: every reply
//! waiting behind that commit would wait for it too. So the engine's connection
//! has `wal_autocheckpoint=0`, and this thread:
//! - every [`INTERVAL`] runs a PASSIVE checkpoint, which copies WAL pages to
//!   the database file without ever blocking the engine;
//! - when the WAL holds more than [`RESTART_PAGES`] pages, makes room: a WAL
//!   only starts over from its beginning when a checkpoint has copied all of
//!   it before the next commit, which a passive checkpoint racing a constant
//!   writer rarely manages. So it asks the engine, through the [`WalGate`], to
//!   wait once between two of its commits, runs a RESTART checkpoint (which
//!   only has the pages since the last passive one left to copy), and lets the
//!   engine go on. The engine waits at most [`GATE_HOLD`]; the WAL stays near
//!   `RESTART_PAGES` pages under any load.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreResult;

/// How often the WAL is checkpointed.
pub const INTERVAL: Duration = Duration::from_millis(100);
/// WAL size, in pages (4 KiB by default), past which it is restarted: 64 MiB.
pub const RESTART_PAGES: i64 = 16_384;
/// A restart waits until passive checkpoints find no more than this many new
/// pages, so the engine is held only for copying these few.
const CATCH_UP_PAGES: i64 = 256;
/// The longest the engine waits for a restart checkpoint.
pub const GATE_HOLD: Duration = Duration::from_millis(50);
/// How long the checkpointer waits for the engine to reach a pause.
const GATE_WAIT: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Gate {
    /// The engine writes as it likes.
    Open,
    /// The checkpointer wants the engine to wait after its next commit.
    Wanted,
    /// The engine is waiting.
    Held,
}

/// Where the engine and the checkpointer meet for a WAL restart.
pub struct WalGate {
    wanted: AtomicBool,
    state: Mutex<Gate>,
    changed: Condvar,
}

impl WalGate {
    pub fn new() -> Arc<WalGate> {
        Arc::new(WalGate {
            wanted: AtomicBool::new(false),
            state: Mutex::new(Gate::Open),
            changed: Condvar::new(),
        })
    }

    /// Called by the engine between commits: cheap unless a restart is wanted,
    /// then waits (at most [`GATE_HOLD`]) until the checkpoint is done.
    pub fn pause_point(&self) {
        if !self.wanted.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.state.lock().expect("WAL gate lock poisoned");
        if *state != Gate::Wanted {
            return;
        }
        *state = Gate::Held;
        self.changed.notify_all();
        let (mut state, _) = self
            .changed
            .wait_timeout_while(state, GATE_HOLD, |s| *s == Gate::Held)
            .expect("WAL gate lock poisoned");
        *state = Gate::Open;
        self.wanted.store(false, Ordering::Release);
    }

    /// Called by the checkpointer: ask for a pause and wait until the engine
    /// holds (true) or did not get there in time (false: it is idle between
    /// jobs, or busy with a long one).
    fn hold(&self) -> bool {
        let mut state = self.state.lock().expect("WAL gate lock poisoned");
        *state = Gate::Wanted;
        self.wanted.store(true, Ordering::Release);
        let (state, _) = self
            .changed
            .wait_timeout_while(state, GATE_WAIT, |s| *s == Gate::Wanted)
            .expect("WAL gate lock poisoned");
        *state == Gate::Held
    }

    /// Let the engine go on.
    fn release(&self) {
        let mut state = self.state.lock().expect("WAL gate lock poisoned");
        *state = Gate::Open;
        self.wanted.store(false, Ordering::Release);
        self.changed.notify_all();
    }
}

/// Stops its thread when dropped.
pub struct Checkpointer {
    stop: Arc<AtomicBool>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Checkpointer {
    pub fn start(path: &Path, gate: Arc<WalGate>) -> StoreResult<Checkpointer> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(2))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(conn, &flag, &gate))
            .map_err(|e| {
                crate::store::StoreError::Invalid(format!(
                    "cannot start the checkpoint thread: {e}"
                ))
            })?;
        Ok(Checkpointer { stop })
    }
}

/// Passive checkpoints until the last one found few new pages to copy, so
/// that the restart that follows (while the engine waits) has little left.
fn catch_up(conn: &Connection) {
    let mut before = 0;
    for _ in 0..4 {
        match checkpoint(conn, "PASSIVE") {
            Ok((_, pages, _)) if pages - before > CATCH_UP_PAGES => before = pages,
            _ => return,
        }
    }
}

/// `(busy, WAL pages, pages checkpointed)` of one checkpoint.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

fn run(conn: Connection, stop: &AtomicBool, gate: &WalGate) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(INTERVAL);
        match checkpoint(&conn, "PASSIVE") {
            Ok((_, pages, _)) if pages > RESTART_PAGES => {
                catch_up(&conn);
                let held = gate.hold();
                let restarted = checkpoint(&conn, "RESTART");
                gate.release();
                if let Err(e) = restarted {
                    tracing::debug!(error = %e, held, "WAL restart checkpoint did not run");
                }
            }
            Ok(_) => {}
            // A database not yet in WAL mode, or one being created.
            Err(e) => tracing::debug!(error = %e, "WAL checkpoint did not run"),
        }
    }
}
