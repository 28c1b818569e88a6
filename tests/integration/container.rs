//! busyguard's image in a real pod (podman), beside a redis-server, as kubelet runs it: a
//! runaway EVAL killed through localhost and told to a receiver found by name from inside the
//! image; an unkillable one shut down by policy, the Redis container restarted by the pod and
//! the incident recovered, `/livez` alive all through the BUSY phase while `redis-cli ping`
//! says BUSY; a SIGSTOPped Redis dead. They need podman and the image (`$BUSYGUARD_IMAGE`):
//! scripts/test provides both and runs them (`--ignored`); plain `cargo test` leaves them out.

use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::support::pod::Pod;
use crate::support::{self, http::HttpReceiver, scripts, wait_for};

const LONG: Duration = Duration::from_secs(30);

/// The status code of `GET path` on the pod's busyguard.
fn status(pod: &Pod, path: &str) -> u16 {
    support::http_status(pod.metrics_port, path).0
}

/// EVAL `script` on its own connection and thread, as the application would; its reply.
fn eval(pod: &Pod, script: &str) -> thread::JoinHandle<String> {
    let mut conn = pod.conn();
    conn.send(&["EVAL", script, "1", "k"]).unwrap();
    thread::spawn(move || format!("{:?}", conn.read()))
}

#[test]
#[ignore = "needs podman and the image: scripts/test runs it"]
fn in_the_pod_a_runaway_eval_is_killed_and_told_to_a_receiver_found_by_name() {
    let receiver = HttpReceiver::always(200, "ok");
    let policy = format!(
        "on_busy:\n  kill_after: 0s\non_hang:\n  after: 1s\nnotify:\n  - webhook: {{ url: 'http://receiver.busyguard.test:{}/hook', quiet: 0s }}\n",
        receiver.port
    );
    let pod = Pod::start(&policy, &[], &[("receiver.busyguard.test", "127.0.0.1")]);
    // With SYS_NICE alone, real-time priority on a cgroup v2 host; a cgroup v1 host (this one)
    // gives a container no real-time budget: either way busyguard says what it got.
    let logs = pod.logs("busyguard");
    assert!(
        logs.contains("real-time priority (SCHED_FIFO")
            || logs.contains("real-time priority was refused (Operation not permitted"),
        "{logs}"
    );
    let caller = eval(&pod, scripts::READ_ONLY_LOOP);
    pod.wait_event("killed", LONG);
    let reply = caller.join().unwrap();
    assert!(reply.contains("Script killed"), "{reply}");
    assert!(
        wait_for(LONG, || receiver
            .requests()
            .iter()
            .any(
                |r| r.body.contains("kill_sent") || r.body.contains("killed")
            )),
        "no webhook reached receiver.busyguard.test from inside the image: {:?}\n{}",
        receiver.requests().len(),
        pod.logs("busyguard")
    );
    // A server that answers nothing is dead to kubelet once on_hang.after has passed.
    assert_eq!(status(&pod, "/livez"), 200);
    pod.signal_redis("STOP");
    assert!(
        wait_for(LONG, || status(&pod, "/livez") == 503),
        "a stopped Redis stays alive"
    );
    pod.signal_redis("CONT");
    assert!(wait_for(LONG, || status(&pod, "/livez") == 200));
}

#[test]
#[ignore = "needs podman and the image: scripts/test runs it"]
fn in_the_pod_an_unkillable_script_is_shut_down_and_the_pod_restarts_redis() {
    let policy = support::ladder("2s", "shutdown") + support::ACCEPT_EMPTY_RESTART;
    let pod = Pod::start(&policy, &["--kill-on-stop"], &[]);
    let _writer = eval(&pod, scripts::WRITING_LOOP);
    pod.wait_event("unkillable", LONG);
    // The BUSY phase: the application's ping says BUSY; kubelet's probe says alive, not ready.
    let ping = Command::new("redis-cli")
        .args(["-p", &pod.redis_port.to_string(), "ping"])
        .output()
        .expect("redis-cli");
    let ping = String::from_utf8_lossy(&ping.stdout).to_string();
    assert!(ping.contains("BUSY"), "{ping}");
    assert_eq!(status(&pod, "/livez"), 200);
    assert_eq!(status(&pod, "/readyz"), 503);
    pod.wait_event("shutdown_sent", LONG);
    let recovered = pod.wait_event("recovered", LONG);
    assert!(pod.redis_restarts() >= 1, "the pod restarted Redis");
    assert!(recovered["incident"].is_string(), "{recovered}");
    assert!(wait_for(LONG, || status(&pod, "/readyz") == 200));
}

#[test]
#[ignore = "needs podman and the image: scripts/test runs it"]
fn a_pod_deleted_during_a_script_the_policy_spares_stops_redis_cleanly() {
    // A ladder that would leave the script running for an hour: only the pod's stop kills it.
    let policy = "on_busy:\n  kill_after: 1h\n  on_unkillable:\n    wait: 1h\n    then: notify\n";
    let pod = Pod::start(policy, &["--kill-on-stop"], &[]);
    let _caller = eval(&pod, scripts::READ_ONLY_LOOP);
    pod.wait_event("busy_detected", LONG);
    let started = std::time::Instant::now();
    pod.stop(Duration::from_secs(20));
    let took = started.elapsed();
    assert_eq!(
        pod.redis_exit_code(),
        0,
        "Redis acted on its SIGTERM, not SIGKILLed at the end of the grace period"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    let records = pod.records();
    let said = |event: &str| records.iter().any(|r| r["event"] == event);
    assert!(said("kill_sent") && said("operator_command"), "{records:?}");
}
