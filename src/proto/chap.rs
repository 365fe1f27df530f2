//! CHAP (RFC 1994 §4.1, RFC 2865 §2.2 and §5.3).

use md5::{Digest, Md5};

use super::ct_eq;

/// MD5(identifier ‖ password ‖ challenge).
pub fn chap_response(ident: u8, password: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([ident]);
    h.update(password);
    h.update(challenge);
    h.finalize().into()
}

/// Check a CHAP-Password value (1-byte identifier + 16-byte response) against the
/// known password. `challenge` is CHAP-Challenge, or the Request Authenticator
/// when the request carried none. A value that is not 17 bytes never matches.
pub fn verify_chap(chap_password: &[u8], challenge: &[u8], password: &[u8]) -> bool {
    if chap_password.len() != 17 {
        return false;
    }
    let expected = chap_response(chap_password[0], password, challenge);
    ct_eq(&expected, &chap_password[1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies() {
        let challenge = [0x11u8; 16];
        let mut cp = vec![42u8];
        cp.extend_from_slice(&chap_response(42, b"pw", &challenge));
        assert!(verify_chap(&cp, &challenge, b"pw"));
        assert!(!verify_chap(&cp, &challenge, b"pX"));
        assert!(!verify_chap(&cp[..16], &challenge, b"pw"));
        cp[0] = 43;
        assert!(!verify_chap(&cp, &challenge, b"pw"));
    }
}
