//! Management API tokens: made by `token add`, checked by the API
//! (`http::api::auth`). A token is 32 random bytes from the OS CSPRNG, shown
//! once as `rrnet_` and 64 hex digits; only its SHA-256 is stored, so a copy
//! of the database does not hold a usable token.

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::store::{ApiToken, NewApiToken, Store, StoreResult};

/// What every token starts with, so that a leaked one is recognisable
/// (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "rrnet_";

/// Lower-case hex SHA-256 of `token`, as stored.
pub fn hash_token(token: &[u8]) -> String {
    hex::encode(Sha256::digest(token))
}

/// A token name: what `token list` shows and `token revoke` takes.
pub fn check_token_name(name: &str) -> Result<(), super::FieldError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(super::FieldError::flag(
            "name",
            format!("token name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"),
        ))
    }
}

/// Make and store a new token; returns it as stored and the token itself,
/// which is not kept anywhere.
pub async fn issue(
    store: &dyn Store,
    name: &str,
    tenant_id: Option<i64>,
    read_only: bool,
) -> StoreResult<(ApiToken, String)> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let stored = store
        .add_api_token(&NewApiToken {
            name: name.to_owned(),
            tenant_id,
            read_only,
            token_hash: hash_token(token.as_bytes()),
        })
        .await?;
    Ok((stored, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash_token(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn names() {
        assert!(check_token_name("erp-1").is_ok());
        assert!(check_token_name("").is_err());
        assert!(check_token_name("a b").is_err());
    }
}
