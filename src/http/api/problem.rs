//! Errors as RFC 9457 problem details (`application/problem+json`): a stable
//! `type` per kind of error, the status, a human `detail`, and for a refused
//! field its name in `field`. Internal errors say nothing of the cause (it is
//! logged instead).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::manage::FieldError;
use crate::store::StoreError;

/// What every problem `type` starts with; the kind follows.
pub const TYPE_PREFIX: &str = "urn:rrnet-radius:problem:";

/// Every kind of problem the API answers, with its status and title.
pub const KINDS: &[(&str, u16, &str)] = &[
    (
        "invalid-field",
        400,
        "A field has a value that is not accepted",
    ),
    ("invalid-body", 400, "The request body is not a JSON object"),
    (
        "invalid-idempotency-key",
        400,
        "The Idempotency-Key header is not accepted",
    ),
    ("unauthorized", 401, "Missing or unknown bearer token"),
    ("read-only", 403, "The token may only read"),
    ("other-tenant", 403, "The token belongs to another tenant"),
    ("not-found", 404, "No such resource"),
    ("duplicate", 409, "It exists already"),
    ("in-use", 409, "It is still in use"),
    (
        "idempotency-in-progress",
        409,
        "A request with this Idempotency-Key is still being worked on",
    ),
    ("body-too-large", 413, "The request body is too large"),
    (
        "unsupported-media-type",
        415,
        "The request body must be application/json",
    ),
    (
        "idempotency-key-reused",
        422,
        "The Idempotency-Key was used for another request",
    ),
    ("rule-violation", 422, "The request breaks a rule"),
    ("internal", 500, "Internal error"),
];

/// One problem answer.
#[derive(Debug, Clone)]
pub struct Problem {
    pub kind: &'static str,
    pub detail: String,
    pub field: Option<String>,
}

impl Problem {
    pub fn new(kind: &'static str, detail: impl Into<String>) -> Problem {
        debug_assert!(KINDS.iter().any(|k| k.0 == kind), "{kind}");
        Problem {
            kind,
            detail: detail.into(),
            field: None,
        }
    }

    /// A 400 for the field `field`.
    pub fn field(field: &str, detail: impl Into<String>) -> Problem {
        Problem {
            field: Some(field.to_owned()),
            ..Problem::new("invalid-field", detail)
        }
    }

    pub fn not_found(what: impl std::fmt::Display) -> Problem {
        Problem::new("not-found", format!("{what} not found"))
    }

    pub fn status(&self) -> StatusCode {
        let code = KINDS.iter().find(|k| k.0 == self.kind).map_or(500, |k| k.1);
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn title(&self) -> &'static str {
        KINDS
            .iter()
            .find(|k| k.0 == self.kind)
            .map_or("Internal error", |k| k.2)
    }
}

impl From<FieldError> for Problem {
    fn from(e: FieldError) -> Problem {
        Problem::field(&e.field, e.message)
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        match e {
            StoreError::NotFound(what) => Problem::not_found(what),
            StoreError::Duplicate(what) => {
                Problem::new("duplicate", format!("{what} already exists"))
            }
            StoreError::InUse(why) => Problem::new("in-use", why),
            StoreError::Invalid(why) => Problem::new("rule-violation", why),
            other => {
                // The cause goes to the log, never to the client.
                tracing::error!(error = %other, "management API: storage failed");
                Problem::new("internal", "the request could not be completed; try again")
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = json!({
            "type": format!("{TYPE_PREFIX}{}", self.kind),
            "title": self.title(),
            "status": status.as_u16(),
            "detail": self.detail,
        });
        if let Some(f) = &self.field {
            body["field"] = json!(f);
        }
        let mut r = (status, body.to_string()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rrnet-radius\""),
            );
        }
        r
    }
}
