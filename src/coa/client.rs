//! Sending a Disconnect-Request or CoA-Request and waiting for its answer:
//! retransmission with backoff, an Identifier space per NAS, and a bound on
//! requests in flight. Used by the server (triggers) and by the CLI
//! (`session disconnect`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::packet::{build_request, read_answer, BadAnswer, CoaAnswer, CoaKind, SessionIdent};
use crate::model::Secret;
use crate::policy::ReplyAttribute;

/// How long to wait after each try: RFC 5080 §2.2.1-style backoff, three
/// tries, about 7 s in all.
pub const DEFAULT_SCHEDULE: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// Requests in flight at once, over all NASes, unless told otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// At most this many datagrams that were not the answer are kept per exchange
/// (all are counted).
const KEPT_BAD_ANSWERS: usize = 8;

/// How one exchange ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ack,
    /// With the Error-Cause value, when the NAK had one.
    Nak(Option<u32>),
    /// No valid answer after every try.
    Timeout,
    /// Nothing could be sent (no socket, no route, the request could not be built).
    Failed(String),
}

impl Outcome {
    /// `result` label of the metric.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ack => "ack",
            Outcome::Nak(_) => "nak",
            Outcome::Timeout => "timeout",
            Outcome::Failed(_) => "error",
        }
    }

    /// Error-Cause by name for a NAK, `""` otherwise.
    pub fn error_cause(&self) -> &'static str {
        match self {
            Outcome::Nak(Some(c)) => super::packet::error_cause_name(*c),
            Outcome::Nak(None) => "none",
            _ => "",
        }
    }

    /// What `session list` shows, e.g. `disconnect nak Session-Context-Not-Found`.
    pub fn describe(&self, kind: CoaKind) -> String {
        match self {
            Outcome::Nak(_) => format!("{} nak {}", kind.label(), self.error_cause()),
            Outcome::Failed(_) => format!("{} error", kind.label()),
            _ => format!("{} {}", kind.label(), self.label()),
        }
    }
}

/// One exchange: its outcome, how many times the request was sent, and the
/// datagrams that arrived but were not its answer.
#[derive(Debug)]
pub struct Exchange {
    pub outcome: Outcome,
    pub tries: usize,
    /// Up to a few of them; `bad_answer_count` counts all.
    pub bad_answers: Vec<BadAnswer>,
    pub bad_answer_count: usize,
}

/// Identifiers in use towards one CoA address. A NAS tells requests apart by
/// (source, Identifier); two requests in flight to one NAS never share one.
#[derive(Default)]
struct TargetIds {
    next: u8,
    in_use: [u64; 4],
    count: usize,
}

impl TargetIds {
    fn take(&mut self) -> Option<u8> {
        for _ in 0..256 {
            let id = self.next;
            self.next = self.next.wrapping_add(1);
            let (word, bit) = (usize::from(id / 64), id % 64);
            if self.in_use[word] & (1 << bit) == 0 {
                self.in_use[word] |= 1 << bit;
                self.count += 1;
                return Some(id);
            }
        }
        None
    }

    fn give_back(&mut self, id: u8) {
        let (word, bit) = (usize::from(id / 64), id % 64);
        if self.in_use[word] & (1 << bit) != 0 {
            self.in_use[word] &= !(1 << bit);
            self.count -= 1;
        }
    }
}

type IdTable = Arc<Mutex<HashMap<SocketAddr, TargetIds>>>;

/// An Identifier held for one exchange; given back when dropped.
struct HeldId {
    table: IdTable,
    target: SocketAddr,
    id: u8,
}

impl Drop for HeldId {
    fn drop(&mut self) {
        // std Mutex: never held across an await.
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = table.get_mut(&self.target) {
            t.give_back(self.id);
            // Entries live only while a request is in flight: the table is
            // bounded by the requests in flight, not by the targets ever seen.
            if t.count == 0 {
                // Keep `next` moving on for the target: drop the entry only
                // when the table grows; a fresh entry starts at 0 again.
                if table.len() > 1024 {
                    table.remove(&self.target);
                }
            }
        }
    }
}

/// The CoA/Disconnect client. Cheap to share (`Arc`).
pub struct CoaClient {
    ids: IdTable,
    permits: Semaphore,
    schedule: Vec<Duration>,
}

impl Default for CoaClient {
    fn default() -> Self {
        CoaClient::new(DEFAULT_MAX_IN_FLIGHT, DEFAULT_SCHEDULE.to_vec())
    }
}

impl CoaClient {
    /// At most `max_in_flight` exchanges at once (more wait for a slot);
    /// `schedule` is the wait after each try, one entry per try.
    pub fn new(max_in_flight: usize, schedule: Vec<Duration>) -> CoaClient {
        CoaClient {
            ids: Arc::default(),
            permits: Semaphore::new(max_in_flight.clamp(1, 255)),
            schedule: if schedule.is_empty() {
                DEFAULT_SCHEDULE.to_vec()
            } else {
                schedule
            },
        }
    }

    fn hold_id(&self, target: SocketAddr) -> Option<HeldId> {
        let mut table = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let id = table.entry(target).or_default().take()?;
        Some(HeldId {
            table: self.ids.clone(),
            target,
            id,
        })
    }

    /// Send `kind` for `session` to `target` and wait for the answer.
    pub async fn send(
        &self,
        target: SocketAddr,
        kind: CoaKind,
        session: &SessionIdent,
        changes: &[ReplyAttribute],
        secret: &Secret,
    ) -> Exchange {
        let failed = |why: String| Exchange {
            outcome: Outcome::Failed(why),
            tries: 0,
            bad_answers: Vec::new(),
            bad_answer_count: 0,
        };
        let Ok(_permit) = self.permits.acquire().await else {
            return failed("the client is closed".into());
        };
        // At most 255 permits: an Identifier is always free.
        let Some(held) = self.hold_id(target) else {
            return failed("no free Identifier".into());
        };
        let request = match build_request(kind, held.id, session, changes, secret.expose()) {
            Ok(r) => r,
            Err(e) => return failed(e.to_string()),
        };
        let local: SocketAddr = match target.ip() {
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = match UdpSocket::bind(local).await {
            Ok(s) => s,
            Err(e) => return failed(format!("cannot open a UDP socket: {e}")),
        };
        // Connected: only datagrams from the target reach this socket.
        if let Err(e) = socket.connect(target).await {
            return failed(format!("cannot reach {target}: {e}"));
        }
        let mut exchange = Exchange {
            outcome: Outcome::Timeout,
            tries: 0,
            bad_answers: Vec::new(),
            bad_answer_count: 0,
        };
        let mut buf = vec![0u8; crate::proto::MAX_PACKET_LEN];
        for wait in &self.schedule {
            exchange.tries += 1;
            // A retransmission is the same packet: same Identifier, same
            // authenticator (RFC 5080 §2.2.1).
            if let Err(e) = socket.send(&request).await {
                tracing::debug!(%target, error = %e, "CoA send failed; will retry");
            }
            let deadline = Instant::now() + *wait;
            loop {
                match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                    Err(_) => break,
                    Ok(Err(e)) => {
                        // ICMP port unreachable from an earlier try shows up
                        // here; wait out this try rather than spin.
                        tracing::debug!(%target, error = %e, "CoA receive error");
                        tokio::time::sleep_until(deadline).await;
                        break;
                    }
                    Ok(Ok(n)) => match read_answer(&buf[..n], kind, &request, secret.expose()) {
                        Ok(CoaAnswer::Ack) => {
                            exchange.outcome = Outcome::Ack;
                            return exchange;
                        }
                        Ok(CoaAnswer::Nak(cause)) => {
                            exchange.outcome = Outcome::Nak(cause);
                            return exchange;
                        }
                        Err(bad) => {
                            exchange.bad_answer_count += 1;
                            if exchange.bad_answers.len() < KEPT_BAD_ANSWERS {
                                exchange.bad_answers.push(bad);
                            }
                        }
                    },
                }
            }
        }
        drop(held);
        exchange
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_not_reused_while_held() {
        let client = CoaClient::new(4, vec![Duration::from_millis(10)]);
        let target: SocketAddr = "127.0.0.1:3799".parse().unwrap();
        let held: Vec<HeldId> = (0..256).map(|_| client.hold_id(target).unwrap()).collect();
        let mut ids: Vec<u8> = held.iter().map(|h| h.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 256);
        assert!(client.hold_id(target).is_none(), "all 256 in use");
        // Another NAS has its own space.
        assert!(client.hold_id("127.0.0.2:3799".parse().unwrap()).is_some());
        drop(held);
        assert!(client.hold_id(target).is_some());
    }
}
