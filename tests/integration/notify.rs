//! Notifications against real local HTTP receivers: each service's format field by field, a
//! full PagerDuty incident, failing receivers that never delay a kill, and delivery after a
//! restart.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support;
use crate::support::http::{Answer, HttpReceiver, Request};
use crate::support::{Caller, Daemon, RedisServer, Reply, ServerOptions, scripts, wait_for};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(30);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn policy(server: &RedisServer, instance: &str, wait: &str, receivers: &str) -> String {
    server.policy(
        instance,
        &format!("on_busy:\n  kill_after: 0s\n  on_unkillable:\n    wait: {wait}\n    then: shutdown\nnotify:\n{receivers}"),
    )
}

/// The Standard Webhooks check, written independently of busyguard (Python's standard library).
fn signature_verifies(secret: &str, req: &Request) -> bool {
    let h = |k: &str| req.headers.get(k).cloned().unwrap_or_default();
    let input = serde_json::json!([
        secret,
        h("webhook-id"),
        h("webhook-timestamp"),
        req.body,
        h("webhook-signature")
    ]);
    let code = r#"
import base64, hashlib, hmac, json, sys
secret, mid, ts, body, sigs = json.load(sys.stdin)
key = base64.b64decode(secret.split("_", 1)[1])
want = base64.b64encode(hmac.new(key, f"{mid}.{ts}.{body}".encode(), hashlib.sha256).digest()).decode()
ok = any(s.split(",", 1)[1] == want for s in sigs.split(" ") if s.startswith("v1,"))
sys.exit(0 if ok else 1)
"#;
    let mut child = Command::new("python3")
        .args(["-c", code])
        .stdin(Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.to_string().as_bytes()).unwrap();
    child.wait().unwrap().success()
}

fn trail_record(daemon: &Daemon, seq: &Value) -> Value {
    daemon
        .records()
        .into_iter()
        .find(|r| r["seq"] == *seq)
        .expect("record in the trail")
}

#[test]
fn each_receiver_gets_every_transition_in_its_documented_format() {
    let mut server = RedisServer::start(ServerOptions::default());
    let slack = HttpReceiver::always(200, "ok");
    let pd = HttpReceiver::always(202, r#"{"status":"success"}"#);
    let hook = HttpReceiver::always(204, "");
    let dir = server.dir.path();
    std::fs::write(dir.join("pd.key"), "R0UT1NGKEY00000000000000000000AB\n").unwrap();
    std::fs::write(dir.join("hook.secret"), format!("{SECRET}\n")).unwrap();
    let receivers = format!(
        "  - slack: {{ url: '{}' }}\n  - pagerduty: {{ routing_key_file: {}/pd.key, events_url: '{}' }}\n  - webhook: {{ url: '{}', secret_file: {}/hook.secret }}\n",
        slack.url("/services/T/B/x"),
        dir.display(),
        pd.url("/v2/enqueue"),
        hook.url("/hook"),
        dir.display()
    );
    let daemon = Daemon::start(&policy(&server, "fmt", "700ms", &receivers), &[]);
    server.wait_snapshot();
    support::run_killable_runaway(&server);
    // The kill confirmed before the next script starts: busyguard's PING after the kill and the
    // caller's next EVAL race, and a PING queued behind the next script's silent phase makes
    // that script another incident (superseded), with no `killed` for the first.
    daemon.wait_event("recovered", LONG);
    let _w = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    daemon.wait_event("shutdown_confirmed", LONG);
    assert!(server.wait_exit(Duration::from_secs(5)));
    server.spawn().unwrap();
    // busy, kill_sent, killed, recovered; busy, kill_sent, unkillable, shutdown_sent, confirmed, recovered
    assert!(
        wait_for(LONG, || hook.requests().len() >= 10),
        "webhook got {:?}: {:?}",
        hook.requests().len(),
        daemon.events()
    );
    // Slack: the quickly killed script is one message (its outcome), the unkillable one what
    // changed (unkillable, shutdown confirmed, recovered); PagerDuty: no page for the quick kill.
    assert!(wait_for(LONG, || slack.requests().len() >= 4));
    assert!(wait_for(LONG, || pd.requests().len() >= 3));

    // Webhook: Standard Webhooks 1.0, body exactly as the contract says.
    let mut ids = std::collections::HashSet::new();
    for req in hook.requests() {
        assert_eq!(req.method, "POST");
        assert_eq!(req.headers["content-type"], "application/json");
        assert!(
            signature_verifies(SECRET, &req),
            "signature does not verify: {req:?}"
        );
        assert!(
            !signature_verifies("whsec_d3JvbmcgIGtleQ==", &req),
            "a wrong key must not verify"
        );
        let body = req.json();
        let record = trail_record(&daemon, &body["data"]["seq"]);
        assert_eq!(body["data"], record, "data is the audit record");
        assert_eq!(
            body["type"],
            format!("busyguard.{}", record["event"].as_str().unwrap())
        );
        assert_eq!(body["timestamp"], record["ts"]);
        let ts: u64 = req.headers["webhook-timestamp"].parse().unwrap();
        assert!(ts > 1_700_000_000);
        assert!(
            ids.insert(req.headers["webhook-id"].clone()),
            "one id per event when nothing failed"
        );
    }
    let events: Vec<String> = hook
        .requests()
        .iter()
        .map(|r| r.json()["data"]["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        &events[..4],
        ["busy_detected", "kill_sent", "killed", "recovered"]
    );
    assert_eq!(&events[4..10], support::UNKILLABLE_LADDER);

    // Slack: incoming-webhook JSON with the fallback text and blocks.
    for req in slack.requests() {
        assert_eq!(req.path, "/services/T/B/x");
        let body = req.json();
        let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
        assert!(
            body["text"]
                .as_str()
                .unwrap()
                .starts_with(&format!("busyguard fmt on {host}: ")),
            "{body}"
        );
        let fields = body["blocks"][1]["fields"].as_array().unwrap();
        let labels: Vec<&str> = fields
            .iter()
            .map(|f| f["text"].as_str().unwrap().split('\n').next().unwrap())
            .collect();
        assert_eq!(
            labels[..6],
            [
                "*Instance*",
                "*State*",
                "*Action and outcome*",
                "*Elapsed since first BUSY*",
                "*Next step*",
                "*Incident*"
            ]
        );
        assert!(fields[5]["text"].as_str().unwrap().contains(" · seq "));
        // Every message names the server, also those whose record has no snapshot of its own.
        assert!(labels.contains(&"*Server*"), "{body}");
        assert!(!body.to_string().contains("<x>"), "user text is escaped");
    }
    let unkillable = slack
        .requests()
        .into_iter()
        .map(|r| r.json())
        .find(|b| {
            b["blocks"][1]["fields"][1]["text"]
                .as_str()
                .unwrap()
                .contains("unkillable")
        })
        .unwrap();
    let next = unkillable["blocks"][1]["fields"][4]["text"]
        .as_str()
        .unwrap();
    // How long clients have been answered BUSY, and the wall-clock time of the shutdown and
    // what stops it.
    let elapsed = unkillable["blocks"][1]["fields"][3]["text"]
        .as_str()
        .unwrap();
    assert!(
        elapsed.starts_with("*Elapsed since first BUSY*\n") && !elapsed.ends_with('-'),
        "{unkillable}"
    );
    assert!(next.contains("SHUTDOWN NOSAVE at 20"), "{unkillable}");
    assert!(next.contains("busyguard hold fmt"), "{unkillable}");
    let risk = unkillable["blocks"][1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["text"].as_str())
        .find(|t| t.starts_with("*Data at risk"))
        .unwrap_or_else(|| panic!("{unkillable}"));
    assert!(
        risk.starts_with("*Data at risk (SHUTDOWN NOSAVE)*\n"),
        "{unkillable}"
    );
    // #35: a count of changes is as old as the snapshot it came from, and says so.
    assert!(
        risk.contains("; counted ") && risk.contains(" before this"),
        "{risk}"
    );
    let kinds: Vec<String> = slack
        .requests()
        .iter()
        .map(|r| {
            r.json()["blocks"][1]["fields"][1]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds[0], "*State*\n`recovered`",
        "the quick kill is its outcome: {kinds:?}"
    );
    assert!(!kinds.iter().any(|k| k.contains("`killed`")), "{kinds:?}");
    // A chat is told what changed, not every step: the unkillable incident ended by a shutdown
    // is three messages (its busy_detected, kill_sent and shutdown_sent are told by the next).
    assert_eq!(
        kinds,
        [
            "*State*\n`recovered`",
            "*State*\n`unkillable`",
            "*State*\n`shutdown_confirmed`",
            "*State*\n`recovered`"
        ],
        "{kinds:?}"
    );

    // PagerDuty: Events API v2, trigger(s) then resolve under one dedup_key per incident; one
    // trigger per change of severity (#35): the unkillable stands for its BUSY and its kill,
    // the shutdown confirmed adds nothing to the shutdown sent.
    let pd_events: Vec<Value> = pd.requests().iter().map(Request::json).collect();
    let actions: Vec<(&str, &str)> = pd_events
        .iter()
        .map(|e| {
            (
                e["event_action"].as_str().unwrap(),
                e["payload"]["severity"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("trigger", "error"),
            ("trigger", "critical"),
            // The shutdown lost the dataset (no persistence): the server being back is told,
            // and the page stays open for an operator to resolve.
            ("trigger", "critical"),
        ]
    );
    let back = pd_events.last().unwrap()["payload"]["summary"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        back.contains("lost the whole dataset") && back.contains("resolve it once"),
        "{back}"
    );
    let first = &pd_events[0];
    assert_eq!(first["routing_key"], "R0UT1NGKEY00000000000000000000AB");
    assert!(
        pd_events
            .iter()
            .all(|e| e["dedup_key"] == first["dedup_key"])
    );
    let p = &pd_events[0]["payload"];
    assert!(p["summary"].as_str().unwrap().len() <= 1024);
    assert!(
        p["summary"]
            .as_str()
            .unwrap()
            .contains("next: SHUTDOWN NOSAVE at"),
        "{p}"
    );
    assert_eq!(p["group"], "fmt");
    assert!(
        p["custom_details"]["shutdown_nosave_loses"].is_string(),
        "{p}"
    );
    assert_eq!(p["class"], "unkillable");
    assert_eq!(p["custom_details"]["then"], "shutdown");
    assert!(p["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn failing_receivers_never_delay_the_kill_and_get_every_event_in_order() {
    let server = RedisServer::start(ServerOptions::default());
    let flaky = HttpReceiver::start(|n, _| match n {
        0..=2 => Answer::Reply(500, vec![], "oops".into()),
        _ => Answer::Reply(200, vec![], "".into()),
    });
    let limited = HttpReceiver::start(|n, _| match n {
        0 => Answer::Reply(429, vec![("retry-after", "1".into())], "slow down".into()),
        _ => Answer::Reply(200, vec![], "".into()),
    });
    let silent = HttpReceiver::start(|_, _| Answer::Never);
    let receivers = format!(
        "  - webhook: {{ url: '{}', secret: {SECRET} }}\n  - webhook: {{ url: '{}', secret: {SECRET} }}\n  - webhook: {{ url: '{}', max_age: 2s }}\n",
        flaky.url("/a"),
        limited.url("/b"),
        silent.url("/c")
    );
    let daemon = Daemon::start(&policy(&server, "flaky", "5s", &receivers), &[]);
    server.wait_snapshot();
    support::run_killable_runaway(&server);
    let killed = daemon.wait_event("killed", LONG);
    let took = killed["detail"]["since_first_busy_ms"].as_u64().unwrap();
    assert!(took < 250, "the kill took {took}ms after the first BUSY");

    let expected = ["busy_detected", "kill_sent", "killed", "recovered"];
    for (name, receiver) in [("flaky", &flaky), ("limited", &limited)] {
        assert!(
            wait_for(LONG, || distinct_events(receiver).len() == 4),
            "{name} got {:?}",
            distinct_events(receiver)
        );
        assert_eq!(
            distinct_events(receiver),
            expected,
            "{name}: every event, in order"
        );
        // A retry carries the same id (and the same event) as the first attempt.
        let reqs = receiver.requests();
        for pair in reqs.windows(2) {
            if pair[0].json()["data"]["seq"] == pair[1].json()["data"]["seq"] {
                assert_eq!(pair[0].headers["webhook-id"], pair[1].headers["webhook-id"]);
            }
        }
    }
    assert!(flaky.requests().len() >= 7, "three 500s were retried");
    let l = limited.requests();
    assert!(
        l[1].at.duration_since(l[0].at) >= Duration::from_millis(900),
        "Retry-After: 1 was honoured"
    );

    let given_up = || {
        daemon
            .records()
            .into_iter()
            .filter(|r| {
                r["event"] == "notify_failed" && r["detail"]["receiver"] == "flaky.2.webhook"
            })
            .count()
    };
    assert!(
        wait_for(LONG, || given_up() == 4),
        "notify_failed for the silent receiver: {}",
        given_up()
    );
    let failed = daemon.wait_event("notify_failed", LONG);
    assert_eq!(failed["detail"]["kind"], "webhook");
    assert!(support::reason(&failed).contains("max_age"), "{failed}");
    assert!(
        !failed.to_string().contains("127.0.0.1"),
        "no receiver URL in the trail"
    );
}

/// The events a receiver got, each once, in the order first received.
fn distinct_events(receiver: &HttpReceiver) -> Vec<String> {
    let mut seen: Vec<(Value, String)> = Vec::new();
    for r in receiver.requests() {
        let body = r.json();
        let seq = body["data"]["seq"].clone();
        if !seen.iter().any(|(s, _)| *s == seq) {
            seen.push((seq, body["data"]["event"].as_str().unwrap().to_string()));
        }
    }
    seen.into_iter().map(|(_, e)| e).collect()
}

#[test]
fn undelivered_events_are_delivered_after_a_restart() {
    let server = RedisServer::start(ServerOptions::default());
    // A port with nothing listening yet: deliveries are refused until the receiver appears.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let receivers = format!("  - webhook: {{ url: 'http://127.0.0.1:{port}/late' }}\n");
    let mut daemon = Daemon::start(&policy(&server, "late", "5s", &receivers), &[]);
    server.wait_snapshot();
    support::run_killable_runaway(&server);
    daemon.wait_event("recovered", LONG);
    assert_eq!(daemon.stop().code(), Some(0));
    let receiver = HttpReceiver::start_on(
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap(),
        |_, _| Answer::Reply(200, vec![], String::new()),
    );
    daemon.spawn();
    assert!(
        wait_for(LONG, || distinct_events(&receiver).len() == 4),
        "{:?}",
        distinct_events(&receiver)
    );
    assert_eq!(
        distinct_events(&receiver),
        ["busy_detected", "kill_sent", "killed", "recovered"]
    );
}

/// Noise rules: a dry run never pages, and a restart shorter than `unreachable_grace` is not
/// news; a webhook with no grace (the sync point here) hears everything.
#[test]
fn dry_runs_and_short_restarts_do_not_page() {
    let pd = HttpReceiver::always(202, "{}");
    let hook = HttpReceiver::always(204, "");
    let heard = |event: &str| {
        hook.requests()
            .iter()
            .any(|r| r.json()["type"] == format!("busyguard.{event}"))
    };
    let receivers = |server: &RedisServer| {
        let dir = server.dir.path();
        std::fs::write(dir.join("pd.key"), "R0UT1NGKEY00000000000000000000AB\n").unwrap();
        format!(
            "  - pagerduty: {{ routing_key_file: {}/pd.key, events_url: '{}' }}\n  - webhook: {{ url: '{}' }}\n",
            dir.display(),
            pd.url("/v2/enqueue"),
            hook.url("/hook"),
        )
    };
    // A staging dry run: every decision is made and recorded, nothing pages.
    let staging = RedisServer::start(ServerOptions::default());
    let staged = policy(&staging, "staging", "300ms", &receivers(&staging));
    let daemon = Daemon::start(&staged.replace("notify:", "mode: dry-run\nnotify:"), &[]);
    staging.wait_snapshot();
    let _writer = Caller::eval(&staging, scripts::WRITING_LOOP, &["k"], &[]);
    assert!(
        wait_for(LONG, || heard("shutdown_sent")),
        "the dry run's shutdown, decided"
    );
    drop(daemon);
    // A restart shorter than the grace (30 s) under enforce: no page.
    let mut server = RedisServer::start(ServerOptions::default());
    let daemon = Daemon::start(
        &policy(&server, "restarted", "5s", &receivers(&server)),
        &[],
    );
    server.wait_snapshot();
    server.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(server.wait_exit(Duration::from_secs(5)));
    daemon.wait_event("unreachable", LONG);
    server.spawn().unwrap();
    assert!(wait_for(LONG, || heard("recovered")));
    assert!(pd.requests().is_empty(), "{:?}", pd.requests());
}

/// The `Next step` and the title of each Slack message, in order.
fn slack_said(slack: &HttpReceiver) -> Vec<String> {
    slack
        .requests()
        .iter()
        .map(|r| r.json().to_string())
        .collect()
}

/// #35: a password rotated on the server is a refused login, told with its fix: at the next
/// snapshot while busyguard's connection still works, and when that connection drops, never as
/// "unreachable"; PagerDuty is not paged by busyguard for it (Alertmanager's BusyguardBlind
/// is). A reload then reads the new secret file and busyguard kills again.
#[test]
fn a_rotated_password_is_a_refused_login_told_with_its_fix_never_unreachable() {
    let server = RedisServer::start(ServerOptions::default());
    support::add_busyguard_user(&server, "old-secret", &[]);
    let dir = server.dir.path();
    let secret = dir.join("busyguard.pass");
    std::fs::write(&secret, "old-secret\n").unwrap();
    std::fs::write(dir.join("pd.key"), "R0UT1NGKEY00000000000000000000AB\n").unwrap();
    let slack = HttpReceiver::always(200, "ok");
    let pd = HttpReceiver::always(202, "{}");
    let policy = support::acl_policy(&format!("unix://{}", server.socket.display()), &secret)
        .replace("interval: 50ms", "interval: 50ms\n  snapshot_every: 1s")
        + &format!(
            "notify:\n  - slack: {{ url: '{}' }}\n  - pagerduty: {{ routing_key_file: {}/pd.key, events_url: '{}' }}\n",
            slack.url("/s"),
            dir.display(),
            pd.url("/v2/enqueue")
        );
    let daemon = Daemon::start(&policy, &[]);
    server.wait_snapshot();
    // Rotated on the server only: busyguard's connection stays logged in.
    assert_eq!(
        server
            .conn()
            .call(&["ACL", "SETUSER", "busyguard", "resetpass", ">new-secret"])
            .unwrap(),
        Reply::Status("OK".into())
    );
    let rechecked = daemon
        .wait_record(LONG, |r| r["detail"]["login_refused"].is_string())
        .unwrap_or_else(|| panic!("{:?}", daemon.events()));
    assert!(
        rechecked["detail"]["login_refused"]
            .as_str()
            .unwrap()
            .starts_with("WRONGPASS"),
        "{rechecked}"
    );
    assert!(
        wait_for(LONG, || slack_said(&slack)
            .iter()
            .any(|m| m.contains("password is refused at its re-check")
                && m.contains("systemctl restart busyguard"))),
        "{:?}",
        slack_said(&slack)
    );
    // The connection drops (the server closes it): the next one is refused.
    server
        .conn()
        .call(&["CLIENT", "KILL", "USER", "busyguard"])
        .unwrap();
    let blind = daemon
        .wait_record(LONG, |r| {
            r["event"] == "probe_fault"
                && r["detail"]["reply"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("WRONGPASS"))
        })
        .unwrap_or_else(|| panic!("{:?}", daemon.events()));
    assert!(
        !daemon.events().contains(&"unreachable".to_string()),
        "a refused login is not an outage: {:?}",
        daemon.events()
    );
    assert!(
        wait_for(LONG, || slack_said(&slack)
            .iter()
            .any(|m| m.contains("login is refused: it cannot see BUSY")
                && m.contains("nothing on acl is killed"))),
        "{:?}",
        slack_said(&slack)
    );
    // The fix: the new password in the file, a reload (no LoadCredential= here).
    std::fs::write(&secret, "new-secret\n").unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon
        .wait_record(LONG, |r| {
            r["event"] == "policy_loaded"
                && r["detail"]["update"] == true
                && r["seq"].as_u64() > blind["seq"].as_u64()
        })
        .unwrap_or_else(|| panic!("the changed secret is not read: {:?}", daemon.events()));
    support::run_killable_runaway(&server);
    daemon
        .wait_record(LONG, |r| r["event"] == "killed")
        .unwrap_or_else(|| panic!("{:?}", daemon.events()));
    assert!(pd.requests().is_empty(), "{:?}", pd.requests());
}

/// #35: an outage says what to check, not what a shutdown would lose; a server back under a
/// new run id says what it had not saved is gone, not "reachable again".
#[test]
fn an_outage_says_what_to_check_and_a_restart_what_was_lost() {
    let mut server = RedisServer::start(ServerOptions::default());
    let slack = HttpReceiver::always(200, "ok");
    let receivers = format!(
        "  - slack: {{ url: '{}', unreachable_grace: 0s }}\n",
        slack.url("/s")
    );
    let daemon = Daemon::start(&policy(&server, "down", "5s", &receivers), &[]);
    server.wait_snapshot();
    server.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(server.wait_exit(Duration::from_secs(5)));
    daemon.wait_event("unreachable", LONG);
    server.spawn().unwrap();
    let back = daemon.wait_event("recovered", LONG);
    assert_eq!(
        back["detail"]["how"], "restarted, not by busyguard",
        "{back}"
    );
    assert!(wait_for(LONG, || slack.requests().len() >= 2));
    let said = slack_said(&slack);
    let down = said
        .iter()
        .find(|m| m.contains("`unreachable`"))
        .unwrap_or_else(|| panic!("{said:?}"));
    assert!(down.contains("check the server: is it running"), "{down}");
    assert!(!down.contains("Data at risk"), "{down}");
    let up = said
        .iter()
        .find(|m| m.contains("`recovered`"))
        .unwrap_or_else(|| panic!("{said:?}"));
    assert!(
        up.contains("restarted (a new run id), not by busyguard: what it had not saved is gone"),
        "{up}"
    );
}
