//! What each kind of receiver is sent for a record: Slack incoming-webhook messages, PagerDuty
//! Events API v2 events, and Standard Webhooks 1.0 signed webhooks. Pure functions of the record,
//! so they are tested field by field without a network.

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::event::EventKind;
use crate::policy::{PagerDutySeverities, ReceiverKind, Severity};

/// PagerDuty's limit on `payload.summary`.
pub const PAGERDUTY_SUMMARY_MAX: usize = 1024;

/// One HTTP request to make.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// The request for `record` (its exact trail line is `line`), or `None` when this kind of
/// receiver does not take this event (PagerDuty has no use for `kill_sent`).
pub fn request(
    kind: &ReceiverKind,
    record: &Value,
    line: &str,
    now_unix_s: u64,
) -> Option<Request> {
    let json_header = ("content-type".to_string(), "application/json".to_string());
    match kind {
        ReceiverKind::Slack { url } => Some(Request {
            url: url.expose().to_string(),
            headers: vec![json_header],
            body: slack(record).to_string(),
        }),
        ReceiverKind::PagerDuty {
            routing_key,
            events_url,
            severity,
        } => Some(Request {
            url: events_url.clone(),
            headers: vec![json_header],
            body: pagerduty(record, routing_key.expose(), severity)?.to_string(),
        }),
        ReceiverKind::Webhook { url, secret } => {
            let body = json!({
                "type": format!("busyguard.{}", record["event"].as_str().unwrap_or("")),
                "timestamp": record["ts"],
                "data": record,
            })
            .to_string();
            let id = webhook_id(line);
            let mut headers = vec![
                json_header,
                ("webhook-id".into(), id.clone()),
                ("webhook-timestamp".into(), now_unix_s.to_string()),
            ];
            if let Some(secret) = secret {
                headers.push((
                    "webhook-signature".into(),
                    sign(secret.expose(), &id, now_unix_s, &body),
                ));
            }
            Some(Request {
                url: url.expose().to_string(),
                headers,
                body,
            })
        }
    }
}

/// Whether a 2xx answer means the receiver took it (Slack answers `ok`; PagerDuty 202).
pub fn accepted(kind: &ReceiverKind, status: u16, body: &str) -> bool {
    match kind {
        ReceiverKind::Slack { .. } => status == 200 && body.trim() == "ok",
        ReceiverKind::PagerDuty { .. } => status == 202,
        ReceiverKind::Webhook { .. } => (200..300).contains(&status),
    }
}

/// The same id on every retry of one record: derived from its exact line.
pub fn webhook_id(line: &str) -> String {
    format!(
        "msg_{}",
        &hex::encode(Sha256::digest(line.as_bytes()))[..32]
    )
}

/// Standard Webhooks: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`, keyed with the base64
/// part of the secret after `whsec_`.
pub fn sign(secret: &str, id: &str, timestamp: u64, body: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap_or_else(|_| secret.as_bytes().to_vec());
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", b64.encode(mac.finalize().into_bytes()))
}

/// Slack's escaping of user-supplied text in mrkdwn.
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn ms(v: &Value) -> String {
    v.as_u64().map_or("-".into(), |m| format!("{m} ms"))
}

/// A one-line human title for a record.
pub fn title(record: &Value) -> String {
    let d = &record["detail"];
    let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
    match record["event"].as_str().unwrap_or("") {
        "busy_detected" => format!("BUSY: a {} has run past the threshold", s("busy_kind")),
        "kill_sent" => format!("{} sent", s("command")),
        "killed" => format!("{} ended the script", s("command")),
        "unkillable" => "the script already wrote: UNKILLABLE".into(),
        "shutdown_sent" => format!("{} sent: the budget is spent", s("command")),
        "shutdown_confirmed" => "the server is down (SHUTDOWN confirmed)".into(),
        "escalation_withheld" => "escalation withheld".into(),
        "hang_detected" => "no reply, and no BUSY: the server hangs".into(),
        "signal_sent" => format!("{} sent to the hung server", s("signal")),
        "unreachable" => "the server is unreachable".into(),
        "recovered" => format!("recovered ({})", s("how")),
        "action_failed" => "an action failed".into(),
        "probe_fault" => "configuration fault".into(),
        other => other.to_string(),
    }
}

/// What the policy will do next, and when.
fn next_step(record: &Value) -> String {
    let d = &record["detail"];
    let p = &d["policy"];
    match record["event"].as_str().unwrap_or("") {
        "busy_detected" if d["busy_kind"] == "module" => {
            format!(
                "no kill exists for a module; budget ends in {}",
                ms(&d["budget_left_ms"])
            )
        }
        "busy_detected" => format!("kill after {}", ms(&p["kill_after_ms"])),
        "kill_sent" => "confirm with the next PING".into(),
        "unkillable" | "action_failed" if d["then"] == "shutdown" => {
            format!(
                "SHUTDOWN NOSAVE in {} unless the script ends",
                ms(&d["budget_left_ms"])
            )
        }
        "unkillable" => format!(
            "wait {} then notify; never shut down",
            ms(&d["budget_left_ms"])
        ),
        "shutdown_sent" => "confirm the server refuses connections".into(),
        "shutdown_confirmed" => "wait for the server to come back".into(),
        "escalation_withheld" => "nothing more: a human decides".into(),
        "hang_detected" | "unreachable" => "keep probing".into(),
        _ => "none".into(),
    }
}

/// The outcome or reason worth showing, escaped for Slack.
fn outcome(record: &Value) -> String {
    let d = &record["detail"];
    let text = ["reason", "reply", "how", "warning"]
        .iter()
        .find_map(|k| d[*k].as_str())
        .unwrap_or("-");
    slack_escape(text)
}

fn slack(record: &Value) -> Value {
    let instance = slack_escape(record["instance"].as_str().unwrap_or("-"));
    let incident = slack_escape(record["incident"].as_str().unwrap_or("-"));
    let dry = if record["dry_run"] == true {
        " [dry run: not sent]"
    } else {
        ""
    };
    let title = slack_escape(&title(record));
    let text = format!("busyguard {instance}: {title}{dry}");
    let field =
        |name: &str, value: String| json!({"type": "mrkdwn", "text": format!("*{name}*\n{value}")});
    json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{instance}*: {title}{dry}")}},
            {"type": "section", "fields": [
                field("Instance", instance.clone()),
                field("State", format!("`{}`", record["event"].as_str().unwrap_or(""))),
                field("Action and outcome", outcome(record)),
                field("Elapsed since first BUSY", ms(&record["detail"]["since_first_busy_ms"])),
                field("Next step", slack_escape(&next_step(record))),
                field("Incident", format!("{incident} · seq {}", record["seq"])),
            ]},
        ],
    })
}

/// What PagerDuty is sent for an event: a trigger at some severity, a resolve, or nothing.
enum PagerDutyAction {
    Trigger(Severity),
    Resolve,
}

/// The one mapping of events to PagerDuty actions, for building requests and for filtering.
fn pagerduty_action(event: &str, severity: &PagerDutySeverities) -> Option<PagerDutyAction> {
    Some(match event {
        "recovered" => PagerDutyAction::Resolve,
        "busy_detected" | "hang_detected" | "unreachable" => {
            PagerDutyAction::Trigger(severity.busy)
        }
        "unkillable" => PagerDutyAction::Trigger(severity.unkillable),
        "shutdown_sent"
        | "shutdown_confirmed"
        | "escalation_withheld"
        | "action_failed"
        | "signal_sent" => PagerDutyAction::Trigger(severity.escalated),
        _ => return None,
    })
}

/// Whether this kind of receiver takes `record` at all (PagerDuty has no use for `kill_sent`,
/// nor for a record outside an incident), without building the request.
pub fn takes(kind: &ReceiverKind, record: &Value) -> bool {
    match kind {
        ReceiverKind::PagerDuty { severity, .. } => {
            record["incident"].is_string()
                && record["event"]
                    .as_str()
                    .is_some_and(|e| pagerduty_action(e, severity).is_some())
        }
        _ => true,
    }
}

fn pagerduty(record: &Value, routing_key: &str, severity: &PagerDutySeverities) -> Option<Value> {
    let event = record["event"].as_str()?;
    let incident = record["incident"].as_str()?;
    let instance = record["instance"].as_str().unwrap_or("-");
    let level = match pagerduty_action(event, severity)? {
        PagerDutyAction::Resolve => {
            return Some(
                json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": incident}),
            );
        }
        PagerDutyAction::Trigger(level) => level,
    };
    let dry = if record["dry_run"] == true {
        " [dry run]"
    } else {
        ""
    };
    let summary: String = format!("busyguard {instance}: {}{dry}", title(record))
        .chars()
        .take(PAGERDUTY_SUMMARY_MAX)
        .collect();
    let mut details = record["detail"].clone();
    details["seq"] = record["seq"].clone();
    details["event"] = json!(event);
    details["dry_run"] = record["dry_run"].clone();
    Some(json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": incident,
        "payload": {
            "summary": summary,
            "source": instance,
            "severity": level.name(),
            "timestamp": record["ts"],
            "component": "redis",
            "group": instance,
            "class": event,
            "custom_details": details,
        },
    }))
}

/// Whether a record goes to a receiver with this filter at all.
pub fn wanted(filter: &crate::policy::Filter, record: &Value) -> bool {
    let Some(name) = record["event"].as_str() else {
        return false;
    };
    let listed = match &filter.events {
        Some(names) => names.iter().any(|n| n == name),
        None => EventKind::from_name(name).is_some_and(EventKind::notifiable),
    };
    let severe = EventKind::from_name(name).is_some_and(|k| k.severity() >= filter.min_severity);
    listed && severe
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Secret, Severity};

    fn record(event: &str) -> Value {
        json!({"ts": "2026-11-26T23:00:00.000Z", "seq": 7, "instance": "cache-01",
               "incident": "cache-01-1-1", "event": event, "dry_run": false,
               "detail": {"reply": "BUSY <x> & y", "busy_kind": "script", "since_first_busy_ms": 12,
                          "policy": {"kill_after_ms": 0}}})
    }

    #[test]
    fn slack_escapes_user_text_and_has_a_fallback() {
        let kind = ReceiverKind::Slack {
            url: Secret::new("http://x"),
        };
        let req = request(&kind, &record("busy_detected"), "{}", 0).unwrap();
        let body: Value = serde_json::from_str(&req.body).unwrap();
        assert_eq!(
            body["text"],
            "busyguard cache-01: BUSY: a script has run past the threshold"
        );
        let fields = body["blocks"][1]["fields"].to_string();
        assert!(
            fields.contains("BUSY &amp;lt;x&amp;gt; &amp;amp; y")
                || fields.contains("BUSY &lt;x&gt; &amp; y"),
            "{fields}"
        );
        assert!(accepted(&kind, 200, "ok") && !accepted(&kind, 200, "no_service"));
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
        let t: Value = serde_json::from_str(
            &request(&kind, &record("busy_detected"), "", 0)
                .unwrap()
                .body,
        )
        .unwrap();
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["dedup_key"], "cache-01-1-1");
        assert_eq!(t["payload"]["severity"], "warning");
        let r: Value =
            serde_json::from_str(&request(&kind, &record("recovered"), "", 0).unwrap().body)
                .unwrap();
        assert_eq!(r["event_action"], "resolve");
        assert!(request(&kind, &record("kill_sent"), "", 0).is_none());
        for event in [
            "busy_detected",
            "recovered",
            "kill_sent",
            "killed",
            "probe_fault",
        ] {
            let r = record(event);
            assert_eq!(
                takes(&kind, &r),
                request(&kind, &r, "", 0).is_some(),
                "{event}"
            );
        }
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
}
