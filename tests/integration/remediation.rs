//! The remediation ladder end to end: the real daemon against real redis-servers running real
//! runaway scripts, each test asserting what Redis itself shows. The rungs every server build
//! shares (FUNCTION KILL, an unkillable script inside and past the budget with a lagging
//! replica, dry-run) are in [`crate::compat`], run on Debian's build and six others.

use std::time::Duration;

use crate::support;
use crate::support::{Caller, Daemon, RedisServer, Reply, ServerOptions, scripts, wait_for};
use nix::sys::signal::Signal;
use serde_json::Value;

const LONG: Duration = Duration::from_secs(20);

fn count(daemon: &Daemon, event: &str) -> usize {
    daemon.events().iter().filter(|e| *e == event).count()
}

#[test]
fn a_read_only_eval_loop_is_killed_once_and_the_incident_recovers() {
    let server = RedisServer::start(ServerOptions::default());
    let daemon = Daemon::start(
        &server.policy("ro", &support::ladder("5s", "shutdown")),
        &[],
    );
    server.wait_snapshot();
    let caller = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]);
    let reply = caller.reply().unwrap();
    assert!(reply.killed_by_user(), "{reply:?}");
    let recovered = daemon.wait_event("recovered", LONG);
    assert_eq!(recovered["detail"]["how"], "killed");
    assert_eq!(server.command_calls("script|kill"), 1);
    assert_eq!(server.command_calls("shutdown"), 0);
    assert_eq!(
        daemon.events(),
        [
            "policy_loaded",
            "watchdog_started",
            "busy_detected",
            "kill_sent",
            "killed",
            "recovered"
        ]
    );
    // Every record of the incident carries the same id.
    let ids: Vec<Value> = daemon
        .records()
        .iter()
        .filter(|r| r["event"] != "watchdog_started" && !r["incident"].is_null())
        .map(|r| r["incident"].clone())
        .collect();
    assert!(
        ids.len() >= 4 && ids.iter().all(|i| *i == ids[0]),
        "{ids:?}"
    );
    // The decision rested on the real server's values.
    let busy = daemon.wait_event("busy_detected", LONG);
    assert_eq!(busy["detail"]["threshold_ms"], 200);
    assert_eq!(
        busy["detail"]["snapshot"]["version"],
        server.info("server")["redis_version"].as_str()
    );
    assert!(
        busy["detail"]["reply"]
            .as_str()
            .unwrap()
            .starts_with("BUSY ")
    );
}

#[test]
fn a_script_started_the_instant_the_last_one_ends_does_not_delay_its_recovery() {
    let server = RedisServer::start(ServerOptions {
        threshold_ms: 1500,
        ..ServerOptions::default()
    });
    let daemon = Daemon::start(
        &server.policy("next", &support::ladder("5s", "shutdown")),
        &[],
    );
    server.wait_snapshot();
    // The application retries at once: its next script is running before busyguard has read
    // the server's SLOWLOG for the last incident, and the server answers nothing for 1.5 s.
    let first = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]);
    assert!(first.reply().unwrap().error().is_some());
    let next = Caller::eval(&server, scripts::SPIN_MS, &[], &["2000"]);
    let recovered = daemon.wait_event("recovered", LONG);
    let records = daemon.records();
    let at = |r: &Value| {
        let ts = r["ts"].as_str().unwrap();
        humantime::parse_rfc3339(ts).unwrap()
    };
    // The record is written when the recovery is learned, not when the next script lets the
    // forensics through: from the PONG after the kill, or, when the next script won the race
    // to the server and there was no PONG between, from that script's BUSY (the same step).
    let busy = records
        .iter()
        .find(|r| r["event"] == "busy_detected")
        .unwrap();
    let pong = at(busy)
        + Duration::from_millis(recovered["detail"]["since_first_busy_ms"].as_u64().unwrap());
    // Learned from the next script's BUSY, the old incident ends in the step that opens the
    // new one, with no forensics (an action was due): then the record after it says when.
    let learned = match recovered["detail"]["forensics"].is_null() {
        true => {
            let seq = recovered["seq"].as_u64().unwrap();
            let next = daemon
                .wait_record(LONG, |r| r["seq"].as_u64() == Some(seq + 1))
                .unwrap();
            assert_eq!(next["event"], "busy_detected", "{next}");
            at(&next)
        }
        false => pong,
    };
    let late = at(&recovered).duration_since(learned).unwrap_or_default();
    assert!(
        late < Duration::from_millis(700),
        "recovered recorded {late:?} after it was learned: {recovered}"
    );
    // The next script is an incident of its own, killed in turn.
    assert!(next.reply().unwrap().error().is_some());
    daemon.wait_record(LONG, |r| {
        r["event"] == "recovered" && r["incident"] != recovered["incident"]
    });
    assert_eq!(server.command_calls("script|kill"), 2);
    assert_eq!(server.command_calls("shutdown"), 0);
}

#[test]
fn past_the_budget_an_unkillable_script_ends_in_a_shutdown_and_limits_withhold_the_next() {
    let mut server = RedisServer::start(ServerOptions::default());
    let policy = server.policy(
        "past",
        &(support::ladder("1s", "shutdown") + "limits:\n  max_shutdowns: 1\n  per: 1h\n"),
    );
    let daemon = Daemon::start(&policy, &[]);
    server.wait_snapshot();
    let caller = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    let confirmed = daemon.wait_event("shutdown_confirmed", LONG);
    assert!(
        server.wait_exit(Duration::from_secs(5)),
        "redis-server still running"
    );
    assert!(
        caller.reply().is_err(),
        "the caller's connection closed with the server"
    );
    let sent = daemon.wait_event("shutdown_sent", LONG);
    assert_eq!(sent["detail"]["command"], "SHUTDOWN NOSAVE NOW");
    let waited = sent["detail"]["since_first_busy_ms"].as_u64().unwrap();
    assert!(
        (1000..1500).contains(&waited),
        "shut down {waited}ms after the first BUSY"
    );
    assert_eq!(confirmed["incident"], sent["incident"]);

    // The server comes back (as systemd would restart it): a new run id, the incident recovers.
    server.spawn().unwrap();
    let recovered = daemon.wait_event("recovered", LONG);
    assert_eq!(recovered["detail"]["restarted"], true);
    assert_eq!(recovered["incident"], sent["incident"]);

    // A second unkillable script within the hour: escalation is withheld, the server lives.
    server.wait_snapshot();
    let _second = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    let withheld = daemon.wait_event("escalation_withheld", LONG);
    assert!(
        support::reason(&withheld).starts_with("limits:"),
        "{withheld}"
    );
    assert!(!server.exited());
    assert_eq!(count(&daemon, "shutdown_sent"), 1);
}

#[test]
fn steady_load_and_short_scripts_cause_no_action() {
    let server = RedisServer::start(ServerOptions {
        threshold_ms: 300,
        ..Default::default()
    });
    let daemon = Daemon::start(
        &server.policy("calm", &support::ladder("1s", "shutdown")),
        &[],
    );
    server.wait_snapshot();
    let bench = std::process::Command::new("redis-benchmark")
        .args([
            "-s",
            server.socket.to_str().unwrap(),
            "-n",
            "100000",
            "-c",
            "20",
            "-q",
            "-t",
            "set,get,incr,lpush",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-benchmark (package redis-tools)");
    // Legitimate scripts just under the threshold, back to back.
    for _ in 0..8 {
        let caller = Caller::eval(&server, scripts::SPIN_MS, &[], &["220"]);
        assert_eq!(caller.reply().unwrap(), Reply::Bulk(Some("done".into())));
    }
    let status = bench.wait_with_output().unwrap().status;
    assert!(status.success());
    // Nothing but the start, and, should a snapshot read the SLOWLOG before the end (a slow
    // machine stretches the benchmark past `snapshot_every`), the early warnings those slow but
    // legitimate scripts deserve: never a detection, never an action.
    let events = daemon.events();
    assert_eq!(events[..2], ["policy_loaded", "watchdog_started"]);
    assert!(
        events[2..].iter().all(|e| e == "slow_script"),
        "{events:?}\n{}",
        daemon.stderr()
    );
    for warning in daemon.records_of("slow_script") {
        assert!(
            warning["detail"]["share_of_threshold"].as_f64() < Some(1.0),
            "{warning}"
        );
    }
    assert_eq!(server.command_calls("script|kill"), 0);
}

#[test]
fn a_server_stopped_and_started_again_is_unreachable_then_recovered_with_no_action() {
    let mut server = RedisServer::start(ServerOptions::default());
    let daemon = Daemon::start(
        &server.policy("bounce", &support::ladder("1s", "shutdown")),
        &[],
    );
    server.wait_snapshot();
    assert!(server.conn().call(&["SHUTDOWN", "NOSAVE"]).is_err());
    assert!(server.wait_exit(Duration::from_secs(5)));
    daemon.wait_event("unreachable", LONG);
    server.spawn().unwrap();
    let recovered = daemon.wait_event("recovered", LONG);
    // Back under a new run id: a restart, what it had not saved gone (#35).
    assert_eq!(recovered["detail"]["how"], "restarted, not by busyguard");
    assert_eq!(
        daemon.events(),
        [
            "policy_loaded",
            "watchdog_started",
            "unreachable",
            "recovered"
        ]
    );
}

#[test]
fn a_least_privilege_acl_user_works_over_tcp_and_unix_socket() {
    let server = RedisServer::start(ServerOptions::default());
    support::add_busyguard_user(&server, "s3cret-for-busyguard", &[]);
    let secret = server.dir.path().join("busyguard.pass");
    std::fs::write(&secret, "s3cret-for-busyguard\n").unwrap();
    for url in [
        format!("redis://127.0.0.1:{}", server.port),
        format!("unix://{}", server.socket.display()),
    ] {
        let snapshots = server.command_calls("config|get");
        let daemon = Daemon::start(&support::acl_policy(&url, &secret), &[]);
        assert!(wait_for(LONG, || server.command_calls("config|get") > snapshots));
        let before = server.command_calls("script|kill");
        support::run_killable_runaway(&server);
        daemon.wait_event("recovered", LONG);
        assert_eq!(server.command_calls("script|kill"), before + 1);
        assert!(
            !daemon.events().contains(&"probe_fault".to_string()),
            "{:?}",
            daemon.records()
        );
        let trail = std::fs::read_to_string(&daemon.audit).unwrap() + &daemon.stderr();
        assert!(
            !trail.contains("s3cret-for-busyguard"),
            "the password leaked"
        );
    }
}

#[test]
fn a_wrong_password_is_a_fault_reported_once_and_never_acted_on() {
    let server = RedisServer::start(ServerOptions::default());
    support::add_busyguard_user(&server, "right", &[]);
    let secret = server.dir.path().join("wrong.pass");
    std::fs::write(&secret, "wrong\n").unwrap();
    let daemon = Daemon::start(
        &support::acl_policy(&format!("unix://{}", server.socket.display()), &secret),
        &[],
    );
    let fault = daemon.wait_event("probe_fault", LONG);
    assert!(
        fault["detail"]["reply"]
            .as_str()
            .unwrap()
            .contains("WRONGPASS"),
        "{fault}"
    );
    let _caller = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]);
    server.wait_busy(LONG);
    assert_eq!(
        daemon
            .events()
            .iter()
            .filter(|e| *e == "probe_fault")
            .count(),
        1
    );
    assert!(!daemon.events().contains(&"kill_sent".to_string()));
    server.conn().call(&["SCRIPT", "KILL"]).unwrap();
}

#[test]
fn silence_without_busy_is_a_hang_that_notifies_and_is_never_acted_on_by_default() {
    let server = RedisServer::start(ServerOptions::default());
    let daemon = Daemon::start(&server.policy("sleepy", "on_hang:\n  after: 300ms\n"), &[]);
    server.wait_snapshot();
    let sleeper = Caller::start(&server, &["DEBUG", "SLEEP", "1.5"]);
    let hang = daemon.wait_event("hang_detected", LONG);
    assert!(hang["detail"]["silent_ms"].as_u64().unwrap() >= 300);
    assert_eq!(sleeper.reply().unwrap(), Reply::Status("OK".into()));
    let recovered = daemon.wait_event("recovered", LONG);
    assert_eq!(recovered["incident"], hang["incident"]);
    assert_eq!(recovered["detail"]["how"], "ended by itself");
    for action in ["kill_sent", "shutdown_sent", "signal_sent"] {
        assert!(!daemon.events().iter().any(|e| e == action), "{action}");
    }
}

#[test]
fn a_frozen_local_server_is_killed_only_when_the_policy_says_so() {
    let mut server = RedisServer::start(ServerOptions::default());
    let policy = server.policy(
        "frozen",
        "on_hang:\n  after: 200ms\n  signal: sigkill\n  signal_after: 500ms\n",
    );
    let daemon = Daemon::start(&policy, &[]);
    server.wait_snapshot();
    server.signal(Signal::SIGSTOP);
    let sent = daemon.wait_event("signal_sent", LONG);
    assert_eq!(sent["detail"]["pid"], server.pid().unwrap());
    assert!(
        server.wait_exit(Duration::from_secs(5)),
        "the frozen server was not killed"
    );
    assert_eq!(
        daemon
            .events()
            .iter()
            .filter(|e| *e == "signal_sent")
            .count(),
        1
    );
}

#[test]
fn a_frozen_or_dead_instance_never_delays_another() {
    let frozen = RedisServer::start(ServerOptions::default());
    frozen.signal(Signal::SIGSTOP);
    let live = RedisServer::start(ServerOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let files = [
        write("frozen.yaml", frozen.policy("frozen", "")),
        write(
            "dead.yaml",
            "instance: dead\nredis:\n  url: redis://127.0.0.1:1\n".into(),
        ),
        write(
            "live.yaml",
            live.policy("live", &support::ladder("5s", "shutdown")),
        ),
    ];
    let daemon = Daemon::start_with(dir, &files, &[]);
    live.wait_snapshot();
    support::run_killable_runaway(&live);
    let took = caller_elapsed_ms(&daemon);
    assert!(took < 1_000, "the kill took {took}ms after the first BUSY");
    assert!(
        daemon
            .records()
            .iter()
            .any(|r| r["instance"] == "dead" && r["event"] == "unreachable")
    );
    frozen.signal(Signal::SIGCONT);
}

/// Milliseconds from the first BUSY reply to the confirmed kill, as the trail says.
fn caller_elapsed_ms(daemon: &Daemon) -> u64 {
    daemon.wait_event("killed", LONG)["detail"]["since_first_busy_ms"]
        .as_u64()
        .unwrap()
}

#[test]
fn run_exits_2_when_no_policy_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(support::busyguard_bin())
        .args(["run", "--state-dir"])
        .arg(dir.path())
        .args(["--policies", "tests/fixtures/broken/01-typo-key.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("01-typo-key.yaml:5:3"), "{stderr}");
    let trail = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(trail.contains("\"event\":\"policy_rejected\""), "{trail}");
}

#[test]
fn sigterm_stops_the_daemon_cleanly() {
    let server = RedisServer::start(ServerOptions::default());
    let mut daemon = Daemon::start(&server.policy("stop", ""), &[]);
    server.wait_snapshot();
    let status = daemon.stop();
    assert_eq!(status.code(), Some(0));
    let records = daemon.records();
    let last = records.last().unwrap();
    assert_eq!(last["event"], "watchdog_stopped");
    assert!(
        records
            .iter()
            .any(|r| r["event"] == "watchdog_stopped" && r["instance"] == "stop")
    );
    assert_eq!(
        busyguard::audit::verify(&[daemon.audit.clone()])
            .unwrap()
            .records,
        records.len()
    );
}

/// #33.6: the README's way in (a dry-run rehearsal of an unkillable script, then `mode:
/// enforce` and a reload, then a restart for good measure): the rehearsal's decision never
/// spends the limit (`max_shutdowns: 1`), so the first real unkillable script is shut down.
#[test]
fn after_a_dry_run_rehearsal_the_first_enforced_shutdown_goes() {
    let mut server = RedisServer::start(ServerOptions::default());
    let dir = support::state_dir();
    let file = dir.path().join("policy.yaml");
    let ladder = format!(
        "{}limits:\n  max_shutdowns: 1\n  per: 1h\n",
        support::ladder("500ms", "shutdown")
    );
    std::fs::write(
        &file,
        server.policy("rehearsed", &format!("mode: dry-run\n{ladder}")),
    )
    .unwrap();
    let mut daemon = Daemon::start_with(dir, std::slice::from_ref(&file), &[]);
    // #35: the policy's own mode is said where it is loaded (`dry_run=true` in the log line).
    let loaded = daemon.wait_event("policy_loaded", LONG);
    assert_eq!(loaded["dry_run"], true, "{loaded}");
    server.wait_snapshot();
    let rehearsal = Caller::eval(&server, scripts::WRITE_THEN_SPIN_MS, &["k"], &["1500"]);
    let decided = daemon.wait_event("shutdown_sent", LONG);
    assert_eq!(decided["dry_run"], true, "{decided}");
    assert_eq!(rehearsal.reply().unwrap().text(), Some("done"));
    daemon.wait_event("recovered", LONG);
    // #35: the summary marks what was only decided, and says durations as elsewhere.
    let (code, summary) = support::busyguard(&["audit", "show", "--summary"], &[&daemon.audit]);
    assert_eq!(code, 0, "{summary}");
    assert!(
        summary.contains("shutdown_sent (dry run)") && !summary.contains(" ms"),
        "{summary}"
    );
    let (_, ps) = support::busyguard_ctl(&daemon, &["ps"]);
    assert!(
        ps.contains("limits: 1 of 1 shutdown(s) per 1h used"),
        "{ps}"
    );
    // Enforce, as the README says: edit, reload, and (an upgrade) a restart.
    std::fs::write(&file, server.policy("rehearsed", &ladder)).unwrap();
    daemon.signal(Signal::SIGHUP);
    let enforced = daemon
        .wait_record(LONG, |r| {
            r["event"] == "policy_loaded" && r["detail"]["update"] == true
        })
        .unwrap();
    assert_eq!(enforced["dry_run"], false, "{enforced}");
    daemon.stop();
    let taken = server.command_calls("slowlog|get");
    daemon.spawn();
    // A restart breaks continuity: a shutdown rests on a healthy answer seen since.
    server.wait_snapshot_past(taken);
    daemon
        .wait_record(LONG, |r| {
            r["event"] == "watchdog_started" && r["seq"].as_u64() > decided["seq"].as_u64()
        })
        .unwrap();
    let (_, ps) = support::busyguard_ctl(&daemon, &["ps"]);
    assert!(
        ps.contains(
            "limits: 0 of 1 shutdown(s) per 1h used; 1 dry-run decision(s) within 1h, not counted"
        ),
        "{ps}"
    );
    let _writer = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    let sent = daemon
        .wait_record(LONG, |r| {
            r["event"] == "shutdown_sent" && r["dry_run"] == false
        })
        .unwrap_or_else(|| panic!("{:?}", daemon.events()));
    assert!(
        sent["detail"]["command"]
            .as_str()
            .unwrap()
            .starts_with("SHUTDOWN NOSAVE")
    );
    assert!(server.wait_exit(LONG));
    assert!(
        daemon
            .records_of("escalation_withheld")
            .iter()
            .all(|r| !support::reason(r).starts_with("limits")),
        "{:?}",
        daemon.events()
    );
}
