//! What happened: the one value every record of the audit trail, every log line and (later)
//! every notification is built from, so they cannot disagree.

use serde_json::{Map, Value};

/// Event names, exactly as the audit trail and receivers see them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    WatchdogStarted,
    WatchdogStopped,
    PolicyLoaded,
    PolicyRejected,
    BusyDetected,
    KillSent,
    Killed,
    Unkillable,
    ShutdownSent,
    ShutdownConfirmed,
    EscalationWithheld,
    HangDetected,
    /// A signal (SIGKILL to a hung local server) is about to be sent.
    SignalSent,
    Unreachable,
    Recovered,
    NotifyFailed,
    /// A command or signal that was sent did not do what it was for (an error reply, NOTBUSY,
    /// a lost connection, a server still accepting after SHUTDOWN).
    ActionFailed,
    /// The server answered the probe with an error that is a configuration fault (NOAUTH,
    /// WRONGPASS, NOPERM, ...): reported, never acted on.
    ProbeFault,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        use EventKind::*;
        match self {
            WatchdogStarted => "watchdog_started",
            WatchdogStopped => "watchdog_stopped",
            PolicyLoaded => "policy_loaded",
            PolicyRejected => "policy_rejected",
            BusyDetected => "busy_detected",
            KillSent => "kill_sent",
            Killed => "killed",
            Unkillable => "unkillable",
            ShutdownSent => "shutdown_sent",
            ShutdownConfirmed => "shutdown_confirmed",
            EscalationWithheld => "escalation_withheld",
            HangDetected => "hang_detected",
            SignalSent => "signal_sent",
            Unreachable => "unreachable",
            Recovered => "recovered",
            NotifyFailed => "notify_failed",
            ActionFailed => "action_failed",
            ProbeFault => "probe_fault",
        }
    }

    /// A `*_sent` record must be on disk before its command leaves the process.
    pub fn announces_an_action(self) -> bool {
        matches!(
            self,
            EventKind::KillSent | EventKind::ShutdownSent | EventKind::SignalSent
        )
    }
}

/// One thing that happened, with the inputs and outcome of the decision behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    /// The policy's `instance`; `None` for daemon-wide records.
    pub instance: Option<String>,
    /// The incident (BUSY, hang or unreachable episode) it belongs to.
    pub incident: Option<String>,
    /// Decided but deliberately not performed.
    pub dry_run: bool,
    pub detail: Map<String, Value>,
    /// SHA-256 of the policy file the decision was made under; `None` for daemon-wide records.
    pub policy: Option<String>,
}

impl Event {
    /// A daemon-wide event.
    pub fn daemon(kind: EventKind, detail: Value) -> Event {
        Event {
            kind,
            instance: None,
            incident: None,
            dry_run: false,
            detail: into_map(detail),
            policy: None,
        }
    }
}

/// A JSON object as a map (anything else is wrapped as `{"value": ...}`).
pub fn into_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => Map::from_iter([("value".to_string(), other)]),
    }
}
