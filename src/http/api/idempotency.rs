//! `Idempotency-Key` on POST: the first request with a key does the work and
//! its 2xx answer is kept (per token, for a day); a retry with the same key
//! and the same request gets that answer again, marked
//! `Idempotency-Replayed: true`, without doing the work twice. The same key
//! with another request is 422; while the first is still being worked on a
//! retry gets 409. An answer that is not 2xx is not kept, so the request may
//! be tried again with the same key; so may a key whose first request never
//! answered (the server stopped), after two minutes.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::problem::Problem;
use super::{ApiState, Caller, MAX_BODY};
use crate::store::IdempotencyClaim;

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED: &str = "idempotency-replayed";

/// Largest answer kept for replay (a batch of 100,000 codes is ~4 MB).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

fn check_key(key: &[u8]) -> Result<&str, Problem> {
    let ok = !key.is_empty() && key.len() <= 255 && key.iter().all(|b| (0x21..0x7f).contains(b));
    match std::str::from_utf8(key) {
        Ok(k) if ok => Ok(k),
        _ => Err(Problem::new(
            "invalid-idempotency-key",
            "Idempotency-Key must be 1 to 255 printable ASCII characters without spaces",
        )),
    }
}

pub async fn once(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER).map(|v| v.as_bytes().to_vec()) else {
        return next.run(req).await;
    };
    let key = match check_key(&key) {
        Ok(k) => k.to_owned(),
        Err(p) => return p.into_response(),
    };
    let Some(caller) = req.extensions().get::<Caller>().copied() else {
        return Problem::new("unauthorized", "no token").into_response();
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return Problem::new(
            "body-too-large",
            format!("the body may be at most {MAX_BODY} bytes"),
        )
        .into_response();
    };
    let mut h = Sha256::new();
    h.update(parts.uri.to_string().as_bytes());
    h.update([0]);
    h.update(&bytes);
    let request_hash = hex::encode(h.finalize());
    let now = crate::server::unix_now();
    let claim = s
        .store
        .claim_idempotency_key(caller.token_id, &key, &request_hash, now)
        .await;
    match claim {
        Err(e) => Problem::from(e).into_response(),
        Ok(IdempotencyClaim::Done {
            request_hash: first,
            status,
            body,
        }) => {
            if first != request_hash {
                return reused();
            }
            let mut r =
                (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r.headers_mut()
                .insert(REPLAYED, HeaderValue::from_static("true"));
            r
        }
        Ok(IdempotencyClaim::InProgress {
            request_hash: first,
        }) => {
            if first != request_hash {
                return reused();
            }
            Problem::new(
                "idempotency-in-progress",
                "the first request with this Idempotency-Key is still being worked on; retry later",
            )
            .into_response()
        }
        Ok(IdempotencyClaim::Claimed) => {
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            let status = response.status();
            if !status.is_success() {
                give_up(&s, caller.token_id, &key).await;
                return response;
            }
            let (parts, body) = response.into_parts();
            let Ok(answer) = axum::body::to_bytes(body, MAX_ANSWER).await else {
                give_up(&s, caller.token_id, &key).await;
                return Problem::new("internal", "the answer could not be kept").into_response();
            };
            let text = String::from_utf8_lossy(&answer);
            if let Err(e) = s
                .store
                .finish_idempotency_key(caller.token_id, &key, Some((status.as_u16(), &text)))
                .await
            {
                // The work is done; the answer goes out, but a retry would
                // find the key still in progress.
                tracing::error!(error = %e, "management API: cannot keep an idempotent answer");
            }
            Response::from_parts(parts, Body::from(answer))
        }
    }
}

fn reused() -> Response {
    Problem::new(
        "idempotency-key-reused",
        "this Idempotency-Key was used for another request; use a new key",
    )
    .into_response()
}

async fn give_up(s: &ApiState, token_id: i64, key: &str) {
    if let Err(e) = s.store.finish_idempotency_key(token_id, key, None).await {
        tracing::error!(error = %e, "management API: cannot release an Idempotency-Key");
    }
}
