//! What happened: the one value every record of the audit trail, every log line, every metric
//! and every notification is built from, so they cannot disagree.
//!
//! One table (`event_kinds!`) says everything about a kind of event: its name in the trail,
//! its severity, whether receivers are sent it, and the type of its detail. [`Detail`] is an
//! enum with one variant per kind, so a consumer that `match`es on it is checked by the
//! compiler to cover every kind, and a renamed field is a compile error, not a silent `null`.
//! The detail types themselves, and the field names they write, live in [`detail`].

pub mod detail;

use serde_json::Value;

/// How grave an event is; ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub const NAMES: [&'static str; 4] = ["info", "warning", "error", "critical"];

    pub fn parse(name: &str) -> Option<Severity> {
        Some(match name {
            "info" => Severity::Info,
            "warning" => Severity::Warning,
            "error" => Severity::Error,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        Severity::NAMES[self as usize]
    }
}

/// Defines [`EventKind`] and [`Detail`] from one table: variant (also the name of its detail
/// type in [`detail`]), name in the trail, severity, and whether it is sent to receivers.
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

        /// What an event says, typed by its kind.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Detail {
            $($(#[$doc])* $variant(detail::$variant),)*
        }

        impl Detail {
            pub fn kind(&self) -> EventKind {
                match self {
                    $(Detail::$variant(_) => EventKind::$variant,)*
                }
            }

            /// The detail as the trail's JSON object. Keys come out sorted (serde_json's map),
            /// as they always have on disk.
            pub fn to_value(&self) -> Value {
                let value = match self {
                    $(Detail::$variant(d) => serde_json::to_value(d),)*
                };
                value.unwrap_or_else(|e| serde_json::json!({ "unserializable": e.to_string() }))
            }

            /// Read a detail back from the trail, knowing its kind.
            pub fn from_value(kind: EventKind, value: Value) -> Result<Detail, serde_json::Error> {
                Ok(match kind {
                    $(EventKind::$variant => Detail::$variant(serde_json::from_value(value)?),)*
                })
            }
        }

        $(impl From<detail::$variant> for Detail {
            fn from(d: detail::$variant) -> Detail {
                Detail::$variant(d)
            }
        })*
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
    /// A command or signal that was sent did not do what it was for (an error reply, no reply
    /// in time, a lost connection, a server still accepting after SHUTDOWN). A NOTBUSY to a
    /// script's kill is none: the script was gone first (`recovered` says so).
    ActionFailed = "action_failed", Critical, true;
    /// The server answered the probe with an error that is a configuration fault (NOAUTH,
    /// WRONGPASS, NOPERM, ...), or the healthy snapshot is incomplete: reported, never acted on.
    ProbeFault = "probe_fault", Warning, true;
    /// An incident left open by an earlier run of busyguard is closed without having been
    /// resumed, because nothing proves the server is still busy with the same script; a new
    /// incident, whose ladder starts from the kill, follows.
    IncidentSuperseded = "incident_superseded", Info, true;
    /// The trail could not be written (a full disk, an I/O error) or its file vanished: what was
    /// lost, written as soon as a record can be. While it fails, receivers are told directly.
    TrailFault = "trail_fault", Critical, true;
    /// Before BUSY: a script in the SLOWLOG ran at least `early_warning.at` (info; a warning from
    /// 80% of the busy threshold).
    SlowScript = "slow_script", Info, true;
    /// An operator steered the daemon (pause, resume, hold, release, approve), or a pause
    /// expired: who, why, until when.
    OperatorCommand = "operator_command", Warning, true;
    /// `then: ask`: the budget is spent and a shutdown waits for an operator's approval (or its
    /// default at the end of `ask.timeout`).
    ApprovalRequested = "approval_requested", Critical, true;
    /// During an incident, Sentinel (`topology.sentinel`) serves another server as this
    /// primary's name: it failed this one over, and the busy process is a zombie whose data
    /// lives on in the new primary.
    RoleChanged = "role_changed", Warning, true;
    /// `then: failover`: a replica's promotion is requested (Sentinel, Cluster); written and
    /// flushed before the request leaves.
    FailoverRequested = "failover_requested", Critical, true;
    /// The promotion is seen: the busy old primary is shut down at its next BUSY reply.
    FailoverCompleted = "failover_completed", Warning, true;
    /// No failover could be made, or the one requested was not seen in time: the fallback
    /// (`failover.fallback`) applies.
    FailoverFailed = "failover_failed", Critical, true;
    /// Two primaries: this server answers as a primary after its role moved to another (the
    /// script ended while the replica was promoted, or a supervisor restarted it); it is fenced
    /// (`REPLICAOF` the new primary), recorded and flushed before the command leaves.
    SplitBrain = "split_brain", Critical, true;
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
            EventKind::KillSent
                | EventKind::ShutdownSent
                | EventKind::SignalSent
                | EventKind::FailoverRequested
                | EventKind::SplitBrain
        )
    }
}

impl serde::Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        EventKind::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown event `{name}`")))
    }
}

/// The share of the busy threshold from which a slow script is a warning, not information.
pub const NEAR_THRESHOLD: f64 = 0.8;

/// One thing that happened, with the inputs and outcome of the decision behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The policy's `instance`; `None` for daemon-wide records.
    pub instance: Option<String>,
    /// The incident (BUSY, hang or unreachable episode) it belongs to.
    pub incident: Option<String>,
    /// Decided but deliberately not performed.
    pub dry_run: bool,
    /// SHA-256 of the policy file the decision was made under; `None` for daemon-wide records.
    pub policy: Option<String>,
    pub detail: Detail,
}

impl Event {
    pub fn kind(&self) -> EventKind {
        self.detail.kind()
    }

    /// How grave this event is: its kind's severity, but a slow script near the threshold is a
    /// warning.
    pub fn severity(&self) -> Severity {
        match &self.detail {
            Detail::SlowScript(s) if s.share_of_threshold.is_some_and(|x| x >= NEAR_THRESHOLD) => {
                Severity::Warning
            }
            // An operator's own pause or hold: what they asked for.
            Detail::EscalationWithheld(w) if w.by_operator => Severity::Info,
            d => d.kind().severity(),
        }
    }

    /// A daemon-wide event.
    pub fn daemon(detail: impl Into<Detail>) -> Event {
        Event {
            instance: None,
            incident: None,
            dry_run: false,
            policy: None,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outside this module no code reads a record by string: no event name compared or matched
    /// as text, no record or detail indexed by key. Consumers match on [`Detail`], so the
    /// compiler finds them when a kind or a field changes. (Tests may read the trail's JSON:
    /// it is the contract they check.)
    #[test]
    fn no_code_outside_this_module_reads_records_by_string() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut offences = Vec::new();
        let mut files = vec![std::path::PathBuf::from(root)];
        while let Some(path) = files.pop() {
            if path.is_dir() {
                if !path.ends_with("event") {
                    files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                }
                continue;
            }
            // simulate.rs reads a scenario language whose words (`kill unkillable`,
            // `unreachable`) are not event names.
            if path.extension().is_none_or(|e| e != "rs")
                || path.ends_with("tests.rs")
                || path.ends_with("simulate.rs")
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for (n, line) in code.lines().enumerate() {
                // A record read as JSON (writing a payload's own fields is not reading).
                let indexed = ["event", "detail"].iter().any(|k| {
                    let at = format!("[\"{k}\"]");
                    (line.contains(&at) && !line.contains(&format!("{at} =")))
                        || line.contains(&format!(".get(\"{k}\")"))
                });
                let compared = EventKind::ALL.iter().any(|k| {
                    let lit = format!("\"{}\"", k.name());
                    line.contains(&format!("== {lit}"))
                        || line.contains(&format!("!= {lit}"))
                        || line.trim_start().starts_with(&format!("{lit} =>"))
                        || line.trim_start().starts_with(&format!("{lit} |"))
                        || line.contains(&format!("| {lit}"))
                });
                if indexed || compared {
                    offences.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(
            offences.is_empty(),
            "records read by string:\n{}",
            offences.join("\n")
        );
    }

    #[test]
    fn every_kind_reads_back_by_its_name() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_name(kind.name()), Some(*kind));
        }
    }
}
