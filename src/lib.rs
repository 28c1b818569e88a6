//! busyguard: ends runaway Redis scripts by policy, in milliseconds, and leaves a trail.
//!
//! (The map below names internal modules on purpose: it is for the next engineer.)
//!
//! # Layout
//! One path for the data:
//!
//! ```text
//! policy files -> policy::load -> Policy (validated, defaults and bounds from policy::keys)
//!    one watchdog task per instance (daemon::watchdog):
//!    redis::probe --Observation--> engine (pure) --Step{events, action}--> remedy
//!      ^ its own fred                no I/O, no clock;          SCRIPT KILL / FUNCTION KILL
//!      | connection                  time is an input           SHUTDOWN NOSAVE [NOW]
//!      | healthy snapshot                                       SIGKILL, failover
//!    Event (typed detail per kind) --> record --> log line, metrics, audit trail
//!    audit trail (Record, hash chain) --> notify: one delivery task per receiver, from a cursor
//! ```
//!
//! One folder per layer; each uses only the folders listed below it (no loop between them):
//! - [`commands`]: one file per `busyguard <verb>` but `run` (check, status, show, simulate,
//!   steer).
//! - [`daemon`]: `busyguard run`'s runtime: the watchdog tasks (and `act`, which records, then
//!   sends, every wait bounded), reload and stop, the control socket's server, systemd.
//! - [`notify`]: delivery to Slack, PagerDuty and signed webhooks from the trail, never in the
//!   way.
//! - [`remedy`]: carrying out what the engine decided, once: one file per action.
//! - [`record`]: one call logs, counts and appends an event; the Prometheus metrics.
//! - [`redis`]: the only code that speaks RESP: the probe's connection, replies, TLS, forensics,
//!   Sentinel's view, the replicas.
//! - [`audit`]: the trail: append and chain, verify, read back (history, follow).
//! - [`engine`]: the pure state machine that decides, and the early warnings.
//! - [`policy`]: YAML into a validated [`policy::Policy`], every error with file:line:col.
//! - [`event`]: what happened: one table of kinds, a typed [`event::Detail`] per kind.
//! - [`model`]: plain values every layer shares (the domain's words, the snapshot, a SLOWLOG
//!   entry, text, the clock).
//!
//! The runtime is single-threaded: the work is waiting on sockets, and one thread halves the
//! cost of each probe compared with hand-offs between worker threads (see BENCHMARKS.md).
#![allow(rustdoc::private_intra_doc_links)]

pub mod audit;
pub mod cli;
pub mod commands;
pub mod daemon;
pub(crate) mod engine;
pub mod event;
pub mod model;
pub(crate) mod notify;
pub mod policy;
pub(crate) mod record;
pub(crate) mod redis;
pub(crate) mod remedy;

/// The commit busyguard was built from (`git describe`), or `unknown` outside a checkout.
pub const COMMIT: &str = env!("BUSYGUARD_COMMIT");

/// The process-wide rustls provider (ring, which fred already brings) for fred's and reqwest's
/// TLS, installed in this one place.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
