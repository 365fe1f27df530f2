//! User-Password hiding (RFC 2865 §5.2).

use md5::{Digest, Md5};

use super::attr;
use super::error::{BuildError, InvalidAttribute};

/// Longest password RFC 2865 §5.2 allows (128 bytes, 8 blocks of 16).
pub const MAX_PASSWORD_LEN: usize = 128;

/// A cleartext password held on the stack; wiped when dropped and never printed.
#[derive(Clone)]
pub struct Password {
    buf: [u8; MAX_PASSWORD_LEN],
    len: usize,
}

impl Password {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(****)")
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        // Volatile writes so the wipe is not optimised away.
        for b in self.buf.iter_mut() {
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// b(i) = MD5(secret ‖ prev), where prev is the authenticator, then each cipher block.
fn block_key(secret: &[u8], prev: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(secret);
    h.update(prev);
    h.finalize().into()
}

/// Recover the password from a hidden User-Password value. The value must be a
/// non-empty multiple of 16 bytes, at most 128; trailing NUL padding is removed.
pub fn unhide_password(
    hidden: &[u8],
    secret: &[u8],
    authenticator: &[u8; 16],
) -> Result<Password, InvalidAttribute> {
    if hidden.is_empty() || !hidden.len().is_multiple_of(16) {
        return Err(InvalidAttribute {
            attr: attr::USER_PASSWORD,
            why: "length is not a non-zero multiple of 16",
        });
    }
    if hidden.len() > MAX_PASSWORD_LEN {
        return Err(InvalidAttribute {
            attr: attr::USER_PASSWORD,
            why: "longer than 128 bytes",
        });
    }
    let mut out = Password {
        buf: [0; MAX_PASSWORD_LEN],
        len: hidden.len(),
    };
    let mut prev: &[u8] = authenticator;
    for (i, chunk) in hidden.chunks(16).enumerate() {
        let key = block_key(secret, prev);
        for j in 0..16 {
            out.buf[i * 16 + j] = chunk[j] ^ key[j];
        }
        prev = chunk;
    }
    while out.len > 0 && out.buf[out.len - 1] == 0 {
        out.len -= 1;
    }
    Ok(out)
}

/// Hide `password` for a User-Password attribute, appending the cipher text to
/// `out` (padded with NULs to a multiple of 16; an empty password becomes one block).
pub fn hide_password(
    password: &[u8],
    secret: &[u8],
    authenticator: &[u8; 16],
    out: &mut Vec<u8>,
) -> Result<(), BuildError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(BuildError::PasswordTooLong(password.len()));
    }
    let blocks = password.len().div_ceil(16).max(1);
    let start = out.len();
    let mut prev = *authenticator;
    for i in 0..blocks {
        let key = block_key(secret, &prev);
        let mut block = [0u8; 16];
        for j in 0..16 {
            let p = password.get(i * 16 + j).copied().unwrap_or(0);
            block[j] = p ^ key[j];
        }
        out.extend_from_slice(&block);
        prev = block;
    }
    debug_assert_eq!(out.len() - start, blocks * 16);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_lengths() {
        let auth = [7u8; 16];
        for len in [0usize, 1, 15, 16, 17, 31, 32, 100, 128] {
            let pw: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut hidden = Vec::new();
            hide_password(&pw, b"s3cret", &auth, &mut hidden).unwrap();
            assert_eq!(hidden.len(), len.div_ceil(16).max(1) * 16);
            let back = unhide_password(&hidden, b"s3cret", &auth).unwrap();
            assert_eq!(back.as_bytes(), &pw[..]);
        }
        assert!(hide_password(&[b'x'; 129], b"s", &auth, &mut Vec::new()).is_err());
    }

    #[test]
    fn bad_lengths_are_value_errors() {
        let auth = [0u8; 16];
        assert!(unhide_password(&[], b"s", &auth).is_err());
        assert!(unhide_password(&[1; 15], b"s", &auth).is_err());
        assert!(unhide_password(&[1; 17], b"s", &auth).is_err());
        assert!(unhide_password(&[1; 144], b"s", &auth).is_err());
        assert!(unhide_password(&[1; 128], b"s", &auth).is_ok());
    }

    #[test]
    fn debug_hides() {
        let mut h = Vec::new();
        hide_password(b"topsecret", b"k", &[1; 16], &mut h).unwrap();
        let p = unhide_password(&h, b"k", &[1; 16]).unwrap();
        assert!(!format!("{p:?}").contains("topsecret"));
    }
}
