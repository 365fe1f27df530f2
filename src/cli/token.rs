//! `token add|list|revoke`: bearer tokens of the management API.

use std::collections::HashMap;
use std::sync::Arc;

use clap::Subcommand;
use serde_json::json;

use super::output::{opt, print_table, ts};
use super::Format;
use crate::manage::tokens::{check_token_name, issue};
use crate::store::Store;

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a token for the management API (/api/v1/…). It is printed once,
    /// alone on the last line of standard output; only its SHA-256 is kept.
    /// A running server accepts it within 2 s.
    Add {
        /// Its name (letters, digits, '-', '_' or '.'), for `token list|revoke`.
        #[arg(long)]
        name: String,
        /// The only tenant it sees and changes [default: every tenant].
        #[arg(long)]
        tenant: Option<String>,
        /// Reading only: every request but GET is refused (403).
        #[arg(long)]
        read_only: bool,
    },
    /// List tokens (names and scope; the tokens themselves are not kept).
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Revoke a token: a running server refuses it within 2 s.
    Revoke { name: String },
}

pub async fn run(store: Arc<dyn Store>, cmd: &TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Add {
            name,
            tenant,
            read_only,
        } => {
            check_token_name(name)?;
            let tenant_id = match tenant {
                Some(t) => Some(store.get_tenant(t).await?.id),
                None => None,
            };
            let (stored, token) = issue(&*store, name, tenant_id, *read_only).await?;
            println!(
                "added token {} ({}, {}); it is shown only this once:",
                stored.name,
                tenant
                    .as_deref()
                    .map_or("every tenant".to_string(), |t| format!("tenant {t}")),
                if *read_only {
                    "read-only"
                } else {
                    "read-write"
                }
            );
            println!("{token}");
        }
        TokenCommand::List { format } => {
            let tenants: HashMap<i64, String> = store
                .list_tenants()
                .await?
                .into_iter()
                .map(|t| (t.id, t.name))
                .collect();
            let list = store.list_api_tokens().await?;
            let tenant_of = |id: Option<i64>| id.and_then(|id| tenants.get(&id).cloned());
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&json!(list
                        .iter()
                        .map(|t| json!({
                            "name": t.name,
                            "tenant": tenant_of(t.tenant_id),
                            "read_only": t.read_only,
                            "created_at": ts(Some(t.created_at)),
                        }))
                        .collect::<Vec<_>>()))?
                ),
                Format::Text => print_table(
                    &["NAME", "TENANT", "ACCESS", "CREATED"],
                    &list
                        .iter()
                        .map(|t| {
                            vec![
                                t.name.clone(),
                                opt(&tenant_of(t.tenant_id)),
                                if t.read_only {
                                    "read-only"
                                } else {
                                    "read-write"
                                }
                                .into(),
                                ts(Some(t.created_at)),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        TokenCommand::Revoke { name } => {
            store.revoke_api_token(name).await?;
            println!("revoked token {name}");
        }
    }
    Ok(())
}
