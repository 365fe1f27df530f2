//! Stable-toolchain smoke fuzzer: runs `packet_dump::fuzz_one` (the body of the
//! cargo-fuzz target `fuzz/fuzz_targets/decode.rs`) over `fuzz/seeds/` and
//! seeded mutations of those packets. Deterministic (fixed-seed PRNG), so a
//! failure reproduces; the failing input is printed as hex.
//!
//! `RRNET_FUZZ_ITERATIONS` sets the number of mutated inputs (default 20 000).

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use rrnet_radius::packet_dump::fuzz_one;
use rrnet_radius::proto::attr::{self, mikrotik};
use rrnet_radius::proto::{chap_response, Code, Packet, PacketBuilder};

/// splitmix64: tiny, and its sequence never changes under us the way a
/// library RNG's might across versions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds")
}

/// The seed corpus: realistic packets a MikroTik hotspot and this server exchange.
fn seed_packets() -> Vec<(&'static str, Vec<u8>)> {
    const SECRET: &[u8] = b"fuzz-secret";
    let auth = [0x5au8; 16];
    let mut seeds = Vec::new();

    // RFC 2865 §7.1 (PAP) and §7.2 (CHAP), verbatim.
    seeds.push((
        "rfc2865-7.1-access-request.bin",
        hex::decode(
            "010000380f403f9473978057bd83d5cb98f4227a01066e656d6f02120dbe708d93d413ce3196\
             e43f782a0aee0406c0a80110050600000003",
        )
        .unwrap(),
    ));
    seeds.push((
        "rfc2865-7.2-chap-request.bin",
        hex::decode(
            "010100472aee86f08d0d55969ca5978e0d3367a2010866 6c6f707379031316e97557c3161858\
             95f293ff63440772750406c0a80110050600000014060600000002070600000001"
                .replace(' ', ""),
        )
        .unwrap(),
    ));

    // MikroTik hotspot http-chap login.
    let challenge = [0x33u8; 16];
    let mut b = PacketBuilder::new(Code::AccessRequest, 17);
    b.reserve_message_authenticator();
    b.add_str(attr::USER_NAME, "7K2QX9").unwrap();
    let mut chap = vec![0x2a];
    chap.extend_from_slice(&chap_response(0x2a, b"7K2QX9", &challenge));
    b.add(attr::CHAP_PASSWORD, &chap).unwrap();
    b.add(attr::CHAP_CHALLENGE, &challenge).unwrap();
    b.add_str(attr::CALLING_STATION_ID, "AA:BB:CC:DD:EE:FF")
        .unwrap();
    b.add_str(attr::CALLED_STATION_ID, "hotspot1").unwrap();
    b.add_str(attr::NAS_IDENTIFIER, "cafe-router").unwrap();
    b.add(attr::NAS_IP_ADDRESS, &[10, 5, 0, 1]).unwrap();
    b.add_u32(attr::NAS_PORT, 2_154_823_690).unwrap();
    b.add_str(attr::NAS_PORT_ID, "bridge-hotspot").unwrap();
    b.add_u32(attr::NAS_PORT_TYPE, 19).unwrap();
    b.add(attr::FRAMED_IP_ADDRESS, &[10, 5, 50, 23]).unwrap();
    b.add_vsa(mikrotik::VENDOR_ID, mikrotik::HOST_IP, &[10, 5, 50, 23])
        .unwrap();
    b.add_u32(attr::SERVICE_TYPE, 1).unwrap();
    b.add_str(attr::ACCT_SESSION_ID, "81a0000c").unwrap();
    let chap_request = b.finish_access_request(&auth, SECRET);
    seeds.push(("mikrotik-chap-access-request.bin", chap_request.clone()));

    // MikroTik hotspot http-pap login.
    let mut b = PacketBuilder::new(Code::AccessRequest, 18);
    b.reserve_message_authenticator();
    b.add_str(attr::USER_NAME, "7K2QX9").unwrap();
    b.add_user_password(b"7K2QX9", SECRET, &auth).unwrap();
    b.add_str(attr::CALLING_STATION_ID, "AA:BB:CC:DD:EE:FF")
        .unwrap();
    b.add_u32(attr::NAS_PORT_TYPE, 15).unwrap();
    seeds.push((
        "mikrotik-pap-access-request.bin",
        b.finish_access_request(&auth, SECRET),
    ));

    // The server's Access-Accept to the CHAP login.
    let req = Packet::decode(&chap_request).unwrap();
    let mut b = PacketBuilder::reply(Vec::new(), &req, Code::AccessAccept);
    b.add_u32(attr::SESSION_TIMEOUT, 3600).unwrap();
    b.add_u32(attr::ACCT_INTERIM_INTERVAL, 300).unwrap();
    b.add_vsa(mikrotik::VENDOR_ID, mikrotik::RATE_LIMIT, b"2M/2M")
        .unwrap();
    b.add_vsa_u32(mikrotik::VENDOR_ID, mikrotik::TOTAL_LIMIT, 1 << 30)
        .unwrap();
    b.add(attr::CLASS, b"rrnet:v=42").unwrap();
    seeds.push((
        "access-accept.bin",
        b.finish_response(req.authenticator(), SECRET),
    ));

    // Accounting Interim-Update and Stop with 64-bit counters.
    for (name, status) in [
        ("accounting-interim.bin", attr::acct_status::INTERIM_UPDATE),
        ("accounting-stop.bin", attr::acct_status::STOP),
    ] {
        let mut b = PacketBuilder::new(Code::AccountingRequest, 19);
        b.add_u32(attr::ACCT_STATUS_TYPE, status).unwrap();
        b.add_str(attr::USER_NAME, "7K2QX9").unwrap();
        b.add_str(attr::ACCT_SESSION_ID, "81a0000c").unwrap();
        b.add_u32(attr::ACCT_SESSION_TIME, 600).unwrap();
        b.add_u32(attr::ACCT_INPUT_OCTETS, 123_456).unwrap();
        b.add_u32(attr::ACCT_OUTPUT_OCTETS, 7_654_321).unwrap();
        b.add_u32(attr::ACCT_INPUT_GIGAWORDS, 0).unwrap();
        b.add_u32(attr::ACCT_OUTPUT_GIGAWORDS, 1).unwrap();
        b.add(attr::CLASS, b"rrnet:v=42").unwrap();
        if status == attr::acct_status::STOP {
            b.add_u32(attr::ACCT_TERMINATE_CAUSE, 1).unwrap();
        }
        seeds.push((name, b.finish_accounting_request(SECRET)));
    }

    // Status-Server (RFC 5997) and a Disconnect-Request (RFC 5176).
    let mut b = PacketBuilder::new(Code::StatusServer, 20);
    b.reserve_message_authenticator();
    seeds.push(("status-server.bin", b.finish_access_request(&auth, SECRET)));
    let mut b = PacketBuilder::new(Code::DisconnectRequest, 21);
    b.reserve_message_authenticator();
    b.add_str(attr::USER_NAME, "7K2QX9").unwrap();
    b.add_str(attr::ACCT_SESSION_ID, "81a0000c").unwrap();
    seeds.push((
        "disconnect-request.bin",
        b.finish_accounting_request(SECRET),
    ));
    seeds
}

/// Offsets of attribute headers, and of VSA sub-attribute headers, in a
/// well-framed packet: where length edits hurt most.
fn length_byte_offsets(p: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let Ok(packet) = Packet::decode(p) else {
        return out;
    };
    for a in packet.attributes() {
        out.push(a.offset + 1);
        if a.typ == attr::VENDOR_SPECIFIC {
            let mut sub = a.offset + 6;
            let end = a.offset + 2 + a.value.len();
            while sub + 1 < end {
                out.push(sub + 1);
                sub += usize::from(p[sub + 1]).max(2);
            }
        }
    }
    out
}

fn set_length_field(p: &mut [u8], len: usize) {
    if p.len() >= 4 {
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    }
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut p = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(3) {
        match rng.below(9) {
            // Bit flips.
            0 => {
                for _ in 0..1 + rng.below(4) {
                    if !p.is_empty() {
                        let i = rng.below(p.len());
                        p[i] ^= 1 << rng.below(8);
                    }
                }
            }
            // Truncation, with or without the Length field following.
            1 => {
                let n = rng.below(p.len() + 1);
                p.truncate(n);
                if rng.below(2) == 0 {
                    set_length_field(&mut p, n);
                }
            }
            // Length field: near the true length, or anything.
            2 => {
                let len = if rng.below(2) == 0 {
                    (p.len() as i64 + rng.below(9) as i64 - 4).max(0) as usize
                } else {
                    rng.below(65536)
                };
                set_length_field(&mut p, len);
            }
            // An attribute or VSA length byte: off by a little, or anything.
            3 => {
                let offsets = length_byte_offsets(&p);
                if !offsets.is_empty() {
                    let i = offsets[rng.below(offsets.len())];
                    p[i] = if rng.below(2) == 0 {
                        p[i].wrapping_add(rng.byte() % 5).wrapping_sub(2)
                    } else {
                        rng.byte()
                    };
                }
            }
            // Append a well-framed attribute with a random value, so the
            // packet still decodes and per-type value checks get exercised.
            4 => {
                let vlen = rng.below(24);
                let value: Vec<u8> = (0..vlen).map(|_| rng.byte()).collect();
                if rng.below(2) == 0 {
                    p.push(26);
                    p.push(vlen as u8 + 8);
                    p.extend_from_slice(&mikrotik::VENDOR_ID.to_be_bytes());
                    p.push(rng.byte() % 32);
                    p.push(vlen as u8 + 2);
                } else {
                    p.push(rng.byte());
                    p.push(vlen as u8 + 2);
                }
                p.extend_from_slice(&value);
                let n = p.len();
                set_length_field(&mut p, n);
            }
            // Random bytes over a random span.
            5 => {
                if !p.is_empty() {
                    let start = rng.below(p.len());
                    let n = 1 + rng.below(8);
                    for b in p.iter_mut().skip(start).take(n) {
                        *b = rng.byte();
                    }
                }
            }
            // Splice: the head of one packet and the tail of another.
            6 => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(p.len() + 1);
                let from = rng.below(other.len() + 1);
                p.truncate(cut);
                p.extend_from_slice(&other[from..]);
                if rng.below(2) == 0 {
                    let n = p.len();
                    set_length_field(&mut p, n);
                }
            }
            // Trailing garbage past the Length field (must be ignored).
            7 => {
                for _ in 0..1 + rng.below(16) {
                    p.push(rng.byte());
                }
            }
            // The code byte.
            _ => {
                if !p.is_empty() {
                    p[0] = [
                        1,
                        2,
                        3,
                        4,
                        5,
                        11,
                        12,
                        13,
                        40,
                        41,
                        42,
                        43,
                        44,
                        45,
                        rng.byte(),
                    ][rng.below(15)];
                }
            }
        }
    }
    p
}

fn run(data: &[u8]) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| fuzz_one(data))) {
        eprintln!("fuzz_one panicked on input {}", hex::encode(data));
        resume_unwind(panic);
    }
}

#[test]
fn seeds_on_disk_match_the_generator() {
    for (name, bytes) in seed_packets() {
        let path = seeds_dir().join(name);
        let on_disk = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (regenerate: see fuzz/README.md)", path.display()));
        assert_eq!(
            on_disk, bytes,
            "{name} is stale (regenerate: see fuzz/README.md)"
        );
        Packet::decode(&bytes).unwrap_or_else(|e| panic!("seed {name} does not decode: {e}"));
    }
}

#[test]
fn smoke_fuzz_decode_and_dump() {
    let iterations: usize = std::env::var("RRNET_FUZZ_ITERATIONS")
        .ok()
        .map(|s| s.parse().expect("RRNET_FUZZ_ITERATIONS is a number"))
        .unwrap_or(20_000);

    // Every file in the seed directory, including any a cargo-fuzz run added.
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(seeds_dir())
        .expect("fuzz/seeds exists")
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.extend(seed_packets().into_iter().map(|(_, b)| b));
    for s in &seeds {
        run(s);
    }

    let mut rng = Rng(0x0005_eed0_f286_5000);
    let mut decoded = 0usize;
    for _ in 0..iterations {
        let input = mutate(&mut rng, &seeds);
        decoded += usize::from(Packet::decode(&input).is_ok());
        run(&input);
    }
    // Mutations that never produce a decodable packet would only test the
    // framing checks; make sure the dump code is reached too.
    if iterations >= 1000 {
        assert!(
            decoded * 10 >= iterations,
            "only {decoded} of {iterations} mutated inputs decoded"
        );
    }
    eprintln!("fuzz smoke: {iterations} mutated inputs, {decoded} decoded");
}

/// Writes `fuzz/seeds/` from `seed_packets`.
#[test]
#[ignore = "writes fuzz/seeds; run by hand after changing seed_packets"]
fn write_seeds() {
    std::fs::create_dir_all(seeds_dir()).unwrap();
    for (name, bytes) in seed_packets() {
        std::fs::write(seeds_dir().join(name), bytes).unwrap();
    }
}
