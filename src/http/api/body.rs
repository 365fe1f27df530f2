//! Reading requests: a JSON object body (size-limited, `application/json`)
//! and query parameters, each field checked by name so that a refused value
//! names its field. Field values take the CLI's syntax: a duration or size
//! as text (`"1h"`, `"1GiB"`) or a plain number (seconds, bytes).

use std::collections::HashMap;

use axum::async_trait;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde_json::{Map, Value};

use super::problem::Problem;
use super::MAX_BODY;

/// A request body that is a JSON object (an empty body counts as `{}`).
pub struct Fields(pub Map<String, Value>);

#[async_trait]
impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = Problem;

    async fn from_request(req: Request, _: &S) -> Result<Self, Problem> {
        let media = req.headers().get(header::CONTENT_TYPE).map(|v| {
            v.to_str()
                .unwrap_or("?")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|_| {
                Problem::new(
                    "body-too-large",
                    format!("the body may be at most {MAX_BODY} bytes"),
                )
            })?;
        if bytes.is_empty() {
            return Ok(Fields(Map::new()));
        }
        if media.as_deref() != Some("application/json") {
            return Err(Problem::new(
                "unsupported-media-type",
                "send the body as Content-Type: application/json",
            ));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Fields(map)),
            Ok(_) => Err(Problem::new(
                "invalid-body",
                "the body must be a JSON object",
            )),
            Err(e) => Err(Problem::new("invalid-body", format!("not JSON: {e}"))),
        }
    }
}

impl Fields {
    /// Refuse a field not in `known` (a misspelt field is an error, not ignored).
    pub fn only(&self, known: &[&str]) -> Result<(), Problem> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(Problem::field(
                k,
                format!("unknown field; expected one of: {}", known.join(", ")),
            )),
            None => Ok(()),
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// A text or a plain non-negative number as text; `None` when absent or null.
    pub fn text(&self, name: &str) -> Result<Option<String>, Problem> {
        match self.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => value_text(name, v).map(Some),
        }
    }

    pub fn required(&self, name: &str) -> Result<String, Problem> {
        self.text(name)?
            .ok_or_else(|| Problem::field(name, "this field is required"))
    }

    /// For a change: `None` when absent, `Some(None)` for null (clear it),
    /// `Some(Some(text))` for a value.
    pub fn change(&self, name: &str) -> Result<Option<Option<String>>, Problem> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(v) => value_text(name, v).map(|t| Some(Some(t))),
        }
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, Problem> {
        match self.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(Problem::field(name, "expected true or false")),
        }
    }

    pub fn uint(&self, name: &str, max: u64) -> Result<Option<u64>, Problem> {
        match self.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if v <= max => Ok(Some(v)),
                _ => Err(Problem::field(
                    name,
                    format!("expected a whole number up to {max}"),
                )),
            },
            Some(_) => Err(Problem::field(
                name,
                format!("expected a whole number up to {max}"),
            )),
        }
    }

    /// A list of texts (a JSON array, or one comma-separated text); null is
    /// `Some(empty)`.
    pub fn list(&self, name: &str) -> Result<Option<Vec<String>>, Problem> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(Vec::new())),
            Some(Value::String(s)) => Ok(Some(s.split(',').map(str::to_owned).collect())),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(Problem::field(name, "expected a list of texts")),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(Problem::field(name, "expected a list of texts")),
        }
    }
}

fn value_text(name: &str, v: &Value) -> Result<String, Problem> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) if n.as_u64().is_some() => Ok(n.to_string()),
        _ => Err(Problem::field(
            name,
            "expected a text (e.g. \"1h\", \"1GiB\") or a whole number",
        )),
    }
}

/// Query parameters, checked by name like body fields.
pub struct Params(pub HashMap<String, String>);

#[async_trait]
impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|e| Problem::new("invalid-body", format!("bad query string: {e}")))
    }
}

impl Params {
    pub fn only(&self, known: &[&str]) -> Result<(), Problem> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(Problem::field(
                k,
                format!(
                    "unknown query parameter; expected one of: {}",
                    known.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, Problem> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(Problem::field(name, "expected true or false")),
        }
    }

    /// `limit`: 1 to `max`, `default` when absent.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, Problem> {
        match self.get("limit") {
            None => Ok(default),
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(Problem::field("limit", format!("expected 1 to {max}"))),
            },
        }
    }

    /// `after`: the cursor a previous page gave as `next`.
    pub fn cursor(&self) -> Result<Option<i64>, Problem> {
        self.get("after")
            .map(|s| {
                s.parse::<i64>().map_err(|_| {
                    Problem::field("after", "not a cursor from a previous page's next")
                })
            })
            .transpose()
    }
}
