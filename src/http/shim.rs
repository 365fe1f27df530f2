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
//! exactly as the UDP server looks up a datagram's source, in the same NAS table
//! (which the UDP server keeps current).
//!
//! Requests then go to the same [`RequestHandler`] as the UDP server's: an
//! authorization waits in a decider's queue and is decided in a batch with
//! whatever else is waiting (UDP requests included), an accounting record is
//! group-committed by a writer and acknowledged once stored; both are counted
//! in the same metrics as UDP requests. A full queue answers 503 at once.
//!
//! Files: `body.rs` parses rlm_rest bodies, `facts.rs` turns them into the
//! facts/records the UDP path also produces, `reply.rs` writes responses.
//! The voucher rules are only in `policy`, reached through the handler.

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
use tokio::task::JoinHandle;

pub use body::{InvalidBody, RestAttributes};

use super::listener::HttpLimits;
use crate::config::MIN_REST_SECRET_LEN;
use crate::handler::{unix_now, Origin, Refused, RequestHandler};
use crate::metrics::Metrics;
use crate::policy::AccessDecision;
use crate::server::{NasDirectory, NasTable};

pub const AUTH_PATH: &str = "/api/v1/radius/auth";
pub const ACCT_PATH: &str = "/api/v1/radius/acct";

/// Routes, methods and every status each can answer (408 and the second cause
/// of 503 come from [`super::listener`]); `docs/openapi.yaml` is tested against
/// this list and against the running shim.
pub const ROUTES: &[(&str, &str, &[u16])] = &[
    (AUTH_PATH, "post", &[200, 400, 401, 408, 413, 415, 500, 503]),
    (
        ACCT_PATH,
        "post",
        &[204, 400, 401, 403, 408, 413, 415, 500, 503],
    ),
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
    /// The deciders and writers the UDP server uses too. Their queues are the
    /// bound on work in flight: when full the shim answers 503 at once rather
    /// than waiting behind storage (FreeRADIUS times out after 3 s anyway).
    pub handler: RequestHandler,
    pub metrics: Metrics,
    pub secret: RestSecret,
    /// Swapped whole on reload; readers clone the Arc and drop the lock at once
    /// (std RwLock: never held across an await).
    pub nas: NasDirectory,
}

impl ShimState {
    fn nas_table(&self) -> Arc<NasTable> {
        self.nas.read().expect("NAS table lock poisoned").clone()
    }
}

/// The shim's routes, with request counting by route and status around them.
pub fn router(state: ShimState) -> Router {
    let metrics = state.metrics.clone();
    routes(state).layer(middleware::from_fn_with_state(metrics, count_requests))
}

/// The shim's routes alone, to share a listener with the management API
/// (`super::app` puts [`count_requests`] around both).
pub fn routes(state: ShimState) -> Router {
    Router::new()
        .route(AUTH_PATH, post(auth))
        .route(ACCT_PATH, post(acct))
        .with_state(state)
}

/// Count every answer in `rrnet_radius_http_requests_total`. Unknown paths share
/// one label so that scanners cannot grow the label set. The management API's
/// paths are counted by the API (`rrnet_radius_api_requests_total`) instead.
pub async fn count_requests(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let route = match req.uri().path() {
        AUTH_PATH => "auth",
        ACCT_PATH => "acct",
        p if super::is_api_path(p) => return next.run(req).await,
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
    /// The NAS the request came from, `None` when the address matches none.
    origin: Option<Origin>,
    client: std::net::IpAddr,
}

/// Bearer → media type → size → syntax → NAS, cheapest first; the bearer is
/// checked before the body is even read. Capacity is the handler's: its queues.
async fn check(s: &ShimState, req: Request) -> Result<Checked, Response> {
    let received = Instant::now();
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
    // The same rule as on UDP: NAS entries sharing an address are told apart
    // by the request's NAS-Identifier.
    let origin = s
        .nas_table()
        .lookup(client, attrs.bytes("NAS-Identifier"))
        .map(|e| {
            e.counters.last_seen.set(unix_now());
            Origin {
                nas: e.nas.clone(),
                transport: crate::handler::Transport::Rest,
                counters: e.counters.clone(),
                received,
            }
        });
    Ok(Checked {
        attrs,
        origin,
        client,
    })
}

async fn auth(State(s): State<ShimState>, req: Request<Body>) -> Response {
    let c = match check(&s, req).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(origin) = c.origin else {
        tracing::warn!(client = %c.client, "REST auth from an address that matches no NAS");
        return (
            StatusCode::UNAUTHORIZED,
            Json(reply::reject(
                "This hotspot is not registered with the voucher server",
            )),
        )
            .into_response();
    };
    let facts = match facts::access_facts(&c.attrs, &origin.nas) {
        Ok(f) => f,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e),
    };
    // The handler counts and logs the outcome, as for a UDP request.
    match s.handler.decide(facts, origin).await {
        Ok(AccessDecision::Accept(grant)) => {
            (StatusCode::OK, Json(reply::accept(&grant.reply))).into_response()
        }
        Ok(AccessDecision::Reject(reason)) => {
            (StatusCode::UNAUTHORIZED, Json(reply::reject_reason(reason))).into_response()
        }
        Err(refused) => refusal(refused),
    }
}

async fn acct(State(s): State<ShimState>, req: Request<Body>) -> Response {
    let c = match check(&s, req).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(origin) = c.origin else {
        tracing::warn!(client = %c.client, "REST acct from an address that matches no NAS");
        return plain(
            StatusCode::FORBIDDEN,
            format!("{} matches no NAS", c.client),
        );
    };
    let record = match facts::acct_record(&c.attrs, &origin.nas, unix_now()) {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e),
    };
    // Group-committed with whatever else is waiting; idempotent per
    // (NAS, Acct-Session-Id) like UDP's, so a retry after a 5xx is safe.
    match s.handler.store_accounting(record, origin).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refused) => refusal(refused),
    }
}

/// A request the handler did not work on: 503 (try again) or 500 (storage),
/// with no detail a peer could learn internals from.
fn refusal(refused: Refused) -> Response {
    let status = match refused {
        Refused::Overloaded | Refused::Stopping => StatusCode::SERVICE_UNAVAILABLE,
        Refused::StorageError => StatusCode::INTERNAL_SERVER_ERROR,
    };
    plain(status, refused)
}

/// Serve the shim on `listener` with `limits` until `shutdown` resolves, then
/// finish the requests in flight. Logs "REST shim listening" with the bound address.
/// `nas` is the process's NAS table, shared with the UDP server, which keeps it
/// current: the shim identifies routers exactly as the server does. `handler`
/// is the UDP server's too.
pub async fn spawn(
    listener: TcpListener,
    handler: RequestHandler,
    secret: RestSecret,
    nas: NasDirectory,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<JoinHandle<()>> {
    let addr: SocketAddr = listener.local_addr()?;
    let state = ShimState {
        metrics: handler.metrics().clone(),
        handler,
        secret,
        nas,
    };
    tracing::info!(%addr, "REST shim listening on {AUTH_PATH} and {ACCT_PATH}");
    let metrics = state.metrics.clone();
    let app = super::app(Some(state), None, &metrics);
    Ok(tokio::spawn(async move {
        super::listener::serve(listener, app, limits, &metrics, "rest", shutdown).await;
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::test_store::{nas, GatedStore};
    use crate::handler::HandlerConfig;
    use crate::server::NasTable;
    use std::sync::RwLock;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SECRET: &str = "rest-secret-0123456789abcdef";

    /// The shim on an ephemeral port, over a store held at its gate, with one
    /// decider whose queue holds `queue` requests.
    async fn shim(queue: usize) -> (SocketAddr, Arc<GatedStore>, Metrics) {
        let store = Arc::new(GatedStore::closed());
        let metrics = Metrics::new();
        let config = HandlerConfig {
            max_in_flight: queue,
            auth_workers: 1,
            auth_batch_max: 64,
            authorize: Default::default(),
            acct_queue: 16,
            acct_batch_max: 64,
            acct_writers: 1,
            guard: Default::default(),
            nas_in_flight: 0,
            default_interim: 300,
        };
        let (handler, _workers) = RequestHandler::start(store.clone(), metrics.clone(), config);
        let table = NasTable::new(vec![nas("radius-secret")], 1).count_with(&metrics);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        spawn(
            listener,
            handler,
            RestSecret::new(SECRET).unwrap(),
            Arc::new(RwLock::new(Arc::new(table))),
            HttpLimits::rest(),
            std::future::pending(),
        )
        .await
        .unwrap();
        (addr, store, metrics)
    }

    /// POST an authorization for `user` from the NAS at 127.0.0.1; the status and body.
    async fn post_auth(addr: SocketAddr, user: String) -> (u16, String) {
        let body = format!(
            r#"{{"FreeRADIUS-Client-IP-Address":"127.0.0.1","User-Name":"{user}","User-Password":"pw"}}"#
        );
        let request = format!(
            "POST {AUTH_PATH} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {SECRET}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
        (status, body)
    }

    fn metric(metrics: &Metrics, sample: &str) -> f64 {
        metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no sample {sample}"))
    }

    #[tokio::test]
    async fn waiting_requests_are_decided_in_one_batch_and_counted_per_nas() {
        let (addr, store, metrics) = shim(64).await;
        let first = tokio::spawn(post_auth(addr, "V1".into()));
        store.auth_calls(1).await;
        let rest: Vec<_> = (2..=4)
            .map(|i| tokio::spawn(post_auth(addr, format!("V{i}"))))
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        store.open();
        for task in std::iter::once(first).chain(rest) {
            let (status, body) = task.await.unwrap();
            assert_eq!(status, 401, "{body}");
            assert!(body.contains("reply:Reply-Message"), "{body}");
        }
        assert_eq!(*store.auth_batches.lock().unwrap(), [1, 3]);
        assert_eq!(
            metric(
                &metrics,
                r#"rrnet_radius_requests_total{nas="hotspot1",result="reject",type="access_request"}"#
            ),
            4.0
        );
        assert_eq!(
            metric(
                &metrics,
                r#"rrnet_radius_request_duration_seconds_count{type="access_request"}"#
            ),
            4.0
        );
        assert!(
            metric(
                &metrics,
                r#"rrnet_radius_nas_last_seen_timestamp_seconds{nas="hotspot1"}"#
            ) > 0.0
        );
    }

    #[tokio::test]
    async fn a_full_queue_answers_503_at_once_and_counts_an_overload() {
        let (addr, store, metrics) = shim(1).await;
        let busy = tokio::spawn(post_auth(addr, "V1".into()));
        store.auth_calls(1).await;
        let queued = tokio::spawn(post_auth(addr, "V2".into()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, body) =
            tokio::time::timeout(Duration::from_secs(2), post_auth(addr, "V3".into()))
                .await
                .expect("answered at once");
        assert_eq!(
            (status, body.as_str()),
            (503, "too many requests in flight\n")
        );
        assert_eq!(
            metric(
                &metrics,
                r#"rrnet_radius_drops_total{nas="hotspot1",reason="overload"}"#
            ),
            1.0
        );
        assert_eq!(
            metric(
                &metrics,
                r#"rrnet_radius_http_requests_total{route="auth",status="503"}"#
            ),
            1.0
        );
        store.open();
        assert_eq!(busy.await.unwrap().0, 401);
        assert_eq!(queued.await.unwrap().0, 401);
    }

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
