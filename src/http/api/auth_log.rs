//! `/api/v1/auth-log`: `auth-log` with the same filters (`user`, `nas`,
//! `since`, `limit`) and the same fields, oldest first.

use std::collections::HashMap;

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::body::Params;
use super::{scope, ApiState, Caller, Problem};
use crate::cli::auth_log::{event_json, parse_since, MAX_LIMIT};
use crate::store::AuthEventFilter;

pub async fn list(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> Result<Json<Value>, Problem> {
    params.only(&["tenant", "user", "nas", "since", "limit"])?;
    let scope = scope(&s, &caller, &params).await?;
    let limit = params.limit(100, MAX_LIMIT as usize)? as u32;
    let since = params
        .get("since")
        .map(|v| parse_since(v, crate::server::unix_now()))
        .transpose()
        .map_err(|e| Problem::field("since", e.to_string()))?;
    let tenants: HashMap<i64, i64> = s
        .store
        .list_nas()
        .await?
        .into_iter()
        .map(|n| (n.id, n.tenant_id))
        .collect();
    let mut events = s
        .store
        .auth_events(&AuthEventFilter {
            username: params.get("user").map(str::to_owned),
            nas_name: params.get("nas").map(str::to_owned),
            since,
            limit: Some(limit),
        })
        .await?;
    // Storage returns the newest first; a log reads oldest first.
    events.reverse();
    let items: Vec<Value> = events
        .iter()
        .filter(|e| tenants.get(&e.nas_id).is_some_and(|t| scope.shows(*t)))
        .map(event_json)
        .collect();
    Ok(Json(json!({ "items": items })))
}
