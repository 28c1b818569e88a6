//! `REPLICAOF` the new primary, to fence an old primary that answers as a primary after its
//! failover (a split brain): on the probe's own connection, once; its record is on disk first.
//! It replaces the server's whole dataset with the new primary's, so just before it leaves the
//! successor is asked again ([`crate::redis::takeover`]): still a primary that took over from
//! this server, at an address that is not this server's own. Otherwise it is not sent.

use super::{Context, Gate, Remedy, Runtime};
use crate::engine::{FenceOutcome, FencePlan, Observation};
use crate::redis::probe::{Kept, Outcome};
use crate::redis::takeover::{self, Verdict};

impl Remedy for FencePlan {
    const GATE: Gate = Gate::OnDisk;

    async fn perform(&self, ctx: &Context<'_>, _: &impl Runtime) -> (Observation, bool) {
        if let Err(why) = self.still_verified(ctx).await {
            return (Observation::Fenced(FenceOutcome::NotSent(why)), false);
        }
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

impl FencePlan {
    /// The successor, asked again now: a listed address, not this server's own, a primary that
    /// continues this server's history, and the same run the engine verified.
    async fn still_verified(&self, ctx: &Context<'_>) -> Result<(), String> {
        let policy = ctx.policy;
        let address = &self.successor.address;
        let target = takeover::listed(
            &policy.redis,
            &policy.topology.replicas,
            address,
            &self.lineage,
        )
        .await
        .map_err(|verdict| match verdict {
            Verdict::Not(why) | Verdict::Unknown(why) => why,
            Verdict::TookOver(_) => String::new(),
        })?;
        match takeover::verify(&mut Kept::new(target), address, &self.lineage).await {
            Verdict::TookOver(now) if now.run_id == self.successor.run_id => Ok(()),
            Verdict::TookOver(now) => Err(format!(
                "{address} answers under another run id ({}) than the successor busyguard saw \
                 take over ({}): it restarted, and nothing proves it still holds this server's data",
                now.run_id, self.successor.run_id
            )),
            Verdict::Not(why) | Verdict::Unknown(why) => Err(format!(
                "the new primary could not be verified again just before the fence: {why}"
            )),
        }
    }
}
