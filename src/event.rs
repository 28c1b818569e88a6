//! What happened: the one value every record of the audit trail, every log line and (later)
//! every notification is built from, so they cannot disagree.

use serde_json::{Map, Value};

use crate::policy::Severity;

/// Defines [`EventKind`] from one table: variant, name in the trail, severity, and whether it
/// is sent to receivers. Everything about a kind of event is said once, here.
macro_rules! event_kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $severity:ident, $notify:literal;)*) => {
        /// Event names, exactly as the audit trail and receivers see them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $($(#[$doc])* $variant,)*
        }

        impl EventKind {
            /// Every kind, in the table's order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),*];

            pub fn name(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }

            /// How grave the event is, for receivers' `min_severity` and PagerDuty.
            pub fn severity(self) -> Severity {
                match self {
                    $(EventKind::$variant => Severity::$severity,)*
                }
            }

            /// Whether receivers are sent it: the transitions of an incident, and faults.
            pub fn notifiable(self) -> bool {
                match self {
                    $(EventKind::$variant => $notify,)*
                }
            }
        }
    };
}

event_kinds! {
    WatchdogStarted = "watchdog_started", Info, false;
    WatchdogStopped = "watchdog_stopped", Info, false;
    PolicyLoaded = "policy_loaded", Info, false;
    PolicyRejected = "policy_rejected", Warning, false;
    BusyDetected = "busy_detected", Warning, true;
    KillSent = "kill_sent", Warning, true;
    Killed = "killed", Info, true;
    Unkillable = "unkillable", Error, true;
    ShutdownSent = "shutdown_sent", Critical, true;
    ShutdownConfirmed = "shutdown_confirmed", Critical, true;
    EscalationWithheld = "escalation_withheld", Critical, true;
    HangDetected = "hang_detected", Error, true;
    /// A signal (SIGKILL to a hung local server) is about to be sent.
    SignalSent = "signal_sent", Critical, true;
    Unreachable = "unreachable", Error, true;
    Recovered = "recovered", Info, true;
    NotifyFailed = "notify_failed", Error, false;
    /// A command or signal that was sent did not do what it was for (an error reply, NOTBUSY,
    /// a lost connection, a server still accepting after SHUTDOWN).
    ActionFailed = "action_failed", Critical, true;
    /// The server answered the probe with an error that is a configuration fault (NOAUTH,
    /// WRONGPASS, NOPERM, ...): reported, never acted on.
    ProbeFault = "probe_fault", Warning, true;
}

impl EventKind {
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// The names receivers may be sent, for policy validation.
    pub fn notifiable_names() -> Vec<&'static str> {
        EventKind::ALL
            .iter()
            .filter(|k| k.notifiable())
            .map(|k| k.name())
            .collect()
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
