//! Continuity: whether a BUSY reply is evidence about the incident's own script on the incident's
//! own server, and whether it is fresh enough for a shutdown to rest on.
//!
//! One stretch of BUSY replies is not always one script. A script that ends by itself may be
//! followed at once by another (the same client's next command, pipelined or not), and the
//! probe's next PING then waits through the new script's silent phase; a reconnect may reach
//! another server behind the same address (a VIP that moved, a DNS name, a proxy), or the same
//! server restarted. What was learned of the incident's script (UNKILLABLE, an approval, a
//! budget under way) holds only while continuity holds:
//! - the same connection (its generation; a reconnect starts the next);
//! - the same kind of BUSY text (a script's never changes: another means another script);
//! - no PING that waited half a threshold more than the connection's recent round trips (queued
//!   behind a new script's silent phase), and none sent half a threshold or more after the last
//!   BUSY reply (an action carried out meanwhile: a script's end and the next one's silent phase
//!   could hide in that time). The watchdog PINGs at least every quarter threshold during an
//!   incident, so a boundary always shows as one of the two.
//!
//! A break supersedes the incident: a new one starts from the kill (harmless), with a budget of
//! its own, and a shutdown waits for its own UNKILLABLE on this connection. A server that was
//! failed over stays failed over on the same connection, whatever script it runs: its zombie's
//! shutdown rests on its role, not on its script.
//!
//! Fresh enough: a shutdown goes only on a BUSY whose round trip was short
//! ([`fresh_within`]); a slow one is no evidence that the script still runs when the SHUTDOWN
//! arrives (it may have ended meanwhile), and the next PING is awaited instead.

use crate::model::kinds::BusyKind;

use super::incident::Incident;
use super::{Engine, Millis};

/// The longest round trip a shutdown may rest on, whatever the threshold.
pub const FRESH_MAX_MS: Millis = 100;

/// The longest round trip of a BUSY reply a shutdown may rest on, for threshold `t`: a quarter
/// of it, at most [`FRESH_MAX_MS`].
pub fn fresh_within(t: Millis) -> Millis {
    (t / 4).min(FRESH_MAX_MS)
}

/// How the probe's last reply came: on which connection, and after how long.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Reply {
    pub(super) conn: u64,
    /// From the command's send to its answer.
    pub(super) waited: Millis,
    /// When its command was sent; `None` for an observation of an idealized probe that never
    /// stopped (the unit tests' and simulations' timelines, which omit the PINGs between).
    pub(super) sent: Option<Millis>,
}

impl Engine {
    /// The busy threshold of this server, when known and not 0.
    pub(super) fn threshold(&self) -> Option<Millis> {
        self.snapshot()
            .and_then(|s| s.busy_threshold_ms)
            .filter(|t| *t > 0)
    }

    /// Why a BUSY of `kind`, answered at `now`, may not be the incident's script on the
    /// incident's server, if it may not.
    pub(super) fn broken(&self, inc: &Incident, kind: BusyKind, now: Millis) -> Option<String> {
        let reply = self.reply;
        if let Some(doubt) = &inc.doubt {
            return Some(doubt.clone());
        }
        if inc.answered_healthy {
            return Some(
                "the server answered healthy since the last BUSY reply (its script ended): \
                 this BUSY is another script's"
                    .into(),
            );
        }
        if reply.conn != inc.conn {
            return Some(
                "a new connection since the last BUSY reply: another server may answer at this \
                 address, or another script run"
                    .into(),
            );
        }
        // A failed-over server is ended for its role, whatever script it runs.
        if inc.failed_over {
            return None;
        }
        if let Some(was) = inc.seen_kind
            && was != kind
        {
            return Some(format!(
                "the BUSY reply names {} where it named {}: another script",
                kind.name(),
                was.name()
            ));
        }
        let t = self.threshold()?;
        let queued = reply.waited.saturating_sub(self.rtt_floor.unwrap_or(0));
        if queued >= t / 2 {
            return Some(format!(
                "the PING waited {} ms for its BUSY reply ({queued} ms more than this \
                 connection's recent round trips; the threshold is {t} ms): the server was \
                 silent meanwhile, as behind a new script",
                reply.waited
            ));
        }
        let idle = reply.sent.map(|sent| sent.saturating_sub(inc.last_busy));
        if let Some(idle) = idle.filter(|idle| *idle >= t / 2) {
            return Some(format!(
                "no PING for {idle} ms after the last BUSY reply (the threshold is {t} ms, while \
                 an action was carried out): another script may have run in that time"
            ));
        }
        let _ = now;
        None
    }

    /// An answer that a script runs (a kill's UNKILLABLE or `+OK`) came now: as good as a BUSY
    /// reply for continuity, unless it waited behind a silent phase itself.
    pub(super) fn script_answered(&self, inc: &mut Incident, now: Millis) {
        let queued = self
            .reply
            .waited
            .saturating_sub(self.rtt_floor.unwrap_or(0));
        match self.threshold() {
            Some(t) if queued >= t / 2 => {
                inc.doubt = Some(format!(
                    "the kill's answer waited {} ms (the threshold is {t} ms): the server was \
                     silent meanwhile, as behind a new script",
                    self.reply.waited
                ));
            }
            Some(_) | None => inc.last_busy = now,
        }
    }

    /// Why the last BUSY reply is not fresh enough for a shutdown to rest on, if it is not.
    pub(super) fn stale(&self) -> Option<String> {
        let t = self.threshold()?;
        let bound = fresh_within(t);
        (self.reply.waited > bound).then(|| {
            format!(
                "the BUSY reply took {} ms to come back, more than the {bound} ms a shutdown may \
                 rest on (the script may have ended meanwhile): the next BUSY reply decides",
                self.reply.waited
            )
        })
    }

    /// The busy threshold of this server in ms, when known and not 0.
    pub fn threshold_ms(&self) -> Option<Millis> {
        self.threshold()
    }

    /// How often the watchdog must PING during an incident so that only a silence can make a
    /// gap of a threshold: a quarter of it.
    pub fn probe_every(&self) -> Option<Millis> {
        self.incident.as_ref()?;
        self.threshold().map(|t| (t / 4).max(1))
    }
}
