//! The REST shim for FreeRADIUS `rlm_rest` (DESIGN §7): sites that keep
//! FreeRADIUS near their routers point it here instead of at the ERP.
//!
//! - `POST /api/v1/radius/auth`: 200 + reply attributes and
//!   `control:Auth-Type = Accept`, or 401 + `reply:Reply-Message`.
//! - `POST /api/v1/radius/acct`: 204 once stored, 5xx when storage failed (then
//!   FreeRADIUS sends no Accounting-Response and the NAS retries).
//!
//! Every request must carry `Authorization: Bearer <RRNET_RADIUS_REST_SECRET>`;
//! it is checked before the body is read or storage is touched.
//!
//! The NAS a request belongs to is the router that sent the RADIUS packet to
//! FreeRADIUS: the shipped FreeRADIUS policy puts the packet's source address in
//! `FreeRADIUS-Client-IP-Address`, and the shim looks it up in the NAS table
//! exactly as the UDP server looks up a datagram's source. The table is cached
//! and reloaded when `nas_generation` changes, like the UDP server's, so a
//! request costs one storage transaction (the decision), not two.
//!
//! Files: `body.rs` parses rlm_rest bodies, `facts.rs` turns them into the
//! facts/records the UDP path also produces, `reply.rs` writes responses.
//! The voucher rules are only in `policy`, reached through `Store::authorize`.

mod body;
mod facts;
mod reply;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

pub use body::{InvalidBody, RestAttributes};

use crate::config::MIN_REST_SECRET_LEN;
use crate::metrics::Metrics;
use crate::model::Nas;
use crate::policy::AccessDecision;
use crate::server::{unix_now, NasDirectory, NasTable, ServerConfig};
use crate::store::{AuthorizeOptions, Store};

pub const AUTH_PATH: &str = "/api/v1/radius/auth";
pub const ACCT_PATH: &str = "/api/v1/radius/acct";

/// Routes, methods and every status each can answer; `docs/openapi.yaml` is
/// tested against this list and against the running shim.
pub const ROUTES: &[(&str, &str, &[u16])] = &[
    (AUTH_PATH, "post", &[200, 400, 401, 413, 415, 500, 503]),
    (ACCT_PATH, "post", &[204, 400, 401, 403, 413, 415, 500, 503]),
];

/// Largest request body read. A RADIUS packet is at most 4096 bytes (RFC 2865
/// §3); its rlm_rest JSON with names, types and hex is a few times that.
pub const MAX_BODY: usize = 64 * 1024;

/// The bearer secret shared with FreeRADIUS. `Debug` never prints it.
#[derive(Clone)]
pub struct RestSecret(Arc<[u8]>);

#[derive(Debug, thiserror::Error)]
#[error("RRNET_RADIUS_REST_SECRET is {0} bytes; the REST shim needs at least {MIN_REST_SECRET_LEN} (e.g. `openssl rand -hex 32`)")]
pub struct SecretTooShort(pub usize);

impl RestSecret {
    pub fn new(secret: &str) -> Result<Self, SecretTooShort> {
        if secret.len() < MIN_REST_SECRET_LEN {
            return Err(SecretTooShort(secret.len()));
        }
        Ok(RestSecret(secret.as_bytes().into()))
    }

    /// Does the `Authorization` header carry this secret as a bearer token?
    /// The comparison is constant-time in the token's bytes; only a length
    /// mismatch returns early, and the length of a 16+ byte random secret
    /// does not help a guesser.
    fn authorizes(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        // RFC 7235 §2.1: the scheme is case-insensitive.
        if value.len() < 7 || !value[..7].eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        bool::from(value[7..].ct_eq(&self.0))
    }
}

impl std::fmt::Debug for RestSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RestSecret(****)")
    }
}

/// State of the shim's handlers.
#[derive(Clone)]
pub struct ShimState {
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    pub secret: RestSecret,
    /// Swapped whole on reload; readers clone the Arc and drop the lock at once
    /// (std RwLock: never held across an await).
    pub nas: NasDirectory,
    pub authorize: AuthorizeOptions,
    /// Requests worked on at once; beyond this the shim answers 503 at once
    /// rather than queueing behind storage (FreeRADIUS times out after 3 s anyway).
    pub in_flight: Arc<Semaphore>,
}

impl ShimState {
    fn nas_table(&self) -> Arc<NasTable> {
        self.nas.read().expect("NAS table lock poisoned").clone()
    }
}

/// The shim's routes, with request counting by route and status around them.
pub fn router(state: ShimState) -> Router {
    let metrics = state.metrics.clone();
    Router::new()
        .route(AUTH_PATH, post(auth))
        .route(ACCT_PATH, post(acct))
        .with_state(state)
        .layer(middleware::from_fn_with_state(metrics, count_requests))
}

/// Count every answer in `rrnet_radius_http_requests_total`. Unknown paths share
/// one label so that scanners cannot grow the label set.
async fn count_requests(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let route = match req.uri().path() {
        AUTH_PATH => "auth",
        ACCT_PATH => "acct",
        _ => "other",
    };
    let response = next.run(req).await;
    metrics
        .http_requests
        .with_label_values(&[route, response.status().as_str()])
        .inc();
    response
}

/// A short text answer for errors that are not part of the rlm_rest exchange.
fn plain(status: StatusCode, reason: impl std::fmt::Display) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{reason}\n"),
    )
        .into_response()
}

fn unauthorized() -> Response {
    // No body: rlm_rest would otherwise try to read it as attributes.
    let mut r = StatusCode::UNAUTHORIZED.into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"rrnet-radius\""),
    );
    r
}

/// What the checks common to both routes produce.
struct Checked {
    attrs: RestAttributes,
    nas: Option<Arc<Nas>>,
    client: std::net::IpAddr,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Bearer → media type → size → syntax → NAS → capacity, cheapest first; the
/// bearer is checked before the body is even read.
async fn check(s: &ShimState, req: Request) -> Result<Checked, Response> {
    if !s.secret.authorizes(req.headers()) {
        return Err(unauthorized());
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = match content_type.as_str() {
        "application/json" => true,
        "application/x-www-form-urlencoded" => false,
        other => {
            return Err(plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("content type {other:?} is not application/json or application/x-www-form-urlencoded"),
            ))
        }
    };
    let raw = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| {
            plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {MAX_BODY} bytes"),
            )
        })?;
    let parsed = if json {
        RestAttributes::from_json(&raw)
    } else {
        RestAttributes::from_form(&raw)
    };
    let attrs = parsed.map_err(|e| plain(StatusCode::BAD_REQUEST, e))?;
    let client = facts::client_address(&attrs).map_err(|e| plain(StatusCode::BAD_REQUEST, e))?;
    let nas = s.nas_table().lookup(client).map(|e| e.nas.clone());
    let permit = s.in_flight.clone().try_acquire_owned().map_err(|_| {
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight",
        )
    })?;
    Ok(Checked {
        attrs,
        nas,
        client,
        _permit: permit,
    })
}

async fn auth(State(s): State<ShimState>, req: Request<Body>) -> Response {
    let c = match check(&s, req).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(nas) = c.nas else {
        tracing::warn!(client = %c.client, "REST auth from an address that matches no NAS");
        return (
            StatusCode::UNAUTHORIZED,
            Json(reply::reject(
                "This hotspot is not registered with the voucher server",
            )),
        )
            .into_response();
    };
    let facts = match facts::access_facts(&c.attrs, &nas) {
        Ok(f) => f,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e),
    };
    let t = Instant::now();
    let result = s.store.authorize(&facts, unix_now(), s.authorize).await;
    s.metrics
        .storage_duration
        .with_label_values(&["authorize"])
        .observe(t.elapsed().as_secs_f64());
    match result {
        Ok(AccessDecision::Accept(grant)) => {
            if grant.activation.is_some() {
                s.metrics.vouchers_activated.inc();
            }
            tracing::debug!(nas = %nas.name, user = %facts.username, mac = facts.mac.as_deref(), "REST accept");
            (StatusCode::OK, Json(reply::accept(&grant.reply))).into_response()
        }
        Ok(AccessDecision::Reject(reason)) => {
            s.metrics
                .rejects
                .with_label_values(&[&nas.name, reason.label()])
                .inc();
            tracing::info!(nas = %nas.name, user = %facts.username, mac = facts.mac.as_deref(), reason = reason.label(), "REST reject");
            (StatusCode::UNAUTHORIZED, Json(reply::reject_reason(reason))).into_response()
        }
        Err(e) => {
            tracing::warn!(nas = %nas.name, error = %e, "REST auth: storage failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "storage error")
        }
    }
}

async fn acct(State(s): State<ShimState>, req: Request<Body>) -> Response {
    let c = match check(&s, req).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(nas) = c.nas else {
        tracing::warn!(client = %c.client, "REST acct from an address that matches no NAS");
        return plain(
            StatusCode::FORBIDDEN,
            format!("{} matches no NAS", c.client),
        );
    };
    let record = match facts::acct_record(&c.attrs, nas.id, unix_now()) {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e),
    };
    let t = Instant::now();
    // One record per transaction: each HTTP request waits for its own commit,
    // and the storage call is idempotent per (NAS, Acct-Session-Id) like UDP's.
    let result = s
        .store
        .record_accounting(std::slice::from_ref(&record))
        .await;
    s.metrics
        .storage_duration
        .with_label_values(&["record_accounting"])
        .observe(t.elapsed().as_secs_f64());
    match result {
        Ok(()) => {
            tracing::debug!(nas = %nas.name, status = record.status.label(), session = %record.acct_session_id, "REST accounting stored");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            tracing::warn!(nas = %nas.name, error = %e, "REST acct: storage failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "storage error")
        }
    }
}

/// Serve the shim on `listener` until `shutdown` resolves, then finish the
/// requests in flight. Logs "REST shim listening" with the bound address.
/// `nas` is the process's NAS table, shared with the UDP server, which keeps it
/// current: the shim identifies routers exactly as the server does.
pub async fn spawn(
    listener: TcpListener,
    store: Arc<dyn Store>,
    metrics: Metrics,
    secret: RestSecret,
    nas: NasDirectory,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<JoinHandle<()>> {
    let addr: SocketAddr = listener.local_addr()?;
    let state = ShimState {
        store,
        metrics,
        secret,
        nas,
        authorize: config.authorize,
        in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
    };
    tracing::info!(%addr, "REST shim listening on {AUTH_PATH} and {ACCT_PATH}");
    let app = router(state);
    Ok(tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown);
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "REST shim stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_length_and_bearer() {
        assert!(RestSecret::new("short").is_err());
        let s = RestSecret::new("0123456789abcdef").unwrap();
        assert_eq!(format!("{s:?}"), "RestSecret(****)");
        let mut h = HeaderMap::new();
        assert!(!s.authorizes(&h));
        for (value, ok) in [
            ("Bearer 0123456789abcdef", true),
            ("bearer 0123456789abcdef", true),
            ("Bearer 0123456789abcdeg", false),
            ("Bearer 0123456789abcde", false),
            ("Bearer 0123456789abcdef0", false),
            ("Basic 0123456789abcdef", false),
            ("Bearer", false),
            ("0123456789abcdef", false),
        ] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            assert_eq!(s.authorizes(&h), ok, "{value}");
        }
    }
}
