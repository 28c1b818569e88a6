//! What Sentinel says of the primary a policy watches (`topology.sentinel`): each sentinel is
//! asked `SENTINEL MASTER <name>` on a connection of its own, and its answer is compared with
//! the server busyguard watches (by run id, which survives any address), and with the policy's
//! timing: Sentinel marks a busy primary down after `down-after-milliseconds`, sends its own
//! SCRIPT KILL then, and may fail over before busyguard's budget ends.
//!
//! `status` shows it. The daemon's watchdog runs a [`Feed`]: a task that asks the sentinels once a
//! second and passes on what a majority of the configured sentinels says, once checked: a
//! failover counts only when the server they name took over from this one (asked only when the
//! policy lists it in `topology.replicas`) or this run saw them name this server before, never on a run id alone (a restarted primary is named by its
//! old one for up to 10 s), and a group that serves another server is said so, never acted on.

use std::time::Duration;

use serde::Serialize;

use super::ASK_LIMIT;
use super::probe::{self, Outcome};
pub use super::takeover::PrimaryView;
use crate::model::snapshot::{Identity, Snapshot};
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
    /// A majority names another server, which took over from this one (its `master_replid2`
    /// is this server's replication ID), or this run saw them name this server before: this
    /// one was failed over.
    FailedOver(PrimaryView),
    /// The group serves another server than this one (`topology.sentinel.master` names another
    /// group): nothing it says of a primary is acted on.
    OtherGroup(String),
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
    /// majority names is asked with its credentials: Sentinel is trusted by configuration);
    /// `ours` follows this server's identity.
    pub fn start(
        topology: &SentinelTopology,
        primary: &RedisTarget,
        listed: &[TrustedReplica],
        ours: tokio::sync::watch::Receiver<Option<Identity>>,
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
                let identity = ours.borrow().clone();
                if let (Some(view), Some(identity)) = (majority(&asked, &mut open).await, identity)
                    && let Some(word) = check.word(view, &identity, &primary, &listed).await
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
    /// The address the sentinels named for this server (by its run id), and whether they did
    /// in this run.
    our_address: Option<String>,
    /// A connection to the server a majority names instead, kept while they do.
    named: Option<(String, probe::Kept)>,
    /// The last word passed on (each is passed on once).
    told: Option<SentinelWord>,
}

impl Check {
    /// What `view` means for this server: nothing (it names this server, or this server's own
    /// address with an old run id: Sentinel refreshes a master's INFO every 10 s, and a
    /// restarted primary is named by its old run id until then), a failover, or another group.
    async fn word(
        &mut self,
        view: PrimaryView,
        ours: &Identity,
        primary: &RedisTarget,
        listed: &[TrustedReplica],
    ) -> Option<SentinelWord> {
        if view.run_id == ours.run_id {
            self.our_address = Some(view.address);
            self.told = None;
            return None;
        }
        if self.our_address.as_deref() == Some(view.address.as_str()) {
            return None;
        }
        let word = match self.took_over(&view, ours, primary, listed).await {
            Asked::TookOver => SentinelWord::FailedOver(view.clone()),
            Asked::DidNot | Asked::NotListed if self.our_address.is_some() => {
                SentinelWord::FailedOver(view.clone())
            }
            // Not asked (busyguard sends no credentials to a server the policy does not
            // list), and not seen named before: nothing is known.
            Asked::NotListed => return None,
            Asked::DidNot => SentinelWord::OtherGroup(format!(
                "the sentinels name {} (run id {}) as the primary of their group, a server that \
                 never took over from this one (run id {}): `topology.sentinel.master` names \
                 another group, and nothing it says is acted on",
                view.address, view.run_id, ours.run_id
            )),
            // Not reached: nothing is known yet.
            Asked::Unreached => return None,
        };
        if self.told.as_ref() == Some(&word) {
            return None;
        }
        self.told = Some(word.clone());
        Some(word)
    }

    /// Whether the server at the view's address took over from this one, asked when the
    /// policy lists it (`topology.replicas`).
    async fn took_over(
        &mut self,
        view: &PrimaryView,
        ours: &Identity,
        primary: &RedisTarget,
        listed: &[TrustedReplica],
    ) -> Asked {
        if self.named.as_ref().is_none_or(|(a, _)| *a != view.address) {
            let Some(target) = super::listed_target(primary, listed, &view.address) else {
                self.named = None;
                return Asked::NotListed;
            };
            self.named = Some((view.address.clone(), probe::Kept::new(target)));
        }
        let Some((_, kept)) = self.named.as_mut() else {
            return Asked::NotListed;
        };
        let replid = ours.replid.clone();
        let asked = kept
            .ask(ASK_LIMIT, async |conn| {
                super::takeover::took_over(conn, &replid).await
            })
            .await;
        match asked {
            Some(Some(_)) => Asked::TookOver,
            Some(None) => Asked::DidNot,
            None => Asked::Unreached,
        }
    }
}

/// What the server Sentinel names said when asked whether it took over from this one.
enum Asked {
    TookOver,
    DidNot,
    Unreached,
    /// Not asked: the policy does not list it.
    NotListed,
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
