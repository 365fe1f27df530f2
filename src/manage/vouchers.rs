//! Vouchers: codes, generation of a batch, and how a voucher and what is
//! left of it are shown — the same for `voucher …` and the API.

use rand::Rng;
use serde_json::json;

use super::FieldError;
use crate::cli::output::ts;
use crate::model::{NewVoucher, Plan, Timestamp, Voucher};
use crate::store::{Store, StoreError};

/// Unambiguous code alphabet: no 0/O, no 1/I. 32 symbols = 5 bits each.
pub const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// Most vouchers one generation makes.
pub const MAX_BATCH: u32 = 100_000;

/// What `voucher generate` and `POST /api/v1/voucher-batches` ask for.
#[derive(Clone, Debug)]
pub struct Generate {
    pub count: u32,
    /// Random characters per code, not counting the prefix.
    pub length: usize,
    pub prefix: String,
    pub site: Option<String>,
    pub batch: Option<String>,
}

impl Generate {
    /// Count, length and prefix within bounds.
    pub fn check(&self) -> Result<(), FieldError> {
        if !(6..=32).contains(&self.length) {
            return Err(FieldError::flag(
                "length",
                "--length must be between 6 and 32",
            ));
        }
        if self.count == 0 || self.count > MAX_BATCH {
            return Err(FieldError::flag(
                "count",
                format!("--count must be between 1 and {MAX_BATCH}"),
            ));
        }
        if self.prefix.len() + self.length > 64
            || self
                .prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(FieldError::flag(
                "prefix",
                "--prefix must be printable without spaces and keep codes within 64 characters",
            ));
        }
        if let Some(b) = &self.batch {
            if b.is_empty() || b.len() > 128 || b.chars().any(char::is_control) {
                return Err(FieldError::flag(
                    "batch",
                    "--batch must be 1 to 128 characters without control characters",
                ));
            }
        }
        Ok(())
    }
}

/// Make `g.count` random vouchers of `plan`, all or none. A clash with an
/// existing code fails the whole insert; with 30+ bits per code that is
/// rare, so it is tried again with new codes a few times.
pub async fn generate(
    store: &dyn Store,
    plan: &Plan,
    g: &Generate,
) -> Result<Vec<Voucher>, StoreError> {
    let mut attempt = 0;
    loop {
        let mut codes = std::collections::HashSet::new();
        while codes.len() < g.count as usize {
            codes.insert(format!("{}{}", g.prefix, random_code(g.length)));
        }
        let new: Vec<NewVoucher> = codes
            .into_iter()
            .map(|code| NewVoucher {
                code,
                password: None,
                plan_id: plan.id,
                site: g.site.clone(),
                batch: g.batch.clone(),
            })
            .collect();
        match store.add_vouchers(&new).await {
            Err(StoreError::Duplicate(_)) if attempt < 3 => attempt += 1,
            other => return other,
        }
    }
}

/// A random code over [`CODE_ALPHABET`] from the OS CSPRNG.
pub fn random_code(len: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char)
        .collect()
}

/// A voucher code someone chose (`voucher add`, import, the API).
pub fn check_code(code: &str) -> Result<(), FieldError> {
    if code.is_empty() || code.len() > 64 {
        return Err(FieldError::flag(
            "code",
            "voucher code must be 1 to 64 characters",
        ));
    }
    if code.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(FieldError::flag(
            "code",
            format!("voucher code {code:?} contains whitespace or control characters"),
        ));
    }
    Ok(())
}

/// When the voucher stops working by date: the end of its validity window (set at
/// first login, capped by the plan's expiry then) or the plan's absolute expiry,
/// whichever comes first. `None` while neither applies, e.g. before the first
/// login of a plan with `--validity` but no `--expires`.
pub fn valid_until(v: &Voucher, plan: Option<&Plan>) -> Option<Timestamp> {
    [v.valid_until, plan.and_then(|p| p.expires_at)]
        .into_iter()
        .flatten()
        .min()
}

/// A voucher as `voucher show` / `voucher list --format json` print it.
/// `valid_until` is [`valid_until`], the same date the text output shows.
pub fn voucher_json(v: &Voucher, plan: Option<&Plan>, now: i64) -> serde_json::Value {
    let end = valid_until(v, plan);
    let mut j = json!({
        "code": v.code,
        "plan": v.plan_name,
        "site": v.site,
        "state": v.state.as_str(),
        "batch": v.batch,
        "first_login_at": v.first_login_at.map(|t| ts(Some(t))),
        "valid_until": end.map(|t| ts(Some(t))),
        "used_seconds": v.used_seconds,
        "used_bytes": v.used_bytes,
        "bound_mac": v.bound_mac,
        "created_at": ts(Some(v.created_at)),
    });
    if let Some(p) = plan {
        j["time_left_seconds"] = json!(p.time_quota.map(|q| q.saturating_sub(v.used_seconds)));
        j["data_left_bytes"] = json!(p.data_quota.map(|q| q.saturating_sub(v.used_bytes)));
        j["expired"] = json!(end.is_some_and(|e| now >= e));
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_use_the_alphabet() {
        let c = random_code(32);
        assert_eq!(c.len(), 32);
        assert!(c.bytes().all(|b| CODE_ALPHABET.contains(&b)));
        assert_eq!(CODE_ALPHABET.len(), 32);
        for bad in [b'0', b'O', b'1', b'I'] {
            assert!(!CODE_ALPHABET.contains(&bad));
        }
    }
}
