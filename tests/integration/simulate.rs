//! `busyguard simulate`: the example scenarios print exactly their expected decisions
//! (`BLESS=1` rewrites them), and replaying a real incident's trail reproduces its decisions.

use std::path::Path;

use crate::support;

#[test]
fn every_example_scenario_prints_its_expected_decisions() {
    let dir = Path::new("examples/scenarios");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let scenario = entry.unwrap().path();
        if scenario.extension().is_none_or(|e| e != "txt") {
            continue;
        }
        let text = std::fs::read_to_string(&scenario).unwrap();
        let policy = text
            .lines()
            .find_map(|l| l.strip_prefix("# policy: "))
            .expect("a `# policy:` line");
        let (code, out) = support::busyguard(&["simulate"], &[&dir.join(policy), &scenario]);
        assert_eq!(code, 0, "{}: {out}", scenario.display());
        let expected = scenario.with_extension("expected");
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(&expected, &out).unwrap();
        }
        let want = std::fs::read_to_string(&expected)
            .unwrap_or_else(|_| panic!("{} (BLESS=1 writes it)", expected.display()));
        assert_eq!(out, want, "{}", scenario.display());
        checked += 1;
    }
    assert!(checked >= 5, "{checked}");
}

/// A trail written by a real daemon against a real server (an unkillable script shut down
/// past its budget, then a second one withheld by `limits`): the decisions it implies are the
/// decisions it holds.
#[test]
fn replaying_a_real_trail_reproduces_its_decisions() {
    let trail = Path::new(
        "tests/fixtures/trails/past_the_budget_an_unkillable_script_ends_in_a_shutdown_and_limits_withhold_the_next.jsonl",
    );
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("past.yaml");
    std::fs::write(
        &policy,
        "instance: past\nredis:\n  url: unix:///nowhere.sock\non_busy:\n  kill_after: 0s\n  on_unkillable:\n    wait: 1s\n    then: shutdown\nlimits:\n  max_shutdowns: 1\n  per: 1h\n",
    )
    .unwrap();
    let (code, out) = support::busyguard(
        &["simulate", "--trail", trail.to_str().unwrap()],
        &[&policy],
    );
    assert_eq!(code, 0, "{out}");
    let replayed: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|w| *w != "->" && !w.is_empty())
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    let recorded: Vec<String> = std::fs::read_to_string(trail)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["instance"] == "past" && !r["incident"].is_null())
        .filter(|r| r["event"] != "watchdog_stopped")
        .map(|r| r["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(replayed, recorded, "{out}");
    assert!(recorded.contains(&"shutdown_sent".to_string()));
    assert!(recorded.contains(&"escalation_withheld".to_string()));
}

/// A real trail in which another client killed the script (busyguard's kill was not due yet):
/// `simulate --trail` decides what the daemon decided, "killed by another client" included,
/// from what the records say the server told (its kill count), not from a rule of its own.
#[test]
fn replaying_a_kill_by_another_client_reproduces_it() {
    use crate::support::{Caller, Daemon, RedisServer, ServerOptions, scripts};
    let server = RedisServer::start(ServerOptions::default());
    let policy = server.policy(
        "other",
        "on_busy:\n  kill_after: 30s\n  on_unkillable:\n    wait: 1m\n    then: notify\n",
    );
    let daemon = Daemon::start(&policy, &[]);
    server.wait_snapshot();
    let runaway = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]);
    daemon.wait_event("busy_detected", std::time::Duration::from_secs(20));
    let killed = server.conn().call(&["SCRIPT", "KILL"]).unwrap();
    assert_eq!(killed.text(), Some("OK"));
    assert!(runaway.reply().unwrap().killed_by_user());
    let recovered = daemon.wait_event("recovered", std::time::Duration::from_secs(20));
    assert_eq!(
        recovered["detail"]["how"], "killed by another client",
        "{recovered}"
    );
    let file = daemon.dir.path().join("policy.yaml");
    let (code, out) = support::busyguard(
        &["simulate", "--trail", daemon.audit.to_str().unwrap()],
        &[&file],
    );
    assert_eq!(code, 0, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains(" recovered "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("killed by another client"), "{out}");
}

/// A scenario line the policy's timeline never reaches (a kill's answer with no kill sent, a
/// shutdown outcome under `then: notify`) is named in a warning, and a line written out of
/// time order is refused with its number; they used to be ignored without a word.
#[test]
fn lines_the_timeline_never_reaches_are_warned_of_and_times_must_go_forward() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        "instance: p\nredis:\n  url: unix:///nowhere.sock\non_busy:\n  kill_after: 0s\n  on_unkillable:\n    wait: 1s\n    then: notify\n",
    )
    .unwrap();
    let scenario = dir.path().join("s.txt");
    std::fs::write(
        &scenario,
        "0s pong threshold=200\n500ms kill ok\n1s busy script\n1s kill unkillable\n3s busy script\n3s shutdown confirmed\n",
    )
    .unwrap();
    let (code, out) = support::busyguard(&["simulate"], &[&policy, &scenario]);
    assert_eq!(code, 0, "{out}");
    let warnings: Vec<&str> = out.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warnings.len(), 2, "{out}");
    assert!(warnings[0].contains("line 2: a kill outcome"), "{out}");
    assert!(warnings[1].contains("line 6: a shutdown outcome"), "{out}");
    // The unkillable answer on line 4 answered the kill the BUSY on line 3 sent: no warning.
    assert!(out.contains("unkillable"), "{out}");
    std::fs::write(&scenario, "0s pong\n2s busy script\n1s kill ok\n").unwrap();
    let out = std::process::Command::new(support::busyguard_bin())
        .arg("simulate")
        .args([&policy, &scenario])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("line 3: 1s comes before line 2's 2s"),
        "{said}"
    );
}

/// #35: the README's policy as written (dry-run, its secret under `${CREDENTIALS_DIRECTORY}`,
/// which only the service has) is rehearsed with no secret and no flag, as it will act once
/// enforced: the unkillable script is shut down at the end of its budget; `status` of the same
/// file from a shell says the policy is invalid there (and why), not that a server is down.
#[test]
fn the_readmes_dry_run_policy_is_rehearsed_as_enforced_with_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("local-redis.yaml");
    std::fs::write(
        &policy,
        "instance: local-redis\nmode: dry-run\nredis:\n  url: unix:///run/redis/redis-server.sock\n  username: busyguard\n  password_file: ${CREDENTIALS_DIRECTORY}/local-redis\non_busy:\n  kill_after: 0s\n  on_unkillable:\n    wait: 1s\n    then: shutdown\nlimits: { max_shutdowns: 1, per: 1h }\n",
    )
    .unwrap();
    let scenario = Path::new("examples/scenarios/unkillable.txt");
    let (code, out) = support::busyguard(&["simulate"], &[&policy, scenario]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("note: this policy is `mode: dry-run`"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("shutdown_sent") && !l.contains("dry run")),
        "{out}"
    );
    assert!(!out.contains("warning:"), "{out}");
    let (code, status) = support::busyguard(&["status"], &[&policy]);
    assert_eq!(code, 1, "{status}");
    assert!(
        status.contains("INVALID") && !status.contains("UNREACHABLE"),
        "{status}"
    );
    assert!(status.contains("--credentials"), "{status}");
}
