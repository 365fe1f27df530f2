//! HTTP listeners: the operations endpoints (`/metrics`, `/healthz`, `/readyz`)
//! on their own listener, so exposing the REST shim never exposes metrics; and
//! the REST shim for FreeRADIUS `rlm_rest` ([`shim`]). Both run the accept loop
//! of [`listener`], with its timeouts and caps on connections and requests.

pub mod api;
pub mod listener;
pub mod ops;
pub mod shim;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::metrics::Metrics;

/// Whether `path` belongs to the management API rather than the shim.
pub fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/v1/") && !path.starts_with("/api/v1/radius/")
}

/// The app of the REST listener: the shim's routes when its secret is set,
/// the management API's when given, and a 404 for everything else (a
/// problem document under `/api/v1/`).
pub fn app(shim: Option<shim::ShimState>, api: Option<api::ApiState>, metrics: &Metrics) -> Router {
    let with_shim = shim.is_some();
    let mut app = Router::new();
    if let Some(api) = api {
        app = app.merge(api::router(api));
    }
    if let Some(shim) = shim {
        app = app.merge(shim::routes(shim));
    }
    let counted = metrics.clone();
    let app = app.fallback(move |req: Request| not_found(counted.clone(), req));
    if with_shim {
        app.layer(axum::middleware::from_fn_with_state(
            metrics.clone(),
            shim::count_requests,
        ))
    } else {
        app
    }
}

async fn not_found(metrics: Metrics, req: Request) -> Response {
    if is_api_path(req.uri().path()) {
        api::not_found(State(metrics), req).await
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// Serve the REST listener: the shim (when `shim` is given) and the
/// management API on one accept loop with the limits of `http::listener`.
/// Logs "REST shim listening" (with the shim) or "management API listening"
/// with the bound address.
pub async fn spawn_rest(
    listener: tokio::net::TcpListener,
    shim: Option<shim::ShimState>,
    api: api::ApiState,
    limits: listener::HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let addr = listener.local_addr()?;
    if shim.is_some() {
        tracing::info!(%addr, "REST shim listening on {} and {}; management API on /api/v1/", shim::AUTH_PATH, shim::ACCT_PATH);
    } else {
        tracing::info!(%addr, "management API listening on /api/v1/");
    }
    let metrics = api.metrics.clone();
    let app = app(shim, Some(api), &metrics);
    Ok(tokio::spawn(async move {
        listener::serve(listener, app, limits, &metrics, "rest", shutdown).await;
    }))
}
