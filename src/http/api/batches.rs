//! `/api/v1/voucher-batches`: `voucher generate` and `voucher print` over
//! HTTP. A batch is the vouchers that share a batch name; creating one with
//! a name already used in the tenant is 409, and with an `Idempotency-Key`
//! a retried request gets the first answer (the same codes) again.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use super::body::{Fields, Params};
use super::{scope, visible, ApiState, Caller, Problem};
use crate::cli::print::{cards, login_base, render_csv, render_html};
use crate::manage::vouchers::{generate, voucher_json, Generate, MAX_BATCH};
use crate::model::{Plan, Voucher, VoucherState};

pub async fn create(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    body: Fields,
) -> Result<Response, Problem> {
    params.only(&["tenant"])?;
    body.only(&["plan", "count", "batch", "length", "prefix", "site"])?;
    let scope = scope(&s, &caller, &params).await?;
    let spec = Generate {
        count: body
            .uint("count", u64::from(MAX_BATCH))?
            .ok_or_else(|| Problem::field("count", "this field is required"))?
            as u32,
        length: body.uint("length", 64)?.map_or(8, |n| n as usize),
        prefix: body.text("prefix")?.unwrap_or_default(),
        site: body.text("site")?,
        batch: Some(body.required("batch")?),
    };
    spec.check()?;
    let plan_name = body.required("plan")?;
    let plan = s.store.get_plan(&plan_name).await?;
    let plan = visible(&scope, plan.tenant_id, plan, format!("plan {plan_name}"))?;
    let tenant = scope.voucher_tenant(&plan)?;
    let batch = spec.batch.clone().unwrap_or_default();
    let taken = s
        .store
        .list_vouchers(None, Some(&batch))
        .await?
        .iter()
        .any(|v| v.tenant_id == tenant);
    if taken {
        return Err(Problem::new(
            "duplicate",
            format!("batch {batch} already exists; give the new batch another name"),
        ));
    }
    let made = generate(&*s.store, &plan, &spec).await?;
    let body = json!({
        "batch": batch,
        "plan": plan.name,
        "count": made.len(),
        "vouchers": made
            .iter()
            .map(|v| json!({"code": v.code, "password": v.password}))
            .collect::<Vec<_>>(),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The vouchers of batch `name` the scope shows, oldest first.
async fn vouchers_of(
    s: &ApiState,
    caller: &Caller,
    params: &Params,
    name: &str,
) -> Result<Vec<Voucher>, Problem> {
    let scope = scope(s, caller, params).await?;
    let all: Vec<Voucher> = s
        .store
        .list_vouchers(None, Some(name))
        .await?
        .into_iter()
        .filter(|v| scope.shows(v.tenant_id))
        .collect();
    if all.is_empty() {
        return Err(Problem::not_found(format!("batch {name}")));
    }
    Ok(all)
}

pub async fn show(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    params.only(&["tenant", "format", "login_url"])?;
    let vouchers = vouchers_of(&s, &caller, &params, &name).await?;
    let plans: HashMap<String, Plan> = s
        .store
        .list_plans()
        .await?
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    let format = params.get("format").unwrap_or("json");
    if format == "json" {
        let now = crate::server::unix_now();
        return Ok(Json(json!({
            "batch": name,
            "count": vouchers.len(),
            "vouchers": vouchers
                .iter()
                .map(|v| voucher_json(v, plans.get(&v.plan_name), now))
                .collect::<Vec<_>>(),
        }))
        .into_response());
    }
    let base = params
        .get("login_url")
        .map(login_base)
        .transpose()
        .map_err(|e| Problem::field("login_url", e.to_string()))?;
    // As `voucher print`: revoked vouchers are not printed.
    let active: Vec<Voucher> = vouchers
        .into_iter()
        .filter(|v| v.state == VoucherState::Active)
        .collect();
    let cards = cards(&active, &plans, base.as_deref());
    match format {
        "csv" => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment"),
            ],
            render_csv(&cards),
        )
            .into_response()),
        "html" => {
            let html = render_html(&name, &cards).map_err(|e| {
                tracing::error!(error = %e, "management API: cannot render a batch");
                Problem::new("internal", "the sheet could not be rendered")
            })?;
            Ok((
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    // The sheet is data: nothing in it may run or load.
                    (
                        header::CONTENT_SECURITY_POLICY,
                        "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                    ),
                ],
                html,
            )
                .into_response())
        }
        _ => Err(Problem::field("format", "expected json, csv or html")),
    }
}
