//! The management API for the ERP (`/api/v1/…` beside the REST shim's
//! `/api/v1/radius/…`, on the same listener): plans, vouchers and their
//! batches, NAS entries, sessions, the auth log, events and webhooks, as JSON.
//!
//! - Every route is mounted in [`router`], behind [`auth::authenticate`]: a
//!   bearer token from `rrnet-radius token add` (401 otherwise, without
//!   touching storage); a read-only token may only GET (403). Handlers get
//!   the token's [`Caller`] (tenant, read-only) as a request extension.
//! - A tenant's token sees and changes only that tenant; an operator-wide
//!   token works in `?tenant=NAME`, else in `default` (listings: every tenant).
//! - A POST with an `Idempotency-Key` header is done once: a retry gets the
//!   first 2xx answer again (`idempotency.rs`).
//! - Errors are RFC 9457 problem details ([`problem`]).
//! - Bodies: at most [`MAX_BODY`] bytes; fields named like the CLI's flags
//!   in snake_case, with the same value syntax. The listener's limits
//!   (`http::listener`) apply as to the shim.
//!
//! What is done to plans, vouchers and NAS entries is `crate::manage`, which
//! the CLI calls too. `docs/openapi.yaml` documents [`ROUTES`]; tests check one
//! against the other and against the running server.

pub mod auth;
mod auth_log;
mod batches;
pub mod body;
mod events;
mod idempotency;
mod nas;
mod plans;
pub mod problem;
mod sessions;
mod vouchers;
mod webhooks;

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;

pub use auth::{Caller, TokenCache};
pub use problem::Problem;

use crate::manage::Scope;
use crate::metrics::Metrics;
use crate::model::DEFAULT_TENANT;
use crate::store::Store;
use body::Params;

/// Largest request body read. A plan, NAS or batch request is well under 1 KiB.
pub const MAX_BODY: usize = 16 * 1024;

/// Statuses of every route besides its own: no token (401), the listener's
/// timeout and overload (408, 503), storage failure (500), a bad query
/// parameter (400), an unknown or other tenant in `?tenant=` (404, 403).
const READ: &[u16] = &[200, 400, 401, 403, 404, 408, 500, 503];
/// A write with a body: also duplicates (409), size and type (413, 415),
/// rule violations and a reused Idempotency-Key (422).
const CREATE: &[u16] = &[201, 400, 401, 403, 404, 408, 409, 413, 415, 422, 500, 503];
const CHANGE: &[u16] = &[200, 400, 401, 403, 404, 408, 409, 413, 415, 422, 500, 503];
const DELETE: &[u16] = &[204, 400, 401, 403, 404, 408, 409, 500, 503];

/// Every route (OpenAPI path template), method and status it can answer;
/// `docs/openapi.yaml` is tested against this list and the running server.
pub const ROUTES: &[(&str, &str, &[u16])] = &[
    ("/api/v1/plans", "get", READ),
    ("/api/v1/plans", "post", CREATE),
    ("/api/v1/plans/{name}", "get", READ),
    ("/api/v1/plans/{name}", "patch", CHANGE),
    ("/api/v1/plans/{name}", "delete", DELETE),
    ("/api/v1/vouchers", "get", READ),
    ("/api/v1/vouchers", "post", CREATE),
    ("/api/v1/vouchers/{code}", "get", READ),
    ("/api/v1/vouchers/{code}/revoke", "post", CHANGE),
    ("/api/v1/voucher-batches", "post", CREATE),
    ("/api/v1/voucher-batches/{batch}", "get", READ),
    ("/api/v1/nas", "get", READ),
    ("/api/v1/nas", "post", CREATE),
    ("/api/v1/nas/{name}", "get", READ),
    (
        "/api/v1/nas/{name}",
        "patch",
        &[200, 400, 401, 403, 404, 408, 413, 415, 422, 500, 503],
    ),
    (
        "/api/v1/nas/{name}",
        "delete",
        &[204, 400, 401, 403, 404, 408, 500, 503],
    ),
    ("/api/v1/sessions", "get", READ),
    ("/api/v1/sessions/{id}", "get", READ),
    (
        "/api/v1/sessions/{id}/disconnect",
        "post",
        &[202, 400, 401, 403, 404, 408, 409, 413, 415, 422, 500, 503],
    ),
    ("/api/v1/auth-log", "get", READ),
    ("/api/v1/events", "get", READ),
    ("/api/v1/webhooks", "get", READ),
    ("/api/v1/webhooks", "post", CREATE),
    (
        "/api/v1/webhooks/{id}",
        "delete",
        &[204, 400, 401, 403, 404, 408, 500, 503],
    ),
];

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub tokens: TokenCache,
    pub metrics: Metrics,
}

/// `/api/v1/plans/{name}` as axum spells it (`/api/v1/plans/:name`).
pub fn axum_path(template: &str) -> String {
    template.replace('{', ":").replace('}', "")
}

/// The API's routes behind the bearer check, with request counting by route
/// template. New resources are added here, and in [`ROUTES`].
pub fn router(state: ApiState) -> Router {
    let p = |t: &str| axum_path(t);
    Router::new()
        .route(&p("/api/v1/plans"), get(plans::list).post(plans::create))
        .route(
            &p("/api/v1/plans/{name}"),
            get(plans::show).patch(plans::change).delete(plans::remove),
        )
        .route(
            &p("/api/v1/vouchers"),
            get(vouchers::list).post(vouchers::create),
        )
        .route(&p("/api/v1/vouchers/{code}"), get(vouchers::show))
        .route(&p("/api/v1/vouchers/{code}/revoke"), post(vouchers::revoke))
        .route(&p("/api/v1/voucher-batches"), post(batches::create))
        .route(&p("/api/v1/voucher-batches/{batch}"), get(batches::show))
        .route(&p("/api/v1/nas"), get(nas::list).post(nas::create))
        .route(
            &p("/api/v1/nas/{name}"),
            get(nas::show).patch(nas::change).delete(nas::remove),
        )
        .route(&p("/api/v1/sessions"), get(sessions::list))
        .route(&p("/api/v1/sessions/{id}"), get(sessions::show))
        .route(
            &p("/api/v1/sessions/{id}/disconnect"),
            post(sessions::disconnect),
        )
        .route(&p("/api/v1/auth-log"), get(auth_log::list))
        .route(&p("/api/v1/events"), get(events::list))
        .route(
            &p("/api/v1/webhooks"),
            get(webhooks::list).post(webhooks::create),
        )
        .route(&p("/api/v1/webhooks/{id}"), delete(webhooks::remove))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::once,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// An answer to a path under `/api/v1/` that is no route: counted as route
/// `other`, so that scanners cannot grow the label set.
pub async fn not_found(State(metrics): State<Metrics>, req: Request) -> Response {
    count(&metrics, "other", req.method().as_str(), 404);
    Problem::not_found(format!("route {}", req.uri().path())).into_response()
}

fn count(metrics: &Metrics, route: &str, method: &str, status: u16) {
    let method = match method {
        "GET" | "HEAD" | "POST" | "PATCH" | "DELETE" | "PUT" | "OPTIONS" => method,
        _ => "other",
    };
    metrics
        .api_requests
        .with_label_values(&[route, method, &status.to_string()])
        .inc();
}

/// Count every answer of a route by its template (never the raw path).
async fn count_requests(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let route = matched
        .and_then(|m| ROUTES.iter().find(|r| axum_path(r.0) == m).map(|r| r.0))
        .unwrap_or("other");
    let method = req.method().as_str().to_owned();
    let response = next.run(req).await;
    count(&metrics, route, &method, response.status().as_u16());
    response
}

/// The tenant a request works in: the token's, or for an operator-wide
/// token `?tenant=NAME`, else `default` (listings then show every tenant).
pub async fn scope(s: &ApiState, caller: &Caller, params: &Params) -> Result<Scope, Problem> {
    let named = match params.get("tenant") {
        Some(name) => Some(s.store.get_tenant(name).await?.id),
        None => None,
    };
    match (caller.tenant_id, named) {
        (Some(own), Some(named)) if own != named => Err(Problem::new(
            "other-tenant",
            "this token works only in its own tenant",
        )),
        (Some(own), _) => Ok(Scope {
            id: own,
            given: true,
        }),
        (None, Some(id)) => Ok(Scope { id, given: true }),
        (None, None) => Ok(Scope {
            id: DEFAULT_TENANT,
            given: false,
        }),
    }
}

/// 404 for something of a tenant the scope does not show: another tenant's
/// plan or NAS is as good as absent.
pub fn visible<T>(scope: &Scope, tenant_id: i64, item: T, what: String) -> Result<T, Problem> {
    if scope.shows(tenant_id) {
        Ok(item)
    } else {
        Err(Problem::not_found(what))
    }
}

/// `Some(items)`, and the cursor of the next page when there is one.
pub fn page(items: Vec<serde_json::Value>, next: Option<i64>) -> serde_json::Value {
    serde_json::json!({
        "items": items,
        "next": next.map(|n| n.to_string()),
    })
}
