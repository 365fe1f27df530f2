//! `/healthz` says the process is up; `/readyz` says it can do its job: the
//! RADIUS sockets are bound and storage answers. Taking the database away must
//! turn `/readyz` unhealthy (and count the storage errors) without touching
//! `/healthz`, and bringing it back must turn it healthy again, with no restart.
mod common;

use std::time::{Duration, Instant};

use common::*;
use rrnet_radius::proto::Code;
use sqlx::Connection;

#[test]
fn healthz_and_readyz_on_sqlite() {
    let db = TestDb::sqlite();
    db.setup_basic();
    let server = Server::start(&db);
    let (status, body) = server.get_metrics_path("/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = server.get_metrics_path("/readyz");
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    assert!(server.stop().success());
}

/// A database of its own on the test PostgreSQL server, which this test can
/// close to new connections and whose sessions it can end, as a database
/// outage looks to the server. Dropped at the end.
struct DedicatedDb {
    admin_url: String,
    name: String,
    url: String,
    rt: tokio::runtime::Runtime,
}

impl DedicatedDb {
    fn create() -> Option<DedicatedDb> {
        let admin_url = std::env::var("RRNET_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("rrnet_readyz_{}", hex::encode(rand::random::<[u8; 5]>()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let created = rt.block_on(async {
            let mut c = sqlx::PgConnection::connect(&admin_url).await?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut c)
                .await?;
            Ok::<_, sqlx::Error>(())
        });
        if let Err(e) = created {
            skip(
                Lacks::Postgres,
                &format!(
                    "cannot create a PostgreSQL database at {} for the outage test ({e}); \
                     set RRNET_TEST_POSTGRES_URL to a superuser URL",
                    without_credentials(&admin_url)
                ),
            );
            return None;
        }
        // Same server and credentials, other database: swap the path, keep the query.
        let (before_query, query) = match admin_url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (admin_url.as_str(), String::new()),
        };
        let scheme_end = before_query.find("://").map_or(0, |i| i + 3);
        let host_part = match before_query[scheme_end..].find('/') {
            Some(i) => &before_query[..scheme_end + i],
            None => before_query,
        };
        let url = format!("{host_part}/{name}{query}");
        Some(DedicatedDb {
            admin_url,
            name,
            url,
            rt,
        })
    }

    fn admin(&self, sql: &str) {
        self.rt.block_on(async {
            let mut c = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
        });
    }

    /// Refuse new connections and end the existing ones.
    fn take_away(&self) {
        self.admin(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
            self.name
        ));
        self.admin(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            self.name
        ));
    }

    fn bring_back(&self) {
        self.admin(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
            self.name
        ));
    }
}

impl Drop for DedicatedDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin_url = self.admin_url.clone();
        let _ = self.rt.block_on(async move {
            let mut c = sqlx::PgConnection::connect(&admin_url).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut c)
                .await?;
            Ok::<_, sqlx::Error>(())
        });
    }
}

/// Poll `/readyz` until it answers `want`; returns the last body.
fn readyz_becomes(server: &Server, want: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = server.get_metrics_path("/readyz");
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {status} ({body:?}), want {want}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn readyz_follows_a_postgres_outage() {
    let Some(pg) = DedicatedDb::create() else {
        return;
    };
    // The harness's database helper, pointed at the dedicated database.
    let Some(mut db) = TestDb::postgres() else {
        return;
    };
    db.url = pg.url.clone();
    db.setup_basic();
    db.cli(&["plan", "add", "--name", "hour", "--time", "1h"]);
    db.cli(&[
        "voucher",
        "add",
        "OUTAGE1",
        "--plan",
        "hour",
        "--password",
        "pw-OUTAGE1",
    ]);
    let server = Server::start(&db);
    let mut c = Client::new();
    let mac = Some("AA:BB:CC:00:30:01");

    readyz_becomes(&server, 200);
    let r = c.login(server.auth, "OUTAGE1", Cred::Pap("pw-OUTAGE1"), mac);
    assert_eq!(r.unwrap().code(), Code::AccessAccept);

    pg.take_away();
    let body = readyz_becomes(&server, 503);
    assert!(body.starts_with("not ready: storage"), "{body}");
    // The process is still up.
    assert_eq!(server.get_metrics_path("/healthz").0, 200);
    // A login during the outage gets no answer (the NAS retries), and is counted.
    let r = c.login(server.auth, "OUTAGE1", Cred::Pap("pw-OUTAGE1"), mac);
    assert!(r.is_none(), "no reply while storage is down");
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.metric("rrnet_radius_drops_total{nas=\"hotspot1\",reason=\"storage_error\"}")
        != Some(1.0)
    {
        assert!(Instant::now() < deadline, "storage_error drop not counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        server.metric("rrnet_radius_storage_errors_total{op=\"authorize\"}"),
        Some(1.0)
    );

    pg.bring_back();
    let body = readyz_becomes(&server, 200);
    assert_eq!(body, "ready\n");
    let r = c.login(server.auth, "OUTAGE1", Cred::Pap("pw-OUTAGE1"), mac);
    assert_eq!(r.unwrap().code(), Code::AccessAccept);
    assert!(server.stop().success());
}
