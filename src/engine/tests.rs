//! The ladder step by step with time as a number, and property tests of the safety invariants.

use proptest::prelude::*;

use super::*;
use crate::event::{Detail, EventKind};
use crate::model::kinds::{BusyKind, FailoverVia, Resort, Then};
use crate::model::told::{AfterRecovery, RunningFunction};
use crate::policy::replicas::TrustedReplica;
use crate::policy::{Guards, HangSignal};

const SCRIPT_BUSY: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
const FUNCTION_BUSY: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";
const MODULE_BUSY: &str = "BUSY Redis is busy running a module command.";

fn rules() -> Rules {
    Rules {
        instance: "t".into(),
        policy_hash: "0".repeat(64),
        dry_run: false,
        kill_after: 0,
        wait: 2_000,
        then: Then::Shutdown,
        ask_timeout: 60_000,
        ask_default: Resort::Notify,
        force: false,
        shutdown_replicated: false,
        failover_fallback: Resort::Notify,
        failover_timeout: 10_000,
        failover_max_lag: 0,
        sentinel_master: None,
        replicas: ["10.0.0.7:6380", "10.0.0.8:6381", "10.0.0.9:6382"]
            .map(listed)
            .to_vec(),
        scripts: Vec::new(),
        function_rules: false,
        identify_within: 300,
        server_log: false,
        eval_rules: false,
        hang_after: 30_000,
        hang_signal: HangSignal::None,
        signal_after: 60_000,
        max_shutdowns: 1,
        per: 3_600_000,
        guards: Guards::default(),
        probe_interval: 50,
        local_server: true,
        fence: false,
    }
}

/// A successor busyguard verified: at `address`, under `run_id`, continuing the replication ID
/// of the snapshots these tests give (`replid-a`).
fn successor(address: &str, run_id: &str) -> crate::model::takeover::Successor {
    crate::model::takeover::Successor {
        address: address.into(),
        run_id: run_id.into(),
        replid2: "replid-a".into(),
    }
}

/// A `topology.replicas` entry for an IP address.
fn listed(address: &str) -> TrustedReplica {
    let addr: std::net::SocketAddr = address.parse().unwrap();
    TrustedReplica {
        host: addr.ip().to_string(),
        port: addr.port(),
        resolved: vec![addr],
        username: None,
        password: None,
    }
}

fn at(mono: Millis) -> At {
    At {
        mono,
        unix_ms: 1_700_000_000_000 + mono,
    }
}

fn snapshot(version: &str, run_id: &str) -> Snapshot {
    Snapshot {
        version: Some(version.into()),
        run_id: Some(run_id.into()),
        busy_threshold_ms: Some(200),
        aof_enabled: Some(false),
        rdb_changes_since_last_save: Some(10),
        role: Some("master".into()),
        connected_replicas: Some(0),
        ..Snapshot::default()
    }
}

fn busy(text: &str) -> Observation {
    Observation::Busy {
        kind: BusyKind::from_error(text).unwrap(),
        reply: text.into(),
    }
}

fn pong() -> Observation {
    Observation::Pong { snapshot: None }
}

/// `obs` at `at`, with what the engine asks of the server answered as the watchdog would: the
/// server's counters as they were, an empty SLOWLOG, FUNCTION STATS unknown, every failover
/// candidate caught up (asked beside the probe: the BUSY reply that follows decides, here `obs`
/// again).
fn observed(e: &mut Engine, at: At, obs: Observation) -> Step {
    let mut step = e.observe(at, obs.clone());
    while let Some(inquiry) = step.inquiry.take() {
        let beside = matches!(inquiry, Inquiry::ReplicaOffsets { .. });
        let answer = match inquiry {
            Inquiry::AfterRecovery => Observation::AfterRecovery(Ok(Box::new(AfterRecovery {
                snapshot: Ok(e.snapshot().cloned().unwrap_or_default()),
                slowlog: Ok(Vec::new()),
            }))),
            Inquiry::RunningFunction | Inquiry::Identify { .. } => {
                Observation::RunningFunction(RunningFunction::Unknown("not asked".into()))
            }
            Inquiry::IdentifyEval => Observation::EvalNamed(Err("not asked".into())),
            // Every candidate caught up.
            Inquiry::ReplicaOffsets {
                replicas,
                primary_offset,
                ..
            } => Observation::ReplicaOffsets(
                replicas
                    .into_iter()
                    .map(|r| (r, Some(primary_offset)))
                    .collect(),
            ),
        };
        let mut more = e.observe(at, answer);
        if beside && matches!(obs, Observation::Busy { .. }) {
            let next = e.observe(at, obs.clone());
            more.events.extend(next.events);
            more.action = more.action.or(next.action);
            more.inquiry = more.inquiry.or(next.inquiry);
        }
        step.events.extend(more.events);
        step.action = step.action.or(more.action);
        step.inquiry = more.inquiry;
    }
    step
}

fn names(step: &Step) -> Vec<&'static str> {
    step.events.iter().map(|e| e.kind().name()).collect()
}

fn engine_with(rules: Rules) -> Engine {
    engine_seeing(rules, snapshot("7.0.15", "run-a"))
}

/// An engine whose healthy snapshot is `snap`.
fn engine_seeing(rules: Rules, snap: Snapshot) -> Engine {
    let mut e = Engine::new(rules);
    e.observe(
        at(0),
        Observation::Pong {
            snapshot: Some(Box::new(snap)),
        },
    );
    e
}

/// A primary with one replica and no persistence at all.
fn replicated_without_persistence() -> Snapshot {
    Snapshot {
        connected_replicas: Some(1),
        save: Some(String::new()),
        ..snapshot("7.0.15", "r")
    }
}

#[test]
fn busy_kind_reads_the_exact_code() {
    assert_eq!(BusyKind::from_error(SCRIPT_BUSY), Some(BusyKind::Script));
    assert_eq!(
        BusyKind::from_error(FUNCTION_BUSY),
        Some(BusyKind::Function)
    );
    assert_eq!(BusyKind::from_error(MODULE_BUSY), Some(BusyKind::Module));
    assert_eq!(
        BusyKind::from_error(
            "BUSY Valkey is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
        ),
        Some(BusyKind::Script)
    );
    assert_eq!(
        BusyKind::from_error("BUSYKEY Target key name already exists."),
        None
    );
    assert_eq!(
        BusyKind::from_error("BUSYGROUP Consumer Group name already exists"),
        None
    );
}

#[test]
fn a_killable_script_is_killed_at_once_and_confirmed_by_pong() {
    let mut e = engine_with(rules());
    let s = e.observe(at(1000), busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["busy_detected", "kill_sent"]);
    assert_eq!(s.action, Some(Action::Kill(KillCommand::ScriptKill)));
    let incident = s.events[0].incident.clone().unwrap();
    assert_eq!(s.events[1].incident.as_ref(), Some(&incident));
    assert!(
        e.observe(at(1001), Observation::KillReply(KillReply::Ok))
            .events
            .is_empty()
    );
    // The script has not reached its hook yet: still BUSY, nothing new is sent.
    let s = e.observe(at(1002), busy(SCRIPT_BUSY));
    assert!(s.events.is_empty() && s.action.is_none());
    let s = observed(&mut e, at(1003), pong());
    assert_eq!(names(&s), ["killed", "recovered"]);
    assert_eq!(s.events[1].detail.to_value()["how"], "killed");
    assert_eq!(e.state().name(), "healthy");
}

#[test]
fn a_function_gets_function_kill() {
    let mut e = engine_with(rules());
    let s = e.observe(at(5), busy(FUNCTION_BUSY));
    assert_eq!(s.action, Some(Action::Kill(KillCommand::FunctionKill)));
}

#[test]
fn kill_after_is_a_deadline_met_by_the_next_busy_reply() {
    let mut e = engine_with(Rules {
        kill_after: 1_000,
        ..rules()
    });
    let s = e.observe(at(100), busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["busy_detected"]);
    assert_eq!(e.next_deadline(), Some(1_100));
    assert!(e.observe(at(1_099), busy(SCRIPT_BUSY)).action.is_none());
    let s = e.observe(at(1_100), busy(SCRIPT_BUSY));
    assert_eq!(s.action, Some(Action::Kill(KillCommand::ScriptKill)));
}

#[test]
fn an_unkillable_script_that_ends_inside_the_budget_is_left_alone() {
    let mut e = engine_with(rules());
    e.observe(at(0), busy(SCRIPT_BUSY));
    let s = e.observe(
        at(1),
        Observation::KillReply(KillReply::Unkillable("UNKILLABLE Sorry".into())),
    );
    assert_eq!(names(&s), ["unkillable"]);
    assert_eq!(s.events[0].detail.to_value()["budget_left_ms"], 1_999);
    assert_eq!(e.next_deadline(), Some(2_000));
    assert!(e.observe(at(1_500), busy(SCRIPT_BUSY)).action.is_none());
    let s = observed(&mut e, at(1_800), pong());
    assert_eq!(names(&s), ["recovered"]);
    assert_eq!(s.events[0].detail.to_value()["how"], "ended by itself");
}

#[test]
fn past_the_budget_an_unkillable_script_ends_in_a_version_aware_shutdown() {
    let mut e = engine_with(rules());
    e.observe(at(0), busy(SCRIPT_BUSY));
    e.observe(
        at(1),
        Observation::KillReply(KillReply::Unkillable("UNKILLABLE".into())),
    );
    let s = e.observe(at(2_000), busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["shutdown_sent"]);
    assert_eq!(
        s.action,
        Some(Action::Shutdown(ShutdownCommand {
            abort_first: true,
            words: vec!["SHUTDOWN", "NOSAVE", "NOW"],
            legacy_fallback: false,
            run_id: Some("run-a".into()),
            // The BUSY reply it rests on: this connection's, at 2_000, a quarter threshold
            // fresh, and holding a threshold less the margin (a tenth, and the path's 0 ms).
            evidence: Some(BusySeen {
                conn: 0,
                at: 2_000,
                kind: BusyKind::Script,
                fresh_ms: 50,
                continuity_ms: 180,
            }),
        }))
    );
    assert_eq!(
        s.events[0].detail.to_value()["data_at_risk"]["persistence"],
        "none"
    );
    let s = e.observe(
        at(2_002),
        Observation::Shutdown(ShutdownOutcome::Confirmed {
            elapsed_ms: 2,
            command: Some("SHUTDOWN NOSAVE NOW".into()),
            how: None,
        }),
    );
    assert_eq!(names(&s), ["shutdown_confirmed"]);
    assert_eq!(e.state().name(), "down");
    assert!(
        e.observe(
            at(2_100),
            Observation::Unreachable {
                reason: "refused".into()
            }
        )
        .events
        .is_empty()
    );
    let s = e.observe(
        at(3_000),
        Observation::Pong {
            snapshot: Some(Box::new(snapshot("7.0.15", "run-b"))),
        },
    );
    assert_eq!(names(&s), ["recovered"]);
    assert_eq!(s.events[0].detail.to_value()["restarted"], true);
}

#[test]
fn redis_6_gets_exactly_shutdown_nosave_and_force_is_opt_in() {
    assert_eq!(
        ShutdownCommand::for_version(Some(6), true).words,
        ["SHUTDOWN", "NOSAVE"]
    );
    assert!(!ShutdownCommand::for_version(Some(6), true).abort_first);
    assert_eq!(
        ShutdownCommand::for_version(Some(7), true).words,
        ["SHUTDOWN", "NOSAVE", "NOW", "FORCE"]
    );
    assert!(!ShutdownCommand::for_version(Some(7), true).legacy_fallback);
    // Unknown: the 7.0+ form, SHUTDOWN ABORT first, and the 6.x form should ABORT meet BUSY.
    let unknown = ShutdownCommand::for_version(None, false);
    assert_eq!(unknown.words, ["SHUTDOWN", "NOSAVE", "NOW"]);
    assert!(unknown.abort_first && unknown.legacy_fallback);
    assert!(
        unknown
            .fallback_text()
            .unwrap()
            .starts_with("SHUTDOWN NOSAVE if")
    );
}

fn run_to_budget(e: &mut Engine, start: Millis) -> Step {
    e.observe(at(start), busy(SCRIPT_BUSY));
    e.observe(
        at(start + 1),
        Observation::KillReply(KillReply::Unkillable("UNKILLABLE".into())),
    );
    observed(e, at(start + 2_000), busy(SCRIPT_BUSY))
}

#[test]
fn limits_withhold_a_second_shutdown_in_the_window() {
    let mut e = engine_with(rules());
    assert!(matches!(
        run_to_budget(&mut e, 0).action,
        Some(Action::Shutdown(_))
    ));
    e.observe(
        at(2_001),
        Observation::Shutdown(ShutdownOutcome::Confirmed {
            elapsed_ms: 1,
            command: None,
            how: None,
        }),
    );
    e.observe(
        at(2_500),
        Observation::Pong {
            snapshot: Some(Box::new(snapshot("7.0.15", "run-b"))),
        },
    );
    let s = run_to_budget(&mut e, 10_000);
    assert_eq!(names(&s), ["escalation_withheld"]);
    assert!(s.action.is_none());
    assert!(
        s.events[0].detail.to_value()["reason"]
            .as_str()
            .unwrap()
            .starts_with("limits:")
    );
    // Past the window the next one is allowed again.
    e.observe(at(13_000), pong());
    let s = run_to_budget(&mut e, 3_700_000);
    assert!(matches!(s.action, Some(Action::Shutdown(_))));
}

#[test]
fn then_notify_never_shuts_down() {
    let mut e = engine_with(Rules {
        then: Then::Notify,
        ..rules()
    });
    let s = run_to_budget(&mut e, 0);
    assert_eq!(names(&s), ["escalation_withheld"]);
    assert!(s.action.is_none());
}

#[test]
fn data_at_risk_guards_withhold_with_their_reason() {
    let guards = Guards {
        max_unsaved_changes: Some(5),
        ..Guards::default()
    };
    let mut e = engine_with(Rules { guards, ..rules() });
    let s = run_to_budget(&mut e, 0);
    assert!(
        s.events[0].detail.to_value()["reason"]
            .as_str()
            .unwrap()
            .contains("10 unsaved changes")
    );

    let guards = Guards {
        keep_primary_with_replicas: true,
        ..Guards::default()
    };
    let mut e = Engine::new(Rules { guards, ..rules() });
    let mut snap = snapshot("7.0.15", "r");
    snap.connected_replicas = Some(2);
    e.observe(
        at(0),
        Observation::Pong {
            snapshot: Some(Box::new(snap)),
        },
    );
    let s = run_to_budget(&mut e, 0);
    assert!(s.action.is_none());
    assert!(
        s.events[0].detail.to_value()["reason"]
            .as_str()
            .unwrap()
            .contains("2 replica(s)")
    );
}

#[test]
fn a_replicated_primary_without_persistence_is_not_shut_down_unless_allowed() {
    let empty = replicated_without_persistence();
    let run = |guards: Guards, snap: Snapshot| {
        let mut e = engine_seeing(Rules { guards, ..rules() }, snap);
        run_to_budget(&mut e, 0)
    };
    let s = run(Guards::default(), empty.clone());
    assert_eq!(names(&s), ["escalation_withheld"]);
    let reason = s.events[0].detail.to_value()["reason"].to_string();
    assert!(
        reason.contains("guards.allow_empty_restart") && reason.contains("1 replica(s)"),
        "{reason}"
    );
    // Accepted by the policy: the shutdown goes.
    let allowed = Guards {
        allow_empty_restart: true,
        ..Guards::default()
    };
    assert_eq!(names(&run(allowed, empty.clone())), ["shutdown_sent"]);
    // RDB save points or AOF: the restart is not empty.
    let rdb = Snapshot {
        save: Some("3600 1".into()),
        ..empty.clone()
    };
    assert_eq!(names(&run(Guards::default(), rdb)), ["shutdown_sent"]);
    // Persistence unknown (CONFIG refused): withheld, naming the input.
    let unknown = Snapshot {
        save: None,
        ..empty
    };
    let s = run(Guards::default(), unknown);
    assert_eq!(s.events[0].detail.to_value()["missing"], "save");
}

#[test]
fn a_primary_sentinel_failed_over_is_shut_down_at_the_next_busy_reply() {
    let mut e = engine_seeing(rules(), replicated_without_persistence());
    let demoted = || Observation::Demoted {
        successor: successor("10.0.0.6:6379", "run-new"),
        by: "sentinel",
    };
    // Outside an incident it says nothing.
    assert!(e.observe(at(1), demoted()).events.is_empty());
    let s = run_to_budget(&mut e, 0);
    assert_eq!(names(&s), ["escalation_withheld"]);
    let s = e.observe(at(2_100), demoted());
    assert_eq!(names(&s), ["role_changed"]);
    assert!(s.action.is_none(), "no action without a BUSY reply");
    assert!(
        e.observe(at(2_150), demoted()).events.is_empty(),
        "said once"
    );
    let s = e.observe(at(2_200), busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["shutdown_sent"]);
    assert!(matches!(s.action, Some(Action::Shutdown(_))));
}

fn failover_rules(sentinel: bool, fallback: Resort) -> Rules {
    Rules {
        then: Then::Failover,
        failover_fallback: fallback,
        sentinel_master: sentinel.then(|| "m".to_string()),
        ..rules()
    }
}

/// #27: a "replica" INFO lists but the policy does not (any client allowed REPLCONF can be
/// one) is neither promoted nor watched nor asked, even when it claims to be least behind.
#[test]
fn a_replica_the_policy_does_not_list_is_never_promoted_watched_or_asked() {
    let snap = Snapshot {
        replicas: vec![
            "slave0:ip=10.6.6.6,port=6666,state=online,offset=1000,lag=0".into(),
            "slave1:ip=10.0.0.8,port=6381,state=online,offset=900,lag=1".into(),
        ],
        connected_replicas: Some(2),
        ..with_replica(true)
    };
    let mut e = engine_seeing(failover_rules(false, Resort::Notify), snap.clone());
    let s = run_to_budget(&mut e, 0);
    let Some(Action::Failover(plan)) = &s.action else {
        panic!("{s:?}")
    };
    assert_eq!(plan.target, "10.0.0.8:6381");
    assert_eq!(plan.watch, ["10.0.0.8:6381"]);
    // Listed by nobody: no failover at all, and the reason names the key.
    let alone = Rules {
        replicas: vec![listed("10.0.0.7:6380")],
        ..failover_rules(false, Resort::Notify)
    };
    let mut e = engine_seeing(alone, snap);
    let s = run_to_budget(&mut e, 0);
    assert!(s.action.is_none(), "{s:?}");
    assert_eq!(names(&s), ["failover_failed", "escalation_withheld"]);
    let reason = s.events[0].detail.to_value()["reason"].to_string();
    assert!(
        reason.contains("none of them listed in `topology.replicas`"),
        "{reason}"
    );
    assert!(reason.contains("10.6.6.6:6666"), "{reason}");
}

#[test]
fn a_cluster_failover_goes_to_the_replica_least_behind_then_ends_the_old_primary() {
    let snap = Snapshot {
        replicas: vec![
            "slave0:ip=10.0.0.8,port=6381,state=online,offset=900,lag=1".into(),
            "slave1:ip=10.0.0.7,port=6380,state=online,offset=990,lag=0".into(),
            "slave2:ip=10.0.0.9,port=6382,state=wait_bgsave,offset=0,lag=0".into(),
        ],
        connected_replicas: Some(3),
        ..with_replica(true)
    };
    let mut e = engine_seeing(failover_rules(false, Resort::Notify), snap);
    let s = run_to_budget(&mut e, 0);
    assert_eq!(names(&s), ["failover_requested"]);
    let Some(Action::Failover(plan)) = &s.action else {
        panic!("{s:?}")
    };
    assert_eq!(plan.via, FailoverVia::Cluster);
    assert_eq!(plan.target, "10.0.0.7:6380");
    assert_eq!(plan.watch, ["10.0.0.7:6380", "10.0.0.8:6381"]);
    let record = s.events[0].detail.to_value();
    assert_eq!(record["request"], "CLUSTER FAILOVER FORCE");
    // Each asked just before the request, and caught up with the primary's last known offset.
    assert_eq!(record["replicas"][0]["behind_bytes"], 0);
    assert_eq!(record["primary_offset"], 1_000);
    assert_eq!(e.state().name(), "failing_over");
    assert_eq!(
        e.next_deadline(),
        None,
        "nothing to probe for while it runs"
    );
    let s = e.observe(
        at(2_050),
        Observation::Failover(FailoverOutcome::Promoted {
            successor: successor("10.0.0.7:6380", "run-new"),
            seen_by: "ROLE on the replica".into(),
        }),
    );
    assert_eq!(names(&s), ["failover_completed"]);
    assert_eq!(s.events[0].detail.to_value()["elapsed_ms"], 50);
    assert!(s.action.is_none(), "no shutdown without a BUSY reply");
    assert!(
        e.next_deadline().is_some_and(|d| d <= 2_050),
        "probe at once"
    );
    // The empty-restart guard no longer holds: its data lives on in the new primary.
    let s = e.observe(at(2_051), busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["shutdown_sent"]);
    assert!(matches!(s.action, Some(Action::Shutdown(_))));
}

#[test]
fn a_sentinel_failover_names_the_master_and_watches_every_replica_in_sync() {
    let mut e = engine_seeing(failover_rules(true, Resort::Notify), with_replica(false));
    let s = run_to_budget(&mut e, 0);
    let Some(Action::Failover(plan)) = &s.action else {
        panic!("{s:?}")
    };
    assert_eq!(
        (plan.via, plan.target.as_str()),
        (FailoverVia::Sentinel, "m")
    );
    assert_eq!(
        s.events[0].detail.to_value()["request"],
        "SENTINEL FAILOVER m"
    );
    // Not seen in time: the fallback (notify) applies at the next BUSY reply.
    let s = e.observe(
        at(12_000),
        Observation::Failover(FailoverOutcome::Failed {
            accepted: true,
            reason: "no promotion".into(),
        }),
    );
    assert_eq!(names(&s), ["failover_failed"]);
    let s = e.observe(at(12_001), busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["escalation_withheld"]);
    assert!(
        s.events[0].detail.to_value()["reason"]
            .as_str()
            .unwrap()
            .contains("`failover.fallback` is `notify`")
    );
    assert!(s.action.is_none());
}

#[test]
fn without_a_topology_or_a_replica_in_sync_the_fallback_applies_under_the_guards() {
    // No Sentinel, no Cluster: the fallback, a shutdown, goes (no replicas, nothing to empty).
    let mut e = engine_with(failover_rules(false, Resort::Shutdown));
    let s = run_to_budget(&mut e, 0);
    assert_eq!(names(&s), ["failover_failed", "shutdown_sent"]);
    assert!(
        s.events[0].detail.to_value()["reason"]
            .as_str()
            .unwrap()
            .starts_with("no topology")
    );
    // A replica that lags 30 s is not in sync; the fallback shutdown is then withheld by the
    // empty-restart guard (a replicated primary without persistence).
    let lagging = Snapshot {
        replicas: vec!["slave0:ip=10.0.0.7,port=6380,state=online,offset=990,lag=30".into()],
        ..with_replica(true)
    };
    let mut e = engine_seeing(failover_rules(false, Resort::Shutdown), lagging);
    let s = run_to_budget(&mut e, 0);
    assert_eq!(names(&s), ["failover_failed", "escalation_withheld"]);
    assert!(
        s.events[0].detail.to_value()["reason"]
            .as_str()
            .unwrap()
            .starts_with("no replica online within 10 s")
    );
    assert!(s.action.is_none());
}

#[test]
fn a_dry_run_failover_is_decided_and_never_requested() {
    let mut e = engine_seeing(
        Rules {
            dry_run: true,
            ..failover_rules(false, Resort::Notify)
        },
        with_replica(true),
    );
    let s = run_to_budget(&mut e, 0);
    assert_eq!(names(&s), ["failover_requested"]);
    assert!(s.events[0].dry_run);
    assert!(s.action.is_none());
    assert!(e.observe(at(2_100), busy(SCRIPT_BUSY)).events.is_empty());
}

#[test]
fn notbusy_to_a_scripts_kill_is_no_failure_and_the_recovery_says_so() {
    // Sentinel's SCRIPT KILL (or the script's own end) came first: nothing to page for.
    let mut e = engine_with(rules());
    e.observe(at(0), busy(SCRIPT_BUSY));
    let notbusy = "NOTBUSY No scripts in execution right now.";
    let s = e.observe(
        at(1),
        Observation::KillReply(KillReply::Error(notbusy.into())),
    );
    assert!(s.events.is_empty(), "{:?}", names(&s));
    let s = observed(&mut e, at(50), pong());
    assert_eq!(names(&s), ["recovered"]);
    let recovered = s.events[0].detail.to_value();
    assert_eq!(recovered["kill_reply"], notbusy);
    assert_eq!(
        recovered["how"], "ended by itself",
        "the watchdog's kill count refines it"
    );
    // Any other error to a kill is a failure.
    let mut e = engine_with(rules());
    e.observe(at(0), busy(SCRIPT_BUSY));
    let s = e.observe(
        at(1),
        Observation::KillReply(KillReply::Error("NOPERM".into())),
    );
    assert_eq!(names(&s), ["action_failed"]);
}

#[test]
fn a_busy_module_goes_straight_to_the_budget() {
    let mut e = engine_with(rules());
    let s = e.observe(at(0), busy(MODULE_BUSY));
    assert_eq!(names(&s), ["busy_detected"]);
    assert!(s.action.is_none());
    let s = e.observe(at(2_000), busy(MODULE_BUSY));
    assert!(matches!(s.action, Some(Action::Shutdown(_))));
}

#[test]
fn dry_run_decides_and_records_everything_and_sends_nothing() {
    let mut e = engine_with(Rules {
        dry_run: true,
        ..rules()
    });
    let s = e.observe(at(0), busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["busy_detected", "kill_sent"]);
    assert!(s.events[1].dry_run && s.action.is_none());
    let s = e.observe(at(2_000), busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["shutdown_sent"]);
    assert!(s.events[0].dry_run && s.action.is_none());
    assert_eq!(e.state().name(), "busy");
    assert_eq!(names(&observed(&mut e, at(9_000), pong())), ["recovered"]);
}

#[test]
fn silence_opens_a_hang_incident_that_becomes_busy() {
    let mut e = engine_with(rules());
    assert_eq!(e.silence_deadline(), Some(30_000));
    assert!(
        e.observe(at(20_000), Observation::Silent { for_ms: 20_000 })
            .events
            .is_empty()
    );
    let s = e.observe(at(30_000), Observation::Silent { for_ms: 30_000 });
    assert_eq!(names(&s), ["hang_detected"]);
    let id = s.events[0].incident.clone();
    let s = e.observe(at(31_000), busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["busy_detected", "kill_sent"]);
    assert_eq!(s.events[0].incident, id);
}

#[test]
fn a_hung_local_server_is_signalled_only_when_the_policy_says_so() {
    let r = Rules {
        hang_signal: HangSignal::Sigkill,
        ..rules()
    };
    let mut e = Engine::new(r);
    let mut snap = snapshot("7.0.15", "r");
    snap.process_id = Some(4242);
    snap.process_start_ticks = Some(99);
    e.observe(
        at(0),
        Observation::Pong {
            snapshot: Some(Box::new(snap)),
        },
    );
    e.observe(at(30_000), Observation::Silent { for_ms: 30_000 });
    assert_eq!(e.silence_deadline(), Some(60_000));
    let s = e.observe(at(60_000), Observation::Silent { for_ms: 60_000 });
    assert_eq!(names(&s), ["signal_sent"]);
    assert_eq!(
        s.action,
        Some(Action::Signal(SignalTarget {
            pid: 4242,
            start_ticks: 99
        }))
    );
    assert!(
        e.observe(at(70_000), Observation::Silent { for_ms: 70_000 })
            .action
            .is_none()
    );
}

#[test]
fn faults_are_reported_once_and_never_acted_on() {
    let mut e = engine_with(rules());
    let fault = || Observation::Fault {
        reply: "NOPERM this user has no permissions to run the 'ping' command".into(),
    };
    assert_eq!(names(&e.observe(at(1), fault())), ["probe_fault"]);
    assert!(e.observe(at(2), fault()).events.is_empty());
    assert_eq!(e.state().name(), "fault");
}

#[test]
fn a_server_that_goes_away_is_unreachable_then_recovered_with_no_action() {
    // The same run: reachable again. Another run id: a restart (#35: what it had not saved is
    // gone, never "reachable again").
    for (run_id, how) in [
        ("run-a", "reachable again"),
        ("run-b", "restarted, not by busyguard"),
    ] {
        unreachable_then_back(run_id, how);
    }
}

fn unreachable_then_back(run_id: &str, how: &str) {
    let mut e = engine_with(rules());
    let s = e.observe(
        at(1),
        Observation::Unreachable {
            reason: "connection refused".into(),
        },
    );
    assert_eq!(names(&s), ["unreachable"]);
    assert!(
        e.observe(
            at(2),
            Observation::Unreachable {
                reason: "connection refused".into()
            }
        )
        .events
        .is_empty()
    );
    let s = e.observe(
        at(3),
        Observation::Pong {
            snapshot: Some(Box::new(snapshot("7.0.15", run_id))),
        },
    );
    assert_eq!(names(&s), ["recovered"]);
    assert_eq!(s.events[0].detail.to_value()["how"], how);
}

/// Any observation, at any time.
fn any_observation() -> impl Strategy<Value = Observation> {
    prop_oneof![
        Just(pong()),
        Just(Observation::Pong {
            snapshot: Some(Box::new(snapshot("7.0.15", "run-x")))
        }),
        Just(busy(SCRIPT_BUSY)),
        Just(busy(FUNCTION_BUSY)),
        Just(busy(MODULE_BUSY)),
        Just(busy("BUSY")),
        Just(busy("BUSY a module's own words: SCRIPT KILL")),
        Just(Observation::Pong {
            snapshot: Some(Box::new(incomplete_snapshot()))
        }),
        Just(Observation::Pong {
            snapshot: Some(Box::new(Snapshot {
                connected_replicas: Some(2),
                ..snapshot("7.0.15", "run-y")
            }))
        }),
        // A replicated primary with no persistence at all, and one with RDB save points.
        prop_oneof![Just(""), Just("3600 1")].prop_map(|save| Observation::Pong {
            snapshot: Some(Box::new(Snapshot {
                connected_replicas: Some(1),
                save: Some(save.into()),
                ..snapshot("7.0.15", "run-z")
            }))
        }),
        (0u64..100_000).prop_map(|for_ms| Observation::Silent { for_ms }),
        Just(Observation::Demoted {
            successor: successor("10.0.0.6:6379", "run-new"),
            by: "replica",
        }),
        any::<bool>().prop_map(|cluster| Observation::Pong {
            snapshot: Some(Box::new(with_replica(cluster)))
        }),
        Just(Observation::Failover(FailoverOutcome::Promoted {
            successor: successor("10.0.0.7:6380", "run-new"),
            seen_by: "ROLE on the replica".into(),
        })),
        Just(Observation::Failover(FailoverOutcome::Failed {
            accepted: true,
            reason: "no promotion seen".into(),
        })),
        Just(Observation::Loading),
        Just(Observation::Fault {
            reply: "NOAUTH Authentication required.".into()
        }),
        Just(Observation::Unreachable {
            reason: "refused".into()
        }),
        Just(Observation::KillReply(KillReply::Ok)),
        Just(Observation::KillReply(KillReply::Unkillable(
            "UNKILLABLE".into()
        ))),
        Just(Observation::KillReply(KillReply::Error("NOTBUSY".into()))),
        Just(Observation::KillReply(KillReply::Error(
            FUNCTION_BUSY.into()
        ))),
        Just(Observation::KillReply(KillReply::Replicated(
            "UNKILLABLE ... in the context of replication".into()
        ))),
        Just(Observation::KillReply(KillReply::Lost("no reply".into()))),
        Just(Observation::Shutdown(ShutdownOutcome::Confirmed {
            elapsed_ms: 1,
            command: None,
            how: None
        })),
        Just(Observation::Shutdown(ShutdownOutcome::Refused(
            "ERR".into()
        ))),
    ]
}

/// A primary with one replica online and in sync, no persistence; a Cluster node or not.
fn with_replica(cluster: bool) -> Snapshot {
    Snapshot {
        connected_replicas: Some(1),
        save: Some(String::new()),
        master_repl_offset: Some(1_000),
        replicas: vec!["slave0:ip=10.0.0.7,port=6380,state=online,offset=990,lag=0".into()],
        cluster_enabled: Some(cluster),
        ..snapshot("7.0.15", "run-c")
    }
}

/// A snapshot taken by a user without `+info`: nothing a guard needs is known.
fn incomplete_snapshot() -> Snapshot {
    Snapshot {
        errors: vec!["INFO refused: NOPERM".into()],
        ..Snapshot::default()
    }
}

fn any_rules() -> impl Strategy<Value = Rules> {
    (
        any::<bool>(),
        0u64..3_000,
        0u64..5_000,
        any::<bool>(),
        0u32..3,
        any::<bool>(),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        (any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                dry_run,
                kill_after,
                extra,
                notify,
                max_shutdowns,
                sigkill,
                (keep, unsaved, replicated, allow_empty),
                (failover, sentinel, fallback_shutdown),
            )| Rules {
                guards: Guards {
                    max_unsaved_changes: unsaved.then_some(100),
                    keep_primary_with_replicas: keep,
                    allow_empty_restart: allow_empty,
                },
                shutdown_replicated: replicated,
                dry_run,
                kill_after,
                wait: kill_after + extra + 1,
                then: match (failover, notify) {
                    (true, _) => Then::Failover,
                    (false, true) => Then::Notify,
                    (false, false) => Then::Shutdown,
                },
                failover_fallback: if fallback_shutdown {
                    Resort::Shutdown
                } else {
                    Resort::Notify
                },
                sentinel_master: sentinel.then(|| "m".to_string()),
                max_shutdowns,
                hang_after: 1_000,
                signal_after: 2_000,
                hang_signal: if sigkill {
                    HangSignal::Sigkill
                } else {
                    HangSignal::None
                },
                ..rules()
            },
        )
}

/// Observations with increasing times.
fn any_run() -> impl Strategy<Value = Vec<(Millis, Observation)>> {
    prop::collection::vec((0u64..700, any_observation()), 1..80).prop_map(|steps| {
        let mut t = 0;
        steps
            .into_iter()
            .map(|(dt, o)| {
                t += dt;
                (t, o)
            })
            .collect()
    })
}

/// The steps of `run`, each with what the engine asked of the server answered within it (as
/// the watchdog does).
fn replay(rules: &Rules, run: &[(Millis, Observation)]) -> Vec<Step> {
    let mut e = Engine::new(rules.clone());
    run.iter()
        .map(|(t, o)| observed(&mut e, at(*t), o.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// A kill or a shutdown answers only a BUSY reply that just arrived, and its `*_sent`
    /// record comes in the same step, before it.
    #[test]
    fn actions_answer_only_a_busy_reply(rules in any_rules(), run in any_run()) {
        for ((_, obs), step) in run.iter().zip(replay(&rules, &run)) {
            if let Some(Action::Kill(_) | Action::Shutdown(_) | Action::Failover(_)) = &step.action {
                prop_assert!(matches!(obs, Observation::Busy { .. }), "action after {obs:?}");
                let last = step.events.last().expect("a record before the action");
                prop_assert!(last.kind().announces_an_action() && !last.dry_run);
            }
            if let Some(Action::Signal(_)) = &step.action {
                prop_assert!(matches!(obs, Observation::Silent { .. }), "signal after {:?}", obs);
            }
        }
    }

    #[test]
    fn at_most_one_shutdown_per_incident(rules in any_rules(), run in any_run()) {
        let mut per_incident = std::collections::HashMap::new();
        for step in replay(&rules, &run) {
            for ev in step.events.iter().filter(|e| e.kind() == EventKind::ShutdownSent) {
                let n = per_incident.entry(ev.incident.clone()).or_insert(0);
                *n += 1;
                prop_assert!(*n == 1, "two shutdowns in {:?}", ev.incident);
            }
        }
    }

    #[test]
    fn dry_run_never_acts(rules in any_rules(), run in any_run()) {
        let rules = Rules { dry_run: true, ..rules };
        for step in replay(&rules, &run) {
            prop_assert!(step.action.is_none());
        }
    }

    #[test]
    fn shutdowns_stay_within_limits(rules in any_rules(), run in any_run()) {
        let times: Vec<Millis> = run.iter().zip(replay(&rules, &run))
            .filter(|(_, s)| matches!(s.action, Some(Action::Shutdown(_))))
            .map(|((t, _), _)| *t)
            .collect();
        for (i, t) in times.iter().enumerate() {
            let within = times[..=i].iter().filter(|u| t - **u < rules.per).count();
            prop_assert!(within <= rules.max_shutdowns as usize);
        }
    }

    /// No shutdown in an incident whose kill was never attempted, when its BUSY replies named
    /// a kill (a script, a function, or a form of unknown kind, for which SCRIPT KILL is tried).
    #[test]
    fn no_shutdown_before_the_kill_a_killable_busy_is_owed(rules in any_rules(), run in any_run()) {
        let mut killable = std::collections::HashSet::new();
        let mut kill_tried = std::collections::HashSet::new();
        for ((_, obs), step) in run.iter().zip(replay(&rules, &run)) {
            for ev in &step.events {
                match &ev.detail {
                    Detail::KillSent(_) => { kill_tried.insert(ev.incident.clone()); }
                    Detail::ShutdownSent(_) if killable.contains(&ev.incident) => {
                        prop_assert!(kill_tried.contains(&ev.incident), "shutdown before a kill in {:?}", ev.incident);
                    }
                    _ => {}
                }
            }
            if let Observation::Busy { kind, .. } = obs && *kind != BusyKind::Module {
                killable.extend(step.events.iter().map(|e| e.incident.clone()));
            }
        }
    }

    /// No shutdown while an input a configured guard needs is unknown: the snapshot (none, or
    /// one without the facts) must say the role and replicas, or the persistence and changes.
    #[test]
    fn no_shutdown_while_a_guard_input_is_unknown(rules in any_rules(), run in any_run()) {
        // Incidents Sentinel failed over (`role_changed`): their guards no longer apply.
        let mut demoted = std::collections::HashSet::new();
        for step in replay(&rules, &run) {
            for ev in &step.events {
                if let Detail::RoleChanged(_) | Detail::FailoverCompleted(_) = &ev.detail {
                    demoted.insert(ev.incident.clone());
                }
                let Detail::ShutdownSent(d) = &ev.detail else { continue };
                if demoted.contains(&ev.incident) {
                    continue;
                }
                let s = d.inputs.snapshot.as_ref();
                if rules.guards.keep_primary_with_replicas {
                    prop_assert!(s.is_some_and(|s| s.role.is_some() && s.connected_replicas.is_some()), "{d:?}");
                }
                if rules.guards.max_unsaved_changes.is_some() {
                    prop_assert!(s.is_some_and(|s| s.aof_enabled.is_some()), "{d:?}");
                    prop_assert!(!d.inputs.snapshot_from_trail);
                }
                if !rules.guards.allow_empty_restart {
                    // Known not to be a replicated primary without persistence.
                    let safe = s.is_some_and(|s| match (s.role.as_deref(), s.connected_replicas) {
                        (Some("master"), Some(0)) => true,
                        (Some("master"), Some(_)) => s.aof_enabled == Some(true)
                            || s.save.as_deref().is_some_and(|v| !v.is_empty()),
                        (Some(_), _) => true,
                        (None, _) => false,
                    });
                    prop_assert!(safe, "{d:?}");
                }
            }
        }
    }

    /// An incident left open by an earlier run never gets an action from the new run: whatever
    /// the new run sees first (a healthy reply, a new run id, BUSY again), kills and shutdowns
    /// belong to incidents it opened itself. (A fence may end the old incident: its failover's
    /// split brain, on a successor verified and a healthy answer seen; #33.3.)
    #[test]
    fn resumed_incidents_never_carry_actions_over(
        rules in any_rules(),
        before in any_run(),
        after in any_run(),
    ) {
        let mut e = engine_with(rules.clone());
        let steps: Vec<(At, Step)> = before.iter().map(|(t, o)| (at(*t), e.observe(at(*t), o.clone()))).collect();
        let history = trail_of(&steps);
        let Some(old) = history.open_incident.as_ref().map(|o| o.id.clone()) else {
            return Ok(());
        };
        let end = before.last().map_or(0, |(t, _)| *t);
        let mut fresh = Engine::new(rules);
        fresh.resume(&history, restarted(end, 0));
        for (t, o) in &after {
            let step = fresh.observe(restarted(end, *t + 1), o.clone());
            for ev in &step.events {
                if ev.kind().announces_an_action() && ev.kind() != crate::event::EventKind::SplitBrain {
                    prop_assert_ne!(ev.incident.as_deref(), Some(old.as_str()));
                }
            }
        }
    }

    /// Under `then: failover`, a shutdown goes only once the server was failed over (by the
    /// request, or by Sentinel on its own), or once the failover could not be made and the
    /// fallback is `shutdown`; a failover is requested at most once per incident.
    #[test]
    fn a_failover_policy_shuts_down_only_after_a_failover_or_by_its_fallback(
        rules in any_rules(),
        run in any_run(),
    ) {
        prop_assume!(rules.then == Then::Failover);
        let mut failed_over = std::collections::HashSet::new();
        let mut failed = std::collections::HashSet::new();
        let mut requested = std::collections::HashSet::new();
        for step in replay(&rules, &run) {
            for ev in &step.events {
                match &ev.detail {
                    Detail::RoleChanged(_) | Detail::FailoverCompleted(_) => {
                        failed_over.insert(ev.incident.clone());
                    }
                    Detail::FailoverFailed(_) => {
                        failed.insert(ev.incident.clone());
                    }
                    Detail::FailoverRequested(_) => {
                        prop_assert!(requested.insert(ev.incident.clone()), "requested twice");
                    }
                    Detail::ShutdownSent(_) => {
                        let by_fallback = failed.contains(&ev.incident)
                            && rules.failover_fallback == Resort::Shutdown;
                        prop_assert!(failed_over.contains(&ev.incident) || by_fallback);
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn decisions_are_deterministic(rules in any_rules(), run in any_run()) {
        prop_assert_eq!(replay(&rules, &run), replay(&rules, &run));
    }
}

#[test]
fn a_zero_threshold_is_reported_once() {
    let mut e = Engine::new(rules());
    let mut snap = snapshot("7.0.15", "r");
    snap.busy_threshold_ms = Some(0);
    let s = e.observe(
        at(0),
        Observation::Pong {
            snapshot: Some(Box::new(snap.clone())),
        },
    );
    assert_eq!(names(&s), ["probe_fault"]);
    assert!(
        s.events[0].detail.to_value()["warning"]
            .as_str()
            .unwrap()
            .contains("busy-reply-threshold is 0")
    );
    assert!(
        e.observe(
            at(10),
            Observation::Pong {
                snapshot: Some(Box::new(snap))
            }
        )
        .events
        .is_empty()
    );
}

/// What a trail holding these steps says of the instance, read back the way the daemon reads it:
/// written by the audit module (times from each step's wall clock), parsed by `history` right
/// after the last step, with no bound on the window.
fn trail_of(steps: &[(At, Step)]) -> crate::engine::History {
    trail_read(steps, std::time::Duration::MAX, u64::MAX)
}

/// [`trail_of`], read back at `now_unix_ms` over `window`, as the daemon does.
fn trail_read(
    steps: &[(At, Step)],
    window: std::time::Duration,
    now_unix_ms: u64,
) -> crate::engine::History {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut text = String::new();
    let mut seq = 0;
    for (at, step) in steps {
        for e in &step.events {
            seq += 1;
            let ts =
                time::OffsetDateTime::from_unix_timestamp_nanos(at.unix_ms as i128 * 1_000_000)
                    .unwrap()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap();
            let record = crate::audit::Record {
                ts,
                seq,
                prev: String::new(),
                version: String::new(),
                event: e.clone(),
            };
            text.push_str(&String::from_utf8(record.to_line()).unwrap());
            text.push('\n');
        }
    }
    std::fs::write(&path, text).unwrap();
    crate::audit::history(&path, &["t".to_string()], window, now_unix_ms)
        .unwrap()
        .remove("t")
        .unwrap_or_default()
}

/// An incident left unkillable (and, with `then: shutdown` past 2 s, shut down) by an earlier run.
fn earlier_run(until: Millis) -> (Vec<(At, Step)>, String) {
    let mut e = engine_with(rules());
    let mut steps = Vec::new();
    for (t, obs) in [
        (1_000, busy(SCRIPT_BUSY)),
        (
            1_001,
            Observation::KillReply(KillReply::Unkillable("UNKILLABLE".into())),
        ),
        (3_000, busy(SCRIPT_BUSY)),
    ] {
        if t <= until {
            steps.push((at(t), e.observe(at(t), obs)));
        }
    }
    let id = steps[0].1.events[0].incident.clone().unwrap();
    (steps, id)
}

/// The instant of a new engine started `after` ms past 1_000 + `wall`, on a monotonic clock far
/// from the earlier run's.
fn restarted(wall: Millis, after: Millis) -> At {
    At {
        mono: 100_000 + after,
        unix_ms: at(wall + after).unix_ms,
    }
}

#[test]
fn a_restarted_engine_that_sees_busy_supersedes_the_old_incident_and_starts_from_the_kill() {
    let (steps, old) = earlier_run(3_000);
    assert!(matches!(steps[2].1.action, Some(Action::Shutdown(_))));
    let history = trail_of(&steps);
    assert_eq!(history.shutdowns, vec![at(3_000).unix_ms]);
    let mut fresh = Engine::new(rules());
    assert_eq!(
        fresh.resume(&history, restarted(3_500, 0)).as_deref(),
        Some(old.as_str())
    );
    // Still BUSY: perhaps the same script, perhaps another. Nothing carries over.
    let s = fresh.observe(restarted(3_500, 10), busy(SCRIPT_BUSY));
    assert_eq!(
        names(&s),
        ["incident_superseded", "busy_detected", "kill_sent"]
    );
    assert_eq!(s.events[0].incident.as_deref(), Some(old.as_str()));
    let new = s.events[1].incident.clone().unwrap();
    assert_ne!(new, old);
    let Detail::BusyDetected(b) = &s.events[1].detail else {
        panic!()
    };
    assert_eq!(b.supersedes.as_deref(), Some(old.as_str()));
    assert!(
        b.inputs.snapshot_from_trail,
        "the earlier run's snapshot, marked as such"
    );
    assert_eq!(b.inputs.snapshot_age_ms, Some(3_510), "its true age");
    assert_eq!(s.action, Some(Action::Kill(KillCommand::ScriptKill)));
    // The trail's shutdown still counts for `limits`: the new budget ends withheld.
    fresh.observe(
        restarted(3_500, 11),
        Observation::KillReply(KillReply::Unkillable("U".into())),
    );
    let s = fresh.observe(restarted(3_500, 2_010), busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["escalation_withheld"]);
    assert!(
        s.events[0].detail.to_value()["reason"]
            .as_str()
            .unwrap()
            .starts_with("limits")
    );
}

/// The incident an earlier run left open is found however long busyguard was down (a
/// maintenance window, a package upgrade on a stopped unit): the window bounds what the limits
/// count, never whether the newest record is read.
#[test]
fn an_incident_left_open_days_before_a_restart_is_found_and_ended_by_the_first_pong() {
    let (steps, old) = earlier_run(3_000);
    let day = std::time::Duration::from_secs(24 * 3600);
    let days_later = at(3_000).unix_ms + 3 * 24 * 3_600_000;
    let history = trail_read(&steps, day, days_later);
    let open = history
        .open_incident
        .as_ref()
        .expect("the incident left open");
    assert_eq!(open.id, old);
    assert_eq!(open.shutdown, Some(ResumedShutdown::Sent));
    assert!(history.shutdowns.is_empty(), "outside the limits' window");
    let mut fresh = Engine::new(rules());
    let restart = At {
        mono: 100_000,
        unix_ms: days_later,
    };
    assert_eq!(
        fresh.resume(&history, restart).as_deref(),
        Some(old.as_str())
    );
    let s = fresh.observe(
        At {
            mono: 100_010,
            unix_ms: days_later + 10,
        },
        Observation::Pong {
            snapshot: Some(Box::new(snapshot("7.0.15", "run-b"))),
        },
    );
    assert_eq!(names(&s), ["recovered"]);
    assert_eq!(s.events[0].incident.as_deref(), Some(old.as_str()));
    assert_eq!(s.events[0].detail.to_value()["restarted"], true);
}

#[test]
fn a_restarted_engine_that_sees_a_healthy_reply_ends_the_old_incident() {
    let (steps, old) = earlier_run(1_001);
    let mut fresh = Engine::new(rules());
    fresh.resume(&trail_of(&steps), restarted(1_500, 0));
    assert_eq!(fresh.incident_id(), Some(old.as_str()));
    let s = observed(
        &mut fresh,
        restarted(1_500, 10),
        Observation::Pong {
            snapshot: Some(Box::new(snapshot("7.0.15", "run-a"))),
        },
    );
    assert_eq!(names(&s), ["recovered"]);
    assert_eq!(s.events[0].incident.as_deref(), Some(old.as_str()));
    assert_eq!(s.events[0].detail.to_value()["how"], "ended by itself");
    assert_eq!(s.events[0].detail.to_value()["restarted"], false);
    assert_eq!(fresh.incident_id(), None);
}

#[test]
fn after_its_shutdown_a_restarted_engine_waits_for_the_server_to_come_back() {
    let (steps, old) = earlier_run(3_000);
    let mut fresh = Engine::new(rules());
    fresh.resume(&trail_of(&steps), restarted(3_500, 0));
    let s = fresh.observe(
        restarted(3_500, 10),
        Observation::Unreachable {
            reason: "refused".into(),
        },
    );
    assert!(s.events.is_empty() && s.action.is_none(), "{s:?}");
    let s = fresh.observe(
        restarted(3_500, 900),
        Observation::Pong {
            snapshot: Some(Box::new(snapshot("7.0.15", "run-b"))),
        },
    );
    assert_eq!(names(&s), ["recovered"]);
    assert_eq!(s.events[0].incident.as_deref(), Some(old.as_str()));
    assert_eq!(
        s.events[0].detail.to_value()["how"],
        "restarted after shutdown"
    );
    assert_eq!(s.events[0].detail.to_value()["restarted"], true);
}

#[test]
fn a_new_runaway_right_after_a_kill_is_a_new_incident() {
    let mut e = engine_with(rules());
    let first = e.observe(at(0), busy(SCRIPT_BUSY));
    e.observe(at(1), Observation::KillReply(KillReply::Ok));
    // The next probe, sent after +OK, is answered BUSY: another script started at once.
    let s = e.observe(at(300), busy(WRITING_BUSY));
    assert_eq!(
        names(&s),
        ["killed", "recovered", "busy_detected", "kill_sent"]
    );
    assert_eq!(s.events[1].incident, first.events[0].incident);
    assert_ne!(s.events[2].incident, first.events[0].incident);
    assert_eq!(s.action, Some(Action::Kill(KillCommand::ScriptKill)));
    // The old script ended no later than a threshold (200 ms) before that reply: the records
    // say so, not the 300 ms it took to learn it.
    assert_eq!(s.events[0].detail.since_first_busy_ms(), Some(100));
    assert_eq!(s.events[1].detail.since_first_busy_ms(), Some(100));
}

const WRITING_BUSY: &str = SCRIPT_BUSY;

fn steer(e: &mut Engine, t: Millis, s: Steer) {
    e.steer(at(t), s).unwrap();
}

#[test]
fn a_pause_withholds_every_action_once_and_a_resume_lets_the_kill_go() {
    let mut e = engine_with(rules());
    let until = at(60_000).unix_ms;
    steer(
        &mut e,
        500,
        Steer::Pause {
            until_unix_ms: until,
            by: "alice".into(),
            reason: "migration".into(),
        },
    );
    let s = e.observe(at(1_000), busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["busy_detected", "escalation_withheld"]);
    let w = s.events[1].detail.to_value();
    assert_eq!(w["withheld_action"], "kill");
    assert!(
        w["reason"]
            .as_str()
            .unwrap()
            .starts_with("paused by alice until"),
        "{w}"
    );
    assert!(s.action.is_none());
    assert_eq!(e.next_deadline(), None, "no PING storm while paused");
    assert!(
        e.observe(at(1_100), busy(SCRIPT_BUSY)).events.is_empty(),
        "said once"
    );
    steer(&mut e, 1_200, Steer::Resume);
    let s = e.observe(at(1_300), busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["kill_sent"]);
}

#[test]
fn a_pause_expires_by_itself_and_says_so() {
    let mut e = engine_with(rules());
    steer(
        &mut e,
        0,
        Steer::Pause {
            until_unix_ms: at(1_000).unix_ms,
            by: "bob".into(),
            reason: "r".into(),
        },
    );
    let s = e.observe(at(1_000), pong());
    assert_eq!(names(&s), ["operator_command"]);
    assert_eq!(s.events[0].detail.to_value()["command"], "pause_expired");
    assert_eq!(
        names(&e.observe(at(1_100), busy(SCRIPT_BUSY))),
        ["busy_detected", "kill_sent"]
    );
}

#[test]
fn a_hold_keeps_the_escalation_until_release_and_approve_goes_early() {
    let mut e = engine_with(rules());
    e.observe(at(1_000), busy(SCRIPT_BUSY));
    e.observe(
        at(1_001),
        Observation::KillReply(KillReply::Unkillable("UNKILLABLE".into())),
    );
    steer(
        &mut e,
        1_100,
        Steer::Hold {
            by: "carol".into(),
            reason: "looking".into(),
        },
    );
    let s = e.observe(at(3_000), busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["escalation_withheld"]);
    assert!(s.action.is_none());
    // #35: past the budget, a release says the shutdown would go now, and takes `--now`.
    let refused = e
        .steer(at(3_050), Steer::Release { now: false })
        .unwrap_err();
    assert!(refused.contains("release t --now"), "{refused}");
    assert!(e.live(at(3_060)).hold.is_some(), "still held");
    let said = e.steer(at(3_100), Steer::Release { now: true }).unwrap();
    assert!(said.contains("SHUTDOWN NOSAVE"), "{said}");
    assert_eq!(e.next_deadline(), Some(3_000), "due at once");
    assert!(matches!(
        e.observe(at(3_200), busy(SCRIPT_BUSY)).action,
        Some(Action::Shutdown(_))
    ));
    // Approve: ahead of the budget, with the guards.
    let mut e = engine_with(rules());
    e.observe(at(1_000), busy(SCRIPT_BUSY));
    e.observe(
        at(1_001),
        Observation::KillReply(KillReply::Unkillable("UNKILLABLE".into())),
    );
    steer(&mut e, 1_100, Steer::Approve);
    assert!(matches!(
        e.observe(at(1_150), busy(SCRIPT_BUSY)).action,
        Some(Action::Shutdown(_))
    ));
    assert!(
        Engine::new(rules()).steer(at(0), Steer::Approve).is_err(),
        "nothing to approve"
    );
}

#[test]
fn then_ask_requests_an_approval_and_applies_the_default_at_its_timeout() {
    let ask = Rules {
        then: Then::Ask,
        ask_timeout: 5_000,
        ask_default: Resort::Shutdown,
        ..rules()
    };
    let mut e = engine_with(ask.clone());
    e.observe(at(1_000), busy(SCRIPT_BUSY));
    e.observe(
        at(1_001),
        Observation::KillReply(KillReply::Unkillable("UNKILLABLE".into())),
    );
    let s = e.observe(at(3_000), busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["approval_requested"]);
    assert!(s.action.is_none());
    assert_eq!(e.next_deadline(), Some(8_000));
    assert!(e.observe(at(7_999), busy(SCRIPT_BUSY)).action.is_none());
    assert!(matches!(
        e.observe(at(8_000), busy(SCRIPT_BUSY)).action,
        Some(Action::Shutdown(_))
    ));
    // With an answer: at once.
    let mut e = engine_with(ask);
    e.observe(at(1_000), busy(SCRIPT_BUSY));
    e.observe(
        at(1_001),
        Observation::KillReply(KillReply::Unkillable("UNKILLABLE".into())),
    );
    e.observe(at(3_000), busy(SCRIPT_BUSY));
    steer(&mut e, 3_100, Steer::Approve);
    assert!(matches!(
        e.observe(at(3_150), busy(SCRIPT_BUSY)).action,
        Some(Action::Shutdown(_))
    ));
}

#[test]
fn a_failover_never_rests_on_a_snapshot_restored_from_the_trail() {
    // An earlier run saw a Cluster primary with a replica in sync, then stopped mid-incident.
    let mut e = engine_seeing(failover_rules(false, Resort::Notify), with_replica(true));
    let steps = vec![(at(1_000), e.observe(at(1_000), busy(SCRIPT_BUSY)))];
    let history = trail_of(&steps);
    let mut fresh = Engine::new(failover_rules(false, Resort::Notify));
    fresh.resume(&history, restarted(1_000, 0));
    fresh.observe(restarted(1_000, 1), busy(SCRIPT_BUSY));
    fresh.observe(
        restarted(1_000, 2),
        Observation::KillReply(KillReply::Unkillable("UNKILLABLE".into())),
    );
    let s = fresh.observe(restarted(1_000, 2_001), busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["failover_failed", "escalation_withheld"]);
    assert!(
        s.events[0].detail.to_value()["reason"]
            .as_str()
            .unwrap()
            .contains("restored from the trail"),
        "{:?}",
        s.events[0]
    );
    assert!(s.action.is_none());
}

/// The incident's end waits for what the server tells after it, and the engine, not the
/// watchdog, tells another client's kill from the script's own end: the server counted more
/// kills than this incident sent.
#[test]
fn the_recovered_record_waits_for_the_server_and_names_another_clients_kill() {
    let counted = |kills: u64| Snapshot {
        kill_calls: Some(kills),
        busy_errors: Some(10),
        ..snapshot("7.0.15", "run-a")
    };
    let mut e = engine_seeing(
        Rules {
            kill_after: 60_000,
            wait: 120_000,
            ..rules()
        },
        counted(3),
    );
    assert_eq!(
        names(&e.observe(at(100), busy(SCRIPT_BUSY))),
        ["busy_detected"]
    );
    let s = e.observe(at(900), pong());
    assert!(s.events.is_empty(), "{:?}", names(&s));
    assert_eq!(s.inquiry, Some(Inquiry::AfterRecovery));
    let told = AfterRecovery {
        snapshot: Ok(Snapshot {
            busy_errors: Some(17),
            ..counted(4)
        }),
        slowlog: Ok(Vec::new()),
    };
    let s = e.observe(at(902), Observation::AfterRecovery(Ok(Box::new(told))));
    assert_eq!(names(&s), ["recovered"]);
    let r = s.events[0].detail.to_value();
    assert_eq!(r["how"], "killed by another client", "{r}");
    assert_eq!(r["forensics"]["served_during_incident"]["kill_calls"], 1);
    assert_eq!(r["forensics"]["served_during_incident"]["busy_replies"], 7);
    // Its own kill counts as its own: the same growth after busyguard's kill is no one else's.
    let mut e = engine_seeing(rules(), counted(3));
    e.observe(at(100), busy(SCRIPT_BUSY));
    e.observe(
        at(101),
        Observation::KillReply(KillReply::Error(
            "NOTBUSY No scripts in execution right now.".into(),
        )),
    );
    e.observe(at(150), pong());
    let told = AfterRecovery {
        snapshot: Ok(counted(4)),
        slowlog: Ok(Vec::new()),
    };
    let s = e.observe(at(151), Observation::AfterRecovery(Ok(Box::new(told))));
    assert_eq!(s.events[0].detail.to_value()["how"], "ended by itself");
}

/// A busy FCALL asks FUNCTION STATS with its kill, and the answer names the function in the
/// `unkillable` record: the engine writes it, no one patches the record afterwards.
#[test]
fn a_busy_function_is_named_from_function_stats_in_its_unkillable_record() {
    let mut e = engine_with(rules());
    let s = e.observe(at(10), busy(FUNCTION_BUSY));
    assert_eq!(s.inquiry, Some(Inquiry::RunningFunction));
    assert_eq!(s.action, Some(Action::Kill(KillCommand::FunctionKill)));
    let seen = RunningFunction::Seen {
        name: Some("compact".into()),
        command: Some(vec!["FCALL".into(), "compact".into(), "0".into()]),
        duration_ms: Some(250),
    };
    assert!(
        e.observe(at(11), Observation::RunningFunction(seen))
            .events
            .is_empty()
    );
    let s = e.observe(
        at(12),
        Observation::KillReply(KillReply::Unkillable("UNKILLABLE Sorry".into())),
    );
    assert_eq!(s.events[0].detail.to_value()["function"], "compact");
    let s = observed(&mut e, at(500), pong());
    assert_eq!(
        s.events[0].detail.to_value()["forensics"]["function"]["name"],
        "compact"
    );
}

fn seen(name: &str) -> Observation {
    Observation::RunningFunction(RunningFunction::Seen {
        name: Some(name.into()),
        command: None,
        duration_ms: None,
    })
}

fn with_script_rules() -> Rules {
    let rule = |function: &str, kill_after: Option<u64>, never_kill: bool| {
        crate::policy::scripts::ScriptRule {
            names: crate::policy::scripts::Names::Function(function.into()),
            kill_after: kill_after.map(std::time::Duration::from_millis),
            never_kill,
            wait: Some(std::time::Duration::from_millis(10_000)),
            then: Some(Then::Notify),
        }
    };
    Rules {
        scripts: vec![
            rule("nightly_compact", Some(1_000), false),
            rule("migrate_*", None, true),
        ],
        function_rules: true,
        ..rules()
    }
}

/// #29: with script rules, the kill of a busy FCALL waits for FUNCTION STATS (never longer:
/// the watchdog bounds it) and then follows the rule that names the function: a longer
/// `kill_after`, or `never_kill` (the kill withheld and recorded, the rule's wait and `then`).
#[test]
fn a_script_rule_that_names_the_running_function_sets_its_ladder() {
    let mut e = engine_with(with_script_rules());
    let s = e.observe(at(10), busy(FUNCTION_BUSY));
    assert_eq!(s.inquiry, Some(Inquiry::Identify { within_ms: 300 }));
    assert_eq!(s.action, None, "the kill waits for the name");
    // Named: the rule's kill_after (1 s) applies; no kill yet.
    let s = e.observe(at(11), seen("nightly_compact"));
    assert_eq!(s.action, None, "{:?}", s.events);
    let s = e.observe(at(600), busy(FUNCTION_BUSY));
    assert_eq!(s.action, None);
    let s = e.observe(at(1_010), busy(FUNCTION_BUSY));
    assert_eq!(s.action, Some(Action::Kill(KillCommand::FunctionKill)));
    let sent = s.events[0].detail.to_value();
    assert_eq!(sent["policy"]["script_rule"], "nightly_compact");
    assert_eq!(sent["policy"]["kill_after_ms"], 1_000);
    // A job never to interrupt: the kill is withheld and said, only the rule's wait applies.
    let mut e = engine_with(with_script_rules());
    e.observe(at(10), busy(FUNCTION_BUSY));
    let s = e.observe(at(11), seen("migrate_users"));
    assert_eq!(s.action, None);
    let withheld = s.events[0].detail.to_value();
    assert_eq!(withheld["withheld_action"], "kill", "{withheld}");
    assert!(withheld["reason"].as_str().unwrap().contains("never_kill"));
    let s = e.observe(at(3_000), busy(FUNCTION_BUSY));
    assert_eq!(
        s.action, None,
        "the instance's wait (2 s) no longer applies"
    );
    let s = e.observe(at(10_020), busy(FUNCTION_BUSY));
    assert_eq!(s.action, None, "the rule's then: notify sends nothing");
    assert!(
        s.events
            .iter()
            .any(|ev| ev.kind().name() == "escalation_withheld")
    );
}

/// #36: a pod that stops kills what its ladder spares: a `never_kill` job already withheld, and
/// one whose rule's `kill_after` has not yet passed, each at the next BUSY reply (the grace
/// period ends in SIGKILL, which loses more than the kill).
#[test]
fn a_stopping_pod_kills_what_the_ladder_spares() {
    let mut e = engine_with(with_script_rules());
    e.observe(at(10), busy(FUNCTION_BUSY));
    e.observe(at(11), seen("migrate_users"));
    let s = e.observe(at(100), busy(FUNCTION_BUSY));
    assert_eq!(s.action, None, "never_kill");
    let said = e.steer(at(150), Steer::Stopping).unwrap();
    assert!(said.contains("killed at the next BUSY reply"), "{said}");
    let s = e.observe(at(200), busy(FUNCTION_BUSY));
    assert_eq!(s.action, Some(Action::Kill(KillCommand::FunctionKill)));

    let mut e = engine_with(with_script_rules());
    e.steer(at(5), Steer::Stopping).unwrap();
    let s = e.observe(at(10), busy(FUNCTION_BUSY));
    assert_eq!(
        s.action,
        Some(Action::Kill(KillCommand::FunctionKill)),
        "no wait for a name that could only spare it"
    );
}

/// A rule never applies on a guess: a function no rule names, or FUNCTION STATS unanswered,
/// gets the instance's ladder, and the kill goes as soon as the answer (or its bound) is in.
#[test]
fn an_unnamed_or_unknown_function_gets_the_instances_ladder() {
    for answer in [
        seen("other"),
        Observation::RunningFunction(RunningFunction::Unknown("no reply within 20ms".into())),
    ] {
        let mut e = engine_with(with_script_rules());
        e.observe(at(10), busy(FUNCTION_BUSY));
        let s = e.observe(at(15), answer);
        assert_eq!(s.action, Some(Action::Kill(KillCommand::FunctionKill)));
        assert!(s.events[0].detail.to_value()["policy"]["script_rule"].is_null());
    }
    // An EVAL is never named: its kill goes at once, no question asked.
    let mut e = engine_with(with_script_rules());
    let s = e.observe(at(10), busy(SCRIPT_BUSY));
    assert_eq!(s.inquiry, None);
    assert_eq!(s.action, Some(Action::Kill(KillCommand::ScriptKill)));
}

/// The answer, come at `t` on connection `conn`, to a command sent `waited` ms before.
fn on(e: &mut Engine, conn: u64, t: Millis, waited: Millis, obs: Observation) -> Step {
    e.observe_from(
        at(t),
        Source {
            conn,
            sent: t - waited,
        },
        obs,
    )
}

/// A BUSY stretch probed every 40 ms (a quarter of... well under the threshold, 200 ms) on
/// connection `conn`, from `from` to `to`: the steps' record names, all of them.
fn busy_through(e: &mut Engine, conn: u64, from: Millis, to: Millis) -> Vec<&'static str> {
    let mut seen = Vec::new();
    let mut t = from;
    while t <= to {
        seen.extend(names(&on(e, conn, t, 1, busy(SCRIPT_BUSY))));
        t += 40;
    }
    seen
}

fn unkillable() -> Observation {
    Observation::KillReply(KillReply::Unkillable("UNKILLABLE Sorry".into()))
}

/// #25.1: script A writes and ends inside its budget, script B (read-only) follows at once:
/// the PING queued behind B's silent phase waits about a threshold. That is another script:
/// the incident is superseded and B gets its kill; A's budget is not B's.
#[test]
fn a_script_boundary_hidden_in_a_busy_stretch_gets_a_kill_not_a_shutdown() {
    let mut e = engine_with(rules());
    assert_eq!(
        names(&on(&mut e, 1, 1_000, 200, busy(SCRIPT_BUSY))),
        ["busy_detected", "kill_sent"]
    );
    on(&mut e, 1, 1_001, 1, unkillable());
    assert!(busy_through(&mut e, 1, 1_040, 1_600).is_empty());
    // A ended at 1_610, B started; the next PING (sent at 1_640) waits for B's threshold.
    let s = on(&mut e, 1, 1_810, 170, busy(SCRIPT_BUSY));
    assert_eq!(
        names(&s),
        ["incident_superseded", "busy_detected", "kill_sent"]
    );
    assert_eq!(s.action, Some(Action::Kill(KillCommand::ScriptKill)));
    let reason = s.events[0].detail.to_value()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("came 210 ms after the last"), "{reason}");
    // A's budget (2 s from 1_000) ends: no shutdown. B answers its kill: +OK, and is gone.
    on(&mut e, 1, 1_812, 1, Observation::KillReply(KillReply::Ok));
    assert!(
        busy_through(&mut e, 1, 1_840, 3_100)
            .iter()
            .all(|n| *n != "shutdown_sent")
    );
}

/// #25.1: a BUSY of another kind (a script's text, then a function's) is another script.
#[test]
fn a_busy_reply_of_another_kind_is_another_script() {
    let mut e = engine_with(rules());
    on(&mut e, 1, 1_000, 200, busy(SCRIPT_BUSY));
    on(&mut e, 1, 1_001, 1, unkillable());
    busy_through(&mut e, 1, 1_040, 1_500);
    let s = on(&mut e, 1, 1_540, 1, busy(FUNCTION_BUSY));
    assert_eq!(
        names(&s),
        ["incident_superseded", "busy_detected", "kill_sent"]
    );
    assert_eq!(s.action, Some(Action::Kill(KillCommand::FunctionKill)));
}

/// #25.2 and #25.4: a reconnect may reach another server (a VIP moved to the new primary) or
/// the same one: the verdicts of the old connection do not carry over; the kill goes again.
#[test]
fn a_new_connection_owes_a_kill_before_any_shutdown() {
    let mut e = engine_with(rules());
    on(&mut e, 1, 1_000, 200, busy(SCRIPT_BUSY));
    on(&mut e, 1, 1_001, 1, unkillable());
    busy_through(&mut e, 1, 1_040, 1_900);
    // The connection is lost; a new one answers BUSY at once, past the old budget.
    let s = on(&mut e, 2, 3_100, 1, busy(SCRIPT_BUSY));
    assert_eq!(
        names(&s),
        ["incident_superseded", "busy_detected", "kill_sent"]
    );
    // Its own UNKILLABLE, and its own budget, before a shutdown.
    on(&mut e, 2, 3_101, 1, unkillable());
    assert!(
        busy_through(&mut e, 2, 3_140, 5_060)
            .iter()
            .all(|n| *n != "shutdown_sent")
    );
    assert_eq!(busy_through(&mut e, 2, 5_100, 5_100), ["shutdown_sent"]);
}

/// #25.2: a lost kill is a kill owed: the reconnected probe's BUSY sends it again.
#[test]
fn a_lost_kill_is_sent_again_on_the_new_connection() {
    let mut e = engine_with(rules());
    on(&mut e, 1, 1_000, 200, busy(SCRIPT_BUSY));
    on(
        &mut e,
        1,
        1_005,
        5,
        Observation::KillReply(KillReply::Lost("reset".into())),
    );
    let s = on(&mut e, 2, 1_100, 1, busy(SCRIPT_BUSY));
    assert_eq!(
        s.action,
        Some(Action::Kill(KillCommand::ScriptKill)),
        "{:?}",
        names(&s)
    );
}

/// #25.2: a shutdown lost on the way (a reset) that the server survived (BUSY on a new
/// connection) may go once more, not counted for `limits`; the retry is not retried. A remote
/// server may be another behind the same address on the new connection: the retry waits a
/// budget of its own.
#[test]
fn a_lost_shutdown_the_server_survived_may_go_once_more() {
    let mut e = engine_with(Rules {
        local_server: false,
        ..rules()
    });
    on(&mut e, 1, 1_000, 200, busy(SCRIPT_BUSY));
    on(&mut e, 1, 1_001, 1, unkillable());
    busy_through(&mut e, 1, 1_040, 2_960);
    assert_eq!(
        names(&on(&mut e, 1, 3_000, 1, busy(SCRIPT_BUSY))),
        ["shutdown_sent"]
    );
    let lost = ShutdownOutcome::Failed("connection reset".into());
    let s = on(&mut e, 1, 3_003, 3, Observation::Shutdown(lost.clone()));
    assert_eq!(names(&s), ["action_failed"]);
    let s = on(&mut e, 2, 3_100, 1, busy(SCRIPT_BUSY));
    assert_eq!(
        names(&s),
        ["incident_superseded", "busy_detected", "kill_sent"]
    );
    let reason = s.events[0].detail.to_value()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("may go once more"), "{reason}");
    on(&mut e, 2, 3_101, 1, unkillable());
    busy_through(&mut e, 2, 3_140, 5_060);
    // max_shutdowns is 1 per hour: the lost one no longer counts.
    assert_eq!(
        names(&on(&mut e, 2, 5_100, 1, busy(SCRIPT_BUSY))),
        ["shutdown_sent"]
    );
    on(&mut e, 2, 5_103, 3, Observation::Shutdown(lost));
    // Lost again and survived: this one counts; the next is withheld by `limits`.
    on(&mut e, 3, 5_200, 1, busy(SCRIPT_BUSY));
    on(&mut e, 3, 5_201, 1, unkillable());
    busy_through(&mut e, 3, 5_240, 7_160);
    let s = on(&mut e, 3, 7_200, 1, busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["escalation_withheld"]);
    assert!(
        s.events[0].detail.to_value()["reason"]
            .as_str()
            .unwrap()
            .starts_with("limits")
    );
}

/// #37: a local server's shutdown found lost (BUSY on new connections) goes again at the first
/// BUSY reply on the next connection when that reply shows the same script (within a
/// threshold of the last BUSY seen): the spent budget and the kill's answer stand. A reply
/// later than that is maybe another script's: a budget of its own. Either retry goes once.
#[test]
fn a_lost_shutdown_of_the_same_local_script_goes_again_at_once() {
    let lost = |e: &mut Engine| {
        on(e, 1, 1_000, 200, busy(SCRIPT_BUSY));
        on(e, 1, 1_001, 1, unkillable());
        busy_through(e, 1, 1_040, 2_960);
        assert_eq!(
            names(&on(e, 1, 3_000, 1, busy(SCRIPT_BUSY))),
            ["shutdown_sent"]
        );
        let unlanded = ShutdownOutcome::Unlanded("still BUSY on new connections".into());
        let s = on(e, 1, 3_040, 3, Observation::Shutdown(unlanded));
        assert_eq!(names(&s), ["action_failed"]);
        assert!(
            s.events[0].detail.to_value()["note"]
                .as_str()
                .unwrap()
                .contains("it had no effect")
        );
    };
    let mut e = engine_with(rules());
    lost(&mut e);
    // 150 ms after BUSY was last seen (through the endpoint), on the next connection.
    let s = on(&mut e, 2, 3_190, 1, busy(SCRIPT_BUSY));
    assert_eq!(
        names(&s),
        ["incident_superseded", "busy_detected", "shutdown_sent"]
    );
    let reason = s.events[0].detail.to_value()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("the same script"), "{reason}");
    assert!(matches!(s.action, Some(Action::Shutdown(_))));
    // Lost again: not retried.
    let again = ShutdownOutcome::Unlanded("still BUSY".into());
    let s = on(&mut e, 2, 3_195, 3, Observation::Shutdown(again));
    assert!(
        s.events[0].detail.to_value()["note"]
            .as_str()
            .unwrap()
            .contains("not sent again")
    );

    // 300 ms: beyond the 200 ms threshold, another script may have drawn it.
    let mut e = engine_with(rules());
    lost(&mut e);
    let s = on(&mut e, 2, 3_340, 1, busy(SCRIPT_BUSY));
    assert_eq!(
        names(&s),
        ["incident_superseded", "busy_detected", "kill_sent"]
    );
}

/// #25.1: an operator's approval is for the script it was given for.
#[test]
fn an_approval_does_not_carry_over_to_the_next_script() {
    let mut e = engine_with(Rules {
        wait: 60_000,
        ..rules()
    });
    on(&mut e, 1, 1_000, 200, busy(SCRIPT_BUSY));
    on(&mut e, 1, 1_001, 1, unkillable());
    e.steer(at(1_010), Steer::Approve).unwrap();
    let s = on(&mut e, 1, 1_040, 1, busy(SCRIPT_BUSY));
    assert_eq!(
        names(&s),
        ["shutdown_sent"],
        "approved: it goes at the next BUSY reply"
    );
    // Had it been held up (say the shutdown was refused), the next script is not approved.
    let mut e = engine_with(Rules {
        wait: 60_000,
        ..rules()
    });
    on(&mut e, 1, 1_000, 200, busy(SCRIPT_BUSY));
    on(&mut e, 1, 1_001, 1, unkillable());
    busy_through(&mut e, 1, 1_040, 1_160);
    e.steer(at(1_170), Steer::Approve).unwrap();
    let s = on(&mut e, 1, 1_380, 170, busy(SCRIPT_BUSY));
    assert_eq!(
        names(&s),
        ["incident_superseded", "busy_detected", "kill_sent"]
    );
    on(&mut e, 1, 1_201, 1, unkillable());
    assert!(
        busy_through(&mut e, 1, 1_240, 3_000)
            .iter()
            .all(|n| *n != "shutdown_sent")
    );
}

/// #25.5: a BUSY reply that took long to come back is no evidence the script still runs when
/// the SHUTDOWN arrives: said once, and the next fresh reply decides.
#[test]
fn a_late_reply_is_no_ground_for_a_shutdown() {
    let mut e = engine_with(rules());
    // A slow path: every reply takes 120 ms (the fastest round trip: no queueing).
    on(&mut e, 1, 1_000, 320, busy(SCRIPT_BUSY));
    on(&mut e, 1, 1_120, 120, unkillable());
    let mut t = 1_160;
    while t < 3_000 {
        on(&mut e, 1, t, 120, busy(SCRIPT_BUSY));
        t += 40;
    }
    let s = on(&mut e, 1, 3_040, 120, busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["escalation_withheld"]);
    assert!(
        s.events[0].detail.to_value()["reason"]
            .as_str()
            .unwrap()
            .contains("its round trip is 120 ms")
    );
    assert!(s.action.is_none());
    assert!(
        names(&on(&mut e, 1, 3_080, 120, busy(SCRIPT_BUSY))).is_empty(),
        "said once"
    );
    // A fast one comes: the shutdown rests on it.
    assert_eq!(
        names(&on(&mut e, 1, 3_100, 10, busy(SCRIPT_BUSY))),
        ["shutdown_sent"]
    );
}

/// One input of a probed timeline for the continuity properties.
#[derive(Clone, Debug)]
enum Probed {
    /// A BUSY reply, probed on cadence and answered at once.
    Busy,
    /// A BUSY reply that broke continuity: (kind is a function's, how: 0 queued PING, 1 idle
    /// probe, 2 a new connection).
    Break(bool, u8),
    Kill(u8),
    ShutdownLost,
    Pong,
}

fn any_probed() -> impl Strategy<Value = Vec<Probed>> {
    proptest::collection::vec(
        prop_oneof![
            6 => Just(Probed::Busy),
            1 => (any::<bool>(), 0u8..3).prop_map(|(f, how)| Probed::Break(f, how)),
            2 => (0u8..3).prop_map(Probed::Kill),
            1 => Just(Probed::ShutdownLost),
            1 => Just(Probed::Pong),
        ],
        1..120,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// #25: no shutdown after broken continuity (a queued PING, an idle probe, a new connection,
    /// another kind) without a new UNKILLABLE on the current connection; a lost kill is always
    /// sent again before any shutdown.
    #[test]
    fn no_shutdown_without_an_unkillable_since_continuity_broke(steps in any_probed()) {
        let mut e = engine_with(Rules { max_shutdowns: 100, ..rules() });
        let (mut t, mut conn) = (1_000u64, 1u64);
        let mut function = false;
        let mut unkillable_since_break = false;
        let mut kill_owed = false;
        let mut kill_sent = false;
        for input in steps {
            let step = match input {
                Probed::Busy => {
                    t += 40;
                    let text = if function { FUNCTION_BUSY } else { SCRIPT_BUSY };
                    on(&mut e, conn, t, 1, busy(text))
                }
                Probed::Break(f, how) => {
                    unkillable_since_break = false;
                    let waited = match how {
                        // Queued behind a new script's silent phase: a threshold and more
                        // after the last BUSY reply.
                        0 => {
                            t += 170;
                            170
                        }
                        1 => {
                            t += 200;
                            1
                        }
                        _ => {
                            conn += 1;
                            1
                        }
                    };
                    t += 40;
                    function = f;
                    let text = if function { FUNCTION_BUSY } else { SCRIPT_BUSY };
                    on(&mut e, conn, t, waited, busy(text))
                }
                Probed::Kill(k) if kill_sent => {
                    kill_sent = false;
                    t += 1;
                    let reply = match k {
                        0 => KillReply::Ok,
                        1 => KillReply::Unkillable("UNKILLABLE Sorry".into()),
                        _ => KillReply::Lost("reset".into()),
                    };
                    let lost = matches!(reply, KillReply::Lost(_));
                    let unk = matches!(reply, KillReply::Unkillable(_));
                    let s = on(&mut e, conn, t, 1, Observation::KillReply(reply));
                    if lost {
                        kill_owed = true;
                        unkillable_since_break = false;
                        conn += 1;
                    }
                    if unk {
                        unkillable_since_break = true;
                    }
                    s
                }
                Probed::Kill(_) => Step::default(),
                Probed::ShutdownLost => {
                    t += 3;
                    let s = on(&mut e, conn, t, 3, Observation::Shutdown(ShutdownOutcome::Failed("reset".into())));
                    conn += 1;
                    unkillable_since_break = false;
                    s
                }
                Probed::Pong => {
                    t += 40;
                    unkillable_since_break = false;
                    observed(&mut e, at(t), pong())
                }
            };
            match &step.action {
                Some(Action::Kill(_)) => {
                    kill_sent = true;
                    kill_owed = false;
                }
                Some(Action::Shutdown(_)) => {
                    prop_assert!(!kill_owed, "a shutdown before the lost kill was sent again");
                    prop_assert!(unkillable_since_break, "a shutdown without an UNKILLABLE since continuity broke");
                }
                _ => {}
            }
        }
    }
}

/// #25.6: `guards.max_unsaved_changes` decides on a count read with the probe just before the
/// script; a count as old as the last snapshot is no ground for a shutdown.
#[test]
fn the_unsaved_changes_guard_needs_a_count_from_just_before_the_script() {
    let guarded = || Rules {
        guards: Guards {
            max_unsaved_changes: Some(1_000),
            ..Guards::default()
        },
        ..rules()
    };
    let ladder = |e: &mut Engine, from: Millis| {
        on(e, 1, from, 200, busy(SCRIPT_BUSY));
        on(e, 1, from + 1, 1, unkillable());
        busy_through(e, 1, from + 40, from + 1_960);
        on(e, 1, from + 2_000, 1, busy(SCRIPT_BUSY))
    };
    // The snapshot's count (10 changes, at 0) is 9 s older than the script: withheld.
    let mut e = engine_with(guarded());
    let s = ladder(&mut e, 9_000);
    assert_eq!(names(&s), ["escalation_withheld"]);
    let w = s.events[0].detail.to_value();
    assert_eq!(w["missing"], "rdb_changes_since_last_save", "{w}");
    // The probe's count, read just before the script: 2000 writes came since the snapshot.
    let mut e = engine_with(guarded());
    on(
        &mut e,
        1,
        8_750,
        1,
        Observation::Unsaved {
            changes: 2_000,
            aof: false,
        },
    );
    let s = ladder(&mut e, 9_000);
    assert!(
        s.events[0].detail.to_value()["reason"]
            .as_str()
            .unwrap()
            .contains("2000 unsaved changes"),
        "{:?}",
        s.events[0].detail.to_value()
    );
    // Under the bound, it goes.
    let mut e = engine_with(guarded());
    on(
        &mut e,
        1,
        8_750,
        1,
        Observation::Unsaved {
            changes: 20,
            aof: false,
        },
    );
    assert_eq!(names(&ladder(&mut e, 9_000)), ["shutdown_sent"]);
}

/// #26.4: just before the request each candidate is asked its offset (given time to catch up);
/// one still behind the primary's last known offset by more than `failover.max_lag` is not
/// promoted, and with none left the fallback applies; the lag is in the records.
#[test]
fn a_replica_behind_more_than_max_lag_is_not_promoted() {
    // An unkillable script on a primary `seen` as this, at the end of its budget (2 s).
    let at_the_budget = |seen: Snapshot| {
        let mut e = engine_seeing(
            Rules {
                failover_max_lag: 100,
                ..failover_rules(true, Resort::Notify)
            },
            seen,
        );
        e.observe(at(0), busy(SCRIPT_BUSY));
        e.observe(at(1), unkillable());
        let s = e.observe(at(2_000), busy(SCRIPT_BUSY));
        (e, s)
    };
    let (_, s) = at_the_budget(with_replica(false));
    assert!(s.events.is_empty() && s.action.is_none(), "{:?}", names(&s));
    let Some(Inquiry::ReplicaOffsets {
        replicas,
        primary_offset,
        within_ms,
    }) = s.inquiry
    else {
        panic!("{s:?}")
    };
    assert_eq!(
        (replicas.as_slice(), primary_offset, within_ms),
        (["10.0.0.7:6380".to_string()].as_slice(), 1_000, 5_000)
    );
    // 2009 bytes of 20000 writes: 17991 behind.
    let (mut e, _) = at_the_budget(Snapshot {
        master_repl_offset: Some(20_000),
        ..with_replica(false)
    });
    let s = e.observe(
        at(2_300),
        Observation::ReplicaOffsets(vec![("10.0.0.7:6380".into(), Some(2_009))]),
    );
    assert!(s.events.is_empty(), "the next BUSY reply decides");
    let s = e.observe(at(2_301), busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["failover_failed", "escalation_withheld"]);
    let reason = s.events[0].detail.to_value()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("10.0.0.7:6380 17991 bytes"), "{reason}");
    // Within the bound: requested, the lag told; the promotion says what may be lost.
    let (mut e, _) = at_the_budget(with_replica(false));
    e.observe(
        at(2_300),
        Observation::ReplicaOffsets(vec![("10.0.0.7:6380".into(), Some(960))]),
    );
    assert!(
        e.next_deadline().is_some_and(|d| d <= 2_300),
        "told: probe at once"
    );
    let s = e.observe(at(2_301), busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["failover_requested"]);
    assert_eq!(
        s.events[0].detail.to_value()["replicas"][0]["behind_bytes"],
        40
    );
    let s = e.observe(
        at(2_500),
        Observation::Failover(FailoverOutcome::Promoted {
            successor: successor("10.0.0.7:6380", "run-new"),
            seen_by: "ROLE on the replica".into(),
        }),
    );
    assert_eq!(s.events[0].detail.to_value()["may_lose_bytes"], 40);
}

/// #33.6: a rehearsal in dry-run (the README's way in) never spends enforce's limits: neither
/// in the engine that made it (a reload to `mode: enforce`) nor read back from the trail after
/// a restart. Under dry-run the rehearsals count against each other, as enforce would.
#[test]
fn a_dry_run_rehearsal_spends_nothing_of_enforces_limits() {
    let dry = Rules {
        dry_run: true,
        ..rules()
    };
    let unkillable = Observation::KillReply(KillReply::Unkillable("UNKILLABLE".into()));
    let mut e = engine_with(dry.clone());
    let mut steps = Vec::new();
    for (t, obs) in [
        (1_000, busy(SCRIPT_BUSY)),
        (1_001, unkillable.clone()),
        (3_000, busy(SCRIPT_BUSY)),
    ] {
        steps.push((at(t), e.observe(at(t), obs)));
    }
    assert_eq!(names(&steps[2].1), ["shutdown_sent"]);
    assert!(steps[2].1.events[0].dry_run);
    // Under dry-run, a second rehearsal within `per` is withheld, as enforce would be.
    e.observe(at(3_100), pong());
    e.observe(at(4_000), busy(SCRIPT_BUSY));
    e.observe(at(4_001), unkillable.clone());
    let s = e.observe(at(6_000), busy(SCRIPT_BUSY));
    assert_eq!(names(&s), ["escalation_withheld"], "{:?}", s.events);
    // A reload to enforce: the rehearsals do not count.
    e.set_rules(rules());
    e.observe(at(6_100), pong());
    e.observe(at(7_000), busy(SCRIPT_BUSY));
    e.observe(at(7_001), unkillable.clone());
    let s = e.observe(at(9_000), busy(SCRIPT_BUSY));
    assert!(
        matches!(s.action, Some(Action::Shutdown(_))),
        "{:?}",
        s.events
    );
    // Read back from the trail: a rehearsal, not a shutdown.
    let history = trail_of(&steps);
    assert!(history.shutdowns.is_empty(), "{history:?}");
    assert_eq!(history.rehearsals, vec![at(3_000).unix_ms]);
    let mut fresh = Engine::new(rules());
    fresh.resume(&history, restarted(3_500, 0));
    let live = fresh.live(restarted(3_500, 0));
    let limits = live.limits.unwrap();
    assert_eq!((limits.used, limits.rehearsed), (0, 1));
}

/// #33.2: a failed-over primary whose script ends answers as a primary beside its successor: a
/// split brain, always recorded. The fence (`REPLICAOF`, which replaces the dataset) goes only
/// under `then: failover`, or under `shutdown`/`ask` with `topology.fence`; under `then: notify`
/// nothing is ever sent. Never toward the server answering here when it is the successor
/// itself (an address that leads elsewhere now).
#[test]
fn a_split_brain_is_fenced_only_as_far_as_the_policy_allows() {
    let snap = Snapshot {
        master_replid: Some("replid-a".into()),
        ..snapshot("7.0.15", "run-a")
    };
    for (then, fence, fenced) in [
        (Then::Failover, false, true),
        (Then::Shutdown, false, false),
        (Then::Shutdown, true, true),
        (Then::Ask, true, true),
        (Then::Notify, true, false),
        (Then::Notify, false, false),
    ] {
        let mut e = engine_seeing(
            Rules {
                then,
                fence,
                ..rules()
            },
            snap.clone(),
        );
        e.observe(at(1_000), busy(SCRIPT_BUSY));
        e.observe(
            at(1_001),
            Observation::KillReply(KillReply::Unkillable("UNKILLABLE".into())),
        );
        let s = e.observe(
            at(1_100),
            Observation::Demoted {
                successor: successor("10.0.0.7:6380", "run-new"),
                by: "sentinel",
            },
        );
        assert_eq!(names(&s), ["role_changed"]);
        let note = s.events[0].detail.to_value()["note"].to_string();
        assert_eq!(
            note.contains("sends it nothing"),
            then == Then::Notify,
            "{note}"
        );
        let s = observed(&mut e, at(1_200), pong());
        let case = format!("then {then:?}, fence {fence}: {:?}", s.events);
        assert_eq!(names(&s)[0], "split_brain", "{case}");
        let split = s.events[0].detail.to_value();
        match fenced {
            true => {
                assert_eq!(split["fence"], "REPLICAOF 10.0.0.7 6380", "{case}");
                let Some(Action::Fence(plan)) = &s.action else {
                    panic!("{case}")
                };
                assert_eq!(plan.successor.run_id, "run-new");
                assert!(plan.lineage.is_this_server("run-a"));
            }
            false => {
                assert!(split["fence"].is_null(), "{case}");
                assert!(split["not_fenced"].is_string(), "{case}");
                assert!(s.action.is_none(), "{case}");
                assert_eq!(names(&s)[1], "recovered", "{case}");
                assert_eq!(
                    s.events[1].detail.to_value()["how"],
                    "still a primary, not fenced"
                );
            }
        }
    }
    // The server answering now is the successor itself: no split brain, no fence.
    let mut e = engine_seeing(failover_rules(true, Resort::Notify), snap.clone());
    e.observe(at(1_000), busy(SCRIPT_BUSY));
    e.observe(
        at(1_001),
        Observation::KillReply(KillReply::Unkillable("UNKILLABLE".into())),
    );
    e.observe(
        at(1_100),
        Observation::Demoted {
            successor: successor("10.0.0.7:6380", "run-new"),
            by: "sentinel",
        },
    );
    let moved = Snapshot {
        run_id: Some("run-new".into()),
        ..snap
    };
    let s = observed(
        &mut e,
        at(1_200),
        Observation::Pong {
            snapshot: Some(Box::new(moved)),
        },
    );
    assert!(!names(&s).contains(&"split_brain"), "{:?}", s.events);
    assert!(s.action.is_none());
}

/// #33.3: a takeover the earlier run verified survives a restart of busyguard: the old
/// primary is fenced at its first healthy answer (no snapshot of this run needed), whether that
/// answer ends the resumed incident or one that superseded it at a BUSY reply; the zombie's
/// shutdown waits for this run's own word.
#[test]
fn a_verified_takeover_survives_a_restart_and_fences_at_the_first_healthy_answer() {
    let snap = Snapshot {
        master_replid: Some("replid-a".into()),
        ..snapshot("7.0.15", "run-a")
    };
    let rules = failover_rules(true, Resort::Notify);
    let mut e = engine_seeing(rules.clone(), snap);
    let mut steps = Vec::new();
    for (t, obs) in [
        (1_000, busy(SCRIPT_BUSY)),
        (
            1_001,
            Observation::KillReply(KillReply::Unkillable("UNKILLABLE".into())),
        ),
        (
            1_500,
            Observation::Demoted {
                successor: successor("10.0.0.7:6380", "run-new"),
                by: "sentinel",
            },
        ),
    ] {
        steps.push((at(t), e.observe(at(t), obs)));
    }
    let history = trail_of(&steps);
    let open = history.open_incident.as_ref().unwrap();
    assert_eq!(
        open.successor.as_ref().map(|s| s.run_id.as_str()),
        Some("run-new")
    );
    for first_busy in [false, true] {
        let mut fresh = Engine::new(rules.clone());
        fresh.resume(&history, restarted(1_600, 0));
        assert!(fresh.lineage().is_this_server("run-a"), "from the trail");
        if first_busy {
            let s = fresh.observe(restarted(1_600, 10), busy(SCRIPT_BUSY));
            assert_eq!(
                names(&s),
                ["incident_superseded", "busy_detected", "kill_sent"]
            );
            fresh.observe(
                restarted(1_600, 11),
                Observation::KillReply(KillReply::Unkillable("UNKILLABLE".into())),
            );
            // Past the new budget: no zombie shutdown on the earlier run's word.
            let s = observed(&mut fresh, restarted(1_600, 2_100), busy(SCRIPT_BUSY));
            assert!(
                !matches!(s.action, Some(Action::Shutdown(_))),
                "{:?}",
                s.events
            );
        }
        let s = observed(&mut fresh, restarted(1_600, 3_000), pong());
        assert_eq!(names(&s)[0], "split_brain", "{:?}", s.events);
        let Some(Action::Fence(plan)) = &s.action else {
            panic!("{s:?}")
        };
        assert_eq!(plan.text(), "REPLICAOF 10.0.0.7 6380");
    }
}

/// #33.1: a shutdown the gate held back (its record written, its BUSY reply no longer fresh
/// when it would have left) is recorded as not sent, does not count for `limits` (in this run,
/// nor read back from the trail), and the next fresh BUSY reply decides again.
#[test]
fn a_shutdown_the_gate_held_back_is_not_counted_and_decided_again() {
    let mut e = engine_with(rules());
    let mut steps = Vec::new();
    let s = run_to_budget(&mut e, 1_000);
    assert!(matches!(s.action, Some(Action::Shutdown(_))));
    steps.push((at(3_000), s));
    let s = e.observe(
        at(3_400),
        Observation::NotSent {
            action: d::WithheldAction::Shutdown,
            reason: "a PING asked again was answered".into(),
            missing: "a fresh BUSY reply".into(),
        },
    );
    assert_eq!(names(&s), ["escalation_withheld"]);
    let held = s.events[0].detail.to_value();
    assert_eq!(held["withheld_action"], "shutdown", "{held}");
    assert_eq!(held["missing"], "a fresh BUSY reply", "{held}");
    steps.push((at(3_400), s));
    assert_eq!(e.live(at(3_400)).limits.unwrap().used, 0);
    let history = trail_of(&steps);
    assert!(history.shutdowns.is_empty(), "{history:?}");
    // Decided again on the next fresh BUSY reply (max_shutdowns 1: not spent).
    let s = e.observe(at(3_440), busy(SCRIPT_BUSY));
    assert!(
        matches!(s.action, Some(Action::Shutdown(_))),
        "{:?}",
        s.events
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// #33.7: whatever the order of observations, restarts of busyguard (the trail read back
    /// into a new engine) and Sentinel's answers: a fence goes only on a healthy answer, toward
    /// a successor a verified-takeover observation named (in this run or before the restart),
    /// under a policy that fences; a shutdown or a failover request only on the BUSY reply that
    /// just arrived, carrying it as its evidence.
    #[test]
    fn no_fence_failover_or_shutdown_without_its_evidence(
        rules in any_rules(),
        fence in any::<bool>(),
        before in any_run(),
        after in any_run(),
        restart in any::<bool>(),
    ) {
        let rules = Rules { fence, ..rules };
        let may_fence = match rules.then {
            Then::Failover => true,
            Then::Shutdown | Then::Ask => fence,
            Then::Notify => false,
        };
        let mut named: Vec<String> = Vec::new();
        let mut e = engine_with(rules.clone());
        let mut steps: Vec<(At, Step)> = Vec::new();
        let end = before.last().map_or(0, |(t, _)| *t);
        let timeline = before
            .iter()
            .map(|(t, o)| (false, at(*t), o.clone()))
            .chain(after.iter().map(|(t, o)| (true, restarted(end, *t + 1), o.clone())));
        let mut restarted_yet = false;
        for (in_after, when, obs) in timeline {
            if in_after && !restarted_yet && restart {
                restarted_yet = true;
                let history = trail_of(&steps);
                e = Engine::new(rules.clone());
                e.resume(&history, restarted(end, 0));
            }
            match &obs {
                Observation::Demoted { successor, .. }
                | Observation::Failover(FailoverOutcome::Promoted { successor, .. }) => {
                    named.push(successor.address.clone());
                }
                _ => {}
            }
            let step = observed(&mut e, when, obs.clone());
            match &step.action {
                Some(Action::Fence(plan)) => {
                    prop_assert!(may_fence, "a fence under {:?} (fence {fence})", rules.then);
                    prop_assert!(
                        matches!(obs, Observation::Pong { .. } | Observation::Unsaved { .. }),
                        "a fence after {obs:?}"
                    );
                    prop_assert!(named.contains(&plan.successor.address), "{plan:?} never verified");
                }
                Some(Action::Shutdown(command)) => {
                    prop_assert!(matches!(obs, Observation::Busy { .. }), "a shutdown after {obs:?}");
                    let seen = command.evidence.expect("a shutdown carries its BUSY reply");
                    prop_assert_eq!(seen.at, when.mono);
                }
                Some(Action::Failover(plan)) => {
                    prop_assert!(matches!(obs, Observation::Busy { .. }), "a failover after {obs:?}");
                    prop_assert_eq!(plan.evidence.at, when.mono);
                }
                _ => {}
            }
            steps.push((when, step));
        }
    }
}

/// #34.1: a job whose hooks are far apart answers FUNCTION STATS too late for its kill (the
/// instance's ladder sends FUNCTION KILL, UNKILLABLE: it wrote). FUNCTION STATS is asked again
/// at each BUSY reply; its name, when it comes, still sets the rule's `wait` and `then`: no
/// shutdown at the instance's budget.
#[test]
fn a_name_that_comes_after_the_kill_still_sets_the_escalation() {
    let mut e = engine_with(Rules {
        wait: 2_000,
        then: Then::Shutdown,
        ..with_script_rules()
    });
    e.observe(at(10), busy(FUNCTION_BUSY));
    let s = e.observe(
        at(310),
        Observation::RunningFunction(RunningFunction::Unknown("no reply within 300ms".into())),
    );
    assert_eq!(s.action, Some(Action::Kill(KillCommand::FunctionKill)));
    e.observe(
        at(311),
        Observation::KillReply(KillReply::Unkillable("UNKILLABLE".into())),
    );
    // Asked again at the next BUSY reply, named this time.
    let s = e.observe(at(350), busy(FUNCTION_BUSY));
    assert_eq!(s.inquiry, Some(Inquiry::Identify { within_ms: 300 }));
    e.observe(at(480), seen("migrate_users"));
    // Past the instance's 2 s budget: the rule's 10 s wait holds, nothing is sent.
    let s = e.observe(at(2_100), busy(FUNCTION_BUSY));
    assert!(s.action.is_none(), "{:?}", s.events);
    assert!(s.inquiry.is_none(), "named: not asked again");
    // At the rule's budget, its `then: notify`, which the record says was named late.
    let s = e.observe(at(10_020), busy(FUNCTION_BUSY));
    assert_eq!(names(&s), ["escalation_withheld"]);
    let policy = &s.events[0].detail.to_value()["policy"];
    assert_eq!(policy["script_rule"], "migrate_*", "{policy}");
    let said = policy["script"].as_str().unwrap();
    assert!(said.contains("named after the kill went"), "{said}");
    assert!(said.contains("470 ms after the first BUSY reply"), "{said}");
}

/// #35: `approve` after a withheld escalation sends what the notification promised: the
/// operator's approval lifts `limits` (never the guards), and the answer says so; ps says what
/// withholds it and that approve sends it anyway. A guard that would hold it back is said at
/// once, and nothing changes.
#[test]
fn approve_after_a_withhold_by_limits_sends_the_shutdown_and_says_so() {
    let mut e = engine_with(rules());
    assert!(matches!(
        run_to_budget(&mut e, 0).action,
        Some(Action::Shutdown(_))
    ));
    e.observe(at(2_100), pong());
    // The second incident within the hour: withheld by limits.
    let s = run_to_budget(&mut e, 3_000);
    assert_eq!(names(&s), ["escalation_withheld"]);
    let next = e.live(at(5_010)).next.unwrap();
    assert!(
        next.contains("limits") && next.contains("busyguard approve t"),
        "{next}"
    );
    let said = e.steer(at(5_020), Steer::Approve).unwrap();
    assert!(
        said.starts_with("SHUTDOWN NOSAVE at the next BUSY reply"),
        "{said}"
    );
    assert!(said.contains("lifts `limits`"), "{said}");
    let s = e.observe(at(5_060), busy(SCRIPT_BUSY));
    assert!(
        matches!(s.action, Some(Action::Shutdown(_))),
        "{:?}",
        s.events
    );
    // A guard the approval keeps: refused now, with its reason.
    let mut e = engine_seeing(rules(), replicated_without_persistence());
    run_to_budget(&mut e, 0);
    let refused = e.steer(at(2_010), Steer::Approve).unwrap_err();
    assert!(refused.contains("guards.allow_empty_restart"), "{refused}");
}
