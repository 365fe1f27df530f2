//! Migrations for SQLite: the files in `migrations/sqlite`, embedded, applied in
//! order, each in its own transaction, and recorded in `schema_migrations`.
//! A database made by an earlier release (which recorded its migrations in
//! sqlx's `_sqlx_migrations`) is recognised, so its migrations are not re-run.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::super::{StoreError, StoreResult};
use crate::store::rows::now;

/// `(version, description, SQL)`, in order. Keep in step with migrations/postgres.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "nas secret rotation",
        include_str!("../../../migrations/sqlite/0002_nas_secret_rotation.sql"),
    ),
    (
        3,
        "sessions live devices",
        include_str!("../../../migrations/sqlite/0003_sessions_live_devices.sql"),
    ),
    (
        4,
        "coa",
        include_str!("../../../migrations/sqlite/0004_coa.sql"),
    ),
    (
        5,
        "auth event repeats",
        include_str!("../../../migrations/sqlite/0005_auth_event_repeats.sql"),
    ),
    (
        6,
        "nas identity",
        include_str!("../../../migrations/sqlite/0006_nas_identity.sql"),
    ),
    (
        7,
        "tenants",
        include_str!("../../../migrations/sqlite/0007_tenants.sql"),
    ),
    (
        8,
        "session router",
        include_str!("../../../migrations/sqlite/0008_session_router.sql"),
    ),
    (
        10,
        "api tokens",
        include_str!("../../../migrations/sqlite/0010_api_tokens.sql"),
    ),
    (
        11,
        "events",
        include_str!("../../../migrations/sqlite/0011_events.sql"),
    ),
];

pub fn migrate(conn: &mut Connection) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             description TEXT NOT NULL,
             applied_at INTEGER NOT NULL
         )",
    )?;
    adopt_sqlx_history(conn)?;
    let applied: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if applied > newest {
        return Err(StoreError::Invalid(format!(
            "the database is at schema version {applied}, newer than this build knows ({newest}); \
             use a newer rrnet-radius"
        )));
    }
    // Foreign keys are off while migrations run, as SQLite requires for
    // rebuilding a table (a UNIQUE constraint cannot be dropped otherwise), and
    // each migration is checked with `foreign_key_check` before it commits.
    // The pragma is a no-op inside a transaction, so it is set around them.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let result = run_pending(conn, applied);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    result
}

fn run_pending(conn: &mut Connection, applied: i64) -> StoreResult<()> {
    // Every migration not recorded yet, not only those above the newest
    // recorded: a migration with a lower number may be added to the code
    // after a database already has a higher one.
    let done: std::collections::HashSet<i64> = {
        let mut stmt = conn.prepare("SELECT version FROM schema_migrations")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    debug_assert!(done.is_empty() || done.contains(&applied));
    for &(version, description, sql) in MIGRATIONS.iter().filter(|m| !done.contains(&m.0)) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql).map_err(|e| {
            StoreError::Invalid(format!("migration {version} ({description}): {e}"))
        })?;
        let broken: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()?;
        if let Some(table) = broken {
            return Err(StoreError::Invalid(format!(
                "migration {version} ({description}) leaves rows of {table} without their parent"
            )));
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![version, description, now()],
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// Copy the successful versions from `_sqlx_migrations`, if that table exists
/// and `schema_migrations` is still empty.
fn adopt_sqlx_history(conn: &Connection) -> StoreResult<()> {
    let has_sqlx: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if has_sqlx.is_none() {
        return Ok(());
    }
    conn.execute(
        "INSERT OR IGNORE INTO schema_migrations (version, description, applied_at) \
         SELECT version, description, ?1 FROM _sqlx_migrations WHERE success = 1 \
         AND NOT EXISTS (SELECT 1 FROM schema_migrations)",
        [now()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database at schema 6 with vouchers, a deleted voucher and a session
    /// is upgraded to per-tenant codes (a table rebuild) without losing ids,
    /// the AUTOINCREMENT mark or the sessions' link to their voucher.
    #[test]
    fn tenants_migration_keeps_vouchers_and_links() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, \
             description TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )
        .unwrap();
        for &(version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 <= 6) {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?1, ?2, 0)",
                rusqlite::params![version, description],
            )
            .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO nas (name, address, secret, created_at) VALUES ('r1', '192.0.2.1', 's', 0);
             INSERT INTO plans (name, created_at) VALUES ('1h', 0);
             INSERT INTO vouchers (code, password, plan_id, created_at) VALUES ('A', 'A', 1, 0);
             INSERT INTO vouchers (code, password, plan_id, created_at) VALUES ('B', 'B', 1, 0);
             INSERT INTO vouchers (code, password, plan_id, created_at) VALUES ('C', 'C', 1, 0);
             DELETE FROM vouchers WHERE code = 'C';
             INSERT INTO sessions (nas_id, acct_session_id, username, voucher_id, state, updated_at)
             VALUES (1, 's1', 'B', 2, 'open', 0);",
        )
        .unwrap();

        migrate(&mut conn).unwrap();

        let fk: bool = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert!(fk, "foreign keys are on again");
        let ids: Vec<(i64, String, i64)> = conn
            .prepare("SELECT id, code, tenant_id FROM vouchers ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, vec![(1, "A".into(), 1), (2, "B".into(), 1)]);
        // The id of the deleted voucher is never handed out again (Class).
        conn.execute(
            "INSERT INTO vouchers (code, password, plan_id, created_at) VALUES ('D', 'D', 1, 0)",
            [],
        )
        .unwrap();
        let d: i64 = conn
            .query_row("SELECT id FROM vouchers WHERE code = 'D'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(d, 4);
        // Codes are unique per tenant.
        conn.execute_batch(
            "INSERT INTO tenants (name, created_at) VALUES ('isp-b', 0);
             INSERT INTO vouchers (tenant_id, code, password, plan_id, created_at)
             VALUES (2, 'A', 'x', 1, 0);",
        )
        .unwrap();
        assert!(conn
            .execute(
                "INSERT INTO vouchers (tenant_id, code, password, plan_id, created_at) \
                 VALUES (2, 'A', 'y', 1, 0)",
                [],
            )
            .is_err());
        // The session still points at its voucher, and the foreign key still acts.
        conn.execute("DELETE FROM vouchers WHERE id = 2", [])
            .unwrap();
        let link: Option<i64> = conn
            .query_row(
                "SELECT voucher_id FROM sessions WHERE acct_session_id = 's1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(link, None, "ON DELETE SET NULL reaches the rebuilt table");
    }
}
