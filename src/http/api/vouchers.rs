//! `/api/v1/vouchers`: what `voucher add|show|list|revoke` do, by the same
//! functions; a voucher shows the same usage and what is left as
//! `voucher show --format json`.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::body::{Fields, Params};
use super::{page, scope, visible, ApiState, Caller, Problem};
use crate::manage::vouchers::{check_code, voucher_json};
use crate::model::{NewVoucher, Plan, VoucherState};
use crate::store::VoucherQuery;

/// Most vouchers on one page.
pub const MAX_PAGE: usize = 1000;

pub async fn list(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> Result<Json<Value>, Problem> {
    params.only(&["tenant", "plan", "batch", "state", "used", "limit", "after"])?;
    let scope = scope(&s, &caller, &params).await?;
    let limit = params.limit(100, MAX_PAGE)?;
    let after = params.cursor()?;
    let state = match params.get("state") {
        None => None,
        Some(v) => Some(
            VoucherState::parse(v)
                .ok_or_else(|| Problem::field("state", "expected active or revoked"))?,
        ),
    };
    let used = params.bool("used")?;
    let plans: HashMap<String, Plan> = s
        .store
        .list_plans()
        .await?
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    if let Some(name) = params.get("plan") {
        // Another tenant's plan is as unknown as a misspelt one.
        match plans.get(name) {
            Some(p) if scope.shows(p.tenant_id) => {}
            _ => return Err(Problem::not_found(format!("plan {name}"))),
        }
    }
    let now = crate::server::unix_now();
    // One more than a page tells whether there is a next one.
    let mut items = s
        .store
        .voucher_page(&VoucherQuery {
            tenant_id: scope.given.then_some(scope.id),
            plan: params.get("plan").map(str::to_owned),
            batch: params.get("batch").map(str::to_owned),
            state,
            used,
            after: after.unwrap_or(0),
            limit: limit as u32 + 1,
        })
        .await?;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|v| v.id)
    } else {
        None
    };
    Ok(Json(page(
        items
            .iter()
            .map(|v| voucher_json(v, plans.get(&v.plan_name), now))
            .collect(),
        next,
    )))
}

pub async fn show(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    Path(code): Path<String>,
) -> Result<Json<Value>, Problem> {
    params.only(&["tenant"])?;
    let scope = scope(&s, &caller, &params).await?;
    let v = s.store.get_voucher(scope.id, &code).await?;
    let plan = s.store.get_plan(&v.plan_name).await?;
    let sessions: Vec<_> = s
        .store
        .list_sessions(false)
        .await?
        .into_iter()
        .filter(|x| x.voucher_id == Some(v.id))
        .collect();
    let mut j = voucher_json(&v, Some(&plan), crate::server::unix_now());
    j["sessions"] = json!(sessions);
    Ok(Json(j))
}

pub async fn create(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    body: Fields,
) -> Result<Response, Problem> {
    params.only(&["tenant"])?;
    body.only(&["code", "plan", "password", "site", "batch"])?;
    let scope = scope(&s, &caller, &params).await?;
    let code = body.required("code")?;
    check_code(&code)?;
    let plan_name = body.required("plan")?;
    let plan = s.store.get_plan(&plan_name).await?;
    let plan = visible(&scope, plan.tenant_id, plan, format!("plan {plan_name}"))?;
    scope.voucher_tenant(&plan)?;
    let password = body.text("password")?;
    if let Some(p) = &password {
        if p.is_empty() || p.len() > 128 {
            return Err(Problem::field("password", "must be 1 to 128 characters"));
        }
    }
    let made = s
        .store
        .add_vouchers(&[NewVoucher {
            code,
            password,
            plan_id: plan.id,
            site: body.text("site")?,
            batch: body.text("batch")?,
        }])
        .await?;
    let v = made
        .first()
        .ok_or_else(|| Problem::new("internal", "the voucher was not stored"))?;
    let mut j = voucher_json(v, Some(&plan), crate::server::unix_now());
    j["password"] = json!(v.password);
    Ok((StatusCode::CREATED, Json(j)).into_response())
}

pub async fn revoke(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    Path(code): Path<String>,
    body: Fields,
) -> Result<Json<Value>, Problem> {
    params.only(&["tenant"])?;
    body.only(&["disconnect"])?;
    let scope = scope(&s, &caller, &params).await?;
    let disconnect = body.bool("disconnect")?.unwrap_or(true);
    let v = s
        .store
        .revoke_voucher_with(scope.id, &code, disconnect)
        .await?;
    let plan = s.store.get_plan(&v.plan_name).await.ok();
    Ok(Json(voucher_json(
        &v,
        plan.as_ref(),
        crate::server::unix_now(),
    )))
}
