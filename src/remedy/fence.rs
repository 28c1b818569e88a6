//! `REPLICAOF` the new primary, to fence an old primary that answers as a primary after its
//! failover (a split brain): on the probe's own connection, once; its record is on disk first.

use super::{Context, Gate, Remedy, Runtime};
use crate::engine::{FencePlan, Observation};
use crate::redis::probe::Outcome;

impl Remedy for FencePlan {
    const GATE: Gate = Gate::OnDisk;

    async fn perform(&self, ctx: &Context<'_>, _: &impl Runtime) -> (Observation, bool) {
        let port = self.port.to_string();
        let outcome = ctx.conn.call_with("REPLICAOF", &[&self.host, &port]).await;
        let gone = matches!(outcome, Outcome::Lost(_));
        let fenced = match outcome {
            Outcome::Reply(v) => Ok(v.as_string().unwrap_or_else(|| "OK".into())),
            Outcome::ErrorReply(e) | Outcome::Lost(e) => Err(e),
        };
        (Observation::Fenced(fenced), gone)
    }

    fn unanswered(&self, why: String, _lost: bool) -> Observation {
        Observation::Fenced(Err(why))
    }
}
