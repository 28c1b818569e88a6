//! Silence and absence: a probe unanswered for `on_hang.after` opens a hang incident (and, if
//! the policy says so, SIGKILLs a hung local server); a server that cannot be reached opens an
//! unreachable one. Neither ever leads to a kill or a shutdown.

use crate::event::detail as d;
use crate::policy::HangSignal;

use super::incident::{Cause, Escalation, Incident};
use super::{Action, At, Engine, Millis, SignalTarget, Step};

impl Engine {
    pub(super) fn on_silence(&mut self, at: At, for_ms: Millis, step: &mut Step) {
        if self.incident.is_none() && for_ms >= self.rules.hang_after {
            let mut inc = self.open(at, Cause::Hang);
            inc.hang_reported = true;
            let detail = d::HangDetected {
                inputs: self.inputs(Some(&inc), at.mono),
                silent_ms: for_ms,
            };
            step.events.push(self.event(Some(&inc), false, detail));
            self.incident = Some(inc);
        }
        let Some(mut inc) = self.incident.take() else {
            return;
        };
        let rules = &self.rules;
        if inc.cause == Cause::Hang
            && !inc.signal_sent
            && rules.hang_signal == HangSignal::Sigkill
            && for_ms >= rules.signal_after
        {
            inc.signal_sent = true;
            self.signal(&inc, at.mono, for_ms, step);
        }
        self.incident = Some(inc);
    }

    /// SIGKILL a hung local server, if the snapshot names its process.
    pub(super) fn signal(&self, inc: &Incident, now: Millis, for_ms: Millis, step: &mut Step) {
        let dry_run = self.rules.dry_run;
        let inputs = self.inputs(Some(inc), now);
        let target = self
            .snapshot
            .as_ref()
            .filter(|h| h.fresh)
            .and_then(|h| Some((h.snapshot.process_id?, h.snapshot.process_start_ticks?)));
        match target {
            None => {
                let detail = d::EscalationWithheld {
                    inputs,
                    reason: "no pid with a known start time in the healthy snapshot".into(),
                    missing: Some("process_id".into()),
                    withheld_action: None,
                    reply_seen: None,
                    silent_ms: Some(for_ms),
                    signal: Some("SIGKILL".into()),
                    by_operator: false,
                };
                step.events.push(self.event(Some(inc), dry_run, detail));
            }
            Some((pid, start_ticks)) => {
                let detail = d::SignalSent {
                    inputs,
                    silent_ms: for_ms,
                    signal: "SIGKILL".into(),
                    pid,
                };
                step.events.push(self.event(Some(inc), dry_run, detail));
                if !dry_run {
                    step.action = Some(Action::Signal(SignalTarget { pid, start_ticks }));
                }
            }
        }
    }

    pub(super) fn on_unreachable(&mut self, at: At, reason: String, step: &mut Step) {
        let mut inc = match self.incident.take() {
            Some(inc) => inc,
            None => self.open(at, Cause::Unreachable),
        };
        let shut_down = matches!(
            inc.escalation,
            Escalation::ShutdownSent | Escalation::ShutdownConfirmed
        );
        // Down because it was shut down: expected, already recorded.
        if !shut_down && !inc.unreachable_reported {
            inc.unreachable_reported = true;
            let detail = d::Unreachable {
                inputs: self.inputs(Some(&inc), at.mono),
                reason,
            };
            step.events.push(self.event(Some(&inc), false, detail));
        }
        self.incident = Some(inc);
    }
}
