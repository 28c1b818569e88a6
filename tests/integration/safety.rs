//! Never the wrong action: what busyguard does when it knows only part of the story. Each test
//! is a situation in which an earlier version took or withheld the wrong action, and asserts
//! both the right action and the absence of the wrong one, from what the server itself shows
//! (commandstats, the process, the script's data).

use std::time::Duration;

use crate::support::fake::{Answer, FakeRedis};
use crate::support::{
    self, Caller, Daemon, RedisServer, ServerBuild, ServerOptions, scripts, wait_for,
};

const LONG: Duration = Duration::from_secs(20);

const SCRIPT_BUSY: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
const FUNCTION_BUSY: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";

/// #1: stopped while a script was UNKILLABLE; the script ended by itself; a new, killable
/// script runs when busyguard starts again. The old incident (its budget long spent) must not
/// carry over: the new script is killed, and nothing is shut down.
#[test]
fn a_restart_during_a_new_script_kills_it_instead_of_finishing_the_old_incident() {
    let server = RedisServer::start(ServerOptions::default());
    let mut daemon = Daemon::start(
        &server.policy("resume", &support::ladder("1s", "shutdown")),
        &[],
    );
    server.wait_snapshot();
    let writer = Caller::eval(&server, scripts::WRITE_THEN_SPIN_MS, &["kept"], &["1500"]);
    let unkillable = daemon.wait_event("unkillable", LONG);
    let old = unkillable["incident"].clone();
    daemon.stop();
    // The script ends by itself; the server serves normally again.
    assert_eq!(writer.reply().unwrap().text(), Some("done"));
    assert_eq!(server.conn().call(&["PING"]).unwrap().text(), Some("PONG"));
    // A new, read-only runaway; busyguard starts while it is busy (past the old budget).
    let runaway = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]);
    server.wait_busy(LONG);
    daemon.spawn();
    let reply = runaway.reply().unwrap();
    assert!(reply.killed_by_user(), "{reply:?}");
    // The old incident's supersede (a loaded host may add others).
    let superseded = daemon
        .wait_record(LONG, |r| {
            r["event"] == "incident_superseded" && r["incident"] == old
        })
        .unwrap_or_else(|| panic!("{:?}", daemon.events()));
    assert_eq!(superseded["incident"], old);
    let recovered = daemon
        .wait_record(LONG, |r| r["event"] == "recovered" && r["incident"] != old)
        .expect("the new incident recovers");
    assert_eq!(recovered["detail"]["how"], "killed");
    assert_eq!(recovered["incident"], superseded["detail"]["by"]);
    assert_eq!(
        server.command_calls("script|kill"),
        2,
        "one kill per incident"
    );
    assert_eq!(server.command_calls("shutdown"), 0, "no shutdown");
    assert!(daemon.records_of("shutdown_sent").is_empty());
    let kept = server.conn().call(&["GET", "kept"]).unwrap();
    assert_eq!(kept.text(), Some("written"), "the data is intact");
}

/// #2: a guard whose input is unknown withholds and names the input. busyguard starts while an
/// unkillable script already runs: it has never had a healthy snapshot.
#[test]
fn a_guard_without_its_input_withholds_the_shutdown_and_names_what_is_missing() {
    let server = RedisServer::start(ServerOptions::default());
    let _writer = Caller::eval(&server, scripts::WRITING_LOOP, &["kept"], &[]);
    server.wait_busy(LONG);
    let policy = format!(
        "{}guards:\n  keep_primary_with_replicas: true\n",
        support::ladder("500ms", "shutdown")
    );
    let daemon = Daemon::start(&server.policy("guarded", &policy), &[]);
    let withheld = daemon.wait_event("escalation_withheld", LONG);
    let detail = &withheld["detail"];
    assert_eq!(detail["missing"], "snapshot", "{withheld}");
    assert!(
        detail["reason"]
            .as_str()
            .unwrap()
            .starts_with("guards.keep_primary_with_replicas"),
        "{withheld}"
    );
    assert!(detail["snapshot"].is_null());
    assert!(daemon.records_of("shutdown_sent").is_empty());
    assert_eq!(
        daemon.records_of("kill_sent").len(),
        1,
        "the kill still went"
    );
    assert!(
        server.conn().call(&["PING"]).unwrap().error().is_some(),
        "still up (busy)"
    );
}

/// #3: a kill the server reads and never answers. The wait for its reply ends at the budget;
/// `action_failed` is recorded, the connection is replaced, supervision goes on, and a stop is
/// a stop.
#[test]
fn an_unanswered_kill_is_bounded_by_the_budget_and_supervision_goes_on() {
    // A server busy with a script, whose first connection swallows the kill; on the next one
    // the script turns out unkillable.
    let fake = FakeRedis::start(|conn, words| {
        match (conn, words[0].to_ascii_uppercase().as_str()) {
            (_, "PING" | "INFO" | "CONFIG") => Some(Answer::error(SCRIPT_BUSY)),
            (0, "SCRIPT") => Some(Answer::Silence),
            (_, "SCRIPT") => Some(Answer::error(
                "UNKILLABLE Sorry the script already executed write commands against the dataset.",
            )),
            _ => None,
        }
    });
    let policy = fake.policy("frozen", &support::ladder("1s", "notify"));
    let mut daemon = Daemon::start(&policy, &[]);
    let failed = daemon.wait_event("action_failed", LONG);
    let reply = failed["detail"]["reply"].as_str().unwrap();
    assert!(reply.starts_with("no reply within"), "{failed}");
    let waited = failed["detail"]["reply_ms"].as_u64().unwrap();
    assert!(
        (500..5_000).contains(&waited),
        "bounded by the 1s budget: {waited}"
    );
    // Supervision goes on over a new connection: the lost kill is owed and goes again there
    // (another server may answer), and its budget's end is decided there.
    daemon.wait_event("escalation_withheld", LONG);
    assert!(fake.connections() >= 2, "{:?}", fake.commands());
    assert!(
        daemon.records_of("kill_sent").len() >= 2,
        "{:?}",
        daemon.events()
    );
    let start = std::time::Instant::now();
    assert!(daemon.stop().success());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(daemon.records_of("watchdog_stopped").len(), 2);
}

/// #4: an ACL user with PING and the kill rights but no INFO (and no CONFIG): the snapshot is
/// incomplete, said once, and the probe still sees BUSY and the kill still lands.
#[test]
fn a_user_without_info_still_detects_and_kills() {
    let server = RedisServer::start(ServerOptions::default());
    let password = "s3cret-without-info";
    support::add_busyguard_user(&server, password, &["+info", "+config|get"]);
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass");
    std::fs::write(&pass, password).unwrap();
    let policy = format!(
        "instance: noinfo\nredis:\n  url: unix://{}\n  username: busyguard\n  password_file: {}\nprobe:\n  interval: 50ms\n{}",
        server.socket.display(),
        pass.display(),
        support::ladder("5s", "shutdown")
    );
    let daemon = Daemon::start(&policy, &[]);
    let fault = daemon.wait_event("probe_fault", LONG);
    let errors = fault["detail"]["snapshot_errors"].to_string();
    assert!(errors.contains("INFO refused: NOPERM"), "{fault}");
    let runaway = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]);
    let reply = runaway.reply().unwrap();
    assert!(reply.killed_by_user(), "{reply:?}");
    let busy = daemon.wait_event("busy_detected", LONG);
    assert!(busy["detail"]["snapshot"]["version"].is_null(), "{busy}");
    assert_eq!(
        daemon.wait_event("recovered", LONG)["detail"]["how"],
        "killed"
    );
    assert_eq!(daemon.records_of("probe_fault").len(), 1, "said once");
    // `status` says which rights are missing.
    let status = daemon.status();
    let rights = &status["rights"];
    assert_eq!(rights["info"], "missing", "{status}");
    assert_eq!(rights["config|get"], "missing", "{status}");
    assert_eq!(rights["script|kill"], "granted", "{status}");
}

/// #5: a replica replaying a script its master (Redis 6.2, `lua-replicate-commands no`) already
/// ran: UNKILLABLE "... in the context of replication". Waited out and notified, not shut down.
#[test]
fn a_replica_replaying_its_masters_script_is_waited_out_not_shut_down() {
    let master = RedisServer::start(ServerOptions {
        build: Some(ServerBuild::redis_6_2()),
        extra: vec!["lua-replicate-commands no".into()],
        ..Default::default()
    });
    let replica = master.start_replica(ServerOptions::default());
    let daemon = Daemon::start(
        &replica.policy("replica", &support::ladder("500ms", "shutdown")),
        &[],
    );
    replica.wait_snapshot();
    let on_master = Caller::eval(
        &master,
        scripts::WRITE_THEN_SPIN_MS,
        &["replayed"],
        &["1500"],
    );
    assert_eq!(on_master.reply().unwrap().text(), Some("done"));
    let unkillable = daemon.wait_event("unkillable", LONG);
    assert_eq!(unkillable["detail"]["replicated"], true, "{unkillable}");
    assert!(
        unkillable["detail"]["reply"]
            .as_str()
            .unwrap()
            .contains("in the context of replication")
    );
    let withheld = daemon.wait_event("escalation_withheld", LONG);
    assert!(
        support::reason(&withheld).contains("replication"),
        "{withheld}"
    );
    assert_eq!(
        daemon.wait_event("recovered", LONG)["detail"]["how"],
        "ended by itself"
    );
    assert!(daemon.records_of("shutdown_sent").is_empty());
    assert_eq!(replica.command_calls("shutdown"), 0);
    let replayed = replica.conn().call(&["GET", "replayed"]).unwrap();
    assert_eq!(
        replayed.text(),
        Some("written"),
        "the replica kept the data"
    );
}

/// #6: BUSY texts read exactly. A module's own text that names SCRIPT KILL, and a bare `BUSY`,
/// are of unknown kind: SCRIPT KILL is tried and its NOTBUSY read (a module: no kill exists),
/// not reported as a failure. A BUSY answer naming FUNCTION KILL gets FUNCTION KILL.
#[test]
fn busy_replies_of_unknown_form_get_the_kill_that_fits_and_its_answer_is_read() {
    for text in [
        "BUSY",
        "BUSY my_module is busy, you can only call SCRIPT KILL",
    ] {
        let fake = FakeRedis::start(
            move |_, words| match words[0].to_ascii_uppercase().as_str() {
                "PING" => Some(Answer::error(text)),
                "SCRIPT" => Some(Answer::error("NOTBUSY No scripts in execution right now.")),
                _ => None,
            },
        );
        let policy = fake.policy("module", &support::ladder("500ms", "notify"));
        let daemon = Daemon::start(&policy, &[]);
        let busy = daemon.wait_event("busy_detected", LONG);
        assert_eq!(busy["detail"]["busy_kind"], "unknown", "{text}: {busy}");
        let unkillable = daemon.wait_event("unkillable", LONG);
        assert!(
            unkillable["detail"]["reply"]
                .as_str()
                .unwrap()
                .starts_with("NOTBUSY")
        );
        daemon.wait_event("escalation_withheld", LONG);
        assert!(daemon.records_of("action_failed").is_empty(), "{text}");
        let kills: Vec<String> = fake
            .commands()
            .into_iter()
            .map(|(_, c)| c)
            .filter(|c| c.ends_with("KILL"))
            .collect();
        assert_eq!(kills, ["SCRIPT KILL"], "{text}");
    }
    // A BUSY of unknown form whose SCRIPT KILL is answered with a BUSY naming FUNCTION KILL.
    let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let k = killed.clone();
    let fake = FakeRedis::start(
        move |_, words| match words[0].to_ascii_uppercase().as_str() {
            "PING" if k.load(std::sync::atomic::Ordering::SeqCst) => None,
            "PING" => Some(Answer::error("BUSY")),
            "SCRIPT" => Some(Answer::error(FUNCTION_BUSY)),
            "FUNCTION" if words.get(1).is_some_and(|w| w.eq_ignore_ascii_case("KILL")) => {
                k.store(true, std::sync::atomic::Ordering::SeqCst);
                Some(Answer::status("OK"))
            }
            _ => None,
        },
    );
    let policy = fake.policy("fn", &support::ladder("5s", "notify"));
    let daemon = Daemon::start(&policy, &[]);
    let killed_record = daemon.wait_event("killed", LONG);
    assert_eq!(killed_record["detail"]["command"], "FUNCTION KILL");
    assert!(daemon.records_of("action_failed").is_empty());
}

/// #4 again, for a server whose CONFIG is renamed away (`rename-command CONFIG ""`): the
/// threshold and persistence settings are unknown and said to be; detection and the kill are
/// untouched; `status` calls the right missing instead of granted.
#[test]
fn a_renamed_config_is_reported_missing_and_never_blinds_the_probe() {
    let server = RedisServer::start(ServerOptions {
        extra: vec!["rename-command CONFIG \"\"".into()],
        ..Default::default()
    });
    let daemon = Daemon::start(
        &server.policy("renamed", &support::ladder("5s", "shutdown")),
        &[],
    );
    let fault = daemon.wait_event("probe_fault", LONG);
    let errors = fault["detail"]["snapshot_errors"].to_string();
    assert!(
        errors.contains("CONFIG GET refused: ERR unknown command"),
        "{fault}"
    );
    support::run_killable_runaway(&server);
    let busy = daemon.wait_event("busy_detected", LONG);
    assert_eq!(
        busy["detail"]["snapshot"]["version"], "7.0.15",
        "INFO still read"
    );
    assert!(busy["detail"]["threshold_ms"].is_null(), "{busy}");
    assert_eq!(
        daemon.wait_event("recovered", LONG)["detail"]["how"],
        "killed"
    );
    let status = daemon.status();
    let config = status["rights"]["config|get"].as_str().unwrap();
    assert!(config.starts_with("missing"), "{status}");
    assert!(status["snapshot_errors"].is_array(), "{status}");
}

/// #14: a primary with a replica and no persistence (`save ""`, `appendonly no`) would restart
/// empty under a supervisor, and its replica would resync to nothing: the shutdown is withheld
/// by default, the data lives on in both, and `status` warns of it.
#[test]
fn a_replicated_primary_without_persistence_is_not_shut_down() {
    let primary = RedisServer::start(ServerOptions::default());
    let replica = primary.start_replica(ServerOptions::default());
    primary.fill(100);
    assert!(wait_for(LONG, || replica.holds_keys(100)));
    let daemon = Daemon::start(
        &primary.policy("cache", &support::ladder("300ms", "shutdown")),
        &[],
    );
    primary.wait_snapshot();
    let status = daemon.status();
    let link = &status["replica_links"][0];
    assert_eq!(
        link["address"],
        format!("127.0.0.1:{}", replica.port),
        "{status}"
    );
    assert_eq!(link["state"], "online", "{status}");
    assert!(link["behind_bytes"].is_u64(), "{status}");
    assert!(
        daemon
            .status_text()
            .contains(&format!("replica 127.0.0.1:{}: online", replica.port))
    );
    assert!(
        status["warnings"]
            .to_string()
            .contains("guards.allow_empty_restart"),
        "{status}"
    );
    let _caller = Caller::eval(&primary, scripts::WRITING_LOOP, &["k"], &[]);
    let withheld = daemon.wait_event("escalation_withheld", LONG);
    let reason = support::reason(&withheld);
    assert!(
        reason.starts_with("guards.allow_empty_restart") && reason.contains("1 replica(s)"),
        "{withheld}"
    );
    assert_eq!(withheld["detail"]["snapshot"]["connected_replicas"], 1);
    assert!(daemon.records_of("shutdown_sent").is_empty());
    // (INFO is answered BUSY while the script runs: the process itself is the evidence.)
    assert!(
        primary.conn().call(&["PING"]).unwrap().error().is_some(),
        "still up (busy)"
    );
    assert!(replica.holds_keys(100), "the replica keeps the data");
}

/// #13: a snapshot the server refuses (a user without `+info` and `+config|get`) is asked for at
/// most every `probe.snapshot_every`, never on every probe: no hot retry loop, while PINGs go on.
#[test]
fn a_refused_snapshot_is_not_retried_on_every_probe() {
    let server = RedisServer::start(ServerOptions::default());
    support::add_busyguard_user(&server, "s3cret", &["+info", "+config|get"]);
    let secret = server.dir.path().join("busyguard.pass");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let url = format!("unix://{}", server.socket.display());
    let policy = support::acl_policy(&url, &secret)
        .replace("interval: 50ms", "interval: 20ms\n  snapshot_every: 1s");
    let _daemon = Daemon::start(&policy, &[]);
    let pings = || server.command_calls("ping");
    assert!(wait_for(LONG, || pings() >= 100), "PINGs go on");
    // 100 probes at 20 ms: about 2 s, so 2 or 3 snapshots, each refused once per command.
    let refused = server.command_stat("info", "rejected_calls");
    assert!(
        (1..=4).contains(&refused),
        "INFO asked {refused} times in ~2 s"
    );
    assert!(server.command_stat("config|get", "rejected_calls") <= 4);
}
