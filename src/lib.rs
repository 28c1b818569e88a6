//! busyguard: ends runaway Redis scripts by policy, in milliseconds, and leaves a trail.
//!
//! # Layout
//! One path for the data:
//!
//! ```text
//! policy files -> policy::load -> Policy (validated, defaults filled)
//!    one watchdog task per instance:
//!    probe --Observation--> engine (pure) --Step{events, action}--> remedy
//!      ^ its own fred         no I/O, no clock;            SCRIPT KILL / FUNCTION KILL
//!      | connection           time is an input              SHUTDOWN NOSAVE [NOW]
//!      | healthy snapshot                                   SIGKILL (hung local server)
//!                      Event --> audit (hash chain; fsync before any *_sent) and logs
//! ```
//!
//! - [`policy`] turns YAML into a validated [`policy::Policy`], every error with file:line:col.
//! - [`probe`] owns the connection and reads replies; [`snapshot`] what a healthy server said.
//! - [`engine`] decides; it is the only place the remediation ladder lives.
//! - [`remedy`] sends what the engine decided, once.
//! - [`watchdog`] ties them together per instance; [`daemon`] runs the watchdogs.
//! - [`event`] is the single source of what happened; [`audit`] writes and verifies the trail,
//!   [`show`] reads it back as timelines.
pub mod audit;
pub mod check;
pub mod cli;
pub mod daemon;
pub mod engine;
pub mod event;
pub mod forensics;
pub mod journal;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod probe;
pub mod remedy;
pub mod sdnotify;
pub mod show;
pub mod snapshot;
pub mod status;
pub mod watchdog;
pub mod yaml;
