//! SQLite backend: the embedded default (`sqlite://rrnet-radius.db`).
//!
//! SQLite allows one writer at a time. Every write transaction goes through a pool
//! of exactly one connection and starts with `BEGIN IMMEDIATE`, so writers inside
//! this process queue on the pool instead of failing with "database is locked", and
//! a transaction that reads and then writes (authorize) holds the write lock from
//! its first read. Plain reads use a separate pool and, thanks to WAL, never wait
//! for the writer. Another process (the CLI next to a running server) is covered by
//! `busy_timeout`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Sqlite, Transaction};

use super::shared::impl_store;
use super::{StoreError, StoreResult};

/// Readers allowed at once; reads are short (admin listings, generation polls).
const READERS: u32 = 4;

/// A [`Store`](super::Store) on an SQLite file.
pub struct SqliteStore {
    /// Exactly one connection: the only path for writes.
    writer: Pool<Sqlite>,
    /// Connections for reads outside a write transaction.
    readers: Pool<Sqlite>,
}

impl SqliteStore {
    /// Open (creating it if missing) the database at `url` (`sqlite://PATH` or
    /// `sqlite:PATH`; a relative path is relative to the working directory).
    /// Does not migrate.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode: a commit survives a crash of this process (it is in
            // the WAL file, in the OS page cache), but the last transactions before a
            // power loss or kernel crash may be lost, because the WAL is only synced at
            // checkpoints. That is the trade the embedded default makes for an fsync
            // per checkpoint instead of per commit; a fleet that cannot lose an
            // accounting record to a power cut runs PostgreSQL.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            // After a checkpoint resets the WAL, cut the file back to 64 MiB: a burst
            // of accounting must not leave a WAL of its peak size on disk for good.
            .pragma("journal_size_limit", "67108864")
            .foreign_keys(true);
        // The writer connects first: it creates the file and switches it to WAL.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(SqliteStore { writer, readers })
    }

    const LOCK_VOUCHER: &'static str = "";
    const LOCK_SESSION: &'static str = "";
    /// SQLite reports no deadlocks: writers are serialised, and `busy_timeout`
    /// covers other processes.
    const WRITE_ATTEMPTS: u32 = 1;

    /// Table source with one row per element of the JSON array bound as `$n`:
    /// the element as `j.value`, its position as `j.key`. Batches pass many rows
    /// through one parameter so that the SQL text stays fixed (and prepared once).
    fn json_rows(n: u32) -> String {
        format!("json_each(${n}) AS j")
    }

    /// Element `i` of the row array `j.value` as an integer. `json_extract` returns
    /// an INTEGER for an integral JSON number, all 64 bits of it, and NULL for null.
    fn json_int(i: u32) -> String {
        format!("json_extract(j.value, '$[{i}]')")
    }

    /// Element `i` of the row array `j.value` as text (NULL for null).
    fn json_text(i: u32) -> String {
        format!("json_extract(j.value, '$[{i}]')")
    }

    async fn begin_write(&self) -> sqlx::Result<Transaction<'static, Sqlite>> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }

    fn reader(&self) -> &Pool<Sqlite> {
        &self.readers
    }

    async fn run_migrations(&self) -> StoreResult<()> {
        sqlx::migrate!("migrations/sqlite")
            .run(&self.writer)
            .await
            .map_err(StoreError::from)
    }
}

impl_store!(SqliteStore, Sqlite);
