//! Replicas and Sentinel as `status` sees them: a real primary, its replica and a real
//! redis-sentinel. What Sentinel says is compared with the server busyguard watches (by run id)
//! and with the policy's timing.

use std::time::Duration;

use crate::support::cluster::Cluster;
use crate::support::sentinel::Sentinel;
use crate::support::{self, Daemon, RedisServer, ServerOptions, wait_for};

const LONG: Duration = Duration::from_secs(20);

/// A policy for `server` with `on_busy` (a [`support::ladder`], and any `on_unkillable` keys
/// after it), its `replicas` listed, and the sentinels at `urls` watching it as `m`.
fn sentinel_policy(
    server: &RedisServer,
    replicas: &[&RedisServer],
    urls: &[String],
    on_busy: &str,
) -> String {
    server.policy(
        "orders",
        &format!(
            "{on_busy}topology:\n{}  sentinel:\n    master: m\n    urls: [{}]\n",
            RedisServer::listed(replicas),
            urls.join(", ")
        ),
    )
}

#[test]
fn status_shows_sentinels_view_its_timing_and_when_sentinel_serves_another_primary() {
    let primary = RedisServer::start(ServerOptions::default());
    let replica = primary.start_replica(ServerOptions::default());
    let sentinel = Sentinel::start(&primary, 1000);
    let url = sentinel.url();
    let away = format!("redis://127.0.0.1:{}", support::free_port());
    let daemon = Daemon::start(
        &sentinel_policy(
            &primary,
            &[&replica],
            &[url.clone(), away.clone()],
            &support::ladder("5s", "notify"),
        ),
        &[],
    );
    primary.wait_snapshot();

    let status = daemon.status();
    let view = &status["sentinel"][0];
    assert_eq!(view["is_this_server"], true, "{status}");
    assert_eq!(view["address"], format!("127.0.0.1:{}", primary.port));
    assert_eq!(view["quorum"], 1);
    assert_eq!(view["down_after_ms"], 1000);
    assert!(status["sentinel"][1]["error"].is_string(), "{status}");
    let warnings = status["warnings"].to_string();
    assert!(
        warnings.contains("marks a busy primary down after 1000 ms"),
        "{warnings}"
    );
    assert!(warnings.contains(&format!("sentinel {away}")), "{warnings}");
    let human = daemon.status_text();
    assert!(
        human.contains(&format!(
            "sentinel {url}: `m` is 127.0.0.1:{} (this server",
            primary.port
        )),
        "{human}"
    );

    // Sentinel now serves another server as `m` (as after a failover that promoted the
    // replica): the server busyguard watches is no longer the primary clients are sent to.
    sentinel.serve(&replica);
    let status = daemon.status();
    assert_eq!(status["sentinel"][0]["is_this_server"], false, "{status}");
    assert!(
        status["warnings"]
            .to_string()
            .contains("no longer the primary Sentinel serves"),
        "{status}"
    );
}

/// #14: Sentinel fails a busy primary over on its own (down-after 1 s). busyguard had withheld
/// the shutdown (a primary with a replica and no persistence); once Sentinel serves the replica,
/// `role_changed` is recorded and the zombie is shut down at the next BUSY reply. The new primary
/// has the data.
#[test]
fn after_sentinel_fails_a_busy_primary_over_busyguard_ends_the_zombie() {
    let (mut primary, replica, sentinel) = crate::support::sentinel::watched_pair(1000);
    let policy = sentinel_policy(
        &primary,
        &[&replica],
        &[sentinel.url()],
        &support::ladder("500ms", "shutdown"),
    );
    let daemon = Daemon::start(&policy, &[]);
    primary.wait_snapshot();
    let (_caller, withheld) = withheld_as_empty_restart(&daemon, &primary);
    zombie_ended(&daemon, &withheld, &mut primary, &replica, "sentinel");
    assert_eq!(
        replica.info("replication").get("role").map(String::as_str),
        Some("master")
    );
}

/// Run an unkillable script on a replicated primary without persistence: the shutdown past
/// the budget is withheld by the empty-restart guard. The caller (to keep) and the record.
pub fn withheld_as_empty_restart(
    daemon: &Daemon,
    primary: &RedisServer,
) -> (crate::support::Caller, serde_json::Value) {
    let caller =
        crate::support::Caller::eval(primary, crate::support::scripts::WRITING_LOOP, &["k"], &[]);
    let withheld = daemon.wait_event("escalation_withheld", LONG);
    assert!(
        support::reason(&withheld).starts_with("guards.allow_empty_restart"),
        "{withheld}"
    );
    (caller, withheld)
}

/// After `withheld`: `role_changed` (told `by`) names the replica, the zombie is shut down in
/// the same incident, and the new primary holds the data.
fn zombie_ended(
    daemon: &Daemon,
    withheld: &serde_json::Value,
    primary: &mut RedisServer,
    replica: &RedisServer,
    by: &str,
) {
    let changed = daemon.wait_event("role_changed", Duration::from_secs(40));
    assert_eq!(changed["detail"]["by"], by, "{changed}");
    assert_eq!(
        changed["detail"]["primary"],
        format!("127.0.0.1:{}", replica.port),
        "{changed}"
    );
    assert_eq!(
        changed["detail"]["primary_run_id"].as_str(),
        replica.info("server").get("run_id").map(String::as_str)
    );
    let confirmed = daemon.wait_event("shutdown_confirmed", LONG);
    assert_eq!(confirmed["incident"], withheld["incident"]);
    assert!(
        primary.wait_exit(Duration::from_secs(5)),
        "the zombie is gone"
    );
    assert!(replica.holds_keys(100), "the new primary has the data");
}

/// busyguard on `primary` with `then: failover` through `sentinel`, budget 500 ms, once it has
/// its healthy snapshot.
fn failover_daemon(primary: &RedisServer, replica: &RedisServer, sentinel: &Sentinel) -> Daemon {
    let policy = sentinel_policy(
        primary,
        &[replica],
        &[sentinel.url()],
        &support::ladder("500ms", "failover"),
    );
    let daemon = Daemon::start(&policy, &[]);
    primary.wait_snapshot();
    daemon
}

/// The events of the incident a record belongs to, from the first BUSY reply on.
fn ladder_of(daemon: &Daemon, record: &serde_json::Value) -> Vec<String> {
    daemon.incident_events(&record["incident"])
}

/// #14: `then: failover` under Sentinel (down-after 60 s: Sentinel itself would not act in the
/// test's time). At the end of the budget busyguard asks Sentinel for the failover, sees the
/// replica promoted (its ROLE), then shuts the busy old primary down, which the empty-restart
/// guard would otherwise withhold (a replicated primary without persistence). The new primary
/// holds the data, and Sentinel serves it.
#[test]
fn then_failover_under_sentinel_promotes_the_replica_and_ends_the_busy_primary() {
    let (mut primary, replica, sentinel) = crate::support::sentinel::watched_pair(60_000);
    let daemon = failover_daemon(&primary, &replica, &sentinel);
    let _caller =
        crate::support::Caller::eval(&primary, crate::support::scripts::WRITING_LOOP, &["k"], &[]);

    let requested = daemon.wait_event("failover_requested", LONG);
    let detail = &requested["detail"];
    assert_eq!(detail["request"], "SENTINEL FAILOVER m", "{requested}");
    assert_eq!(
        detail["replicas"][0]["address"],
        format!("127.0.0.1:{}", replica.port)
    );
    let completed = daemon.wait_event("failover_completed", LONG);
    assert_eq!(
        completed["detail"]["new_primary"],
        format!("127.0.0.1:{}", replica.port),
        "{completed}"
    );
    // Seen on the replica itself, well before Sentinel's next INFO would tell it.
    assert_eq!(
        completed["detail"]["seen_by"],
        "ROLE and INFO on the replica"
    );
    daemon.wait_event("shutdown_confirmed", LONG);
    assert_eq!(
        ladder_of(&daemon, &requested),
        [
            "busy_detected",
            "kill_sent",
            "unkillable",
            "failover_requested",
            "failover_completed",
            "shutdown_sent",
            "shutdown_confirmed"
        ]
    );
    assert!(
        primary.wait_exit(Duration::from_secs(5)),
        "the old primary is down"
    );
    assert_eq!(
        replica.info("replication").get("role").map(String::as_str),
        Some("master")
    );
    assert!(replica.holds_keys(100), "the new primary has the data");
    let port = replica.port.to_string();
    assert!(
        wait_for(LONG, || sentinel.field("port").as_deref()
            == Some(port.as_str())),
        "Sentinel serves the promoted replica"
    );
    eprintln!(
        "sentinel failover: promoted {} ms after the request, {} ms after the first BUSY",
        completed["detail"]["elapsed_ms"], completed["detail"]["since_first_busy_ms"]
    );
}

/// #14: `then: failover` in a Cluster (3 primaries, a replica of the first). The Cluster itself
/// never fails over a primary busy with a script (it keeps answering the cluster bus); busyguard
/// tells the replica `CLUSTER FAILOVER FORCE`, sees it promoted, and shuts the busy node down.
/// The other nodes see the replica as the shard's primary, with the data. (The compatibility
/// suite runs it on Redis 6.2 and Valkey 9.1 too.)
#[test]
fn then_failover_in_a_cluster_promotes_the_busy_nodes_replica_and_ends_the_busy_node() {
    cluster_failover(None);
}

/// [`then_failover_in_a_cluster_promotes_the_busy_nodes_replica_and_ends_the_busy_node`] on
/// `build`.
pub fn cluster_failover(build: Option<crate::support::ServerBuild>) {
    let mut cluster = Cluster::start_on(build);
    let tag = cluster.tag_of_first();
    let busy = &cluster.primaries[0];
    {
        let mut conn = busy.conn();
        for i in 0..100 {
            conn.call(&["SET", &format!("{tag}k{i}"), "v"]).unwrap();
        }
    }
    assert!(wait_for(LONG, || cluster.replica.holds_keys(100)));
    // A least-privilege user on every node, with the rights a failover adds.
    let secrets = support::state_dir();
    let password_file = secrets.path().join("password");
    std::fs::write(&password_file, "s3cret-failover").unwrap();
    for node in cluster.primaries.iter().chain([&cluster.replica]) {
        support::add_busyguard_user(node, "s3cret-failover", &[]);
        let mut args = vec!["ACL", "SETUSER", "busyguard"];
        args.extend(support::FAILOVER_RIGHTS);
        node.conn().call(&args).unwrap();
    }
    let policy = busy
        .policy(
            "shard-1",
            &(support::ladder("500ms", "failover")
                + "topology:\n"
                + &RedisServer::listed(&[&cluster.replica])),
        )
        .replace(
            "\nprobe:",
            &format!(
                "\n  username: busyguard\n  password_file: {}\nprobe:",
                password_file.display()
            ),
        );
    let daemon = Daemon::start(&policy, &[]);
    busy.wait_snapshot();
    // `status` tells the cluster's view and what a failover would do now.
    let status = daemon.status();
    assert_eq!(status["cluster"]["state"], "ok", "{status}");
    assert_eq!(status["cluster"]["node_timeout_ms"], 5000);
    assert_eq!(status["cluster"]["known_nodes"], 4);
    assert_eq!(status["failover"]["via"], "cluster");
    let replica_address = format!("127.0.0.1:{}", cluster.replica.port);
    assert_eq!(status["failover"]["request_to"], replica_address);
    assert_eq!(status["whoami"], "busyguard");
    assert_eq!(status["rights"]["role"], "granted", "{status}");
    assert_eq!(status["rights"]["cluster|failover"], "granted");
    assert_eq!(status["rights"]["cluster|info"], "granted");
    assert!(
        daemon
            .status_text()
            .contains(&format!("failover: through cluster ({replica_address})")),
        "{}",
        daemon.status_text()
    );
    // Under `then: shutdown` instead, `status` warns that the Cluster would not fail the node
    // over, and how long its slots would be down after a shutdown.
    let dir = support::state_dir();
    let shutdown_policy = dir.path().join("shutdown.yaml");
    std::fs::write(
        &shutdown_policy,
        policy.replace("then: failover", "then: shutdown"),
    )
    .unwrap();
    let (_, out) = support::busyguard(&["status", "--json"], &[&shutdown_policy]);
    assert!(
        out.contains("the Cluster never fails over a primary busy with a script")
            && out.contains("threshold + wait + node-timeout (5700 ms)"),
        "{out}"
    );
    let key = format!("{tag}k");
    let _caller =
        crate::support::Caller::eval(busy, crate::support::scripts::WRITING_LOOP, &[&key], &[]);

    let requested = daemon.wait_event("failover_requested", LONG);
    assert_eq!(requested["detail"]["request"], "CLUSTER FAILOVER FORCE");
    assert_eq!(
        requested["detail"]["sent_to"], replica_address,
        "{requested}"
    );
    let completed = daemon.wait_event("failover_completed", LONG);
    assert_eq!(completed["detail"]["new_primary"], replica_address);
    daemon.wait_event("shutdown_confirmed", LONG);
    assert_eq!(
        ladder_of(&daemon, &requested)[3..],
        [
            "failover_requested",
            "failover_completed",
            "shutdown_sent",
            "shutdown_confirmed"
        ]
    );
    assert!(cluster.primaries[0].wait_exit(Duration::from_secs(5)));
    assert!(
        cluster.replica.holds_keys(100),
        "the new primary has the data"
    );
    assert!(
        wait_for(LONG, || cluster
            .flags_seen_by_others(&cluster.replica)
            .contains("master")),
        "the other nodes see the replica as the shard's primary"
    );
    eprintln!(
        "cluster failover: promoted {} ms after the request, {} ms after the first BUSY",
        completed["detail"]["elapsed_ms"], completed["detail"]["since_first_busy_ms"]
    );
}

/// #14, fresh role knowledge: when the budget ends, Sentinel already serves another server under
/// the master's name (moved here by hand, as after a failover busyguard did not see). busyguard
/// never asks that sentinel for a failover (it would fail the new, healthy primary over): it
/// sees the role moved, and ends the zombie.
#[test]
fn no_failover_is_asked_of_a_sentinel_that_already_serves_another_primary() {
    let mut primary = RedisServer::start(ServerOptions::default());
    let replica = primary.start_replica(ServerOptions::default());
    let sentinel = Sentinel::start(&primary, 60_000);
    let daemon = failover_daemon(&primary, &replica, &sentinel);
    // The replica becomes a primary and Sentinel serves it as `m`.
    replica.conn().call(&["REPLICAOF", "NO", "ONE"]).unwrap();
    sentinel.serve(&replica);
    let _caller =
        crate::support::Caller::eval(&primary, crate::support::scripts::WRITING_LOOP, &["k"], &[]);

    let confirmed = daemon.wait_event("shutdown_confirmed", LONG);
    let events = daemon.incident_events(&confirmed["incident"]);
    let seen_before = daemon.records_of("failover_completed").iter().any(|r| {
        r["detail"]["seen_by"]
            .as_str()
            .is_some_and(|s| s.starts_with("Sentinel, before the request"))
    });
    assert!(
        events.contains(&"role_changed".to_string()) || seen_before,
        "{events:?}"
    );
    assert!(
        !sentinel.log().contains("user requested FAILOVER"),
        "Sentinel was asked for a failover: {}",
        sentinel.log()
    );
    assert!(primary.wait_exit(Duration::from_secs(5)));
}

/// #14, fresh role knowledge without Sentinel: busyguard withholds the shutdown of a replicated
/// primary without persistence; an operator promotes its replica by hand (`REPLICAOF NO ONE`,
/// as `CLUSTER FAILOVER TAKEOVER` would in a Cluster). busyguard, watching the primary's own
/// replicas during the incident, sees the one that took over (its second replication ID is the
/// primary's), records `role_changed` by `replica`, and ends the zombie; the data lives on.
#[test]
fn a_replica_promoted_by_hand_during_an_incident_lets_busyguard_end_the_zombie() {
    let mut primary = RedisServer::start(ServerOptions::default());
    let replica = primary.start_replica(ServerOptions::default());
    primary.fill(100);
    assert!(wait_for(LONG, || replica.holds_keys(100)));
    let policy = primary.policy(
        "orders",
        &(support::ladder("500ms", "shutdown") + "topology:\n" + &RedisServer::listed(&[&replica])),
    );
    let daemon = Daemon::start(&policy, &[]);
    primary.wait_snapshot();
    let (_caller, withheld) = withheld_as_empty_restart(&daemon, &primary);
    replica.conn().call(&["REPLICAOF", "NO", "ONE"]).unwrap();
    zombie_ended(&daemon, &withheld, &mut primary, &replica, "replica");
}

/// A failover may wait `failover.timeout` (here 5 s: Sentinel answers `-NOGOODSLAVE` to every
/// request, the only replica has `replica-priority 0`), longer than systemd's watchdog interval
/// (2 s here). The wait is bounded work, not a stalled loop: `WATCHDOG=1` keeps coming, so
/// systemd never kills busyguard in the middle of a failover. Then the fallback applies.
#[test]
fn a_long_failover_keeps_systemds_watchdog_fed_and_ends_in_its_fallback() {
    let primary = RedisServer::start(ServerOptions::default());
    let replica = primary.start_replica(ServerOptions {
        extra: vec!["replica-priority 0".into()],
        ..Default::default()
    });
    let sentinel = Sentinel::start(&primary, 60_000);
    let on_busy = support::ladder("500ms", "failover") + "    failover: { timeout: 5s }\n";
    let policy = sentinel_policy(&primary, &[&replica], &[sentinel.url()], &on_busy);
    let state = support::state_dir();
    let systemd = support::daemon::NotifySocket::bind(state.path(), Duration::from_millis(100));
    let file = state.path().join("policy.yaml");
    std::fs::write(&file, policy).unwrap();
    let mut daemon = Daemon::prepare(state, &[file], &[]);
    daemon.env = vec![systemd.env(), ("WATCHDOG_USEC".into(), "2000000".into())];
    daemon.spawn();
    primary.wait_snapshot();
    let _caller =
        crate::support::Caller::eval(&primary, crate::support::scripts::WRITING_LOOP, &["k"], &[]);
    daemon.wait_event("failover_requested", LONG);
    // A hold sent while the failover runs (beside the probe) applies at once: the failover
    // requested goes on, what follows it waits.
    let state_dir = daemon.dir.path().to_path_buf();
    let hold = std::thread::spawn(move || {
        let out = std::process::Command::new(support::busyguard_bin())
            .args(["hold", "orders", "--state-dir"])
            .arg(&state_dir)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    });
    // The largest gap between two WATCHDOG=1 until the failover's outcome is recorded.
    let mut last = std::time::Instant::now();
    let mut widest = Duration::ZERO;
    let deadline = last + LONG;
    while daemon.records_of("failover_failed").is_empty() {
        assert!(std::time::Instant::now() < deadline, "no failover_failed");
        if systemd.try_next().as_deref() == Some("WATCHDOG=1") {
            widest = widest.max(last.elapsed());
            last = std::time::Instant::now();
        }
    }
    widest = widest.max(last.elapsed());
    assert!(
        widest < Duration::from_millis(1900),
        "systemd would have killed busyguard: no WATCHDOG=1 for {widest:?}"
    );
    let failed = &daemon.records_of("failover_failed")[0];
    assert!(support::reason(failed).contains("NOGOODSLAVE"), "{failed}");
    let (code, out) = hold.join().unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("orders: hold applied"), "{out}");
    let held = daemon.wait_event("operator_command", LONG);
    assert_eq!(held["detail"]["command"], "hold", "{held}");
    assert!(
        held["seq"].as_u64() < failed["seq"].as_u64(),
        "applied while the failover ran: {held}"
    );
    // Released, the fallback applies at the next BUSY reply.
    let (code, out) = support::busyguard_ctl(&daemon, &["release", "orders"]);
    assert_eq!(code, 0, "{out}");
    let withheld = daemon
        .wait_record(LONG, |r| {
            r["event"] == "escalation_withheld"
                && support::reason(r).contains("`failover.fallback` is `notify`")
        })
        .unwrap_or_else(|| panic!("no fallback: {:?}", daemon.events()));
    assert!(
        withheld["seq"].as_u64() > held["seq"].as_u64(),
        "{withheld}"
    );
}

/// Dry-run decides the failover and sends nothing: `failover_requested` is written with
/// `dry_run: true`, Sentinel is never asked, the replica stays a replica and the busy primary
/// runs on.
#[test]
fn a_dry_run_failover_is_recorded_and_never_asked_of_sentinel() {
    let primary = RedisServer::start(ServerOptions::default());
    let replica = primary.start_replica(ServerOptions::default());
    let sentinel = Sentinel::start(&primary, 60_000);
    let policy = sentinel_policy(
        &primary,
        &[&replica],
        &[sentinel.url()],
        &support::ladder("300ms", "failover"),
    ) + "mode: dry-run\n";
    let daemon = Daemon::start(&policy, &[]);
    primary.wait_snapshot();
    let caller =
        crate::support::Caller::eval(&primary, crate::support::scripts::READ_ONLY_LOOP, &[], &[]);
    let decided = daemon.wait_event("failover_requested", LONG);
    assert_eq!(decided["dry_run"], true, "{decided}");
    assert_eq!(decided["detail"]["request"], "SENTINEL FAILOVER m");
    // Well past the bound a request would have had: nothing was sent.
    assert!(
        !wait_for(Duration::from_secs(1), || !daemon
            .records_of("failover_completed")
            .is_empty()),
        "{:?}",
        daemon.events()
    );
    assert!(!sentinel.log().contains("user requested FAILOVER"));
    assert_eq!(
        replica.info("replication").get("role").map(String::as_str),
        Some("slave")
    );
    assert!(
        !caller.is_finished(),
        "the script still runs: nothing killed it"
    );
}

/// The request goes only while more than half of the configured sentinels name this server:
/// with one of two away, no sentinel is asked (one left behind by a failover the others made
/// would put a second primary beside the new one); `failover_failed` says how many named it,
/// and the fallback applies.
#[test]
fn no_failover_is_asked_without_a_majority_of_the_sentinels() {
    let primary = RedisServer::start(ServerOptions::default());
    let replica = primary.start_replica(ServerOptions::default());
    let sentinel = Sentinel::start(&primary, 60_000);
    let away = format!("redis://127.0.0.1:{}", support::free_port());
    let on_busy = support::ladder("300ms", "failover") + "    failover: { timeout: 1s }\n";
    let policy = sentinel_policy(&primary, &[&replica], &[sentinel.url(), away], &on_busy);
    let daemon = Daemon::start(&policy, &[]);
    primary.wait_snapshot();
    let _caller =
        crate::support::Caller::eval(&primary, crate::support::scripts::WRITING_LOOP, &["k"], &[]);
    let failed = daemon.wait_event("failover_failed", LONG);
    assert!(
        support::reason(&failed)
            .contains("1 of 2 configured sentinel(s) name this server as `m`'s primary, 2 needed"),
        "{failed}"
    );
    daemon.wait_event("escalation_withheld", LONG);
    assert!(!sentinel.log().contains("user requested FAILOVER"));
}
