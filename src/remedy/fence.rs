//! `REPLICAOF` the new primary, to fence an old primary that answers as a primary after its
//! failover (a split brain): on the probe's own connection, once; its record is on disk first.
//! It replaces the server's whole dataset with the new primary's, so the gate asks the successor
//! again just before it leaves ([`super::gate`]).

use super::gate::Needs;
use super::{Context, Gate, Remedy, Runtime};
use crate::engine::{FenceOutcome, FencePlan, Observation};
use crate::redis::probe::Outcome;

impl Remedy for FencePlan {
    const GATE: Gate = Gate::OnDisk;

    fn needs(&self) -> Needs<'_> {
        Needs::Successor(self)
    }

    fn not_sent(&self, reason: String, _missing: String) -> Observation {
        Observation::Fenced(FenceOutcome::NotSent(reason))
    }

    async fn perform(&self, ctx: &Context<'_>, _: &impl Runtime) -> (Observation, bool) {
        let port = self.port.to_string();
        let outcome = ctx.conn.call_with("REPLICAOF", &[&self.host, &port]).await;
        let gone = matches!(outcome, Outcome::Lost(_));
        let fenced = match outcome {
            Outcome::Reply(v) => FenceOutcome::Fenced(v.as_string().unwrap_or_else(|| "OK".into())),
            Outcome::ErrorReply(e) | Outcome::Lost(e) => FenceOutcome::Failed(e),
        };
        (Observation::Fenced(fenced), gone)
    }

    fn unanswered(&self, why: String, _lost: bool) -> Observation {
        Observation::Fenced(FenceOutcome::Failed(why))
    }
}
