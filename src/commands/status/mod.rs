//! `busyguard status`: connect once to each instance with its policy's credentials and report
//! what a decision would rest on right now: reachability, version, role and replicas, what a
//! SHUTDOWN NOSAVE would lose, the busy threshold, and whether the user holds every right
//! busyguard needs.
//!
//! When a daemon runs with the same state dir, each instance also shows what that daemon is
//! doing with it now (its `ps` line: state, open incident, pauses and holds), so a pause is not
//! mistaken for a healthy watch.
//!
//! Rights are checked without admin rights and without side effects. Read-only commands are
//! simply run. The kills are queued inside `MULTI` and discarded: the server checks the ACL
//! when queuing and runs nothing (a bare `SCRIPT KILL` could kill a script that starts a moment
//! later). `SHUTDOWN` is refused inside `MULTI` before its ACL check, so it is sent with a flag
//! no version accepts: the ACL answers first (`NOPERM`), else a syntax error, and nothing shuts
//! down.

pub(crate) mod prevention;
pub mod report;
pub(crate) mod restart;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use report::{
    ClusterView, DaemonView, Entry, FailoverView, InstanceStatus, ListedLink, Rejected, Report,
    ServerFacts, Whoami,
};

use crate::commands::steer;
use crate::daemon::control::Request;
use crate::model::kinds::Then;
use crate::model::snapshot::Snapshot;
use crate::policy::{self, Policy};
use crate::redis::probe::{self, Outcome};
use crate::redis::sentinel::SentinelView;

/// How long set-up and each check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// A right and the harmless command that proves it.
struct Check {
    right: &'static str,
    words: &'static [&'static str],
    /// Queued in MULTI and discarded, never run.
    queued: bool,
    /// What is lost without it.
    needed_for: &'static str,
    /// The first major version that has the command (FUNCTION: 7.0).
    since_major: u32,
    /// Needed only under `then: failover` (the same user on the replicas too).
    for_failover: bool,
}

const CHECKS: &[Check] = &[
    Check {
        right: "ping",
        words: &["PING"],
        queued: false,
        needed_for: "probing",
        since_major: 0,
        for_failover: false,
    },
    Check {
        right: "info",
        words: &["INFO", "server"],
        queued: false,
        needed_for: "the healthy snapshot",
        since_major: 0,
        for_failover: false,
    },
    Check {
        right: "config|get",
        words: &["CONFIG", "GET", "busy-reply-threshold"],
        queued: false,
        needed_for: "the threshold and persistence settings in the snapshot",
        since_major: 0,
        for_failover: false,
    },
    Check {
        right: "script|kill",
        words: &["SCRIPT", "KILL"],
        queued: true,
        needed_for: "killing EVAL scripts",
        since_major: 0,
        for_failover: false,
    },
    Check {
        right: "function|kill",
        words: &["FUNCTION", "KILL"],
        queued: true,
        needed_for: "killing functions",
        since_major: 7,
        for_failover: false,
    },
    Check {
        right: "shutdown",
        words: &["SHUTDOWN", "BUSYGUARD-RIGHTS-CHECK"],
        queued: false,
        needed_for: "escalating to SHUTDOWN NOSAVE",
        since_major: 0,
        for_failover: false,
    },
    Check {
        right: "slowlog|get",
        words: &["SLOWLOG", "GET", "1"],
        queued: false,
        needed_for: "forensics (the offending script)",
        since_major: 0,
        for_failover: false,
    },
    Check {
        right: "function|stats",
        words: &["FUNCTION", "STATS"],
        queued: false,
        needed_for: "forensics (the running function)",
        since_major: 7,
        for_failover: false,
    },
    Check {
        right: "role",
        words: &["ROLE"],
        queued: false,
        needed_for: "`then: failover`: seeing a replica promoted (the same user on every replica)",
        since_major: 0,
        for_failover: true,
    },
    Check {
        right: "replicaof",
        words: &["REPLICAOF", "NO", "ONE"],
        queued: true,
        needed_for: "`then: failover` (or `topology.fence`): fencing an old primary that answers as a primary after its failover (REPLICAOF the new one)",
        since_major: 0,
        for_failover: true,
    },
    Check {
        right: "cluster|failover",
        words: &["CLUSTER", "FAILOVER", "FORCE"],
        queued: true,
        needed_for: "`then: failover` in a Cluster: promoting a replica (the same user on every replica)",
        since_major: 0,
        for_failover: true,
    },
    Check {
        right: "cluster|info",
        words: &["CLUSTER", "INFO"],
        queued: false,
        needed_for: "`status` in a Cluster: its state and size",
        since_major: 0,
        for_failover: true,
    },
];

/// Report on every instance under `paths`, with what the daemon keeping `state_dir` does with
/// it (its trail for the slowest scripts, its control socket for pauses and holds); true when
/// all were reachable.
pub async fn status(
    paths: &[PathBuf],
    as_json: bool,
    state_dir: &Path,
    sources: &policy::Sources,
    out: &mut impl Write,
) -> std::io::Result<bool> {
    let trail = state_dir.join("audit.jsonl");
    let trail = Some(trail.as_path());
    let daemon = tokio::time::timeout(CHECK_TIMEOUT, steer::send(state_dir, &Request::ps()))
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r);
    let loaded = policy::load_with(paths, sources);
    let mut all_ok = loaded.rejected.is_empty();
    let mut report = Report {
        instances: Vec::new(),
    };
    for (file, diags) in &loaded.rejected {
        let problems = diags.iter().map(ToString::to_string).collect();
        report.instances.push(Entry::Rejected(Rejected::new(
            file.display().to_string(),
            problems,
        )));
    }
    for p in &loaded.policies {
        let mut s = instance_status(p, trail.filter(|t| t.exists())).await;
        s.daemon = Some(match &daemon {
            Ok(ps) => match ps.instances.iter().find(|i| i.instance == p.instance) {
                Some(i) => DaemonView::Live(i.live.clone().map(Box::new)),
                None => DaemonView::Error {
                    error: "not supervised by the running daemon".into(),
                },
            },
            Err(e) => DaemonView::Error {
                error: format!("not reached: {e:#}"),
            },
        });
        all_ok &= s.reachable;
        report.instances.push(Entry::Instance(Box::new(s)));
    }
    if as_json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        for entry in &report.instances {
            write!(out, "{entry}")?;
        }
    }
    Ok(all_ok)
}

async fn instance_status(p: &Policy, trail: Option<&Path>) -> InstanceStatus {
    let mut s = InstanceStatus {
        instance: p.instance.clone(),
        file: p.source.display().to_string(),
        endpoint: p.redis.endpoint.to_string(),
        user: p.redis.username.as_deref().unwrap_or("default").to_string(),
        plan: crate::engine::Rules::from_policy(p, false).plan_words(),
        ..InstanceStatus::default()
    };
    let conn =
        match tokio::time::timeout(CHECK_TIMEOUT, probe::connect(&p.redis, CHECK_TIMEOUT)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                // A server that answers set-up with an error is up, and refusing busyguard.
                s.refused = matches!(e, crate::redis::ConnectError::Rejected(_));
                s.error = Some(e.to_string());
                return s;
            }
            Err(_) => {
                s.error = Some("no answer (a busy script's silent phase, or a hung server)".into());
                return s;
            }
        };
    s.reachable = true;
    let mut warnings: Vec<String> = Vec::new();
    // The server's log the service must read to name an EVAL: said before any incident.
    if let Some(path) = &p.on_busy.server_log
        && let Err(why) = crate::policy::readable::by_the_service(path)
    {
        warnings.push(format!(
            "`on_busy.server_log`: {why}: {}",
            crate::policy::readable::FIX
        ));
    }
    // Who the server says this connection is (a password given without a username, or a
    // `nopass` user, shows here); `+acl|whoami` is one of the documented rights.
    let whoami = tokio::time::timeout(CHECK_TIMEOUT, conn.call(&["ACL", "WHOAMI"])).await;
    let whoami = match whoami.unwrap_or(Outcome::Lost("timed out".into())) {
        Outcome::Reply(v) => Whoami::User(v.as_string().unwrap_or_default()),
        Outcome::ErrorReply(e) | Outcome::Lost(e) => Whoami::Unchecked {
            unchecked: format!("ACL WHOAMI: {e}"),
        },
    };
    if let Whoami::User(who) = &whoami
        && s.user != *who
    {
        warnings.push(format!(
            "the policy names user `{}` but the server says this connection is `{who}`",
            s.user
        ));
    }
    s.whoami = Some(whoami);
    let mut snapshot = None;
    match tokio::time::timeout(CHECK_TIMEOUT, conn.snapshot())
        .await
        .map(|r| r.map(|h| h.snapshot))
    {
        Ok(Ok(snap)) => {
            snapshot = Some(snap.clone());
            server_facts(&mut s, p, &conn, &snap, &mut warnings).await;
        }
        Ok(Err(Outcome::ErrorReply(e))) if e.starts_with("BUSY") => {
            s.busy_now = Some(e);
            warnings.push("the server is BUSY right now: rights were not checked".into());
            s.warnings = Some(warnings);
            return s;
        }
        Ok(Err(Outcome::ErrorReply(e) | Outcome::Lost(e))) => s.snapshot_error = Some(e),
        Ok(Err(Outcome::Reply(_))) => {}
        Err(_) => s.snapshot_error = Some("timed out".into()),
    }
    let mut rights = BTreeMap::new();
    // Valkey's own version counts from 7.2 (its first), so any Valkey has FUNCTION.
    let major = snapshot
        .as_ref()
        .and_then(crate::model::snapshot::Snapshot::major_version);
    // The rights of every ladder: a script rule's `then: failover` needs them as much as the
    // instance's would; fencing (REPLICAOF) also under `topology.fence`.
    let failover = p.on_busy.may(Then::Failover);
    let fence = p.on_busy.may_fence(p.topology.fence);
    let applies = |c: &&Check| match c.right {
        "replicaof" => fence,
        _ => failover || !c.for_failover,
    };
    for check in CHECKS.iter().filter(applies) {
        if let Some(major) = major.filter(|m| *m < check.since_major) {
            let why = format!("not applicable (version {major} has no such command)");
            rights.insert(check.right.to_string(), why);
            continue;
        }
        let word = check.words[0];
        if conn.disabled(word) {
            let word = word.to_ascii_lowercase();
            let why = format!("disabled in redis.conf (`redis.commands.{word}` is empty)");
            rights.insert(check.right.to_string(), why);
            continue;
        }
        let verdict = right(&conn, check).await;
        if verdict != "granted" {
            warnings.push(format!(
                "`{}` is {verdict}: needed for {}",
                check.right, check.needed_for
            ));
        }
        rights.insert(check.right.to_string(), verdict);
    }
    s.rights = Some(rights);
    if let Some(topology) = &p.topology.sentinel {
        let (view, said) = crate::redis::sentinel::views(topology, p, snapshot.as_ref()).await;
        s.sentinel = Some(view);
        warnings.extend(said);
    }
    // What restarts a local server a policy may shut down (its systemd unit), asked once for
    // both warnings: `None` when not asked (remote, no shutdown, pid unknown).
    let supervisor = (p.on_busy.shuts_down_by_itself() && p.redis.endpoint.is_local())
        .then(|| snapshot.as_ref().and_then(|s| s.process_id))
        .flatten()
        .map(crate::commands::status::restart::Supervisor::of_process);
    if let Some(warning) = restarted_too_soon(&s, supervisor.as_ref().and_then(Option::as_ref)) {
        warnings.push(warning);
    }
    if let Some(warning) = nothing_restarts(p, supervisor.as_ref().map(Option::as_ref)) {
        warnings.push(warning);
    }
    if let Some(snap) = &snapshot {
        let found = crate::commands::status::prevention::findings(&conn, p, snap, trail);
        s.prevention = Some(
            tokio::time::timeout(CHECK_TIMEOUT, found)
                .await
                .unwrap_or_default(),
        );
    }
    s.warnings = Some(warnings);
    s
}

/// What the healthy snapshot `snap` says, with its warnings: the server, its replicas (and
/// whether the policy lists each), the Cluster, what a failover would do, what a shutdown would
/// lose, and the threshold against the policy.
async fn server_facts(
    s: &mut InstanceStatus,
    p: &Policy,
    conn: &probe::Connection,
    snap: &Snapshot,
    warnings: &mut Vec<String>,
) {
    if !snap.errors.is_empty() {
        s.snapshot_errors = snap.errors.clone();
        warnings.push(format!(
            "the healthy snapshot is incomplete ({}): BUSY is still detected, but a shutdown whose guards need the missing facts is withheld",
            snap.errors.join("; ")
        ));
    }
    if let Some(warning) = another_server_answers(p, snap.run_id.as_deref()).await {
        warnings.push(warning);
    }
    s.server_facts = Some(ServerFacts {
        server: snap.server_name.clone(),
        version: snap.version.clone(),
        role: snap.role.clone(),
        replicas: snap.connected_replicas,
        // Whether busyguard may contact each (`topology.replicas`): INFO's list is a claim.
        replica_links: snap
            .replica_links()
            .into_iter()
            .map(|link| ListedLink {
                listed: crate::policy::replicas::named(&p.topology.replicas, &link.address)
                    .is_some(),
                link,
            })
            .collect(),
        busy_threshold_ms: snap.busy_threshold_ms,
        shutdown_nosave_loses: snap.data_at_risk(),
        rdb_changes_since_last_save: snap.rdb_changes_since_last_save,
    });
    if snap.cluster_enabled == Some(true) {
        s.cluster_enabled = Some(true);
        let cluster = cluster_view(conn).await;
        if !p.on_busy.may(Then::Failover) {
            let down = match (snap.busy_threshold_ms, cluster.node_timeout_ms()) {
                (Some(t), Some(n)) => format!(
                    "; after a shutdown its slots are down for threshold + wait + node-timeout ({} ms) before the Cluster fails them over, if its supervisor does not restart it first",
                    t + p.on_busy.on_unkillable.wait.as_millis() as u64 + n
                ),
                _ => String::new(),
            };
            warnings.push(format!("a Cluster node: the Cluster never fails over a primary busy with a script (it keeps answering the cluster bus), so its slots stay BUSY until the script ends or busyguard acts; `then: failover` promotes its replica (CLUSTER FAILOVER FORCE) at the end of the budget, and `guards.keep_primary_with_replicas` would withhold a shutdown with nobody to end the script{down}"));
        }
        s.cluster = Some(cluster);
    }
    if p.on_busy.may(Then::Failover) {
        let master = p.topology.sentinel.as_ref().map(|t| t.master.as_str());
        s.failover = Some(
            match crate::engine::failover::plan(master, &p.topology.replicas, snap) {
                Ok((via, request_to, replicas_in_sync)) => FailoverView::Plan {
                    via,
                    request_to,
                    replicas_in_sync,
                },
                Err(why) => {
                    warnings.push(format!(
                        "`then: failover` could not fail this server over now: {why}; `failover.fallback` ({}) would apply",
                        p.on_busy.on_unkillable.failover.fallback.name()
                    ));
                    FailoverView::None { none: why }
                }
            },
        );
    }
    if let (Some("master"), Some(n @ 1..), Some(false), Some("")) = (
        snap.role.as_deref(),
        snap.connected_replicas,
        snap.aof_enabled,
        snap.save.as_deref().map(str::trim),
    ) {
        warnings.push(format!(
            "a primary with {n} replica(s) and no persistence (appendonly no, save \"\"): restarted by its supervisor (Debian's redis-server.service has Restart=always) it comes back empty and its replicas resync to the empty dataset; {}",
            match p.guards.allow_empty_restart {
                true => "the policy accepts that (`guards.allow_empty_restart: true`): a shutdown would lose the data on every node",
                false => "busyguard withholds its shutdowns (`guards.allow_empty_restart`); turn on persistence or let a failover move the role",
            }
        ));
    }
    match snap.busy_threshold_ms {
        Some(0) => warnings.push("busy-reply-threshold is 0: the server never answers BUSY, so no kill or shutdown can get through a runaway script".into()),
        Some(t) if t > p.on_busy.on_unkillable.wait.as_millis() as u64 => warnings.push(format!(
            "busy-reply-threshold ({t}ms) exceeds the policy's recovery budget `wait` ({}ms): scripts are silent longer than the budget lasts",
            p.on_busy.on_unkillable.wait.as_millis()
        )),
        Some(t) if t >= p.on_hang.after.as_millis() as u64 => warnings.push(format!(
            "busy-reply-threshold ({t}ms) is not below `on_hang.after` ({}ms): every runaway script is first reported as a hang",
            p.on_hang.after.as_millis()
        )),
        None => warnings.push("CONFIG GET was refused: the threshold and persistence settings are unknown".into()),
        _ => {}
    }
}

/// Whether a second connection to the policy's address reaches another server than the first
/// (a VIP, a DNS name with several addresses, a proxy in front of several servers): busyguard
/// would then act on a server it did not watch. Told when it can be seen.
async fn another_server_answers(p: &Policy, run_id: Option<&str>) -> Option<String> {
    let first = run_id?;
    let second = tokio::time::timeout(CHECK_TIMEOUT, async {
        let conn = probe::connect(&p.redis, CHECK_TIMEOUT).await.ok()?;
        match conn.call(&["INFO", "server"]).await {
            Outcome::Reply(v) => {
                crate::model::snapshot::info_field(&v.as_string()?, "run_id").map(str::to_string)
            }
            Outcome::ErrorReply(_) | Outcome::Lost(_) => None,
        }
    })
    .await
    .ok()
    .flatten()?;
    (second != first).then(|| {
        format!(
            "two connections to {} reached two servers (run ids {first} and {second}): `redis.url` must address the server itself, not a VIP, a DNS name or a proxy in front of several (busyguard would act on one it did not watch; its evidence is per connection)",
            p.redis.endpoint
        )
    })
}

/// CLUSTER INFO's state and size, and the node timeout (the Cluster's failure detection).
async fn cluster_view(conn: &probe::Connection) -> ClusterView {
    let info = match tokio::time::timeout(CHECK_TIMEOUT, conn.call(&["CLUSTER", "INFO"])).await {
        Ok(Outcome::Reply(v)) => v.as_string().unwrap_or_default(),
        Ok(Outcome::ErrorReply(e) | Outcome::Lost(e)) => return ClusterView::Error { error: e },
        Err(_) => {
            return ClusterView::Error {
                error: "timed out".into(),
            };
        }
    };
    let field = |k: &str| crate::model::snapshot::info_field(&info, k);
    let number = |k: &str| field(k).and_then(|v| v.parse::<u64>().ok());
    let timeout = conn.config("cluster-node-timeout");
    let node_timeout_ms = tokio::time::timeout(CHECK_TIMEOUT, timeout)
        .await
        .ok()
        .flatten()
        .and_then(|v| v.parse::<u64>().ok());
    ClusterView::Info {
        state: field("cluster_state").map(str::to_string),
        known_nodes: number("cluster_known_nodes"),
        size: number("cluster_size"),
        node_timeout_ms,
    }
}

/// A local server whose systemd unit restarts it sooner than Sentinel or the Cluster can fail
/// it over, under a policy that may shut it down: it is back as the primary, before any
/// failover (and empty, without persistence).
fn restarted_too_soon(
    s: &InstanceStatus,
    supervisor: Option<&crate::commands::status::restart::Supervisor>,
) -> Option<String> {
    let supervisor = supervisor?;
    let detection_ms = s
        .sentinel
        .iter()
        .flatten()
        .find_map(SentinelView::down_after_ms)
        .map(|ms| (ms, "Sentinel's down-after"))
        .or_else(|| {
            s.cluster
                .as_ref()
                .and_then(ClusterView::node_timeout_ms)
                .map(|ms| (ms, "the Cluster's node-timeout"))
        });
    let (detect_ms, by) = detection_ms?;
    (supervisor.restarts_after_shutdown() && (supervisor.delay.as_millis() as u64) < detect_ms)
        .then(|| {
            format!(
                "{} restarts the server {} ms after it stops (Restart={}), sooner than {by} ({detect_ms} ms): a server busyguard shuts down is back as the primary before any failover; `then: failover` moves the role first",
                supervisor.unit,
                supervisor.delay.as_millis(),
                supervisor.restart
            )
        })
}

/// Under a policy that may shut the server down, whether anything brings it back: busyguard
/// never restarts a server. `asked`: a local server's systemd unit, as read (`None`: not
/// asked); of a remote one nothing can be seen, and the operator is told so.
fn nothing_restarts(
    p: &Policy,
    asked: Option<Option<&crate::commands::status::restart::Supervisor>>,
) -> Option<String> {
    if !p.on_busy.shuts_down_by_itself() {
        return None;
    }
    if !p.redis.endpoint.is_local() {
        return Some("the policy may shut this server down and busyguard never restarts one: make sure its supervisor (systemd `Restart=always`, your orchestrator) does; busyguard cannot see a remote host's".into());
    }
    match asked? {
        Some(s) if s.restarts_after_shutdown() => None,
        Some(s) => Some(format!(
            "the policy may shut this server down, and nothing restarts it: {} has Restart={} (a SHUTDOWN exits 0, which only `always` and `on-success` restart); busyguard never restarts a server: `systemctl edit {}` and set Restart=always",
            s.unit, s.restart, s.unit
        )),
        None => Some("the policy may shut this server down and busyguard never restarts one: no systemd unit runs it here, so make sure its supervisor does".into()),
    }
}

/// `granted`, `missing`, or `unchecked (...)`.
async fn right(conn: &probe::Connection, check: &Check) -> String {
    let call = |words: &'static [&'static str]| async move {
        tokio::time::timeout(CHECK_TIMEOUT, conn.call(words))
            .await
            .unwrap_or(Outcome::Lost("timed out".into()))
    };
    let outcome = if check.queued {
        match call(&["MULTI"]).await {
            Outcome::Reply(_) => {
                let queued = call(check.words).await;
                call(&["DISCARD"]).await;
                queued
            }
            Outcome::ErrorReply(e) if e.starts_with("NOPERM") => {
                return "unchecked (grant +multi +discard so status can check it without running it)".into();
            }
            other => other,
        }
    } else {
        call(check.words).await
    };
    match outcome {
        Outcome::ErrorReply(e) if e.starts_with("NOPERM") => "missing".into(),
        // A command renamed away (`rename-command`) or unknown to this server.
        Outcome::ErrorReply(e) if e.starts_with("ERR unknown command") => {
            let word = check.words[0].to_ascii_lowercase();
            format!(
                "missing (the server does not know the command: renamed or disabled in redis.conf? name it in `redis.commands.{word}`)"
            )
        }
        Outcome::ErrorReply(e) if e.starts_with("ERR unknown subcommand") => {
            "missing (the server does not know the subcommand)".into()
        }
        Outcome::Lost(e) => format!("unchecked ({e})"),
        // Any other answer, errors included (NOTBUSY, a syntax error), got past the ACL.
        _ => "granted".into(),
    }
}
