//! busyguard: ends runaway Redis scripts by policy, in milliseconds, and leaves a trail.
//!
//! (The map below names internal modules on purpose: it is for the next engineer.)
//!
//! # Layout
//! One path for the data:
//!
//! ```text
//! policy files -> policy::load -> Policy (validated, defaults and bounds from policy::keys)
//!    one watchdog task per instance (watchdog):
//!    probe --Observation--> engine (pure) --Step{events, action}--> remedy
//!      ^ its own fred         no I/O, no clock;            SCRIPT KILL / FUNCTION KILL
//!      | connection           time is an input              SHUTDOWN NOSAVE [NOW]
//!      | healthy snapshot                                   SIGKILL (hung local server)
//!    Event (typed detail per kind) --> recorder --> log line, metrics, audit trail
//!    audit trail (Record, hash chain) --> notify: one delivery task per receiver, from a cursor
//! ```
//!
//! - [`policy`] turns YAML ([`yaml`] keeps positions) into a validated [`policy::Policy`], every
//!   error with file:line:col: `reader` reads any tree, `schema` knows the sections, `keys`
//!   holds every key's default and bounds; [`check`] prints the result.
//! - [`probe`] owns the connection and reads replies; [`snapshot`] is what a healthy server said
//!   (with what it could not say).
//! - [`engine`] decides; it is the only place the remediation ladder lives: `vocab` (the words
//!   shared with probe and remedy), `ladder`, `failover`, `silence`, `guards` (why a shutdown is withheld),
//!   `resume` (an incident left open by an earlier run).
//! - [`remedy`] sends what the engine decided, once; [`failover`] asks Sentinel or a Cluster
//!   replica for a promotion (`then: failover`) and watches for it; [`sentinel`] reads
//!   Sentinel's view of the primary,
//!   [`replicas`] whether one of the busy primary's replicas took over.
//! - [`watchdog`] ties them together per instance (`act`: record, then send, every wait bounded);
//!   [`daemon`] runs the watchdogs, reloads and stops them on the caller's [`daemon::Control`],
//!   and speaks to systemd ([`sdnotify`], [`journal`]).
//! - [`event`] is the single source of what happened: one table of kinds, a typed
//!   [`event::Detail`] per kind. [`recorder`] logs, counts and appends each event in one call;
//!   [`audit`] writes the [`audit::Record`]s, verifies and replays the trail; [`show`] reads it
//!   back as timelines; [`forensics`] adds what the server can tell after the fact.
//! - [`notify`] delivers records to Slack, PagerDuty and signed webhooks, never in the way.
//! - [`metrics`] serves Prometheus text; [`status`] reports what a decision would rest on, with
//!   [`prevention`]'s findings and
//!   [`supervisor`]'s restart settings; [`early`] warns of slow scripts from the SLOWLOG before BUSY.
//! - [`statedir`] keeps one writer per state dir; [`control`] is the socket operators steer the
//!   daemon through (pause, hold, approve, ps); [`simulate`] rehearses a policy on the engine.
//! - [`clock`] and [`text`]: the wall clock and the one way text is cut.
//!
//! The runtime is single-threaded: the work is waiting on sockets, and one thread halves the
//! cost of each probe compared with hand-offs between worker threads (see BENCHMARKS.md).
#![allow(rustdoc::private_intra_doc_links)]

pub mod audit;
pub mod check;
pub mod cli;
pub mod control;
pub mod daemon;
pub(crate) mod engine;
pub mod event;
pub mod journal;
pub mod model;
pub(crate) mod notify;
pub mod policy;
pub(crate) mod prevention;
pub(crate) mod record;
pub(crate) mod redis;
pub(crate) mod remedy;
pub(crate) mod sdnotify;
pub mod show;
pub mod simulate;
pub(crate) mod statedir;
pub mod status;
pub(crate) mod supervisor;
pub(crate) mod watchdog;

/// The commit busyguard was built from (`git describe`), or `unknown` outside a checkout.
pub const COMMIT: &str = env!("BUSYGUARD_COMMIT");

/// The process-wide rustls provider (ring, which fred already brings) for fred's and reqwest's
/// TLS, installed in this one place.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
