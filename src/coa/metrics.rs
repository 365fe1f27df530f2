//! CoA/Disconnect metrics, registered on the server's registry. Labels stay
//! bounded: NAS names, two kinds, a few results, Error-Cause names from
//! RFC 5176's list (anything else is `other`).

use prometheus::{IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct CoaMetrics {
    /// `rrnet_radius_coa_requests_total{nas, kind, result, error_cause}`:
    /// result is ack, nak, timeout, unreachable or error; error_cause names
    /// the Error-Cause of a NAK (`none` when it had none), empty otherwise.
    pub requests: IntCounterVec,
    /// `rrnet_radius_coa_bad_answers_total{nas, reason}`: datagrams on a
    /// request's socket that were not its answer (forged, malformed, …).
    pub bad_answers: IntCounterVec,
}

impl CoaMetrics {
    /// Metrics on `registry`.
    pub fn register(registry: &Registry) -> CoaMetrics {
        let m = CoaMetrics::detached();
        // A second registration (a test building two servers on one registry)
        // keeps the first; the counters here then go unexported.
        let _ = registry.register(Box::new(m.requests.clone()));
        let _ = registry.register(Box::new(m.bad_answers.clone()));
        m
    }

    /// Metrics on no registry (the CLI).
    pub fn detached() -> CoaMetrics {
        CoaMetrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "rrnet_radius_coa_requests_total",
                    "CoA and Disconnect requests sent to routers, by NAS, kind and result",
                ),
                &["nas", "kind", "result", "error_cause"],
            )
            .expect("valid metric"),
            bad_answers: IntCounterVec::new(
                Opts::new(
                    "rrnet_radius_coa_bad_answers_total",
                    "Datagrams received for a CoA or Disconnect request that were not its answer",
                ),
                &["nas", "reason"],
            )
            .expect("valid metric"),
        }
    }
}
