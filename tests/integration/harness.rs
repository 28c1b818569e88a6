//! The harness itself against a real redis-server: runaway scripts really make it BUSY, a
//! writing one really is UNKILLABLE, and a function really needs FUNCTION KILL.

use std::time::Duration;

use crate::support;
use crate::support::{Caller, RedisServer, Reply, ServerOptions, scripts};

#[test]
fn read_only_loop_makes_the_server_busy_and_script_kill_ends_it() {
    let server = RedisServer::start(ServerOptions::default());
    let caller = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]);
    let busy = server.wait_busy(Duration::from_secs(10));
    assert!(busy.contains("SCRIPT KILL"), "{busy}");
    assert_eq!(
        server.conn().call(&["SCRIPT", "KILL"]).unwrap(),
        Reply::Status("OK".into())
    );
    let reply = caller.reply().unwrap();
    assert!(reply.killed_by_user(), "{reply:?}");
}

#[test]
fn writing_loop_is_unkillable() {
    let server = RedisServer::start(ServerOptions::default());
    let _caller = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]);
    server.wait_busy(Duration::from_secs(10));
    let reply = server.conn().call(&["SCRIPT", "KILL"]).unwrap();
    assert!(
        reply.error().unwrap().starts_with("UNKILLABLE "),
        "{reply:?}"
    );
}

#[test]
fn busy_fcall_names_function_kill() {
    let server = RedisServer::start(ServerOptions::default());
    let loaded = server
        .conn()
        .call(&["FUNCTION", "LOAD", scripts::SPIN_LIBRARY])
        .unwrap();
    assert_eq!(loaded.text(), Some("busyguard_test"));
    let caller = Caller::start(&server, &["FCALL", "spin", "0"]);
    let busy = server.wait_busy(Duration::from_secs(10));
    assert!(busy.contains("FUNCTION KILL"), "{busy}");
    assert_eq!(
        server.conn().call(&["FUNCTION", "KILL"]).unwrap(),
        Reply::Status("OK".into())
    );
    assert!(caller.reply().unwrap().error().unwrap().contains("killed"));
}

#[test]
fn threshold_is_applied_and_servers_restart_in_place() {
    let mut server = RedisServer::start(ServerOptions {
        threshold_ms: 321,
        ..Default::default()
    });
    let reply = server
        .conn()
        .call(&["CONFIG", "GET", "busy-reply-threshold"])
        .unwrap();
    assert_eq!(
        reply,
        Reply::Array(vec![
            Reply::Bulk(Some("busy-reply-threshold".into())),
            Reply::Bulk(Some("321".into()))
        ])
    );
    let run_id = server.info("server")["run_id"].clone();
    assert_eq!(server.conn().call(&["SHUTDOWN", "NOSAVE"]).ok(), None);
    assert!(server.wait_exit(Duration::from_secs(5)));
    server.spawn().unwrap();
    assert_ne!(server.info("server")["run_id"], run_id);
}

/// The trap the remediation avoids, shown on the real server: with a lagging replica, a plain
/// `SHUTDOWN NOSAVE` during a busy script gets no reply and the server keeps running.
#[test]
fn plain_shutdown_nosave_hangs_behind_a_lagging_replica() {
    let (mut primary, _replica) = support::lagging_replica_pair();
    let _caller = Caller::eval(&primary, scripts::WRITING_LOOP, &["k"], &[]);
    primary.wait_busy(Duration::from_secs(10));
    let mut conn = primary.conn();
    conn.set_read_timeout(Duration::from_millis(1500));
    conn.send(&["SHUTDOWN", "NOSAVE"]).unwrap();
    let err = conn.read().unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err:?}"
    );
    assert!(!primary.exited(), "the server should still be running");
}
