//! `/api/v1/nas`: what `nas add|list|set|set-secret|remove` do, by the same
//! functions. The secret is taken, never shown.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::body::{Fields, Params};
use super::{scope, visible, ApiState, Caller, Problem};
use crate::manage::nas::{
    check_identifier, check_secret, nas_json, new_nas, new_radsec_nas, NasAdd,
};
use crate::model::{CertIdentity, Nas, Secret};
use crate::units::parse_duration;

async fn tenant_names(s: &ApiState) -> Result<HashMap<i64, String>, Problem> {
    Ok(s.store
        .list_tenants()
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect())
}

async fn find(s: &ApiState, caller: &Caller, params: &Params, name: &str) -> Result<Nas, Problem> {
    let scope = scope(s, caller, params).await?;
    let nas = s
        .store
        .list_nas()
        .await?
        .into_iter()
        .find(|n| n.name == name)
        .ok_or_else(|| Problem::not_found(format!("NAS {name}")))?;
    let tenant = nas.tenant_id;
    visible(&scope, tenant, nas, format!("NAS {name}"))
}

pub async fn list(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> Result<Json<Value>, Problem> {
    params.only(&["tenant"])?;
    let scope = scope(&s, &caller, &params).await?;
    let tenants = tenant_names(&s).await?;
    let items: Vec<Value> = s
        .store
        .list_nas()
        .await?
        .iter()
        .filter(|n| scope.shows(n.tenant_id))
        .map(|n| nas_json(n, &tenants))
        .collect();
    Ok(Json(json!({ "items": items })))
}

pub async fn show(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    Path(name): Path<String>,
) -> Result<Json<Value>, Problem> {
    params.only(&["tenant"])?;
    let nas = find(&s, &caller, &params, &name).await?;
    Ok(Json(nas_json(&nas, &tenant_names(&s).await?)))
}

fn port(body: &Fields) -> Result<Option<u16>, Problem> {
    Ok(body.uint("coa_port", 65535)?.map(|p| p as u16))
}

fn ip(field: &str, v: &str) -> Result<std::net::IpAddr, Problem> {
    v.parse()
        .map_err(|_| Problem::field(field, format!("{v:?} is not an IP address")))
}

pub async fn create(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    body: Fields,
) -> Result<Response, Problem> {
    params.only(&["tenant"])?;
    body.only(&[
        "name",
        "address",
        "secret",
        "require_message_authenticator",
        "coa_port",
        "coa_address",
        "site",
        "identifier",
        "radsec_cn",
        "radsec_fingerprint",
    ])?;
    let scope = scope(&s, &caller, &params).await?;
    // A RadSec router is known by its client certificate, as `nas add
    // --radsec-cn | --radsec-fingerprint`: no address, secret or identifier.
    let radsec = match (body.text("radsec_cn")?, body.text("radsec_fingerprint")?) {
        (Some(_), Some(_)) => {
            return Err(Problem::field(
                "radsec_fingerprint",
                "give radsec_cn or radsec_fingerprint, not both",
            ))
        }
        (Some(cn), None) => {
            Some(CertIdentity::name(&cn).map_err(|e| Problem::field("radsec_cn", e))?)
        }
        (None, Some(fp)) => {
            Some(CertIdentity::sha256(&fp).map_err(|e| Problem::field("radsec_fingerprint", e))?)
        }
        (None, None) => None,
    };
    if radsec.is_some() {
        for field in ["address", "secret", "identifier"] {
            if body.text(field)?.is_some() {
                return Err(Problem::field(
                    field,
                    "a RadSec NAS has none: its client certificate identifies it, and its secret is `radsec`",
                ));
            }
        }
    }
    let text = |f: &str| -> Result<String, Problem> {
        match radsec {
            Some(_) => Ok(String::new()),
            None => body.required(f),
        }
    };
    let add = NasAdd {
        name: body.required("name")?,
        address: text("address")?,
        secret: text("secret")?,
        require_message_authenticator: body.bool("require_message_authenticator")?.unwrap_or(true),
        coa_port: port(&body)?.unwrap_or(3799),
        coa_address: body
            .text("coa_address")?
            .map(|a| ip("coa_address", &a))
            .transpose()?,
        site: body.text("site")?,
        identifier: body.text("identifier")?,
    };
    let new = match radsec {
        Some(identity) => new_radsec_nas(&add, identity, scope.id)?,
        None => new_nas(&add, scope.id)?,
    };
    let nas = s.store.add_nas(&new).await?;
    if !nas.require_message_authenticator {
        tracing::warn!(nas = %nas.name, "NAS added without Message-Authenticator required (BlastRADIUS, CVE-2024-3596)");
    }
    Ok((
        StatusCode::CREATED,
        Json(nas_json(&nas, &tenant_names(&s).await?)),
    )
        .into_response())
}

/// Secret rotation (`secret`, with the old one kept for `keep_old`, default
/// 1d, as `nas set-secret`), CoA port and address, identifier.
pub async fn change(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    Path(name): Path<String>,
    body: Fields,
) -> Result<Json<Value>, Problem> {
    params.only(&["tenant"])?;
    body.only(&[
        "secret",
        "keep_old",
        "coa_port",
        "coa_address",
        "identifier",
    ])?;
    find(&s, &caller, &params, &name).await?;
    // Everything is checked before anything is changed.
    let secret = body.text("secret")?;
    if let Some(secret) = &secret {
        check_secret(secret)?;
    }
    let keep_old = body
        .text("keep_old")?
        .map(|k| parse_duration(&k).map_err(|e| Problem::field("keep_old", e)))
        .transpose()?
        .unwrap_or(86_400);
    let coa_port = port(&body)?;
    let coa_address = match body.change("coa_address")? {
        None => None,
        Some(None) => Some(None),
        Some(Some(a)) => Some(Some(ip("coa_address", &a)?)),
    };
    let identifier = body.change("identifier")?;
    if let Some(Some(id)) = &identifier {
        check_identifier(id)?;
    }
    if let Some(id) = identifier {
        s.store.set_nas_identifier(&name, id.as_deref()).await?;
    }
    if coa_port.is_some() || coa_address.is_some() {
        s.store.set_nas_coa(&name, coa_port, coa_address).await?;
    }
    if let Some(secret) = secret {
        let until = (keep_old > 0).then(|| crate::server::unix_now() + keep_old as i64);
        s.store
            .set_nas_secret(&name, &Secret::new(secret), until)
            .await?;
    }
    let nas = find(&s, &caller, &params, &name).await?;
    Ok(Json(nas_json(&nas, &tenant_names(&s).await?)))
}

pub async fn remove(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    params.only(&["tenant"])?;
    find(&s, &caller, &params, &name).await?;
    s.store.remove_nas(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
