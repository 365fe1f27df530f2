//! WAL checkpoints on their own thread and connection.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses the
//! threshold, on the writer, with an fsync of the database file: every reply
//! waiting behind that commit waits for it too. So the engine's connection has
//! `wal_autocheckpoint=0`, and this thread:
//! - every [`INTERVAL`] runs a PASSIVE checkpoint, which copies what it can to
//!   the database file without ever blocking the writer;
//! - when the WAL still holds more than [`TRUNCATE_PAGES`] pages (a constant
//!   writer never leaves a moment where a passive checkpoint completes and the
//!   WAL can restart), runs a TRUNCATE checkpoint: it waits for the writer to
//!   finish its transaction, holds the next one back while it copies the few
//!   pages the passive ones left and resets the WAL to zero bytes. Because the
//!   passive checkpoints have already copied almost everything, that hold-up is
//!   short, and it bounds the WAL under any load.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreResult;

/// How often the WAL is checkpointed.
pub const INTERVAL: Duration = Duration::from_millis(250);
/// WAL size, in pages (4 KiB by default), past which it is truncated: 64 MiB.
pub const TRUNCATE_PAGES: i64 = 16_384;

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
    pub fn start(path: &Path) -> StoreResult<Checkpointer> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(2))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(conn, &flag))
            .map_err(|e| {
                crate::store::StoreError::Invalid(format!(
                    "cannot start the checkpoint thread: {e}"
                ))
            })?;
        Ok(Checkpointer { stop })
    }
}

/// `(busy, WAL pages, pages checkpointed)` of one checkpoint.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

fn run(conn: Connection, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(INTERVAL);
        match checkpoint(&conn, "PASSIVE") {
            Ok((_, pages, _)) if pages > TRUNCATE_PAGES => {
                if let Err(e) = checkpoint(&conn, "TRUNCATE") {
                    tracing::debug!(error = %e, "WAL truncate checkpoint did not run");
                }
            }
            Ok(_) => {}
            // A database not yet in WAL mode, or one being created.
            Err(e) => tracing::debug!(error = %e, "WAL checkpoint did not run"),
        }
    }
}
