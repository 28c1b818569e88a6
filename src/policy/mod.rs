//! Policy files: YAML as operators write it, turned in this one place into a validated
//! [`Policy`] with every default filled in. Nothing downstream re-validates.
//!
//! Loading never stops at the first mistake: every error in a file is collected with its file,
//! line and column and a hint how to fix it, because an operator fixing a policy at 3 a.m.
//! should need one round trip, not ten. Secrets are read here (files, environment) and kept in
//! [`Secret`], whose `Debug` never shows them.

pub mod keys;
pub mod pem;
pub mod readable;
mod reader;
pub mod replicas;
mod schema;
pub mod scripts;
mod url;
pub(crate) mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::event::Severity;
use crate::model::kinds::{Resort, Then};

pub use schema::{parse_policy, parse_policy_with};

/// A validated policy for one Redis instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub instance: String,
    /// The file it came from, as named on the command line.
    pub source: PathBuf,
    /// Lowercase hex SHA-256 of the file's bytes: which version of the policy a decision used.
    pub content_hash: String,
    pub redis: RedisTarget,
    pub mode: Mode,
    pub probe: Probe,
    pub on_busy: OnBusy,
    pub on_hang: OnHang,
    pub limits: Limits,
    pub guards: Guards,
    pub early_warning: EarlyWarning,
    pub notify: Vec<Receiver>,
    /// A runbook for this instance, linked from Slack and PagerDuty.
    pub runbook_url: Option<String>,
    /// `topology`: who else knows this server's role.
    pub topology: Topology,
}

/// `topology`: Sentinel, when it watches this server (a Cluster is detected from INFO), and
/// the replicas busyguard may connect to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Topology {
    pub sentinel: Option<SentinelTopology>,
    /// `topology.replicas`: the only replicas watched, asked and promoted.
    pub replicas: Vec<replicas::TrustedReplica>,
    /// `topology.fence`: fence this server after a failover busyguard did not ask for.
    pub fence: bool,
}

/// `topology.sentinel`.
#[derive(Clone, Debug, PartialEq)]
pub struct SentinelTopology {
    /// The name in `sentinel monitor <name> ...`.
    pub master: String,
    /// Each sentinel to ask, with the section's credentials and TLS.
    pub sentinels: Vec<RedisTarget>,
}

/// When a script seen in the SLOWLOG is worth a `slow_script` warning.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EarlyWarning {
    Off,
    /// A share of the server's busy threshold (0.5 for `50%`).
    Share(f64),
    /// A fixed duration.
    After(Duration),
}

/// How to reach and authenticate to the server.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisTarget {
    pub endpoint: Endpoint,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub connect_timeout: Duration,
    /// `redis.tls`, for `rediss://` URLs.
    pub tls: RedisTls,
    /// `redis.commands`: commands renamed in redis.conf (`rename-command`), by their own
    /// uppercase name (`CONFIG` -> `CONFIG_b840fc02`); an empty name: disabled.
    pub commands: std::collections::BTreeMap<String, String>,
}

/// The commands busyguard sends that `rename-command` can rename (`redis.commands.<name>`).
pub const RENAMEABLE: [&str; 7] = [
    "info", "config", "script", "function", "shutdown", "slowlog", "acl",
];

/// `redis.tls`: the files are read and parsed when the policy loads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RedisTls {
    /// PEM of the CAs trusted for this server; `None`: the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM certificate chain for mutual TLS (`tls-auth-clients yes`).
    pub cert_pem: Option<Vec<u8>>,
    /// PEM private key of `cert_pem`.
    pub key_pem: Option<Secret>,
    /// The name the server's certificate must hold, when not the URL's host.
    pub server_name: Option<String>,
}

/// Where the server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Tcp { host: String, port: u16, tls: bool },
    Unix { path: PathBuf },
}

impl Endpoint {
    /// True when the server runs on this host, so its pid can be signalled.
    pub fn is_local(&self) -> bool {
        match self {
            Endpoint::Unix { .. } => true,
            Endpoint::Tcp { host, .. } => {
                matches!(host.as_str(), "localhost" | "::1") || host.starts_with("127.")
            }
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port, tls } => {
                let scheme = if *tls { "rediss" } else { "redis" };
                if host.contains(':') {
                    write!(f, "{scheme}://[{host}]:{port}")
                } else {
                    write!(f, "{scheme}://{host}:{port}")
                }
            }
            Endpoint::Unix { path } => write!(f, "unix://{}", path.display()),
        }
    }
}

/// `enforce` acts, `dry-run` decides and records but sends nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    DryRun,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub interval: Duration,
    pub snapshot_every: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OnBusy {
    pub kill_after: Duration,
    pub on_unkillable: OnUnkillable,
    /// `on_busy.scripts`: ladders of their own for known functions and EVALs.
    pub scripts: Vec<scripts::ScriptRule>,
    /// `on_busy.server_log`: the server's log file on this host, which names a busy EVAL.
    pub server_log: Option<std::path::PathBuf>,
    /// `on_busy.identify_within`: how long a kill waits for a function's name.
    pub identify_within: Duration,
}

impl OnBusy {
    /// The `then` of every ladder an incident may climb: the instance's, and each script
    /// rule's (its own, or the instance's it leaves in place). What `status` checks rights for
    /// and warns of, and what `check` weighs, follows from all of them, not the instance's alone.
    pub fn thens(&self) -> Vec<Then> {
        let mut thens = vec![self.on_unkillable.then];
        for rule in &self.scripts {
            let then = rule.then.unwrap_or(self.on_unkillable.then);
            if !thens.contains(&then) {
                thens.push(then);
            }
        }
        thens
    }

    /// Whether some ladder ends in `then`.
    pub fn may(&self, then: Then) -> bool {
        self.thens().contains(&then)
    }

    /// Whether the end of some ladder's budget may end in SHUTDOWN NOSAVE without an
    /// operator's word: its `then`, or the default or fallback it names.
    pub fn shuts_down_by_itself(&self) -> bool {
        self.thens()
            .into_iter()
            .any(|then| self.on_unkillable.shuts_down_by_itself_under(then))
    }

    /// Whether a ladder may fence this server after a failover (`REPLICAOF`): `then: failover`,
    /// or `shutdown`/`ask` with `topology.fence`.
    pub fn may_fence(&self, fence: bool) -> bool {
        self.thens().into_iter().any(|then| match then {
            Then::Failover => true,
            Then::Shutdown | Then::Ask => fence,
            Then::Notify => false,
        })
    }

    /// Whether a rule names a function: a busy FCALL's kill then waits for FUNCTION STATS.
    pub fn names_functions(&self) -> bool {
        self.scripts
            .iter()
            .any(|r| matches!(r.names, scripts::Names::Function(_)))
    }

    /// The server's log to read for a busy EVAL's name: only when a rule names an EVAL.
    pub fn eval_log(&self) -> Option<&std::path::Path> {
        let names_evals = self
            .scripts
            .iter()
            .any(|r| matches!(r.names, scripts::Names::Eval(_)));
        self.server_log.as_deref().filter(|_| names_evals)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct OnUnkillable {
    /// Recovery budget counted from the first BUSY reply.
    pub wait: Duration,
    pub then: Then,
    pub force: bool,
    /// `then: ask`: how long the approval is awaited, and what happens without one.
    pub ask_timeout: Duration,
    pub ask_default: Resort,
    /// A replica replaying its master's script (UNKILLABLE "... in the context of
    /// replication") may be shut down at the end of `wait`. Off by default: the script has
    /// already ended on the master, and the replica catches up by itself.
    pub shutdown_replicated: bool,
    /// `then: failover`: what applies when no failover can be made, and its bound.
    pub failover: FailoverPolicy,
}

impl OnUnkillable {
    /// Whether the end of a budget under `then` may end in SHUTDOWN NOSAVE without an
    /// operator's word: `then` itself, or the default or fallback it names.
    pub fn shuts_down_by_itself_under(&self, then: Then) -> bool {
        match then {
            Then::Shutdown => true,
            Then::Notify => false,
            Then::Ask => self.ask_default == Resort::Shutdown,
            Then::Failover => self.failover.fallback == Resort::Shutdown,
        }
    }
}

/// `on_busy.on_unkillable.failover`.
#[derive(Clone, Debug, PartialEq)]
pub struct FailoverPolicy {
    /// `shutdown` (under the guards) or `notify`.
    pub fallback: Resort,
    /// The request and the promotion together.
    pub timeout: Duration,
    /// The most bytes the promoted replica may be behind (`failover.max_lag`).
    pub max_lag: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OnHang {
    pub after: Duration,
    pub signal: HangSignal,
    pub signal_after: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HangSignal {
    None,
    Sigkill,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub max_shutdowns: u32,
    pub per: Duration,
}

/// Data-at-risk guards; both off by default.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Guards {
    pub max_unsaved_changes: Option<u64>,
    pub keep_primary_with_replicas: bool,
    /// Shut down a primary that has replicas and no persistence anyway (it restarts empty and
    /// its replicas resync to the empty dataset). Off: such a shutdown is withheld.
    pub allow_empty_restart: bool,
}

/// A notification receiver: where, and which events.
#[derive(Clone, Debug, PartialEq)]
pub struct Receiver {
    pub kind: ReceiverKind,
    pub filter: Filter,
    /// Undelivered this long after the event: given up (`notify_failed`).
    pub max_age: Duration,
    /// An incident's first records are held this long: a script killed within it is told as
    /// one message (its outcome), and not paged at all.
    pub quiet: Duration,
    /// An `unreachable` incident is told only if it lasts this long (a restart is not news).
    pub unreachable_grace: Duration,
    /// Dry-run records page too (PagerDuty; off by default).
    pub page_dry_run: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ReceiverKind {
    Slack {
        url: Secret,
    },
    PagerDuty {
        routing_key: Secret,
        events_url: String,
        severity: PagerDutySeverities,
    },
    Webhook {
        url: Secret,
        secret: Option<Secret>,
    },
}

impl ReceiverKind {
    pub fn name(&self) -> &'static str {
        match self {
            ReceiverKind::Slack { .. } => "slack",
            ReceiverKind::PagerDuty { .. } => "pagerduty",
            ReceiverKind::Webhook { .. } => "webhook",
        }
    }
}

/// Which events reach a receiver.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    /// Only these event names; `None`: every notifiable event.
    pub events: Option<Vec<String>>,
    pub min_severity: Severity,
}

/// The PagerDuty severity of each kind of trigger.
#[derive(Clone, Debug, PartialEq)]
pub struct PagerDutySeverities {
    pub busy: Severity,
    pub unkillable: Severity,
    pub escalated: Severity,
}

/// A secret value. `Debug` and `Display` print `<redacted>`; only [`Secret::expose`] reveals it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// A secret that was not read (`check --syntax-only`): its form is not checked.
    pub fn unread() -> Secret {
        Secret(String::new())
    }

    pub fn is_unread(&self) -> bool {
        self.0.is_empty()
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One problem in one file, at a line and column (1-based; 0 when it concerns the whole file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.col,
                self.message
            )
        }
    }
}

/// What loading a set of paths gave: the valid policies, and per file what was wrong.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub policies: Vec<Policy>,
    /// Files that did not load, each with every error found in it.
    pub rejected: Vec<(PathBuf, Vec<Diagnostic>)>,
    /// Warnings about files that loaded (an inline secret, ...).
    pub warnings: Vec<Diagnostic>,
    /// Every file looked at, in order, for `check`'s one line per file.
    pub files: Vec<PathBuf>,
    /// Folder entries not read, and why.
    pub skipped: Vec<(PathBuf, &'static str)>,
}

/// The most a policy file may hold: far more than any policy, far less than `/dev/zero`.
pub const POLICY_LIMIT: u64 = 1024 * 1024;
/// The most a secret file may hold.
pub const SECRET_LIMIT: u64 = 64 * 1024;

/// A file's bytes, read only if it is a regular file (never a FIFO, which would block the
/// reader forever, nor a device) and holds at most `limit` bytes.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file (a FIFO, a device or a folder is never read)".into());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("larger than {limit} bytes"));
    }
    Ok(bytes)
}

/// The policy files under some paths.
#[derive(Debug, Default)]
pub struct Expanded {
    pub files: Vec<PathBuf>,
    /// Entries of a folder that are not read, and why.
    pub skipped: Vec<(PathBuf, &'static str)>,
}

/// Expand each path (a file, or a folder of `*.yaml` / `*.yml`, sorted) into files, each file
/// once however often it is named (a file given twice is not "a duplicate of itself"). In a
/// folder, hidden files (an editor's `.cache-01.yaml`) and anything but a regular file (a FIFO,
/// a device) are skipped, with a word.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Expanded, Diagnostic> {
    let mut out = Expanded::default();
    for path in paths {
        if !path.is_dir() {
            out.files.push(path.clone());
            continue;
        }
        let entries = std::fs::read_dir(path).map_err(|e| whole_file(path, &e))?;
        let mut found: Vec<PathBuf> = Vec::new();
        for p in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if !matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                continue;
            }
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                out.skipped.push((p, "a hidden file is not a policy"));
            } else if !p.is_file() {
                out.skipped.push((p, "not a regular file"));
            } else {
                found.push(p);
            }
        }
        found.sort();
        out.files.extend(found);
    }
    let mut seen = Vec::new();
    out.files.retain(|f| {
        let id = std::fs::canonicalize(f).unwrap_or_else(|_| f.clone());
        let new = !seen.contains(&id);
        seen.push(id);
        new
    });
    Ok(out)
}

fn whole_file(path: &Path, err: &dyn fmt::Display) -> Diagnostic {
    Diagnostic {
        file: path.to_path_buf(),
        line: 0,
        col: 0,
        message: format!("cannot read: {err}"),
    }
}

/// Where a policy's secret and certificate files and variables are read from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Sources {
    /// As the service sees them: `${CREDENTIALS_DIRECTORY}` from the environment (systemd).
    #[default]
    Service,
    /// From an admin shell: `${CREDENTIALS_DIRECTORY}` stands for this folder, the one the unit's
    /// `LoadCredential=` lines take the files from.
    CredentialsDir(PathBuf),
    /// Not read at all (`check --syntax-only`, for CI pipelines without the secrets).
    Skip,
}

/// Load every policy under `paths`, as the service reads them.
pub fn load(paths: &[PathBuf]) -> LoadReport {
    load_with(paths, &Sources::Service)
}

/// Load every policy under `paths`. Two files claiming the same `instance`: the later is rejected.
pub fn load_with(paths: &[PathBuf], sources: &Sources) -> LoadReport {
    let mut report = LoadReport::default();
    let files = match expand_paths(paths) {
        Ok(expanded) => {
            report.skipped = expanded.skipped;
            expanded.files
        }
        Err(diag) => {
            report.files.push(diag.file.clone());
            report.rejected.push((diag.file.clone(), vec![diag]));
            return report;
        }
    };
    // Where each instance was first defined, to name it in the duplicate's error.
    let mut defined: Vec<(String, Diagnostic)> = Vec::new();
    for file in files {
        report.files.push(file.clone());
        let text = match read_limited(&file, POLICY_LIMIT) {
            Ok(bytes) => bytes,
            Err(e) => {
                report
                    .rejected
                    .push((file.clone(), vec![whole_file(&file, &e)]));
                continue;
            }
        };
        match parse_policy_with(&file, &text, sources) {
            Ok((policy, warnings, instance_at)) => {
                if let Some((_, first)) = defined.iter().find(|(name, _)| *name == policy.instance)
                {
                    let diag = Diagnostic {
                        message: format!(
                            "instance `{}` is already defined in {}:{}:{}; each instance needs its own name",
                            policy.instance,
                            first.file.display(),
                            first.line,
                            first.col
                        ),
                        ..instance_at
                    };
                    report.rejected.push((file, vec![diag]));
                    continue;
                }
                defined.push((policy.instance.clone(), instance_at));
                report.warnings.extend(warnings);
                report.policies.push(policy);
            }
            Err(diags) => report.rejected.push((file, diags)),
        }
    }
    report
}
