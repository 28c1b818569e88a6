//! Who this primary is, and who took over from it: the facts a fence, a zombie's shutdown and
//! the end of a failover rest on.
//!
//! A server took over from this one only when busyguard itself, over its own connection to an
//! address the policy lists (`topology.replicas`), heard it answer ROLE `master` with a
//! replication history that continues this primary's: its `master_replid2` (the ID a promoted
//! replica keeps from its primary) is one this primary had. Sentinel's word, a run id that
//! differs, or a server that says it is a primary prove nothing alone: a group re-pointed to
//! another server, a restarted primary still named by its old run id, or a detached replica
//! would all look like a failover.

use serde::{Deserialize, Serialize};

/// What this server has been, as busyguard saw it: the run ids and replication IDs of its
/// healthy snapshots in this run (and the one restored from the trail of an earlier run). A
/// primary's replication ID changes when it restarts, so a successor may carry any of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lineage {
    pub run_ids: Vec<String>,
    pub replids: Vec<String>,
    /// The TCP port it listens on, as its newest snapshot said: a local server reached through
    /// its unix socket is still named by `host:port` (Sentinel, a replica's INFO).
    pub tcp_port: Option<u16>,
}

/// How many of each are kept: a server restarted more often than this within one run of
/// busyguard is checked against its newest.
const KEPT: usize = 8;

impl Lineage {
    /// Add what one snapshot said (its run id and replication ID), newest last.
    pub fn saw(&mut self, run_id: Option<&str>, replid: Option<&str>) {
        for (list, id) in [(&mut self.run_ids, run_id), (&mut self.replids, replid)] {
            let Some(id) = id.filter(|id| !id.is_empty()) else {
                continue;
            };
            list.retain(|known| known != id);
            list.push(id.to_string());
            if list.len() > KEPT {
                list.remove(0);
            }
        }
    }

    /// Add what a healthy snapshot said.
    pub fn saw_snapshot(&mut self, s: &crate::model::snapshot::Snapshot) {
        self.saw(s.run_id.as_deref(), s.master_replid.as_deref());
        if s.tcp_port.is_some() {
            self.tcp_port = s.tcp_port;
        }
    }

    pub fn is_known(&self) -> bool {
        !self.run_ids.is_empty() && !self.replids.is_empty()
    }

    /// Whether `run_id` is one of this server's runs.
    pub fn is_this_server(&self, run_id: &str) -> bool {
        self.run_ids.iter().any(|r| r == run_id)
    }

    /// Whether a server whose second replication ID is `replid2` continues this one's history.
    pub fn continued_by(&self, replid2: &str) -> bool {
        !replid2.is_empty() && self.replids.iter().any(|r| r == replid2)
    }
}

/// A server busyguard verified took over from this one (see the module's paragraph).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Successor {
    /// `host:port`, as the policy lists it.
    pub address: String,
    pub run_id: String,
    /// Its `master_replid2`: this primary's replication ID it continues.
    pub replid2: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lineage_keeps_each_id_once_newest_last_and_bounded() {
        let mut l = Lineage::default();
        l.saw(Some("run-a"), Some("id-a"));
        l.saw(Some("run-a"), Some("id-a"));
        l.saw(Some("run-b"), None);
        assert_eq!(l.run_ids, ["run-a", "run-b"]);
        assert_eq!(l.replids, ["id-a"]);
        assert!(l.continued_by("id-a") && !l.continued_by("") && !l.continued_by("id-x"));
        for n in 0..20 {
            l.saw(Some(&format!("r{n}")), None);
        }
        assert_eq!(l.run_ids.len(), KEPT);
        assert!(l.is_this_server("r19") && !l.is_this_server("run-a"));
    }
}
