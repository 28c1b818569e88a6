//! What Sentinel says of the primary a policy watches (`topology.sentinel`): each sentinel is
//! asked `SENTINEL MASTER <name>` on a connection of its own, and its answer is compared with
//! the server busyguard watches (by run id, which survives any address), and with the policy's
//! timing: Sentinel marks a busy primary down after `down-after-milliseconds`, sends its own
//! SCRIPT KILL then, and may fail over before busyguard's budget ends.
//!
//! `status` shows it. The daemon's watchdog runs a [`Feed`]: a task that asks the sentinels once a
//! second and passes on the primary a majority of the configured sentinels names, so that a
//! failover Sentinel made during an incident is known to the engine (`role_changed`).

use std::time::Duration;

use serde_json::{Value, json};

use super::ASK_LIMIT;
use super::probe::{self, Outcome};
use crate::model::snapshot::Snapshot;
use crate::policy::{Policy, SentinelTopology};

/// Each sentinel's view, and the warnings it gives, for `status`.
pub async fn views(
    topology: &SentinelTopology,
    policy: &Policy,
    snapshot: Option<&Snapshot>,
) -> (Value, Vec<String>) {
    let mut views = Vec::new();
    let mut warnings = Vec::new();
    for target in &topology.sentinels {
        let url = target.endpoint.to_string();
        let asked = tokio::time::timeout(ASK_LIMIT, ask(target, &topology.master)).await;
        let view = match asked {
            Ok(Ok(fields)) => fields,
            Ok(Err(why)) => {
                warnings.push(format!("sentinel {url}: {why}"));
                views.push(json!({"url": url, "error": why}));
                continue;
            }
            Err(_) => {
                let why = "no answer within 3s".to_string();
                warnings.push(format!("sentinel {url}: {why}"));
                views.push(json!({"url": url, "error": why}));
                continue;
            }
        };
        let field = |k: &str| view.get(k).cloned().unwrap_or_default();
        let num = |k: &str| field(k).parse::<u64>().ok();
        let run_id = field("runid");
        let is_this = snapshot
            .and_then(|s| s.run_id.as_deref())
            .map(|ours| ours == run_id);
        let down_after = num("down-after-milliseconds");
        if is_this == Some(false) {
            warnings.push(format!(
                "sentinel {url} names {}:{} (run id {run_id}) as `{}`'s primary, not this server: it was failed over, and this server is no longer the primary Sentinel serves",
                field("ip"),
                field("port"),
                topology.master
            ));
        }
        let threshold = snapshot.and_then(|s| s.busy_threshold_ms);
        let budget = policy.on_busy.on_unkillable.wait.as_millis() as u64;
        if let (Some(down), Some(t)) = (down_after, threshold)
            && down < t + budget
        {
            warnings.push(format!(
                "sentinel {url} marks a busy primary down after {down} ms, before busyguard's budget ends (threshold {t} ms + wait {budget} ms): it sends its own SCRIPT KILL then and may fail over first"
            ));
        }
        views.push(json!({
            "url": url,
            "master": topology.master,
            "address": format!("{}:{}", field("ip"), field("port")),
            "run_id": run_id,
            "is_this_server": is_this,
            "flags": field("flags"),
            "quorum": num("quorum"),
            "down_after_ms": down_after,
            "failover_timeout_ms": num("failover-timeout"),
            "replicas": num("num-slaves"),
            "other_sentinels": num("num-other-sentinels"),
        }));
    }
    (Value::Array(views), warnings)
}

/// `SENTINEL MASTER <name>` as field pairs.
async fn ask(
    target: &crate::policy::RedisTarget,
    master: &str,
) -> Result<std::collections::HashMap<String, String>, String> {
    let conn = probe::connect(target, ASK_LIMIT)
        .await
        .map_err(|e| e.to_string())?;
    ask_on(&conn, master).await
}

/// `SENTINEL MASTER <name>` on an open connection.
pub async fn ask_on(
    conn: &probe::Connection,
    master: &str,
) -> Result<std::collections::HashMap<String, String>, String> {
    match conn.call_with("SENTINEL", &["MASTER", master]).await {
        Outcome::Reply(v) => Ok(super::reply::pairs(v)),
        Outcome::ErrorReply(e) | Outcome::Lost(e) => Err(e),
    }
}

/// The primary a majority of the configured sentinels name: its address and run id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrimaryView {
    pub address: String,
    pub run_id: String,
}

/// How often the feed asks.
const FEED_EVERY: Duration = Duration::from_secs(1);

/// A task asking the sentinels for the primary, once a second, for one watchdog; it ends when
/// the feed is dropped.
pub struct Feed {
    pub views: tokio::sync::mpsc::Receiver<PrimaryView>,
    task: tokio::task::AbortHandle,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Feed {
    pub fn start(topology: &SentinelTopology) -> Feed {
        let (tx, views) = tokio::sync::mpsc::channel(4);
        let asked = topology.clone();
        let task = tokio::spawn(async move {
            // One connection per sentinel, kept between questions and opened anew once lost.
            let mut open: Vec<probe::Kept> = asked
                .sentinels
                .iter()
                .cloned()
                .map(probe::Kept::new)
                .collect();
            loop {
                if let Some(view) = majority(&asked, &mut open).await
                    && tx.send(view).await.is_err()
                {
                    return;
                }
                tokio::time::sleep(FEED_EVERY).await;
            }
        })
        .abort_handle();
        Feed { views, task }
    }
}

/// The primary named by more than half of the configured sentinels, if any is; `open` holds a
/// connection per sentinel.
async fn majority(topology: &SentinelTopology, open: &mut [probe::Kept]) -> Option<PrimaryView> {
    let mut named: Vec<PrimaryView> = Vec::new();
    for kept in open.iter_mut() {
        let asked = kept
            .ask(ASK_LIMIT, async |conn| {
                match tokio::time::timeout(ASK_LIMIT, ask_on(conn, &topology.master)).await {
                    Ok(Ok(fields)) => Ok(fields),
                    _ => Err(probe::Lost),
                }
            })
            .await;
        let Some(fields) = asked else { continue };
        let field = |k: &str| fields.get(k).cloned().unwrap_or_default();
        if !field("runid").is_empty() {
            named.push(PrimaryView {
                address: format!("{}:{}", field("ip"), field("port")),
                run_id: field("runid"),
            });
        }
    }
    let needed = topology.sentinels.len() / 2 + 1;
    named
        .iter()
        .find(|v| named.iter().filter(|w| w.run_id == v.run_id).count() >= needed)
        .cloned()
}
