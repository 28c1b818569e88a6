//! `then: failover`: at the end of the budget, with the last reply BUSY, promote a replica
//! instead of shutting the busy primary down; once the promotion is seen, the old primary (a
//! zombie whose data lives on in the new one) is shut down at its next BUSY reply. When no
//! failover can be made, or the one requested is not seen within `failover.timeout`, the
//! fallback (`shutdown` under the guards, or `notify`) applies, and the trail says why.
//!
//! The plan rests on this run's healthy snapshot: this server's role, its replicas (online,
//! within [`MAX_LAG_S`] of lag, least behind first), and whether it is a Cluster node; Sentinel
//! is known from the policy. A snapshot restored from the trail of an earlier run does not serve:
//! its replicas' lag may be long out of date, and a failover loses what a replica lacks. Right
//! before the request the role is asked afresh (by the remedy that carries it out): Sentinel must still
//! serve this server, a Cluster replica must still share its replication ID.

use crate::event::detail as d;
use crate::model::kinds::FailoverVia;
use crate::model::snapshot::{ReplicaLink, Snapshot};

use super::guards::Order;
use super::incident::{Escalation, Incident};
use super::{Action, Engine, FailoverOutcome, FailoverPlan, Millis, Step};

/// A replica whose last acknowledgement is older than this is not in sync (Redis's own
/// `min-replicas-max-lag` default).
pub const MAX_LAG_S: u64 = 10;

impl Engine {
    /// The budget is spent, the last reply was BUSY, and `then` is `failover`.
    pub(super) fn failover(
        &mut self,
        inc: &mut Incident,
        now: Millis,
        reply: String,
        step: &mut Step,
    ) {
        // Failed over already (by this request, or by Sentinel on its own): end the zombie.
        if inc.demoted.is_some() {
            self.escalate(inc, now, reply, Order::Demoted, step);
            return;
        }
        let fallback = self.rules.failover_fallback;
        if inc.failover_failed {
            self.escalate(inc, now, reply, Order::FailoverFallback(fallback), step);
            return;
        }
        let (via, target, replicas) = match self.plan() {
            Ok(plan) => plan,
            Err(reason) => {
                inc.failover_failed = true;
                let detail = d::FailoverFailed {
                    inputs: self.inputs(Some(inc), now),
                    requested: false,
                    reason,
                    fallback,
                };
                step.events
                    .push(self.event(Some(inc), self.rules.dry_run, detail));
                self.escalate(inc, now, reply, Order::FailoverFallback(fallback), step);
                return;
            }
        };
        let dry_run = self.rules.dry_run;
        let request = match via {
            FailoverVia::Sentinel => format!("SENTINEL FAILOVER {target}"),
            FailoverVia::Cluster => "CLUSTER FAILOVER FORCE".to_string(),
        };
        let plan = FailoverPlan {
            via,
            target: target.clone(),
            watch: replicas.iter().map(|r| r.address.clone()).collect(),
            timeout_ms: self.rules.failover_timeout,
            run_id: self.snapshot().and_then(|s| s.run_id.clone()),
            replid: self.snapshot().and_then(|s| s.master_replid.clone()),
        };
        let detail = d::FailoverRequested {
            inputs: self.inputs(Some(inc), now),
            via,
            request,
            sent_to: target,
            replicas,
            timeout_ms: plan.timeout_ms,
            fallback,
            reply_seen: reply,
        };
        step.events.push(self.event(Some(inc), dry_run, detail));
        if dry_run {
            inc.escalation = Escalation::FailoverDecided;
        } else {
            inc.escalation = Escalation::FailoverRequested { via, at: now };
            step.action = Some(Action::Failover(plan));
        }
    }

    /// How to fail this server over now (see [`plan`]).
    fn plan(&self) -> Result<Plan, String> {
        match &self.snapshot {
            None => Err("the replicas are unknown: no healthy snapshot yet (the server has been busy or unreachable since busyguard started)".into()),
            Some(held) if !held.fresh => Err("the replicas' lag is unknown: the only snapshot is restored from the trail of an earlier run of busyguard and may be stale".into()),
            Some(held) => plan(self.rules.sentinel_master.as_deref(), &held.snapshot),
        }
    }

    /// What became of the failover requested.
    pub(super) fn on_failover(&mut self, now: Millis, outcome: FailoverOutcome, step: &mut Step) {
        let Some(mut inc) = self.incident.take() else {
            return;
        };
        if let Escalation::FailoverRequested { via, at } = inc.escalation {
            inc.escalation = Escalation::NotYet;
            let detail: crate::event::Detail = match outcome {
                FailoverOutcome::Promoted {
                    new_primary,
                    seen_by,
                } => {
                    inc.demoted = Some(new_primary.clone());
                    d::FailoverCompleted {
                        via,
                        new_primary,
                        elapsed_ms: now.saturating_sub(at),
                        since_first_busy_ms: inc.first_busy.map(|f| now.saturating_sub(f)),
                        seen_by,
                    }
                    .into()
                }
                FailoverOutcome::Failed { accepted, reason } => {
                    inc.failover_failed = true;
                    d::FailoverFailed {
                        inputs: self.inputs(Some(&inc), now),
                        requested: accepted,
                        reason,
                        fallback: self.rules.failover_fallback,
                    }
                    .into()
                }
            };
            step.events.push(self.event(Some(&inc), false, detail));
        }
        self.incident = Some(inc);
    }
}

/// A failover's way, where its request goes, and the replicas that may be promoted.
pub type Plan = (FailoverVia, String, Vec<ReplicaLink>);

/// How a server would be failed over, from its healthy snapshot and the policy's Sentinel
/// master name (also what `status` shows); or why it cannot be.
pub fn plan(sentinel_master: Option<&str>, snapshot: &Snapshot) -> Result<Plan, String> {
    match snapshot.role.as_deref() {
        Some("master") => {}
        Some(role) => {
            return Err(format!(
                "this server is a {role}, not a primary: there is nothing to fail over"
            ));
        }
        None => return Err("this server's role is unknown (INFO did not say)".into()),
    }
    let via = match (sentinel_master, snapshot.cluster_enabled) {
        (Some(_), _) => FailoverVia::Sentinel,
        (None, Some(true)) => FailoverVia::Cluster,
        (None, _) => {
            return Err("no topology to fail over through: no `topology.sentinel` in the policy, and the server is not a Cluster node (INFO cluster_enabled)".into());
        }
    };
    let replicas = in_sync(snapshot);
    let Some(first) = replicas.first() else {
        return Err(format!(
            "no replica online within {MAX_LAG_S} s of lag in the healthy snapshot ({} attached)",
            snapshot.connected_replicas.unwrap_or(0)
        ));
    };
    let target = match (via, sentinel_master) {
        (FailoverVia::Sentinel, Some(master)) => master.to_string(),
        _ => first.address.clone(),
    };
    Ok((via, target, replicas))
}

/// The replicas that may be promoted: online, acknowledged within [`MAX_LAG_S`], least behind
/// first (bytes, then seconds).
pub fn in_sync(snapshot: &Snapshot) -> Vec<ReplicaLink> {
    let mut replicas: Vec<ReplicaLink> = snapshot
        .replica_links()
        .into_iter()
        .filter(|r| r.state == "online" && r.lag_s.is_some_and(|lag| lag <= MAX_LAG_S))
        .collect();
    replicas.sort_by_key(|r| (r.behind_bytes.unwrap_or(u64::MAX), r.lag_s));
    replicas
}
