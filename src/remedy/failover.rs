//! Carrying out a failover the engine asked for (`then: failover`): the request, then the wait
//! for a promotion busyguard can see, both within the plan's bound.
//!
//! - Sentinel: `SENTINEL FAILOVER <master>` to a sentinel that names this server, while more
//!   than half of the configured sentinels do, until one accepts (`+OK`, or `-INPROG`: one is
//!   already under way). Sentinel answers `-NOGOODSLAVE` while it has no fresh INFO from a
//!   replica; the round is tried again every [`RETRY_EVERY`] until the bound.
//! - Cluster: `CLUSTER FAILOVER FORCE` to the replica the engine chose (the busy node cannot
//!   take part in a normal failover; FORCE still needs the other primaries' votes).
//!
//! The promotion counts only when busyguard verifies it ([`crate::redis::takeover::verify`]):
//! a watched replica, or the server the sentinel that accepted names, answers ROLE `master` with
//! this primary's history in its `master_replid2`. A run id that differs proves nothing (a
//! restarted primary is named by its old one for up to 10 s). Requests go once per
//! sentinel per round; the replicas are asked every [`WATCH_EVERY`]: a replica takes a
//! `REPLICAOF NO ONE` in microseconds, and every millisecond here is one more of BUSY for the
//! clients still on the old primary.

use std::time::Duration;

use tokio::time::{Instant, sleep, timeout};

use super::gate::Needs;
use super::{Context, Gate, Remedy, Runtime};
use crate::engine::{FailoverOutcome, FailoverPlan, Observation};
use crate::model::kinds::FailoverVia;
use crate::model::takeover::{Lineage, Successor};
use crate::policy::replicas::TrustedReplica;
use crate::policy::{RedisTarget, SentinelTopology};
use crate::redis::probe::{self, Connection, Outcome};
use crate::redis::takeover::{PrimaryView, Verdict};
use crate::redis::{ASK_LIMIT, listed_target};

impl Remedy for FailoverPlan {
    const GATE: Gate = Gate::OnDisk;

    fn needs(&self) -> Needs<'_> {
        Needs::Busy(Some(&self.evidence))
    }

    fn not_sent(&self, reason: String, missing: String) -> Observation {
        Observation::NotSent {
            action: crate::event::detail::WithheldAction::Failover,
            reason,
            missing,
        }
    }

    /// The failover bounds itself; the margin is for the last question in flight.
    fn bound(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.timeout_ms) + REPLY_MARGIN)
    }

    async fn perform(&self, ctx: &Context<'_>, _: &impl Runtime) -> (Observation, bool) {
        let sentinel = ctx.policy.topology.sentinel.as_ref();
        let outcome = carry_out(
            self,
            &ctx.policy.redis,
            &ctx.policy.topology.replicas,
            sentinel,
        )
        .await;
        (Observation::Failover(outcome), false)
    }

    /// Whether a request was accepted before the bound is not known: said as not.
    fn unanswered(&self, why: String, _lost: bool) -> Observation {
        Observation::Failover(FailoverOutcome::Failed {
            accepted: false,
            reason: why,
        })
    }
}

/// What the last question of a failover in flight may take beyond `failover.timeout`.
const REPLY_MARGIN: Duration = Duration::from_millis(500);

/// The failover, carried out beside the probe (its record on disk already): the request and
/// the watch for the promotion, within the plan's bound, as the observation the engine gets.
/// It owns what it needs, so the watchdog goes on probing meanwhile (continuity holds, and the
/// zombie's shutdown or the fallback rests on a BUSY reply that just arrived).
pub async fn detached(plan: FailoverPlan, policy: crate::policy::Policy) -> Observation {
    let bound = plan.bound().expect("a failover bounds itself");
    let outcome = carry_out(
        &plan,
        &policy.redis,
        &policy.topology.replicas,
        policy.topology.sentinel.as_ref(),
    );
    match timeout(bound, outcome).await {
        Ok(outcome) => Observation::Failover(outcome),
        Err(_) => plan.unanswered(format!("no outcome within {} ms", bound.as_millis()), true),
    }
}

/// How often a refused Sentinel request is tried again.
const RETRY_EVERY: Duration = Duration::from_millis(100);
/// How often the replicas (and Sentinel) are asked whether the promotion happened.
const WATCH_EVERY: Duration = Duration::from_millis(5);

/// Request the failover and wait for the promotion. `primary` is the busy server's policy
/// target (the replicas it `listed` are reached with its credentials and TLS).
pub async fn carry_out(
    plan: &FailoverPlan,
    primary: &RedisTarget,
    listed: &[TrustedReplica],
    sentinel: Option<&SentinelTopology>,
) -> FailoverOutcome {
    let deadline = Instant::now() + Duration::from_millis(plan.timeout_ms);
    let requested = match (plan.via, sentinel) {
        (FailoverVia::Sentinel, Some(topology)) => {
            request_sentinel(topology, primary, listed, plan, deadline).await
        }
        (FailoverVia::Sentinel, None) => Err("no `topology.sentinel` in the policy".into()),
        (FailoverVia::Cluster, _) => request_cluster(primary, listed, plan, deadline).await,
    };
    let sentinel_conn = match requested {
        Ok(Requested::Sent(conn)) => conn,
        Ok(Requested::AlreadyDone(outcome)) => return outcome,
        Err(reason) => {
            return FailoverOutcome::Failed {
                accepted: false,
                reason,
            };
        }
    };
    let lineage = &plan.lineage;
    let master = sentinel.map(|s| s.master.as_str()).unwrap_or_default();
    let mut replicas = Watched::new(primary, listed, &plan.watch);
    loop {
        if let Some(successor) = replicas.promoted(lineage).await {
            return FailoverOutcome::Promoted {
                successor,
                seen_by: "ROLE and INFO on the replica".into(),
            };
        }
        // The sentinel that accepted names another primary: verified like any claim.
        if let Some(conn) = &sentinel_conn
            && let Ok(Ok(fields)) =
                timeout(left(deadline), crate::redis::sentinel::ask_on(conn, master)).await
            && let Some(view) = named(&fields).filter(|v| !lineage.is_this_server(&v.run_id))
            && let Some(successor) = replicas.verify(primary, listed, &view, lineage).await
        {
            return FailoverOutcome::Promoted {
                successor,
                seen_by: "Sentinel, verified on the server it names".into(),
            };
        }
        if Instant::now() + WATCH_EVERY >= deadline {
            return FailoverOutcome::Failed {
                accepted: true,
                reason: format!(
                    "the request was accepted, but no promotion was seen within {} ms (no watched replica answered ROLE `master` with this server's history{})",
                    plan.timeout_ms,
                    if sentinel_conn.is_some() {
                        ", and Sentinel still names this server"
                    } else {
                        ""
                    }
                ),
            };
        }
        sleep(WATCH_EVERY).await;
    }
}

/// What the request phase found: the request went (with the accepting sentinel's connection,
/// to watch its view), or the role had moved already.
enum Requested {
    Sent(Option<Connection>),
    AlreadyDone(FailoverOutcome),
}

/// Ask the sentinels for the failover; the accepting sentinel's connection, to watch its view
/// of the primary. Every configured sentinel is first asked whom it serves under the master's
/// name (by run id), and the request goes only while more than half of them name this server,
/// and only to one that does: a sentinel left behind by a failover the others made would, asked
/// now, promote one of the new primary's replicas beside it (two primaries). A sentinel naming
/// this server's own address by an old run id names this server (Sentinel refreshes a master's
/// INFO every 10 s; a restarted primary keeps its old run id there until then). When more than
/// half name another server, the role has moved already, but only if busyguard verifies it (a
/// group re-pointed elsewhere names another server too). Each round is tried again every
/// [`RETRY_EVERY`] (`-NOGOODSLAVE`, a sentinel away) until the bound.
async fn request_sentinel(
    topology: &SentinelTopology,
    primary: &RedisTarget,
    listed: &[TrustedReplica],
    plan: &FailoverPlan,
    deadline: Instant,
) -> Result<Requested, String> {
    let lineage = &plan.lineage;
    if !lineage.is_known() {
        return Err("this server's run id is unknown: Sentinel's primary cannot be matched to it, so no failover is asked for".into());
    }
    let master = topology.master.as_str();
    let needed = topology.sentinels.len() / 2 + 1;
    let mut last;
    // The last refusal a sentinel answered (`-NOGOODSLAVE`): it says more than an attempt cut
    // short by the deadline. Likewise the round that heard the most sentinels.
    let mut refused: Option<String> = None;
    let mut heard_most: Option<(usize, String)> = None;
    loop {
        // Each sentinel's view: its connection, and whether it names this server (by one of its
        // run ids, or its own address under an old one) or another.
        let mut views: Vec<(Connection, bool, PrimaryView)> = Vec::new();
        let mut away = Vec::new();
        for target in &topology.sentinels {
            let url = target.endpoint.to_string();
            let conn = match open(target, deadline).await {
                Ok(conn) => conn,
                Err(why) => {
                    away.push(format!("sentinel {url}: {why}"));
                    continue;
                }
            };
            match timeout(
                left(deadline),
                crate::redis::sentinel::ask_on(&conn, master),
            )
            .await
            {
                Ok(Ok(fields)) => {
                    let Some(view) = named(&fields) else {
                        away.push(format!("sentinel {url}: names no primary"));
                        continue;
                    };
                    let ours = lineage.is_this_server(&view.run_id)
                        || crate::redis::takeover::is_own_address(
                            &primary.endpoint,
                            lineage.tcp_port,
                            &view.address,
                        )
                        .await;
                    views.push((conn, ours, view));
                }
                Ok(Err(e)) => away.push(format!("sentinel {url}: {e}")),
                Err(_) => away.push(format!("sentinel {url}: no answer in time")),
            }
        }
        let others = |id: &str| views.iter().filter(|v| !v.1 && v.2.run_id == id).count();
        let other = views
            .iter()
            .find(|v| !v.1 && others(&v.2.run_id) >= needed)
            .map(|v| v.2.clone());
        if let Some(view) = other {
            let mut kept = None;
            match verify_named(primary, listed, &view, lineage, &mut kept).await {
                Some(successor) => {
                    return Ok(Requested::AlreadyDone(FailoverOutcome::Promoted {
                        successor,
                        seen_by: "Sentinel, before the request, verified on the server it names: \
                                  a majority serves it already"
                            .into(),
                    }));
                }
                None => {
                    return Err(format!(
                        "a majority of the sentinels name {} (run id {}) as `{master}`'s primary, \
                         a server busyguard cannot verify took over from this one: no failover is \
                         asked of a group that may serve another server",
                        view.address, view.run_id
                    ));
                }
            }
        }
        let heard = views.len();
        last = match views.iter().filter(|v| v.1).count() {
            n if n >= needed => String::new(),
            n => format!(
                "{n} of {} configured sentinel(s) name this server as `{master}`'s primary, {needed} needed{}",
                topology.sentinels.len(),
                if away.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", away.join("; "))
                }
            ),
        };
        // What the round that heard the most sentinels said: the last round may be cut short by
        // the deadline, and say less.
        if !last.is_empty() && heard_most.as_ref().is_none_or(|(n, _)| heard >= *n) {
            heard_most = Some((heard, last.clone()));
        }
        if last.is_empty() {
            for (conn, _, _) in views.into_iter().filter(|v| v.1) {
                let words = ["FAILOVER", master];
                match timeout(left(deadline), conn.call_with("SENTINEL", &words)).await {
                    Ok(Outcome::Reply(_)) => return Ok(Requested::Sent(Some(conn))),
                    // A failover of this master is under way already (Sentinel's own, or
                    // another busyguard's): its promotion is what is awaited.
                    Ok(Outcome::ErrorReply(e)) if e.starts_with("INPROG") => {
                        return Ok(Requested::Sent(Some(conn)));
                    }
                    Ok(Outcome::ErrorReply(e)) => {
                        refused = Some(e.clone());
                        last = e;
                    }
                    Ok(Outcome::Lost(e)) => last = e,
                    Err(_) => last = "no answer in time".into(),
                }
            }
        }
        if Instant::now() + RETRY_EVERY >= deadline {
            if let Some((_, best)) = heard_most.filter(|(n, _)| *n > heard) {
                last = best;
            }
            return Err(match refused {
                Some(r) if r != last => format!(
                    "no sentinel accepted the failover in time; last refusal: {r}; last attempt: {last}"
                ),
                _ => format!("no sentinel accepted the failover in time; last: {last}"),
            });
        }
        sleep(RETRY_EVERY).await;
    }
}

/// `CLUSTER FAILOVER FORCE` to the chosen replica, once its INFO shows it is still a replica of
/// this server (the same replication ID): told to a replica of another shard, it would fail
/// that healthy shard over.
async fn request_cluster(
    primary: &RedisTarget,
    listed: &[TrustedReplica],
    plan: &FailoverPlan,
    deadline: Instant,
) -> Result<Requested, String> {
    let replica = plan.target.as_str();
    let target = listed_target(primary, listed, replica)
        .ok_or_else(|| format!("`{replica}` is not one of `topology.replicas`"))?;
    let conn = open(&target, deadline)
        .await
        .map_err(|why| format!("replica {replica}: {why}"))?;
    let info = match timeout(left(deadline), conn.call(&["INFO", "replication"])).await {
        Ok(Outcome::Reply(v)) => v.as_string().unwrap_or_default(),
        Ok(Outcome::ErrorReply(e) | Outcome::Lost(e)) => {
            return Err(format!("replica {replica}: INFO replication: {e}"));
        }
        Err(_) => {
            return Err(format!(
                "replica {replica}: INFO replication: no answer in time"
            ));
        }
    };
    let field = |k: &str| crate::model::snapshot::info_field(&info, k);
    let lineage = &plan.lineage;
    if !lineage.is_known() {
        return Err("this server's replication ID is unknown: the replica cannot be matched to it, so no failover is asked for".into());
    }
    match (field("role"), field("master_replid")) {
        (Some("slave"), Some(id)) if lineage.continued_by(id) => {}
        // Promoted already? Verified like any claim.
        (Some("master"), _) => {
            let view = PrimaryView {
                address: replica.to_string(),
                run_id: String::new(),
            };
            return match verify_named(primary, listed, &view, lineage, &mut Some(conn)).await {
                Some(successor) => Ok(Requested::AlreadyDone(FailoverOutcome::Promoted {
                    successor,
                    seen_by: "the replica's ROLE and INFO, before the request: it is the primary \
                              already"
                        .into(),
                })),
                None => Err(format!(
                    "replica {replica} is a primary that did not take over from this server: no failover is asked for"
                )),
            };
        }
        (role, _) => {
            return Err(format!(
                "replica {replica} is no longer a replica of this server (role {}, another replication ID): no failover is asked for",
                role.unwrap_or("unknown")
            ));
        }
    }
    match timeout(left(deadline), conn.call(&["CLUSTER", "FAILOVER", "FORCE"])).await {
        Ok(Outcome::Reply(_)) => Ok(Requested::Sent(None)),
        Ok(Outcome::ErrorReply(e) | Outcome::Lost(e)) => Err(format!("replica {replica}: {e}")),
        Err(_) => Err(format!("replica {replica}: no answer in time")),
    }
}

/// What one question may take: [`ASK_LIMIT`], or what is left before the deadline.
fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .min(ASK_LIMIT)
}

/// The primary a sentinel names (`SENTINEL MASTER`'s fields), if it names one.
fn named(fields: &std::collections::HashMap<String, String>) -> Option<PrimaryView> {
    let field = |k: &str| fields.get(k).cloned().unwrap_or_default();
    let run_id = field("runid");
    (!run_id.is_empty()).then(|| PrimaryView {
        address: format!("{}:{}", field("ip"), field("port")),
        run_id,
    })
}

/// The successor at the server `view` names, if busyguard verifies that it took over from this
/// one ([`crate::redis::takeover`]); `conn`, an open connection to it, is used when given.
async fn verify_named(
    primary: &RedisTarget,
    listed: &[TrustedReplica],
    view: &PrimaryView,
    lineage: &Lineage,
    conn: &mut Option<Connection>,
) -> Option<Successor> {
    let target = crate::redis::takeover::listed(primary, listed, &view.address, lineage)
        .await
        .ok()?;
    let verdict = match conn.as_ref() {
        Some(conn) => crate::redis::takeover::verify_on(conn, &view.address, lineage)
            .await
            .ok()?,
        None => {
            let mut kept = probe::Kept::new(target);
            crate::redis::takeover::verify(&mut kept, &view.address, lineage).await
        }
    };
    match verdict {
        Verdict::TookOver(successor) => Some(successor),
        Verdict::Not(_) | Verdict::Unknown(_) => None,
    }
}

/// The replicas watched for the promotion, each with its connection while it holds. Sentinel
/// promotes with `SLAVEOF NO ONE` then `CLIENT KILL TYPE normal`, which closes the watching
/// connection too: a lost connection is opened anew at the next question.
struct Watched {
    replicas: Vec<(String, probe::Kept)>,
}

impl Watched {
    fn new(primary: &RedisTarget, listed: &[TrustedReplica], addresses: &[String]) -> Watched {
        let replicas = addresses
            .iter()
            .filter_map(|a| {
                Some((
                    a.clone(),
                    probe::Kept::new(listed_target(primary, listed, a)?),
                ))
            })
            .collect();
        Watched { replicas }
    }

    /// The first watched replica verified to have taken over from this server, if one has.
    async fn promoted(&mut self, lineage: &Lineage) -> Option<Successor> {
        for (address, kept) in &mut self.replicas {
            if let Verdict::TookOver(successor) =
                crate::redis::takeover::verify(kept, address, lineage).await
            {
                return Some(successor);
            }
        }
        None
    }

    /// The server `view` names, verified (on a watched replica's connection when it is one).
    async fn verify(
        &mut self,
        primary: &RedisTarget,
        listed: &[TrustedReplica],
        view: &PrimaryView,
        lineage: &Lineage,
    ) -> Option<Successor> {
        if let Some((address, kept)) = self.replicas.iter_mut().find(|(a, _)| *a == view.address) {
            return match crate::redis::takeover::verify(kept, address, lineage).await {
                Verdict::TookOver(successor) => Some(successor),
                Verdict::Not(_) | Verdict::Unknown(_) => None,
            };
        }
        verify_named(primary, listed, view, lineage, &mut None).await
    }
}

/// Connect within the bound.
async fn open(target: &RedisTarget, deadline: Instant) -> Result<Connection, String> {
    let limit = left(deadline);
    match timeout(limit, probe::connect(target, limit)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no connection within {} ms", limit.as_millis())),
    }
}
