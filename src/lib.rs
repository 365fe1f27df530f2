//! rrnet-radius: a RADIUS server for MikroTik hotspot vouchers.
//!
//! Module map (see ARCHITECTURE.md):
//! - [`proto`]: RADIUS wire format, authenticators, passwords, duplicate cache. No I/O.
//! - [`dictionary`]: FreeRADIUS-format dictionaries; names ⇄ numbers ⇄ types.
//! - [`model`]: domain records (NAS, plan, voucher, session).
//! - [`packet_dump`]: dictionary-named dump of one packet (`packet decode`).
//! - [`policy`]: the voucher decision. No I/O.
//! - [`store`]: storage trait, SQLite and PostgreSQL.
//! - [`handler`]: the request handler every transport hands requests to:
//!   batched decisions, group-committed accounting, outcome metrics.
//! - [`server`]: UDP loops for authentication and accounting.
//! - [`radsec`]: RADIUS over TLS (RFC 6614): the listener, framing, TLS settings.
//! - [`pki`]: the small certificate authority for RadSec (`pki init|issue|server-cert`).
//! - [`coa`]: Disconnect and CoA requests to routers (RFC 5176) and the worker
//!   that sends the queued ones.
//! - [`events`]: the outbox of voucher and session events, the events page
//!   and the webhook delivery worker.
//! - [`metrics`]: Prometheus registry.
//! - [`http`]: operations endpoints and the REST shim.
//! - [`config`], [`cli`], [`units`]: settings, the command line, human units.

pub mod cli;
pub mod coa;
pub mod config;
pub mod dictionary;
pub mod events;
pub mod handler;
pub mod http;
pub mod manage;
pub mod metrics;
pub mod model;
pub mod packet_dump;
pub mod pki;
pub mod policy;
pub mod proto;
pub mod radsec;
pub mod server;
pub mod store;
pub mod units;
