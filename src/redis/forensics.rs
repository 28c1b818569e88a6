//! Asking a server what an incident leaves behind, for the engine to write into the records:
//! during a busy FCALL, FUNCTION STATS (the only live detail a busy server gives); once the
//! script is gone, its counters and SLOWLOG, read in one healthy snapshot.

use std::time::{Duration, Instant};

use super::ASK_LIMIT;
use super::probe::{Connection, Healthy, Kept, Lost, Outcome};
use super::reply::to_json;
use crate::model::slowlog::cut_args;
use crate::model::told::{AfterRecovery, RunningFunction};
use crate::policy::RedisTarget;
use crate::policy::replicas::TrustedReplica;

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

/// Each replica's replication offset (`None`: not reached), asked until every one has
/// reached `primary_offset` or `within` has passed (a busy primary still streams what it
/// wrote before its script): how much a failover to each would lose.
pub async fn replica_offsets(
    primary: &RedisTarget,
    listed: &[TrustedReplica],
    replicas: &[String],
    primary_offset: u64,
    within: Duration,
) -> Vec<(String, Option<u64>)> {
    let deadline = Instant::now() + within;
    let mut kept: Vec<(String, Option<Kept>)> = replicas
        .iter()
        .map(|a| {
            (
                a.clone(),
                super::listed_target(primary, listed, a).map(Kept::new),
            )
        })
        .collect();
    loop {
        let mut told = Vec::new();
        for (address, kept) in &mut kept {
            let offset = match kept {
                Some(kept) => {
                    kept.ask(ASK_LIMIT, async |conn| offset_of(conn).await)
                        .await
                }
                None => None,
            };
            told.push((address.clone(), offset));
        }
        let caught_up = told
            .iter()
            .all(|(_, o)| o.is_some_and(|o| o >= primary_offset));
        if caught_up || Instant::now() >= deadline {
            return told;
        }
        tokio::time::sleep(OFFSETS_EVERY).await;
    }
}

/// How often the candidates are asked while they catch up.
const OFFSETS_EVERY: Duration = Duration::from_millis(20);

/// A replica's own replication offset (`INFO replication`).
async fn offset_of(conn: &Connection) -> Result<u64, Lost> {
    match tokio::time::timeout(ASK_LIMIT, conn.call(&["INFO", "replication"])).await {
        Ok(Outcome::Reply(v)) => {
            let info = v.as_string().unwrap_or_default();
            let field = |k| crate::model::snapshot::info_field(&info, k);
            field("slave_repl_offset")
                .or_else(|| field("master_repl_offset"))
                .and_then(|n| n.parse().ok())
                .ok_or(Lost)
        }
        Ok(Outcome::ErrorReply(_) | Outcome::Lost(_)) | Err(_) => Err(Lost),
    }
}

/// What the server says once the incident is over: one healthy snapshot (INFO, CONFIG and the
/// SLOWLOG).
pub async fn after_recovery(conn: &Connection) -> AfterRecovery {
    match conn.snapshot().await {
        Ok(Healthy {
            snapshot, slowlog, ..
        }) => AfterRecovery {
            snapshot: Ok(snapshot),
            slowlog,
        },
        Err(e) => AfterRecovery {
            snapshot: Err(e.to_string()),
            slowlog: Err(e.to_string()),
        },
    }
}
