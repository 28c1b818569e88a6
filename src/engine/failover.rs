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
use crate::policy::replicas::TrustedReplica;

use super::guards::Order;
use super::incident::{Escalation, Incident};
use super::{Action, Engine, FailoverOutcome, FailoverPlan, Inquiry, Millis, Step};

/// A replica whose last acknowledgement is older than this is not in sync (Redis's own
/// `min-replicas-max-lag` default).
pub const MAX_LAG_S: u64 = 10;

/// How long past `failover.timeout` an incident whose script ended waits for the failover's
/// outcome (the remedy's own margin, and the feed's second to tell a takeover).
pub const OUTCOME_MARGIN_MS: Millis = 1_500;

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
        if inc.failed_over {
            self.escalate(inc, now, reply, Order::Demoted, step);
            return;
        }
        let fallback = self.rules.failover_fallback;
        if inc.failover_failed {
            self.escalate(inc, now, reply, Order::FailoverFallback(fallback), step);
            return;
        }
        let planned = self.plan().and_then(|plan| self.lag_told(inc, plan));
        let (via, target, replicas) = match planned {
            Ok(Some(plan)) => plan,
            // Asked already: their answer comes beside the probe, and a BUSY reply after it
            // decides (the request rests on a reply that just arrived, never on one as old as
            // the wait for the offsets).
            Ok(None) if inc.offsets_asked => return,
            // The candidates are asked their offsets first.
            Ok(None) => {
                let replicas = match self.plan() {
                    Ok((_, _, replicas)) => replicas.into_iter().map(|r| r.address).collect(),
                    Err(_) => Vec::new(),
                };
                inc.offsets_asked = true;
                step.inquiry = Some(Inquiry::ReplicaOffsets {
                    replicas,
                    primary_offset: self.primary_offset().unwrap_or(0),
                    within_ms: self.rules.failover_timeout / 2,
                });
                return;
            }
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
        let Some(evidence) = self.busy_seen(inc, now) else {
            inc.failover_failed = true;
            let detail = d::FailoverFailed {
                inputs: self.inputs(Some(inc), now),
                requested: false,
                reason:
                    "the busy threshold is unknown (CONFIG GET refused): how long a BUSY reply \
                         holds as evidence cannot be told"
                        .into(),
                fallback,
            };
            step.events
                .push(self.event(Some(inc), self.rules.dry_run, detail));
            self.escalate(inc, now, reply, Order::FailoverFallback(fallback), step);
            return;
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
            lineage: self.lineage.clone(),
            evidence,
        };
        inc.requested_behind = replicas
            .iter()
            .filter_map(|r| Some((r.address.clone(), r.behind_bytes?)))
            .collect();
        let detail = d::FailoverRequested {
            inputs: self.inputs(Some(inc), now),
            via,
            request,
            sent_to: target,
            replicas,
            timeout_ms: plan.timeout_ms,
            fallback,
            reply_seen: reply,
            primary_offset: self.primary_offset(),
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
        if let (Some(why), Some(_)) = (&self.sentinel_elsewhere, &self.rules.sentinel_master) {
            return Err(format!("no failover through Sentinel: {why}"));
        }
        match &self.snapshot {
            None => Err("the replicas are unknown: no healthy snapshot yet (the server has been busy or unreachable since busyguard started)".into()),
            Some(held) if !held.fresh => Err("the replicas' lag is unknown: the only snapshot is restored from the trail of an earlier run of busyguard and may be stale".into()),
            Some(held) => plan(self.rules.sentinel_master.as_deref(), &self.rules.replicas, &held.snapshot),
        }
    }

    /// The primary's last known replication offset (its healthy snapshot's).
    fn primary_offset(&self) -> Option<u64> {
        self.snapshot().and_then(|s| s.master_repl_offset)
    }

    /// `plan` with each candidate's lag as it told it just before the request (`Ok(None)`: it
    /// must be asked first): measured against the primary's last known offset (a lower bound),
    /// those behind more than `failover.max_lag` are left out, the order kept (the primary's
    /// view of who is least behind, not a replica's own word). Dry-run asks nothing and keeps
    /// the snapshot's figures.
    fn lag_told(&self, inc: &mut Incident, plan: Plan) -> Result<Option<Plan>, String> {
        let (via, target, replicas) = plan;
        if self.rules.dry_run {
            return Ok(Some((via, target, replicas)));
        }
        let Some(primary) = self.primary_offset() else {
            return Err("the primary's replication offset is unknown (INFO did not say): how much a failover would lose cannot be told".into());
        };
        let Some(offsets) = inc.offsets.take() else {
            return Ok(None);
        };
        inc.offsets_asked = false;
        let max = self.rules.failover_max_lag;
        let mut behind_all = Vec::new();
        let fresh: Vec<ReplicaLink> = replicas
            .into_iter()
            .filter_map(|mut r| {
                let told = offsets.iter().find(|(a, _)| *a == r.address)?.1?;
                let behind = primary.saturating_sub(told);
                behind_all.push(format!("{} {behind} bytes", r.address));
                r.behind_bytes = Some(behind);
                (behind <= max).then_some(r)
            })
            .collect();
        let Some(first) = fresh.first() else {
            return Err(format!(
                "no replica within `failover.max_lag` ({max} bytes) of the primary's last known offset {primary} after waiting {} ms for them to catch up: {}",
                self.rules.failover_timeout / 2,
                match behind_all.is_empty() {
                    true => "none answered".to_string(),
                    false => behind_all.join(", "),
                }
            ));
        };
        let target = match via {
            FailoverVia::Cluster => first.address.clone(),
            FailoverVia::Sentinel => target,
        };
        Ok(Some((via, target, fresh)))
    }

    /// The candidates told their offsets (beside the probe): the failover is decided with them
    /// at the next BUSY reply, which the watchdog asks for at once.
    pub(super) fn on_offsets(&mut self, offsets: Vec<(String, Option<u64>)>) {
        if let Some(inc) = self.incident.as_mut().filter(|i| i.offsets_asked) {
            inc.offsets = Some(offsets);
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
                FailoverOutcome::Promoted { successor, seen_by } => {
                    let new_primary = successor.address.clone();
                    let detail = d::FailoverCompleted {
                        via,
                        may_lose_bytes: inc
                            .requested_behind
                            .iter()
                            .find(|(a, _)| *a == new_primary)
                            .map(|(_, b)| *b),
                        new_primary_run_id: Some(successor.run_id.clone()),
                        new_primary_replid2: Some(successor.replid2.clone()),
                        new_primary,
                        elapsed_ms: now.saturating_sub(at),
                        since_first_busy_ms: inc.first_busy.map(|f| now.saturating_sub(f)),
                        seen_by,
                    };
                    inc.failed_over = true;
                    self.successor = Some(successor);
                    detail.into()
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

/// How a server would be failed over, from its healthy snapshot, the policy's Sentinel master
/// name and the replicas it lists (also what `status` shows); or why it cannot be.
pub fn plan(
    sentinel_master: Option<&str>,
    listed: &[TrustedReplica],
    snapshot: &Snapshot,
) -> Result<Plan, String> {
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
    let in_sync = in_sync(snapshot);
    if in_sync.is_empty() {
        return Err(format!(
            "no replica online within {MAX_LAG_S} s of lag in the healthy snapshot ({} attached)",
            snapshot.connected_replicas.unwrap_or(0)
        ));
    }
    // Any client allowed REPLCONF can be listed in INFO as a replica: only those the policy
    // names are asked their offset and promoted.
    let replicas: Vec<ReplicaLink> = in_sync
        .iter()
        .filter(|r| crate::policy::replicas::named(listed, &r.address).is_some())
        .cloned()
        .collect();
    let Some(first) = replicas.first() else {
        return Err(format!(
            "{} replica(s) online in sync ({}), none of them listed in `topology.replicas`: busyguard asks and promotes only the replicas the policy names (it sends them its credentials)",
            in_sync.len(),
            in_sync
                .iter()
                .map(|r| r.address.as_str())
                .collect::<Vec<_>>()
                .join(", ")
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
