//! Decoding a request and reading it must not touch the heap: the server does
//! this for every datagram, including floods of junk, so the per-packet cost has
//! to stay a few hashes over borrowed bytes. A counting global allocator checks it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use rrnet_radius::proto::attr::{self, mikrotik};
use rrnet_radius::proto::{chap_response, verify_chap, Code, Packet, PacketBuilder, RequestEcho};

/// Counts allocations made by the current thread while counting is switched on.
/// Per-thread, so the test harness's own threads cannot disturb the count.
struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the thread-local may already be gone while a thread exits.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Heap allocations made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(|n| n.get())
}

const SECRET: &[u8] = b"hotspot-shared-secret";
const VOUCHER: &[u8] = b"7K2QX9";

/// The Access-Request RouterOS sends for an http-chap hotspot login.
fn hotspot_chap_request() -> Vec<u8> {
    let challenge = [0x9du8; 16];
    let mut b = PacketBuilder::new(Code::AccessRequest, 117);
    b.reserve_message_authenticator();
    b.add(attr::USER_NAME, VOUCHER).unwrap();
    let mut chap = vec![0x2a];
    chap.extend_from_slice(&chap_response(0x2a, VOUCHER, &challenge));
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
    b.finish_access_request(&[0x3c; 16], SECRET)
}

#[test]
fn decoding_and_reading_a_request_does_not_allocate() {
    let request = hotspot_chap_request();
    let mut facts = (
        0usize, 0usize, None, None, None, None, None, None, false, false,
    );
    let n = allocations_in(|| {
        let p = Packet::decode(black_box(&request)).expect("well-formed");
        for a in p.attributes() {
            facts.0 += a.value.len();
            if let Some(vsas) = a.vendor_attributes() {
                for v in vsas {
                    facts.1 += usize::from(v.typ) + v.value.len();
                }
            }
        }
        facts.2 = p.attr_str(attr::USER_NAME).unwrap();
        facts.3 = p.attr_str(attr::CALLING_STATION_ID).unwrap();
        facts.4 = p.attr_u32(attr::NAS_PORT_TYPE).unwrap();
        facts.5 = p.attr_ipv4(attr::NAS_IP_ADDRESS).unwrap();
        facts.6 = p.attr_ipv4(attr::FRAMED_IP_ADDRESS).unwrap();
        facts.7 = p.vsa(mikrotik::VENDOR_ID, mikrotik::HOST_IP);
        facts.8 = p.verify_request_message_authenticator(SECRET) == Some(true);
        let challenge = p.attr(attr::CHAP_CHALLENGE).unwrap_or(p.authenticator());
        facts.9 = verify_chap(p.attr(attr::CHAP_PASSWORD).unwrap(), challenge, VOUCHER);
        black_box(&facts);
    });
    // The work really happened: every reading above found its value.
    assert_eq!(facts.2, Some("7K2QX9"));
    assert_eq!(facts.3, Some("AA:BB:CC:DD:EE:FF"));
    assert_eq!(facts.4, Some(19));
    assert_eq!(facts.5, Some("10.5.0.1".parse().unwrap()));
    assert_eq!(facts.6, Some("10.5.50.23".parse().unwrap()));
    assert_eq!(facts.7, Some(&[10u8, 5, 50, 23][..]));
    assert!(facts.8, "Message-Authenticator verifies");
    assert!(facts.9, "CHAP verifies");
    assert!(facts.1 > 0);
    assert_eq!(n, 0, "decoding and reading a request allocated {n} times");
}

/// The server keeps what a reply needs from the request's one decode; for a
/// request from a NAS (no Proxy-State) that costs no allocation either.
#[test]
fn keeping_what_the_reply_needs_does_not_allocate() {
    let request = hotspot_chap_request();
    let p = Packet::decode(&request).expect("well-formed");
    let mut echo = None;
    let n = allocations_in(|| {
        echo = Some(RequestEcho::of(black_box(&p)));
    });
    assert_eq!(echo.unwrap().identifier(), p.identifier());
    assert_eq!(n, 0, "RequestEcho::of allocated {n} times");
}

#[test]
fn the_counter_sees_allocations() {
    let n = allocations_in(|| {
        black_box(Vec::<u8>::with_capacity(64));
    });
    assert!(n >= 1, "the counting allocator is not counting");
}
