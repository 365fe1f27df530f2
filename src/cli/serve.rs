//! `rrnet-radius serve`: resolve settings, open and migrate storage, bind the
//! sockets, and run until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;

use super::{database_url, open_store, redact_url, Cli, ServeArgs};
use crate::config::{self, FileConfig};
use crate::handler::RequestHandler;
use crate::http::ops::{self, OpsState};
use crate::http::shim::{self, RestSecret};
use crate::metrics::Metrics;

/// Resolves when SIGINT or SIGTERM arrives. The handlers are installed when
/// this is called, not when the future is first polled: a SIGTERM that comes
/// right after the server said it listens (a service manager, a test) must
/// stop it cleanly rather than kill it.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, Signal, SignalKind};
        async fn received(s: Option<Signal>) {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        let term = received(signal(SignalKind::terminate()).ok());
        let int = received(signal(SignalKind::interrupt()).ok());
        async move {
            tokio::select! {
                _ = term => {},
                _ = int => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn parse_addr(s: &str, what: &str) -> anyhow::Result<SocketAddr> {
    s.parse()
        .with_context(|| format!("{what} {s:?} is not an address like 127.0.0.1:9812"))
}

pub async fn run(cli: &Cli, args: &ServeArgs) -> anyhow::Result<()> {
    // First of all, so that a stop request during start-up is a clean stop.
    let signal = shutdown_signal();
    let file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let url = database_url(cli, file.database.as_deref());
    let auth_addr = args
        .auth_listen
        .or(file.auth_listen)
        .unwrap_or(parse_addr(config::DEFAULT_AUTH_LISTEN, "auth address")?);
    let acct_addr = args
        .acct_listen
        .or(file.acct_listen)
        .unwrap_or(parse_addr(config::DEFAULT_ACCT_LISTEN, "acct address")?);
    let metrics_addr = match args
        .metrics_listen
        .clone()
        .or(file.metrics_listen.clone())
        .unwrap_or_else(|| config::DEFAULT_METRICS_LISTEN.to_string())
    {
        s if s.is_empty() || s == "off" => None,
        s => Some(parse_addr(&s, "--metrics-listen")?),
    };
    let server_config = file.server_config()?;
    let webhook_settings = file.webhook_settings()?;
    let (rest_limits, metrics_limits) = file.http_limits()?;
    let http_addr = args
        .http_listen
        .or(file.http_listen)
        .unwrap_or(parse_addr(config::DEFAULT_HTTP_LISTEN, "HTTP address")?);
    // The shim listens only when a secret is set; a set but too short secret
    // is an error rather than a shim that silently stays off.
    let rest_secret = match std::env::var("RRNET_RADIUS_REST_SECRET") {
        Ok(s) => Some(RestSecret::new(&s)?),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("RRNET_RADIUS_REST_SECRET is not valid UTF-8")
        }
    };
    for path in &file.dictionaries {
        // Extra dictionaries are validated at start so a broken file fails fast.
        let mut d = crate::dictionary::Dictionary::with_builtin();
        d.load_file(path)
            .with_context(|| format!("loading dictionary {}", path.display()))?;
    }

    let radsec = radsec_settings(args, &file)?;

    let store = open_store(&url).await?;
    store
        .claim_decider()
        .await
        .map_err(|e| anyhow::anyhow!("cannot serve on database {}: {e}", redact_url(&url)))?;
    tracing::info!(database = %redact_url(&url), "storage ready");

    let rcvbuf = server_config.socket_receive_buffer;
    let (auth, _) = crate::server::bind_udp(auth_addr, rcvbuf)
        .with_context(|| format!("cannot bind the authentication port {auth_addr}"))?;
    let (acct, _) = crate::server::bind_udp(acct_addr, rcvbuf)
        .with_context(|| format!("cannot bind the accounting port {acct_addr}"))?;

    let metrics = Metrics::new();
    let sockets_ready = Arc::new(AtomicBool::new(false));
    if let Some(addr) = metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind the metrics listener {addr}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "metrics listening on /metrics, /healthz, /readyz");
        let app = ops::router(OpsState {
            metrics: metrics.clone(),
            store: store.clone(),
            sockets_ready: sockets_ready.clone(),
        });
        let metrics = metrics.clone();
        // It serves until the process ends, so /metrics can be scraped during shutdown.
        tokio::spawn(async move {
            crate::http::listener::serve(
                listener,
                app,
                metrics_limits,
                &metrics,
                "metrics",
                std::future::pending(),
            )
            .await;
        });
    }

    // One NAS table for the UDP server and the shim; the server keeps it current.
    let nas = crate::server::load_nas_directory(store.as_ref(), &metrics).await?;
    // One request handler for both: the same batching, queues and metrics.
    let (handler, workers) =
        RequestHandler::start(store.clone(), metrics.clone(), server_config.handler());
    // One signal stops both the UDP server and the shim.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The REST listener serves the shim when its secret is set and the
    // management API when a token exists (tokens made later are picked up
    // by a running listener, but a listener is only started here).
    let tokens = crate::http::api::TokenCache::load(store.as_ref())
        .await
        .context("reading the management API tokens")?;
    let shim = if rest_secret.is_some() || !tokens.is_empty() {
        let listener = tokio::net::TcpListener::bind(http_addr)
            .await
            .with_context(|| format!("cannot bind the REST listener {http_addr}"))?;
        let refresh = tokens.spawn_refresh(store.clone());
        let mut stop = stop_rx.clone();
        let shim_state = rest_secret.map(|secret| shim::ShimState {
            metrics: metrics.clone(),
            handler: handler.clone(),
            secret,
            nas: nas.clone(),
        });
        let api = crate::http::api::ApiState {
            store: store.clone(),
            tokens,
            metrics: metrics.clone(),
        };
        Some(
            crate::http::spawn_rest(listener, shim_state, api, rest_limits, async move {
                let _ = stop.wait_for(|s| *s).await;
                refresh.abort();
            })
            .await?,
        )
    } else {
        None
    };

    let radsec = match radsec {
        Some((addr, paths, limits)) => {
            let tls = Arc::new(crate::radsec::TlsFiles::load(paths)?);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot bind the RadSec listener {addr}"))?;
            tracing::info!(addr = %listener.local_addr()?, "listening for RadSec (RADIUS over TLS)");
            spawn_tls_reload(tls.clone());
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(crate::radsec::serve(
                listener,
                tls,
                handler.clone(),
                nas.clone(),
                limits,
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            )))
        }
        None => None,
    };

    // Disconnect/CoA requests queued by revokes (this process or the CLI),
    // accounting and plan changes go out from here (see crate::coa).
    let coa = crate::coa::CoaWorker::new(
        store.clone(),
        Arc::new(crate::coa::CoaClient::default()),
        crate::coa::CoaMetrics::register(&metrics.registry),
        handler.last_sources().clone(),
    );
    let coa = tokio::spawn(coa.run(stop_rx.clone()));
    // Events written by this process, the CLI or another server are POSTed
    // to webhooks from here (see crate::events).
    let deliveries = crate::events::DeliveryWorker::new(
        store.clone(),
        crate::events::WebhookMetrics::register(&metrics.registry),
        webhook_settings,
    );
    let deliveries = tokio::spawn(deliveries.run(stop_rx.clone()));

    sockets_ready.store(true, Ordering::Release);
    let shutdown = async move {
        signal.await;
        let _ = stop_tx.send(true);
    };
    // The server waits for the handler's work in flight, which includes the
    // shim's: the shim's requests finish within that wait too.
    let served =
        crate::server::serve(auth, acct, handler, workers, nas, server_config, shutdown).await;
    if let Some(radsec) = radsec {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), radsec).await;
    }
    if let Some(shim) = shim {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), shim).await;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), coa).await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), deliveries).await;
    served
}

/// The RadSec listener's address, files and limits, when it is on: flags
/// and environment over the `[radsec]` section. On without all three files is
/// an error, not a listener that silently stays off.
fn radsec_settings(
    args: &ServeArgs,
    file: &FileConfig,
) -> anyhow::Result<
    Option<(
        SocketAddr,
        crate::radsec::TlsPaths,
        crate::radsec::RadSecLimits,
    )>,
> {
    let r = &file.radsec;
    let limits = file.radsec_limits()?;
    let Some(addr) = args.radsec_listen.or(r.listen) else {
        return Ok(None);
    };
    let need = |flag: &Option<std::path::PathBuf>, key: &Option<std::path::PathBuf>, name: &str| {
        flag.clone().or_else(|| key.clone()).ok_or_else(|| {
            anyhow::anyhow!(
                "RadSec ({addr}) needs --{name} (or [radsec] {} in the config file)",
                name.replace('-', "_")
            )
        })
    };
    let paths = crate::radsec::TlsPaths {
        cert: need(&args.tls_cert, &r.tls_cert, "tls-cert")?,
        key: need(&args.tls_key, &r.tls_key, "tls-key")?,
        client_ca: need(&args.tls_client_ca, &r.tls_client_ca, "tls-client-ca")?,
    };
    Ok(Some((addr, paths, limits)))
}

/// Read the RadSec certificate files again on every SIGHUP. New connections
/// use them; established ones keep what they were made with.
fn spawn_tls_reload(tls: Arc<crate::radsec::TlsFiles>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot watch SIGHUP: RadSec certificates are read at start only");
            return;
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match tls.reload() {
                    Ok(()) => tracing::info!("SIGHUP: RadSec certificates reloaded"),
                    Err(e) => tracing::error!(
                        error = %e,
                        "SIGHUP: RadSec certificates not reloaded; the previous ones stay in use"
                    ),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = tls;
}
