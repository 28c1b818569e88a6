//! The command line, as clap types. Turning these into actions is `main`'s job.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "busyguard",
    version,
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
        /// Serve Prometheus metrics at ADDR (host:port).
        #[arg(long)]
        metrics: Option<String>,
    },
    /// Validate policy files without touching any Redis.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Connect once to each instance and report what a decision would rest on.
    Status {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Where `run` keeps its trail (for the slowest scripts of the last day); the same
        /// default as `run`.
        #[arg(long)]
        state_dir: Option<PathBuf>,
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
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// A readable timeline of the incidents in an audit file.
    Show {
        file: PathBuf,
        #[arg(long)]
        incident: Option<String>,
    },
}
