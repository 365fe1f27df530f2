//! Bearer tokens: the set of token hashes is held in memory and read again
//! from storage every [`REFRESH`], so a request with a missing or unknown
//! token is refused (401) without touching storage, and a revoked token stops
//! working within 2 s. The presented token is hashed (SHA-256) and compared
//! with every stored hash in constant time, without stopping at a match.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::problem::Problem;
use super::ApiState;
use crate::store::{ApiToken, Store, StoreResult};

/// How often the token set is read again.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Longest `Authorization` value looked at; a token is 70 characters.
const MAX_AUTHORIZATION: usize = 256;

/// The token a request was made with: what handlers may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub token_id: i64,
    /// The only tenant the token sees; `None` for an operator-wide token.
    pub tenant_id: Option<i64>,
    pub read_only: bool,
}

#[derive(Clone)]
struct Known {
    hash: [u8; 32],
    caller: Caller,
}

/// The tokens a running server accepts. Swapped whole on refresh; readers
/// clone the Arc and drop the lock at once (std RwLock: never held across an
/// await).
#[derive(Clone, Default)]
pub struct TokenCache {
    known: Arc<RwLock<Arc<Vec<Known>>>>,
}

impl TokenCache {
    /// The tokens in `store` now.
    pub async fn load(store: &dyn Store) -> StoreResult<TokenCache> {
        let cache = TokenCache::default();
        cache.replace(store.list_api_tokens().await?);
        Ok(cache)
    }

    /// Whether no token exists (as of the last refresh).
    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    fn snapshot(&self) -> Arc<Vec<Known>> {
        self.known
            .read()
            .expect("token cache lock poisoned")
            .clone()
    }

    fn replace(&self, tokens: Vec<ApiToken>) {
        let known = tokens
            .into_iter()
            .filter_map(|t| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(&t.token_hash, &mut hash).ok()?;
                Some(Known {
                    hash,
                    caller: Caller {
                        token_id: t.id,
                        tenant_id: t.tenant_id,
                        read_only: t.read_only,
                    },
                })
            })
            .collect();
        *self.known.write().expect("token cache lock poisoned") = Arc::new(known);
    }

    /// Read the token set again every [`REFRESH`] until the process ends; a
    /// failed read keeps the last set (and is logged).
    pub fn spawn_refresh(&self, store: Arc<dyn Store>) -> tokio::task::JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match store.list_api_tokens().await {
                    Ok(tokens) => cache.replace(tokens),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the API tokens; keeping the last set")
                    }
                }
            }
        })
    }

    /// The caller whose token is `presented`, if any. Every stored hash is
    /// compared, in constant time.
    pub fn find(&self, presented: &[u8]) -> Option<Caller> {
        let hash: [u8; 32] = Sha256::digest(presented).into();
        let known = self.snapshot();
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, k) in known.iter().enumerate() {
            let hit = k.hash.ct_eq(&hash);
            index = u64::conditional_select(&index, &(i as u64), hit);
            found |= hit;
        }
        bool::from(found).then(|| known[index as usize].caller)
    }
}

/// The bearer token of a request, if its `Authorization` header has one.
fn bearer(req: &Request) -> Option<&[u8]> {
    let value = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    if value.len() > MAX_AUTHORIZATION || value.len() < 7 {
        return None;
    }
    // RFC 7235 §2.1: the scheme is case-insensitive.
    value[..7]
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value[7..].trim_ascii())
}

/// Every `/api/v1/*` route: a known token (401), writes only with a
/// read-write token (403); the caller goes to the handlers as an extension.
pub async fn authenticate(State(s): State<ApiState>, mut req: Request, next: Next) -> Response {
    let Some(caller) = bearer(&req).and_then(|t| s.tokens.find(t)) else {
        return Problem::new(
            "unauthorized",
            "send Authorization: Bearer TOKEN with a token made by `rrnet-radius token add`",
        )
        .into_response();
    };
    if caller.read_only && !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Problem::new("read-only", "this token may only read (GET)").into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: i64, secret: &str) -> ApiToken {
        ApiToken {
            id,
            name: format!("t{id}"),
            tenant_id: Some(id),
            read_only: false,
            token_hash: crate::manage::tokens::hash_token(secret.as_bytes()),
            created_at: 0,
        }
    }

    #[test]
    fn finds_the_token_by_its_hash() {
        let cache = TokenCache::default();
        assert_eq!(cache.find(b"a"), None);
        cache.replace(vec![token(1, "first"), token(2, "second")]);
        assert_eq!(cache.find(b"second").map(|c| c.token_id), Some(2));
        assert_eq!(cache.find(b"first").map(|c| c.tenant_id), Some(Some(1)));
        assert_eq!(cache.find(b"third"), None);
        assert_eq!(cache.find(b""), None);
        cache.replace(vec![token(1, "first")]);
        assert_eq!(cache.find(b"second"), None);
    }
}
