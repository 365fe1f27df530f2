//! `/api/v1/plans`: what `plan add|set|list` do, by the same functions.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::body::{Fields, Params};
use super::{scope, visible, ApiState, Caller, Problem};
use crate::cli::{PlanAddArgs, PlanSetArgs};
use crate::manage::plans::{changed_plan, new_plan, plan_json};
use crate::model::Plan;

/// The body fields of a plan: `plan add`'s flags in snake_case.
const FIELDS: &[&str] = &[
    "name",
    "time",
    "validity",
    "expires",
    "data",
    "rate_limit",
    "after_data_rate_limit",
    "shared_users",
    "mac_lock",
    "idle_timeout",
    "interim",
    "group",
    "address_list",
    "price",
    "sites",
];

fn shown(p: &Plan) -> Value {
    plan_json(p)
}

async fn find(s: &ApiState, caller: &Caller, params: &Params, name: &str) -> Result<Plan, Problem> {
    let scope = scope(s, caller, params).await?;
    let plan = s.store.get_plan(name).await?;
    let tenant = plan.tenant_id;
    visible(&scope, tenant, plan, format!("plan {name}"))
}

pub async fn list(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> Result<Json<Value>, Problem> {
    params.only(&["tenant"])?;
    let scope = scope(&s, &caller, &params).await?;
    let plans: Vec<Value> = s
        .store
        .list_plans()
        .await?
        .iter()
        .filter(|p| scope.shows(p.tenant_id))
        .map(shown)
        .collect();
    Ok(Json(json!({ "items": plans })))
}

pub async fn show(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    Path(name): Path<String>,
) -> Result<Json<Value>, Problem> {
    params.only(&["tenant"])?;
    Ok(Json(shown(&find(&s, &caller, &params, &name).await?)))
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
    let shared_users = body.uint("shared_users", u64::from(u32::MAX))?;
    let args = PlanAddArgs {
        name: body.required("name")?,
        time: body.text("time")?,
        validity: body.text("validity")?,
        expires: body.text("expires")?,
        data: body.text("data")?,
        rate_limit: body.text("rate_limit")?,
        after_data_rate_limit: body.text("after_data_rate_limit")?,
        shared_users: shared_users.map_or(1, |n| n as u32),
        mac_lock: body.bool("mac_lock")?.unwrap_or(false),
        idle_timeout: body.text("idle_timeout")?,
        interim: body.text("interim")?,
        group: body.text("group")?,
        address_list: body.text("address_list")?,
        price: body.text("price")?,
        sites: body.list("sites")?.unwrap_or_default(),
    };
    let plan = s.store.add_plan(&new_plan(&args, scope.id)?).await?;
    Ok((StatusCode::CREATED, Json(shown(&plan))).into_response())
}

/// `none` is how `plan set` clears a setting; JSON says null.
fn cleared(v: Option<Option<String>>) -> Option<String> {
    v.map(|v| v.unwrap_or_else(|| "none".into()))
}

pub async fn change(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    Path(name): Path<String>,
    body: Fields,
) -> Result<Json<Value>, Problem> {
    params.only(&["tenant"])?;
    body.only(FIELDS)?;
    let plan = find(&s, &caller, &params, &name).await?;
    let mac_lock = body.bool("mac_lock")?;
    let sites = body.list("sites")?.map(|l| {
        if l.is_empty() {
            "none".into()
        } else {
            l.join(",")
        }
    });
    let args = PlanSetArgs {
        name: name.clone(),
        rename: body.text("name")?,
        time: cleared(body.change("time")?),
        validity: cleared(body.change("validity")?),
        expires: cleared(body.change("expires")?),
        data: cleared(body.change("data")?),
        rate_limit: cleared(body.change("rate_limit")?),
        after_data_rate_limit: cleared(body.change("after_data_rate_limit")?),
        shared_users: body
            .uint("shared_users", u64::from(u32::MAX))?
            .map(|n| n as u32),
        mac_lock: mac_lock == Some(true),
        no_mac_lock: mac_lock == Some(false),
        idle_timeout: cleared(body.change("idle_timeout")?),
        interim: cleared(body.change("interim")?),
        group: cleared(body.change("group")?),
        address_list: cleared(body.change("address_list")?),
        price: cleared(body.change("price")?),
        sites,
    };
    let plan = changed_plan(plan, &args)?;
    let queued = s.store.update_plan(&plan).await?;
    let mut shown = shown(&plan);
    shown["coa_queued"] = json!(queued);
    Ok(Json(shown))
}

pub async fn remove(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    params.only(&["tenant"])?;
    find(&s, &caller, &params, &name).await?;
    s.store.remove_plan(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
