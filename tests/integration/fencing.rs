//! #26: one writable primary. Sentinel's word is checked before it is believed (a restarted
//! primary is named by its old run id for up to 10 s), and an old primary that answers as a
//! primary after its failover (its script ended in the race, or its supervisor restarted it)
//! is fenced at once with `REPLICAOF` the new primary. Real redis-sentinel and servers.

use std::time::Duration;

use serde_json::Value;

use crate::support::sentinel::{self, Sentinel};
use crate::support::{self, Caller, Daemon, RedisServer, ServerOptions, scripts, wait_for};

const LONG: Duration = Duration::from_secs(30);

/// The policy of a Sentinel-watched primary, the failover user's rights included.
fn policy(primary: &RedisServer, replica: &RedisServer, sentinel: &Sentinel, wait: &str) -> String {
    primary.policy(
        "orders",
        &format!(
            "{}topology:\n{}  sentinel:\n    master: m\n    urls: [{}]\n",
            support::ladder(wait, "failover"),
            RedisServer::listed(&[replica]),
            sentinel.url()
        ),
    )
}

/// The split brain fenced toward `replica` (recorded after `after`, a seq), and the
/// `recovered` that ends it, once `primary` is a replica.
fn fenced_toward(
    daemon: &Daemon,
    primary: &RedisServer,
    replica: &RedisServer,
    after: u64,
) -> (Value, Value) {
    let split = daemon
        .wait_record(LONG, |r| {
            r["event"] == "split_brain" && r["seq"].as_u64() > Some(after)
        })
        .unwrap_or_else(|| panic!("{:?}", daemon.events()));
    assert_eq!(
        split["detail"]["fence"],
        format!("REPLICAOF 127.0.0.1 {}", replica.port),
        "{split}"
    );
    let recovered = daemon
        .wait_record(LONG, |r| {
            r["event"] == "recovered" && r["incident"] == split["incident"]
        })
        .unwrap();
    assert_eq!(
        recovered["detail"]["how"], "fenced as a replica",
        "{recovered}"
    );
    assert!(wait_for(LONG, || role(primary).as_deref() == Some("slave")));
    (split, recovered)
}

fn role(server: &RedisServer) -> Option<String> {
    server.info("replication").get("role").cloned()
}

fn ms(record: &Value) -> u64 {
    crate::support::trail::ms_of(record["ts"].as_str().unwrap())
}

/// #26.1 and #33: the primary restarts (a crash, a deploy) just before an incident; every
/// sentinel still names it by its old run id at its own address. That is no failover seen (no
/// `role_changed`), and at the end of the budget the request path reads it as what it is, this
/// server under a stale run id: a real failover is asked for, the replica promoted and verified,
/// and the old primary ended. Before #33 the request path took the stale run id for a failover
/// done, shut the primary down, and at its return fenced it with `REPLICAOF` its own address.
#[test]
fn a_stale_run_id_in_the_request_path_leads_to_a_real_failover_never_a_self_fence() {
    let mut primary = RedisServer::start(ServerOptions::default());
    let replica = primary.start_replica(ServerOptions::default());
    let sentinel = Sentinel::start(&primary, 60_000);
    assert!(wait_for(LONG, || sentinel.field("num-slaves").as_deref()
        == Some("1")));
    let old_run = sentinel.field("runid").unwrap();
    primary.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(primary.wait_exit(LONG));
    primary.spawn().unwrap();
    primary.wait_replica_online(&replica);
    let daemon = Daemon::start(&policy(&primary, &replica, &sentinel, "500ms"), &[]);
    primary.wait_snapshot();
    assert_eq!(
        sentinel.field("runid").as_deref(),
        Some(old_run.as_str()),
        "still stale"
    );
    let _writer = Caller::eval(&primary, scripts::WRITING_LOOP, &["k"], &[]);
    let requested = daemon.wait_event("failover_requested", LONG);
    let completed = daemon.wait_event("failover_completed", LONG);
    assert_eq!(
        completed["detail"]["new_primary"],
        format!("127.0.0.1:{}", replica.port),
        "{completed}"
    );
    assert!(
        daemon
            .records_of("role_changed")
            .iter()
            .all(|r| r["seq"].as_u64() > requested["seq"].as_u64()),
        "the stale view was no failover: {:?}",
        daemon.events()
    );
    assert!(wait_for(LONG, || role(&replica).as_deref() == Some("master")));
    daemon.wait_event("shutdown_confirmed", LONG);
    assert!(
        daemon.records_of("split_brain").is_empty(),
        "{:?}",
        daemon.events()
    );
}

/// #33.1: while a script is unkillable, the Sentinel group that named this primary is
/// re-pointed to another server (an operator's migration reusing the name; anyone who reaches
/// an unauthenticated sentinel can do it). Even listed in `topology.replicas`, that server
/// never took over from this one (its history is another's): nothing Sentinel says is acted
/// on, the fault is recorded, and under `then: notify` nothing at all is sent. Before #33
/// busyguard took the group's word for a failover and fenced the primary toward it: 1000 keys
/// replaced by the other server's 5.
#[test]
fn a_repointed_sentinel_group_fences_nothing_and_under_notify_sends_nothing() {
    let primary = RedisServer::start(ServerOptions::default());
    let replica = primary.start_replica(ServerOptions::default());
    primary.fill(1000);
    let other = RedisServer::start(ServerOptions::default());
    other.fill(5);
    let sentinel = Sentinel::start(&primary, 60_000);
    assert!(wait_for(LONG, || sentinel.field("num-slaves").as_deref()
        == Some("1")));
    let policy = primary.policy(
        "orders",
        &format!(
            "{}topology:\n{}  sentinel:\n    master: m\n    urls: [{}]\n",
            support::ladder("500ms", "notify"),
            RedisServer::listed(&[&replica, &other]),
            sentinel.url()
        ),
    );
    let daemon = Daemon::start(&policy, &[]);
    primary.wait_snapshot();
    // The feed has seen the group name this server.
    assert!(wait_for(LONG, || sentinel.asked_by_another_client()));
    let writer = Caller::eval(&primary, scripts::WRITE_THEN_SPIN_MS, &["k"], &["4000"]);
    daemon.wait_event("unkillable", LONG);
    sentinel.serve(&other);
    let fault = daemon
        .wait_record(LONG, |r| {
            r["event"] == "probe_fault"
                && r["detail"]["reply"]
                    .as_str()
                    .is_some_and(|t| t.contains("did not take over"))
        })
        .unwrap_or_else(|| panic!("{:?}", daemon.events()));
    assert!(
        fault["detail"]["reply"]
            .as_str()
            .unwrap()
            .contains("never replicated"),
        "{fault}"
    );
    assert_eq!(writer.reply().unwrap().text(), Some("done"));
    daemon.wait_event("recovered", LONG);
    for event in ["role_changed", "split_brain", "shutdown_sent"] {
        assert!(
            daemon.records_of(event).is_empty(),
            "{event}: {:?}",
            daemon.events()
        );
    }
    assert_eq!(role(&primary).as_deref(), Some("master"));
    assert!(primary.holds_keys(1001), "the primary kept its data");
    assert_eq!(primary.command_calls("replicaof"), 0);
}

/// #26.2: the old primary answers as a primary again after its failover, its script ended by
/// itself (here: its zombie's shutdown is refused, the busyguard user has no `+shutdown`, so the
/// script ends before anything else can end it; in the field, it ends in the race with the
/// next BUSY reply): two writable primaries. busyguard fences it at once: a replica of the new
/// primary, and the trail says so.
#[test]
fn an_old_primary_whose_script_ended_after_the_failover_is_fenced() {
    let primary = RedisServer::start(ServerOptions::default());
    let replica = primary.start_replica(ServerOptions::default());
    let sentinel = Sentinel::start(&primary, 60_000);
    assert!(wait_for(LONG, || sentinel.field("num-slaves").as_deref()
        == Some("1")));
    for node in [&primary, &replica] {
        support::add_busyguard_user(node, "s3cret", &["+shutdown"]);
        let mut args = vec!["ACL", "SETUSER", "busyguard"];
        args.extend(support::FAILOVER_RIGHTS);
        node.conn().call(&args).unwrap();
    }
    let secrets = tempfile::tempdir().unwrap();
    let password = secrets.path().join("password");
    std::fs::write(&password, "s3cret").unwrap();
    let policy = policy(&primary, &replica, &sentinel, "500ms").replace(
        "\nprobe:",
        &format!(
            "\n  username: busyguard\n  password_file: {}\nprobe:",
            password.display()
        ),
    );
    let daemon = Daemon::start(&policy, &[]);
    primary.wait_snapshot();
    let writer = Caller::eval(&primary, scripts::WRITE_THEN_SPIN_MS, &["k"], &["3000"]);
    let completed = daemon.wait_event("failover_completed", LONG);
    assert_eq!(writer.reply().unwrap().text(), Some("done"));
    let (split, recovered) = fenced_toward(&daemon, &primary, &replica, 0);
    assert_eq!(role(&replica).as_deref(), Some("master"));
    // From the old primary's first healthy reply (the fence's record) to the fence's answer.
    let fenced_in = ms(&recovered).saturating_sub(ms(&split));
    println!(
        "fenced {fenced_in} ms after it answered as a primary (promotion seen {} ms before)",
        ms(&split).saturating_sub(ms(&completed))
    );
}

/// #26.3: after busyguard's failover and shutdown, a supervisor starts the old primary again
/// from its own redis.conf (no `replicaof`): a writable primary beside the new one. busyguard
/// fences it as soon as it answers.
#[test]
fn an_old_primary_restarted_by_its_supervisor_is_fenced() {
    let mut primary = RedisServer::start(ServerOptions::default());
    let replica = primary.start_replica(ServerOptions::default());
    let sentinel = Sentinel::start(&primary, 60_000);
    assert!(wait_for(LONG, || sentinel.field("num-slaves").as_deref()
        == Some("1")));
    let daemon = Daemon::start(
        &format!(
            "{}{}",
            policy(&primary, &replica, &sentinel, "500ms"),
            support::ACCEPT_EMPTY_RESTART
        ),
        &[],
    );
    primary.wait_snapshot();
    let _writer = Caller::eval(&primary, scripts::WRITING_LOOP, &["k"], &[]);
    daemon.wait_event("shutdown_confirmed", LONG);
    assert!(primary.wait_exit(LONG));
    // Debian's Restart=always: the same redis.conf, a primary again.
    primary.spawn().unwrap();
    let split = daemon.wait_event("split_brain", LONG);
    assert!(
        split["detail"]["why"]
            .as_str()
            .unwrap()
            .contains("came back after its shutdown"),
        "{split}"
    );
    assert!(wait_for(LONG, || role(&primary).as_deref() == Some("slave")));
    assert_eq!(role(&replica).as_deref(), Some("master"));
}

/// #26.5: the same sentinel listed twice (or as `localhost` and `127.0.0.1`) would count twice
/// toward "more than half": `check` refuses it, naming the line.
#[test]
fn the_same_sentinel_twice_is_a_policy_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("twice.yaml");
    std::fs::write(
        &file,
        "instance: twice\nredis:\n  url: redis://127.0.0.1:6379\non_busy:\n  on_unkillable:\n    then: failover\ntopology:\n  sentinel:\n    master: m\n    urls:\n      - redis://localhost:26379\n      - redis://127.0.0.1:26379\n",
    )
    .unwrap();
    let (code, out) = support::busyguard(&["check"], &[&file]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("twice.yaml:12:9"), "{out}");
    assert!(out.contains("the same sentinel as urls[0]"), "{out}");
}

/// #33.3: Sentinel fails a busy primary over on its own (down-after 1 s) while busyguard's budget
/// is long; busyguard verifies the takeover (`role_changed`) and is then restarted (an upgrade, a
/// crash) before the script ends. When the script ends, the old primary answers as a primary
/// beside the new one: the restarted busyguard fences it at once, without waiting for a healthy
/// snapshot. Before #33 the takeover was not carried over, the feed waited for a snapshot a busy
/// server never gives, and the old primary took writes for about 10 s, until Sentinel's
/// reconfiguration.
#[test]
fn a_restart_between_the_promotion_and_the_scripts_end_still_fences_the_old_primary() {
    let (primary, replica, sentinel) = sentinel::watched_pair(1000);
    let mut daemon = Daemon::start(&policy(&primary, &replica, &sentinel, "60s"), &[]);
    primary.wait_snapshot();
    // Sentinel takes some 13 s to fail a busy primary over (down after 1 s, then its own
    // failover's steps): the script outlives it.
    let writer = Caller::eval(&primary, scripts::WRITE_THEN_SPIN_MS, &["k"], &["20000"]);
    let changed = daemon.wait_event("role_changed", LONG);
    assert_eq!(
        changed["detail"]["primary"],
        format!("127.0.0.1:{}", replica.port),
        "{changed}"
    );
    daemon.kill9();
    daemon.spawn();
    assert_eq!(writer.reply().unwrap().text(), Some("done"));
    let ended = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let after = changed["seq"].as_u64().unwrap();
    let (_, recovered) = fenced_toward(&daemon, &primary, &replica, after);
    let fenced_in = ms(&recovered).saturating_sub(ended);
    println!("fenced {fenced_in} ms after the script's end, busyguard restarted in between");
    assert!(fenced_in < 3_000, "{fenced_in} ms");
}
