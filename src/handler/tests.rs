//! The handler against a store that holds every call at a gate: batching,
//! bounded queues, failures and metrics, for requests answered through a
//! channel (the shim) and with packets (UDP) alike.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::test_store::{nas, GatedStore};
use super::*;
use crate::policy::{AcctStatus, Credential, RejectReason};
use crate::proto::{attr, verify_response, Code, Packet, PacketBuilder};

const SECRET: &str = "testing123";

fn config(max_in_flight: usize, auth_batch_max: usize) -> HandlerConfig {
    HandlerConfig {
        max_in_flight,
        auth_workers: 1,
        auth_batch_max,
        authorize: AuthorizeOptions::default(),
        acct_queue: 16,
        acct_batch_max: 256,
        acct_writers: 1,
        guard: Default::default(),
        nas_in_flight: 0,
        default_interim: 300,
    }
}

struct Fixture {
    store: Arc<GatedStore>,
    metrics: Metrics,
    handler: RequestHandler,
    nas: Arc<Nas>,
    counters: Arc<NasCounters>,
}

fn fixture(config: HandlerConfig) -> Fixture {
    let store = Arc::new(GatedStore::closed());
    let metrics = Metrics::new();
    let (handler, _workers) = RequestHandler::start(store.clone(), metrics.clone(), config);
    let counters = Arc::new(metrics.nas_counters("hotspot1"));
    Fixture {
        store,
        metrics,
        handler,
        nas: Arc::new(nas(SECRET)),
        counters,
    }
}

impl Fixture {
    fn origin(&self) -> Origin {
        Origin {
            nas: self.nas.clone(),
            transport: crate::handler::Transport::Udp,
            counters: self.counters.clone(),
            received: Instant::now(),
        }
    }

    fn facts(&self, username: &str) -> AccessFacts {
        AccessFacts {
            nas_id: self.nas.id,
            router: String::new(),
            nas_name: self.nas.name.clone(),
            nas_site: None,
            tenant_id: crate::model::DEFAULT_TENANT,
            username: username.into(),
            credential: Credential::Pap(b"pw".to_vec()),
            mac: None,
            acct_session_id: None,
            framed_ip: None,
        }
    }

    fn record(&self, session: &str) -> AcctRecord {
        AcctRecord {
            nas_id: self.nas.id,
            router: String::new(),
            tenant_id: crate::model::DEFAULT_TENANT,
            status: AcctStatus::Start,
            acct_session_id: session.into(),
            username: "V1".into(),
            mac: None,
            framed_ip: None,
            session_time: 0,
            input_octets: 0,
            output_octets: 0,
            terminate_cause: None,
            class_voucher_id: None,
            received_at: 0,
            event_at: 0,
        }
    }

    /// Decide on a task of its own, so that the test can go on while it waits.
    fn spawn_decide(&self, username: &str) -> JoinHandle<Result<AccessDecision, Refused>> {
        let (handler, facts, origin) = (self.handler.clone(), self.facts(username), self.origin());
        tokio::spawn(async move { handler.decide(facts, origin).await })
    }

    fn metric(&self, sample: &str) -> f64 {
        self.metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no sample {sample}"))
    }
}

/// Let spawned tasks reach the queue.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn requests_that_wait_are_decided_in_one_batch_and_counted() {
    let f = fixture(config(64, 64));
    let first = f.spawn_decide("V1");
    f.store.auth_calls(1).await;
    // The decider is busy with the first: these queue up behind it.
    let rest: Vec<_> = (2..=6).map(|i| f.spawn_decide(&format!("V{i}"))).collect();
    settle().await;
    f.store.open();
    for task in std::iter::once(first).chain(rest) {
        assert_eq!(
            task.await.unwrap(),
            Ok(AccessDecision::Reject(RejectReason::UnknownVoucher))
        );
    }
    assert_eq!(*f.store.auth_batches.lock().unwrap(), [1, 5]);
    let m = |s: &str| f.metric(s);
    assert_eq!(
        m(r#"rrnet_radius_requests_total{nas="hotspot1",result="reject",type="access_request"}"#),
        6.0
    );
    assert_eq!(
        m(r#"rrnet_radius_rejects_total{nas="hotspot1",reason="unknown_voucher"}"#),
        6.0
    );
    assert_eq!(
        m(r#"rrnet_radius_storage_duration_seconds_count{op="authorize"}"#),
        2.0
    );
    assert_eq!(m("rrnet_radius_access_batch_size_count"), 2.0);
    assert_eq!(m("rrnet_radius_access_batch_size_sum"), 6.0);
    assert_eq!(
        m(r#"rrnet_radius_request_duration_seconds_count{type="access_request"}"#),
        6.0
    );
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_and_counts_an_overload() {
    // One decider, a queue of one, one request per batch.
    let f = fixture(config(1, 1));
    let busy = f.spawn_decide("V1");
    f.store.auth_calls(1).await;
    let queued = f.spawn_decide("V2");
    settle().await;
    let refused = tokio::time::timeout(
        Duration::from_secs(1),
        f.handler.decide(f.facts("V3"), f.origin()),
    )
    .await
    .expect("a full queue answers at once");
    assert_eq!(refused, Err(Refused::Overloaded));
    assert_eq!(
        f.metric(r#"rrnet_radius_drops_total{nas="hotspot1",reason="overload"}"#),
        1.0
    );
    f.store.open();
    assert!(busy.await.unwrap().is_ok());
    assert!(queued.await.unwrap().is_ok());
}

#[tokio::test]
async fn a_storage_failure_is_an_answer_for_a_waiting_task_and_a_counted_drop() {
    let f = fixture(config(64, 64));
    f.store.fail.store(true, Ordering::SeqCst);
    f.store.open();
    assert_eq!(
        f.handler.decide(f.facts("V1"), f.origin()).await,
        Err(Refused::StorageError)
    );
    assert_eq!(
        f.handler
            .store_accounting(f.record("81a00001"), f.origin())
            .await,
        Err(Refused::StorageError)
    );
    assert_eq!(
        f.metric(r#"rrnet_radius_drops_total{nas="hotspot1",reason="storage_error"}"#),
        2.0
    );
    assert_eq!(
        f.metric(r#"rrnet_radius_storage_errors_total{op="authorize"}"#),
        1.0
    );
}

#[tokio::test]
async fn accounting_is_acknowledged_only_once_stored() {
    let f = fixture(config(64, 64));
    let (handler, record, origin) = (f.handler.clone(), f.record("81a00001"), f.origin());
    let mut stored = tokio::spawn(async move { handler.store_accounting(record, origin).await });
    f.store.acct_calls(1).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut stored)
            .await
            .is_err(),
        "acknowledged before the storage call returned"
    );
    f.store.open();
    assert_eq!(stored.await.unwrap(), Ok(()));
    assert_eq!(
        f.metric(r#"rrnet_radius_requests_total{nas="hotspot1",result="start",type="accounting_request"}"#),
        1.0
    );
    assert_eq!(
        f.metric(r#"rrnet_radius_request_duration_seconds_count{type="accounting_request"}"#),
        1.0
    );
}

/// A datagram and a channel request share a batch; the datagram's reply is
/// built from what was kept of the request and verifies with the NAS secret.
#[tokio::test]
async fn packet_and_channel_requests_share_a_batch() {
    let f = fixture(config(64, 64));
    let nas_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = Arc::new(DatagramPort::new(
        UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        DuplicateCache::new(Duration::from_secs(5), 16),
    ));
    let first = f.spawn_decide("V1");
    f.store.auth_calls(1).await;

    let authenticator = [7u8; 16];
    let mut b = PacketBuilder::new(Code::AccessRequest, 99);
    b.add_str(attr::USER_NAME, "V2").unwrap();
    b.add(attr::PROXY_STATE, b"proxy").unwrap();
    b.reserve_message_authenticator();
    let request = b.finish_access_request(&authenticator, SECRET.as_bytes());
    let packet = Packet::decode(&request).unwrap();
    let key = DedupKey {
        source: nas_socket.local_addr().unwrap(),
        identifier: packet.identifier(),
        authenticator: *packet.authenticator(),
    };
    // Marked in progress, as the receive loop does before handing it over.
    assert!(matches!(
        port.dedup.lock().unwrap().check(key, Instant::now()),
        crate::proto::Seen::New
    ));
    f.handler
        .submit_access(
            f.facts("V2"),
            f.origin(),
            Answer::Packet(PacketReply {
                port: port.clone(),
                source: nas_socket.local_addr().unwrap(),
                key,
                echo: RequestEcho::of(&packet),
                signer: Signer::Current,
                mac_key: MacKey::new(SECRET.as_bytes()),
            }),
        )
        .unwrap();
    let third = f.spawn_decide("V3");
    settle().await;
    f.store.open();

    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), nas_socket.recv(&mut buf))
        .await
        .expect("a reply")
        .unwrap();
    let reply = Packet::decode(&buf[..n]).unwrap();
    assert_eq!(reply.code(), Code::AccessReject);
    assert_eq!(reply.identifier(), 99);
    assert_eq!(reply.attr(attr::PROXY_STATE), Some(&b"proxy"[..]));
    assert!(verify_response(&buf[..n], &authenticator, SECRET.as_bytes(), true).is_ok());
    assert!(first.await.unwrap().is_ok());
    assert!(third.await.unwrap().is_ok());
    assert_eq!(*f.store.auth_batches.lock().unwrap(), [1, 2]);
    assert_eq!(
        f.metric(
            r#"rrnet_radius_requests_total{nas="hotspot1",result="reject",type="access_request"}"#
        ),
        3.0
    );
    // The reply was kept for retransmissions.
    let cached = match port.dedup.lock().unwrap().check(key, Instant::now()) {
        crate::proto::Seen::Answered(r) => r.to_vec(),
        _ => panic!("reply not cached"),
    };
    assert_eq!(cached, &buf[..n]);
}

#[tokio::test]
async fn a_datagram_refused_for_overload_is_forgotten_by_the_duplicate_cache() {
    let f = fixture(config(1, 1));
    let port = Arc::new(DatagramPort::new(
        UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        DuplicateCache::new(Duration::from_secs(5), 16),
    ));
    let busy = f.spawn_decide("V1");
    f.store.auth_calls(1).await;
    let queued = f.spawn_decide("V2");
    settle().await;
    let request = PacketBuilder::new(Code::AccessRequest, 1).finish_access_request(&[1; 16], b"s");
    let packet = Packet::decode(&request).unwrap();
    let key = DedupKey {
        source: "127.0.0.1:9".parse().unwrap(),
        identifier: 1,
        authenticator: [1; 16],
    };
    let now = Instant::now();
    assert!(matches!(
        port.dedup.lock().unwrap().check(key, now),
        crate::proto::Seen::New
    ));
    let refused = f.handler.submit_access(
        f.facts("V3"),
        f.origin(),
        Answer::Packet(PacketReply {
            port: port.clone(),
            source: key.source,
            key,
            echo: RequestEcho::of(&packet),
            signer: Signer::Current,
            mac_key: MacKey::new(b"s"),
        }),
    );
    assert_eq!(refused, Err(Refused::Overloaded));
    // Forgotten: the retransmission is new work, not "in progress".
    assert!(matches!(
        port.dedup.lock().unwrap().check(key, now),
        crate::proto::Seen::New
    ));
    f.store.open();
    assert!(busy.await.unwrap().is_ok());
    assert!(queued.await.unwrap().is_ok());
}
