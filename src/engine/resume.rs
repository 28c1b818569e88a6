//! What an earlier run of busyguard (stopped, crashed or SIGKILLed) left for this one, as the
//! audit module reads it from the trail ([`History`]): shutdowns the limits still count, a pause
//! in force, where early warnings go on, and an incident left open while it was in flight.
//!
//! Nothing of it is carried over as an action. While busy a server answers neither INFO nor
//! CLIENT, so after a restart nothing can prove that a script still running is the one the
//! earlier run saw: it may have ended, and another started, while busyguard was down. So the
//! first thing the new run sees decides: a healthy reply ends the old incident (`recovered`,
//! with `restarted` from the run ids); the server refusing connections after a shutdown the
//! earlier run sent keeps it open until the server is back; anything else (BUSY, silence, an
//! unreachable server) closes it as `incident_superseded` and opens a new incident whose ladder
//! starts from the kill. The snapshot the old incident rested on is restored with its true age
//! and marked as coming from the trail, so records show it and guards do not lean on it.

use crate::event::detail::{CarriedHold, CarriedPause, SlowlogCursor};
use crate::model::kinds::BusyKind;
use crate::model::snapshot::Snapshot;
use crate::model::takeover::Successor;

/// What the trail says of one instance when its watchdog starts (the audit module reads it):
/// the engine's, the early warnings' and the pause's input from before a restart.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct History {
    /// The incident still open when the trail was last written.
    pub open_incident: Option<OpenIncident>,
    /// Unix ms of every enforced `shutdown_sent` within the window.
    pub shutdowns: Vec<u64>,
    /// Unix ms of every dry-run `shutdown_sent` within the window: a dry run's own limits, never
    /// enforce's.
    pub rehearsals: Vec<u64>,
    /// The (run id, SLOWLOG id) where early warnings go on.
    pub slowlog_cursor: Option<SlowlogCursor>,
    /// The pause in force when the trail was last written (it may have expired since).
    pub pause: Option<CarriedPause>,
    /// The hold in force when the trail was last written.
    pub hold: Option<CarriedHold>,
}

/// What an earlier run recorded of an incident it left open.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpenIncident {
    pub id: String,
    pub opened_unix_ms: u64,
    /// The kind of the first BUSY and when it came.
    pub busy: Option<(BusyKind, u64)>,
    pub hang_reported: bool,
    pub unreachable_reported: bool,
    pub shutdown: Option<ResumedShutdown>,
    /// The healthy snapshot the incident's decisions rested on, and when it was taken.
    pub snapshot: Option<(Snapshot, u64)>,
    /// The newest server the earlier run verified took over from this one: it is fenced should
    /// this server answer as a primary (as the policy allows), and Sentinel's feed checks
    /// against the restored snapshot's lineage.
    pub successor: Option<Successor>,
    /// A failover was requested (its way, and when) and its outcome not recorded: it may have
    /// happened.
    pub failover_in_flight: Option<(crate::model::kinds::FailoverVia, u64)>,
}

/// How far the earlier run got with a shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumedShutdown {
    /// Dry-run: decided and recorded, not sent.
    Decided,
    Sent,
    Confirmed,
}
