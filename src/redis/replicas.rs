//! Whether one of the busy primary's own replicas has become a primary: the role's fresh
//! knowledge where Sentinel is not asked (a Cluster, whose busy node the Cluster never fails
//! over by itself but an operator may, with `CLUSTER FAILOVER TAKEOVER`; a replica promoted by
//! hand with `REPLICAOF NO ONE`).
//!
//! During an incident only, a task asks each replica online in the healthy snapshot that the
//! policy lists (`topology.replicas`: never an address INFO announced) `ROLE` once a second on
//! a connection of its own; one that answers `master` is asked `INFO replication`:
//! it took over from this server when its second replication ID is this server's (a replica
//! keeps its primary's ID as `master_replid2` when promoted). That is passed on as the primary
//! now serving, and the engine records `role_changed`.

use std::time::Duration;

use tokio::sync::mpsc;

use super::ASK_LIMIT;
use super::probe;
use super::takeover::{PrimaryView, took_over};
use crate::policy::RedisTarget;
use crate::policy::replicas::TrustedReplica;

/// How often the replicas are asked.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The task watching the replicas; it ends when dropped.
pub struct ReplicaWatch {
    pub views: mpsc::Receiver<PrimaryView>,
    task: tokio::task::AbortHandle,
}

impl Drop for ReplicaWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ReplicaWatch {
    /// Watch those of `addresses` (as the primary's INFO names them) that the policy `listed`,
    /// reached like `primary`, for one that took over from the replication ID `replid`.
    pub fn start(
        primary: &RedisTarget,
        listed: &[TrustedReplica],
        addresses: Vec<String>,
        replid: String,
    ) -> ReplicaWatch {
        let (tx, views) = mpsc::channel(4);
        let mut replicas: Vec<(String, probe::Kept)> = addresses
            .into_iter()
            .filter_map(|a| {
                let target = crate::redis::listed_target(primary, listed, &a)?;
                Some((a, probe::Kept::new(target)))
            })
            .collect();
        let task = tokio::spawn(async move {
            loop {
                for (address, kept) in &mut replicas {
                    let asked = kept.ask(ASK_LIMIT, async |c| took_over(c, &replid).await);
                    if let Some(Some(run_id)) = asked.await {
                        let view = PrimaryView {
                            address: address.clone(),
                            run_id,
                        };
                        if tx.send(view).await.is_err() {
                            return;
                        }
                    }
                }
                tokio::time::sleep(WATCH_EVERY).await;
            }
        })
        .abort_handle();
        ReplicaWatch { views, task }
    }
}
