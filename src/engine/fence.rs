//! Fencing: after a failover (busyguard's, Sentinel's, or a replica that took over), the old
//! primary answering healthy again as a primary is a split brain: two servers accept writes,
//! and what the old one acknowledges is lost when it is demoted. It happens when the script ends
//! by itself while the replica is promoted, or when a supervisor (Debian's `Restart=always`)
//! restarts the old primary from its own redis.conf, without `replicaof`.
//!
//! The fence (`REPLICAOF` the new primary) replaces this server's whole dataset with the new
//! primary's: it is as destructive as a shutdown, and goes only as far as the policy says.
//! - Under `then: failover` it is part of the failover and goes at once.
//! - Under `then: shutdown` or `ask` it goes only with `topology.fence: true` (a primary that
//!   Sentinel fails over on its own).
//! - Under `then: notify` nothing is ever sent: the split brain is recorded and paged, and what
//!   to do by hand is said.
//!
//! It goes only toward a successor busyguard verified (see [`crate::model::takeover`]), never
//! toward this server itself (its run id), and the gate asks the successor again just before
//! the command leaves. A Cluster node is not fenced this way: the restarted node learns from the
//! bus that it lost its slots.

use crate::event::detail as d;
use crate::event::detail::RecoveredHow;
use crate::model::kinds::Then;

use super::incident::Escalation;
use super::{Action, Engine, FenceOutcome, FencePlan, Millis, Step};

impl Engine {
    /// The split brain of an incident whose server was failed over and answers as a primary (or
    /// its role is unknown: the fence is harmless to a replica of the new primary): recorded,
    /// and fenced when the policy allows. True when the split brain was handled: the fence goes
    /// (the incident stays open until its answer), or the incident ends not fenced.
    pub(super) fn fence(&mut self, now: Millis, step: &mut Step) -> bool {
        let Some(inc) = self.incident.as_mut() else {
            return false;
        };
        let (Some(successor), false) = (self.successor.clone(), inc.fenced) else {
            return false;
        };
        let snapshot = self.snapshot.as_ref().map(|h| &h.snapshot);
        let cluster = snapshot.and_then(|s| s.cluster_enabled) == Some(true);
        let role = snapshot.and_then(|s| s.role.clone());
        // A replica already (of the new primary, by Sentinel's reconfiguration), a Cluster node,
        // or the successor itself answering at this address: no split brain here.
        let run_id = snapshot.and_then(|s| s.run_id.as_deref());
        if cluster || role.as_deref() == Some("slave") || run_id == Some(&successor.run_id) {
            return false;
        }
        let Some(plan) = FencePlan::to(&successor, &self.lineage) else {
            return false;
        };
        inc.fenced = true;
        // Handled once: fenced, or said not to be.
        self.successor = None;
        let why = match inc.escalation {
            Escalation::ShutdownSent | Escalation::ShutdownConfirmed => {
                "it came back after its shutdown (a supervisor restarted it from its own redis.conf)"
            }
            _ => "its script ended, and it answers again as a primary",
        };
        let not_fenced = match inc.ladder.then {
            Then::Failover => None,
            Then::Shutdown | Then::Ask if self.rules.fence => None,
            Then::Notify => Some("`then: notify` never sends anything to the server".to_string()),
            Then::Shutdown | Then::Ask => Some(format!(
                "`then: {}` fences only with `topology.fence: true`",
                inc.ladder.then.name()
            )),
        };
        let fences = not_fenced.is_none();
        let detail = d::SplitBrain {
            new_primary: successor.address.clone(),
            fence: fences.then(|| plan.text()),
            not_fenced,
            why: why.into(),
            role,
        };
        let inc = self.incident.as_ref().expect("an incident");
        let dry_run = self.rules.dry_run && fences;
        step.events.push(self.event(Some(inc), dry_run, detail));
        if !fences {
            self.recover_as(now, Some(RecoveredHow::NotFenced), step);
            return true;
        }
        if !self.rules.dry_run {
            step.action = Some(Action::Fence(plan));
        }
        true
    }

    /// What came of the fence: fenced, the incident ends; refused, it is said (paged as
    /// critical: two primaries remain) and the incident ends all the same (nothing more can
    /// be done by busyguard); not sent (the gate's last check), it is said likewise.
    pub(super) fn on_fenced(&mut self, now: Millis, outcome: FenceOutcome, step: &mut Step) {
        let (how, failed) = match outcome {
            FenceOutcome::Fenced(_) => (RecoveredHow::Fenced, None),
            FenceOutcome::Failed(reply) => (RecoveredHow::NotFenced, Some(reply)),
            FenceOutcome::NotSent(why) => {
                (RecoveredHow::NotFenced, Some(format!("not sent: {why}")))
            }
        };
        if let Some(reply) = failed {
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
        self.recover_as(now, Some(how), step);
    }
}
