//! The formats' tests: payloads field by field, without a network.

use super::*;
use crate::event::Event;
use crate::event::detail::{
    BusyDetected, DecisionInputs, KillSent, Killed, ProbeFault, Recovered, RecoveredHow,
};
use crate::policy::Secret;

fn ctx() -> Context {
    Context {
        host: "redis-7".into(),
        runbook_url: Some("https://wiki.example/busy".into()),
        server: None,
    }
}

fn record(detail: Detail) -> Record {
    Record {
        ts: "2026-11-26T23:00:00.000Z".into(),
        seq: 7,
        prev: "0".into(),
        version: "0".into(),
        event: Event {
            instance: Some("cache-01".into()),
            incident: Some("cache-01-1-1".into()),
            dry_run: false,
            policy: None,
            detail,
        },
    }
}

fn busy() -> Record {
    record(
        BusyDetected {
            inputs: DecisionInputs {
                since_first_busy_ms: Some(12),
                ..DecisionInputs::default()
            },
            reply: "BUSY <x> & y".into(),
            busy_kind: BusyKind::Script,
            warning: None,
            supersedes: None,
        }
        .into(),
    )
}

fn recovered() -> Record {
    record(
        Recovered {
            how: RecoveredHow::Killed,
            kill_reply: None,
            duration_ms: 1,
            since_first_busy_ms: None,
            restarted: None,
            run_id: None,
            forensics: None,
        }
        .into(),
    )
}

fn kill_sent() -> Record {
    record(
        KillSent {
            inputs: DecisionInputs::default(),
            command: "SCRIPT KILL".into(),
            reply_seen: "BUSY".into(),
        }
        .into(),
    )
}

#[test]
fn slack_escapes_user_text_and_has_a_fallback() {
    let kind = ReceiverKind::Slack {
        url: Secret::new("http://x"),
    };
    let req = request(&kind, &busy(), "{}", 0, &ctx()).unwrap();
    let body: Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(
        body["text"],
        "busyguard cache-01 on redis-7: BUSY: a script has run past the threshold"
    );
    let fields = body["blocks"][1]["fields"].to_string();
    assert!(fields.contains("BUSY &lt;x&gt; &amp; y"), "{fields}");
    assert!(fields.contains("12ms"), "{fields}");
    assert!(
        body["blocks"][2]
            .to_string()
            .contains("https://wiki.example/busy|Runbook")
    );
    assert!(accepted(200) && accepted(202) && !accepted(404) && !accepted(302));
}

#[test]
fn pagerduty_triggers_resolves_and_skips() {
    let sev = PagerDutySeverities {
        busy: Severity::Warning,
        unkillable: Severity::Error,
        escalated: Severity::Critical,
    };
    let kind = ReceiverKind::PagerDuty {
        routing_key: Secret::new("rk"),
        events_url: "http://pd".into(),
        severity: sev,
    };
    let t: Value =
        serde_json::from_str(&request(&kind, &busy(), "", 0, &ctx()).unwrap().body).unwrap();
    assert_eq!(t["event_action"], "trigger");
    assert_eq!(t["dedup_key"], "cache-01-1-1");
    assert_eq!(t["payload"]["severity"], "warning");
    assert_eq!(t["payload"]["custom_details"]["seq"], 7);
    assert_eq!(t["payload"]["source"], "redis-7");
    assert_eq!(t["links"][0]["href"], "https://wiki.example/busy");
    let r: Value =
        serde_json::from_str(&request(&kind, &recovered(), "", 0, &ctx()).unwrap().body).unwrap();
    assert_eq!(r["event_action"], "resolve");
    assert!(request(&kind, &kill_sent(), "", 0, &ctx()).is_none());
    let killed = record(
        Killed {
            command: "SCRIPT KILL".into(),
            confirmed_ms_after_reply: 1,
            since_first_busy_ms: None,
        }
        .into(),
    );
    let fault = record(
        ProbeFault::Fault {
            reply: "NOPERM".into(),
            note: "n".into(),
        }
        .into(),
    );
    for r in [busy(), recovered(), kill_sent(), killed, fault] {
        assert_eq!(
            takes(&kind, &r),
            request(&kind, &r, "", 0, &ctx()).is_some(),
            "{:?}",
            r.kind()
        );
    }
}

#[test]
fn webhook_data_is_the_trail_line() {
    let kind = ReceiverKind::Webhook {
        url: Secret::new("http://x"),
        secret: None,
    };
    let r = busy();
    let line = String::from_utf8(r.to_line()).unwrap();
    let body: Value =
        serde_json::from_str(&request(&kind, &r, &line, 0, &ctx()).unwrap().body).unwrap();
    assert_eq!(body["type"], "busyguard.busy_detected");
    assert_eq!(body["data"], serde_json::from_str::<Value>(&line).unwrap());
}

#[test]
fn webhook_signature_is_stable_per_record() {
    let sig = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        r#"{"test": 2432232314}"#,
    );
    // The example from the Standard Webhooks specification.
    assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    assert_eq!(webhook_id("a"), webhook_id("a"));
    assert_ne!(webhook_id("a"), webhook_id("b"));
}

mod paged {
    use super::*;
    use crate::event::Event;
    use crate::event::detail::{DecisionInputs, HangDetected};

    #[test]
    fn a_dedup_key_is_triggered_once_per_raise_of_its_severity_until_its_resolve() {
        let record = Record {
            ts: "2026-11-26T23:00:00.000Z".into(),
            seq: 1,
            prev: String::new(),
            version: String::new(),
            event: Event {
                instance: Some("i".into()),
                incident: Some("i-1".into()),
                dry_run: false,
                policy: None,
                detail: HangDetected {
                    inputs: DecisionInputs::default(),
                    silent_ms: 1,
                }
                .into(),
            },
        };
        let body = |severity: &str| {
            json!({"event_action": "trigger", "payload": {"severity": severity}}).to_string()
        };
        let mut paged = Paged::default();
        let severity =
            |b: String| serde_json::from_str::<Value>(&b).unwrap()["payload"]["severity"].clone();
        let severity = |b: Option<String>| severity(b.expect("a trigger"));
        assert_eq!(severity(paged.raise(&record, body("warning"))), "warning");
        assert_eq!(severity(paged.raise(&record, body("critical"))), "critical");
        // One trigger per change of severity: not lower, not the same again.
        assert_eq!(paged.raise(&record, body("warning")), None);
        assert_eq!(paged.raise(&record, body("critical")), None);
        paged.raise(&record, json!({"event_action": "resolve"}).to_string());
        assert_eq!(severity(paged.raise(&record, body("warning"))), "warning");
        // A trigger given up: the next goes, even at the same severity.
        paged.forget(&record);
        assert_eq!(severity(paged.raise(&record, body("warning"))), "warning");
    }
}

#[test]
fn the_server_is_named_as_itself_in_slack_and_pagerduty() {
    let mut on_valkey = busy();
    if let Detail::BusyDetected(d) = &mut on_valkey.event.detail {
        d.inputs.snapshot = Some(crate::model::snapshot::Snapshot {
            server_name: "valkey".into(),
            version: Some("8.0.1".into()),
            ..Default::default()
        });
    }
    let slack = ReceiverKind::Slack {
        url: Secret::new("http://x"),
    };
    let body: Value =
        serde_json::from_str(&request(&slack, &on_valkey, "{}", 0, &ctx()).unwrap().body).unwrap();
    let fields = body["blocks"][1]["fields"].to_string();
    assert!(fields.contains("*Server*\\nvalkey 8.0.1"), "{fields}");
    let pd = ReceiverKind::PagerDuty {
        routing_key: Secret::new("rk"),
        events_url: "http://pd".into(),
        severity: PagerDutySeverities {
            busy: Severity::Warning,
            unkillable: Severity::Error,
            escalated: Severity::Critical,
        },
    };
    let t: Value =
        serde_json::from_str(&request(&pd, &on_valkey, "", 0, &ctx()).unwrap().body).unwrap();
    assert_eq!(t["payload"]["component"], "valkey");
    // Without a snapshot: redis, and no Server field.
    let t: Value =
        serde_json::from_str(&request(&pd, &busy(), "", 0, &ctx()).unwrap().body).unwrap();
    assert_eq!(t["payload"]["component"], "redis");
}
