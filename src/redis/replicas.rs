//! Whether one of the busy primary's own replicas has become a primary: the role's fresh
//! knowledge where Sentinel is not asked (a Cluster, whose busy node the Cluster never fails
//! over by itself but an operator may, with `CLUSTER FAILOVER TAKEOVER`; a replica promoted by
//! hand with `REPLICAOF NO ONE`).
//!
//! During an incident only, a task asks each replica online in the healthy snapshot that the
//! policy lists (`topology.replicas`: never an address INFO announced) `ROLE` once a second on
//! a connection of its own, through [`super::takeover::verify`]: it took over from this server
//! when it answers ROLE `master` and its second replication ID is one of this server's (a
//! replica keeps its primary's ID as `master_replid2` when promoted). That is passed on as the
//! verified successor, and the engine records `role_changed`.

use std::time::Duration;

use tokio::sync::mpsc;

use super::probe;
use super::takeover::Verdict;
use crate::model::takeover::{Lineage, Successor};
use crate::policy::RedisTarget;
use crate::policy::replicas::TrustedReplica;

/// How often the replicas are asked.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The task watching the replicas; it ends when dropped.
pub struct ReplicaWatch {
    pub views: mpsc::Receiver<Successor>,
    task: tokio::task::AbortHandle,
}

impl Drop for ReplicaWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ReplicaWatch {
    /// Watch those of `addresses` (as the primary's INFO names them) that the policy `listed`,
    /// reached like `primary`, for one that took over from the server of `lineage`.
    pub fn start(
        primary: &RedisTarget,
        listed: &[TrustedReplica],
        addresses: Vec<String>,
        lineage: Lineage,
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
                    let verdict = super::takeover::verify(kept, address, &lineage).await;
                    if let Verdict::TookOver(successor) = verdict
                        && tx.send(successor).await.is_err()
                    {
                        return;
                    }
                }
                tokio::time::sleep(WATCH_EVERY).await;
            }
        })
        .abort_handle();
        ReplicaWatch { views, task }
    }
}
