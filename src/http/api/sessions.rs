//! `/api/v1/sessions`: `session list` with filters, one session, and a
//! disconnect queued for the running server's CoA worker (as a revoke does).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::body::{Fields, Params};
use super::vouchers::MAX_PAGE;
use super::{page, scope, visible, ApiState, Caller, Problem};
use crate::model::{Session, SessionState};
use crate::store::SessionQuery;

fn id(raw: &str) -> Result<i64, Problem> {
    raw.parse()
        .map_err(|_| Problem::field("id", "a session id is a whole number"))
}

async fn nas_tenants(s: &ApiState) -> Result<HashMap<i64, i64>, Problem> {
    Ok(s.store
        .list_nas()
        .await?
        .into_iter()
        .map(|n| (n.id, n.tenant_id))
        .collect())
}

pub async fn list(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> Result<Json<Value>, Problem> {
    params.only(&["tenant", "state", "voucher", "nas", "limit", "after"])?;
    let scope = scope(&s, &caller, &params).await?;
    let limit = params.limit(100, MAX_PAGE)?;
    let after = params.cursor()?;
    let state = match params.get("state") {
        None => None,
        Some("open") => Some(SessionState::Open),
        Some("closed") => Some(SessionState::Closed),
        Some("authorized") => Some(SessionState::Authorized),
        Some(_) => {
            return Err(Problem::field(
                "state",
                "expected open, closed or authorized",
            ))
        }
    };
    let voucher = match params.get("voucher") {
        Some(code) => Some(s.store.get_voucher(scope.id, code).await?.id),
        None => None,
    };
    // Newest first, as `session list`; the cursor is the last id of a page.
    let mut items = s
        .store
        .session_page(&SessionQuery {
            tenant_id: scope.given.then_some(scope.id),
            state,
            voucher_id: voucher,
            nas_name: params.get("nas").map(str::to_owned),
            before: after,
            limit: limit as u32 + 1,
        })
        .await?;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|x| x.id)
    } else {
        None
    };
    Ok(Json(page(items.iter().map(|x| json!(x)).collect(), next)))
}

async fn find(
    s: &ApiState,
    caller: &Caller,
    params: &Params,
    raw: &str,
) -> Result<Session, Problem> {
    let scope = scope(s, caller, params).await?;
    let session = s.store.get_session(id(raw)?).await?;
    let tenant = nas_tenants(s)
        .await?
        .get(&session.nas_id)
        .copied()
        .ok_or_else(|| Problem::not_found(format!("session {raw}")))?;
    visible(&scope, tenant, session, format!("session {raw}"))
}

pub async fn show(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    Path(raw): Path<String>,
) -> Result<Json<Value>, Problem> {
    params.only(&["tenant"])?;
    Ok(Json(json!(find(&s, &caller, &params, &raw).await?)))
}

pub async fn disconnect(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    Path(raw): Path<String>,
    body: Fields,
) -> Result<Response, Problem> {
    params.only(&["tenant"])?;
    body.only(&[])?;
    let session = find(&s, &caller, &params, &raw).await?;
    let queued = s.store.queue_session_disconnect(session.id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "session": session.id, "queued": queued })),
    )
        .into_response())
}
