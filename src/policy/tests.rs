//! Decision table: one row per case, each a name, a change to a baseline request
//! and voucher, and the exact decision expected.
//!
//! The baseline is a voucher that logged in an hour ago, on a plan with no limits,
//! asked for with the right PAP password from `MAC_A`; it is accepted with only a
//! Class. Each row changes what it is about and nothing else.

use md5::{Digest, Md5};

use super::RejectReason::*;
use super::ReplyAttribute::*;
use super::*;
use crate::model::{Plan, Voucher, VoucherState, DEFAULT_TENANT};

const NOW: Timestamp = 1_700_000_000;
const VOUCHER_ID: i64 = 42;
const PASSWORD: &str = "7QK2M9XD";
const MAC_A: &str = "AA:00:00:00:00:0A";
const MAC_B: &str = "BB:00:00:00:00:0B";
const MAC_C: &str = "CC:00:00:00:00:0C";
const GIB: u64 = 1 << 30;
const DAY: u64 = 86_400;

struct Input {
    facts: AccessFacts,
    snapshot: Option<VoucherSnapshot>,
    now: Timestamp,
}

impl Input {
    fn baseline() -> Self {
        let plan = Plan {
            id: 7,
            tenant_id: DEFAULT_TENANT,
            sites: Vec::new(),
            name: "unlimited".into(),
            time_quota: None,
            validity: None,
            expires_at: None,
            data_quota: None,
            rate_limit: None,
            after_data_rate_limit: None,
            shared_users: 1,
            mac_lock: false,
            idle_timeout: None,
            interim_interval: None,
            mikrotik_group: None,
            address_list: None,
            price: None,
            created_at: NOW - 10 * DAY as i64,
        };
        let voucher = Voucher {
            id: VOUCHER_ID,
            tenant_id: DEFAULT_TENANT,
            code: PASSWORD.into(),
            password: PASSWORD.into(),
            plan_id: plan.id,
            plan_name: plan.name.clone(),
            site: None,
            state: VoucherState::Active,
            first_login_at: Some(NOW - 3600),
            valid_until: None,
            used_seconds: 0,
            used_bytes: 0,
            bound_mac: None,
            batch: None,
            created_at: NOW - DAY as i64,
        };
        Input {
            facts: AccessFacts {
                nas_id: 1,
                router: String::new(),
                nas_name: "hs-cafe".into(),
                nas_site: None,
                tenant_id: DEFAULT_TENANT,
                username: PASSWORD.into(),
                credential: Credential::Pap(PASSWORD.as_bytes().to_vec()),
                mac: Some(MAC_A.into()),
                acct_session_id: Some("81b00001".into()),
                framed_ip: Some("10.5.50.23".into()),
            },
            snapshot: Some(VoucherSnapshot {
                voucher,
                plan,
                active_macs: Vec::new(),
            }),
            now: NOW,
        }
    }

    fn plan(&mut self) -> &mut Plan {
        &mut self
            .snapshot
            .as_mut()
            .expect("row removed the voucher")
            .plan
    }

    fn voucher(&mut self) -> &mut Voucher {
        &mut self
            .snapshot
            .as_mut()
            .expect("row removed the voucher")
            .voucher
    }

    fn active(&mut self, macs: &[&str]) {
        self.snapshot
            .as_mut()
            .expect("row removed the voucher")
            .active_macs = macs.iter().map(|m| m.to_string()).collect();
    }

    fn first_login(&mut self) {
        let v = self.voucher();
        v.first_login_at = None;
        v.valid_until = None;
    }
}

/// A CHAP credential built the way a NAS does (RFC 1994 §4.1), with `md-5`
/// directly rather than through the code under test.
fn chap(ident: u8, password: &str) -> Credential {
    let challenge = b"\x9a\x1c\x03\x77hotspot-chal\x00\x01".to_vec();
    let mut buf = vec![ident];
    buf.extend_from_slice(password.as_bytes());
    buf.extend_from_slice(&challenge);
    Credential::Chap {
        ident,
        response: Md5::digest(&buf).into(),
        challenge,
    }
}

fn reject(reason: RejectReason) -> AccessDecision {
    AccessDecision::Reject(reason)
}

/// An accept of an already-activated voucher. `reply` lists the attributes before
/// Class; Class is always last and always the same, so it is appended here.
fn accept(reply: Vec<ReplyAttribute>) -> AccessDecision {
    accept_with(reply, None, None, None)
}

fn accept_with(
    mut reply: Vec<ReplyAttribute>,
    activation: Option<(Timestamp, Option<Timestamp>)>,
    bind_mac: Option<&str>,
    interim_interval: Option<u32>,
) -> AccessDecision {
    reply.push(Class(format!("rrnet:v1:{VOUCHER_ID}")));
    AccessDecision::Accept(Grant {
        voucher_id: VOUCHER_ID,
        reply,
        activation: activation.map(|(first_login_at, valid_until)| Activation {
            first_login_at,
            valid_until,
        }),
        bind_mac: bind_mac.map(str::to_string),
        interim_interval,
    })
}

fn first_login(reply: Vec<ReplyAttribute>, valid_until: Option<Timestamp>) -> AccessDecision {
    accept_with(reply, Some((NOW, valid_until)), None, None)
}

struct Case {
    name: &'static str,
    given: fn(&mut Input),
    expect: AccessDecision,
}

fn case(name: &'static str, given: fn(&mut Input), expect: AccessDecision) -> Case {
    Case {
        name,
        given,
        expect,
    }
}

fn cases() -> Vec<Case> {
    vec![
        // --- 1. voucher exists (in the NAS's scope) ---
        case("baseline accepts", |_| {}, accept(vec![])),
        case("no voucher", |i| i.snapshot = None, reject(UnknownVoucher)),
        case(
            "no voucher beats no password",
            |i| {
                i.snapshot = None;
                i.facts.credential = Credential::Missing;
            },
            reject(UnknownVoucher),
        ),
        // --- site scope of the plan (after the password, before the state) ---
        case(
            "plan for other sites",
            |i| {
                i.plan().sites = vec!["north".into(), "south".into()];
                i.facts.nas_site = Some("east".into());
            },
            reject(WrongSite),
        ),
        case(
            "plan for some sites, NAS without a site",
            |i| i.plan().sites = vec!["north".into()],
            reject(WrongSite),
        ),
        case(
            "plan for this site",
            |i| {
                i.plan().sites = vec!["north".into(), "south".into()];
                i.facts.nas_site = Some("south".into());
            },
            accept(vec![]),
        ),
        case(
            "plan for other sites, wrong password",
            |i| {
                i.plan().sites = vec!["north".into()];
                i.facts.credential = Credential::Pap(b"7QK2M9XE".to_vec());
            },
            reject(WrongPassword),
        ),
        // --- 2. password ---
        case(
            "no password",
            |i| i.facts.credential = Credential::Missing,
            reject(MissingPassword),
        ),
        case(
            "PAP wrong password, same length",
            |i| i.facts.credential = Credential::Pap(b"7QK2M9XE".to_vec()),
            reject(WrongPassword),
        ),
        case(
            "PAP password one byte short",
            |i| i.facts.credential = Credential::Pap(b"7QK2M9X".to_vec()),
            reject(WrongPassword),
        ),
        case(
            "PAP password one byte long",
            |i| i.facts.credential = Credential::Pap(b"7QK2M9XDD".to_vec()),
            reject(WrongPassword),
        ),
        case(
            "PAP empty password",
            |i| i.facts.credential = Credential::Pap(Vec::new()),
            reject(WrongPassword),
        ),
        case(
            "PAP password differing from the code",
            |i| {
                i.voucher().password = "s3cret".into();
                i.facts.credential = Credential::Pap(b"s3cret".to_vec());
            },
            accept(vec![]),
        ),
        case(
            "PAP sending the code when the password differs",
            |i| i.voucher().password = "s3cret".into(),
            reject(WrongPassword),
        ),
        case(
            "CHAP right password",
            |i| i.facts.credential = chap(0x5c, PASSWORD),
            accept(vec![]),
        ),
        case(
            "CHAP wrong password",
            |i| i.facts.credential = chap(0x5c, "7QK2M9XE"),
            reject(WrongPassword),
        ),
        case(
            "no password on a revoked voucher",
            |i| {
                i.voucher().state = VoucherState::Revoked;
                i.facts.credential = Credential::Missing;
            },
            reject(MissingPassword),
        ),
        case(
            "wrong password on a revoked voucher",
            |i| {
                i.voucher().state = VoucherState::Revoked;
                i.facts.credential = Credential::Pap(b"guess".to_vec());
            },
            reject(WrongPassword),
        ),
        case(
            "wrong CHAP password on an expired, used-up voucher",
            |i| {
                i.plan().expires_at = Some(NOW - 1);
                i.plan().time_quota = Some(60);
                i.voucher().used_seconds = 60;
                i.facts.credential = chap(1, "guess");
            },
            reject(WrongPassword),
        ),
        // --- 3. revoked ---
        case(
            "revoked",
            |i| i.voucher().state = VoucherState::Revoked,
            reject(Revoked),
        ),
        case(
            "revoked and expired",
            |i| {
                i.voucher().state = VoucherState::Revoked;
                i.plan().expires_at = Some(NOW - 100);
            },
            reject(Revoked),
        ),
        case(
            "revoked and out of data",
            |i| {
                i.voucher().state = VoucherState::Revoked;
                i.plan().data_quota = Some(GIB);
                i.voucher().used_bytes = GIB;
            },
            reject(Revoked),
        ),
        // --- 4. absolute expiry ---
        case(
            "expires this second",
            |i| i.plan().expires_at = Some(NOW),
            reject(Expired),
        ),
        case(
            "expired a second ago",
            |i| i.plan().expires_at = Some(NOW - 1),
            reject(Expired),
        ),
        case(
            "expires next second",
            |i| i.plan().expires_at = Some(NOW + 1),
            accept(vec![SessionTimeout(1)]),
        ),
        case(
            "expired and validity ended",
            |i| {
                i.plan().expires_at = Some(NOW - 5);
                i.voucher().valid_until = Some(NOW - 10);
            },
            reject(Expired),
        ),
        case(
            "expired before first login",
            |i| {
                i.first_login();
                i.plan().expires_at = Some(NOW);
                i.plan().validity = Some(DAY);
            },
            reject(Expired),
        ),
        // --- 5. validity since first login ---
        case(
            "validity ends this second",
            |i| i.voucher().valid_until = Some(NOW),
            reject(ValidityEnded),
        ),
        case(
            "validity ended an hour ago",
            |i| i.voucher().valid_until = Some(NOW - 3600),
            reject(ValidityEnded),
        ),
        case(
            "validity ends next second",
            |i| i.voucher().valid_until = Some(NOW + 1),
            accept(vec![SessionTimeout(1)]),
        ),
        case(
            "validity ended and time used up",
            |i| {
                i.voucher().valid_until = Some(NOW - 1);
                i.plan().time_quota = Some(3600);
                i.voucher().used_seconds = 3600;
            },
            reject(ValidityEnded),
        ),
        case(
            "zero validity on first login",
            |i| {
                i.first_login();
                i.plan().validity = Some(0);
            },
            reject(ValidityEnded),
        ),
        // --- 6. time quota ---
        case(
            "time used exactly up",
            |i| {
                i.plan().time_quota = Some(3600);
                i.voucher().used_seconds = 3600;
            },
            reject(TimeQuotaUsed),
        ),
        case(
            "time used past the quota",
            |i| {
                i.plan().time_quota = Some(3600);
                i.voucher().used_seconds = 3725;
            },
            reject(TimeQuotaUsed),
        ),
        case(
            "one second of time left",
            |i| {
                i.plan().time_quota = Some(3600);
                i.voucher().used_seconds = 3599;
            },
            accept(vec![SessionTimeout(1)]),
        ),
        case(
            "zero time quota, never used",
            |i| {
                i.first_login();
                i.plan().time_quota = Some(0);
            },
            reject(TimeQuotaUsed),
        ),
        case(
            "time and data both used up",
            |i| {
                i.plan().time_quota = Some(60);
                i.voucher().used_seconds = 60;
                i.plan().data_quota = Some(1000);
                i.voucher().used_bytes = 1000;
            },
            reject(TimeQuotaUsed),
        ),
        // --- 7. data quota ---
        case(
            "data used exactly up",
            |i| {
                i.plan().data_quota = Some(GIB);
                i.voucher().used_bytes = GIB;
            },
            reject(DataQuotaUsed),
        ),
        case(
            "data used exactly up above 4 GiB",
            |i| {
                i.plan().data_quota = Some(6 * GIB);
                i.voucher().used_bytes = 6 * GIB;
            },
            reject(DataQuotaUsed),
        ),
        case(
            "data used past the quota",
            |i| {
                i.plan().data_quota = Some(GIB);
                i.voucher().used_bytes = GIB + 1;
            },
            reject(DataQuotaUsed),
        ),
        // --- 7b. fair use: data used up slows instead of refusing ---
        case(
            "fair use: data used up logs in at the slow rate, no data limit",
            |i| {
                i.plan().data_quota = Some(GIB);
                i.plan().rate_limit = Some("2M/2M".into());
                i.plan().after_data_rate_limit = Some("256k/256k".into());
                i.voucher().used_bytes = GIB + 5;
            },
            accept(vec![MikrotikRateLimit("256k/256k".into())]),
        ),
        case(
            "fair use: data left gets the plan rate and no data limit",
            |i| {
                i.plan().data_quota = Some(GIB);
                i.plan().rate_limit = Some("2M/2M".into());
                i.plan().after_data_rate_limit = Some("256k/256k".into());
                i.voucher().used_bytes = 10;
            },
            accept(vec![MikrotikRateLimit("2M/2M".into())]),
        ),
        case(
            "fair use does not lift the time quota",
            |i| {
                i.plan().data_quota = Some(GIB);
                i.plan().after_data_rate_limit = Some("256k/256k".into());
                i.voucher().used_bytes = GIB;
                i.plan().time_quota = Some(60);
                i.voucher().used_seconds = 60;
            },
            reject(TimeQuotaUsed),
        ),
        case(
            "an empty fair-use rate is no fair use",
            |i| {
                i.plan().data_quota = Some(GIB);
                i.plan().after_data_rate_limit = Some(String::new());
                i.voucher().used_bytes = GIB;
            },
            reject(DataQuotaUsed),
        ),
        case(
            "one byte of data left",
            |i| {
                i.plan().data_quota = Some(GIB);
                i.voucher().used_bytes = GIB - 1;
            },
            accept(vec![MikrotikTotalLimit(1)]),
        ),
        case(
            "5 GiB quota, nothing used",
            |i| i.plan().data_quota = Some(5 * GIB),
            accept(vec![
                MikrotikTotalLimit(GIB as u32),
                MikrotikTotalLimitGigawords(1),
            ]),
        ),
        case(
            "exactly 4 GiB left",
            |i| {
                i.plan().data_quota = Some(5 * GIB);
                i.voucher().used_bytes = GIB;
            },
            accept(vec![MikrotikTotalLimit(0), MikrotikTotalLimitGigawords(1)]),
        ),
        case(
            "4 GiB minus one byte left",
            |i| {
                i.plan().data_quota = Some(5 * GIB);
                i.voucher().used_bytes = GIB + 1;
            },
            accept(vec![MikrotikTotalLimit(u32::MAX)]),
        ),
        case(
            "usage above 4 GiB, 4 GiB minus 5 bytes left",
            |i| {
                i.plan().data_quota = Some(10 * GIB);
                i.voucher().used_bytes = 6 * GIB + 5;
            },
            accept(vec![MikrotikTotalLimit(u32::MAX - 4)]),
        ),
        case(
            "12 GiB + 7 bytes left",
            |i| i.plan().data_quota = Some(12 * GIB + 7),
            accept(vec![MikrotikTotalLimit(7), MikrotikTotalLimitGigawords(3)]),
        ),
        case(
            "data used up and locked to another MAC",
            |i| {
                i.plan().data_quota = Some(GIB);
                i.voucher().used_bytes = GIB;
                i.plan().mac_lock = true;
                i.voucher().bound_mac = Some(MAC_B.into());
            },
            reject(DataQuotaUsed),
        ),
        // --- 8. MAC lock ---
        case(
            "MAC lock binds on first login",
            |i| {
                i.first_login();
                i.plan().mac_lock = true;
            },
            accept_with(vec![], Some((NOW, None)), Some(MAC_A), None),
        ),
        case(
            "MAC lock, bound to this MAC",
            |i| {
                i.plan().mac_lock = true;
                i.voucher().bound_mac = Some(MAC_A.into());
            },
            accept(vec![]),
        ),
        case(
            "MAC lock, bound to another MAC",
            |i| {
                i.plan().mac_lock = true;
                i.voucher().bound_mac = Some(MAC_B.into());
            },
            reject(MacLocked),
        ),
        case(
            "MAC lock, activated but not yet bound, binds now",
            |i| i.plan().mac_lock = true,
            accept_with(vec![], None, Some(MAC_A), None),
        ),
        case(
            "MAC lock, request without MAC",
            |i| {
                i.plan().mac_lock = true;
                i.facts.mac = None;
            },
            reject(MissingMac),
        ),
        case(
            "MAC lock, bound, request without MAC",
            |i| {
                i.plan().mac_lock = true;
                i.voucher().bound_mac = Some(MAC_A.into());
                i.facts.mac = None;
            },
            reject(MissingMac),
        ),
        case(
            "no MAC lock ignores an old binding",
            |i| i.voucher().bound_mac = Some(MAC_B.into()),
            accept(vec![]),
        ),
        case(
            "locked to another MAC and shared users full",
            |i| {
                i.plan().mac_lock = true;
                i.voucher().bound_mac = Some(MAC_B.into());
                i.active(&[MAC_B]);
            },
            reject(MacLocked),
        ),
        // --- 9. shared users ---
        case(
            "single device, another MAC online",
            |i| i.active(&[MAC_B]),
            reject(SharedUsersLimit),
        ),
        case(
            "single device, same MAC logs in again",
            |i| i.active(&[MAC_A]),
            accept(vec![]),
        ),
        case(
            "two devices, two other MACs online",
            |i| {
                i.plan().shared_users = 2;
                i.active(&[MAC_B, MAC_C]);
            },
            reject(SharedUsersLimit),
        ),
        case(
            "two devices, this one and one other online",
            |i| {
                i.plan().shared_users = 2;
                i.active(&[MAC_A, MAC_B]);
            },
            accept(vec![]),
        ),
        case(
            "two devices, one other MAC listed twice",
            |i| {
                i.plan().shared_users = 2;
                i.active(&[MAC_B, MAC_B]);
            },
            accept(vec![]),
        ),
        case(
            "shared users 0 counts as 1, other MAC online",
            |i| {
                i.plan().shared_users = 0;
                i.active(&[MAC_B]);
            },
            reject(SharedUsersLimit),
        ),
        case(
            "shared users 0 counts as 1, nobody online",
            |i| i.plan().shared_users = 0,
            accept(vec![]),
        ),
        case(
            "no MAC on request, one device online",
            |i| {
                i.facts.mac = None;
                i.active(&[MAC_A]);
            },
            reject(SharedUsersLimit),
        ),
        case(
            "no MAC on request, nobody online",
            |i| i.facts.mac = None,
            accept(vec![]),
        ),
        // --- 10. accept: activation and Session-Timeout ---
        case(
            "first login, 1 day validity",
            |i| {
                i.first_login();
                i.plan().validity = Some(DAY);
            },
            first_login(vec![SessionTimeout(DAY as u32)], Some(NOW + DAY as i64)),
        ),
        case(
            "first login, validity capped by absolute expiry",
            |i| {
                i.first_login();
                i.plan().validity = Some(DAY);
                i.plan().expires_at = Some(NOW + 600);
            },
            first_login(vec![SessionTimeout(600)], Some(NOW + 600)),
        ),
        case(
            "first login, only absolute expiry",
            |i| {
                i.first_login();
                i.plan().expires_at = Some(NOW + 7200);
            },
            first_login(vec![SessionTimeout(7200)], Some(NOW + 7200)),
        ),
        case(
            "first login, no validity or expiry",
            |i| i.first_login(),
            first_login(vec![], None),
        ),
        case(
            "first login, time quota only",
            |i| {
                i.first_login();
                i.plan().time_quota = Some(3600);
            },
            first_login(vec![SessionTimeout(3600)], None),
        ),
        case(
            "later login keeps the stored valid_until",
            |i| {
                i.plan().validity = Some(DAY);
                i.voucher().valid_until = Some(NOW + 1800);
            },
            accept(vec![SessionTimeout(1800)]),
        ),
        case(
            "Session-Timeout is the time left when that is smaller",
            |i| {
                i.plan().time_quota = Some(3600);
                i.voucher().used_seconds = 3000;
                i.voucher().valid_until = Some(NOW + 1000);
                i.plan().expires_at = Some(NOW + 2000);
            },
            accept(vec![SessionTimeout(600)]),
        ),
        case(
            "Session-Timeout is the time to validity end when that is smaller",
            |i| {
                i.plan().time_quota = Some(3600);
                i.voucher().valid_until = Some(NOW + 900);
                i.plan().expires_at = Some(NOW + 2000);
            },
            accept(vec![SessionTimeout(900)]),
        ),
        case(
            "Session-Timeout is the time to expiry when that is smaller",
            |i| {
                i.plan().time_quota = Some(3600);
                i.voucher().valid_until = Some(NOW + 900);
                i.plan().expires_at = Some(NOW + 300);
            },
            accept(vec![SessionTimeout(300)]),
        ),
        case(
            "Session-Timeout clamps to u32::MAX",
            |i| i.plan().time_quota = Some(u64::from(u32::MAX) + 10),
            accept(vec![SessionTimeout(u32::MAX)]),
        ),
        case(
            "huge validity does not overflow",
            |i| {
                i.first_login();
                i.plan().validity = Some(u64::MAX);
            },
            first_login(vec![SessionTimeout(u32::MAX)], Some(i64::MAX)),
        ),
        // --- 10. accept: reply attributes ---
        case(
            "every attribute, in wire order",
            |i| {
                let p = i.plan();
                p.time_quota = Some(7200);
                p.data_quota = Some(5 * GIB + 100);
                p.rate_limit = Some("2M/4M".into());
                p.idle_timeout = Some(300);
                p.interim_interval = Some(120);
                p.mikrotik_group = Some("day-pass".into());
                p.address_list = Some("vouchers".into());
                i.voucher().used_seconds = 200;
                i.voucher().used_bytes = 50;
            },
            accept_with(
                vec![
                    SessionTimeout(7000),
                    IdleTimeout(300),
                    AcctInterimInterval(120),
                    MikrotikRateLimit("2M/4M".into()),
                    MikrotikTotalLimit(GIB as u32 + 50),
                    MikrotikTotalLimitGigawords(1),
                    MikrotikGroup("day-pass".into()),
                    MikrotikAddressList("vouchers".into()),
                ],
                None,
                None,
                Some(120),
            ),
        ),
        case(
            "empty strings in the plan send nothing",
            |i| {
                let p = i.plan();
                p.rate_limit = Some(String::new());
                p.mikrotik_group = Some(String::new());
                p.address_list = Some(String::new());
            },
            accept(vec![]),
        ),
    ]
}

#[test]
fn decision_table() {
    let mut failures = Vec::new();
    for case in cases() {
        let mut input = Input::baseline();
        (case.given)(&mut input);
        let got = decide(&input.facts, input.snapshot.as_ref(), input.now);
        if got != case.expect {
            failures.push(format!(
                "{}:\n   expected {:?}\n   got      {:?}",
                case.name, case.expect, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn case_names_are_unique() {
    let mut names: Vec<_> = cases().iter().map(|c| c.name).collect();
    let total = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), total);
}

/// Every reject reason has at least one row, so a new reason cannot be added
/// without saying where it sits in the order. `TooManyFailures` is the login
/// guard's, given before any decision (handler::guard has its tests).
#[test]
fn every_reject_reason_has_a_row() {
    let table = cases();
    for reason in RejectReason::ALL
        .into_iter()
        .filter(|r| *r != RejectReason::TooManyFailures)
    {
        assert!(
            table.iter().any(|c| c.expect == reject(reason)),
            "no row rejects with {reason:?}"
        );
    }
}

#[test]
fn reject_labels_round_trip() {
    for reason in RejectReason::ALL {
        assert_eq!(RejectReason::from_label(reason.label()), Some(reason));
        assert!(!reason.message().is_empty());
    }
}

#[test]
fn class_round_trips() {
    assert_eq!(
        voucher_id_from_class(class_for_voucher(VOUCHER_ID).as_bytes()),
        Some(VOUCHER_ID)
    );
    assert_eq!(voucher_id_from_class(b"other:42"), None);
}

/// The password must not reach a log line through the request facts either.
#[test]
fn access_facts_debug_hides_the_password() {
    let mut input = Input::baseline();
    let shown = format!("{:?}", input.facts);
    assert!(
        !shown.contains(&format!("{:?}", PASSWORD.as_bytes())),
        "{shown}"
    );
    assert!(shown.contains("Pap(****)"), "{shown}");
    input.facts.credential = chap(3, PASSWORD);
    let shown = format!("{:#?}", input.facts);
    assert!(shown.contains("Chap(****)"), "{shown}");
}

mod session_changes {
    use super::*;
    use crate::policy::session_change::{
        quota_end, session_changes, with_default_interim, QuotaEnd, QuotaUse,
    };

    #[test]
    fn quota_end_cases() {
        let q = |t: Option<u64>, d: Option<u64>, fair: Option<&'static str>, s: u64, b: u64| {
            quota_end(&QuotaUse {
                time_quota: t,
                data_quota: d,
                after_data_rate_limit: fair,
                used_seconds: s,
                used_bytes: b,
            })
        };
        assert_eq!(q(None, None, None, 1 << 40, 1 << 40), None);
        assert_eq!(q(Some(60), None, None, 59, 0), None);
        assert_eq!(q(Some(60), None, None, 60, 0), Some(QuotaEnd::Disconnect));
        assert_eq!(q(None, Some(100), None, 0, 99), None);
        assert_eq!(q(None, Some(100), None, 0, 100), Some(QuotaEnd::Disconnect));
        assert_eq!(
            q(None, Some(100), Some("256k/256k"), 0, 100),
            Some(QuotaEnd::SlowDown)
        );
        assert_eq!(
            q(None, Some(100), Some(""), 0, 100),
            Some(QuotaEnd::Disconnect)
        );
        // Time beats fair use.
        assert_eq!(
            q(Some(10), Some(100), Some("256k/256k"), 10, 100),
            Some(QuotaEnd::Disconnect)
        );
        assert_eq!(QuotaEnd::Disconnect.reason(), "quota_used");
        assert_eq!(QuotaEnd::SlowDown.reason(), "fair_use");
    }

    #[test]
    fn coa_attributes() {
        let mut i = Input::baseline();
        i.plan().rate_limit = Some("2M/2M".into());
        i.plan().time_quota = Some(3600);
        i.voucher().used_seconds = 600;
        let s = i.snapshot.clone().unwrap();
        // 300 s into this session, 3000 s left on the voucher.
        assert_eq!(
            session_changes(&s.plan, &s.voucher, 300, NOW),
            vec![SessionTimeout(3300), MikrotikRateLimit("2M/2M".into())]
        );
        // Fair use with the data used up: the slow rate.
        i.plan().data_quota = Some(GIB);
        i.plan().after_data_rate_limit = Some("256k/256k".into());
        i.voucher().used_bytes = GIB;
        let s = i.snapshot.clone().unwrap();
        assert_eq!(
            session_changes(&s.plan, &s.voucher, 0, NOW),
            vec![SessionTimeout(3000), MikrotikRateLimit("256k/256k".into())]
        );
        // Validity ends sooner than the time quota.
        i.voucher().valid_until = Some(NOW + 100);
        let s = i.snapshot.clone().unwrap();
        assert_eq!(
            session_changes(&s.plan, &s.voucher, 50, NOW)[0],
            SessionTimeout(150)
        );
        // No limits, no rate: nothing to change.
        let b = Input::baseline().snapshot.unwrap();
        assert!(session_changes(&b.plan, &b.voucher, 10, NOW).is_empty());
    }

    #[test]
    fn a_queued_change_becomes_an_end_when_the_voucher_ended() {
        use crate::policy::session_change::{change_for_session, SessionChange};
        let mut i = Input::baseline();
        i.plan().rate_limit = Some("1M/1M".into());
        let s = i.snapshot.clone().unwrap();
        assert_eq!(
            change_for_session(&s.plan, &s.voucher, 0, NOW),
            SessionChange::Limits(vec![MikrotikRateLimit("1M/1M".into())])
        );
        i.voucher().state = VoucherState::Revoked;
        let s = i.snapshot.clone().unwrap();
        assert_eq!(
            change_for_session(&s.plan, &s.voucher, 0, NOW),
            SessionChange::End
        );
        let mut i = Input::baseline();
        i.plan().data_quota = Some(10);
        i.voucher().used_bytes = 10;
        let s = i.snapshot.clone().unwrap();
        assert_eq!(
            change_for_session(&s.plan, &s.voucher, 0, NOW),
            SessionChange::End
        );
        // With fair use the same voucher is slowed, not ended.
        i.plan().after_data_rate_limit = Some("64k/64k".into());
        let s = i.snapshot.clone().unwrap();
        assert_eq!(
            change_for_session(&s.plan, &s.voucher, 0, NOW),
            SessionChange::Limits(vec![MikrotikRateLimit("64k/64k".into())])
        );
    }

    #[test]
    fn every_accept_gets_an_interim_interval() {
        let AccessDecision::Accept(mut g) = accept(vec![SessionTimeout(60), IdleTimeout(300)])
        else {
            unreachable!()
        };
        with_default_interim(&mut g, 300);
        assert_eq!(
            g.reply,
            vec![
                SessionTimeout(60),
                IdleTimeout(300),
                AcctInterimInterval(300),
                Class(format!("rrnet:v1:{VOUCHER_ID}"))
            ]
        );
        assert_eq!(g.interim_interval, Some(300));
        // The plan's own interval stays.
        let AccessDecision::Accept(mut g) =
            accept_with(vec![AcctInterimInterval(60)], None, None, Some(60))
        else {
            unreachable!()
        };
        with_default_interim(&mut g, 300);
        assert_eq!(g.reply[0], AcctInterimInterval(60));
        assert_eq!(g.reply.len(), 2);
        assert_eq!(g.interim_interval, Some(60));
        // Zero is never sent.
        let AccessDecision::Accept(mut g) = accept(vec![]) else {
            unreachable!()
        };
        with_default_interim(&mut g, 0);
        assert_eq!(g.reply[0], AcctInterimInterval(1));
    }
}

/// Codes are unique per tenant only: in a batch holding two tenants' vouchers
/// with one code, each request finds its own NAS's tenant's voucher, and a
/// tenant without such a code gets "Unknown voucher code".
#[test]
fn batch_looks_vouchers_up_in_the_nas_tenant() {
    let base = Input::baseline();
    let snap = base.snapshot.clone().unwrap();
    let mut other = snap.clone();
    other.voucher.id = VOUCHER_ID + 1;
    other.voucher.tenant_id = 2;
    other.voucher.password = "other-tenant-password".into();
    let state = AuthState {
        vouchers: vec![(snap.voucher, snap.plan), (other.voucher, other.plan)],
        sessions: Vec::new(),
    };
    let mut own = base.facts.clone();
    own.acct_session_id = None;
    let mut second = own.clone();
    second.tenant_id = 2;
    second.credential = Credential::Pap(b"other-tenant-password".to_vec());
    let mut third = own.clone();
    third.tenant_id = 3;
    // Tenant 2's password at tenant 1's NAS is wrong there.
    let mut crossed = own.clone();
    crossed.credential = Credential::Pap(b"other-tenant-password".to_vec());
    let (decisions, _) = decide_batch(&[own, second, third, crossed], state, NOW, 60, decide);
    let voucher_of = |d: &AccessDecision| match d {
        AccessDecision::Accept(g) => Some(g.voucher_id),
        AccessDecision::Reject(_) => None,
    };
    assert_eq!(voucher_of(&decisions[0]), Some(VOUCHER_ID));
    assert_eq!(voucher_of(&decisions[1]), Some(VOUCHER_ID + 1));
    assert_eq!(decisions[2], reject(UnknownVoucher));
    assert_eq!(decisions[3], reject(WrongPassword));
}
