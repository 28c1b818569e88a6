//! Operating busyguard: reload on SIGHUP, systemd's notification protocol, metrics, `status`
//! against real servers, the unit's hardening score, and journald-friendly logs.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support;
use crate::support::daemon::NotifySocket;
use crate::support::{
    Caller, Daemon, RedisServer, Reply, ServerOptions, busyguard_bin, scripts, wait_for,
};
use nix::sys::signal::Signal;
use serde_json::Value;

const LONG: Duration = Duration::from_secs(20);

#[test]
fn sighup_keeps_a_broken_policy_running_starts_added_ones_and_sigterm_stops() {
    let a = RedisServer::start(ServerOptions::default());
    let b = RedisServer::start(ServerOptions::default());
    let state = tempfile::tempdir().unwrap();
    let policies = state.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("a.yaml"), a.policy("a", "")).unwrap();
    let mut daemon = Daemon::start_with(state, std::slice::from_ref(&policies), &[]);
    a.wait_snapshot();

    // A broken edit: rejected, the running version stays in force.
    std::fs::write(
        policies.join("a.yaml"),
        a.policy("a", "on_busy:\n  kil_after: 1s\n"),
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP);
    let rejected = daemon.wait_event("policy_rejected", LONG);
    assert_eq!(rejected["detail"]["kept_running"], serde_json::json!(["a"]));
    assert!(
        rejected["detail"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("did you mean `kill_after`")
    );
    support::run_killable_runaway(&a);
    assert!(
        daemon
            .wait_record(LONG, |r| r["instance"] == "a" && r["event"] == "killed")
            .is_some()
    );

    // A new file: supervised from the reload on.
    std::fs::write(policies.join("b.yaml"), b.policy("b", "")).unwrap();
    daemon.signal(Signal::SIGHUP);
    assert!(
        daemon
            .wait_record(LONG, |r| r["instance"] == "b"
                && r["event"] == "watchdog_started")
            .is_some()
    );
    b.wait_snapshot();
    support::run_killable_runaway(&b);
    assert!(
        daemon
            .wait_record(LONG, |r| r["instance"] == "b" && r["event"] == "killed")
            .is_some()
    );

    // A removed file: its watchdog stops; the other goes on.
    std::fs::remove_file(policies.join("b.yaml")).unwrap();
    daemon.signal(Signal::SIGHUP);
    assert!(
        daemon
            .wait_record(LONG, |r| r["instance"] == "b"
                && r["event"] == "watchdog_stopped")
            .is_some()
    );

    let started = Instant::now();
    assert_eq!(daemon.stop().code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "stop took {:?}",
        started.elapsed()
    );
    let records = daemon.records();
    let last = records.last().unwrap();
    assert_eq!(last["event"], "watchdog_stopped");
    assert!(last["instance"].is_null());
    assert!(
        records
            .iter()
            .any(|r| r["instance"] == "a" && r["event"] == "watchdog_stopped")
    );
}

#[test]
fn systemd_hears_ready_watchdog_reloading_and_stopping() {
    let server = RedisServer::start(ServerOptions::default());
    let state = tempfile::tempdir().unwrap();
    let systemd = NotifySocket::bind(state.path(), Duration::from_secs(10));
    let file = state.path().join("p.yaml");
    std::fs::write(&file, server.policy("sd", "")).unwrap();
    let mut daemon = Daemon::prepare(state, &[file], &[]);
    daemon.env = vec![
        systemd.env(),
        ("WATCHDOG_USEC".into(), "2000000".into()),
        ("JOURNAL_STREAM".into(), "8:1234".into()),
    ];
    daemon.spawn();
    assert_eq!(systemd.next(), "READY=1\nSTATUS=supervising 1 instance: sd");
    assert_eq!(
        systemd.next(),
        "WATCHDOG=1",
        "pinged while the probe loop lives"
    );
    daemon.signal(Signal::SIGHUP);
    let got = systemd.next_but_watchdog();
    assert!(got.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{got}");
    assert!(systemd.next().starts_with("READY=1\nSTATUS=supervising"));
    daemon.signal(Signal::SIGTERM);
    assert_eq!(systemd.next_but_watchdog(), "STOPPING=1");
    // Under journald each line carries its syslog priority and no timestamp of its own.
    assert!(wait_for(LONG, || daemon
        .stderr()
        .lines()
        .any(|l| l.starts_with("<6>"))));
    assert!(!daemon.stderr().contains("INFO"), "{}", daemon.stderr());
}

/// #35: a start with one broken file among others supervises the valid ones (the unit has no
/// `ExecStartPre=busyguard check` to fail it as a whole); systemd's Status: and one log line name
/// the refused file and its first error, at the start and at a reload that rejects an edit.
#[test]
fn a_start_with_a_broken_file_supervises_the_others_and_systemd_shows_which() {
    let server = RedisServer::start(ServerOptions::default());
    let state = tempfile::tempdir().unwrap();
    let systemd = NotifySocket::bind(state.path(), Duration::from_secs(10));
    let policies = state.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("good.yaml"), server.policy("good", "")).unwrap();
    let broken = policies.join("broken.yaml");
    std::fs::write(&broken, server.policy("other", "not_a_key: 1\n")).unwrap();
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/busyguard.service"),
    )
    .unwrap();
    assert!(
        !unit.lines().any(|l| l.starts_with("ExecStartPre=")),
        "a check before the start would fail it as a whole"
    );
    let mut daemon = Daemon::prepare(state, std::slice::from_ref(&policies), &[]);
    daemon.env = vec![systemd.env()];
    daemon.spawn();
    let ready = systemd.next();
    let status = ready.strip_prefix("READY=1\nSTATUS=").expect(&ready);
    assert!(
        status.starts_with("supervising 1 instance: good; 1 policy file(s) REFUSED, first: ")
            && status.contains(&format!("{}:", broken.display()))
            && status.contains("unknown key `not_a_key`"),
        "{status}"
    );
    let line = format!(
        "policy_rejected: nothing of it is supervised (1 error(s)), first: {}:",
        broken.display()
    );
    assert!(
        daemon
            .stderr()
            .lines()
            .any(|l| l.contains(&line) && l.contains(":1: unknown key `not_a_key`")),
        "{}",
        daemon.stderr()
    );
    server.wait_snapshot();
    support::run_killable_runaway(&server);
    assert!(
        daemon
            .wait_record(LONG, |r| r["instance"] == "good" && r["event"] == "killed")
            .is_some(),
        "the valid policy is enforced"
    );

    // The file fixed, then an edit of the good one broken: the reload says so in Status:.
    std::fs::write(&broken, server.policy("other", "")).unwrap();
    daemon.signal(Signal::SIGHUP);
    assert!(systemd.next().starts_with("RELOADING=1"));
    assert_eq!(
        systemd.next(),
        "READY=1\nSTATUS=supervising 2 instances: good, other"
    );
    std::fs::write(
        policies.join("good.yaml"),
        server.policy("good", "on_busy:\n  kil_after: 1s\n"),
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP);
    assert!(systemd.next().starts_with("RELOADING=1"));
    let got = systemd.next();
    assert!(
        got.contains("supervising 2 instances: good, other; 1 policy file(s) REFUSED")
            && got.contains("good.yaml:"),
        "{got}"
    );
    assert!(daemon.stderr().lines().any(|l| {
        l.contains("policy_rejected: its running version stays (good) (1 error(s)), first: ")
            && l.contains("good.yaml:")
    }));
}

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn metrics_count_the_actions_during_and_after_an_incident() {
    let server = RedisServer::start(ServerOptions::default());
    let port = support::free_port();
    let policy = server.policy(
        "m",
        "on_busy:\n  on_unkillable:\n    wait: 700ms\n    then: notify\n",
    );
    let addr = format!("127.0.0.1:{port}");
    let daemon = Daemon::start(&policy, &["--metrics", &addr]);
    server.wait_snapshot();
    let caller = Caller::eval(&server, scripts::WRITE_THEN_SPIN_MS, &["k"], &["2000"]);
    daemon.wait_event("unkillable", LONG);
    let during = scrape(port);
    assert_eq!(
        metric(&during, "busyguard_state{redis=\"m\",state=\"busy\"}"),
        Some(1.0),
        "{during}"
    );
    assert_eq!(metric(&during, "busyguard_up{redis=\"m\"}"), Some(1.0));
    assert_eq!(
        metric(
            &during,
            "busyguard_actions_total{redis=\"m\",action=\"kill\",outcome=\"sent\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &during,
            "busyguard_actions_total{redis=\"m\",action=\"kill\",outcome=\"unkillable\"}"
        ),
        Some(1.0)
    );
    assert!(
        metric(
            &during,
            "busyguard_probe_duration_seconds_count{redis=\"m\"}"
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(caller.reply().unwrap(), Reply::Bulk(Some("done".into())));
    daemon.wait_event("recovered", LONG);
    let after = scrape(port);
    assert_eq!(
        metric(&after, "busyguard_state{redis=\"m\",state=\"healthy\"}"),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        metric(
            &after,
            "busyguard_actions_total{redis=\"m\",action=\"shutdown\",outcome=\"withheld\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &after,
            "busyguard_incidents_total{redis=\"m\",cause=\"busy\"}"
        ),
        Some(1.0)
    );
}

fn status_json(files: &[&Path]) -> (i32, Value) {
    let (code, text) = support::busyguard(&["status", "--json"], files);
    let report = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (code, report)
}

#[test]
fn status_reports_what_a_decision_would_rest_on() {
    let healthy = RedisServer::start(ServerOptions::default());
    let zero = RedisServer::start(ServerOptions {
        threshold_ms: 0,
        ..Default::default()
    });
    let rdb = RedisServer::start(ServerOptions {
        extra: vec!["save 3600 1".into()],
        ..Default::default()
    });
    for i in 0..5 {
        rdb.conn().call(&["SET", &format!("k{i}"), "v"]).unwrap();
    }
    let limited = RedisServer::start(ServerOptions::default());
    support::add_busyguard_user(&limited, "pw", &["+shutdown"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "pw\n").unwrap();
    let write = |name: &str, body: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let files = [
        write("healthy.yaml", healthy.policy("healthy", "")),
        write("zero.yaml", zero.policy("zero", "")),
        write("rdb.yaml", rdb.policy("rdb", "")),
        write(
            "limited.yaml",
            format!(
                "instance: limited\nredis:\n  url: redis://127.0.0.1:{}\n  username: busyguard\n  password_file: {}\n",
                limited.port,
                dir.path().join("pw").display()
            ),
        ),
    ];
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let (code, report) = status_json(&refs);
    assert_eq!(code, 0, "{report:#}");
    let by = |name: &str| {
        report["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["instance"] == name)
            .unwrap()
            .clone()
    };

    let h = by("healthy");
    assert_eq!(h["reachable"], true);
    assert_eq!(
        h["version"],
        healthy.info("server")["redis_version"].as_str()
    );
    assert_eq!(h["role"], "master");
    assert_eq!(h["busy_threshold_ms"], 200);
    assert!(
        h["rights"]
            .as_object()
            .unwrap()
            .values()
            .all(|v| v == "granted"),
        "{h:#}"
    );
    assert_eq!(h["warnings"], serde_json::json!([]));
    // No daemon keeps the default state dir here: said, and not a failure of the report.
    assert!(
        h["daemon"]["error"]
            .as_str()
            .unwrap()
            .starts_with("not reached: "),
        "{h:#}"
    );

    let z = by("zero");
    assert_eq!(z["busy_threshold_ms"], 0);
    assert!(
        z["warnings"][0]
            .as_str()
            .unwrap()
            .contains("busy-reply-threshold is 0"),
        "{z:#}"
    );

    let r = by("rdb");
    assert_eq!(r["shutdown_nosave_loses"]["persistence"], "rdb");
    assert_eq!(r["rdb_changes_since_last_save"], 5);

    let l = by("limited");
    assert_eq!(l["rights"]["shutdown"], "missing", "{l:#}");
    assert_eq!(l["rights"]["script|kill"], "granted");
    assert!(
        l["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("`shutdown` is missing"))
    );
    // Checking rights ran nothing: the servers counted no kill and no shutdown.
    assert_eq!(healthy.command_calls("script|kill"), 0);
    assert_eq!(healthy.command_calls("function|kill"), 0);
    assert!(!healthy.log().contains("User requested shutdown"));

    let gone = write(
        "gone.yaml",
        "instance: gone\nredis:\n  url: redis://127.0.0.1:1\n".into(),
    );
    let (code, report) = status_json(&[&gone]);
    assert_eq!(code, 1);
    assert_eq!(report["instances"][0]["reachable"], false);
}

#[test]
fn the_unit_scores_ok_in_systemd_analyze_security() {
    let Ok(out) = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "systemd/busyguard.service"])
        .output()
    else {
        eprintln!("systemd-analyze is not installed here: the unit's score is not checked");
        return;
    };
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for busyguard.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no score in: {text}"));
    assert!(score <= 2.0, "exposure {score}: {text}");
}

#[test]
fn secret_files_can_come_from_systemd_credentials() {
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("cache-01"), "secret\n").unwrap();
    let policy = creds.path().join("p.yaml");
    std::fs::write(&policy, "instance: c\nredis:\n  url: redis://127.0.0.1\n  password_file: ${CREDENTIALS_DIRECTORY}/cache-01\n").unwrap();
    let out = Command::new(busyguard_bin())
        .arg("check")
        .arg(&policy)
        .env("CREDENTIALS_DIRECTORY", creds.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_changed_policy_takes_effect_on_the_incident_in_flight() {
    let mut server = RedisServer::start(ServerOptions::default());
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("p.yaml");
    let ladder = |wait: &str, then: &str| {
        server.policy(
            "live",
            &format!("on_busy:\n  on_unkillable:\n    wait: {wait}\n    then: {then}\n"),
        )
    };
    std::fs::write(&file, ladder("30s", "notify")).unwrap();
    let daemon = Daemon::start_with(state, std::slice::from_ref(&file), &[]);
    server.wait_snapshot();
    let _caller = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    let unkillable = daemon.wait_event("unkillable", LONG);
    // Mid-incident, the operator shortens the budget and allows the shutdown.
    std::fs::write(&file, ladder("1s", "shutdown")).unwrap();
    daemon.signal(Signal::SIGHUP);
    let sent = daemon.wait_event("shutdown_sent", LONG);
    assert_eq!(
        sent["incident"], unkillable["incident"],
        "the same incident goes on"
    );
    assert_eq!(sent["detail"]["policy"]["wait_ms"], 1000);
    assert_ne!(
        sent["policy"], unkillable["policy"],
        "decided under the new file's hash"
    );
    assert!(server.wait_exit(Duration::from_secs(5)));
    let events = daemon.events();
    assert_eq!(
        events.iter().filter(|e| *e == "busy_detected").count(),
        1,
        "{events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| *e == "kill_sent").count(),
        1,
        "{events:?}"
    );
}

/// The daemon as a library call, driven in-process by its control channel: a reload starts an
/// added policy, stops a removed one and updates a changed one in place; a stop ends `run`.
#[test]
fn reload_and_stop_drive_the_daemon_in_process() {
    use busyguard::daemon::{self, Control, RunEnd, RunOptions};
    let (a, b) = (
        RedisServer::start(ServerOptions::default()),
        RedisServer::start(ServerOptions::default()),
    );
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("policies");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("a.yaml"), a.policy("a", "")).unwrap();
    std::fs::write(folder.join("b.yaml"), b.policy("b", "")).unwrap();
    let trail = dir.path().join("state/audit.jsonl");
    let records = || -> Vec<Value> {
        std::fs::read_to_string(&trail)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let has = |event: &str, instance: &str| {
        records()
            .iter()
            .any(|r| r["event"] == event && r["instance"] == instance)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (control, requests) = tokio::sync::mpsc::channel(4);
    let opts = RunOptions {
        policies: vec![folder.clone()],
        state_dir: Some(dir.path().join("state")),
        dry_run: false,
        metrics: None,
        kill_on_stop: false,
        notifications: None,
    };
    let driver = async {
        until("a and b start", || {
            has("watchdog_started", "a") && has("watchdog_started", "b")
        })
        .await;
        std::fs::remove_file(folder.join("b.yaml")).unwrap();
        std::fs::write(
            folder.join("a.yaml"),
            a.policy("a", "on_busy:\n  kill_after: 1s\n"),
        )
        .unwrap();
        std::fs::write(folder.join("c.yaml"), b.policy("c", "")).unwrap();
        control.send(Control::Reload).await.unwrap();
        until("b stops and c starts", || {
            has("watchdog_stopped", "b") && has("watchdog_started", "c")
        })
        .await;
        until("a is updated in place", || {
            records().iter().any(|r| {
                r["event"] == "policy_loaded"
                    && r["instance"] == "a"
                    && r["detail"]["update"] == true
            })
        })
        .await;
        control.send(Control::Stop).await.unwrap();
    };
    let (end, ()) = runtime.block_on(async { tokio::join!(daemon::run(opts, requests), driver) });
    assert_eq!(end.unwrap(), RunEnd::Stopped);
    let all = records();
    let started_a = all
        .iter()
        .filter(|r| r["event"] == "watchdog_started" && r["instance"] == "a")
        .count();
    assert_eq!(started_a, 1, "a changed policy keeps its watchdog");
    assert!(has("watchdog_stopped", "a") && has("watchdog_stopped", "c"));
    let last = all.last().unwrap();
    assert_eq!(last["event"], "watchdog_stopped");
    assert!(last["instance"].is_null());
}

/// Wait, on the runtime, until `cond` holds (10 s at most).
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every shipped alert rule loads and fires in promtool on the series a real incident leaves,
/// counters at 0 from the start included (promtool from Debian's `prometheus`, which
/// scripts/test installs).
#[test]
fn every_alert_rule_fires_in_promtool() {
    let promtool = |args: &[&str]| {
        Command::new("promtool")
            .args(args)
            .output()
            .expect("promtool: run scripts/test, or apt-get install prometheus")
    };
    let checked = promtool(&["check", "rules", "examples/prometheus/alerts.yml"]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
    let tested = promtool(&["test", "rules", "tests/fixtures/promtool/alerts.yml"]);
    succeeded(&tested);
    // A test for every rule.
    let rules = std::fs::read_to_string("examples/prometheus/alerts.yml").unwrap();
    let tests = std::fs::read_to_string("tests/fixtures/promtool/alerts.yml").unwrap();
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "no promtool test for {alert}"
        );
        // Its runbook page exists, and the rule names it.
        assert!(
            Path::new(&format!("docs/runbooks/{alert}.md")).exists(),
            "no docs/runbooks/{alert}.md"
        );
        assert!(
            rules.contains(&format!("runbooks/{alert}.md")),
            "{alert} has no runbook_url to its page"
        );
    }
}

/// The series alerts rest on exist from the start, at 0; a blind watchdog still exports `up`;
/// a rejected reload shows; a policy removed by a reload takes its series with it.
#[test]
fn metrics_exist_from_the_start_and_a_rejected_reload_shows() {
    let server = RedisServer::start(ServerOptions::default());
    let port = support::free_port();
    let receiver = crate::support::http::HttpReceiver::always(200, "");
    let good = server.policy("fresh", &receiver.notify_yaml("/m"));
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("fresh.yaml");
    let blind = dir.path().join("blind.yaml");
    std::fs::write(&policy, &good).unwrap();
    let password = dir.path().join("wrong");
    std::fs::write(&password, "not-the-password").unwrap();
    support::add_busyguard_user(&server, "right", &[]);
    std::fs::write(
        &blind,
        server.policy("blind", "").replace(
            "probe:",
            &format!(
                "  username: busyguard\n  password_file: {}\nprobe:",
                password.display()
            ),
        ),
    )
    .unwrap();
    let daemon = Daemon::start_with(
        tempfile::tempdir().unwrap(),
        &[policy.clone(), blind],
        &["--metrics", &format!(":{port}")],
    );
    daemon.wait_event("probe_fault", LONG);
    let text = support::http_get(port, "/metrics");
    for series in [
        "busyguard_actions_total{redis=\"fresh\",action=\"kill\",outcome=\"unkillable\"} 0",
        "busyguard_actions_total{redis=\"fresh\",action=\"shutdown\",outcome=\"sent\"} 0",
        "busyguard_incidents_total{redis=\"fresh\",cause=\"busy\"} 0",
        "busyguard_notifications_total{receiver=\"fresh.0.webhook\",outcome=\"given_up\"} 0",
        // WRONGPASS is an answer: up, and blind (fault), so only BusyguardBlind fires.
        "busyguard_up{redis=\"blind\"} 1",
        "busyguard_state{redis=\"blind\",state=\"fault\"} 1",
        "busyguard_config_last_reload_successful 1",
        "busyguard_escalation_deadline_timestamp_seconds{redis=\"fresh\"} 0",
    ] {
        assert!(text.contains(series), "missing `{series}` in\n{text}");
    }
    assert!(text.contains("busyguard_build_info{version=\""), "{text}");
    assert!(
        text.contains("busyguard_last_reply_timestamp_seconds{redis=\"blind\"}"),
        "{text}"
    );
    // A typo, then SIGHUP: the old policy runs on, and the metric says the reload failed.
    std::fs::write(&policy, good.replace("instance:", "instanc:")).unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_event("policy_rejected", LONG);
    assert!(wait_for(LONG, || support::http_get(port, "/metrics")
        .contains("busyguard_config_last_reload_successful 0")));
    // The blind policy leaves (its file now names another instance): none of its series stays
    // behind to fire an alert on a ghost.
    std::fs::write(&policy, &good).unwrap();
    let blind = dir.path().join("blind.yaml");
    let renamed = std::fs::read_to_string(&blind)
        .unwrap()
        .replace("instance: blind", "instance: sighted");
    std::fs::write(&blind, renamed).unwrap();
    daemon.signal(Signal::SIGHUP);
    assert!(
        wait_for(LONG, || !support::http_get(port, "/metrics")
            .contains("redis=\"blind\"")),
        "a removed policy's series remain:\n{}",
        support::http_get(port, "/metrics")
    );
    let text = support::http_get(port, "/metrics");
    assert!(text.contains("busyguard_up{redis=\"fresh\"}"), "{text}");
    assert!(
        text.contains("busyguard_config_last_reload_successful 1"),
        "{text}"
    );
}

/// Log levels follow severity (a shutdown is an ERROR, an unkillable script a WARN, so
/// `journalctl -p err` shows every shutdown), and `--log-format json` writes one JSON object a
/// line, behind the journald priority under journald.
#[test]
fn log_lines_carry_their_severity_in_text_and_json() {
    let mut server = RedisServer::start(ServerOptions::default());
    let ladder =
        "on_busy:\n  kill_after: 0s\n  on_unkillable:\n    wait: 300ms\n    then: shutdown\n";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, server.policy("logged", ladder)).unwrap();
    let mut daemon = Daemon::prepare(
        dir,
        &[file],
        &["--log-format", "json", "--log-level", "info"],
    );
    daemon.env = vec![("JOURNAL_STREAM".into(), "8:1234".into())];
    daemon.spawn();
    server.wait_snapshot();
    let _writer = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    daemon.wait_event("shutdown_confirmed", LONG);
    assert!(server.wait_exit(Duration::from_secs(5)));
    let line_of = |event: &str| {
        let stderr = daemon.stderr();
        stderr
            .lines()
            .find(|l| {
                l.contains(&format!("\"event\":\"{event}\""))
                    && l.contains("\"instance\":\"logged\"")
            })
            .map(str::to_string)
    };
    assert!(
        wait_for(LONG, || line_of("shutdown_confirmed").is_some()),
        "{}",
        daemon.stderr()
    );
    for (event, prefix, level) in [
        ("shutdown_sent", "<3>", "ERROR"),
        ("unkillable", "<4>", "WARN"),
        ("watchdog_started", "<6>", "INFO"),
    ] {
        let line = line_of(event).unwrap_or_else(|| panic!("no {event} in {}", daemon.stderr()));
        let json = line
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{event}: {line}"));
        let parsed: Value = serde_json::from_str(json).unwrap();
        assert_eq!(parsed["level"], level, "{line}");
        assert_eq!(parsed["instance"], "logged", "{line}");
        // The detail is an object a log system can index, not a string holding JSON.
        assert!(parsed["detail"].is_object(), "{line}");
        assert!(
            parsed["message"].as_str().unwrap().starts_with(event),
            "{line}"
        );
    }
}

/// Text logs are logfmt, one event a line with a short message and without the record's
/// detail; the first line says what is supervised and how.
#[test]
fn text_logs_are_logfmt_and_the_start_line_says_what_is_supervised() {
    let server = RedisServer::start(ServerOptions::default());
    let daemon = Daemon::start(
        &server.policy("told", &support::ladder("3s", "shutdown")),
        &["--log-level", "info"],
    );
    server.wait_snapshot();
    support::run_killable_runaway(&server);
    daemon.wait_event("recovered", LONG);
    let stderr = daemon.stderr();
    let start = stderr
        .lines()
        .find(|l| l.contains("supervises"))
        .unwrap_or_else(|| panic!("no start line in {stderr}"));
    assert!(
        start.starts_with("ts=") && start.contains(" level=info msg=\"busyguard "),
        "{start}"
    );
    for words in [
        "told at unix://",
        "enforce",
        "SHUTDOWN NOSAVE",
        "audit trail",
    ] {
        assert!(start.contains(words), "`{words}` not in {start}");
    }
    assert!(assert_logfmt(&stderr, "killed").contains(" instance=told"));
    for line in stderr.lines().filter(|l| l.contains("event=")) {
        assert!(!line.contains("detail="), "{line}");
        assert!(line.len() < 600, "{} bytes: {line}", line.len());
    }
}

/// The logfmt line of `event`: `ts=... level=... msg=... event=NAME ...`.
fn assert_logfmt(stderr: &str, event: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.contains(&format!(" event={event} ")))
        .unwrap_or_else(|| panic!("no {event} line in {stderr}"))
        .to_string();
    assert!(
        line.starts_with("ts=") && line.contains(" level=") && line.contains(" msg="),
        "{line}"
    );
    line
}

/// Every series an alert rule or the Grafana dashboard names is one the real daemon exports
/// (its `# TYPE` is in a scrape of a daemon just started), and every dashboard query parses in
/// promtool (Grafana's `$redis` and `$__rate_interval` stood in for), so neither can silently
/// watch a name that does not exist. Alertmanager's example passes `amtool check-config`
/// (scripts/test installs promtool and amtool).
#[test]
fn alerts_and_the_dashboard_name_only_series_the_daemon_exports() {
    let server = RedisServer::start(ServerOptions::default());
    let port = support::free_port();
    let receiver = crate::support::http::HttpReceiver::always(200, "");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, server.policy("p", &receiver.notify_yaml("/m"))).unwrap();
    let _daemon = Daemon::start_with(
        tempfile::tempdir().unwrap(),
        &[policy],
        &["--metrics", &format!(":{port}")],
    );
    server.wait_snapshot();
    let scrape = support::http_get(port, "/metrics");
    let families: Vec<&str> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let exported = |name: &str| {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| families.contains(f))
            .unwrap_or(name);
        families.contains(&family)
    };
    let rules = std::fs::read_to_string("examples/prometheus/alerts.yml").unwrap();
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string("examples/grafana/busyguard.json").unwrap())
            .unwrap();
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(queries.len() >= 10, "{queries:?}");
    let mut named = 0;
    for text in std::iter::once(rules.as_str()).chain(queries.iter().map(String::as_str)) {
        for name in text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("busyguard_") || w.starts_with("process_"))
        {
            named += 1;
            assert!(exported(name), "`{name}` is not exported:\n{scrape}");
        }
    }
    assert!(named > 20, "only {named} names found");
    // Each query, Grafana's variables replaced, as a recording rule promtool checks.
    let groups: Vec<String> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let q = q
                .replace("$redis", ".*")
                .replace("$host", ".*")
                .replace("$__rate_interval", "5m");
            format!("      - record: dashboard:query_{i}\n        expr: '{q}'\n")
        })
        .collect();
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(
        &file,
        format!(
            "groups:\n  - name: dashboard\n    rules:\n{}",
            groups.concat()
        ),
    )
    .unwrap();
    let checked = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool: run scripts/test, or apt-get install prometheus");
    succeeded(&checked);
    let out = Command::new("amtool")
        .args(["check-config", "examples/prometheus/alertmanager.yml"])
        .output()
        .expect("amtool: run scripts/test, or apt-get install prometheus-alertmanager");
    succeeded(&out);
}

/// A tool (promtool, amtool) that must have passed, its output shown when it did not.
fn succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// #32: `status` checks the rights of every ladder an incident may climb, not the instance's
/// alone. A script rule with `then: failover` under a `notify` policy needs `+role` and
/// `+replicaof` as much as the instance's would; before, they were never checked, and the
/// "nothing restarts it" warning ignored a rule that may shut the server down.
#[test]
fn status_checks_the_rights_and_warnings_of_every_script_rules_ladder() {
    let server = RedisServer::start(ServerOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ruled.yaml");
    std::fs::write(
        &file,
        server.policy(
            "ruled",
            "on_busy:\n  on_unkillable:\n    then: notify\n  scripts:\n    - function: nightly_*\n      on_unkillable:\n        then: failover\n",
        ),
    )
    .unwrap();
    let (_, report) = status_json(&[&file]);
    let s = &report["instances"][0];
    for right in ["role", "replicaof", "cluster|failover"] {
        assert!(s["rights"][right].is_string(), "`{right}` unchecked: {s:#}");
    }
    assert!(
        s["failover"].is_object(),
        "the failover a rule may ask is shown: {s:#}"
    );
    // The same rule with `then: notify` too: nothing needs them.
    std::fs::write(&file, server.policy("ruled", "")).unwrap();
    let (_, report) = status_json(&[&file]);
    assert!(report["instances"][0]["rights"]["replicaof"].is_null());
}

/// #35: the Alertmanager example implements the split docs/metrics.md recommends: it pages only
/// for busyguard's own health (what busyguard cannot page for itself); every incident alert
/// goes to the ticket queue, since busyguard's own PagerDuty receiver paged it. Each alert of
/// the rules is routed by `amtool config routes test`.
#[test]
fn the_alertmanager_example_pages_only_for_busyguards_own_health() {
    const PAGED: [&str; 5] = [
        "BusyguardDown",
        "BusyguardSilent",
        "BusyguardBlind",
        "BusyguardTrailFailing",
        "BusyguardNotificationsFailing",
    ];
    let rules = std::fs::read_to_string("examples/prometheus/alerts.yml").unwrap();
    let mut alerts: Vec<(String, String)> = Vec::new();
    for line in rules.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert: ") {
            alerts.push((name.to_string(), String::new()));
        } else if let Some(rest) = line.strip_prefix("labels: { severity: ")
            && let Some(last) = alerts.last_mut()
        {
            last.1 = rest.trim_end_matches(" }").to_string();
        }
    }
    assert!(alerts.len() >= 15, "{alerts:?}");
    for (name, severity) in &alerts {
        assert!(!severity.is_empty(), "{name} has no severity");
        let out = Command::new("amtool")
            .args([
                "config",
                "routes",
                "test",
                "--config.file=examples/prometheus/alertmanager.yml",
                &format!("alertname={name}"),
                &format!("severity={severity}"),
                "redis=cache-01",
                "instance=host:9754",
            ])
            .output()
            .expect("amtool: run scripts/test, or apt-get install prometheus-alertmanager");
        succeeded(&out);
        let receiver = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let want = match PAGED.contains(&name.as_str()) {
            true => "busyguard-oncall",
            false => "redis-tickets",
        };
        assert_eq!(receiver, want, "{name} ({severity})");
    }
    // No inhibit rule rests on an alert that outlives its incident.
    let config = std::fs::read_to_string("examples/prometheus/alertmanager.yml").unwrap();
    assert!(
        !config.contains("source_matchers: [alertname = BusyguardShutdownSent]"),
        "{config}"
    );
}

/// #35: the dashboard's state timeline is one row per Redis (and busyguard host), its value the
/// state's code, and every state busyguard exports has a mapping to its name and a colour;
/// a host selector scopes every query; busyguard's own `up` has a panel. The timeline's query
/// is evaluated by `promtool test rules` on the series a busy server and a healthy one leave.
#[test]
fn the_dashboards_state_timeline_is_one_coloured_row_per_redis() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string("examples/grafana/busyguard.json").unwrap())
            .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let timeline = panels
        .iter()
        .find(|p| p["type"] == "state-timeline")
        .expect("a state timeline");
    let mappings = &timeline["fieldConfig"]["defaults"]["mappings"][0]["options"];
    let mut code_of = std::collections::HashMap::new();
    for state in busyguard::model::kinds::State::NAMES {
        let (code, _) = mappings
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, m)| m["text"] == *state)
            .unwrap_or_else(|| panic!("no mapping for `{state}`: {mappings}"));
        code_of.insert(state, code.parse::<u32>().unwrap());
    }
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            assert!(
                expr.contains("instance=~\"$host\""),
                "not scoped by host: {expr}"
            );
        }
    }
    assert!(panels.iter().any(|p| {
        p["targets"][0]["expr"]
            .as_str()
            .unwrap()
            .starts_with("up{job=\"busyguard\"")
    }));
    let vars: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        vars.contains(&"host") && vars.contains(&"redis"),
        "{vars:?}"
    );
    // Two Redis on one host: `a` busy, `b` healthy; every other state 0, as the daemon exports.
    let expr = timeline["targets"][0]["expr"]
        .as_str()
        .unwrap()
        .replace("$host", ".*")
        .replace("$redis", ".*");
    let mut series = String::new();
    for (redis, current) in [("a", "busy"), ("b", "healthy")] {
        for state in busyguard::model::kinds::State::NAMES {
            series.push_str(&format!(
                "      - series: 'busyguard_state{{instance=\"h:9754\",redis=\"{redis}\",state=\"{state}\"}}'\n        values: '{}'\n",
                u8::from(*state == current)
            ));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let test = dir.path().join("timeline_test.yml");
    std::fs::write(
        &test,
        format!(
            "tests:\n  - interval: 1m\n    input_series:\n{series}    promql_expr_test:\n      - expr: '{expr}'\n        eval_time: 0m\n        exp_samples:\n          - labels: '{{instance=\"h:9754\",redis=\"a\"}}'\n            value: {}\n          - labels: '{{instance=\"h:9754\",redis=\"b\"}}'\n            value: {}\n",
            code_of[&"busy"], code_of[&"healthy"]
        ),
    )
    .unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&test)
        .output()
        .expect("promtool: run scripts/test, or apt-get install prometheus");
    succeeded(&out);
}

/// #37: the watchdogs' thread asks for real-time priority (as root here, it gets it) and says
/// what it got; every other thread (notifications, the trail's flushes) keeps normal priority.
#[test]
fn the_watchdogs_thread_runs_at_real_time_priority_and_no_other() {
    let server = RedisServer::start(ServerOptions::default());
    let receiver = support::http::HttpReceiver::always(200, "ok");
    let daemon = Daemon::start(&server.policy("sched", &receiver.notify_yaml("/hook")), &[]);
    server.wait_snapshot();
    let said = daemon.stderr();
    let line = said
        .lines()
        .find(|l| l.contains("scheduling: "))
        .unwrap_or_else(|| panic!("no scheduling line: {said}"));
    // (comm, policy) of each thread: /proc/PID/task/TID/stat, the policy is field 41.
    let threads: Vec<(String, u32, u64)> =
        std::fs::read_dir(format!("/proc/{}/task", daemon.pid()))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
            .map(|stat| {
                let comm = stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()].to_string();
                let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
                // After `(comm)`: field 3 is fields[0], so field 41 is fields[38], 1 is the tid.
                let policy = fields[38].parse().unwrap();
                let tid = stat.split(' ').next().unwrap().parse().unwrap();
                (comm, policy, tid)
            })
            .collect();
    assert!(
        threads.iter().any(|t| t.0 == "notifications"),
        "{threads:?}"
    );
    let main = threads.iter().find(|t| t.2 == daemon.pid() as u64).unwrap();
    if nix::unistd::geteuid().is_root() {
        assert!(line.contains("real-time priority (SCHED_FIFO"), "{line}");
        assert_eq!(
            main.1, 1,
            "the watchdogs' thread is SCHED_FIFO: {threads:?}"
        );
        for other in threads.iter().filter(|t| t.2 != main.2) {
            assert_eq!(other.1, 0, "{other:?} keeps normal priority: {threads:?}");
        }
    } else {
        assert!(
            line.contains("normal scheduling: real-time priority was refused"),
            "{line}"
        );
        assert_eq!(main.1, 0);
    }
}
