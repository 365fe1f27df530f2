//! Decode arbitrary bytes as a RADIUS packet and run everything that reads
//! untrusted packet bytes over the result: attribute and VSA iteration, typed
//! getters, Message-Authenticator and Request Authenticator checks,
//! User-Password un-hiding and the dictionary-named dump.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rrnet_radius::packet_dump::fuzz_one(data);
});
