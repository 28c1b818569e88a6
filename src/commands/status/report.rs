//! What `busyguard status` found, as typed values: serialized for `--json` (the field names are
//! what operators' scripts read, so they stay), and written in sentences for people by
//! `Display`. Nothing decides from the JSON: `status` builds these, then prints them.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::commands::steer;
use crate::engine::Live;
use crate::model::kinds::FailoverVia;
use crate::model::snapshot::{DataAtRisk, ReplicaLink};
use crate::redis::sentinel::SentinelView;

/// Everything `status` found, one entry per policy file or instance.
#[derive(Debug, Serialize)]
pub struct Report {
    pub instances: Vec<Entry>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Entry {
    Instance(Box<InstanceStatus>),
    /// A policy file that did not load.
    Rejected(Rejected),
}

#[derive(Debug, Serialize)]
pub struct Rejected {
    pub file: String,
    pub reachable: bool,
    pub error: &'static str,
    pub problems: Vec<String>,
}

impl Rejected {
    pub fn new(file: String, problems: Vec<String>) -> Rejected {
        Rejected {
            file,
            reachable: false,
            error: "invalid policy",
            problems,
        }
    }
}

/// One instance: its policy's target, what the server said, the rights, the topology, and what
/// the running daemon is doing with it.
#[derive(Debug, Default, Serialize)]
pub struct InstanceStatus {
    pub instance: String,
    pub file: String,
    pub endpoint: String,
    pub user: String,
    /// The policy's ladder in words.
    pub plan: String,
    pub reachable: bool,
    /// The server answered set-up with an error (WRONGPASS, NOPERM): up, refusing busyguard.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon: Option<DaemonView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whoami: Option<Whoami>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshot_errors: Vec<String>,
    /// What the healthy snapshot says (absent when none was read).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub server_facts: Option<ServerFacts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy_now: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_error: Option<String>,
    /// Each right: `granted`, `missing (...)`, `unchecked (...)`, `not applicable (...)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rights: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<Vec<SentinelView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prevention: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
}

/// What the running daemon says of the instance.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum DaemonView {
    /// Its `ps` line (`null`: it did not answer in time).
    Live(Option<Box<Live>>),
    Error {
        error: String,
    },
}

/// Who the server says this connection is.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Whoami {
    User(String),
    Unchecked { unchecked: String },
}

/// The healthy snapshot's facts that `status` shows.
#[derive(Debug, Serialize)]
pub struct ServerFacts {
    pub server: String,
    pub version: Option<String>,
    pub role: Option<String>,
    pub replicas: Option<u64>,
    pub replica_links: Vec<ListedLink>,
    pub busy_threshold_ms: Option<u64>,
    pub shutdown_nosave_loses: DataAtRisk,
    pub rdb_changes_since_last_save: Option<u64>,
}

/// A replica as the primary's INFO shows it, and whether the policy lists it (only those are
/// ever contacted).
#[derive(Debug, Serialize)]
pub struct ListedLink {
    #[serde(flatten)]
    pub link: ReplicaLink,
    pub listed: bool,
}

/// CLUSTER INFO's state and size, and the node timeout.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ClusterView {
    Info {
        state: Option<String>,
        known_nodes: Option<u64>,
        size: Option<u64>,
        node_timeout_ms: Option<u64>,
    },
    Error {
        error: String,
    },
}

impl ClusterView {
    pub fn node_timeout_ms(&self) -> Option<u64> {
        match self {
            ClusterView::Info {
                node_timeout_ms, ..
            } => *node_timeout_ms,
            ClusterView::Error { .. } => None,
        }
    }
}

/// What a failover would do now, or why none could be made.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum FailoverView {
    Plan {
        via: FailoverVia,
        request_to: String,
        replicas_in_sync: Vec<ReplicaLink>,
    },
    None {
        none: String,
    },
}

/// `unknown` for a figure nobody could read.
fn or_unknown(n: Option<u64>) -> String {
    n.map_or("unknown".into(), |n| n.to_string())
}

fn or_q(n: Option<u64>) -> String {
    n.map_or("?".into(), |n| n.to_string())
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Instance(s) => s.fmt(f),
            Entry::Rejected(r) => {
                writeln!(
                    f,
                    "{}    INVALID (not connected: the policy cannot be read)",
                    r.file
                )?;
                writeln!(f, "  error: {}", r.error)?;
                for p in &r.problems {
                    writeln!(f, "  problem: {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reach = match (self.reachable, self.refused) {
            (true, _) => "reachable",
            (false, true) => {
                "REFUSES busyguard (a configuration fault: the server answers, busyguard cannot supervise it)"
            }
            (false, false) => "UNREACHABLE",
        };
        writeln!(f, "{}  {}  {reach}", self.instance, self.endpoint)?;
        writeln!(f, "  policy: {}", self.file)?;
        writeln!(f, "  plan: {}", self.plan)?;
        if let Some(e) = &self.error {
            writeln!(f, "  error: {e}")?;
        }
        match &self.daemon {
            Some(DaemonView::Error { error }) => writeln!(f, "  daemon: {error}")?,
            Some(DaemonView::Live(Some(live))) => {
                writeln!(f, "  daemon: {}", steer::live_text(live))?
            }
            Some(DaemonView::Live(None)) => writeln!(
                f,
                "  daemon: no answer in time (its watchdog is carrying out an action)"
            )?,
            None => {}
        }
        let user = &self.user;
        match &self.whoami {
            Some(Whoami::User(who)) if who == user => {
                writeln!(f, "  user: {user} (the server confirms: ACL WHOAMI)")?
            }
            Some(Whoami::User(who)) => writeln!(
                f,
                "  user: {user} in the policy, but the server says this connection is `{who}`"
            )?,
            Some(Whoami::Unchecked { unchecked }) => {
                writeln!(f, "  user: {user} (not confirmed: {unchecked})")?
            }
            None => writeln!(f, "  user: {user}")?,
        }
        if let Some(s) = &self.server_facts {
            self.fmt_server(s, f)?;
        }
        for e in &self.snapshot_errors {
            writeln!(
                f,
                "  snapshot incomplete: {e} (the facts it would give are unknown)"
            )?;
        }
        if let Some(e) = &self.snapshot_error {
            writeln!(f, "  snapshot failed: {e}")?;
        }
        if let Some(busy) = &self.busy_now {
            writeln!(f, "  busy now: the server answered `{busy}`")?;
        }
        for v in self.sentinel.iter().flatten() {
            writeln!(f, "  {v}")?;
        }
        if let Some(rights) = &self.rights {
            let line: Vec<String> = rights.iter().map(|(k, v)| format!("{k} {v}")).collect();
            writeln!(f, "  rights: {}", line.join(", "))?;
        }
        for p in self.prevention.iter().flatten() {
            writeln!(f, "  prevention: {p}")?;
        }
        for w in self.warnings.iter().flatten() {
            writeln!(f, "  warning: {w}")?;
        }
        Ok(())
    }
}

impl InstanceStatus {
    fn fmt_server(&self, s: &ServerFacts, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  server: {} {}, role {}, {} replica(s), busy threshold {}",
            s.server,
            s.version.as_deref().unwrap_or("(version unknown)"),
            s.role.as_deref().unwrap_or("unknown"),
            or_unknown(s.replicas),
            s.busy_threshold_ms
                .map_or("unknown".into(), |t| format!("{t}ms")),
        )?;
        for r in &s.replica_links {
            writeln!(
                f,
                "  replica {}: {}, last heard {} s ago, {} bytes behind{}",
                r.link.address,
                r.link.state,
                or_q(r.link.lag_s),
                or_q(r.link.behind_bytes),
                match r.listed {
                    false => " (not in `topology.replicas`: never contacted)",
                    true => "",
                },
            )?;
        }
        match &self.cluster {
            Some(ClusterView::Error { error }) => {
                writeln!(f, "  cluster: enabled; CLUSTER INFO: {error}")?
            }
            Some(ClusterView::Info {
                state,
                known_nodes,
                node_timeout_ms,
                ..
            }) => writeln!(
                f,
                "  cluster: state {}, {} known node(s), node-timeout {} ms",
                state.as_deref().unwrap_or("?"),
                or_q(*known_nodes),
                or_q(*node_timeout_ms)
            )?,
            None => {}
        }
        match &self.failover {
            Some(FailoverView::None { none }) => {
                writeln!(f, "  failover: none possible now: {none}")?
            }
            Some(FailoverView::Plan {
                via,
                request_to,
                replicas_in_sync,
            }) => {
                let replicas: Vec<&str> = replicas_in_sync
                    .iter()
                    .map(|r| r.address.as_str())
                    .collect();
                writeln!(
                    f,
                    "  failover: through {} ({request_to}), replicas in sync, least behind first: {}",
                    via.name(),
                    replicas.join(", ")
                )?
            }
            None => {}
        }
        writeln!(
            f,
            "  SHUTDOWN NOSAVE now: {} ({}; {} unsaved changes)",
            s.shutdown_nosave_loses.loses().unwrap_or("unknown"),
            s.shutdown_nosave_loses.persistence(),
            or_unknown(s.rdb_changes_since_last_save),
        )
    }
}
