//! Webhook metrics, registered on the server's registry.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct WebhookMetrics {
    /// `rrnet_radius_webhook_deliveries_total{result}`: attempts by result —
    /// delivered, retry (failed, to be tried again) or failed (given up).
    pub deliveries: IntCounterVec,
    /// `rrnet_radius_webhook_backlog`: deliveries waiting (pending), as last read.
    pub backlog: IntGauge,
}

impl WebhookMetrics {
    pub fn register(registry: &Registry) -> WebhookMetrics {
        let m = WebhookMetrics {
            deliveries: IntCounterVec::new(
                Opts::new(
                    "rrnet_radius_webhook_deliveries_total",
                    "Webhook delivery attempts by result (delivered, retry, failed)",
                ),
                &["result"],
            )
            .expect("valid metric"),
            backlog: IntGauge::new(
                "rrnet_radius_webhook_backlog",
                "Webhook deliveries waiting to be sent or retried",
            )
            .expect("valid metric"),
        };
        // A second registration (two servers on one registry in a test) keeps the first.
        let _ = registry.register(Box::new(m.deliveries.clone()));
        let _ = registry.register(Box::new(m.backlog.clone()));
        m
    }
}
