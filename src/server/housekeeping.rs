//! Background work: reload the NAS table when it changes, close stale sessions,
//! prune the auth log, refresh the open-sessions gauge.

use std::sync::Arc;

use tokio::sync::watch;

use super::{load_nas_table, unix_now, Shared};

pub(super) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut reload = tokio::time::interval(shared.config.nas_reload_interval);
    let mut chores = tokio::time::interval(shared.config.housekeeping_interval);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = reload.tick() => reload_nas(&shared).await,
            _ = chores.tick() => sweep(&shared).await,
        }
    }
}

async fn reload_nas(shared: &Shared) {
    let current = shared.nas_table().generation;
    match shared.store.nas_generation().await {
        Ok(g) if g == current => {}
        Ok(_) => match load_nas_table(shared.store.as_ref()).await {
            Ok(table) => {
                tracing::info!(nas = table.len(), "NAS table reloaded");
                *shared.nas.write().expect("NAS table lock poisoned") = Arc::new(table);
            }
            Err(e) => tracing::warn!(error = %e, "NAS table reload failed"),
        },
        Err(e) => tracing::warn!(error = %e, "NAS generation check failed"),
    }
}

async fn sweep(shared: &Shared) {
    let now = unix_now();
    let cfg = &shared.config;
    match shared
        .store
        .close_stale_sessions(
            now,
            cfg.default_interim,
            cfg.stale_grace,
            cfg.authorize.authorized_ttl,
        )
        .await
    {
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
        if let Err(e) = shared.store.prune_auth_events(now - retention as i64).await {
            tracing::warn!(error = %e, "pruning the auth log failed");
        }
    }
    match shared.store.open_sessions_by_nas().await {
        Ok(rows) => {
            for (nas, n) in rows {
                shared
                    .metrics
                    .open_sessions
                    .with_label_values(&[&nas])
                    .set(n);
            }
        }
        Err(e) => tracing::warn!(error = %e, "counting open sessions failed"),
    }
}
