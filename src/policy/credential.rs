//! Password checks for PAP and CHAP-MD5, shared by the UDP path and the REST shim.
//!
//! Both comparisons run in constant time (`subtle`), so the time a reject takes
//! says nothing about how many leading bytes of a guess were right.

use subtle::ConstantTimeEq;

use super::Credential;
pub use crate::proto::chap_response;

/// Does `cred` prove knowledge of `password`?
///
/// - PAP (RFC 2865 §5.2): the un-hidden User-Password equals the voucher password.
///   Lengths are not secret (the hidden attribute already reveals the length to
///   16-byte granularity), so a length mismatch may return early; the bytes are
///   compared in constant time.
/// - CHAP (RFC 2865 §2.2, §5.3; RFC 1994 §4.1): the CHAP-Password response equals
///   MD5(CHAP Ident ‖ password ‖ challenge).
/// - No credential never matches, even an empty password.
pub fn credential_matches(cred: &Credential, password: &[u8]) -> bool {
    match cred {
        Credential::Pap(given) => bool::from(given.as_slice().ct_eq(password)),
        Credential::Chap {
            ident,
            response,
            challenge,
        } => {
            let expected = chap_response(*ident, password, challenge);
            bool::from(expected.ct_eq(response))
        }
        Credential::Missing => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};

    fn hex16(s: &str) -> [u8; 16] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// MD5 computed here step by step with the `md-5` crate over one concatenated
    /// buffer, so a mistake in the order of fields in `chap_response` shows up.
    fn independent_md5(ident: u8, password: &[u8], challenge: &[u8]) -> [u8; 16] {
        let mut buf = vec![ident];
        buf.extend_from_slice(password);
        buf.extend_from_slice(challenge);
        Md5::digest(&buf).into()
    }

    #[test]
    fn chap_matches_independently_computed_md5() {
        let challenge: Vec<u8> = (0u8..16).map(|b| b.wrapping_mul(37) ^ 0xa5).collect();
        let password = b"VOUCHER-7Q2K";
        let ident = 0x2a;
        let response = independent_md5(ident, password, &challenge);
        let cred = Credential::Chap {
            ident,
            response,
            challenge: challenge.clone(),
        };
        assert!(credential_matches(&cred, password));
        assert!(!credential_matches(&cred, b"VOUCHER-7Q2L"));
        assert!(!credential_matches(&cred, b""));

        let wrong_ident = Credential::Chap {
            ident: ident.wrapping_add(1),
            response,
            challenge: challenge.clone(),
        };
        assert!(!credential_matches(&wrong_ident, password));

        let mut flipped = response;
        flipped[15] ^= 0x01;
        let wrong_response = Credential::Chap {
            ident,
            response: flipped,
            challenge: challenge.clone(),
        };
        assert!(!credential_matches(&wrong_response, password));

        let mut other_challenge = challenge;
        other_challenge[0] ^= 0x80;
        let wrong_challenge = Credential::Chap {
            ident,
            response,
            challenge: other_challenge,
        };
        assert!(!credential_matches(&wrong_challenge, password));
    }

    /// Fixed vectors from the PEAR Crypt_CHAP test suite (tests/chaptest.php,
    /// "CHAP-MD5 TEST" 1 and 2), re-checked with coreutils:
    /// `printf '\x01MyPw\x10\x2d\xb5\xdf\x08\x5d\x30\x41' | md5sum`.
    #[test]
    fn chap_fixed_vectors() {
        let challenge = hex::decode("102DB5DF085D3041").unwrap();
        for (password, expected) in [
            (&b"MyPw"[..], "8f028814450d66d94c72331ef455a172"),
            (&b"sepp"[..], "d39bfaf5d6855a948c8c81a85947502c"),
        ] {
            let response = hex16(expected);
            assert_eq!(chap_response(1, password, &challenge), response);
            let cred = Credential::Chap {
                ident: 1,
                response,
                challenge: challenge.clone(),
            };
            assert!(credential_matches(&cred, password));
        }
    }

    /// RFC 2865 §2.2: with no CHAP-Challenge the 16-byte Request Authenticator is
    /// the challenge; the check itself does not care where the bytes came from.
    #[test]
    fn chap_with_request_authenticator_as_challenge() {
        let authenticator = [0x11u8; 16];
        let response = independent_md5(7, b"pw", &authenticator);
        let cred = Credential::Chap {
            ident: 7,
            response,
            challenge: authenticator.to_vec(),
        };
        assert!(credential_matches(&cred, b"pw"));
    }

    #[test]
    fn pap_cases() {
        let cases: [(&str, &[u8], &[u8], bool); 7] = [
            ("equal", b"abc123", b"abc123", true),
            ("one byte differs", b"abc124", b"abc123", false),
            ("given is a prefix", b"abc12", b"abc123", false),
            ("given is longer", b"abc1234", b"abc123", false),
            ("case matters", b"ABC123", b"abc123", false),
            ("empty given", b"", b"abc123", false),
            (
                "binary bytes",
                &[0xff, 0x00, 0x7f],
                &[0xff, 0x00, 0x7f],
                true,
            ),
        ];
        for (name, given, password, expected) in cases {
            let cred = Credential::Pap(given.to_vec());
            assert_eq!(credential_matches(&cred, password), expected, "{name}");
        }
    }

    #[test]
    fn missing_never_matches() {
        assert!(!credential_matches(&Credential::Missing, b""));
        assert!(!credential_matches(&Credential::Missing, b"abc"));
    }

    #[test]
    fn debug_never_prints_the_password() {
        let pap = Credential::Pap(b"hunter2-secret".to_vec());
        let shown = format!("{pap:?} {pap:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("104"), "{shown}"); // b'h' as a decimal byte

        let response = [0xABu8; 16];
        let chap = Credential::Chap {
            ident: 9,
            response,
            challenge: vec![0xCD; 16],
        };
        let shown = format!("{chap:?} {chap:#?}");
        for needle in ["171", "ab", "AB", "205", "cd", "CD"] {
            assert!(!shown.contains(needle), "{needle} in {shown}");
        }
    }
}
