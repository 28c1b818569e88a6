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
pub(crate) mod restart;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::commands::steer;
use crate::daemon::control::Request;
use crate::model::kinds::Then;
use crate::model::snapshot::Snapshot;
use crate::policy::{self, Policy};
use crate::redis::probe::{self, Outcome};

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
        needed_for: "`then: failover`: fencing an old primary that answers as a primary after its failover (REPLICAOF the new one)",
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
    let report = policy::load_with(paths, sources);
    let mut all_ok = report.rejected.is_empty();
    let mut instances = Vec::new();
    for (file, diags) in &report.rejected {
        instances.push(json!({"file": file.display().to_string(), "reachable": false,
            "error": "invalid policy", "problems": diags.iter().map(ToString::to_string).collect::<Vec<_>>()}));
    }
    for p in &report.policies {
        let mut s = instance_status(p, trail.filter(|t| t.exists())).await;
        s["daemon"] = match &daemon {
            Ok(ps) => ps
                .instances
                .iter()
                .find(|i| i.instance == p.instance)
                .map_or(
                    json!({"error": "not supervised by the running daemon"}),
                    |i| json!(i.live),
                ),
            Err(e) => json!({"error": format!("not reached: {e:#}")}),
        };
        all_ok &= s["reachable"] == true;
        instances.push(s);
    }
    if as_json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({"instances": instances}))?
        )?;
    } else {
        for s in &instances {
            human(s, out)?;
        }
    }
    Ok(all_ok)
}

async fn instance_status(p: &Policy, trail: Option<&Path>) -> Value {
    let mut s = json!({
        "instance": p.instance,
        "file": p.source.display().to_string(),
        "endpoint": p.redis.endpoint.to_string(),
        "user": p.redis.username.as_deref().unwrap_or("default"),
    });
    let conn =
        match tokio::time::timeout(CHECK_TIMEOUT, probe::connect(&p.redis, CHECK_TIMEOUT)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                s["reachable"] = json!(false);
                s["error"] = json!(e.to_string());
                return s;
            }
            Err(_) => {
                s["reachable"] = json!(false);
                s["error"] = json!("no answer (a busy script's silent phase, or a hung server)");
                return s;
            }
        };
    s["reachable"] = json!(true);
    let mut warnings: Vec<String> = Vec::new();
    // Who the server says this connection is (a password given without a username, or a
    // `nopass` user, shows here); `+acl|whoami` is one of the documented rights.
    let whoami = tokio::time::timeout(CHECK_TIMEOUT, conn.call(&["ACL", "WHOAMI"])).await;
    s["whoami"] = match whoami.unwrap_or(Outcome::Lost("timed out".into())) {
        Outcome::Reply(v) => json!(v.as_string().unwrap_or_default()),
        Outcome::ErrorReply(e) | Outcome::Lost(e) => {
            json!({"unchecked": format!("ACL WHOAMI: {e}")})
        }
    };
    if let Some(who) = s["whoami"].as_str()
        && s["user"] != who
    {
        warnings.push(format!(
            "the policy names user `{}` but the server says this connection is `{who}`",
            s["user"].as_str().unwrap_or("?")
        ));
    }
    let mut snapshot = None;
    match tokio::time::timeout(CHECK_TIMEOUT, conn.snapshot())
        .await
        .map(|r| r.map(|h| h.snapshot))
    {
        Ok(Ok(snap)) => {
            snapshot = Some(snap.clone());
            if !snap.errors.is_empty() {
                s["snapshot_errors"] = json!(snap.errors);
                warnings.push(format!(
                    "the healthy snapshot is incomplete ({}): BUSY is still detected, but a shutdown whose guards need the missing facts is withheld",
                    snap.errors.join("; ")
                ));
            }
            if let Some(warning) = another_server_answers(p, snap.run_id.as_deref()).await {
                warnings.push(warning);
            }
            s["server"] = json!(snap.server_name);
            s["version"] = json!(snap.version);
            s["role"] = json!(snap.role);
            s["replicas"] = json!(snap.connected_replicas);
            // Whether busyguard may contact each (`topology.replicas`): INFO's list is a claim.
            s["replica_links"] = snap
                .replica_links()
                .into_iter()
                .map(|r| {
                    let listed =
                        crate::policy::replicas::named(&p.topology.replicas, &r.address).is_some();
                    let mut v = json!(r);
                    v["listed"] = json!(listed);
                    v
                })
                .collect();
            if snap.cluster_enabled == Some(true) {
                s["cluster_enabled"] = json!(true);
                s["cluster"] = cluster_view(&conn).await;
                if p.on_busy.on_unkillable.then != Then::Failover {
                    let down = match (
                        snap.busy_threshold_ms,
                        s["cluster"]["node_timeout_ms"].as_u64(),
                    ) {
                        (Some(t), Some(n)) => format!(
                            "; after a shutdown its slots are down for threshold + wait + node-timeout ({} ms) before the Cluster fails them over, if its supervisor does not restart it first",
                            t + p.on_busy.on_unkillable.wait.as_millis() as u64 + n
                        ),
                        _ => String::new(),
                    };
                    warnings.push(format!("a Cluster node: the Cluster never fails over a primary busy with a script (it keeps answering the cluster bus), so its slots stay BUSY until the script ends or busyguard acts; `then: failover` promotes its replica (CLUSTER FAILOVER FORCE) at the end of the budget, and `guards.keep_primary_with_replicas` would withhold a shutdown with nobody to end the script{down}"));
                }
            }
            if p.on_busy.on_unkillable.then == Then::Failover {
                let master = p.topology.sentinel.as_ref().map(|t| t.master.as_str());
                s["failover"] = match crate::engine::failover::plan(
                    master,
                    &p.topology.replicas,
                    &snap,
                ) {
                    Ok((via, target, replicas)) => {
                        json!({"via": via, "request_to": target, "replicas_in_sync": replicas})
                    }
                    Err(why) => {
                        warnings.push(format!(
                            "`then: failover` could not fail this server over now: {why}; `failover.fallback` ({}) would apply",
                            p.on_busy.on_unkillable.failover.fallback.name()
                        ));
                        json!({"none": why})
                    }
                };
            }
            s["busy_threshold_ms"] = json!(snap.busy_threshold_ms);
            s["shutdown_nosave_loses"] = json!(snap.data_at_risk());
            s["rdb_changes_since_last_save"] = json!(snap.rdb_changes_since_last_save);
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
        Ok(Err(Outcome::ErrorReply(e))) if e.starts_with("BUSY") => {
            s["busy_now"] = json!(e);
            warnings.push("the server is BUSY right now: rights were not checked".into());
            s["warnings"] = json!(warnings);
            return s;
        }
        Ok(Err(e)) => s["snapshot_error"] = json!(format!("{e:?}")),
        Err(_) => s["snapshot_error"] = json!("timed out"),
    }
    let mut rights = serde_json::Map::new();
    // Valkey's own version counts from 7.2 (its first), so any Valkey has FUNCTION.
    let major = snapshot
        .as_ref()
        .and_then(crate::model::snapshot::Snapshot::major_version);
    let failover = p.on_busy.on_unkillable.then == Then::Failover;
    for check in CHECKS.iter().filter(|c| failover || !c.for_failover) {
        if let Some(major) = major.filter(|m| *m < check.since_major) {
            let why = format!("not applicable (version {major} has no such command)");
            rights.insert(check.right.into(), json!(why));
            continue;
        }
        let word = check.words[0];
        if conn.disabled(word) {
            let word = word.to_ascii_lowercase();
            let why = format!("disabled in redis.conf (`redis.commands.{word}` is empty)");
            rights.insert(check.right.into(), json!(why));
            continue;
        }
        let verdict = right(&conn, check).await;
        if verdict != "granted" {
            warnings.push(format!(
                "`{}` is {verdict}: needed for {}",
                check.right, check.needed_for
            ));
        }
        rights.insert(check.right.into(), json!(verdict));
    }
    s["rights"] = Value::Object(rights);
    if let Some(topology) = &p.topology.sentinel {
        let (view, said) = crate::redis::sentinel::views(topology, p, snapshot.as_ref()).await;
        s["sentinel"] = view;
        warnings.extend(said);
    }
    if let Some(warning) = restarted_too_soon(p, &s, snapshot.as_ref()) {
        warnings.push(warning);
    }
    if let Some(snap) = &snapshot {
        let found = crate::commands::status::prevention::findings(&conn, p, snap, trail);
        s["prevention"] = json!(
            tokio::time::timeout(CHECK_TIMEOUT, found)
                .await
                .unwrap_or_default()
        );
    }
    s["warnings"] = json!(warnings);
    s
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
async fn cluster_view(conn: &probe::Connection) -> Value {
    let info = match tokio::time::timeout(CHECK_TIMEOUT, conn.call(&["CLUSTER", "INFO"])).await {
        Ok(Outcome::Reply(v)) => v.as_string().unwrap_or_default(),
        Ok(Outcome::ErrorReply(e) | Outcome::Lost(e)) => return json!({"error": e}),
        Err(_) => return json!({"error": "timed out"}),
    };
    let field = |k: &str| crate::model::snapshot::info_field(&info, k);
    let timeout = conn.config("cluster-node-timeout");
    let node_timeout = tokio::time::timeout(CHECK_TIMEOUT, timeout)
        .await
        .ok()
        .flatten()
        .and_then(|v| v.parse::<u64>().ok());
    json!({
        "state": field("cluster_state"),
        "known_nodes": field("cluster_known_nodes").and_then(|v| v.parse::<u64>().ok()),
        "size": field("cluster_size").and_then(|v| v.parse::<u64>().ok()),
        "node_timeout_ms": node_timeout,
    })
}

/// A local server whose systemd unit restarts it sooner than Sentinel or the Cluster can fail
/// it over, under a policy that may shut it down: it is back as the primary, before any
/// failover (and empty, without persistence).
fn restarted_too_soon(p: &Policy, s: &Value, snapshot: Option<&Snapshot>) -> Option<String> {
    let may_shut_down = p.on_busy.on_unkillable.shuts_down_by_itself();
    let detection_ms = s["sentinel"]
        .as_array()
        .and_then(|views| views.iter().find_map(|v| v["down_after_ms"].as_u64()))
        .map(|ms| (ms, "Sentinel's down-after"))
        .or_else(|| {
            s["cluster"]["node_timeout_ms"]
                .as_u64()
                .map(|ms| (ms, "the Cluster's node-timeout"))
        });
    let (detect_ms, by) = detection_ms?;
    if !may_shut_down || !p.redis.endpoint.is_local() {
        return None;
    }
    let supervisor =
        crate::commands::status::restart::Supervisor::of_process(snapshot?.process_id?)?;
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

/// The keys `human` writes in sentences; any other key of the JSON is written as `key: value`,
/// so the human form never shows less than `--json`.
const HUMAN_KEYS: &[&str] = &[
    "instance",
    "file",
    "endpoint",
    "reachable",
    "error",
    "daemon",
    "user",
    "whoami",
    "server",
    "version",
    "role",
    "replicas",
    "replica_links",
    "cluster_enabled",
    "cluster",
    "failover",
    "busy_threshold_ms",
    "shutdown_nosave_loses",
    "rdb_changes_since_last_save",
    "snapshot_errors",
    "snapshot_error",
    "busy_now",
    "rights",
    "sentinel",
    "prevention",
    "warnings",
    "problems",
];

fn human(s: &Value, out: &mut impl Write) -> std::io::Result<()> {
    let text = |k: &str| s[k].as_str();
    let name = text("instance").or(text("file")).unwrap_or("?");
    let reach = if s["reachable"] == true {
        "reachable"
    } else {
        "UNREACHABLE"
    };
    writeln!(out, "{name}  {}  {reach}", text("endpoint").unwrap_or(""))?;
    if s["instance"].is_string() {
        writeln!(out, "  policy: {}", text("file").unwrap_or("?"))?;
    }
    if let Some(e) = text("error") {
        writeln!(out, "  error: {e}")?;
    }
    match (s["daemon"]["error"].as_str(), s["daemon"].is_object()) {
        (Some(e), _) => writeln!(out, "  daemon: {e}")?,
        (None, true) => match serde_json::from_value::<crate::engine::Live>(s["daemon"].clone()) {
            Ok(live) => writeln!(out, "  daemon: {}", steer::live_text(&live))?,
            Err(e) => writeln!(out, "  daemon: an answer busyguard cannot read ({e})")?,
        },
        (None, false) => {}
    }
    if let Some(user) = text("user") {
        match (&s["whoami"], s["reachable"] == true) {
            (Value::String(who), _) if who == user => {
                writeln!(out, "  user: {user} (the server confirms: ACL WHOAMI)")?
            }
            (Value::String(who), _) => writeln!(
                out,
                "  user: {user} in the policy, but the server says this connection is `{who}`"
            )?,
            (Value::Object(o), _) => writeln!(
                out,
                "  user: {user} (not confirmed: {})",
                o.get("unchecked").and_then(Value::as_str).unwrap_or("?")
            )?,
            (_, _) => writeln!(out, "  user: {user}")?,
        }
    }
    if s["version"].is_string() || s["role"].is_string() {
        writeln!(
            out,
            "  server: {} {}, role {}, {} replica(s), busy threshold {}",
            text("server").unwrap_or("redis"),
            text("version").unwrap_or("(version unknown)"),
            text("role").unwrap_or("unknown"),
            s["replicas"]
                .as_u64()
                .map_or("unknown".into(), |n| n.to_string()),
            s["busy_threshold_ms"]
                .as_u64()
                .map_or("unknown".into(), |t| format!("{t}ms")),
        )?;
        for r in s["replica_links"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "  replica {}: {}, last heard {} s ago, {} bytes behind{}",
                r["address"].as_str().unwrap_or("?"),
                r["state"].as_str().unwrap_or("?"),
                r["lag_s"].as_u64().map_or("?".into(), |n| n.to_string()),
                r["behind_bytes"]
                    .as_u64()
                    .map_or("?".into(), |n| n.to_string()),
                match r["listed"].as_bool() {
                    Some(false) => " (not in `topology.replicas`: never contacted)",
                    _ => "",
                },
            )?;
        }
        if s["cluster_enabled"] == true {
            let c = &s["cluster"];
            match c["error"].as_str() {
                Some(e) => writeln!(out, "  cluster: enabled; CLUSTER INFO: {e}")?,
                None => writeln!(
                    out,
                    "  cluster: state {}, {} known node(s), node-timeout {} ms",
                    c["state"].as_str().unwrap_or("?"),
                    c["known_nodes"],
                    c["node_timeout_ms"]
                )?,
            }
        }
        let f = &s["failover"];
        if let Some(why) = f["none"].as_str() {
            writeln!(out, "  failover: none possible now: {why}")?;
        } else if f.is_object() {
            let replicas: Vec<String> = f["replicas_in_sync"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| r["address"].as_str().unwrap_or("?").to_string())
                .collect();
            writeln!(
                out,
                "  failover: through {} ({}), replicas in sync, least behind first: {}",
                f["via"].as_str().unwrap_or("?"),
                f["request_to"].as_str().unwrap_or("?"),
                replicas.join(", ")
            )?;
        }
        let risk = &s["shutdown_nosave_loses"];
        writeln!(
            out,
            "  SHUTDOWN NOSAVE now: {} ({}; {} unsaved changes)",
            risk["loses"].as_str().unwrap_or("unknown"),
            risk["persistence"]
                .as_str()
                .unwrap_or("persistence unknown"),
            s["rdb_changes_since_last_save"]
                .as_u64()
                .map_or("unknown".into(), |n| n.to_string()),
        )?;
    }
    for e in s["snapshot_errors"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "  snapshot incomplete: {} (the facts it would give are unknown)",
            e.as_str().unwrap_or("?")
        )?;
    }
    if let Some(e) = text("snapshot_error") {
        writeln!(out, "  snapshot failed: {e}")?;
    }
    if let Some(busy) = text("busy_now") {
        writeln!(out, "  busy now: the server answered `{busy}`")?;
    }
    for v in s["sentinel"].as_array().into_iter().flatten() {
        match v["error"].as_str() {
            Some(e) => writeln!(out, "  sentinel {}: {e}", v["url"].as_str().unwrap_or("?"))?,
            None => writeln!(
                out,
                "  sentinel {}: `{}` is {} ({}; {}), quorum {}, down after {} ms, {} replica(s), {} other sentinel(s)",
                v["url"].as_str().unwrap_or("?"),
                v["master"].as_str().unwrap_or("?"),
                v["address"].as_str().unwrap_or("?"),
                match v["is_this_server"].as_bool() {
                    Some(true) => "this server",
                    Some(false) => "NOT this server",
                    None => "this server's run id unknown",
                },
                v["flags"].as_str().unwrap_or("?"),
                v["quorum"],
                v["down_after_ms"],
                v["replicas"],
                v["other_sentinels"],
            )?,
        }
    }
    if let Some(rights) = s["rights"].as_object() {
        let line: Vec<String> = rights
            .iter()
            .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or("?")))
            .collect();
        writeln!(out, "  rights: {}", line.join(", "))?;
    }
    for f in s["prevention"].as_array().into_iter().flatten() {
        writeln!(out, "  prevention: {}", f.as_str().unwrap_or(""))?;
    }
    for w in s["warnings"].as_array().into_iter().flatten() {
        writeln!(out, "  warning: {}", w.as_str().unwrap_or(""))?;
    }
    for w in s["problems"].as_array().into_iter().flatten() {
        writeln!(out, "  problem: {}", w.as_str().unwrap_or(""))?;
    }
    for (key, value) in s.as_object().into_iter().flatten() {
        if !HUMAN_KEYS.contains(&key.as_str()) {
            let value = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string);
            writeln!(out, "  {}: {value}", key.replace('_', " "))?;
        }
    }
    Ok(())
}
