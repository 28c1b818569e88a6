//! Asking a server what an incident leaves behind, for the engine to write into the records:
//! during a busy FCALL, FUNCTION STATS (the only live detail a busy server gives); once the
//! script is gone, its counters and SLOWLOG, read in one healthy snapshot.

use super::probe::{Connection, Healthy, Outcome};
use super::reply::to_json;
use crate::model::slowlog::cut_args;
use crate::model::told::{AfterRecovery, RunningFunction};

/// The running function from a FUNCTION STATS outcome.
pub fn running_function(outcome: &Outcome) -> RunningFunction {
    match outcome {
        Outcome::Reply(v) => {
            let stats = to_json(v);
            let running = &stats["running_script"];
            let command = running["command"].as_array().map(|args| {
                let texts: Vec<String> = args
                    .iter()
                    .map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_string))
                    .collect();
                cut_args(texts.iter().map(String::as_str))
            });
            RunningFunction::Seen {
                name: running["name"].as_str().map(str::to_string),
                command,
                duration_ms: running["duration_ms"].as_u64(),
            }
        }
        Outcome::ErrorReply(e) | Outcome::Lost(e) => RunningFunction::Unknown(e.clone()),
    }
}

/// FUNCTION STATS, sent once.
pub async fn ask_running_function(conn: &Connection) -> RunningFunction {
    running_function(&conn.call(&["FUNCTION", "STATS"]).await)
}

/// What the server says once the incident is over: one healthy snapshot (INFO, CONFIG and the
/// SLOWLOG).
pub async fn after_recovery(conn: &Connection) -> AfterRecovery {
    match conn.snapshot().await {
        Ok(Healthy { snapshot, slowlog }) => AfterRecovery {
            snapshot: Ok(snapshot),
            slowlog,
        },
        Err(e) => AfterRecovery {
            snapshot: Err(format!("{e:?}")),
            slowlog: Err(format!("{e:?}")),
        },
    }
}
