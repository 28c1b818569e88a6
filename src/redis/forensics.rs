//! What an incident leaves behind for the post-mortem: during a busy FCALL, the running
//! function's name and duration (FUNCTION STATS, the only live detail a busy server gives); after
//! recovery, the offending script's SLOWLOG entry and how many BUSY replies and rejected calls the
//! server served meanwhile (errorstats and commandstats, against the last healthy snapshot).
//!
//! SLOWLOG arguments may hold user data: each is cut to [`MAX_ARG_CHARS`] characters and only the
//! first [`MAX_ARGS`] are kept.

use serde_json::{Value, json};

use super::probe::{Connection, Outcome};
use super::reply::to_json;
use crate::model::slowlog::{MAX_ARG_CHARS, MAX_ARGS, SCRIPT_COMMANDS, cut_args};
use crate::model::snapshot::Snapshot;

/// The running function from a FUNCTION STATS outcome (`None` when nothing useful came back).
pub fn running_function(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Reply(v) => {
            let stats = to_json(v);
            let running = &stats["running_script"];
            json!({"name": running["name"], "command": truncate_args(&running["command"]), "duration_ms": running["duration_ms"]})
        }
        Outcome::ErrorReply(e) => json!({"error": e}),
        Outcome::Lost(e) => json!({"error": e}),
    }
}

fn truncate_args(args: &Value) -> Value {
    match args.as_array() {
        Some(items) => {
            let texts: Vec<String> = items
                .iter()
                .map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_string))
                .collect();
            json!(cut_args(texts.iter().map(String::as_str)))
        }
        None => args.clone(),
    }
}

/// After recovery on the same server (no restart): the slowest script in SLOWLOG since the
/// incident opened, and the counters' deltas against `before`; with the kills the server
/// counted meanwhile (SCRIPT KILL and FUNCTION KILL, from anyone).
pub async fn after_recovery(
    conn: &Connection,
    opened_unix_ms: u64,
    before: Option<&Snapshot>,
) -> (Value, Option<u64>) {
    let slowlog = match conn.call(&["SLOWLOG", "GET", "16"]).await {
        Outcome::Reply(v) => offending_entry(&to_json(&v), opened_unix_ms / 1000),
        Outcome::ErrorReply(e) => json!({"error": e}),
        Outcome::Lost(e) => json!({"error": e}),
    };
    let mut kills = None;
    let counters = match conn.snapshot().await {
        Ok(crate::redis::probe::Healthy { snapshot: now, .. }) => {
            kills = before
                .and_then(|b| b.kill_calls)
                .zip(now.kill_calls)
                .map(|(b, n)| n.saturating_sub(b));
            json!({
                "busy_replies": delta(before.and_then(|b| b.busy_errors), now.busy_errors),
                "unkillable_replies": delta(before.and_then(|b| b.unkillable_errors), now.unkillable_errors),
                "rejected_calls": delta(before.and_then(|b| b.rejected_calls), now.rejected_calls),
            })
        }
        Err(e) => json!({"error": format!("{e:?}")}),
    };
    (
        json!({"slowlog": slowlog, "served_during_incident": counters}),
        kills,
    )
}

fn delta(before: Option<u64>, now: Option<u64>) -> Value {
    match (before, now) {
        (Some(b), Some(n)) => json!(n.saturating_sub(b)),
        _ => Value::Null,
    }
}

/// The longest script command in a SLOWLOG GET reply logged at or after `since_unix_s`.
fn offending_entry(entries: &Value, since_unix_s: u64) -> Value {
    let best = entries
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e[1].as_u64()
                .is_some_and(|t| t >= since_unix_s.saturating_sub(1))
        })
        .filter(|e| {
            e[3][0]
                .as_str()
                .is_some_and(|c| SCRIPT_COMMANDS.contains(&c.to_ascii_uppercase().as_str()))
        })
        .max_by_key(|e| e[2].as_u64().unwrap_or(0));
    match best {
        Some(e) => json!({
            "command": truncate_args(&e[3]),
            "duration_us": e[2],
            "logged_at_unix": e[1],
            "client_addr": e[4],
            "client_name": e[5],
            "note": format!("arguments cut to {MAX_ARG_CHARS} characters, at most {MAX_ARGS}"),
        }),
        None => {
            json!({"note": "no script in SLOWLOG since the incident opened (slowlog-log-slower-than may be higher than its duration)"})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_slowest_script_since_the_incident_and_cuts_arguments() {
        let long = "x".repeat(500);
        let entries = json!([
            [3, 1000, 900, ["GET", "k"], "127.0.0.1:1", ""],
            [2, 1000, 206935, ["EVAL", long, "0"], "/tmp/r.sock:0", "app"],
            [1, 10, 999999, ["EVAL", "old", "0"], "x", ""],
        ]);
        let e = offending_entry(&entries, 1000);
        assert_eq!(e["duration_us"], 206935);
        assert_eq!(e["client_name"], "app");
        let body = e["command"][1].as_str().unwrap();
        assert_eq!(body.chars().count(), MAX_ARG_CHARS + 3);
    }
}
