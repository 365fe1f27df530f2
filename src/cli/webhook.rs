//! `webhook add | list | remove | deliveries`: where events are POSTed, and
//! what became of each delivery (see `crate::events`).

use std::sync::Arc;

use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{opt, print_table, ts};
use super::Format;
use crate::events::{self, DeliveryFilter};
use crate::store::Store;

#[derive(Args, Debug)]
pub struct WebhookArgs {
    #[command(subcommand)]
    pub command: WebhookCommand,
}

#[derive(Subcommand, Debug)]
pub enum WebhookCommand {
    /// Add a webhook: events are POSTed to URL as JSON, signed with a secret
    /// printed alone on the last line (shown only now).
    ///
    /// Each request carries `Rrnet-Signature: t=<unix seconds>,v1=<hex
    /// HMAC-SHA256 of "<t>.<body>" keyed with the secret>` and `Rrnet-Event-Id`
    /// (the same on every retry). A 2xx answer is a delivery; anything else is
    /// retried with back-off (`[webhooks]` in the config file) and given up
    /// after a day.
    Add {
        /// http:// or https:// URL to POST events to.
        #[arg(long)]
        url: String,
        /// Only this tenant's events [default: every tenant's].
        #[arg(long)]
        tenant: Option<String>,
        /// Event types, comma-separated [default: all]: voucher.activated,
        /// voucher.used_up, voucher.revoked, session.started, session.stopped.
        #[arg(long)]
        events: Option<String>,
    },
    /// List webhooks (without their secrets).
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Remove a webhook, by id or URL, with its pending deliveries.
    Remove {
        /// Its id (from `webhook list`) or its URL.
        webhook: String,
    },
    /// Show deliveries, newest first: state, attempts, the receiver's last
    /// status or error.
    Deliveries {
        /// Only this webhook's (id or URL).
        #[arg(long)]
        webhook: Option<String>,
        /// Only those given up.
        #[arg(long)]
        failed: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

pub async fn run(store: Arc<dyn Store>, cmd: &WebhookCommand) -> anyhow::Result<()> {
    match cmd {
        WebhookCommand::Add {
            url,
            tenant,
            events,
        } => {
            let tenant_id = match tenant {
                Some(name) => Some(store.get_tenant(name).await?.id),
                None => None,
            };
            let (hook, secret) =
                events::add_webhook(&*store, url, tenant_id, events.as_deref()).await?;
            println!(
                "added webhook {} for {} ({}, {}); its signing secret:",
                hook.id,
                hook.url,
                hook.tenant
                    .as_deref()
                    .map_or("every tenant".to_string(), |t| format!("tenant {t}")),
                if hook.events.is_empty() {
                    "every event".to_string()
                } else {
                    hook.events.join(",")
                }
            );
            println!("{secret}");
        }
        WebhookCommand::List { format } => {
            let hooks = store.list_webhooks().await?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&hooks)?),
                Format::Text => print_table(
                    &["ID", "URL", "TENANT", "EVENTS", "CREATED"],
                    &hooks
                        .iter()
                        .map(|h| {
                            vec![
                                h.id.to_string(),
                                h.url.clone(),
                                h.tenant.clone().unwrap_or_else(|| "*".into()),
                                if h.events.is_empty() {
                                    "*".into()
                                } else {
                                    h.events.join(",")
                                },
                                ts(Some(h.created_at)),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        WebhookCommand::Remove { webhook } => {
            let n = store.remove_webhook(webhook).await?;
            println!("removed {n} webhook(s)");
        }
        WebhookCommand::Deliveries {
            webhook,
            failed,
            limit,
            format,
        } => {
            let list = store
                .list_deliveries(&DeliveryFilter {
                    webhook: webhook.clone(),
                    failed_only: *failed,
                    limit: Some((*limit).clamp(1, 10_000)),
                })
                .await?;
            match format {
                Format::Json => {
                    let rows: Vec<_> = list
                        .iter()
                        .map(|d| {
                            json!({
                                "id": d.id,
                                "webhook": d.webhook_id,
                                "url": d.url,
                                "event": d.event_id,
                                "type": d.event_type,
                                "state": d.state,
                                "attempts": d.attempts,
                                "next_attempt": d.next_attempt_at.map(events::rfc3339_text),
                                "last_attempt": d.last_attempt_at.map(events::rfc3339_text),
                                "last_status": d.last_status,
                                "last_error": d.last_error,
                                "delivered": d.delivered_at.map(events::rfc3339_text),
                                "created": events::rfc3339_text(d.created_at),
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                }
                Format::Text => print_table(
                    &[
                        "ID",
                        "WEBHOOK",
                        "EVENT",
                        "TYPE",
                        "STATE",
                        "ATTEMPTS",
                        "STATUS",
                        "ERROR",
                        "NEXT",
                        "DELIVERED",
                    ],
                    &list
                        .iter()
                        .map(|d| {
                            vec![
                                d.id.to_string(),
                                d.webhook_id.to_string(),
                                d.event_id.clone(),
                                d.event_type.clone(),
                                d.state.clone(),
                                d.attempts.to_string(),
                                opt(&d.last_status),
                                // A receiver's error text can be anything: one line.
                                d.last_error
                                    .as_deref()
                                    .map_or("-".into(), |e| e.escape_debug().to_string()),
                                ts(d.next_attempt_at),
                                ts(d.delivered_at),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
    }
    Ok(())
}
