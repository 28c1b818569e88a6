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
    /// End a hold; past the end of the budget the escalation then goes at the next BUSY reply,
    /// which `now` says the operator means.
    Release {
        now: bool,
    },
    Approve,
    /// The pod is being deleted (`--kill-on-stop`: busyguard's SIGTERM, or kubelet's preStop
    /// call): kill the running script now, grace and script rules aside, so Redis can act on
    /// its own SIGTERM instead of being SIGKILLed at the end of the grace period.
    Stopping,
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
    /// Apply an operator's command: `Ok` says, in words, what will happen now; `Err` why it
    /// does not apply (and nothing changed).
    pub fn steer(&mut self, at: At, command: Steer) -> Result<String, String> {
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
                Ok(format!(
                    "every action (kill, shutdown, failover, signal) is withheld, and recorded as \
                     such, until {}",
                    crate::model::clock::rfc3339(until_unix_ms)
                ))
            }
            Steer::Resume => {
                self.pause.take().ok_or("not paused")?;
                Ok("actions go again, at the next BUSY reply".into())
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
                let then = inc.ladder.then;
                self.hold = Some(Hold { by, reason });
                Ok(format!(
                    "kept up until `busyguard release`: at the end of the budget nothing is sent \
                     (it would be: {}); kills still go",
                    self.rules.escalation_words_for(then)
                ))
            }
            Steer::Release { now } => {
                self.hold.as_ref().ok_or("not held")?;
                let (words, destructive) = self.pending_escalation();
                let due = self.escalation_deadline();
                match due {
                    Some(due) if due <= at.mono && destructive && !now => Err(format!(
                        "still held: the budget ended at {}, so released the escalation would go \
                         at the next BUSY reply ({words}); say `busyguard release {} --now` to let \
                         it go now, or keep the hold",
                        crate::model::clock::rfc3339(self.wall(due)),
                        self.rules.instance
                    )),
                    Some(due) if due <= at.mono => {
                        self.hold = None;
                        Ok(format!(
                            "the escalation goes at the next BUSY reply: {words}"
                        ))
                    }
                    Some(due) => {
                        self.hold = None;
                        Ok(format!(
                            "at the end of the budget ({}): {words}",
                            crate::model::clock::rfc3339(self.wall(due))
                        ))
                    }
                    None => {
                        self.hold = None;
                        Ok("released; no escalation is pending".into())
                    }
                }
            }
            Steer::Approve => self.approve(at),
            Steer::Stopping => Ok(self.stop_scripts()),
        }
    }

    /// What the incident's escalation would send, in words, and whether that changes the server
    /// (a shutdown, a failover; not a notification, nor asking an operator).
    fn pending_escalation(&self) -> (String, bool) {
        use crate::model::kinds::{Resort, Then};
        let Some(inc) = self.incident.as_ref() else {
            return ("nothing".into(), false);
        };
        let fallback = self.rules.failover_fallback;
        match (inc.ladder.then, inc.failover_failed) {
            (Then::Failover, true) => (
                Rules::resort_words(fallback).to_string(),
                fallback == Resort::Shutdown,
            ),
            (then, _) => (
                self.rules.escalation_words_for(then),
                matches!(then, Then::Shutdown | Then::Failover),
            ),
        }
    }

    /// `busyguard approve`: the escalation goes at the next BUSY reply, ahead of the budget or
    /// after it was withheld. An operator's approval lifts `limits` (it is their decision), never
    /// the guards that protect data, nor the evidence a command needs; what would withhold it is
    /// said now rather than after the answer.
    fn approve(&mut self, at: At) -> Result<String, String> {
        let inc = self
            .incident
            .as_ref()
            .ok_or("no incident in flight to approve")?;
        Rules::approvable(inc.ladder.then)?;
        let withheld = inc.escalation == Escalation::Withheld;
        if !withheld
            && !matches!(
                inc.escalation,
                Escalation::NotYet | Escalation::Asked { .. }
            )
        {
            return Err("the escalation of this incident is already decided".into());
        }
        let then = inc.ladder.then;
        let shuts_down = matches!(
            then,
            crate::model::kinds::Then::Shutdown | crate::model::kinds::Then::Ask
        ) || inc.failed_over;
        if shuts_down {
            let known = self.known(inc);
            let counted = self.shutdowns.counted(self.rules.dry_run);
            let order = super::guards::Order::Approved;
            if let Some(w) = super::guards::withheld(&self.rules, order, counted, known, at.mono) {
                return Err(format!("approve cannot send SHUTDOWN NOSAVE: {}", w.reason));
            }
        }
        let inc = self.incident.as_mut().expect("checked above");
        inc.approved = true;
        if withheld {
            inc.escalation = Escalation::NotYet;
        }
        let words = match shuts_down {
            true => "SHUTDOWN NOSAVE".to_string(),
            false => self.rules.escalation_words_for(then),
        };
        Ok(format!(
            "{words} at the next BUSY reply (your approval lifts `limits`; the guards still apply)"
        ))
    }

    /// The pod is stopping: from now on a killable script is killed at the next BUSY reply, a
    /// rule's `never_kill` and any `kill_after` aside (a pause still withholds it: the
    /// operator's word). Said in words, with what it means for the incident in flight.
    fn stop_scripts(&mut self) -> String {
        self.stopping = true;
        let Some(inc) = self.incident.as_mut() else {
            return "the pod is stopping: a script that runs past the threshold from now on is \
                    killed at its first BUSY reply"
                .into();
        };
        // A kill the rule withheld is owed again: the job is lost to SIGKILL otherwise.
        if inc.kill == Kill::NoneExists && inc.ladder.never_kill {
            inc.kill = Kill::NotYet;
        }
        match inc.kill {
            Kill::NotYet => "the pod is stopping: the running script is killed at the next BUSY \
                             reply, so Redis can act on its SIGTERM"
                .into(),
            _ => "the pod is stopping: the running script's kill was already decided (an \
                  unkillable one is left to the policy and the grace period)"
                .into(),
        }
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
                (_, Escalation::NotYet) if self.hold.is_some() => Some(format!(
                    "nothing past the kill while held; `busyguard release {}` lets the escalation go ({}), with `--now` once the budget has ended",
                    self.rules.instance,
                    self.rules.escalation_words_for(i.ladder.then)
                )),
                (_, Escalation::Withheld) => Some(match i.ladder.then {
                    crate::model::kinds::Then::Notify => "nothing will be sent (`then: notify`): the script ends by itself, or by hand (`redis-cli SHUTDOWN NOSAVE` loses unsaved data)".to_string(),
                    _ => format!(
                        "nothing: withheld ({}); `busyguard approve {}` sends SHUTDOWN NOSAVE anyway (it lifts `limits`, not the guards)",
                        i.withheld.as_deref().unwrap_or("see the trail"),
                        self.rules.instance
                    ),
                }),
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
