//! What a server tells of an incident beside the probe's replies, as plain values: the running
//! function (FUNCTION STATS, the only live detail a busy server gives) and what it says once the
//! script is gone (its counters and SLOWLOG). The redis layer asks; the engine decides with
//! them and writes them into the records.

use serde_json::{Value, json};

use super::slowlog::{MAX_ARG_CHARS, MAX_ARGS, SlowEntry, cut_args};
use super::snapshot::Snapshot;

/// What FUNCTION STATS said during a busy FCALL.
#[derive(Clone, Debug, PartialEq)]
pub enum RunningFunction {
    /// Its `running_script`: the function's name, the caller's command (arguments cut: they
    /// may hold user data) and how long it had run; each `None` when the server did not say
    /// (the function had ended).
    Seen {
        name: Option<String>,
        command: Option<Vec<String>>,
        duration_ms: Option<u64>,
    },
    /// An error reply, or no reply in time.
    Unknown(String),
}

impl RunningFunction {
    /// Its name, when FUNCTION STATS gave one.
    pub fn name(&self) -> Option<&str> {
        match self {
            RunningFunction::Seen { name, .. } => name.as_deref(),
            RunningFunction::Unknown(_) => None,
        }
    }

    /// As the trail's forensics write it.
    pub fn to_json(&self) -> Value {
        match self {
            RunningFunction::Seen {
                name,
                command,
                duration_ms,
            } => json!({"name": name, "command": command, "duration_ms": duration_ms}),
            RunningFunction::Unknown(e) => json!({"error": e}),
        }
    }
}

/// What the server said once the incident was over (the same connection, the same run).
#[derive(Clone, Debug, PartialEq)]
pub struct AfterRecovery {
    /// Its INFO and CONFIG now, for the counters' deltas.
    pub snapshot: Result<Snapshot, String>,
    /// Its SLOWLOG now (newest first).
    pub slowlog: Result<Vec<SlowEntry>, String>,
}

/// The script entry of the SLOWLOG that the incident was: the longest script logged at or
/// after `since_unix_s` (the server's clock). Its arguments are cut.
pub fn offending_entry(entries: &[SlowEntry], since_unix_s: u64) -> Value {
    let best = entries
        .iter()
        .filter(|e| e.at_unix_s >= since_unix_s.saturating_sub(1))
        .filter(|e| e.script().is_some())
        .max_by_key(|e| e.duration_us);
    match best {
        Some(e) => json!({
            "command": cut_args(e.args.iter().map(String::as_str)),
            "duration_us": e.duration_us,
            "logged_at_unix": e.at_unix_s,
            "client_addr": e.client_addr,
            "client_name": e.client_name,
            "note": format!("arguments cut to {MAX_ARG_CHARS} characters, at most {MAX_ARGS}"),
        }),
        None => {
            json!({"note": "no script in SLOWLOG since the incident opened (slowlog-log-slower-than may be higher than its duration)"})
        }
    }
}

/// A counter's growth between two snapshots (`null` when either does not know it).
pub fn delta(before: Option<u64>, now: Option<u64>) -> Value {
    match (before, now) {
        (Some(b), Some(n)) => json!(n.saturating_sub(b)),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, at: u64, us: u64, args: &[&str], name: &str) -> SlowEntry {
        SlowEntry {
            id,
            at_unix_s: at,
            duration_us: us,
            args: args.iter().map(|a| a.to_string()).collect(),
            client_addr: "127.0.0.1:1".into(),
            client_name: name.into(),
        }
    }

    #[test]
    fn picks_the_slowest_script_since_the_incident_and_cuts_arguments() {
        let long = "x".repeat(500);
        let entries = [
            entry(3, 1000, 900, &["GET", "k"], ""),
            entry(2, 1000, 206935, &["EVAL", &long, "0"], "app"),
            entry(1, 10, 999999, &["EVAL", "old", "0"], ""),
        ];
        let e = offending_entry(&entries, 1000);
        assert_eq!(e["duration_us"], 206935);
        assert_eq!(e["client_name"], "app");
        let body = e["command"][1].as_str().unwrap();
        assert_eq!(body.chars().count(), MAX_ARG_CHARS + 3);
    }
}
