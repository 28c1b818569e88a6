//! The state busyguard keeps, under what hosts do to it: a second copy started by hand,
//! rotation then a restart, a full disk, a deleted trail, a large history, untrustworthy
//! cursors, secret files that never end, receivers that never stop talking.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::http::{Answer, HttpReceiver};
use crate::support::{self, Caller, Daemon, RedisServer, ServerOptions, scripts, wait_for};

const LONG: Duration = Duration::from_secs(20);

fn count(daemon: &Daemon, event: &str) -> usize {
    daemon
        .records()
        .iter()
        .filter(|r| r["event"] == event)
        .count()
}

fn verify(files: &[&Path]) -> (i32, String) {
    support::busyguard(&["audit", "verify"], files)
}

#[test]
fn a_second_daemon_on_the_same_state_dir_refuses_naming_the_first() {
    let server = RedisServer::start(ServerOptions::default());
    let daemon = Daemon::start(&server.policy("locked", ""), &[]);
    daemon.wait_event("watchdog_started", LONG);
    let policy = daemon.dir.path().join("policy.yaml");
    let second = Command::new(support::busyguard_bin())
        .args(["run", "--state-dir"])
        .arg(daemon.dir.path())
        .arg("--policies")
        .arg(&policy)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("in use by busyguard pid {}", daemon.pid())),
        "{stderr}"
    );
    // The first still supervises alone, on one chain.
    support::run_killable_runaway(&server);
    daemon.wait_event("recovered", LONG);
    assert_eq!(server.command_calls("script|kill"), 1);
    assert_eq!(
        count(&daemon, "watchdog_started"),
        2,
        "one daemon, one instance"
    );
    assert_eq!(verify(&[&daemon.audit]).0, 0);
}

/// `max_shutdowns: 1 per 1h`: a shutdown, logrotate (`create` + SIGHUP), a restart, a second
/// unkillable script: the second shutdown is withheld, the first read back from the rotated file.
#[test]
fn limits_survive_rotation_and_a_restart() {
    let mut server = RedisServer::start(ServerOptions::default());
    let mut daemon = Daemon::start(
        &server.policy("rotated", &support::ladder("300ms", "shutdown")),
        &[],
    );
    server.wait_snapshot();
    let _first = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    daemon.wait_event("shutdown_confirmed", LONG);
    assert!(server.wait_exit(Duration::from_secs(5)));
    server.spawn().unwrap();
    daemon.wait_event("recovered", LONG);
    let rotated = daemon.dir.path().join("audit.jsonl.1");
    std::fs::rename(&daemon.audit, &rotated).unwrap();
    daemon.signal(Signal::SIGHUP);
    assert!(wait_for(LONG, || daemon.audit.exists()));
    daemon.stop();
    daemon.spawn();
    daemon.wait_event("watchdog_started", LONG);
    server.wait_snapshot();
    let _second = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    let withheld = daemon.wait_event("escalation_withheld", LONG);
    assert!(
        support::reason(&withheld).starts_with("limits: 1 shutdown(s) already within 1h"),
        "{withheld}"
    );
    assert_eq!(count(&daemon, "shutdown_sent"), 0, "none in the new file");
    assert!(
        server.conn().call(&["PING"]).unwrap().error().is_some(),
        "still up (busy)"
    );
    assert_eq!(verify(&[&rotated, &daemon.audit]).0, 0);
}

/// A small tmpfs, mounted for the test and unmounted however it ends.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::Builder::new()
            .prefix("busyguard-disk-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            mounted,
            "this test mounts a small tmpfs to fill it: run it as root (scripts/test in CI is)"
        );
        SmallDisk { path, _dir: dir }
    }

    /// Write a file until the file system is full (again: it takes what was freed since).
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&filler)
            .unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.write_all(&[0u8; 1]);
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A daemon whose state dir is on `disk`, with `receivers` (YAML list items) and `/metrics`.
fn daemon_on(disk: &SmallDisk, server: &RedisServer, receivers: &str) -> (Daemon, u16) {
    let state = disk.path.join("state");
    std::fs::create_dir(&state).unwrap();
    let policy = state.join("policy.yaml");
    let notify = match receivers {
        "" => String::new(),
        r => format!("notify:\n{r}"),
    };
    std::fs::write(
        &policy,
        server.policy(
            "full",
            &format!("{}{notify}", support::ladder("5s", "shutdown")),
        ),
    )
    .unwrap();
    let port = support::free_port();
    let metrics = format!("127.0.0.1:{port}");
    let mut daemon = Daemon::prepare(
        tempfile::tempdir().unwrap(),
        &[policy],
        &["--metrics", &metrics],
    );
    daemon.set_state_dir(&state);
    daemon.spawn();
    daemon.wait_event("watchdog_started", LONG);
    server.wait_snapshot();
    (daemon, port)
}

/// A full disk: the kill still goes though its record cannot be written; the failure is logged
/// and counted; once space returns the chain verifies and its next record says what was lost.
#[test]
fn a_full_disk_never_stops_a_kill_and_the_chain_verifies_once_space_returns() {
    let disk = SmallDisk::mount("1m");
    let server = RedisServer::start(ServerOptions::default());
    let (daemon, metrics_port) = daemon_on(&disk, &server, "");
    // Full. The first incident may still fit a record or two in the trail's last page (or in
    // one a cut-back record freed): the disk is filled again before each.
    for _ in 0..2 {
        disk.fill();
        support::run_killable_runaway(&server);
    }
    assert_eq!(server.command_calls("script|kill"), 2, "every kill went");
    assert!(wait_for(LONG, || daemon
        .stderr()
        .contains("audit write failed")));
    let failures: f64 = support::http_get(metrics_port, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix("busyguard_trail_write_failures_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        failures >= 2.0,
        "{failures} {:?} {}",
        daemon
            .records()
            .iter()
            .map(|r| r["event"].to_string())
            .collect::<Vec<_>>(),
        daemon.stderr()
    );
    // Space returns: the next record says what was lost, and the chain is whole.
    std::fs::remove_file(disk.path.join("filler")).unwrap();
    support::run_killable_runaway(&server);
    assert!(wait_for(LONG, || {
        daemon
            .records()
            .last()
            .is_some_and(|r| r["event"] == "recovered")
    }));
    let lost: Vec<String> = daemon
        .records()
        .iter()
        .filter(|r| r["event"] == "trail_fault")
        .flat_map(|r| {
            r["detail"]["lost_events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert!(lost.iter().any(|e| e == "kill_sent"), "{lost:?}");
    let (code, out) = verify(&[&daemon.audit]);
    assert_eq!(code, 0, "{out}");
}

/// While the trail cannot be written, receivers are told directly (the trail cannot carry it).
#[test]
fn a_full_disk_is_told_to_receivers_directly() {
    let disk = SmallDisk::mount("1m");
    let server = RedisServer::start(ServerOptions::default());
    let receiver = HttpReceiver::always(200, "");
    let item = format!("  - webhook: {{ url: '{}' }}\n", receiver.url("/hook"));
    let (daemon, _) = daemon_on(&disk, &server, &item);
    disk.fill();
    support::run_killable_runaway(&server);
    let told = |r: &crate::support::http::Request| r.json()["type"] == "busyguard.trail_fault";
    assert!(
        wait_for(LONG, || receiver.requests().iter().any(told)),
        "{:?}",
        daemon.stderr()
    );
    let fault = receiver.requests().into_iter().find(told).unwrap().json();
    assert!(
        fault["data"]["detail"]["error"]
            .as_str()
            .unwrap()
            .contains("No space left"),
        "{fault}"
    );
    assert_eq!(fault["data"]["seq"], 0, "not a record of the trail");
}

/// `rm audit.jsonl` while busyguard runs: noticed at the next record, reopened, and the chain
/// goes on from the deleted file's last record.
#[test]
fn a_deleted_trail_is_noticed_reopened_and_the_chain_goes_on() {
    let server = RedisServer::start(ServerOptions::default());
    let daemon = Daemon::start(&server.policy("deleted", ""), &[]);
    server.wait_snapshot();
    support::run_killable_runaway(&server);
    daemon.wait_event("recovered", LONG);
    let kept = daemon.dir.path().join("kept.jsonl");
    std::fs::copy(&daemon.audit, &kept).unwrap();
    std::fs::remove_file(&daemon.audit).unwrap();
    support::run_killable_runaway(&server);
    assert!(wait_for(LONG, || {
        daemon.records().iter().any(|r| r["event"] == "recovered")
    }));
    let records = daemon.records();
    assert_eq!(records[0]["event"], "trail_fault", "{records:?}");
    assert!(
        records[0]["detail"]["why"]
            .as_str()
            .unwrap()
            .contains("deleted")
    );
    assert_eq!(
        verify(&[&kept, &daemon.audit]).0,
        0,
        "one chain across both"
    );
}

/// Start-up memory does not grow with the trail, and its time stays small: a 64 MB history
/// that never names the instance is read back once, in fixed chunks, passing over the other
/// lines unparsed (an instance's first start must know it has no incident left open, however
/// old the trail); at its next start its own `watchdog_started` ends the reading.
#[test]
fn start_up_memory_and_time_do_not_grow_with_the_trail() {
    let server = RedisServer::start(ServerOptions::default());
    let dir = support::state_dir();
    write_old_history(&dir.path().join("audit.jsonl"), 64 * 1024 * 1024);
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, server.policy("big", "")).unwrap();
    let mut daemon = Daemon::prepare(dir, &[policy], &[]);
    for start in 1..=2 {
        let started = Instant::now();
        daemon.spawn();
        // Seen in the daemon's log: reading the 64 MB trail here would measure the test.
        let line = "event=watchdog_started instance=big";
        assert!(
            wait_for(LONG, || daemon.stderr().matches(line).count() == start),
            "{}",
            daemon.stderr()
        );
        let took = started.elapsed();
        let rss = support::peak_rss_kib(daemon.pid());
        assert!(took < Duration::from_secs(3), "start {start}: {took:?}");
        assert!(
            rss < 48 * 1024,
            "start {start}: peak RSS {rss} KiB with a 64 MB trail"
        );
        daemon.stop();
    }
    assert_eq!(verify(&[&daemon.audit]).0, 0);
}

/// A valid chain of `bytes` worth of records from two weeks ago (what the trail of a busy year
/// looks like to a start: old).
fn write_old_history(path: &Path, bytes: usize) {
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut prev = "0".repeat(64);
    let (mut seq, mut written) = (0u64, 0usize);
    let pad = "x".repeat(400);
    let ts = support::trail::rfc3339(support::trail::now_ms() - 14 * 24 * 3_600_000);
    while written < bytes {
        seq += 1;
        let line = format!(
            r#"{{"ts":"{ts}","seq":{seq},"instance":null,"incident":null,"event":"watchdog_stopped","dry_run":false,"prev":"{prev}","detail":{{"reason":"{pad}"}},"policy":null,"version":"0.1.0"}}"#
        );
        prev = hex::encode(Sha256::digest(line.as_bytes()));
        writeln!(out, "{line}").unwrap();
        written += line.len() + 1;
    }
}

/// Cursors that cannot be right (beyond the trail, garbled) replay recent events instead of
/// silently suppressing or skipping them.
#[test]
fn untrustworthy_cursors_replay_instead_of_skipping() {
    let server = RedisServer::start(ServerOptions::default());
    let receiver = HttpReceiver::always(200, "");
    let policy = server.policy("cursor", &receiver.notify_yaml("/c"));
    let mut daemon = Daemon::start(&policy, &[]);
    server.wait_snapshot();
    support::run_killable_runaway(&server);
    assert!(wait_for(LONG, || receiver.requests().len() >= 4));
    daemon.stop();
    let cursor = daemon.dir.path().join("notify/cursor.0.webhook.cursor");
    for garbage in ["999999\n", "not a number\n"] {
        let before = receiver.requests().len();
        std::fs::write(&cursor, garbage).unwrap();
        daemon.spawn();
        assert!(
            wait_for(LONG, || receiver.requests().len() >= before + 4),
            "replayed after `{garbage}`"
        );
        assert!(daemon.stderr().contains("delivering again"));
        daemon.stop();
    }
}

/// A FIFO as a password file, `/dev/zero` as a secret: refused at once (never read), the
/// running policy kept, supervision never interrupted, and a stop is a stop.
#[test]
fn secret_files_that_never_end_are_refused_and_supervision_goes_on() {
    let server = RedisServer::start(ServerOptions::default());
    let mut daemon = Daemon::start(&server.policy("fifo", ""), &[]);
    server.wait_snapshot();
    let fifo = daemon.dir.path().join("password.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let policy = daemon.dir.path().join("policy.yaml");
    for secret in [fifo.to_str().unwrap(), "/dev/zero"] {
        let text = std::fs::read_to_string(&policy)
            .unwrap()
            .lines()
            .filter(|l| !l.contains("password_file"))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("probe:", &format!("  password_file: {secret}\nprobe:"));
        std::fs::write(&policy, text).unwrap();
        daemon.signal(Signal::SIGHUP);
        let rejected = daemon
            .wait_record(LONG, |r| {
                r["event"] == "policy_rejected"
                    && r["detail"]["errors"].to_string().contains(secret)
            })
            .expect("the reload is rejected");
        assert!(
            rejected["detail"]["errors"]
                .to_string()
                .contains("not a regular file"),
            "{rejected}"
        );
    }
    // The kept policy still supervises, in time.
    let (reply, took) = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]).reply_timed();
    assert!(reply.unwrap().killed_by_user());
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(
        support::peak_rss_kib(daemon.pid()) < 64 * 1024,
        "`/dev/zero` was never read"
    );
    let stopping = Instant::now();
    assert!(daemon.stop().success());
    assert!(stopping.elapsed() < Duration::from_secs(5));
}

/// A receiver that answers 200 and then never stops sending: the notification counts as
/// delivered once, and busyguard reads a few KB of it, not gigabytes.
#[test]
fn a_receiver_with_an_endless_body_is_delivered_once_and_costs_no_memory() {
    let server = RedisServer::start(ServerOptions::default());
    let receiver = HttpReceiver::start(|_, _| Answer::Endless(200));
    let policy = server.policy(
        "endless",
        &format!(
            "notify:\n  - webhook: {{ url: '{}', events: [busy_detected] }}\n",
            receiver.url("/e")
        ),
    );
    let daemon = Daemon::start(&policy, &[]);
    server.wait_snapshot();
    support::run_killable_runaway(&server);
    assert!(wait_for(LONG, || daemon
        .stderr()
        .contains("notification delivered")));
    daemon.wait_event("recovered", LONG);
    assert_eq!(receiver.requests().len(), 1, "a 2xx is a success: no retry");
    assert!(support::peak_rss_kib(daemon.pid()) < 64 * 1024);
}

/// A burst of reloads (each reopening the trail and re-reading the policies) while a killable
/// script runs: none of it is on a watchdog's path, so the kill still lands at the threshold.
#[test]
fn a_burst_of_reloads_never_delays_a_kill() {
    let server = RedisServer::start(ServerOptions::default());
    let dir = support::state_dir();
    write_old_history(&dir.path().join("audit.jsonl"), 16 * 1024 * 1024);
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, server.policy("burst", "")).unwrap();
    let daemon = Daemon::start_with(dir, &[policy], &[]);
    server.wait_snapshot();
    let caller = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]);
    let started = Instant::now();
    while !caller.is_finished() && started.elapsed() < Duration::from_secs(5) {
        daemon.signal(Signal::SIGHUP);
        std::thread::sleep(Duration::from_millis(5));
    }
    let (reply, took) = caller.reply_timed();
    assert!(reply.unwrap().killed_by_user());
    assert!(took < Duration::from_secs(1), "{took:?} at threshold 200ms");
    daemon.wait_event("recovered", LONG);
    assert_eq!(verify(&[&daemon.audit]).0, 0);
}

/// The first lines of a real trail, up to its first `unkillable`: an incident in flight when
/// busyguard stopped.
fn unkillable_in_flight() -> (Vec<String>, serde_json::Value) {
    let fixture = std::fs::read_to_string(
        "tests/fixtures/trails/past_the_budget_an_unkillable_script_ends_in_a_shutdown_and_limits_withhold_the_next.jsonl",
    )
    .unwrap();
    let lines: Vec<String> = fixture.lines().take(6).map(str::to_string).collect();
    let last: serde_json::Value = serde_json::from_str(&lines[5]).unwrap();
    assert_eq!(last["event"], "unkillable");
    (lines, last["incident"].clone())
}

/// Busyguard stopped mid-incident and came back ten days later (a maintenance window, a long
/// outage, an upgrade on a stopped unit): the old incident is found, the healthy server ends it
/// under its id, and its page is resolved, whatever the date.
#[test]
fn an_incident_left_open_days_before_busyguard_came_back_is_closed_under_its_id() {
    let (lines, incident) = unkillable_in_flight();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let ten_days_ago = support::trail::now_ms() - 10 * 24 * 3_600_000;
    let server = RedisServer::start(ServerOptions::default());
    let pd = HttpReceiver::always(202, "{}");
    let dir = support::state_dir();
    support::trail::write(
        &dir.path().join("audit.jsonl"),
        &support::trail::moved_to(&lines, ten_days_ago),
    );
    std::fs::write(
        dir.path().join("pd.key"),
        "R0UT1NGKEY00000000000000000000AB\n",
    )
    .unwrap();
    let receivers = format!(
        "notify:\n  - pagerduty: {{ routing_key_file: {}/pd.key, events_url: '{}' }}\n",
        dir.path().display(),
        pd.url("/v2/enqueue")
    );
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, server.policy("past", &receivers)).unwrap();
    let daemon = Daemon::start_with(dir, &[policy], &[]);
    let started = daemon
        .wait_record(LONG, |r| {
            r["event"] == "watchdog_started"
                && r["instance"] == "past"
                && r["seq"].as_u64() > Some(6)
        })
        .unwrap();
    assert_eq!(started["detail"]["resumed_incident"], incident);
    let recovered = daemon.wait_event("recovered", LONG);
    assert_eq!(recovered["incident"], incident);
    assert_eq!(recovered["detail"]["restarted"], true, "{recovered}");
    // What PagerDuty was told of it is resolved (its dedup key is the incident's id).
    let resolved = || {
        pd.requests().iter().any(|r| {
            let body = r.json();
            body["event_action"] == "resolve" && body["dedup_key"] == incident
        })
    };
    assert!(wait_for(LONG, resolved), "{:?}", pd.requests());
    assert_eq!(verify(&[&daemon.audit]).0, 0);
}

/// A pause made three days ago for five is still in force when busyguard comes back: the
/// runaway is not killed, `ps` says who paused it, and the new start carries it on.
#[test]
fn a_pause_made_days_ago_for_longer_holds_after_a_restart() {
    let server = RedisServer::start(ServerOptions::default());
    let dir = support::state_dir();
    let day = 24 * 3_600_000;
    let made = support::trail::now_ms() - 3 * day;
    let pause = support::trail::pause_record(1, "paused", made, Duration::from_millis(5 * day));
    support::trail::write(
        &dir.path().join("audit.jsonl"),
        &support::trail::chained(vec![pause]),
    );
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, server.policy("paused", "")).unwrap();
    let daemon = Daemon::start_with(dir, &[policy], &[]);
    let started = daemon
        .wait_record(LONG, |r| {
            r["event"] == "watchdog_started" && r["instance"] == "paused"
        })
        .unwrap();
    assert_eq!(
        started["detail"]["carried"]["pause"]["by"], "ops",
        "{started}"
    );
    server.wait_snapshot();
    let runaway = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]);
    let withheld = daemon.wait_event("escalation_withheld", LONG);
    assert_eq!(withheld["detail"]["withheld_action"], "kill");
    assert!(
        support::reason(&withheld).starts_with("paused by ops until"),
        "{withheld}"
    );
    assert!(!runaway.is_finished(), "still paused");
    assert!(daemon.records_of("kill_sent").is_empty());
}
