//! Background work: reload the NAS table when it changes, close stale sessions,
//! prune the auth log, refresh the open-sessions gauge; and, as often as the
//! NAS table is checked, write the login guard's summed-up refusals to the auth
//! log and read the kernel's receive drops.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::{init_nas_metrics, kernel_drops, load_nas_table, unix_now, Shared};
use crate::handler::DatagramPort;
use crate::policy::RejectReason;
use crate::store::RepeatedRejects;

pub(super) async fn run(
    shared: Arc<Shared>,
    ports: [Arc<DatagramPort>; 2],
    mut stop: watch::Receiver<bool>,
) {
    let mut reload = tokio::time::interval(shared.config.nas_reload_interval);
    let mut resolve = tokio::time::interval(shared.config.nas_resolve_interval);
    // The first tick is now: the table was resolved when it was loaded.
    resolve.tick().await;
    let mut chores = tokio::time::interval(shared.config.housekeeping_interval);
    // NAS names in the open-sessions gauge, so a removed NAS's series is dropped.
    let mut gauge_nas = HashSet::new();
    let mut drops_seen = [0u64; 2];
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = reload.tick() => {
                reload_nas(&shared).await;
                log_guard_refusals(&shared).await;
                count_kernel_drops(&shared, &ports, &mut drops_seen);
                for port in &ports {
                    port.tidy();
                }
            }
            _ = resolve.tick() => resolve_nas(&shared).await,
            _ = shared.resolve_now.notified() => resolve_nas(&shared).await,
            _ = chores.tick() => {
                sweep(&shared, &mut gauge_nas).await;
                release_free_memory();
            }
        }
    }
    log_guard_refusals(&shared).await;
}

/// The login guard's refusals since the last call, one auth-log row per device
/// or NAS with how many and from when to when.
async fn log_guard_refusals(shared: &Shared) {
    let held = shared.handler.take_guard_summaries();
    if held.is_empty() {
        return;
    }
    let rows: Vec<RepeatedRejects> = held
        .into_iter()
        .map(|h| RepeatedRejects {
            nas_id: h.nas_id,
            nas_name: h.nas_name,
            username: h.username,
            mac: h.mac,
            reason: RejectReason::TooManyFailures,
            count: h.count,
            first: h.first,
            last: h.last,
        })
        .collect();
    if let Err(e) = shared.store.log_repeated_rejects(&rows).await {
        tracing::warn!(error = %e, rows = rows.len(), "writing the login guard's refusals to the auth log failed");
    }
}

fn count_kernel_drops(shared: &Shared, ports: &[Arc<DatagramPort>; 2], seen: &mut [u64; 2]) {
    for ((port, label), seen) in ports.iter().zip(["auth", "acct"]).zip(seen.iter_mut()) {
        if let Some(now) = kernel_drops(&port.socket) {
            if now > *seen {
                shared
                    .metrics
                    .socket_receive_drops
                    .with_label_values(&[label])
                    .inc_by(now - *seen);
            }
            *seen = now;
        }
    }
}

/// Resolve the NAS host names again; swap the table if an address changed.
async fn resolve_nas(shared: &Shared) {
    let table = shared.nas_table();
    let names = table.host_names();
    if names.is_empty() {
        return;
    }
    let got = super::resolve::resolve(&names).await;
    let fresh = table.re_resolved(got.clone());
    if fresh.resolved != table.resolved {
        tracing::info!(
            hosts = names.len(),
            "NAS host names resolved to new addresses"
        );
        let fresh = fresh.count_with(&shared.metrics);
        // Only this task swaps the table, so nothing was lost in between.
        *shared.nas.write().expect("NAS table lock poisoned") = Arc::new(fresh);
    }
    super::note_resolution(&shared.metrics, &shared.nas_table(), &got);
}

async fn reload_nas(shared: &Shared) {
    let current = shared.nas_table().generation;
    let t = Instant::now();
    let generation = shared.store.nas_generation().await;
    shared
        .metrics
        .storage_call("nas_generation", t, &generation);
    match generation {
        Ok(g) if g == current => {}
        Ok(_) => {
            let t = Instant::now();
            let loaded = load_nas_table(shared.store.as_ref())
                .await
                .map(|t| t.count_with(&shared.metrics));
            shared.metrics.storage_call("load_nas", t, &loaded);
            match loaded {
                Ok(table) => {
                    tracing::info!(nas = table.len(), "NAS table reloaded");
                    init_nas_metrics(&shared.metrics, &table);
                    super::note_resolution(&shared.metrics, &table, &table.resolved);
                    *shared.nas.write().expect("NAS table lock poisoned") = Arc::new(table);
                }
                Err(e) => tracing::warn!(error = %e, "NAS table reload failed"),
            }
        }
        Err(e) => tracing::warn!(error = %e, "NAS generation check failed"),
    }
}

async fn sweep(shared: &Shared, gauge_nas: &mut HashSet<String>) {
    let now = unix_now();
    let cfg = &shared.config;
    let t = Instant::now();
    let closed = shared
        .store
        .close_stale_sessions(
            now,
            cfg.default_interim,
            cfg.stale_grace,
            cfg.authorize.authorized_ttl,
        )
        .await;
    shared
        .metrics
        .storage_call("close_stale_sessions", t, &closed);
    match closed {
        Ok(0) => {}
        Ok(n) => {
            shared
                .metrics
                .sessions_closed
                .with_label_values(&["stale"])
                .inc_by(n);
            tracing::info!(closed = n, "closed stale sessions");
        }
        Err(e) => tracing::warn!(error = %e, "closing stale sessions failed"),
    }
    if let Some(retention) = cfg.auth_log_retention {
        let t = Instant::now();
        let pruned = shared.store.prune_auth_events(now - retention as i64).await;
        shared.metrics.storage_call("prune_auth_events", t, &pruned);
        match pruned {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "pruned the auth log"),
            Err(e) => tracing::warn!(error = %e, "pruning the auth log failed"),
        }
    }
    if let Some(retention) = cfg.events_retention {
        let t = Instant::now();
        let pruned = shared.store.prune_events(now - retention as i64).await;
        shared.metrics.storage_call("prune_events", t, &pruned);
        match pruned {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "pruned old events and their deliveries"),
            Err(e) => tracing::warn!(error = %e, "pruning old events failed"),
        }
    }
    let t = Instant::now();
    let counts = shared.store.open_sessions_by_nas().await;
    shared
        .metrics
        .storage_call("open_sessions_by_nas", t, &counts);
    match counts {
        Ok(rows) => {
            let current: HashSet<String> = rows.iter().map(|(nas, _)| nas.clone()).collect();
            for gone in gauge_nas.difference(&current) {
                let _ = shared.metrics.open_sessions.remove_label_values(&[gone]);
            }
            for (nas, n) in &rows {
                shared
                    .metrics
                    .open_sessions
                    .with_label_values(&[nas])
                    .set(*n);
            }
            *gauge_nas = current;
        }
        Err(e) => tracing::warn!(error = %e, "counting open sessions failed"),
    }
}

/// Hand memory freed after a flood back to the system. glibc keeps freed
/// memory in its arenas for reuse, so without this the process would stay as
/// big as its biggest burst (measured with bench/flood).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
    // SAFETY: malloc_trim takes no pointers and may be called at any time from
    // any thread; it only returns free pages of the allocator to the kernel.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}
