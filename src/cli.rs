//! The command line, as clap types. Turning these into actions is `main`'s job.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "busyguard",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("BUSYGUARD_COMMIT"), ")"),
    about = "Ends runaway Redis scripts by policy, and leaves a trail"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Supervise every instance described by the policy files until SIGTERM/SIGINT.
    Run {
        /// Policy files, or folders of `*.yaml`.
        #[arg(long, required = true, num_args = 1..)]
        policies: Vec<PathBuf>,
        /// Where the audit trail and the daemon's state live
        /// (default: $STATE_DIRECTORY, else /var/lib/busyguard).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Decide and record everything, send nothing, whatever the files say.
        #[arg(long)]
        dry_run: bool,
        /// Serve Prometheus metrics at ADDR (host:port, or :port for every interface), and the
        /// health endpoints /livez, /readyz and /healthz.
        #[arg(long)]
        metrics: Option<String>,
        /// Beside Redis in a pod: when told to stop (SIGTERM, or kubelet's preStop call
        /// `GET /prestop` on the metrics listener), kill any running script first, grace and
        /// script rules aside, so Redis can act on its own SIGTERM instead of being SIGKILLed.
        /// Not for a host's service: stopping busyguard there must not touch a script.
        #[arg(long)]
        kill_on_stop: bool,
        /// Log lines as `text` or `json` (one object a line); under journald each keeps its
        /// priority.
        #[arg(long, value_parser = ["text", "json"], default_value = "text")]
        log_format: String,
        /// The lowest level logged: error, warn, info, debug or trace (default: info, or
        /// `RUST_LOG`).
        #[arg(long, value_parser = ["error", "warn", "info", "debug", "trace"])]
        log_level: Option<String>,
    },
    /// Validate policy files without touching any Redis.
    Check {
        /// Policy files, or folders of `*.yaml` and `*.yml`.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        sources: SourcesArgs,
        /// Check the files' form only: secret and certificate files and variables are not
        /// read (for CI pipelines that lack them).
        #[arg(long, conflicts_with = "credentials")]
        syntax_only: bool,
    },
    /// Connect once to each instance and report what a decision would rest on.
    Status {
        /// Policy files, or folders of `*.yaml` and `*.yml`, of the instances to ask.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Where `run` keeps its trail (for the slowest scripts of the last day); the same
        /// default as `run`.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        #[command(flatten)]
        sources: SourcesArgs,
    },
    /// Pause actions for a while (probing, records and notifications go on; every kill or
    /// shutdown is decided and recorded as withheld). Survives a restart until it expires.
    Pause {
        #[command(flatten)]
        target: Target,
        /// How long, e.g. `30m`: at most a week (a typo must not disable busyguard).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Allow a pause longer than a week (up to a year).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        steer: SteerArgs,
    },
    /// End a pause early.
    Resume {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        steer: SteerArgs,
    },
    /// During an incident: no escalation until `release` (the kill still goes unless paused).
    Hold {
        /// The instance, as its policy names it.
        instance: String,
        #[command(flatten)]
        steer: SteerArgs,
    },
    /// End a hold. Past the end of the budget the escalation would then go at the next BUSY
    /// reply: that takes `--now`, so a release never sends SHUTDOWN NOSAVE unannounced.
    Release {
        /// The instance, as its policy names it.
        instance: String,
        /// Past the end of the budget: let the escalation go now.
        #[arg(long)]
        now: bool,
        #[command(flatten)]
        steer: SteerArgs,
    },
    /// End the wait early: escalate now (the policy's `then`; a shutdown for `then: ask`), with
    /// the usual guards.
    Approve {
        /// The instance, as its policy names it.
        instance: String,
        #[command(flatten)]
        steer: SteerArgs,
    },
    /// What the running daemon is doing: each instance's state, open incident, next step and
    /// its deadline, pauses and holds.
    Ps {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// The running daemon's state dir (default: $STATE_DIRECTORY, else /var/lib/busyguard).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Rehearse a policy: run its decisions over a scenario (or over what a real incident's
    /// trail says the server did) and print them. No Redis, no network.
    Simulate {
        /// The policy file.
        policy: PathBuf,
        /// A scenario file: one observation a line (`TIME pong|busy|silent|...`), the grammar in
        /// busyguard-simulate(1); examples in /usr/share/doc/busyguard/examples/scenarios/.
        #[arg(required_unless_present = "trail", conflicts_with = "trail")]
        scenario: Option<PathBuf>,
        /// Replay the observations an audit trail implies for the policy's instance instead.
        #[arg(long)]
        trail: Option<PathBuf>,
    },
    /// Read and check an audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the hash chain of an audit file, or of rotated files given oldest first.
    Verify {
        /// The audit trail (`<state-dir>/audit.jsonl`), rotated files first, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// A readable timeline of the incidents in audit files (rotated ones oldest first, like
    /// `verify`).
    Show {
        /// The audit trail (`<state-dir>/audit.jsonl`), rotated files first, oldest first.
        #[arg(required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// Only this incident (exit 1 when the files hold no such incident).
        #[arg(long)]
        incident: Option<String>,
        /// Only this instance.
        #[arg(long)]
        instance: Option<String>,
        /// Only incidents opened since: a duration back from now (`2h`) or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// One line per incident: when, what, how it ended, how long it lasted.
        #[arg(long, conflicts_with = "json")]
        summary: bool,
        /// Every record, one line each (slow scripts, operator commands, rejected policies and
        /// the daemon's own, not only incidents).
        #[arg(long, conflicts_with_all = ["json", "summary"])]
        all: bool,
        /// One JSON object per incident (with its records), one per line.
        #[arg(long)]
        json: bool,
        /// After the history, print new records as the daemon writes them (until Ctrl-C).
        #[arg(long)]
        follow: bool,
    },
}

/// One instance, or `--all`.
/// Where `${CREDENTIALS_DIRECTORY}` points outside the service.
#[derive(Args, Debug)]
pub struct SourcesArgs {
    /// The folder the unit's `LoadCredential=` lines take the secrets from (e.g.
    /// /etc/busyguard/credentials): policies naming `${CREDENTIALS_DIRECTORY}/NAME` read
    /// DIR/NAME, as the service would read its copy.
    #[arg(long, value_name = "DIR")]
    pub credentials: Option<PathBuf>,
}

impl SourcesArgs {
    pub fn sources(&self) -> crate::policy::Sources {
        match &self.credentials {
            Some(dir) => crate::policy::Sources::CredentialsDir(dir.clone()),
            None => crate::policy::Sources::Service,
        }
    }
}

#[derive(Args, Debug)]
pub struct Target {
    /// The instance (as its policy names it).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub instance: Option<String>,
    /// Every supervised instance.
    #[arg(long)]
    pub all: bool,
}

/// What every steering command takes.
#[derive(Args, Debug)]
pub struct SteerArgs {
    /// Why: recorded in the audit trail and notified with who sent it.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// The running daemon's state dir (default: $STATE_DIRECTORY, else /var/lib/busyguard).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}
