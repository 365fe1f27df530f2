//! The server's side of webhooks: poll the `deliveries` table, POST what is
//! due, record each outcome. Like the CoA worker, it needs no notification
//! path: an event written by another process (the CLI's `voucher revoke`) or
//! another server on the same PostgreSQL is found by the next poll.
//!
//! Bounds: at most `max_in_flight` attempts at once, and a webhook with an
//! attempt in flight gets no new claim until it ends, each claim taking at
//! most `per_webhook` of its deliveries — so a receiver that hangs holds at
//! most `per_webhook` slots for one timeout, and every other webhook goes on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{
    event_id, retry_delay, signature, DeliveryJob, DeliveryOutcome, PostOutcome, WebhookClient,
    WebhookMetrics,
};
use crate::handler::unix_now;
use crate::store::Store;

/// Settings of the delivery worker (`[webhooks]` in the config file).
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// How often the table is polled.
    pub poll: Duration,
    /// Attempts in flight at once, over all webhooks.
    pub max_in_flight: usize,
    /// Deliveries of one webhook claimed at once.
    pub per_webhook: usize,
    /// The first retry's delay (seconds); doubled per attempt.
    pub retry_base: u64,
    /// The longest delay between attempts (seconds).
    pub retry_max: u64,
    /// A delivery not made this long (seconds) after its event is given up.
    pub give_up: u64,
    /// One attempt's deadline: connect, TLS, request and answer.
    pub timeout: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            poll: Duration::from_millis(500),
            max_in_flight: 32,
            per_webhook: 4,
            retry_base: 10,
            retry_max: 3600,
            give_up: 86_400,
            timeout: Duration::from_secs(10),
        }
    }
}

impl WorkerSettings {
    /// How long a claimed delivery is left alone: longer than one attempt, so
    /// another server does not send it meanwhile; after it, a claim by a server
    /// that stopped mid-attempt is taken again.
    fn lease(&self) -> i64 {
        i64::try_from(self.timeout.as_secs()).unwrap_or(i64::MAX / 4) + 50
    }
}

/// The delivery worker: one per server process.
pub struct DeliveryWorker {
    pub store: Arc<dyn Store>,
    pub client: Arc<WebhookClient>,
    pub metrics: WebhookMetrics,
    pub settings: WorkerSettings,
}

/// How often the backlog gauge is read.
const BACKLOG_EVERY: Duration = Duration::from_secs(10);

impl DeliveryWorker {
    pub fn new(store: Arc<dyn Store>, metrics: WebhookMetrics, settings: WorkerSettings) -> Self {
        DeliveryWorker {
            client: Arc::new(WebhookClient::new(settings.timeout)),
            store,
            metrics,
            settings,
        }
    }

    /// Poll and deliver until `stop` turns true; attempts in flight then get
    /// up to 2 s (the rest are claimed again after their lease).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let worker = Arc::new(self);
        let mut tick = tokio::time::interval(worker.settings.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut running: JoinSet<i64> = JoinSet::new();
        // Attempts in flight by webhook id.
        let mut busy: HashMap<i64, usize> = HashMap::new();
        let mut failing: u32 = 0;
        let mut backlog_read: Option<Instant> = None;
        if *stop.borrow() {
            return;
        }
        loop {
            tokio::select! {
                biased;
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
                Some(done) = running.join_next(), if !running.is_empty() => {
                    if let Ok(webhook) = done {
                        if let Some(n) = busy.get_mut(&webhook) {
                            *n = n.saturating_sub(1);
                            if *n == 0 {
                                busy.remove(&webhook);
                            }
                        }
                    }
                }
                _ = tick.tick() => {
                    if backlog_read.is_none_or(|t| t.elapsed() >= BACKLOG_EVERY) {
                        backlog_read = Some(Instant::now());
                        if let Ok(n) = worker.store.delivery_backlog().await {
                            worker.metrics.backlog.set(n);
                        }
                    }
                    let room = worker.settings.max_in_flight.saturating_sub(running.len());
                    if room == 0 {
                        continue;
                    }
                    let now = unix_now();
                    let skip: Vec<i64> = busy.keys().copied().collect();
                    let claimed = worker
                        .store
                        .claim_deliveries(
                            now,
                            now + worker.settings.lease(),
                            u32::try_from(room).unwrap_or(u32::MAX),
                            u32::try_from(worker.settings.per_webhook.max(1)).unwrap_or(1),
                            &skip,
                        )
                        .await;
                    let jobs = match claimed {
                        Ok(j) => {
                            failing = 0;
                            j
                        }
                        Err(e) => {
                            if failing.is_multiple_of(120) {
                                tracing::warn!(error = %e, failed_polls = failing + 1, "reading the webhook deliveries failed; they wait in the database");
                            }
                            failing = failing.saturating_add(1);
                            continue;
                        }
                    };
                    for job in jobs {
                        *busy.entry(job.webhook_id).or_default() += 1;
                        let w = worker.clone();
                        running.spawn(async move {
                            let webhook = job.webhook_id;
                            w.attempt(job).await;
                            webhook
                        });
                    }
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while running.join_next().await.is_some() {}
        })
        .await;
        running.abort_all();
    }

    /// One attempt at one delivery, and its outcome stored.
    async fn attempt(&self, job: DeliveryJob) {
        let body = job.event.body();
        let t = unix_now();
        let headers = [
            (
                "rrnet-signature",
                signature(&job.secret, t, body.as_bytes()),
            ),
            ("rrnet-event-id", event_id(job.event.id)),
            ("rrnet-event-type", job.event.event_type.clone()),
            ("rrnet-delivery-attempt", (job.attempts + 1).to_string()),
        ];
        let outcome = match url::Url::parse(&job.url) {
            Ok(url) => self.client.post(&url, &headers, body).await,
            Err(e) => PostOutcome::Failed(format!("bad URL: {e}")),
        };
        let now = unix_now();
        let attempt = job.attempts + 1;
        let (status, error) = match &outcome {
            PostOutcome::Status(s) if (200..300).contains(s) => (Some(i64::from(*s)), None),
            PostOutcome::Status(s) => (Some(i64::from(*s)), Some(format!("HTTP {s}"))),
            PostOutcome::Failed(e) => (None, Some(e.clone())),
        };
        let s = &self.settings;
        let result = if error.is_none() {
            DeliveryOutcome {
                status,
                error: None,
                state: "delivered",
                next_attempt_at: None,
            }
        } else if now.saturating_sub(job.created_at) >= i64::try_from(s.give_up).unwrap_or(i64::MAX)
        {
            DeliveryOutcome {
                status,
                error: error.clone(),
                state: "failed",
                next_attempt_at: None,
            }
        } else {
            let delay = retry_delay(attempt, s.retry_base, s.retry_max, rand::random::<f64>());
            DeliveryOutcome {
                status,
                error: error.clone(),
                state: "pending",
                next_attempt_at: Some(now + i64::try_from(delay).unwrap_or(i64::MAX / 4)),
            }
        };
        let label = match result.state {
            "delivered" => "delivered",
            "failed" => "failed",
            _ => "retry",
        };
        self.metrics.deliveries.with_label_values(&[label]).inc();
        // The URL is the operator's own setting; the secret is never logged.
        match &result.error {
            None => tracing::debug!(
                webhook = job.webhook_id,
                event = job.event.id,
                attempt,
                "webhook delivered"
            ),
            Some(e) => tracing::info!(
                webhook = job.webhook_id,
                event = job.event.id,
                attempt,
                result = label,
                error = e.as_str(),
                "webhook delivery failed"
            ),
        }
        if let Err(e) = self.store.finish_delivery(job.id, &result, now).await {
            tracing::warn!(error = %e, delivery = job.id, "recording a webhook delivery failed; it is tried again after its lease");
        }
    }
}
