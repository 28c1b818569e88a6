//! Continuity: whether a BUSY reply is evidence about the incident's own script on the incident's
//! own server, and whether it is fresh enough for a command that changes the server to rest on.
//!
//! One stretch of BUSY replies is not always one script. A script that ends by itself may be
//! followed at once by another (the same client's next command, pipelined or not); a reconnect
//! may reach another server behind the same address (a VIP that moved, a DNS name, a proxy), or
//! the same server restarted. What was learned of the incident's script (UNKILLABLE, an approval,
//! a budget under way) holds only while continuity holds:
//! - the same connection (its generation; a reconnect starts the next);
//! - the same kind of BUSY text (a script's never changes: another means another script);
//! - no healthy answer since (a fence or a failover's outcome awaited): the script is over;
//! - the next evidence (a BUSY reply, an UNKILLABLE, a running function) less than a threshold
//!   after the last, less a margin. That is the boundary's signature: a script that ends and
//!   another that starts cannot answer BUSY before the new one has run for a whole threshold.
//!   A reply slower than the last round trip is not: a loop with a heavy call per iteration
//!   (`ZRANGE key 0 499`) lets a busy server answer only at its hook, every few hundred
//!   milliseconds, and every one of those replies is the same script's.
//!
//! The margin is a tenth of the threshold plus the path's round trip (the previous reply may
//! have spent up to that long on the way), that at most a fresh path's bound. The watchdog PINGs at least every quarter threshold
//! during an incident, so the gap is that or a hook's interval, never near a threshold unless a
//! script boundary (or a silence as long) lies in it.
//!
//! A break supersedes the incident: a new one starts from the kill (harmless), with a budget of
//! its own, and a shutdown waits for its own UNKILLABLE on this connection. A server that was
//! failed over stays failed over on the same connection, whatever script it runs: its zombie's
//! shutdown rests on its role, not on its script.
//!
//! Fresh enough: what changes a server goes only on a BUSY reply that just arrived, over a path
//! whose round trip is short ([`fresh_within`]): over a slow path a BUSY reply says little of the
//! server by the time SHUTDOWN arrives (the script may have ended meanwhile). The path is
//! measured on the connection's healthy answers (a BUSY reply's wait includes the time the
//! server made it queue until its next hook); on a connection opened while the server was busy,
//! by its fastest BUSY reply (an upper bound). A path that turns slow in the middle of an
//! incident cannot be told from a script whose hooks are far apart: the path's last healthy
//! measure stands.

use crate::model::kinds::BusyKind;

use super::incident::Incident;
use super::{BusySeen, Engine, Millis};

/// The longest round trip a shutdown may rest on, whatever the threshold.
pub const FRESH_MAX_MS: Millis = 100;

/// The longest path round trip a command that changes the server may rest on, for threshold
/// `t`: a quarter of it, at most [`FRESH_MAX_MS`].
pub fn fresh_within(t: Millis) -> Millis {
    (t / 4).min(FRESH_MAX_MS)
}

/// The part of the threshold kept as a margin when telling a script boundary by time.
const MARGIN_SHARE: Millis = 10;

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

/// The round trips of one connection: its last healthy answers' (the path), and the fastest
/// BUSY reply's since the server last answered healthy (an upper bound: no answer comes back
/// faster than the path).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Path {
    healthy: [Option<Millis>; 2],
    busy_min: Option<Millis>,
}

impl Path {
    /// A healthy answer's round trip (the newest two count: a path that turned slow is seen
    /// after two answers).
    pub(super) fn healthy(&mut self, waited: Millis) {
        self.healthy = [self.healthy[1], Some(waited)];
        self.busy_min = None;
    }

    /// A BUSY reply's (or a kill's answer's) round trip.
    pub(super) fn busy(&mut self, waited: Millis) {
        self.busy_min = Some(self.busy_min.map_or(waited, |m| m.min(waited)));
    }

    /// The path's round trip, as well as it is known: the faster of the two measures.
    pub(super) fn rtt(&self) -> Option<Millis> {
        let healthy = self.healthy.iter().flatten().copied().min();
        match (healthy, self.busy_min) {
            (Some(h), Some(b)) => Some(h.min(b)),
            (h, b) => h.or(b),
        }
    }
}

impl Engine {
    /// The busy threshold of this server, when known and not 0.
    pub(super) fn threshold(&self) -> Option<Millis> {
        self.snapshot()
            .and_then(|s| s.busy_threshold_ms)
            .filter(|t| *t > 0)
    }

    /// How much short of a threshold a gap between two answers of a script may be and still
    /// be a boundary: a share of it, and the path's round trip (the last answer spent up to that
    /// on the way), counted up to the bound of a fresh path (over a slower one nothing that
    /// changes the server goes, and a margin near the threshold would break every stretch).
    fn margin(&self, t: Millis) -> Millis {
        t / MARGIN_SHARE + self.path.rtt().unwrap_or(0).min(fresh_within(t))
    }

    /// Why evidence come at `now` (a BUSY reply, a script's answer) may not follow the last on
    /// in time (a boundary could lie between), if it may not.
    fn too_long_after(&self, inc: &Incident, now: Millis, what: &str) -> Option<String> {
        // An idealized timeline (tests, `simulate`) omits the PINGs between its lines.
        self.reply.sent?;
        let t = self.threshold()?;
        let gap = now.saturating_sub(inc.last_busy);
        let margin = self.margin(t);
        (gap + margin >= t).then(|| {
            format!(
                "{what} {gap} ms after the last (the threshold is {t} ms, the margin {margin} ms): \
                 a script that ended and another that started meanwhile would answer BUSY no \
                 sooner, so it may be another script"
            )
        })
    }

    /// Why a BUSY of `kind`, answered at `now`, may not be the incident's script on the
    /// incident's server, if it may not.
    pub(super) fn broken(&self, inc: &Incident, kind: BusyKind, now: Millis) -> Option<String> {
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
        if self.reply.conn != inc.conn {
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
        self.too_long_after(inc, now, "a BUSY reply came")
    }

    /// An answer that a script runs (a kill's UNKILLABLE or `+OK`) came now: as good as a BUSY
    /// reply for continuity, unless it came so long after the last that it may be another's.
    pub(super) fn script_answered(&self, inc: &mut Incident, now: Millis) {
        match self.too_long_after(inc, now, "the kill's answer came") {
            Some(doubt) => inc.doubt = Some(doubt),
            None => inc.last_busy = now,
        }
    }

    /// Why the last BUSY reply is not fresh enough for a command that changes the server to
    /// rest on, if it is not: the path to the server is slow.
    pub(super) fn stale(&self) -> Option<String> {
        let t = self.threshold()?;
        let bound = fresh_within(t);
        let rtt = self.path.rtt().unwrap_or(self.reply.waited);
        (rtt > bound).then(|| {
            format!(
                "the path to the server is slow: its round trip is {rtt} ms, more than the \
                 {bound} ms a shutdown may rest on (a BUSY reply says little of the server by the \
                 time the command would arrive): nothing that changes the server goes while it is"
            )
        })
    }

    /// The BUSY reply just decided on (at `now`), as the evidence a command that changes the
    /// server rests on; `None` when the threshold is unknown (nothing tells how long it holds).
    pub(super) fn busy_seen(&self, inc: &Incident, now: Millis) -> Option<BusySeen> {
        let t = self.threshold()?;
        Some(BusySeen {
            conn: self.reply.conn,
            at: now,
            kind: inc.seen_kind?,
            fresh_ms: fresh_within(t),
            continuity_ms: t.saturating_sub(self.margin(t)),
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
