//! NAS entries: checking what `nas add` and `POST /api/v1/nas` ask for, and
//! how an entry is shown (never with its secret).

use std::collections::HashMap;

use serde_json::json;

use super::FieldError;
use crate::cli::output::ts;
use crate::model::{CertIdentity, DynamicAddress, Nas, NewNas, Secret};

/// Shortest shared secret accepted.
pub const MIN_SECRET_LEN: usize = 8;

/// What `nas add` and `POST /api/v1/nas` ask for.
#[derive(Clone, Debug)]
pub struct NasAdd {
    pub name: String,
    pub address: String,
    pub secret: String,
    pub require_message_authenticator: bool,
    pub coa_port: u16,
    pub coa_address: Option<std::net::IpAddr>,
    pub site: Option<String>,
    pub identifier: Option<String>,
}

/// A NAS name: used in logs, metrics labels and file names (`pki issue`).
fn check_name(name: &str) -> Result<(), FieldError> {
    if name.trim().is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(FieldError::flag(
            "name",
            "the NAS name must be 1 to 128 characters without control characters",
        ));
    }
    Ok(())
}

/// A shared secret long enough.
pub fn check_secret(secret: &str) -> Result<(), FieldError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(FieldError::flag(
            "secret",
            "the shared secret must be at least 8 characters",
        ));
    }
    Ok(())
}

/// A NAS-Identifier: the router's `/system identity`.
pub fn check_identifier(id: &str) -> Result<(), FieldError> {
    if id.is_empty() || id.len() > 253 || id.contains('\0') {
        return Err(FieldError::flag(
            "identifier",
            "--identifier must be a non-empty text without NUL",
        ));
    }
    Ok(())
}

/// The entry to store for `a` in `tenant_id`, checked.
pub fn new_nas(a: &NasAdd, tenant_id: i64) -> Result<NewNas, FieldError> {
    check_name(&a.name)?;
    let (address, dynamic) = crate::model::parse_nas_address(&a.address)
        .map_err(|e| FieldError::flag("address", format!("--address {e}")))?;
    if matches!(dynamic, Some(DynamicAddress::RadSec(_))) {
        return Err(FieldError::flag(
            "address",
            "--address: give a RadSec NAS with --radsec-cn or --radsec-fingerprint",
        ));
    }
    if let Some(id) = &a.identifier {
        check_identifier(id)?;
    }
    if dynamic == Some(DynamicAddress::Any) {
        if a.identifier.is_none() {
            return Err(FieldError::flag(
                "identifier",
                "--address any needs --identifier: the router's NAS-Identifier is what picks this entry",
            ));
        }
        if !a.require_message_authenticator {
            return Err(FieldError::flag(
                "require_message_authenticator",
                "--address any requires Message-Authenticator: leave out --no-require-message-authenticator",
            ));
        }
    }
    check_secret(&a.secret)?;
    Ok(NewNas {
        name: a.name.clone(),
        address,
        dynamic,
        secret: Secret::new(a.secret.clone()),
        require_message_authenticator: a.require_message_authenticator,
        coa_port: a.coa_port,
        coa_address: a.coa_address,
        site: a.site.clone(),
        identifier: a.identifier.clone(),
        tenant_id,
    })
}

/// A NAS entry for a RadSec router known by its client certificate
/// (`--radsec-cn`, `--radsec-fingerprint`): the identity is stored in place of
/// an address, and the secret is the fixed `radsec` (RFC 6614). `a.address`
/// and `a.secret` are not used.
pub fn new_radsec_nas(
    a: &NasAdd,
    identity: CertIdentity,
    tenant_id: i64,
) -> Result<NewNas, FieldError> {
    check_name(&a.name)?;
    if let Some(id) = &a.identifier {
        check_identifier(id)?;
    }
    Ok(NewNas {
        name: a.name.clone(),
        address: crate::model::parse_nas_address(&identity.to_string())
            .map_err(|e| FieldError::flag("radsec_cn", e.to_string()))?
            .0,
        dynamic: Some(DynamicAddress::RadSec(identity)),
        secret: Secret::new(crate::radsec::RADSEC_SECRET.to_owned()),
        require_message_authenticator: a.require_message_authenticator,
        coa_port: a.coa_port,
        coa_address: a.coa_address,
        site: a.site.clone(),
        identifier: a.identifier.clone(),
        tenant_id,
    })
}

/// A NAS entry as `nas list --format json` and the API show it: no secret.
pub fn nas_json(n: &Nas, tenants: &HashMap<i64, String>) -> serde_json::Value {
    json!({
        "name": n.name,
        "address": n.address_text(),
        "require_message_authenticator": n.require_message_authenticator,
        "coa_port": n.coa_port,
        "coa_address": n.coa_address.map(|a| a.to_string()),
        "site": n.site,
        "identifier": n.identifier,
        "tenant": tenants.get(&n.tenant_id),
        "created_at": ts(Some(n.created_at)),
        "previous_secret_until": n.previous_secret_until.map(|t| ts(Some(t))),
    })
}
