//! The healthy snapshot: what the server said about itself the last time it answered.
//!
//! While a script is busy the server answers INFO and CONFIG with BUSY, so every fact a decision
//! needs (version, role, replicas, persistence, threshold, pid, run id) must come from here, and
//! its age goes with it into every decision record.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Who a server is, as its healthy snapshot says: a run id (new at every start) and a
/// replication ID (a server that took over from it keeps it as `master_replid2`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub run_id: String,
    pub replid: String,
}

/// What SHUTDOWN NOSAVE would lose, by persistence mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "persistence", rename_all = "lowercase")]
pub enum DataAtRisk {
    Aof {
        loses: String,
        aof_last_write_status: Option<String>,
    },
    Rdb {
        loses: String,
        rdb_changes_since_last_save: Option<u64>,
        rdb_last_save_time: Option<u64>,
    },
    None {
        loses: String,
        rdb_changes_since_last_save: Option<u64>,
    },
    Unknown,
}

/// One replica of a primary, from its INFO line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplicaLink {
    pub address: String,
    pub state: String,
    pub lag_s: Option<u64>,
    pub behind_bytes: Option<u64>,
}

/// Facts read from INFO and `CONFIG GET`. What decision records carry of it is what it
/// serializes (the fields marked `skip` stay in memory); a snapshot read back from the trail has
/// those fields empty.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    /// The server's own version: Valkey's `valkey_version`, else `redis_version` (Valkey's
    /// `redis_version` is a compatibility value, 7.2.4 on every Valkey so far).
    pub version: Option<String>,
    /// `valkey` when the server says so, else `redis`.
    pub server_name: String,
    pub process_id: Option<u32>,
    /// Changes on every start: how a restart is told from a reconnect.
    pub run_id: Option<String>,
    /// The TCP port it listens on (`tcp_port`; 0: none): how a local server reached through
    /// its unix socket is recognised when a peer names it by `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_port: Option<u16>,
    pub uptime_seconds: Option<u64>,
    pub aof_enabled: Option<bool>,
    #[serde(skip)]
    pub aof_last_write_status: Option<String>,
    pub rdb_changes_since_last_save: Option<u64>,
    #[serde(skip)]
    pub rdb_last_save_time: Option<u64>,
    pub role: Option<String>,
    pub connected_replicas: Option<u64>,
    pub master_repl_offset: Option<u64>,
    /// The replication ID, shared by a primary and every replica of it: how a replica is told
    /// to be this server's before it is asked to take over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_replid: Option<String>,
    /// The `slaveN:` lines as the server wrote them (address, state, offset, lag).
    pub replicas: Vec<String>,
    /// `cluster_enabled`: a Cluster node (a busy primary there is never failed over by the
    /// Cluster itself: it keeps answering the cluster bus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_enabled: Option<bool>,
    /// `busy-reply-threshold` (`lua-time-limit` on 6.2) in ms; `None` if CONFIG was refused.
    pub busy_threshold_ms: Option<u64>,
    pub appendonly: Option<String>,
    pub appendfsync: Option<String>,
    pub save: Option<String>,
    /// Start time of `process_id` (clock ticks since boot, /proc), when the server is local:
    /// a signal goes only to the same process, never to a reused pid.
    #[serde(skip)]
    pub process_start_ticks: Option<u64>,
    /// `errorstat_BUSY` count: BUSY replies served since the server started.
    #[serde(skip)]
    pub busy_errors: Option<u64>,
    /// `errorstat_UNKILLABLE` count.
    #[serde(skip)]
    pub unkillable_errors: Option<u64>,
    /// Sum of `rejected_calls` over commandstats.
    #[serde(skip)]
    pub rejected_calls: Option<u64>,
    /// SCRIPT KILL and FUNCTION KILL calls the server counted (commandstats), to tell a kill by
    /// another client from a script that ended by itself.
    #[serde(skip)]
    pub kill_calls: Option<u64>,
    /// The server's clock when it answered (`server_time_usec`): times the server logs (its
    /// SLOWLOG) are compared with its own clock, never with busyguard's.
    #[serde(skip)]
    pub server_time_usec: Option<u64>,
    /// What could not be read (INFO or CONFIG refused, renamed or failing): the fields it would
    /// have filled are unknown, and the guards that need them withhold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// The server's refusal when busyguard's credential was checked again with this snapshot
    /// (a password rotated on the server): this connection, logged in before, still works;
    /// the next one will be refused. Told by a `probe_fault`, not kept in records.
    #[serde(skip)]
    pub login_refused: Option<String>,
}

impl DataAtRisk {
    /// What would be lost, in words (`None`: unknown).
    pub fn loses(&self) -> Option<&str> {
        match self {
            DataAtRisk::Aof { loses, .. }
            | DataAtRisk::Rdb { loses, .. }
            | DataAtRisk::None { loses, .. } => Some(loses),
            DataAtRisk::Unknown => None,
        }
    }

    /// The persistence mode, as the records name it.
    pub fn persistence(&self) -> &'static str {
        match self {
            DataAtRisk::Aof { .. } => "aof",
            DataAtRisk::Rdb { .. } => "rdb",
            DataAtRisk::None { .. } => "none",
            DataAtRisk::Unknown => "unknown",
        }
    }
}

impl Snapshot {
    /// Build from the text of INFO (its sections) and CONFIG GET pairs.
    pub fn from_info(info: &str, config: &HashMap<String, String>) -> Snapshot {
        let f: HashMap<&str, &str> = info
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k, v.trim()))
            .collect();
        let num = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok());
        let text = |k: &str| f.get(k).map(|v| v.to_string());
        let mut snapshot = Snapshot {
            version: text("valkey_version").or_else(|| text("redis_version")),
            server_name: text("server_name").unwrap_or_else(|| "redis".into()),
            process_id: num("process_id").map(|p| p as u32),
            run_id: text("run_id"),
            tcp_port: num("tcp_port")
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0),
            uptime_seconds: num("uptime_in_seconds"),
            aof_enabled: num("aof_enabled").map(|v| v == 1),
            aof_last_write_status: text("aof_last_write_status"),
            rdb_changes_since_last_save: num("rdb_changes_since_last_save"),
            rdb_last_save_time: num("rdb_last_save_time"),
            role: text("role"),
            connected_replicas: num("connected_slaves"),
            master_repl_offset: num("master_repl_offset"),
            master_replid: text("master_replid"),
            replicas: info
                .lines()
                .filter(|l| l.starts_with("slave") && l.contains(":ip="))
                .map(str::to_string)
                .collect(),
            cluster_enabled: num("cluster_enabled").map(|v| v == 1),
            busy_threshold_ms: config
                .get("busy-reply-threshold")
                .or(config.get("lua-time-limit"))
                .and_then(|v| v.parse().ok()),
            appendonly: config.get("appendonly").cloned(),
            appendfsync: config.get("appendfsync").cloned(),
            save: config.get("save").cloned(),
            process_start_ticks: None,
            busy_errors: errorstat(&f, "BUSY"),
            unkillable_errors: errorstat(&f, "UNKILLABLE"),
            errors: Vec::new(),
            login_refused: None,
            server_time_usec: num("server_time_usec"),
            kill_calls: f.contains_key("total_error_replies").then(|| {
                ["cmdstat_script|kill", "cmdstat_function|kill"]
                    .iter()
                    .filter_map(|k| f.get(k))
                    .filter_map(|v| {
                        v.strip_prefix("calls=")?
                            .split(',')
                            .next()?
                            .parse::<u64>()
                            .ok()
                    })
                    .sum()
            }),
            rejected_calls: f
                .iter()
                .filter(|(k, _)| k.starts_with("cmdstat_"))
                .map(|(_, v)| {
                    v.split(',')
                        .find_map(|p| p.strip_prefix("rejected_calls="))
                        .and_then(|n| n.parse::<u64>().ok())
                })
                .sum(),
        };
        // 6.x counts SCRIPT KILL under all of SCRIPT: a kill by another client is unknown.
        if snapshot.major_version().is_some_and(|m| m < 7) {
            snapshot.kill_calls = None;
        }
        snapshot
    }

    /// The replicas as the primary sees them: address, link state, seconds since their last
    /// acknowledgement, and bytes behind the primary's replication offset.
    pub fn replica_links(&self) -> Vec<ReplicaLink> {
        self.replicas
            .iter()
            .filter_map(|line| {
                let (_, fields) = line.split_once(':')?;
                let field = |k: &str| {
                    fields
                        .split(',')
                        .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
                };
                let offset = field("offset").and_then(|v| v.parse::<u64>().ok());
                Some(ReplicaLink {
                    address: format!("{}:{}", field("ip")?, field("port")?),
                    state: field("state").unwrap_or("?").to_string(),
                    lag_s: field("lag").and_then(|v| v.parse().ok()),
                    behind_bytes: self
                        .master_repl_offset
                        .zip(offset)
                        .map(|(m, o)| m.saturating_sub(o)),
                })
            })
            .collect()
    }

    /// The server as operators name it: `valkey 8.0.1`, `redis 6.2.14`.
    pub fn identity(&self) -> String {
        let name = match self.server_name.as_str() {
            "" => "redis",
            name => name,
        };
        format!(
            "{name} {}",
            self.version.as_deref().unwrap_or("(version unknown)")
        )
    }

    /// The major version, for the version-aware SHUTDOWN form.
    pub fn major_version(&self) -> Option<u32> {
        self.version.as_deref()?.split('.').next()?.parse().ok()
    }

    /// What a SHUTDOWN NOSAVE would lose, as the audit's data-at-risk estimate.
    pub fn data_at_risk(&self) -> DataAtRisk {
        match self.aof_enabled {
            Some(true) => DataAtRisk::Aof {
                loses: "only the running script's own writes (AOF is flushed at shutdown)".into(),
                aof_last_write_status: self.aof_last_write_status.clone(),
            },
            Some(false) if self.save.as_deref().is_some_and(|s| !s.is_empty()) => DataAtRisk::Rdb {
                loses: "every change since the last save".into(),
                rdb_changes_since_last_save: self.rdb_changes_since_last_save,
                rdb_last_save_time: self.rdb_last_save_time,
            },
            Some(false) => DataAtRisk::None {
                loses: "the whole dataset (no AOF, no RDB save points)".into(),
                rdb_changes_since_last_save: self.rdb_changes_since_last_save,
            },
            None => DataAtRisk::Unknown,
        }
    }
}

/// One field of an INFO (or CLUSTER INFO) text, `key:value` on its own line.
pub fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// `errorstat_<CODE>:count=N,...` as N (0 when the section is there but the code is not).
fn errorstat(fields: &HashMap<&str, &str>, code: &str) -> Option<u64> {
    match fields.get(format!("errorstat_{code}").as_str()) {
        Some(v) => v.strip_prefix("count=")?.split(',').next()?.parse().ok(),
        None => fields.contains_key("total_error_replies").then_some(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_decisions_need() {
        let info = "# Server\r\nredis_version:7.0.15\r\nprocess_id:42\r\nrun_id:abc\r\n\
                    # Persistence\r\naof_enabled:0\r\nrdb_changes_since_last_save:17\r\n\
                    # Replication\r\nrole:master\r\nconnected_slaves:1\r\n\
                    slave0:ip=127.0.0.1,port=7001,state=online,offset=10,lag=0\r\n";
        let config = HashMap::from([("lua-time-limit".to_string(), "250".to_string())]);
        let s = Snapshot::from_info(info, &config);
        assert_eq!(s.major_version(), Some(7));
        assert_eq!(s.process_id, Some(42));
        assert_eq!(s.aof_enabled, Some(false));
        assert_eq!(s.rdb_changes_since_last_save, Some(17));
        assert_eq!(s.connected_replicas, Some(1));
        assert_eq!(s.replicas.len(), 1);
        assert_eq!(s.busy_threshold_ms, Some(250));
    }

    #[test]
    fn replica_links_say_address_state_lag_and_bytes_behind() {
        let info = "role:master\r\nconnected_slaves:1\r\n\
            slave0:ip=10.0.0.7,port=6380,state=online,offset=900,lag=1\r\n\
            master_repl_offset:1000\r\ncluster_enabled:1\r\n";
        let s = Snapshot::from_info(info, &HashMap::new());
        let links = s.replica_links();
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].address, "10.0.0.7:6380");
        assert_eq!(links[0].state, "online");
        assert_eq!(links[0].lag_s, Some(1));
        assert_eq!(links[0].behind_bytes, Some(100));
        assert_eq!(s.cluster_enabled, Some(true));
    }

    #[test]
    fn kills_by_other_clients_are_counted_from_7_0_and_unknown_on_6_x() {
        let stats = "total_error_replies:0\r\ncmdstat_script|kill:calls=2,usec=1\r\n";
        let seven =
            Snapshot::from_info(&format!("redis_version:7.0.15\r\n{stats}"), &HashMap::new());
        assert_eq!(seven.kill_calls, Some(2));
        // 6.x counts SCRIPT KILL under `cmdstat_script`, with every other SCRIPT subcommand.
        let six = "redis_version:6.2.14\r\ntotal_error_replies:0\r\ncmdstat_script:calls=9\r\n";
        assert_eq!(Snapshot::from_info(six, &HashMap::new()).kill_calls, None);
    }
}
