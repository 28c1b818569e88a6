//! Before BUSY: scripts creeping toward the busy threshold, warned of from the SLOWLOG of a real
//! server (threshold 200 ms, `early_warning.at: 50%`), and the prevention check of `status`.

use std::time::Duration;

use serde_json::Value;

use crate::support::http::HttpReceiver;
use crate::support::{self, Caller, Daemon, RedisServer, ServerOptions, scripts, wait_for};

const LONG: Duration = Duration::from_secs(20);

/// A library whose function spins for ARGV[1] milliseconds of wall time.
const SPIN_MS_LIBRARY: &str = "#!lua name=busyguard_early\n\
    redis.register_function('spin_ms', function(keys, args) \
    local t = redis.call('TIME') local start = t[1] * 1000 + t[2] / 1000 \
    while true do t = redis.call('TIME') \
    if t[1] * 1000 + t[2] / 1000 - start >= tonumber(args[1]) then return 'done' end end end)";

fn slow_scripts(daemon: &Daemon) -> Vec<Value> {
    daemon
        .records()
        .into_iter()
        .filter(|r| r["event"] == "slow_script")
        .collect()
}

/// The daemon has read the SLOWLOG `n` more times than `before`.
fn wait_slowlog_reads(server: &RedisServer, before: u64, n: u64) {
    assert!(wait_for(LONG, || server.command_calls("slowlog|get") >= before + n));
}

/// A script (named by its first line, `-- spin MS`) that spins for `ms`.
fn spin(server: &RedisServer, ms: u64) {
    let body = format!("-- spin {ms}\n{}", scripts::SPIN_MS);
    let reply = Caller::eval(server, &body, &[], &[&ms.to_string()])
        .reply()
        .unwrap();
    assert_eq!(reply.text(), Some("done"));
}

#[test]
fn scripts_near_the_threshold_are_warned_of_once_by_their_share() {
    let server = RedisServer::start(ServerOptions::default());
    let receiver = HttpReceiver::always(200, "");
    let policy = server
        .policy(
            "early",
            &format!(
                "notify:\n  - webhook: {{ url: '{}', min_severity: warning }}\n",
                receiver.url("/w")
            ),
        )
        .replace("interval: 50ms", "interval: 50ms\n  snapshot_every: 1s");
    let mut daemon = Daemon::start(&policy, &[]);
    wait_slowlog_reads(&server, 0, 1);
    // 30%, 60% and 90% of the threshold.
    for ms in [60, 120, 180] {
        spin(&server, ms);
    }
    let reads = server.command_calls("slowlog|get");
    wait_slowlog_reads(&server, reads, 2);
    let warned = slow_scripts(&daemon);
    assert_eq!(warned.len(), 2, "60% and 90%, not 30%: {warned:#?}");
    let shares: Vec<f64> = warned
        .iter()
        .map(|w| w["detail"]["share_of_threshold"].as_f64().unwrap())
        .collect();
    assert!(
        (0.55..0.8).contains(&shares[0]) && shares[1] >= 0.85,
        "{shares:?}"
    );
    for w in &warned {
        assert_eq!(w["detail"]["command"], "EVAL");
        assert!(
            w["detail"]["script"]
                .as_str()
                .unwrap()
                .starts_with("-- spin ")
        );
        assert!(w["incident"].is_null());
    }
    // The receiver takes warnings only: the 90% one.
    assert!(wait_for(LONG, || receiver.requests().len() == 1));
    assert_eq!(
        receiver.requests()[0].json()["data"]["seq"],
        warned[1]["seq"]
    );
    // A restart of busyguard does not tell them again.
    daemon.stop();
    daemon.spawn();
    let reads = server.command_calls("slowlog|get");
    wait_slowlog_reads(&server, reads, 2);
    assert_eq!(
        slow_scripts(&daemon).len(),
        2,
        "not repeated after a restart"
    );
    // SLOWLOG RESET empties the log; the next slow script is told, once.
    assert_eq!(
        server.conn().call(&["SLOWLOG", "RESET"]).unwrap().text(),
        Some("OK")
    );
    spin(&server, 170);
    let reads = server.command_calls("slowlog|get");
    wait_slowlog_reads(&server, reads, 2);
    assert_eq!(slow_scripts(&daemon).len(), 3);
    // A script that went BUSY is its incident's, never also "a slow script, before BUSY" (#35).
    support::run_killable_runaway(&server);
    let recovered = daemon.wait_event("recovered", LONG);
    assert!(
        recovered["detail"]["forensics"]["slowlog"]["duration_us"].is_u64(),
        "the SLOWLOG holds it: {recovered}"
    );
    let reads = server.command_calls("slowlog|get");
    wait_slowlog_reads(&server, reads, 2);
    assert_eq!(slow_scripts(&daemon).len(), 3, "{:?}", daemon.events());
}

#[test]
fn a_slow_function_is_named_and_counted_in_the_metrics() {
    let server = RedisServer::start(ServerOptions::default());
    let loaded = server
        .conn()
        .call(&["FUNCTION", "LOAD", SPIN_MS_LIBRARY])
        .unwrap();
    assert_eq!(loaded.text(), Some("busyguard_early"));
    let port = support::free_port();
    let policy = server
        .policy("fn", "")
        .replace("interval: 50ms", "interval: 50ms\n  snapshot_every: 1s");
    let _daemon = Daemon::start(&policy, &["--metrics", &format!("127.0.0.1:{port}")]);
    wait_slowlog_reads(&server, 0, 1);
    let metrics = || support::http_get(port, "/metrics");
    // At 0 from the start: an alert's `increase()` sees the first one.
    assert!(
        metrics().contains("busyguard_scripts_near_threshold_total{redis=\"fn\"} 0"),
        "{}",
        metrics()
    );
    let reply = Caller::start(&server, &["FCALL", "spin_ms", "0", "170"])
        .reply()
        .unwrap();
    assert_eq!(reply.text(), Some("done"));
    assert!(
        wait_for(LONG, || metrics().contains("script=\"spin_ms\"")),
        "{}",
        metrics()
    );
    let text = metrics();
    assert!(
        text.contains("busyguard_slow_scripts_total{redis=\"fn\",script=\"spin_ms\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("busyguard_scripts_near_threshold_total{redis=\"fn\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("busyguard_script_duration_seconds_count{redis=\"fn\"}"),
        "{text}"
    );
}

/// The prevention check: what would let a script go BUSY, each with what to change.
#[test]
fn the_prevention_check_names_what_to_change() {
    let server = RedisServer::start(ServerOptions {
        // The early warnings cannot see a script of 100 ms when only those above 500 ms are logged.
        extra: vec![
            "slowlog-log-slower-than 500000".into(),
            "maxmemory 0".into(),
        ],
        ..Default::default()
    });
    let acl = server
        .conn()
        .call(&[
            "ACL",
            "SETUSER",
            "app",
            "on",
            ">pw",
            "~*",
            "+@read",
            "+@scripting",
        ])
        .unwrap();
    assert_eq!(acl.text(), Some("OK"));
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, server.policy("prevent", "")).unwrap();
    let (_, out) = support::busyguard(&["status", "--json"], &[&policy]);
    let status: Value = serde_json::from_str(&out).unwrap();
    let findings = status["instances"][0]["prevention"].to_string();
    assert!(findings.contains("`app` may run scripts"), "{findings}");
    assert!(findings.contains("maxmemory is 0"), "{findings}");
    assert!(findings.contains("slowlog-log-slower-than"), "{findings}");
    let (_, human) = support::busyguard(&["status"], &[&policy]);
    assert!(human.contains("prevention:"), "{human}");
}
