//! busyguard beside Redis in a pod being deleted (`run --kill-on-stop`), against real servers:
//! kubelet's preStop call kills a script the policy would have left running, so Redis can act
//! on its SIGTERM; busyguard's own SIGTERM does the same before it stops; without the flag
//! neither touches a script.

use std::time::Duration;

use crate::support::http_status as get;
use crate::support::{self, Caller, Daemon, RedisServer, ServerOptions, scripts};
use nix::sys::signal::Signal;

const LONG: Duration = Duration::from_secs(20);

/// A ladder that would leave the script running for an hour: only the pod's stop kills it.
const PATIENT: &str =
    "on_busy:\n  kill_after: 1h\n  on_unkillable:\n    wait: 1h\n    then: notify\n";

/// The daemon beside `server`, its metrics listener's port, with `extra` flags.
fn beside(server: &RedisServer, extra: &[&str]) -> (Daemon, u16) {
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["--metrics", listen.as_str()];
    args.extend_from_slice(extra);
    let daemon = Daemon::start(&server.policy("cache", PATIENT), &args);
    server.wait_snapshot();
    (daemon, port)
}

fn script_killed(caller: Caller) -> String {
    format!("{:?}", caller.reply())
}

#[test]
fn the_prestop_call_kills_a_script_the_policy_would_leave_running() {
    let server = RedisServer::start(ServerOptions::default());
    let (daemon, port) = beside(&server, &["--kill-on-stop"]);
    let caller = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]);
    daemon.wait_event("busy_detected", LONG);
    assert!(daemon.records_of("kill_sent").is_empty(), "kill_after: 1h");

    let (code, body) = get(port, "/prestop");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("stopping applied"), "{body}");
    assert!(body.contains("cache: no script runs"), "{body}");
    let told = daemon.wait_event("operator_command", LONG);
    assert_eq!(told["detail"]["command"], "stopping", "{told}");
    assert!(
        told["detail"]["by_user"]
            .as_str()
            .unwrap()
            .starts_with("preStop (HTTP from 127.0.0.1)"),
        "{told}"
    );
    assert_eq!(daemon.records_of("kill_sent").len(), 1);
    let reply = script_killed(caller);
    assert!(reply.contains("Script killed"), "{reply}");
    // The server is left to kubelet: busyguard only killed the script.
    assert_eq!(server.conn().call(&["PING"]).unwrap().text(), Some("PONG"));
}

#[test]
fn busyguards_sigterm_kills_the_script_so_redis_acts_on_its_own() {
    let mut server = RedisServer::start(ServerOptions::default());
    let (mut daemon, _) = beside(&server, &["--kill-on-stop"]);
    let caller = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]);
    daemon.wait_event("busy_detected", LONG);
    // kubelet's SIGTERM to Redis is deferred while the script runs.
    server.signal(Signal::SIGTERM);
    let ping = server.conn().call(&["PING"]);
    assert!(format!("{ping:?}").contains("BUSY"), "{ping:?}");

    assert!(daemon.stop().success());
    assert!(
        server.wait_exit(LONG),
        "Redis acted on its SIGTERM once the script was killed"
    );
    // The caller's error may not leave before the server exits: its connection just ends.
    let reply = script_killed(caller);
    assert!(
        reply.contains("Script killed") || reply.contains("UnexpectedEof"),
        "{reply}"
    );
    let events = daemon.events();
    let kill = events.iter().position(|e| e == "kill_sent");
    let stopped = events.iter().rposition(|e| e == "watchdog_stopped");
    assert!(kill.is_some() && kill < stopped, "{events:?}");
}

#[test]
fn without_kill_on_stop_neither_the_stop_nor_prestop_touches_a_script() {
    let server = RedisServer::start(ServerOptions::default());
    let (mut daemon, port) = beside(&server, &[]);
    let caller = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]);
    daemon.wait_event("busy_detected", LONG);
    assert_eq!(get(port, "/prestop").0, 404);
    assert!(daemon.stop().success());
    assert!(daemon.records_of("kill_sent").is_empty());
    assert!(!caller.is_finished(), "the script still runs");
    // End it for the server's own stop.
    let killed = server.conn().call(&["SCRIPT", "KILL"]);
    assert!(format!("{killed:?}").contains("OK"), "{killed:?}");
    assert!(script_killed(caller).contains("Script killed"));
}
