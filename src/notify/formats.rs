//! What each kind of receiver is sent for a record: Slack incoming-webhook messages, PagerDuty
//! Events API v2 events, and Standard Webhooks 1.0 signed webhooks. Pure functions of the record,
//! so they are tested field by field without a network.

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::audit::Record;
use crate::event::detail::{ActionFailed, ProbeFault, RecoveredHow};
use crate::event::{Detail, EventKind, Severity};
use crate::model::kinds::{BusyKind, FaultCause, Then};
use crate::policy::{PagerDutySeverities, ReceiverKind};

/// PagerDuty's limit on `payload.summary`.
pub const PAGERDUTY_SUMMARY_MAX: usize = 1024;

/// One HTTP request to make.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// What a message says beside the record: where it comes from, and where to read what to do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Context {
    /// The host busyguard runs on.
    pub host: String,
    pub runbook_url: Option<String>,
    /// The server (`redis 7.0.15`), as the last record that named it said: a record without a
    /// snapshot of its own (a shutdown confirmed, a recovery) still names it.
    pub server: Option<String>,
}

/// The server a record's snapshot names, if it carries one.
pub fn server_identity(record: &Record) -> Option<String> {
    snapshot(record).map(|s| s.identity())
}

/// The request for `record` (its exact trail line is `line`), or `None` when this kind of
/// receiver does not take this event (PagerDuty has no use for `kill_sent`).
pub fn request(
    kind: &ReceiverKind,
    record: &Record,
    line: &str,
    now_unix_s: u64,
    ctx: &Context,
) -> Option<Request> {
    let json_header = ("content-type".to_string(), "application/json".to_string());
    match kind {
        ReceiverKind::Slack { url } => Some(Request {
            url: url.expose().to_string(),
            headers: vec![json_header],
            body: slack(record, ctx).to_string(),
        }),
        ReceiverKind::PagerDuty {
            routing_key,
            events_url,
            severity,
        } => Some(Request {
            url: events_url.clone(),
            headers: vec![json_header],
            body: pagerduty(record, routing_key.expose(), severity, ctx)?.to_string(),
        }),
        ReceiverKind::Webhook { url, secret } => {
            // `data` is the record exactly as the trail holds it.
            let data: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            let body = json!({
                "type": format!("busyguard.{}", record.kind().name()),
                "timestamp": record.ts,
                "host": ctx.host,
                "data": data,
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

/// Whether the receiver took it: any 2xx (Slack answers `200 ok`, PagerDuty `202`), whatever
/// the body says or does after the status line.
pub fn accepted(status: u16) -> bool {
    (200..300).contains(&status)
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

fn ms(v: Option<u64>) -> String {
    v.map_or("-".into(), crate::model::duration::human_ms)
}

/// A one-line human title for a record.
pub fn title(record: &Record) -> String {
    use Detail as D;
    match &record.event.detail {
        D::BusyDetected(d) => format!(
            "BUSY: a {} has run past the threshold",
            busy_kind_name(d.busy_kind)
        ),
        D::KillSent(d) => format!("{} sent", d.command),
        D::Killed(d) => format!("{} ended the script", d.command),
        D::Unkillable(d) if d.replicated => "a script replayed from the master: UNKILLABLE".into(),
        D::Unkillable(d) if d.function.is_some() => format!(
            "function `{}` already wrote: UNKILLABLE",
            d.function.as_deref().unwrap_or("")
        ),
        D::Unkillable(_) => "the script already wrote: UNKILLABLE".into(),
        D::ShutdownSent(d) => format!("{} sent: the budget is spent", d.command),
        D::ShutdownConfirmed(_) => "the server is down (SHUTDOWN confirmed)".into(),
        D::EscalationWithheld(_) => "escalation withheld".into(),
        D::HangDetected(_) => "no reply, and no BUSY: the server hangs".into(),
        D::SignalSent(d) => format!("{} sent to the hung server", d.signal),
        D::Unreachable(_) => "the server is unreachable".into(),
        D::Recovered(d) if d.how == RecoveredHow::RestartedByOther => {
            "the server restarted (a new run id), not by busyguard: what it had not saved is gone"
                .into()
        }
        D::Recovered(d) => format!("recovered ({})", d.how.text()),
        D::ActionFailed(_) => "an action failed".into(),
        D::ProbeFault(ProbeFault::Fault { reply, .. }) => match FaultCause::of(reply) {
            FaultCause::Login => {
                "busyguard's login is refused: it cannot see BUSY on this server".into()
            }
            FaultCause::Rights => "busyguard lacks a right on this server".into(),
            FaultCause::Other => "configuration fault".into(),
        },
        D::ProbeFault(ProbeFault::LoginRefused { .. }) => {
            "busyguard's password is refused at its re-check: it goes blind at the next reconnect"
                .into()
        }
        D::ProbeFault(_) => "configuration fault".into(),
        D::IncidentSuperseded(_) => {
            "closed: what busyguard knew of it may not hold now (another script, another server, or a restart); a new incident follows".into()
        }
        D::TrailFault(_) => "the audit trail cannot be written (or was replaced)".into(),
        D::SlowScript(_) => "a slow script, before BUSY".into(),
        D::OperatorCommand(d) => format!("{} by {}", d.command, d.by_user),
        D::ApprovalRequested(_) => "the budget is spent: a shutdown waits for approval".into(),
        D::RoleChanged(d) => format!("failed over by {}: {} is the primary now", d.by, d.primary),
        D::FailoverRequested(d) => format!("failover requested: {}", d.request),
        D::FailoverCompleted(d) => format!(
            "failed over: {} is the primary now; the busy old primary is shut down next",
            d.new_primary
        ),
        D::FailoverFailed(d) => format!("no failover: {}", d.reason),
        D::SplitBrain(d) => match (&d.fence, &d.not_fenced) {
            (Some(fence), _) => format!(
                "TWO PRIMARIES: this server answers as a primary after {} took over; fenced with {fence}",
                d.new_primary
            ),
            (None, why) => format!(
                "TWO PRIMARIES: this server answers as a primary after {} took over; NOT fenced ({}): make it a replica (REPLICAOF {}) or stop it by hand",
                d.new_primary,
                why.as_deref().unwrap_or("-"),
                d.new_primary.replace(':', " ")
            ),
        },
        D::WatchdogStarted(_)
        | D::WatchdogStopped(_)
        | D::PolicyLoaded(_)
        | D::PolicyRejected(_)
        | D::NotifyFailed(_) => record.kind().name().to_string(),
    }
}

fn busy_kind_name(kind: BusyKind) -> &'static str {
    match kind {
        BusyKind::Script => "script",
        BusyKind::Function => "function",
        BusyKind::Module => "module",
        BusyKind::Unknown => "command of unknown kind",
    }
}

/// What the policy will do next, when (on the wall clock), and what stops it.
fn next_step(record: &Record) -> String {
    use Detail as D;
    let detail = &record.event.detail;
    let instance = record.event.instance.as_deref().unwrap_or("INSTANCE");
    let at = |left: Option<u64>| match (record.unix_ms(), left) {
        (Some(ts), Some(left)) => {
            format!(
                "at {} (in {})",
                crate::model::clock::rfc3339(ts + left),
                crate::model::duration::human_ms(left)
            )
        }
        _ => "when the budget ends".into(),
    };
    let budget_end = at(detail.budget_left_ms());
    let stops = format!(
        "the script ending stops it; `busyguard hold {instance} --reason ...` keeps the server up"
    );
    match detail {
        D::BusyDetected(d) if d.busy_kind == BusyKind::Module => {
            format!("no kill exists for a module; the budget ends {budget_end}")
        }
        D::BusyDetected(d) => format!(
            "{} {}",
            match d.busy_kind {
                BusyKind::Function => "FUNCTION KILL",
                _ => "SCRIPT KILL",
            },
            at(Some(d.inputs.policy.kill_after_ms))
        ),
        D::KillSent(_) => "confirm with the next PING".into(),
        D::Unkillable(d) if d.replicated => format!(
            "wait until {budget_end}: the master has already run it; the replica catches up by itself"
        ),
        D::Unkillable(d) | D::ActionFailed(ActionFailed::Kill(d)) => match d.then {
            Then::Shutdown => format!("SHUTDOWN NOSAVE {budget_end}; {stops}"),
            Then::Ask => {
                format!("an operator is asked {budget_end} (`busyguard approve {instance}`)")
            }
            Then::Failover => format!(
                "a replica is promoted {budget_end}, then this server is shut down; {stops}"
            ),
            Then::Notify => format!("notify {budget_end}; never shut down"),
        },
        D::ShutdownSent(_) => "confirm the server refuses connections".into(),
        D::ShutdownConfirmed(_) => "wait for the server to come back".into(),
        D::EscalationWithheld(_) => format!(
            "a human decides: wait for the script, `busyguard approve {instance}` (the policy's guards still apply), or SHUTDOWN NOSAVE by hand (loses unsaved data)"
        ),
        D::ApprovalRequested(d) => format!(
            "`{}` to shut down now, `{}` to keep it up; at {} without an answer: {}",
            d.approve,
            d.hold,
            d.deadline,
            d.default.name()
        ),
        D::HangDetected(_) => "keep probing".into(),
        D::Unreachable(_) => "check the server: is it running (`systemctl status redis-server`, its log), the address and port, a firewall; busyguard keeps probing and says when it answers".into(),
        D::ProbeFault(ProbeFault::LoginRefused { .. }) => format!(
            "{}; until then busyguard acts through the connection it has",
            login_fix()
        ),
        D::ProbeFault(ProbeFault::Fault { reply, .. }) => match FaultCause::of(reply) {
            FaultCause::Login => format!(
                "{}; until then nothing on {instance} is killed",
                login_fix()
            ),
            FaultCause::Rights => "grant the right the reply names to busyguard's Redis user (docs/servers.md lists them); `busyguard status` checks them".into(),
            FaultCause::Other => "read the reply; `busyguard status` on the policy checks the connection and the rights".into(),
        },
        _ => "none".into(),
    }
}

/// What to do when busyguard's credential no longer logs in.
fn login_fix() -> &'static str {
    "make the password busyguard reads (the policy's `redis.password_file`) and the server's (`ACL SETUSER`) the same; under the packaged unit a changed secret file needs `systemctl restart busyguard` (LoadCredential= copies it at start: a reload reads the old copy), run by hand a reload reads it; `busyguard status --credentials DIR` on the policy says when it works"
}

/// What SHUTDOWN NOSAVE would lose, from the decision's snapshot, and how old that count is.
fn data_at_risk(record: &Record) -> String {
    let age = record
        .event
        .detail
        .data_at_risk_age_ms()
        .map(|ms| {
            format!(
                "; counted {} before this, more since if it kept writing",
                crate::model::duration::human_ms(ms)
            )
        })
        .unwrap_or_default();
    match loses(record) {
        told if told == "-" => told,
        told => format!("{told}{age}"),
    }
}

fn loses(record: &Record) -> String {
    use crate::model::snapshot::DataAtRisk as R;
    match record.event.detail.data_at_risk() {
        Some(R::Aof { loses, .. }) | Some(R::None { loses, .. }) => loses.clone(),
        Some(R::Rdb {
            loses,
            rdb_changes_since_last_save,
            ..
        }) => format!(
            "{loses} ({} changes)",
            rdb_changes_since_last_save.map_or("?".into(), |n| n.to_string())
        ),
        Some(R::Unknown) | None => "-".into(),
    }
}

/// The snapshot a decision was made on, for naming the server (`valkey 8.0.1`).
fn snapshot(record: &Record) -> Option<&crate::model::snapshot::Snapshot> {
    record.event.detail.inputs()?.snapshot.as_ref()
}

/// The outcome or reason worth showing, escaped for Slack.
fn outcome(record: &Record) -> String {
    slack_escape(
        &record
            .event
            .detail
            .explanation()
            .unwrap_or_else(|| "-".into()),
    )
}

fn slack(record: &Record, ctx: &Context) -> Value {
    let instance = slack_escape(record.event.instance.as_deref().unwrap_or("-"));
    let incident = slack_escape(record.event.incident.as_deref().unwrap_or("-"));
    let dry = if record.event.dry_run {
        " [dry run: not sent]"
    } else {
        ""
    };
    let title = slack_escape(&title(record));
    let host = slack_escape(&ctx.host);
    let text = format!("busyguard {instance} on {host}: {title}{dry}");
    let field =
        |name: &str, value: String| json!({"type": "mrkdwn", "text": format!("*{name}*\n{value}")});
    let mut fields = vec![
        field("Instance", format!("{instance} on {host}")),
        field("State", format!("`{}`", record.kind().name())),
        field("Action and outcome", outcome(record)),
        field(
            "Elapsed since first BUSY",
            ms(record.event.detail.since_first_busy_ms()),
        ),
        field("Next step", slack_escape(&next_step(record))),
        field("Incident", format!("{incident} · seq {}", record.seq)),
    ];
    if let Some(server) = server_identity(record).or_else(|| ctx.server.clone()) {
        fields.push(field("Server", slack_escape(&server)));
    }
    if record.event.detail.data_at_risk().is_some() {
        fields.push(field(
            "Data at risk (SHUTDOWN NOSAVE)",
            slack_escape(&data_at_risk(record)),
        ));
    }
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{instance}* on {host}: {title}{dry}")}}),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(url) = &ctx.runbook_url {
        blocks.push(json!({"type": "context", "elements": [
            {"type": "mrkdwn", "text": format!("<{}|Runbook>", slack_escape(url))}
        ]}));
    }
    json!({"text": text, "blocks": blocks})
}

/// The highest severity each dedup key was paged at: a later trigger on the same key never goes
/// lower (an escalation stays escalated until the resolve), and goes only when it raises it:
/// one trigger per change of severity (an unkillable script shut down is two, not five). And the keys whose incident left
/// trouble the server's recovery does not end: a SHUTDOWN NOSAVE that lost data, or a split
/// brain busyguard did not fence. Their page is never resolved by busyguard; the recovery is
/// told as an update that says what remains, and an operator resolves it.
#[derive(Debug, Default)]
pub struct Paged {
    top: std::collections::HashMap<String, Severity>,
    /// Per key: the update's summary, and the trigger's `source`.
    unresolved: std::collections::HashMap<String, (String, Value)>,
}

impl Paged {
    /// `body` with its severity raised to the highest already paged for its key, or `None`
    /// when that key was already triggered at that severity; a resolve after a data-losing
    /// shutdown becomes that update. Called once per record (it remembers what was sent).
    pub fn raise(&mut self, record: &Record, body: String) -> Option<String> {
        let Some(key) = dedup_key(record) else {
            return Some(body);
        };
        let Ok(mut json) = serde_json::from_str::<Value>(&body) else {
            return Some(body);
        };
        if json["event_action"] == "resolve" {
            let top = self.top.remove(&key).unwrap_or(Severity::Critical);
            let Some((summary, source)) = self.unresolved.remove(&key) else {
                return Some(body);
            };
            let instance = record.event.instance.as_deref().unwrap_or("-");
            return Some(
                json!({
                    "routing_key": json["routing_key"],
                    "event_action": "trigger",
                    "dedup_key": key,
                    "payload": {
                        "summary": summary.chars().take(PAGERDUTY_SUMMARY_MAX).collect::<String>(),
                        "source": source,
                        "severity": top.name(),
                        "timestamp": record.ts,
                        "group": instance,
                        "class": "recovered",
                    },
                })
                .to_string(),
            );
        }
        let instance = record.event.instance.as_deref().unwrap_or("-");
        let unresolved = match &record.event.detail {
            _ if record.event.dry_run => None,
            Detail::ShutdownSent(sent) => {
                let risk = sent.inputs.data_at_risk.as_ref();
                // With AOF only the script's own writes go: the page may resolve with the server.
                let aof = matches!(risk, Some(crate::model::snapshot::DataAtRisk::Aof { .. }));
                let loses = risk
                    .and_then(|d| d.loses())
                    .unwrap_or("an unknown amount of data (its persistence was not known)");
                (!aof).then(|| format!(
                    "busyguard {instance}: the server is back after busyguard's SHUTDOWN NOSAVE, which lost {loses}; busyguard does not resolve this page: resolve it once the loss is accounted for"
                ))
            }
            Detail::SplitBrain(split) if split.fence.is_none() => Some(format!(
                "busyguard {instance}: its script is over, and it still answers as a primary beside {} (not fenced: {}); busyguard does not resolve this page: resolve it once the server is a replica of the new primary or stopped",
                split.new_primary,
                split.not_fenced.as_deref().unwrap_or("-")
            )),
            _ => None,
        };
        if let Some(summary) = unresolved {
            self.unresolved
                .insert(key.clone(), (summary, json["payload"]["source"].clone()));
        }
        let Some(level) = json["payload"]["severity"]
            .as_str()
            .and_then(Severity::parse)
        else {
            return Some(body);
        };
        match self.top.get(&key) {
            Some(top) if *top >= level => None,
            _ => {
                self.top.insert(key, level);
                json["payload"]["severity"] = json!(level.name());
                Some(json.to_string())
            }
        }
    }
}

impl Paged {
    /// `record`'s trigger was given up: its key's next trigger goes, whatever its severity.
    pub fn forget(&mut self, record: &Record) {
        if let Some(key) = dedup_key(record) {
            self.top.remove(&key);
        }
    }
}

/// What PagerDuty is sent for an event: a trigger at some severity, a resolve, or nothing.
enum PagerDutyAction {
    Trigger(Severity),
    Resolve,
}

/// The one mapping of events to PagerDuty actions, for building requests and for filtering.
fn pagerduty_action(event: EventKind, severity: &PagerDutySeverities) -> Option<PagerDutyAction> {
    use EventKind as K;
    Some(match event {
        K::Recovered | K::IncidentSuperseded => PagerDutyAction::Resolve,
        K::BusyDetected | K::HangDetected | K::Unreachable => {
            PagerDutyAction::Trigger(severity.busy)
        }
        K::Unkillable => PagerDutyAction::Trigger(severity.unkillable),
        K::ShutdownSent
        | K::ShutdownConfirmed
        | K::EscalationWithheld
        | K::ActionFailed
        | K::SignalSent
        | K::TrailFault
        | K::ApprovalRequested
        | K::RoleChanged
        | K::FailoverRequested
        | K::FailoverCompleted
        | K::FailoverFailed
        | K::SplitBrain => PagerDutyAction::Trigger(severity.escalated),
        K::WatchdogStarted
        | K::WatchdogStopped
        | K::PolicyLoaded
        | K::PolicyRejected
        | K::KillSent
        | K::Killed
        | K::NotifyFailed
        | K::ProbeFault
        | K::SlowScript
        | K::OperatorCommand => return None,
    })
}

/// Whether this kind of receiver takes `record` at all (PagerDuty has no use for `kill_sent`,
/// nor for a record outside an incident), without building the request.
pub fn takes(kind: &ReceiverKind, record: &Record) -> bool {
    match kind {
        ReceiverKind::PagerDuty { severity, .. } => {
            record.event.incident.is_some()
                && pagerduty_action(record.kind(), severity).is_some()
                && !operators_own(record)
        }
        _ => true,
    }
}

/// A record of what an operator's own pause or hold withheld: told, never paged.
fn operators_own(record: &Record) -> bool {
    matches!(&record.event.detail, Detail::EscalationWithheld(w) if w.by_operator)
}

/// PagerDuty's dedup key: the incident, or for a trail fault (outside any incident) one key per
/// instance, so repeated faults update one alert.
fn dedup_key(record: &Record) -> Option<String> {
    match (&record.event.incident, record.kind()) {
        (Some(id), _) => Some(id.clone()),
        (None, EventKind::TrailFault) => Some(format!(
            "{}-audit-trail",
            record.event.instance.as_deref().unwrap_or("busyguard")
        )),
        (None, _) => None,
    }
}

fn pagerduty(
    record: &Record,
    routing_key: &str,
    severity: &PagerDutySeverities,
    ctx: &Context,
) -> Option<Value> {
    let event = record.kind();
    if operators_own(record) {
        return None;
    }
    let incident = dedup_key(record)?;
    let incident = incident.as_str();
    let instance = record.event.instance.as_deref().unwrap_or("-");
    let level = match pagerduty_action(event, severity)? {
        PagerDutyAction::Resolve => {
            return Some(
                json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": incident}),
            );
        }
        PagerDutyAction::Trigger(level) => level,
    };
    let dry = if record.event.dry_run {
        " [dry run]"
    } else {
        ""
    };
    let next = next_step(record);
    let summary: String = format!(
        "busyguard {instance} on {}: {}{dry}; next: {next}",
        ctx.host,
        title(record)
    )
    .chars()
    .take(PAGERDUTY_SUMMARY_MAX)
    .collect();
    let mut details = record.event.detail.to_value();
    details["seq"] = json!(record.seq);
    details["event"] = json!(event);
    details["dry_run"] = json!(record.event.dry_run);
    details["host"] = json!(ctx.host);
    details["next_step"] = json!(next);
    if record.event.detail.data_at_risk().is_some() {
        details["shutdown_nosave_loses"] = json!(data_at_risk(record));
    }
    let mut body = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": incident,
        "payload": {
            "summary": summary,
            "source": ctx.host,
            "severity": level.name(),
            "timestamp": record.ts,
            "component": snapshot(record).map_or("redis", |s| s.server_name.as_str()),
            "group": instance,
            "class": event,
            "custom_details": details,
        },
    });
    if let Some(url) = &ctx.runbook_url {
        body["links"] = json!([{"href": url, "text": "Runbook"}]);
    }
    Some(body)
}

/// Whether a record goes to a receiver with this filter at all.
pub fn wanted(filter: &crate::policy::Filter, record: &Record) -> bool {
    let kind = record.kind();
    let listed = match &filter.events {
        Some(names) => names.iter().any(|n| n == kind.name()),
        None => kind.notifiable(),
    };
    listed && record.event.severity() >= filter.min_severity
}

#[cfg(test)]
#[path = "formats_tests.rs"]
mod tests;
