//! One bad record must not sink its batch. Deciders and writers store many
//! requests in one call; when a call fails for a reason that can be one
//! record's fault (a value the database refuses, a constraint), the batch is
//! split in halves and each half tried again, down to single records, so only
//! the records that fail on their own go unanswered. A batch of `n` with one
//! bad record costs about `2·log2(n)` extra calls. When the database is
//! unreachable, splitting cannot help and the whole batch fails at once.

use std::future::Future;

use crate::store::{StoreError, StoreResult};

/// Run `call` over `items`, isolating failing records by halving. Returns one
/// outcome per item, in order; `call` must return one result per item it got.
/// Halves run in order, so records of one voucher or session keep their order.
pub(super) async fn isolate<'a, T, R, F, Fut>(items: &'a [T], mut call: F) -> Vec<Result<R, String>>
where
    F: FnMut(&'a [T]) -> Fut,
    Fut: Future<Output = StoreResult<Vec<R>>>,
{
    let mut out: Vec<Option<Result<R, String>>> = (0..items.len()).map(|_| None).collect();
    // Ranges still to run; the next one on top.
    let mut todo = vec![(0, items.len())];
    while let Some((a, b)) = todo.pop() {
        if a == b {
            continue;
        }
        match call(&items[a..b]).await {
            Ok(results) if results.len() == b - a => {
                for (slot, r) in out[a..b].iter_mut().zip(results) {
                    *slot = Some(Ok(r));
                }
            }
            Ok(results) => {
                let why = format!("storage answered {} of {} requests", results.len(), b - a);
                for slot in &mut out[a..b] {
                    *slot = Some(Err(why.clone()));
                }
            }
            Err(e) if b - a > 1 && !e.is_unavailable() => {
                let m = a + (b - a) / 2;
                todo.push((m, b));
                todo.push((a, m));
            }
            Err(e) => {
                let why = e.to_string();
                for slot in &mut out[a..b] {
                    *slot = Some(Err(why.clone()));
                }
            }
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not stored".into())))
        .collect()
}

/// The first failure among `outcomes`, as the result of the storage call they
/// came from (for the storage metrics).
pub(super) fn first_error<R>(outcomes: &[Result<R, String>]) -> StoreResult<()> {
    match outcomes.iter().find_map(|r| r.as_ref().err()) {
        Some(why) => Err(StoreError::Invalid(why.clone())),
        None => Ok(()),
    }
}

impl StoreError {
    /// The database could not be reached or is not answering: no part of a
    /// batch would fare better on its own.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Database(e) => matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            ),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::ReadOnly
            ),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn run<F, Fut>(items: &[i32], call: F) -> Vec<Result<i32, String>>
    where
        F: FnMut(&[i32]) -> Fut,
        Fut: Future<Output = StoreResult<Vec<i32>>>,
    {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(isolate(items, call))
    }

    #[test]
    fn only_the_bad_record_fails_and_order_is_kept() {
        let items: Vec<i32> = (0..64).collect();
        let calls = Cell::new(0);
        let seen = std::cell::RefCell::new(Vec::new());
        let out = run(&items, |batch| {
            calls.set(calls.get() + 1);
            let batch = batch.to_vec();
            let seen = &seen;
            async move {
                if batch.contains(&13) {
                    Err(StoreError::Invalid("NUL in text".into()))
                } else {
                    seen.borrow_mut().extend(batch.iter().copied());
                    Ok(batch.iter().map(|x| x * 10).collect())
                }
            }
        });
        for (i, r) in out.iter().enumerate() {
            if i == 13 {
                assert!(r.as_ref().unwrap_err().contains("NUL"), "{r:?}");
            } else {
                assert_eq!(r.as_ref().unwrap(), &(i as i32 * 10));
            }
        }
        assert!(calls.get() <= 2 * 6 + 1, "{} calls", calls.get());
        let seen = seen.into_inner();
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "halves run in order");
    }

    #[test]
    fn an_unreachable_database_fails_the_batch_at_once() {
        let items: Vec<i32> = (0..64).collect();
        let calls = Cell::new(0);
        let out = run(&items, |_| {
            calls.set(calls.get() + 1);
            async { Err(StoreError::Database(sqlx::Error::PoolTimedOut)) }
        });
        assert_eq!(calls.get(), 1);
        assert!(out.iter().all(|r| r.is_err()));
    }
}
