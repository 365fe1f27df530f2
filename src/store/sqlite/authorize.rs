//! Authorization. A batch whose vouchers are all in memory is decided on the
//! caller's thread (`SqliteStore::authorize_batch_with_policy`); the rest come
//! here, to the engine, which reads what memory lacks from its connection
//! (`memory::AuthMemory::load`), decides with `policy::decide_batch_state`,
//! answers, and then writes the effects and the auth events into the group
//! transaction (committed within `engine::MAX_GROUP_AGE`).

use std::sync::{mpsc, Mutex};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::engine::{GroupJob, GroupOutcome, Job};
use super::memory::{self, AuthMemory, EffectsJob};
use crate::model::Timestamp;
use crate::policy::{decide_batch_state, AccessDecision, AccessFacts, VoucherSnapshot};
use crate::store::{AuthorizeOptions, StoreError, StoreResult};

/// An authorization batch for the engine.
pub(super) struct AuthorizeJob<F> {
    pub requests: Vec<AccessFacts>,
    pub now: Timestamp,
    pub opts: AuthorizeOptions,
    pub decide: F,
    pub reply: oneshot::Sender<StoreResult<Vec<AccessDecision>>>,
    /// To queue the effects behind batches decided in memory meanwhile.
    pub jobs: mpsc::Sender<Job>,
}

impl<F> GroupJob for AuthorizeJob<F>
where
    F: Fn(&AccessFacts, Option<&VoucherSnapshot>, Timestamp) -> AccessDecision + Send,
{
    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }

    fn run(self: Box<Self>, conn: &Connection, memory: &Mutex<AuthMemory>) -> GroupOutcome {
        let AuthorizeJob {
            requests,
            now,
            opts,
            decide,
            reply,
            jobs,
        } = *self;
        let mut mem = memory::lock(memory);
        // The group transaction holds the write lock from before these reads,
        // so another process (the CLI) cannot change what the batch was decided
        // on before its effects land.
        let state = match mem.load(conn, &requests, now, opts.authorized_ttl) {
            Ok(s) => s,
            Err(e) => {
                let _ = reply.send(Err(e));
                return GroupOutcome::Failed;
            }
        };
        let (decisions, effects, after) =
            decide_batch_state(&requests, state, now, opts.authorized_ttl, decide);
        // Batches decided in memory since this one was queued wait for the
        // engine behind it; their effects must be written first.
        let behind = mem.backlog() > 0;
        let (seq, touched) = mem.remember(after, &effects, now, opts.authorized_ttl);
        let job = EffectsJob {
            seq,
            events: memory::events(&requests, &decisions),
            effects,
            touched,
            now,
        };
        // The answer goes out now; the writes and the commit are not on its path.
        let _ = reply.send(Ok(decisions));
        if behind {
            if jobs.send(Job::Group(Box::new(job))).is_err() {
                tracing::error!("the SQLite engine is stopping; an authorization batch's effects were not stored");
            }
            return GroupOutcome::Done;
        }
        drop(mem);
        Box::new(job).run(conn, memory)
    }
}
