//! What Sentinel says of the primary a policy watches (`topology.sentinel`): each sentinel is
//! asked `SENTINEL MASTER <name>` on a connection of its own, and its answer is compared with
//! the server busyguard watches (by run id, which survives any address), and with the policy's
//! timing: Sentinel marks a busy primary down after `down-after-milliseconds`, sends its own
//! SCRIPT KILL then, and may fail over before busyguard's budget ends.
//!
//! `status` shows it. The daemon's watchdog runs a [`Feed`]: a task that asks the sentinels once a
//! second and passes on what a majority of the configured sentinels says, once checked: a
//! failover counts only when busyguard verified that the server they name took over from this
//! one ([`super::takeover`]: listed in `topology.replicas`, ROLE master, this primary's history
//! in its `master_replid2`), never on Sentinel's word or a run id alone (a restarted primary is
//! named by its old one for up to 10 s, a group may be re-pointed to another server), and a word
//! that cannot be verified is said so, never acted on.

use std::time::Duration;

use serde::Serialize;

use super::ASK_LIMIT;
use super::probe::{self, Outcome};
pub use super::takeover::PrimaryView;
use super::takeover::Verdict;
use crate::model::snapshot::Snapshot;
use crate::model::takeover::{Lineage, Successor};
use crate::policy::replicas::TrustedReplica;
use crate::policy::{Policy, RedisTarget, SentinelTopology};

/// One sentinel's view of the primary, for `status`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum SentinelView {
    Seen {
        url: String,
        master: String,
        address: String,
        run_id: String,
        /// Whether its primary is this server, by run id (`None`: this server's is unknown).
        is_this_server: Option<bool>,
        flags: String,
        quorum: Option<u64>,
        down_after_ms: Option<u64>,
        failover_timeout_ms: Option<u64>,
        replicas: Option<u64>,
        other_sentinels: Option<u64>,
    },
    Error {
        url: String,
        error: String,
    },
}

impl SentinelView {
    pub fn down_after_ms(&self) -> Option<u64> {
        match self {
            SentinelView::Seen { down_after_ms, .. } => *down_after_ms,
            SentinelView::Error { .. } => None,
        }
    }
}

impl std::fmt::Display for SentinelView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = |n: &Option<u64>| n.map_or("null".to_string(), |n| n.to_string());
        match self {
            SentinelView::Error { url, error } => write!(f, "sentinel {url}: {error}"),
            SentinelView::Seen {
                url,
                master,
                address,
                is_this_server,
                flags,
                quorum,
                down_after_ms,
                replicas,
                other_sentinels,
                ..
            } => write!(
                f,
                "sentinel {url}: `{master}` is {address} ({}; {flags}), quorum {}, down after {} ms, {} replica(s), {} other sentinel(s)",
                match is_this_server {
                    Some(true) => "this server",
                    Some(false) => "NOT this server",
                    None => "this server's run id unknown",
                },
                q(quorum),
                q(down_after_ms),
                q(replicas),
                q(other_sentinels),
            ),
        }
    }
}

/// Each sentinel's view, and the warnings it gives, for `status`.
pub async fn views(
    topology: &SentinelTopology,
    policy: &Policy,
    snapshot: Option<&Snapshot>,
) -> (Vec<SentinelView>, Vec<String>) {
    let mut views = Vec::new();
    let mut warnings = Vec::new();
    for target in &topology.sentinels {
        let url = target.endpoint.to_string();
        let asked = tokio::time::timeout(ASK_LIMIT, ask(target, &topology.master)).await;
        let view = match asked {
            Ok(Ok(fields)) => fields,
            Ok(Err(why)) => {
                warnings.push(format!("sentinel {url}: {why}"));
                views.push(SentinelView::Error { url, error: why });
                continue;
            }
            Err(_) => {
                let why = format!("no answer within {}s", ASK_LIMIT.as_secs());
                warnings.push(format!("sentinel {url}: {why}"));
                views.push(SentinelView::Error { url, error: why });
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
        views.push(SentinelView::Seen {
            url,
            master: topology.master.clone(),
            address: format!("{}:{}", field("ip"), field("port")),
            run_id,
            is_this_server: is_this,
            flags: field("flags"),
            quorum: num("quorum"),
            down_after_ms: down_after,
            failover_timeout_ms: num("failover-timeout"),
            replicas: num("num-slaves"),
            other_sentinels: num("num-other-sentinels"),
        });
    }
    (views, warnings)
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

/// What the feed passes on, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SentinelWord {
    /// A majority names another server, which busyguard verified took over from this one
    /// ([`super::takeover::verify`]): this one was failed over.
    FailedOver(Successor),
    /// A majority names a server busyguard cannot verify took over from this one (it did not,
    /// or it is not listed): nothing the group says of a primary is acted on (why).
    Unbelieved(String),
    /// A majority names this server again after an earlier word: what Sentinel says may be
    /// acted on again.
    NamesThis,
}

/// How often the feed asks.
const FEED_EVERY: Duration = Duration::from_secs(1);

/// A task asking the sentinels for the primary, once a second, for one watchdog, and checking
/// what they say before passing it on; it ends when the feed is dropped.
pub struct Feed {
    pub words: tokio::sync::mpsc::Receiver<SentinelWord>,
    task: tokio::task::AbortHandle,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Feed {
    /// Ask `topology`'s sentinels; `primary` is the watched server's target (the server a
    /// majority names is asked with its credentials when the policy lists it); `ours` follows
    /// this server's lineage (its healthy snapshots', or the trail's after a restart).
    pub fn start(
        topology: &SentinelTopology,
        primary: &RedisTarget,
        listed: &[TrustedReplica],
        ours: tokio::sync::watch::Receiver<Lineage>,
    ) -> Feed {
        let (tx, words) = tokio::sync::mpsc::channel(4);
        let asked = topology.clone();
        let primary = primary.clone();
        let listed = listed.to_vec();
        let task = tokio::spawn(async move {
            // One connection per sentinel, kept between questions and opened anew once lost.
            let mut open: Vec<probe::Kept> = asked
                .sentinels
                .iter()
                .cloned()
                .map(probe::Kept::new)
                .collect();
            let mut check = Check::default();
            loop {
                let lineage = ours.borrow().clone();
                if lineage.is_known()
                    && let Some(view) = majority(&asked, &mut open).await
                    && let Some(word) = check.word(view, &lineage, &primary, &listed).await
                    && tx.send(word).await.is_err()
                {
                    return;
                }
                tokio::time::sleep(FEED_EVERY).await;
            }
        })
        .abort_handle();
        Feed { words, task }
    }
}

/// What the feed has learned of this server from Sentinel.
#[derive(Default)]
struct Check {
    /// The address the sentinels named for this server (by one of its run ids) in this run.
    our_address: Option<String>,
    /// A connection to the server a majority names instead, kept while they do.
    named: Option<(String, probe::Kept)>,
    /// The last word passed on (each is passed on once).
    told: Option<SentinelWord>,
}

impl Check {
    /// What `view` means for this server: nothing (it names this server, or this server's own
    /// address with an old run id: Sentinel refreshes a master's INFO every 10 s, and a
    /// restarted primary is named by its old run id until then), a verified failover, or a
    /// word not to believe.
    async fn word(
        &mut self,
        view: PrimaryView,
        ours: &Lineage,
        primary: &RedisTarget,
        listed: &[TrustedReplica],
    ) -> Option<SentinelWord> {
        if ours.is_this_server(&view.run_id) {
            self.our_address = Some(view.address);
            return self.tell(SentinelWord::NamesThis);
        }
        // This server's own address under a run id of another run: a stale view.
        if self.our_address.as_deref() == Some(view.address.as_str())
            || super::takeover::is_own_address(&primary.endpoint, ours.tcp_port, &view.address)
                .await
        {
            return None;
        }
        let verdict = match super::takeover::listed(primary, listed, &view.address, ours).await {
            Err(verdict) => verdict,
            Ok(target) => {
                if self.named.as_ref().is_none_or(|(a, _)| *a != view.address) {
                    self.named = Some((view.address.clone(), probe::Kept::new(target)));
                }
                let (_, kept) = self.named.as_mut()?;
                super::takeover::verify(kept, &view.address, ours).await
            }
        };
        let word = match verdict {
            Verdict::TookOver(successor) => SentinelWord::FailedOver(successor),
            Verdict::Not(why) => SentinelWord::Unbelieved(format!(
                "a majority of the sentinels name {} (run id {}) as the group's primary, and it \
                 did not take over from this server ({why}): the group serves another server, \
                 or was re-pointed; nothing it says is acted on",
                view.address, view.run_id
            )),
            Verdict::Unknown(why)
                if super::listed_target(primary, listed, &view.address).is_none() =>
            {
                SentinelWord::Unbelieved(format!(
                    "a majority of the sentinels name {} (run id {}) as the group's primary: \
                 {why}; nothing the group says is acted on (list it in `topology.replicas` \
                 if it is a replica of this server)",
                    view.address, view.run_id
                ))
            }
            // Not reached: nothing is known yet.
            Verdict::Unknown(_) => return None,
        };
        self.tell(word)
    }

    /// `word`, unless it was the last one passed on; `NamesThis` only after another word. A
    /// verified failover is passed on at every check (the engine records it once an incident):
    /// an engine that restarted, or had no incident open when it first came, learns it still.
    fn tell(&mut self, word: SentinelWord) -> Option<SentinelWord> {
        let again = matches!(word, SentinelWord::FailedOver(_));
        if (!again && self.told.as_ref() == Some(&word))
            || (word == SentinelWord::NamesThis && self.told.is_none())
        {
            return None;
        }
        self.told = Some(word.clone());
        Some(word)
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
