//! PostgreSQL backend, for fleets and for several server instances on one database.
//!
//! Correctness across instances rests on row locks: `authorize` reads the voucher
//! `FOR UPDATE OF v`, so every authorization of one voucher, in any process, runs
//! after the previous one committed, and sees its session row and activation.
//! Accounting locks the session row it updates. Transactions run at READ
//! COMMITTED; a deadlock between the two lock orders is retried.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use super::shared::impl_store;
use super::{StoreError, StoreResult};

/// Connections per server instance: authorizations of different vouchers and
/// accounting batches proceed in parallel up to this many.
const MAX_CONNECTIONS: u32 = 16;

/// A [`Store`](super::Store) on a PostgreSQL database.
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connect to `url` (`postgres://…` or `postgresql://…`). Does not migrate.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let options: PgConnectOptions = url.parse()?;
        Self::open_with(options).await
    }

    /// Connect with prepared options (e.g. a `search_path` set through
    /// [`PgConnectOptions::options`]). Does not migrate.
    pub async fn open_with(options: PgConnectOptions) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(PgStore { pool })
    }

    const LOCK_VOUCHER: &'static str = " FOR UPDATE OF v";
    const LOCK_ROW: &'static str = " FOR UPDATE";
    const WRITE_ATTEMPTS: u32 = 4;

    async fn begin_write(&self) -> sqlx::Result<Transaction<'static, Postgres>> {
        self.pool.begin().await
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    async fn run_migrations(&self) -> StoreResult<()> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(StoreError::from)
    }
}

impl_store!(PgStore, Postgres);
