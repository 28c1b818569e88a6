//! Fencing: after a failover (busyguard's, Sentinel's, or a replica that took over), the old
//! primary answering healthy again as a primary is a split brain: two servers accept writes,
//! and what the old one acknowledges is lost when it is demoted. It happens when the script ends
//! by itself while the replica is promoted, or when a supervisor (Debian's `Restart=always`)
//! restarts the old primary from its own redis.conf, without `replicaof`. busyguard fences it at
//! once: `REPLICAOF` the new primary (flushed to the trail before it leaves), records
//! `split_brain` and pages it. A Cluster node is not fenced this way: the restarted node learns
//! from the bus that it lost its slots.

use crate::event::detail as d;
use crate::event::detail::RecoveredHow;

use super::incident::Escalation;
use super::{Action, Engine, FencePlan, Millis, Step};

impl Engine {
    /// Send the fence, if the incident's server was failed over and answers as a primary (or
    /// its role is unknown: the fence is harmless to a replica of the new primary). True when
    /// the fence goes (the incident stays open until its answer).
    pub(super) fn fence(&mut self, now: Millis, step: &mut Step) -> bool {
        let Some(inc) = self.incident.as_mut() else {
            return false;
        };
        let (Some(new_primary), false) = (inc.demoted.clone(), inc.fenced) else {
            return false;
        };
        let snapshot = self.snapshot.as_ref().map(|h| &h.snapshot);
        let cluster = snapshot.and_then(|s| s.cluster_enabled) == Some(true);
        let role = snapshot.and_then(|s| s.role.clone());
        if cluster || role.as_deref() == Some("slave") {
            return false;
        }
        let Some(plan) = FencePlan::to(&new_primary) else {
            return false;
        };
        inc.fenced = true;
        let why = match inc.escalation {
            Escalation::ShutdownSent | Escalation::ShutdownConfirmed => {
                "it came back after its shutdown (a supervisor restarted it from its own redis.conf)"
            }
            _ => "its script ended, and it answers again as a primary",
        };
        let detail = d::SplitBrain {
            new_primary,
            fence: plan.text(),
            why: why.into(),
            role,
        };
        let inc = self.incident.as_ref().expect("an incident");
        step.events
            .push(self.event(Some(inc), self.rules.dry_run, detail));
        if !self.rules.dry_run {
            step.action = Some(Action::Fence(plan));
        }
        let _ = now;
        true
    }

    /// What came of the fence: fenced, the incident ends; refused, it is said (paged as
    /// critical: two primaries remain) and the incident ends all the same (nothing more can
    /// be done by busyguard).
    pub(super) fn on_fenced(
        &mut self,
        now: Millis,
        outcome: Result<String, String>,
        step: &mut Step,
    ) {
        if let Err(reply) = outcome {
            let detail = d::ActionFailed::Shutdown {
                action: d::FailedAction::Fence,
                reply,
                note: "NOT fenced: two primaries may accept writes; make this server a replica of \
                       the new primary by hand (REPLICAOF), or stop it"
                    .into(),
            };
            let inc = self.incident.as_ref();
            step.events.push(self.event(inc, false, detail));
        }
        self.recover_as(now, Some(RecoveredHow::Fenced), step);
    }
}
