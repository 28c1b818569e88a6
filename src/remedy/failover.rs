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
//! The promotion is seen when a watched replica answers ROLE `master`, or, under Sentinel,
//! when the sentinel that accepted names a primary with another run id. Requests go once per
//! sentinel per round; the replicas are asked every [`WATCH_EVERY`]: a replica takes a
//! `REPLICAOF NO ONE` in microseconds, and every millisecond here is one more of BUSY for the
//! clients still on the old primary.

use std::time::Duration;

use tokio::time::{Instant, sleep, timeout};

use super::{Context, Gate, Remedy, Runtime};
use crate::engine::{FailoverOutcome, FailoverPlan, Observation};
use crate::model::kinds::FailoverVia;
use crate::policy::replicas::TrustedReplica;
use crate::policy::{RedisTarget, SentinelTopology};
use crate::redis::probe::{self, Connection, Outcome};
use crate::redis::reply::role_in;
use crate::redis::{ASK_LIMIT, listed_target};

impl Remedy for FailoverPlan {
    const GATE: Gate = Gate::OnDisk;

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
        (FailoverVia::Sentinel, Some(topology)) => request_sentinel(topology, plan, deadline).await,
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
    let run_id = plan.run_id.as_deref();
    let master = sentinel.map(|s| s.master.as_str()).unwrap_or_default();
    let mut replicas = Watched::new(primary, listed, &plan.watch);
    loop {
        if let Some(new_primary) = replicas.promoted(deadline).await {
            return FailoverOutcome::Promoted {
                new_primary,
                seen_by: "ROLE on the replica".into(),
            };
        }
        if let (Some(conn), Some(ours)) = (&sentinel_conn, run_id)
            && let Ok(Ok(fields)) =
                timeout(left(deadline), crate::redis::sentinel::ask_on(conn, master)).await
            && fields
                .get("runid")
                .is_some_and(|r| !r.is_empty() && r != ours)
        {
            let field = |k: &str| fields.get(k).cloned().unwrap_or_default();
            return FailoverOutcome::Promoted {
                new_primary: format!("{}:{}", field("ip"), field("port")),
                seen_by: "Sentinel".into(),
            };
        }
        if Instant::now() + WATCH_EVERY >= deadline {
            return FailoverOutcome::Failed {
                accepted: true,
                reason: format!(
                    "the request was accepted, but no promotion was seen within {} ms (no watched replica answered ROLE `master`{})",
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
/// now, promote one of the new primary's replicas beside it (two primaries). When more than half
/// name another server, the role has moved already. Each round is tried again every
/// [`RETRY_EVERY`] (`-NOGOODSLAVE`, a sentinel away) until the bound.
async fn request_sentinel(
    topology: &SentinelTopology,
    plan: &FailoverPlan,
    deadline: Instant,
) -> Result<Requested, String> {
    let Some(ours) = plan.run_id.as_deref() else {
        return Err("this server's run id is unknown: Sentinel's primary cannot be matched to it, so no failover is asked for".into());
    };
    let master = topology.master.as_str();
    let needed = topology.sentinels.len() / 2 + 1;
    let mut last;
    // The last refusal a sentinel answered (`-NOGOODSLAVE`): it says more than an attempt cut
    // short by the deadline.
    let mut refused: Option<String> = None;
    loop {
        // Each sentinel's view: (its connection, the run id and address it names).
        let mut views: Vec<(Connection, String, String)> = Vec::new();
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
                    let field = |k: &str| fields.get(k).cloned().unwrap_or_default();
                    let address = format!("{}:{}", field("ip"), field("port"));
                    views.push((conn, field("runid"), address));
                }
                Ok(Err(e)) => away.push(format!("sentinel {url}: {e}")),
                Err(_) => away.push(format!("sentinel {url}: no answer in time")),
            }
        }
        let naming = |id: &str| views.iter().filter(|v| v.1 == id).count();
        if let Some((_, _, address)) = views
            .iter()
            .find(|v| !v.1.is_empty() && v.1 != ours && naming(&v.1) >= needed)
        {
            return Ok(Requested::AlreadyDone(FailoverOutcome::Promoted {
                new_primary: address.clone(),
                seen_by: "Sentinel, before the request: a majority serves another primary already"
                    .into(),
            }));
        }
        last = match naming(ours) {
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
        if last.is_empty() {
            for (conn, _, _) in views.into_iter().filter(|v| v.1 == ours) {
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
    let ours = plan.replid.as_deref();
    match (
        field("role"),
        field("master_replid"),
        field("master_replid2"),
    ) {
        (_, _, _) if ours.is_none() => {
            return Err("this server's replication ID is unknown: the replica cannot be matched to it, so no failover is asked for".into());
        }
        (Some("slave"), id, _) if id == ours => {}
        // Promoted already (the replication ID it had from this server is its second now).
        (Some("master"), _, id2) if id2 == ours => {
            return Ok(Requested::AlreadyDone(FailoverOutcome::Promoted {
                new_primary: replica.to_string(),
                seen_by: "the replica's INFO, before the request: it is the primary already".into(),
            }));
        }
        (role, _, _) => {
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

    /// The first replica that answers ROLE `master`, if one does.
    async fn promoted(&mut self, deadline: Instant) -> Option<String> {
        for (address, kept) in &mut self.replicas {
            let role = kept
                .ask(left(deadline), async |conn| {
                    match timeout(left(deadline), conn.call(&["ROLE"])).await {
                        Ok(Outcome::Reply(v)) => Ok(role_in(&v)),
                        Ok(Outcome::ErrorReply(_)) => Ok(None),
                        Ok(Outcome::Lost(_)) | Err(_) => Err(probe::Lost),
                    }
                })
                .await;
            if role.flatten().as_deref() == Some("master") {
                return Some(address.clone());
            }
        }
        None
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
