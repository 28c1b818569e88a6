//! Operators steering the engine: a pause (probing, detection and records go on; every action is
//! decided and recorded as withheld, until it expires or is resumed), a hold (given during an
//! incident: no escalation until released or the server is healthy again, across a restart of
//! busyguard and onto an incident that supersedes the held one; the kill still goes), an approval (the escalation goes at the
//! next BUSY reply, ahead of the budget, with the usual guards), and what the engine is doing
//! now, for `busyguard ps`.

use serde::{Deserialize, Serialize};

use crate::event::detail as d;
use crate::model::kinds::State;

use super::incident::{Escalation, Kill};
use super::{At, Engine, Millis, Rules, Step};

/// A command from the control socket, with who sent it.
#[derive(Clone, Debug, PartialEq)]
pub enum Steer {
    Pause {
        until_unix_ms: u64,
        by: String,
        reason: String,
    },
    Resume,
    Hold {
        by: String,
        reason: String,
    },
    Release,
    Approve,
}

/// A pause in force.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    pub by: String,
    pub reason: String,
    pub until_unix_ms: u64,
    #[serde(skip)]
    pub(super) until_mono: Millis,
}

/// A hold on the incident in flight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    pub by: String,
    pub reason: String,
}

/// What the engine is doing now, for `busyguard ps`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Live {
    pub state: State,
    pub incident: Option<String>,
    pub since_first_busy_ms: Option<u64>,
    /// The next step and when it is due (wall clock, Unix ms).
    pub next: Option<String>,
    pub deadline_unix_ms: Option<u64>,
    pub pause: Option<Pause>,
    pub hold: Option<Hold>,
    /// How much of `limits` is used, and when one more shutdown may go.
    #[serde(default)]
    pub limits: Option<super::LimitsUsed>,
}

impl Engine {
    /// Apply an operator's command; `Err` says why it does not apply now.
    pub fn steer(&mut self, at: At, command: Steer) -> Result<(), String> {
        match command {
            Steer::Pause {
                until_unix_ms,
                by,
                reason,
            } => {
                let until_mono = at.mono + until_unix_ms.saturating_sub(at.unix_ms);
                self.pause = Some(Pause {
                    by,
                    reason,
                    until_unix_ms,
                    until_mono,
                });
            }
            Steer::Resume => {
                self.pause.take().ok_or("not paused")?;
            }
            Steer::Hold { by, reason } => {
                let inc = self
                    .incident
                    .as_ref()
                    .ok_or("no incident in flight to hold")?;
                // A failover in flight cannot be called back, but what follows it (the old
                // primary's shutdown, or the fallback) can be held.
                if !matches!(
                    inc.escalation,
                    Escalation::NotYet
                        | Escalation::Asked { .. }
                        | Escalation::FailoverRequested { .. }
                ) {
                    return Err("the escalation of this incident is already decided".into());
                }
                self.hold = Some(Hold { by, reason });
            }
            Steer::Release => {
                self.hold.take().ok_or("not held")?;
            }
            Steer::Approve => {
                let inc = self
                    .incident
                    .as_mut()
                    .ok_or("no incident in flight to approve")?;
                Rules::approvable(inc.ladder.then)?;
                if !matches!(
                    inc.escalation,
                    Escalation::NotYet | Escalation::Asked { .. }
                ) {
                    return Err("the escalation of this incident is already decided".into());
                }
                inc.approved = true;
            }
        }
        Ok(())
    }

    /// When the escalation of the incident in flight is due (engine time), if one is pending.
    pub fn escalation_deadline(&self) -> Option<Millis> {
        let i = self.incident.as_ref()?;
        match (&i.kill, &i.escalation) {
            (Kill::NoneExists | Kill::Answered { .. }, Escalation::NotYet) => {
                Some(i.first_busy? + i.ladder.wait)
            }
            (_, Escalation::Asked { since }) => Some(since + self.rules.ask_timeout),
            _ => None,
        }
    }

    /// How much of `limits` is used at `at` (dry-run decisions apart under enforce).
    pub fn limits_used(&self, at: At) -> super::LimitsUsed {
        let r = &self.rules;
        let wall = |mono: Millis| at.unix_ms.saturating_add(mono.saturating_sub(at.mono));
        self.shutdowns
            .used(r.dry_run, r.max_shutdowns, r.per, at.mono, wall)
    }

    /// Whether a pause is in force at `at`.
    pub fn paused(&self, at: At) -> bool {
        self.pause.as_ref().is_some_and(|p| at.mono < p.until_mono)
    }

    /// End a pause whose time is up; its record says so.
    pub(super) fn expire_pause(&mut self, at: At, step: &mut Step) {
        if self.pause.as_ref().is_some_and(|p| at.mono >= p.until_mono) {
            let Some(p) = self.pause.take() else { return };
            let detail = d::OperatorCommand {
                command: "pause_expired".into(),
                by_user: "busyguard".into(),
                by_uid: None,
                reason: format!("the pause by {} ended: {}", p.by, p.reason),
                until: None,
                until_unix_ms: Some(p.until_unix_ms),
            };
            step.events
                .push(self.event(self.incident.as_ref(), false, detail));
        }
    }

    /// Why an action due at `now` must wait for an operator, if it must: a pause (any action),
    /// a hold (`escalation` only).
    pub(super) fn steered(&self, now: Millis, escalation: bool) -> Option<String> {
        if let Some(p) = self.pause.as_ref().filter(|p| now < p.until_mono) {
            let until = crate::model::clock::rfc3339(p.until_unix_ms);
            return Some(format!("paused by {} until {until}: {}", p.by, p.reason));
        }
        match (&self.hold, escalation) {
            (Some(h), true) => Some(format!("held by {}: {}", h.by, h.reason)),
            _ => None,
        }
    }

    /// What the engine is doing at `at`.
    pub fn live(&self, at: At) -> Live {
        let inc = self.incident.as_ref();
        let state = self.state();
        // Busy for as long as the server is busy: not while it is down, refusing or gone.
        let first = inc
            .filter(|_| matches!(state, State::Busy | State::Asking | State::FailingOver))
            .and_then(|i| i.first_busy);
        let next = match state {
            State::Fault => Some("nothing until the server lets busyguard in (fix the fault `busyguard status` names)".to_string()),
            State::Down => Some(match inc.map(|i| &i.escalation) {
                Some(Escalation::ShutdownSent | Escalation::ShutdownConfirmed) => "nothing: shut down by busyguard, waiting for the server to come back (busyguard never restarts it)".to_string(),
                _ => "nothing: waiting for the server to come back".to_string(),
            }),
            State::Unreachable => Some("nothing while no server answers; its first answer says whether the script is over".to_string()),
            State::Hang => Some("nothing until the server answers (or `on_hang.signal`)".to_string()),
            _ => inc.and_then(|i| match (&i.kill, &i.escalation) {
                (Kill::NotYet, _) => Some(match i.ladder.kill_after {
                    0 => "SCRIPT KILL or FUNCTION KILL at the next BUSY reply".to_string(),
                    ms => format!(
                        "SCRIPT KILL or FUNCTION KILL at the first BUSY reply {} after the first",
                        crate::model::duration::human_ms(ms)
                    ),
                }),
                (Kill::Sent { .. }, _) => Some("read the kill's reply".into()),
                (Kill::Accepted { .. }, _) => Some("confirm the kill with a PONG".into()),
                (Kill::Gone { .. }, _) => Some("confirm with a PONG that the script is gone".into()),
                (_, Escalation::NotYet) => Some(format!(
                    "at the end of the budget: {}",
                    self.rules.escalation_words_for(i.ladder.then)
                )),
                (_, Escalation::Asked { .. }) => Some(format!(
                    "await an approval (`busyguard approve` or `hold`), else {}",
                    Rules::resort_words(self.rules.ask_default)
                )),
                (_, Escalation::FailoverRequested { .. }) => {
                    Some("await the promotion, then SHUTDOWN NOSAVE of the old primary".into())
                }
                _ => None,
            }),
        };
        let deadline = self
            .next_deadline()
            .map(|ms| at.unix_ms.saturating_add(ms.saturating_sub(at.mono)));
        Live {
            state,
            incident: self.incident_id().map(str::to_string),
            since_first_busy_ms: first.map(|f| at.mono.saturating_sub(f)),
            next,
            deadline_unix_ms: deadline,
            pause: self.pause.clone().filter(|p| at.mono < p.until_mono),
            hold: self.hold.clone(),
            limits: Some(self.limits_used(at)),
        }
    }
}
