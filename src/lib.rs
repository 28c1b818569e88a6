//! busyguard: ends runaway Redis scripts by policy, in milliseconds, and leaves a trail.
//!
//! # Layout
//! One path for the data:
//!
//! ```text
//! policy files -> policy::load -> Policy (validated, defaults filled)
//!    one watchdog task per instance (watchdog):
//!    probe --Observation--> engine (pure) --Step{events, action}--> remedy
//!      ^ its own fred         no I/O, no clock;            SCRIPT KILL / FUNCTION KILL
//!      | connection           time is an input              SHUTDOWN NOSAVE [NOW]
//!      | healthy snapshot                                   SIGKILL (hung local server)
//!                      Event --> audit trail (hash chain; fsync before any *_sent), logs,
//!                                metrics
//!    audit trail --> notify: one delivery task per receiver, reading the trail from its cursor
//! ```
//!
//! - [`policy`] turns YAML ([`yaml`] keeps positions) into a validated [`policy::Policy`], every
//!   error with file:line:col; [`check`] prints them.
//! - [`probe`] owns the connection and reads replies; [`snapshot`] is what a healthy server said.
//! - [`engine`] decides; it is the only place the remediation ladder lives.
//! - [`remedy`] sends what the engine decided, once.
//! - [`watchdog`] ties them together per instance; [`daemon`] runs the watchdogs, reloads and
//!   stops them, and speaks to systemd ([`sdnotify`], [`journal`]).
//! - [`event`] is the single source of what happened; [`audit`] writes, verifies and replays the
//!   trail, [`show`] reads it back as timelines, [`forensics`] adds what the server can tell
//!   after the fact.
//! - [`notify`] delivers events to Slack, PagerDuty and signed webhooks, never in the way.
//! - [`metrics`] serves Prometheus text; [`status`] reports what a decision would rest on.
//!
//! The runtime is single-threaded: the work is waiting on sockets, and one thread halves the
//! cost of each probe compared with hand-offs between worker threads (see BENCHMARKS.md).
pub mod audit;
pub mod check;
pub mod cli;
pub mod clock;
pub mod daemon;
pub mod engine;
pub mod event;
pub mod forensics;
pub mod journal;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod probe;
pub mod recorder;
pub mod remedy;
pub mod sdnotify;
pub mod show;
pub mod snapshot;
pub mod status;
pub mod text;
pub mod watchdog;
pub mod yaml;

/// The process-wide rustls provider (ring, which fred already brings) for fred's and reqwest's
/// TLS, installed in this one place.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
