//! Operators steering a running daemon through its control socket, with the real binary as the
//! client: pause (and its expiry, a resume, a restart), hold and release, approve, `then: ask`,
//! `ps`, and who may connect at all.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::http::HttpReceiver;
use crate::support::{self, Caller, Daemon, RedisServer, ServerOptions, scripts, wait_for};

const LONG: Duration = Duration::from_secs(20);

fn ctl(daemon: &Daemon, args: &[&str]) -> (i32, String) {
    support::busyguard_ctl(daemon, args)
}

#[test]
fn a_pause_withholds_the_kill_is_recorded_with_its_caller_and_expires() {
    let server = RedisServer::start(ServerOptions::default());
    let receiver = HttpReceiver::always(200, "");
    let policy = server.policy("paused", &receiver.notify_yaml("/p"));
    let daemon = Daemon::start(&policy, &[]);
    server.wait_snapshot();
    let (code, out) = ctl(
        &daemon,
        &["pause", "paused", "--for", "2s", "--reason", "migration"],
    );
    assert_eq!(code, 0, "{out}");
    let paused = daemon.wait_event("operator_command", LONG);
    assert_eq!(paused["detail"]["command"], "pause");
    assert_eq!(paused["detail"]["by_user"], "root");
    assert_eq!(paused["detail"]["by_uid"], 0);
    assert_eq!(paused["detail"]["reason"], "migration");
    let started = Instant::now();
    let runaway = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]);
    let withheld = daemon.wait_event("escalation_withheld", LONG);
    assert_eq!(withheld["detail"]["withheld_action"], "kill");
    assert!(
        support::reason(&withheld).starts_with("paused by root until"),
        "{withheld}"
    );
    // The pause ends by itself; the kill goes at the next BUSY reply.
    let reply = runaway.reply().unwrap();
    assert!(reply.killed_by_user(), "{reply:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let expired = daemon
        .wait_record(LONG, |r| r["detail"]["command"] == "pause_expired")
        .unwrap();
    assert_eq!(expired["instance"], "paused");
    // Notified: the pause itself and what it withheld.
    let kinds = || -> Vec<String> {
        receiver
            .requests()
            .iter()
            .map(|r| r.json()["type"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert!(wait_for(LONG, || kinds()
        .contains(&"busyguard.operator_command".to_string())));
    assert!(
        kinds().contains(&"busyguard.escalation_withheld".to_string()),
        "{:?}",
        kinds()
    );
}

#[test]
fn a_resume_lets_the_kill_go_and_a_pause_survives_a_restart() {
    let server = RedisServer::start(ServerOptions::default());
    let mut daemon = Daemon::start(&server.policy("resumed", ""), &[]);
    server.wait_snapshot();
    assert_eq!(
        ctl(
            &daemon,
            &["pause", "--all", "--for", "10m", "--reason", "r"]
        )
        .0,
        0
    );
    daemon.wait_event("operator_command", LONG);
    daemon.stop();
    daemon.spawn();
    let started = |d: &Daemon| {
        d.records()
            .iter()
            .filter(|r| r["event"] == "watchdog_started" && r["instance"] == "resumed")
            .count()
    };
    assert!(wait_for(LONG, || started(&daemon) == 2));
    let (_, ps) = ctl(&daemon, &["ps"]);
    assert!(ps.contains("PAUSED by root"), "{ps}");
    let runaway = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]);
    daemon.wait_event("escalation_withheld", LONG);
    assert!(!runaway.is_finished(), "still paused after the restart");
    let (code, out) = ctl(&daemon, &["resume", "resumed", "--reason", "done"]);
    assert_eq!(code, 0, "{out}");
    let reply = runaway.reply().unwrap();
    assert!(reply.killed_by_user(), "{reply:?}");
    assert_eq!(server.command_calls("script|kill"), 1);
}

#[test]
fn a_hold_keeps_the_shutdown_past_the_budget_until_release() {
    let server = RedisServer::start(ServerOptions::default());
    let daemon = Daemon::start(
        &server.policy("held", &support::ladder("1s", "shutdown")),
        &[],
    );
    server.wait_snapshot();
    let _writer = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    daemon.wait_event("unkillable", LONG);
    let (code, out) = ctl(&daemon, &["hold", "held", "--reason", "looking"]);
    assert_eq!(code, 0, "{out}");
    let withheld = daemon.wait_event("escalation_withheld", LONG);
    assert!(
        support::reason(&withheld).starts_with("held by root: looking"),
        "{withheld}"
    );
    let (_, ps) = ctl(&daemon, &["ps"]);
    assert!(ps.contains("HELD by root") && ps.contains("busy"), "{ps}");
    assert!(daemon.records_of("shutdown_sent").is_empty());
    assert!(
        server.conn().call(&["PING"]).unwrap().error().is_some(),
        "still up, busy"
    );
    // Past the budget a release lets the shutdown go at once: it takes `--now` (#35).
    assert_eq!(ctl(&daemon, &["release", "held", "--now"]).0, 0);
    daemon.wait_event("shutdown_confirmed", LONG);
}

#[test]
fn approve_shuts_down_before_the_budget_ends() {
    let server = RedisServer::start(ServerOptions::default());
    let daemon = Daemon::start(
        &server.policy("approved", &support::ladder("30s", "shutdown")),
        &[],
    );
    server.wait_snapshot();
    let _writer = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    daemon.wait_event("unkillable", LONG);
    // `ps` names the command the end of the budget sends, and the time busy in words.
    let (_, ps) = ctl(&daemon, &["ps"]);
    assert!(
        ps.contains("next: at the end of the budget: SHUTDOWN NOSAVE"),
        "{ps}"
    );
    assert!(ps.contains("busy for ") && !ps.contains(" ms"), "{ps}");
    let asked = Instant::now();
    let (code, out) = ctl(
        &daemon,
        &["approve", "approved", "--reason", "data is disposable"],
    );
    assert_eq!(code, 0, "{out}");
    let sent = daemon.wait_event("shutdown_sent", LONG);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert!(
        sent["detail"]["budget_left_ms"].as_u64().unwrap() > 20_000,
        "{sent}"
    );
    daemon.wait_event("shutdown_confirmed", LONG);
    // Nothing left to approve.
    let (code, out) = ctl(&daemon, &["approve", "approved"]);
    assert_eq!(code, 1, "{out}");
}

#[test]
fn then_ask_waits_for_an_answer_and_applies_its_default_without_one() {
    // Without an answer: the default (notify) at the end of ask.timeout.
    let server = RedisServer::start(ServerOptions::default());
    let ask = "on_busy:\n  kill_after: 0s\n  on_unkillable:\n    wait: 300ms\n    then: ask\n    ask:\n      timeout: 1s\n      default: notify\n";
    let daemon = Daemon::start(&server.policy("asked", ask), &[]);
    server.wait_snapshot();
    let _writer = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    let asked = daemon.wait_event("approval_requested", LONG);
    assert_eq!(
        asked["detail"]["approve"],
        "busyguard approve asked --reason TEXT"
    );
    assert_eq!(asked["detail"]["default"], "notify");
    let withheld = daemon.wait_event("escalation_withheld", LONG);
    assert!(
        support::reason(&withheld).starts_with("no approval within"),
        "{withheld}"
    );
    assert!(daemon.records_of("shutdown_sent").is_empty());
    drop(daemon);
    // With one: a shutdown at once.
    let server = RedisServer::start(ServerOptions::default());
    let ask = ask.replace("timeout: 1s", "timeout: 1m");
    let port = support::free_port();
    let metrics = format!("127.0.0.1:{port}");
    let daemon = Daemon::start(&server.policy("answered", &ask), &["--metrics", &metrics]);
    server.wait_snapshot();
    let _writer = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    daemon.wait_event("approval_requested", LONG);
    let (_, ps) = ctl(&daemon, &["ps"]);
    assert!(ps.contains("await an approval"), "{ps}");
    let text = support::http_get(port, "/metrics");
    assert!(
        text.contains("busyguard_state{redis=\"answered\",state=\"asking\"} 1"),
        "{text}"
    );
    assert_eq!(
        ctl(&daemon, &["approve", "answered", "--reason", "ok"]).0,
        0
    );
    daemon.wait_event("shutdown_confirmed", LONG);
}

#[test]
fn ps_shows_the_incident_its_next_step_and_deadline() {
    let server = RedisServer::start(ServerOptions::default());
    let daemon = Daemon::start(
        &server.policy("shown", &support::ladder("30s", "notify")),
        &[],
    );
    server.wait_snapshot();
    let _writer = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    let unkillable = daemon.wait_event("unkillable", LONG);
    let (code, json) = ctl(&daemon, &["ps", "--json"]);
    assert_eq!(code, 0, "{json}");
    let ps: Value = serde_json::from_str(&json).unwrap();
    let live = &ps["instances"][0]["live"];
    assert_eq!(ps["instances"][0]["instance"], "shown");
    assert_eq!(live["state"], "busy");
    assert_eq!(live["incident"], unkillable["incident"]);
    assert!(
        live["next"].as_str().unwrap().contains("end of the budget"),
        "{live}"
    );
    let deadline = live["deadline_unix_ms"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        (now..now + 31_000).contains(&deadline),
        "{deadline} vs {now}"
    );
    let (_, text) = ctl(&daemon, &["ps"]);
    assert!(text.starts_with("shown  busy  incident "), "{text}");
}

#[test]
fn status_shows_a_pause_the_running_daemon_holds() {
    let server = RedisServer::start(ServerOptions::default());
    let daemon = Daemon::start(&server.policy("steered", ""), &[]);
    server.wait_snapshot();
    let (code, out) = ctl(
        &daemon,
        &["pause", "steered", "--for", "10m", "--reason", "reindex"],
    );
    assert_eq!(code, 0, "{out}");
    daemon.wait_event("operator_command", LONG);
    let policy = daemon.dir.path().join("policy.yaml");
    let policy = policy.to_str().unwrap();
    let (code, json) = ctl(&daemon, &["status", "--json", policy]);
    assert_eq!(code, 0, "{json}");
    let report: Value = serde_json::from_str(&json).unwrap();
    let live = &report["instances"][0]["daemon"];
    assert_eq!(live["state"], "healthy", "{live}");
    assert_eq!(live["pause"]["by"], "root", "{live}");
    assert_eq!(live["pause"]["reason"], "reindex", "{live}");
    let (_, text) = ctl(&daemon, &["status", policy]);
    assert!(
        text.contains("daemon: healthy  PAUSED by root until "),
        "{text}"
    );
}

#[test]
fn only_the_daemons_user_and_group_may_connect() {
    let server = RedisServer::start(ServerOptions::default());
    let daemon = Daemon::start(&server.policy("guarded", ""), &[]);
    daemon.wait_event("watchdog_started", LONG);
    let socket = std::fs::read_to_string(daemon.dir.path().join("control.path")).unwrap();
    let mode = std::fs::metadata(socket.trim())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
    // As `nobody`, who may read where the socket is but is not in its group: the socket itself
    // refuses.
    let public = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(daemon.dir.path(), public).unwrap();
    let out = Command::new(support::busyguard_bin())
        .args(["ps", "--state-dir"])
        .arg(daemon.dir.path())
        .env("HOME", "/")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Permission denied") || err.contains("permission"),
        "{err}"
    );
    assert!(daemon.records_of("operator_command").is_empty());
}

/// An operator's own SCRIPT KILL (busyguard paused) and own SHUTDOWN NOSAVE (after a withheld
/// escalation) are told apart from a script that ended by itself.
#[test]
fn an_operators_own_kill_or_shutdown_is_not_ended_by_itself() {
    let mut server = RedisServer::start(ServerOptions::default());
    let daemon = Daemon::start(
        &server.policy("manual", &support::ladder("500ms", "notify")),
        &[],
    );
    server.wait_snapshot();
    assert_eq!(ctl(&daemon, &["pause", "manual", "--for", "1m"]).0, 0);
    daemon.wait_event("operator_command", LONG);
    let runaway = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]);
    daemon.wait_event("escalation_withheld", LONG);
    let killed = server.conn().call(&["SCRIPT", "KILL"]).unwrap();
    assert_eq!(killed.text(), Some("OK"));
    assert!(
        runaway
            .reply()
            .unwrap()
            .error()
            .unwrap()
            .contains("Script killed")
    );
    let recovered = daemon.wait_event("recovered", LONG);
    assert_eq!(
        recovered["detail"]["how"], "killed by another client",
        "{recovered}"
    );
    assert_eq!(ctl(&daemon, &["resume", "manual"]).0, 0);
    // Then: an unkillable script, the escalation withheld (`then: notify`), and an operator's
    // SHUTDOWN NOSAVE; the server comes back under a new run id.
    let _writer = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    assert!(wait_for(LONG, || daemon
        .records_of("escalation_withheld")
        .len()
        == 2));
    let mut conn = server.conn();
    conn.send(&["SHUTDOWN", "NOSAVE"]).unwrap();
    assert!(server.wait_exit(Duration::from_secs(5)));
    // While it is down, `ps` says so: not "busy for N" counting on (it said busy for 97 s).
    daemon.wait_event("unreachable", LONG);
    let (_, ps) = ctl(&daemon, &["ps"]);
    assert!(ps.starts_with("manual  unreachable"), "{ps}");
    assert!(!ps.contains("busy for"), "{ps}");
    server.spawn().unwrap();
    let second = daemon
        .wait_record(LONG, |r| {
            r["event"] == "recovered" && r["incident"] != recovered["incident"]
        })
        .unwrap();
    assert_eq!(
        second["detail"]["how"], "restarted, not by busyguard",
        "{second}"
    );
    assert_eq!(second["detail"]["restarted"], true);
}

/// Under `then: notify` nothing is ever sent at the end of the budget: `ps` says so instead of
/// "escalate", and `approve` answers that it does nothing (it used to answer "applied").
#[test]
fn under_then_notify_ps_says_nothing_will_be_sent_and_approve_does_nothing() {
    let server = RedisServer::start(ServerOptions::default());
    let daemon = Daemon::start(
        &server.policy("notified", &support::ladder("30s", "notify")),
        &[],
    );
    server.wait_snapshot();
    let _writer = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    daemon.wait_event("unkillable", LONG);
    let (_, ps) = ctl(&daemon, &["ps"]);
    assert!(ps.contains("nothing will be sent (`then: notify`)"), "{ps}");
    assert!(!ps.contains("escalate"), "{ps}");
    // Colour at a terminal (a pty through script(1)), none in a pipe or under NO_COLOR.
    assert!(!ps.contains('\x1b'), "{ps:?}");
    let at_terminal = |no_color: Option<&str>| {
        let line = format!(
            "{} ps --state-dir {}",
            support::busyguard_bin().display(),
            daemon.dir.path().display()
        );
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"]);
        cmd.env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        String::from_utf8_lossy(&cmd.output().expect("script(1)").stdout).into_owned()
    };
    let coloured = at_terminal(None);
    assert!(coloured.contains("\x1b[1;31mbusy\x1b[0m"), "{coloured:?}");
    let plain = at_terminal(Some("1"));
    assert!(
        plain.contains("notified  busy") && !plain.contains('\x1b'),
        "{plain:?}"
    );
    let (code, out) = ctl(&daemon, &["approve", "notified"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("approve does nothing"), "{out}");
    assert!(
        !daemon.events().contains(&"shutdown_sent".to_string()),
        "{:?}",
        daemon.events()
    );
}

/// After busyguard's own shutdown the server comes back without busyguard's ACL user (it was
/// never saved): it answers WRONGPASS, so `ps`, the metric and the trail say fault, with the
/// reply, not "down, busy for N ms" counting on.
#[test]
fn a_server_back_after_a_shutdown_without_busyguards_user_is_a_fault_not_down() {
    let mut server = RedisServer::start(ServerOptions::default());
    support::add_busyguard_user(&server, "s3cret-for-busyguard", &[]);
    let secret = server.dir.path().join("busyguard.pass");
    std::fs::write(&secret, "s3cret-for-busyguard\n").unwrap();
    let port = support::free_port();
    let policy = support::acl_policy(&format!("unix://{}", server.socket.display()), &secret)
        .replace("wait: 5s", "wait: 300ms");
    let daemon = Daemon::start(&policy, &["--metrics", &format!("127.0.0.1:{port}")]);
    server.wait_snapshot();
    let _writer = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    daemon.wait_event("shutdown_confirmed", LONG);
    assert!(server.wait_exit(Duration::from_secs(5)));
    server.spawn().unwrap();
    let fault = daemon.wait_event("probe_fault", LONG);
    assert!(
        support::reason(&fault).contains("WRONGPASS") || fault.to_string().contains("WRONGPASS"),
        "{fault}"
    );
    assert!(
        wait_for(LONG, || ctl(&daemon, &["ps"]).1.starts_with("acl  fault")),
        "{}",
        ctl(&daemon, &["ps"]).1
    );
    let (_, ps) = ctl(&daemon, &["ps"]);
    assert!(!ps.contains("busy for"), "{ps}");
    let metrics = support::http_get(port, "/metrics");
    assert!(
        metrics.contains("busyguard_state{redis=\"acl\",state=\"fault\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("busyguard_up{redis=\"acl\"} 1"),
        "{metrics}"
    );
    // `audit show --all` names the reply the fault record holds.
    let (code, shown) = support::busyguard(&["audit", "show", "--all"], &[&daemon.audit]);
    assert_eq!(code, 0, "{shown}");
    let line = shown
        .lines()
        .find(|l| l.contains("probe_fault"))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(line.contains("WRONGPASS"), "{line}");
    // An instance the trail never names is said to be unknown, not "no incidents".
    let (code, out) =
        support::busyguard(&["audit", "show", "--instance", "nope"], &[&daemon.audit]);
    assert_eq!(code, 1, "{out}");
}

/// #35: after a shutdown withheld by `limits`, `ps` says what withholds it and that approve
/// sends it anyway, and `approve` does what the notification and the runbook promise: the
/// operator's approval lifts `limits` (never the guards), its answer says so, and SHUTDOWN
/// NOSAVE goes at the next BUSY reply. Before, approve answered "already decided" (exit 1).
#[test]
fn approve_after_a_withhold_by_limits_sends_the_shutdown_it_promised() {
    let mut server = RedisServer::start(ServerOptions::default());
    let daemon = Daemon::start(
        &server.policy(
            "spent",
            &format!(
                "{}limits:\n  max_shutdowns: 0\n",
                support::ladder("500ms", "shutdown")
            ),
        ),
        &[],
    );
    server.wait_snapshot();
    let _writer = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    let withheld = daemon.wait_event("escalation_withheld", LONG);
    assert!(
        support::reason(&withheld).starts_with("limits"),
        "{withheld}"
    );
    let (_, ps) = ctl(&daemon, &["ps"]);
    assert!(
        ps.contains("next: nothing: withheld (limits") && ps.contains("busyguard approve spent"),
        "{ps}"
    );
    let (code, out) = ctl(&daemon, &["approve", "spent", "--reason", "on call"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("approve applied: SHUTDOWN NOSAVE at the next BUSY reply")
            && out.contains("lifts `limits`"),
        "{out}"
    );
    daemon.wait_event("shutdown_sent", LONG);
    assert!(server.wait_exit(LONG));
}

/// #35: a hold kept past the end of the budget: `ps` says nothing goes while held; `release`
/// says the shutdown would go now and takes `--now` (exit 1 without it, still held); with it,
/// the answer says SHUTDOWN NOSAVE goes, and it does. Before, `release` sent it at once and
/// answered only "release applied".
#[test]
fn a_release_past_the_budget_says_the_shutdown_goes_and_takes_now() {
    let mut server = RedisServer::start(ServerOptions::default());
    let daemon = Daemon::start(
        &server.policy("kept", &support::ladder("500ms", "shutdown")),
        &[],
    );
    server.wait_snapshot();
    let _writer = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    daemon.wait_event("unkillable", LONG);
    let (code, out) = ctl(&daemon, &["hold", "kept", "--reason", "a look"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("kept up until `busyguard release`"), "{out}");
    let held = daemon
        .wait_record(LONG, |r| {
            r["event"] == "escalation_withheld" && r["detail"]["by_operator"] == true
        })
        .unwrap();
    assert!(support::reason(&held).starts_with("held by"), "{held}");
    let (_, ps) = ctl(&daemon, &["ps"]);
    assert!(ps.contains("nothing past the kill while held"), "{ps}");
    let (code, out) = ctl(&daemon, &["release", "kept"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("release kept --now"), "{out}");
    assert!(daemon.records_of("shutdown_sent").is_empty());
    let (code, out) = ctl(&daemon, &["release", "kept", "--now"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("goes at the next BUSY reply: SHUTDOWN NOSAVE"),
        "{out}"
    );
    daemon.wait_event("shutdown_sent", LONG);
    assert!(server.wait_exit(LONG));
}

/// #35: a BUSY script during the operator's own maintenance pause is told, not paged: the
/// withheld kill is information (`held` in the metrics, no PagerDuty event), while the
/// incident's own opening is paged as usual at its low severity.
#[test]
fn an_operators_own_pause_is_never_a_critical_page() {
    let server = RedisServer::start(ServerOptions::default());
    let pagerduty = HttpReceiver::always(202, "{}");
    let dir = support::state_dir();
    std::fs::write(dir.path().join("pd.key"), "routing-key\n").unwrap();
    let file = dir.path().join("policy.yaml");
    std::fs::write(
        &file,
        server.policy(
            "maint",
            &format!(
                "notify:\n  - pagerduty: {{ routing_key_file: {}/pd.key, events_url: '{}', quiet: 0s }}\n",
                dir.path().display(),
                pagerduty.url("/pd")
            ),
        ),
    )
    .unwrap();
    let port = support::free_port();
    let daemon = Daemon::start_with(dir, &[file], &["--metrics", &format!("127.0.0.1:{port}")]);
    server.wait_snapshot();
    let (code, out) = ctl(
        &daemon,
        &["pause", "maint", "--for", "1h", "--reason", "upgrade"],
    );
    assert_eq!(code, 0, "{out}");
    let _runaway = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]);
    let withheld = daemon.wait_event("escalation_withheld", LONG);
    assert_eq!(withheld["detail"]["by_operator"], true, "{withheld}");
    assert!(
        wait_for(LONG, || !pagerduty.requests().is_empty()),
        "busy_detected paged"
    );
    let metrics = support::http_get(port, "/metrics");
    assert!(
        metrics.contains(
            "busyguard_actions_total{redis=\"maint\",action=\"kill\",outcome=\"held\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "busyguard_actions_total{redis=\"maint\",action=\"kill\",outcome=\"withheld\"} 0"
        ),
        "{metrics}"
    );
    let severities: Vec<String> = pagerduty
        .requests()
        .iter()
        .map(|r| {
            r.json()["payload"]["severity"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(
        !severities.iter().any(|s| s == "critical"),
        "{severities:?}"
    );
    let _ = ctl(&daemon, &["resume", "maint"]);
}
