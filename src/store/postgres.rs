//! PostgreSQL backend, for fleets and for several server instances on one database.
//!
//! Correctness across instances rests on row locks: `authorize_batch` reads the
//! batch's vouchers `FOR UPDATE OF v`, so every authorization of one voucher, in
//! any process, runs after the previous one committed, and sees its session row
//! and activation. Accounting locks the session rows it updates. Both take their
//! locks in id order; transactions run at READ COMMITTED, and a deadlock between
//! authorization (voucher, then session) and accounting (session, then voucher)
//! is retried, as is a batch that meets a session another instance just created.

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
    const LOCK_SESSION: &'static str = " FOR UPDATE OF s";
    const WRITE_ATTEMPTS: u32 = 4;

    /// Table source with one row per element of the JSON array bound as `$n`:
    /// the element as `j.value`, its position as `j.key`. Batches pass many rows
    /// through one parameter so that the SQL text stays fixed (and prepared once).
    /// The parameter is bound as text and cast, so no JSON type support is needed.
    fn json_rows(n: u32) -> String {
        format!("jsonb_array_elements(${n}::text::jsonb) WITH ORDINALITY AS j(value, key)")
    }

    /// Element `i` of the row array `j.value` as BIGINT. `->>` prints the number
    /// exactly (jsonb keeps numerics exact), so all 64 bits survive; null → NULL.
    fn json_int(i: u32) -> String {
        format!("(j.value->>{i})::bigint")
    }

    /// Element `i` of the row array `j.value` as text (NULL for null).
    fn json_text(i: u32) -> String {
        format!("(j.value->>{i})")
    }

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
