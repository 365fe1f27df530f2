//! `rrnet-radius auth-log`: "why can't this customer log in?" from the auth
//! events the server records with every Access-Accept and Access-Reject.

use std::sync::Arc;

use anyhow::{anyhow, bail};
use clap::Args;
use serde_json::json;

use super::output::{opt, print_table, ts};
use super::Format;
use crate::policy::RejectReason;
use crate::store::{AuthEvent, AuthEventFilter, Store};
use crate::units::parse_duration;

/// Most events one call returns, so a typo cannot dump a year of history.
pub const MAX_LIMIT: u32 = 100_000;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  rrnet-radius auth-log --user K7M2QX9P --since 1d\n  \
rrnet-radius auth-log --nas hotspot1 --since 15m --format json"
)]
pub struct AuthLogArgs {
    /// Only this user name (voucher code).
    #[arg(long, value_name = "CODE")]
    pub user: Option<String>,
    /// Only this NAS (its name, as in `nas list`).
    #[arg(long, value_name = "NAME")]
    pub nas: Option<String>,
    /// Only events newer than this: a duration back from now (90s, 15m, 1h, 1d)
    /// or an RFC 3339 time (2026-01-31T08:00:00Z).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Keep the newest N events.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub limit: u32,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// Unix time from `--since`: a duration before `now`, or an absolute RFC 3339 time.
pub fn parse_since(s: &str, now: i64) -> anyhow::Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.timestamp());
    }
    let secs = parse_duration(s)
        .map_err(|e| anyhow!("--since: {e}, or an RFC 3339 time such as 2026-01-31T08:00:00Z"))?;
    Ok(now.saturating_sub(i64::try_from(secs).unwrap_or(i64::MAX)))
}

/// The human message for a reject reason label; labels written by a newer
/// version are shown as they are.
fn message(e: &AuthEvent) -> String {
    match e.reason.as_deref() {
        None => "-".into(),
        Some(label) => RejectReason::from_label(label)
            .map(|r| r.message().to_string())
            .unwrap_or_else(|| "-".into()),
    }
}

/// An auth event as `auth-log --format json` and `GET /api/v1/auth-log` show it.
pub fn event_json(e: &AuthEvent) -> serde_json::Value {
    json!({
        "time": ts(Some(e.at)),
        "nas": e.nas_name,
        "user": e.username,
        "mac": e.mac,
        "result": e.result,
        "reason": e.reason,
        "message": e.reason.as_ref().map(|_| message(e)),
        "repeats": e.repeats,
        "last_time": e.last_at.map(|t| ts(Some(t))),
    })
}

pub async fn run(store: Arc<dyn Store>, args: &AuthLogArgs) -> anyhow::Result<()> {
    if args.limit == 0 || args.limit > MAX_LIMIT {
        bail!("--limit must be between 1 and {MAX_LIMIT}");
    }
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, crate::server::unix_now()))
        .transpose()?;
    let mut events = store
        .auth_events(&AuthEventFilter {
            username: args.user.clone(),
            nas_name: args.nas.clone(),
            since,
            limit: Some(args.limit),
        })
        .await?;
    // Storage returns the newest first; a log reads oldest first.
    events.reverse();
    match args.format {
        Format::Json => {
            let rows: Vec<_> = events.iter().map(event_json).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).expect("JSON values serialize")
            );
        }
        Format::Text => {
            if events.is_empty() {
                eprintln!("no matching auth events");
                return Ok(());
            }
            print_table(
                &["TIME", "NAS", "USER", "MAC", "RESULT", "REASON", "MESSAGE"],
                &events
                    .iter()
                    .map(|e| {
                        vec![
                            ts(Some(e.at)),
                            e.nas_name.clone(),
                            e.username.clone(),
                            opt(&e.mac),
                            e.result.clone(),
                            opt(&e.reason),
                            match e.last_at {
                                Some(last) if e.repeats > 1 => format!(
                                    "{} ({} times until {})",
                                    message(e),
                                    e.repeats,
                                    ts(Some(last))
                                ),
                                _ => message(e),
                            },
                        ]
                    })
                    .collect::<Vec<_>>(),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since_is_a_duration_back_or_a_time() {
        assert_eq!(parse_since("1h", 10_000).unwrap(), 10_000 - 3600);
        assert_eq!(parse_since("90s", 10_000).unwrap(), 10_000 - 90);
        assert_eq!(
            parse_since("2026-01-31T08:00:00Z", 0).unwrap(),
            1_769_846_400
        );
        assert!(parse_since("yesterday", 0).is_err());
    }
}
