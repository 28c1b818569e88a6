//! The health endpoints beside `/metrics`, for Kubernetes' probes, against real servers: a busy
//! server is alive (busyguard handles it) and not ready, one that answers nothing (stopped,
//! killed) is dead once `on_hang.after` has passed, and busyguard's own `/healthz`.

use std::time::Duration;

use crate::support::http_status as get;
use crate::support::{self, Caller, Daemon, RedisServer, ServerOptions, scripts, wait_for};
use nix::sys::signal::Signal;

const LONG: Duration = Duration::from_secs(20);

#[test]
fn a_busy_server_is_alive_and_not_ready_and_a_silent_one_is_dead() {
    let busy = RedisServer::start(ServerOptions::default());
    let mut stopped = RedisServer::start(ServerOptions::default());
    let dir = support::state_dir();
    let ladder = "on_busy:\n  kill_after: 0s\n  on_unkillable:\n    wait: 1h\n    then: notify\non_hang:\n  after: 1s\n";
    let files: Vec<_> = [("busy", &busy), ("stopped", &stopped)]
        .iter()
        .map(|(name, server)| {
            let file = dir.path().join(format!("{name}.yaml"));
            std::fs::write(&file, server.policy(name, ladder)).unwrap();
            file
        })
        .collect();
    let port = support::free_port();
    let daemon = Daemon::start_with(dir, &files, &["--metrics", &format!("127.0.0.1:{port}")]);
    busy.wait_snapshot();
    stopped.wait_snapshot();
    for path in ["/livez/busy", "/readyz/busy", "/livez/stopped", "/healthz"] {
        assert!(
            wait_for(LONG, || get(port, path).0 == 200),
            "{path}: {:?}",
            get(port, path)
        );
    }
    // Two instances: a bare probe must name one.
    let (code, body) = get(port, "/livez");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("busy, stopped"), "{body}");
    assert_eq!(get(port, "/livez/nobody").0, 404);

    // An unkillable script under `then: notify`: the server answers BUSY to everyone (as
    // `redis-cli ping` would see it), and busyguard's /livez says alive, /readyz not ready.
    let _writer = Caller::eval(&busy, scripts::WRITING_LOOP, &["k"], &[]);
    daemon.wait_event("unkillable", LONG);
    let ping = busy.conn().call(&["PING"]);
    assert!(
        format!("{ping:?}").contains("BUSY"),
        "the server itself answers BUSY: {ping:?}"
    );
    let (code, body) = get(port, "/livez/busy");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("busy for") && body.contains("policy"),
        "{body}"
    );
    let (code, body) = get(port, "/readyz/busy");
    assert_eq!(code, 503, "{body}");

    // A server that answers nothing (SIGSTOP: no reply, no BUSY) is dead past on_hang.after.
    stopped.signal(Signal::SIGSTOP);
    assert!(
        wait_for(LONG, || get(port, "/livez/stopped").0 == 503),
        "{:?}",
        get(port, "/livez/stopped")
    );
    assert!(
        get(port, "/livez/stopped")
            .1
            .contains("no reply and no BUSY")
    );
    assert_eq!(get(port, "/livez/busy").0, 200, "the other is alive");
    stopped.signal(Signal::SIGCONT);
    assert!(wait_for(LONG, || get(port, "/livez/stopped").0 == 200));
    // Killed: unreachable, dead once on_hang.after has passed.
    stopped.signal(Signal::SIGKILL);
    assert!(stopped.wait_exit(Duration::from_secs(5)));
    daemon.wait_event("unreachable", LONG);
    assert!(
        wait_for(LONG, || get(port, "/livez/stopped").0 == 503),
        "{:?}",
        get(port, "/livez/stopped")
    );
    assert_eq!(get(port, "/healthz").0, 200, "busyguard itself is fine");
    assert_eq!(get(port, "/nothing").0, 404);
}
