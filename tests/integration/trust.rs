//! #27: trust no peer. A replica is contacted only when the policy names it (any client allowed
//! REPLCONF can be listed in INFO), a reply is read only up to a bound, the control socket
//! cannot starve the daemon, and what servers say reaches a terminal escaped.

use std::time::Duration;

use crate::support::announced::AnnouncedReplica;
use crate::support::daemon::Daemon;
use crate::support::{self, RedisServer, ServerOptions, wait_for};

const LONG: Duration = Duration::from_secs(30);

/// A "replica" registered by a client (REPLCONF listening-port, PSYNC, ACKs far ahead) that
/// answers as the primary that took over: the primary's INFO lists it online, and before #27
/// busyguard sent it the primary's credentials during the incident, believed its ROLE, lifted
/// the empty-restart guard and shut a primary without persistence down. Now it is never
/// contacted: only the replica the policy lists is watched, the guard holds, and `status`
/// says the announced one is not listed.
#[test]
fn a_replica_announced_by_any_client_is_never_contacted_nor_believed() {
    let primary = RedisServer::start(ServerOptions::default());
    let replica = primary.start_replica(ServerOptions::default());
    primary.fill(100);
    assert!(wait_for(LONG, || replica.holds_keys(100)));
    let announced = AnnouncedReplica::register(&primary);
    assert!(
        wait_for(LONG, || announced.listed_online_by(&primary)),
        "{:?}",
        primary.info("replication")
    );
    // It knows what a real takeover would show: the primary's replication ID.
    assert_eq!(
        Some(&announced.replid),
        primary.info("replication").get("master_replid")
    );
    let policy = primary.policy(
        "orders",
        &(support::ladder("500ms", "shutdown") + "topology:\n" + &RedisServer::listed(&[&replica])),
    );
    let daemon = Daemon::start(&policy, &[]);
    primary.wait_snapshot();
    let status = daemon.status();
    let links = status["replica_links"].as_array().unwrap().clone();
    let listed_of = |port: u16| {
        links
            .iter()
            .find(|l| l["address"] == format!("127.0.0.1:{port}"))
            .map(|l| l["listed"].clone())
    };
    assert_eq!(listed_of(replica.port), Some(true.into()), "{links:?}");
    assert_eq!(
        listed_of(announced.listener.port),
        Some(false.into()),
        "{links:?}"
    );
    let roles_before = replica.command_calls("role");
    let (_caller, withheld) = crate::topology::withheld_as_empty_restart(&daemon, &primary);
    // The watch runs (once a second): the listed replica is asked, twice at least.
    assert!(
        wait_for(LONG, || replica.command_calls("role") >= roles_before + 2),
        "the listed replica is watched"
    );
    assert_eq!(
        announced.listener.connections(),
        0,
        "no connection (and so no credential) to an address INFO announced: {:?}",
        announced.listener.commands()
    );
    assert!(daemon.records_of("role_changed").is_empty());
    assert!(daemon.records_of("shutdown_sent").is_empty());
    assert_eq!(
        daemon.records_of("escalation_withheld")[0]["incident"],
        withheld["incident"]
    );
}

/// A fake server that answers the snapshot's INFO with `info` (fred's own `INFO server` at
/// set-up is answered as usual), and PING with BUSY once the flag it returns is set.
fn hostile_server(
    info: crate::support::fake::Answer,
) -> (
    crate::support::fake::FakeRedis,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use crate::support::fake::{Answer, FakeRedis};
    use std::sync::atomic::{AtomicBool, Ordering};
    let busy = std::sync::Arc::new(AtomicBool::new(false));
    let flag = busy.clone();
    let fake = FakeRedis::start(move |_, words| {
        match words.first()?.to_ascii_uppercase().as_str() {
            "INFO" if words[1..] != ["server"] => Some(info.clone()),
            "PING" if flag.load(Ordering::SeqCst) => Some(Answer::error(
                "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
            )),
            _ => None,
        }
    });
    (fake, busy)
}

fn hostile_policy(fake: &crate::support::fake::FakeRedis) -> String {
    format!(
        "instance: hostile\nredis:\n  url: redis://127.0.0.1:{}\nprobe:\n  interval: 50ms\n  snapshot_every: 1s\n",
        fake.port
    )
}

/// A server (or a proxy on the wrong port) that answers INFO with a bulk string declaring
/// 2 GB and streams it: before #27 busyguard buffered it whole (718 MiB of RSS in 0.8 s, and
/// growing, for every instance the daemon supervises). Now the relay reads one reply up to
/// 4 MiB, drops the connection and records the fault once; the next snapshot waits
/// `probe.snapshot_every` while PINGs go on, and a BUSY is still caught and killed.
#[test]
fn a_reply_without_end_is_read_up_to_its_bound_told_once_and_supervision_goes_on() {
    use crate::support::fake::Answer;
    let (fake, busy) = hostile_server(Answer::Endless("$2000000000\r\n".into()));
    let daemon = Daemon::start(&hostile_policy(&fake), &[]);
    let fault = daemon.wait_event("probe_fault", LONG);
    let reply = fault["detail"]["reply"].as_str().unwrap();
    assert!(reply.contains("passed 4 MiB"), "{fault}");
    // Two more snapshots, each cut the same way (a connection each), and told once only.
    let snapshots = || {
        fake.commands()
            .iter()
            .filter(|(_, c)| c.starts_with("INFO ") && c != "INFO server")
            .count()
    };
    assert!(wait_for(LONG, || snapshots() >= 3), "{:?}", fake.commands());
    assert_eq!(
        daemon.records_of("probe_fault").len(),
        1,
        "{:?}",
        daemon.events()
    );
    assert!(daemon.records_of("server_unreachable").is_empty());
    let peak = support::peak_rss_kib(daemon.pid());
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    // PINGs went on all along: a BUSY reply is caught and killed.
    busy.store(true, std::sync::atomic::Ordering::SeqCst);
    daemon.wait_event("kill_sent", LONG);
    println!(
        "hostile reply: peak RSS {} MiB after {} cut snapshots",
        peak / 1024,
        snapshots()
    );
}

/// #33.5: a peer answers the snapshot's INFO with an array nested 10,000 deep (40 KB, well
/// inside the byte bound). Before, the client's recursive decoder overflowed the stack and the
/// daemon aborted, leaving every instance it supervised unwatched. Now the relay cuts the reply
/// at its depth bound, the fault is told once, and both the hostile instance's PINGs and another
/// instance's kill go on.
#[test]
fn a_deeply_nested_reply_is_cut_and_every_other_instance_keeps_its_kill() {
    use crate::support::fake::Answer;
    let (fake, busy) = hostile_server(Answer::Raw("*1\r\n".repeat(10_000)));
    let server = RedisServer::start(ServerOptions::default());
    let dir = support::state_dir();
    let hostile = dir.path().join("hostile.yaml");
    std::fs::write(&hostile, hostile_policy(&fake)).unwrap();
    let honest = dir.path().join("honest.yaml");
    std::fs::write(&honest, server.policy("honest", "")).unwrap();
    let daemon = Daemon::start_with(dir, &[hostile, honest], &[]);
    let fault = daemon.wait_event("probe_fault", LONG);
    let reply = fault["detail"]["reply"].as_str().unwrap();
    assert!(reply.contains("nested more than 32 levels"), "{fault}");
    server.wait_snapshot();
    support::run_killable_runaway(&server);
    let killed = daemon.wait_event("killed", LONG);
    assert_eq!(killed["instance"], "honest", "{killed}");
    busy.store(true, std::sync::atomic::Ordering::SeqCst);
    daemon
        .wait_record(LONG, |r| {
            r["event"] == "kill_sent" && r["instance"] == "hostile"
        })
        .unwrap_or_else(|| panic!("{:?}", daemon.events()));
    assert_eq!(
        daemon
            .records_of("probe_fault")
            .iter()
            .filter(|r| r["instance"] == "hostile")
            .count(),
        1,
        "told once: {:?}",
        daemon.events()
    );
}

/// With `RLIMIT_NOFILE` at 128, a thousand control connections that never send a request
/// (a user allowed on the socket, a leaking tool): before #27 they took every descriptor,
/// `accept` spun, the probe could not reconnect and a runaway script was never killed. Now at
/// most 32 are served at once, each for 2 s, the rest wait in the kernel's backlog, and the
/// probe reconnects and kills.
#[test]
fn a_thousand_idle_control_connections_under_a_low_descriptor_limit_do_not_stop_a_kill() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let server = RedisServer::start(ServerOptions::default());
    let dir = support::state_dir();
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, server.policy("crowded", "")).unwrap();
    let mut daemon = Daemon::prepare(dir, &[file], &[]);
    daemon.open_files = Some(128);
    daemon.spawn();
    server.wait_snapshot();
    // This test holds a thousand sockets itself.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let socket = std::fs::read_to_string(daemon.dir.path().join("control.path")).unwrap();
    let socket = socket.trim().to_string();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = opened.clone();
    // A thousand held open, each one the daemon closes opened again at once.
    let crowd = std::thread::spawn(move || {
        use std::io::Read;
        let mut idle: Vec<std::os::unix::net::UnixStream> = Vec::new();
        let mut most = 0;
        while stopped.try_recv().is_err() {
            idle.retain(|c| !matches!((&*c).read(&mut [0u8; 1]), Ok(0)));
            while idle.len() < 1000 {
                let Ok(conn) = std::os::unix::net::UnixStream::connect(&socket) else {
                    break;
                };
                conn.set_nonblocking(true).unwrap();
                idle.push(conn);
                most = most.max(idle.len());
                count.store(most, std::sync::atomic::Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        most
    });
    assert!(wait_for(LONG, || opened
        .load(std::sync::atomic::Ordering::SeqCst)
        >= 500));
    // Head-room is left: the control socket holds at most 32 of the daemon's descriptors.
    let in_use = || {
        std::fs::read_dir(format!("/proc/{}/fd", daemon.pid()))
            .unwrap()
            .count()
    };
    let crowded = in_use();
    eprintln!("descriptors in use while crowded: {crowded} of 128");
    assert!(crowded <= 96, "{crowded} of 128 descriptors in use");
    // The probe must open a new connection now (a few descriptors of its own).
    server
        .conn()
        .call(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        .unwrap();
    support::run_killable_runaway(&server);
    let killed = daemon.wait_event("killed", LONG);
    assert_eq!(killed["instance"], "crowded");
    stop.send(()).unwrap();
    assert!(crowd.join().unwrap() >= 500);
}

/// `pause --for 100000years` was accepted (and the trail's `until` was empty): a typo
/// silently disabled busyguard. Now a pause is at most a week, or a year with `--force`.
#[test]
fn a_pause_is_bounded_to_a_week_unless_forced() {
    let server = RedisServer::start(ServerOptions::default());
    let daemon = Daemon::start(&server.policy("bounded", ""), &[]);
    daemon.wait_event("watchdog_started", LONG);
    for (length, says) in [
        ("100000years", "(pass --force for up to a year)"),
        ("30days", "(pass --force for up to a year)"),
    ] {
        let (code, out) = support::busyguard_ctl(&daemon, &["pause", "bounded", "--for", length]);
        assert_ne!(code, 0, "{out}");
        assert!(
            out.contains("is longer than 7days") && out.contains(says),
            "{out}"
        );
    }
    let (code, out) = support::busyguard_ctl(
        &daemon,
        &["pause", "bounded", "--for", "100000years", "--force"],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("is longer than 1year"), "{out}");
    assert!(daemon.records_of("operator_command").is_empty());
    let (code, out) = support::busyguard_ctl(
        &daemon,
        &[
            "pause", "bounded", "--for", "30days", "--force", "--reason", "freeze",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let paused = daemon.wait_event("operator_command", LONG);
    let until = paused["detail"]["until"].as_str().unwrap_or_default();
    assert!(!until.is_empty(), "{paused}");
}

/// Text a server controls (a module's BUSY reply, here with a terminal title and a screen
/// clear in it) reached `audit show` raw; now control characters are shown, not obeyed.
#[test]
fn text_from_a_server_reaches_the_terminal_escaped() {
    use crate::support::fake::{Answer, FakeRedis};
    let hostile = "BUSY Redis is busy running a module command.\x1b]0;pwned\x07\x1b[2J";
    let fake = FakeRedis::start(move |_, words| {
        (words.first()?.eq_ignore_ascii_case("PING")).then(|| Answer::error(hostile))
    });
    let daemon = Daemon::start(&fake.policy("escaped", ""), &[]);
    let detected = daemon.wait_event("busy_detected", LONG);
    assert_eq!(
        detected["detail"]["reply"], hostile,
        "the trail keeps it as said"
    );
    let (code, shown) = support::busyguard(&["audit", "show"], &[&daemon.audit]);
    assert_eq!(code, 0, "{shown}");
    assert!(
        !shown.contains('\x1b') && !shown.contains('\x07'),
        "{shown:?}"
    );
    assert!(shown.contains("\\u{1b}]0;pwned\\u{7}"), "{shown}");
}

/// systemd's `PrivateUsers=yes` maps only root and the service's own user and group. Emulated
/// here with a user namespace that maps root alone: giving the socket to an operators' group
/// fails (EINVAL), which before #27 ended the daemon (and `Restart=on-failure` looped); now it
/// is logged and supervision goes on. A caller whose uid the namespace does not map (seen as
/// 65534) is recorded as unknown, with a warning, never as `nobody`.
#[test]
fn under_a_user_namespace_an_unmapped_group_and_caller_cost_no_supervision() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let probe = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: this host cannot create user namespaces");
        return;
    }
    let server = RedisServer::start(ServerOptions::default());
    let dir = support::state_dir();
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, server.policy("mapped", "")).unwrap();
    let mut daemon = Daemon::prepare(dir, &[file], &[]);
    daemon.wrapper = ["unshare", "--user", "--map-root-user"]
        .map(String::from)
        .to_vec();
    // `adm` (gid 4) exists on Debian and is not mapped in the namespace.
    daemon.env = vec![("BUSYGUARD_CONTROL_GROUP".into(), "adm".into())];
    daemon.spawn();
    server.wait_snapshot();
    assert!(
        daemon
            .stderr()
            .contains("cannot give the socket to group `adm`"),
        "{}",
        daemon.stderr()
    );
    support::run_killable_runaway(&server);
    daemon.wait_event("killed", LONG);
    // A caller outside the namespace (uid 4242, group root so the 0660 socket lets it in).
    let public = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(daemon.dir.path(), public).unwrap();
    let out = std::process::Command::new(support::busyguard_bin())
        .args([
            "pause",
            "mapped",
            "--for",
            "1m",
            "--reason",
            "check",
            "--state-dir",
        ])
        .arg(daemon.dir.path())
        .env("HOME", "/")
        .uid(4242)
        .gid(0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let paused = daemon.wait_event("operator_command", LONG);
    assert_eq!(
        paused["detail"]["by_user"], "unknown (uid 65534)",
        "{paused}"
    );
    assert!(daemon.stderr().contains("recorded as unknown"));
}

/// #34.5: a server that defers ordinary commands while a script runs instead of answering BUSY
/// (Valkey's proposed #3363): the PING hangs, but FUNCTION STATS keeps answering (BUSY for an
/// EVAL). A PING unanswered past the threshold gets a second opinion by FUNCTION STATS on a new
/// connection, which says a script runs: it is a busy script, not a hang, probed with FUNCTION
/// STATS and killed, and the probe goes back to PING once the server is healthy.
#[test]
fn a_server_that_defers_ping_while_busy_is_seen_busy_and_its_script_killed() {
    use crate::support::fake::{Answer, FakeRedis};
    use std::sync::atomic::{AtomicBool, Ordering};
    let busy = std::sync::Arc::new(AtomicBool::new(false));
    let flag = busy.clone();
    let fake = FakeRedis::start(move |_, words| {
        let words: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
        let busy = flag.load(Ordering::SeqCst);
        match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["PING"] if busy => Some(Answer::Silence),
            ["FUNCTION", "STATS"] if busy => Some(Answer::error(
                "BUSY Valkey is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
            )),
            ["FUNCTION", "STATS"] => Some(Answer::Raw(
                "*4\r\n$14\r\nrunning_script\r\n_\r\n$7\r\nengines\r\n*0\r\n".into(),
            )),
            ["SCRIPT", "KILL"] if busy => {
                flag.store(false, Ordering::SeqCst);
                Some(Answer::status("OK"))
            }
            _ => None,
        }
    });
    let daemon = Daemon::start(&fake.policy("deferring", "on_hang:\n  after: 30s\n"), &[]);
    assert!(wait_for(LONG, || fake
        .commands()
        .iter()
        .any(|(_, c)| c.starts_with("CONFIG"))));
    busy.store(true, Ordering::SeqCst);
    let sent = daemon.wait_event("kill_sent", LONG);
    assert_eq!(sent["detail"]["command"], "SCRIPT KILL", "{sent}");
    let recovered = daemon.wait_event("recovered", LONG);
    assert_eq!(recovered["detail"]["how"], "killed", "{recovered}");
    assert!(daemon.records_of("hang_detected").is_empty());
    assert!(
        daemon
            .stderr()
            .contains("probing goes on with FUNCTION STATS")
    );
    // Healthy again: PING is the probe once more.
    let pings = || fake.commands().iter().filter(|(_, c)| c == "PING").count();
    let before = pings();
    assert!(wait_for(LONG, || pings() > before + 2));
}
