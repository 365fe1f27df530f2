//! `/api/v1/webhooks`: what `webhook add|list|remove` do, by the same
//! functions (`crate::events::add_webhook`, `Store::list_webhooks`,
//! `Store::remove_webhook`). The signing secret is in the 201 answer of the
//! POST only; listings never show it.
//!
//! Tenant scoping: a tenant's token adds webhooks for its own tenant's events
//! and sees and removes only those. An operator-wide token adds a webhook for
//! every tenant's events, or with `?tenant=NAME` for one tenant's; its
//! listing shows every webhook, or with `?tenant=` that tenant's.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::body::{Fields, Params};
use super::{scope, ApiState, Caller, Problem};
use crate::cli::output::ts;
use crate::events::{self, EventType, Webhook};
use crate::manage::Scope;
use crate::store::StoreError;

/// The body fields of a new webhook: `webhook add`'s flags.
const FIELDS: &[&str] = &["url", "events"];

/// Most webhooks one tenant (or the operator, for every tenant) may add
/// through the API: each event is delivered to each of them, so a token must
/// not be able to multiply the server's outgoing work without bound.
pub const MAX_WEBHOOKS: usize = 20;

/// A webhook as the API shows it: never its secret.
fn shown(h: &Webhook) -> Value {
    json!({
        "id": h.id,
        "url": h.url,
        "tenant": h.tenant,
        "events": h.events,
        "created_at": ts(Some(h.created_at)),
    })
}

/// The webhooks `scope` shows: with a tenant named (or a tenant's token),
/// only that tenant's; a webhook for every tenant belongs to the operator.
async fn visible_webhooks(s: &ApiState, scope: &Scope) -> Result<Vec<Webhook>, Problem> {
    let hooks = s.store.list_webhooks().await?;
    if !scope.given {
        return Ok(hooks);
    }
    let name = s
        .store
        .list_tenants()
        .await?
        .into_iter()
        .find(|t| t.id == scope.id)
        .map(|t| t.name);
    Ok(hooks
        .into_iter()
        .filter(|h| name.is_some() && h.tenant == name)
        .collect())
}

pub async fn list(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> Result<Json<Value>, Problem> {
    params.only(&["tenant"])?;
    let scope = scope(&s, &caller, &params).await?;
    let items: Vec<Value> = visible_webhooks(&s, &scope)
        .await?
        .iter()
        .map(shown)
        .collect();
    Ok(Json(json!({ "items": items })))
}

pub async fn create(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    body: Fields,
) -> Result<Response, Problem> {
    params.only(&["tenant"])?;
    body.only(FIELDS)?;
    let scope = scope(&s, &caller, &params).await?;
    let url = body.required("url")?;
    // Checked here as well as in add_webhook, so that a refusal names its field.
    events::check_url(&url).map_err(|e| Problem::field("url", store_text(e)))?;
    let types = match body.list("events")? {
        None => None,
        Some(l) if l.is_empty() => {
            return Err(Problem::field(
                "events",
                "name at least one event type, or leave the field out for every type",
            ))
        }
        Some(l) => Some(l.join(",")),
    };
    if let Some(t) = &types {
        EventType::parse_list(t).map_err(|e| Problem::field("events", store_text(e)))?;
    }
    let owned = visible_webhooks(&s, &scope)
        .await?
        .iter()
        .filter(|h| scope.given || h.tenant.is_none())
        .count();
    if owned >= MAX_WEBHOOKS {
        return Err(Problem::new(
            "rule-violation",
            format!("at most {MAX_WEBHOOKS} webhooks; remove one first"),
        ));
    }
    let tenant_id = scope.given.then_some(scope.id);
    let (hook, secret) = events::add_webhook(&*s.store, &url, tenant_id, types.as_deref()).await?;
    let mut answer = shown(&hook);
    answer["secret"] = json!(secret);
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

pub async fn remove(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    params.only(&["tenant"])?;
    let id: i64 = id
        .parse()
        .map_err(|_| Problem::field("id", "expected a webhook id (a whole number)"))?;
    let scope = scope(&s, &caller, &params).await?;
    let hook = visible_webhooks(&s, &scope)
        .await?
        .into_iter()
        .find(|h| h.id == id)
        .ok_or_else(|| Problem::not_found(format!("webhook {id}")))?;
    // By id: `remove_webhook` also takes a URL, which could match others.
    s.store.remove_webhook(&hook.id.to_string()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The message of a refusal, without the kind.
fn store_text(e: StoreError) -> String {
    match e {
        StoreError::Invalid(why) => why,
        e => e.to_string(),
    }
}
