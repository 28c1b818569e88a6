//! The busy ladder: a BUSY reply opens or continues an incident, the kill that fits goes once,
//! its answer is read, and at the end of the budget the escalation goes or is withheld; a
//! healthy reply ends the incident.

use crate::event::Detail;
use crate::event::detail::{self as d, RecoveredHow};
use crate::model::kinds::{BusyKind, Then};
use crate::model::snapshot::Snapshot;
use crate::model::takeover::Successor;
use crate::model::told::{AfterRecovery, delta, offending_entry};

use super::guards::{self, Known, Order, Withheld};
use super::incident::{Cause, Escalation, Incident, Kill, Ladder};
use super::{
    Action, At, Engine, Inquiry, KillCommand, KillReply, Millis, ShutdownCommand, ShutdownOutcome,
    Step, UNKNOWN_THRESHOLD_MS, kill_for,
};
use crate::model::told::RunningFunction;
use crate::policy::scripts::Running;

/// What is due at the end of the budget.
enum Due {
    Ask,
    Failover,
    Order(Order),
}

impl Engine {
    pub(super) fn on_busy(&mut self, at: At, kind: BusyKind, reply: String, step: &mut Step) {
        let now = at.mono;
        // After `+OK` to a kill the script unwinds within the hook that answered it (which may
        // still answer a probe or two BUSY). A new script cannot draw a BUSY reply before it has
        // run for a whole threshold, so a BUSY that late is a new incident; the old one ends
        // as killed, no later than a threshold before this reply (the new script's start), which
        // is what its record says (the next script won the race to the server: no PONG between).
        let answered_at = match self.incident.as_ref().map(|i| &i.kill) {
            Some(Kill::Accepted { reply_at, .. }) => Some(*reply_at),
            Some(Kill::Gone { at, .. }) => Some(*at),
            _ => None,
        };
        if let Some(reply_at) = answered_at {
            let threshold = self
                .snapshot()
                .and_then(|s| s.busy_threshold_ms)
                .filter(|t| *t > 0)
                .unwrap_or(UNKNOWN_THRESHOLD_MS);
            if now >= reply_at + threshold {
                self.recover((now - threshold).max(reply_at), step);
            }
        }
        let mut inc = match self.incident.take() {
            Some(inc) if matches!(inc.cause, Cause::Busy(_)) => {
                match self.broken(&inc, kind, now) {
                    None => inc,
                    Some(why) => self.supersede(at, inc, why, kind, &reply, step),
                }
            }
            other => {
                // A hang or unreachable episode that turns out to be BUSY continues as busy.
                let mut inc = other.unwrap_or_else(|| self.open(at, Cause::Busy(kind)));
                self.busy_detected(&mut inc, now, kind, &reply, None, step);
                inc
            }
        };
        inc.last_busy = now;
        // A reply naming the kill tells more than one of unknown form; never the reverse, and
        // never away from a kill: once a reply could have been a script's, the kill is owed.
        if inc.cause == Cause::Busy(BusyKind::Unknown) && kill_for(kind).is_some() {
            inc.cause = Cause::Busy(kind);
        }
        self.decide(&mut inc, now, kind, reply, step);
        self.incident = Some(inc);
    }

    /// The incident becomes busy: its first BUSY reply, what the records say of it, and the
    /// kill it owes.
    fn busy_detected(
        &self,
        inc: &mut Incident,
        now: Millis,
        kind: BusyKind,
        reply: &str,
        supersedes: Option<String>,
        step: &mut Step,
    ) {
        inc.cause = Cause::Busy(kind);
        inc.seen_kind = Some(kind);
        inc.first_busy = Some(now);
        inc.conn = self.reply.conn;
        inc.kill = match kind {
            BusyKind::Module => Kill::NoneExists,
            _ => Kill::NotYet,
        };
        let warning = (self.snapshot().and_then(|s| s.busy_threshold_ms) == Some(0))
            .then(|| "busy-reply-threshold is 0 on this server".to_string());
        let detail = d::BusyDetected {
            inputs: self.inputs(Some(inc), now),
            reply: reply.to_string(),
            busy_kind: kind,
            warning,
            supersedes,
        };
        step.events.push(self.event(Some(inc), false, detail));
        // A busy FCALL names itself (FUNCTION STATS), ahead of any kill; when a script rule
        // could change the ladder, the kill waits for the name (a few ms at most), and for an
        // EVAL's from the server's log when a rule names EVALs.
        match kind {
            BusyKind::Function if self.rules.function_rules => {
                inc.identifying = Some(reply.to_string());
                step.inquiry = Some(Inquiry::Identify {
                    within_ms: self.rules.identify_within,
                });
            }
            BusyKind::Function => step.inquiry = Some(Inquiry::RunningFunction),
            BusyKind::Script if self.rules.eval_rules => {
                inc.identifying = Some(reply.to_string());
                step.inquiry = Some(Inquiry::IdentifyEval);
            }
            _ => {}
        }
    }

    /// Continuity is broken (`why`): the incident is closed as superseded, and a new one starts
    /// from this BUSY reply with its own kill and budget. On the same connection the server's
    /// own facts carry over (a failover that failed); a lost shutdown that this BUSY on a new
    /// connection proves had no effect no longer counts for `limits`, and may go once more.
    fn supersede(
        &mut self,
        at: At,
        old: Incident,
        why: String,
        kind: BusyKind,
        reply: &str,
        step: &mut Step,
    ) -> Incident {
        let now = at.mono;
        let mut inc = self.open(at, Cause::Busy(kind));
        let same_connection = old.conn == self.reply.conn;
        let mut reason = why;
        let mut carried = None;
        if same_connection {
            inc.failover_failed = old.failover_failed;
            // Failed over stays failed over on the same connection, but not past a healthy
            // answer: the fence (or Sentinel) may have made it a replica since.
            inc.failed_over = old.failed_over && !old.answered_healthy;
        } else if let (true, Some(sent), None) = (old.shutdown_lost, old.shutdown_at, &old.retries)
        {
            self.shutdowns.forget(sent);
            inc.retries = Some(old.id.clone());
            reason.push_str(
                "; the SHUTDOWN it sent was lost and the server still answers BUSY: it had no \
                 effect, no longer counts for `limits`, and may go once more",
            );
            if let Some(same) = self.same_script_after_loss(&old, now) {
                reason.push_str(&same);
                carried = Some((old.first_busy, old.kill.clone()));
            }
        }
        let detail = d::IncidentSuperseded {
            reason,
            by: Some(inc.id.clone()),
        };
        step.events.push(self.event(Some(&old), false, detail));
        self.busy_detected(&mut inc, now, kind, reply, Some(old.id.clone()), step);
        // The same script, whose kill was answered and whose budget was spent: the retry goes
        // at this reply, not after a budget more.
        if let Some((first_busy, kill)) = carried {
            inc.first_busy = first_busy;
            inc.kill = kill;
        }
        inc
    }

    /// Whether this BUSY on a new connection is the same script's as the incident whose
    /// shutdown was lost, and why: the server is on this host (no other can answer at its
    /// address while it runs) and the reply came within a threshold of the last BUSY seen (no
    /// new script can draw one sooner). `None` when either is not shown: then the retry waits
    /// a budget of its own, as after any reconnect.
    fn same_script_after_loss(&self, old: &Incident, now: Millis) -> Option<String> {
        let threshold = self.threshold()?;
        let gap = now.saturating_sub(old.last_busy);
        (self.rules.local_server && gap < threshold).then(|| {
            format!(
                "; the same script (a local server answering BUSY {gap} ms after the last, \
                 within its threshold of {threshold} ms): its spent budget stands and the \
                 SHUTDOWN goes again at this reply"
            )
        })
    }

    /// The next rung for a busy incident that just answered BUSY again.
    pub(super) fn decide(
        &mut self,
        inc: &mut Incident,
        now: Millis,
        kind: BusyKind,
        reply: String,
        step: &mut Step,
    ) {
        let rules = &self.rules;
        let first = inc.first_busy.unwrap_or(now);
        // A kill a script rule could change waits for the function's name, up to
        // `identify_within` (the watchdog bounds FUNCTION STATS): never applied on a guess.
        // A stopping pod kills now: no name could spare the script from kubelet's SIGKILL.
        let stopping = self.stopping;
        if inc.kill == Kill::NotYet && inc.identifying.is_some() && !stopping {
            inc.identifying = Some(reply);
            return;
        }
        // A function still unnamed (FUNCTION STATS did not answer in time: its hooks are far
        // apart) is asked again at each BUSY reply while its name could still set the ladder.
        if rules.function_rules
            && inc.cause == Cause::Busy(BusyKind::Function)
            && inc.function.as_ref().and_then(|f| f.name()).is_none()
            && inc.escalation == Escalation::NotYet
            && step.inquiry.is_none()
        {
            step.inquiry = Some(Inquiry::Identify {
                within_ms: rules.identify_within,
            });
        }
        if inc.kill == Kill::NotYet && inc.ladder.never_kill && !stopping {
            inc.kill = Kill::NoneExists;
            let detail = d::EscalationWithheld {
                inputs: self.inputs(Some(inc), now),
                reason: format!(
                    "never_kill: the script rule `{}` names this function (a job not to interrupt): only the wait and its `then` apply",
                    inc.ladder.rule.as_deref().unwrap_or("?")
                ),
                withheld_action: Some(d::WithheldAction::Kill),
                missing: None,
                reply_seen: Some(reply.clone()),
                silent_ms: None,
                signal: None,
                by_operator: false,
            };
            step.events.push(self.event(Some(inc), false, detail));
        }
        if inc.kill == Kill::NotYet && (now >= first + inc.ladder.kill_after || stopping) {
            let known = match inc.cause {
                Cause::Busy(k) => k,
                _ => kind,
            };
            let Some(command) = kill_for(known) else {
                inc.kill = Kill::NoneExists;
                return;
            };
            if let Some(why) = self.steered(now, false) {
                let kill = Some(d::WithheldAction::Kill);
                self.withhold_for_operator(inc, now, why, kill, reply, step);
                return;
            }
            let dry_run = rules.dry_run;
            inc.kill = if dry_run {
                Kill::Answered { replicated: false }
            } else {
                inc.kills_sent += 1;
                Kill::Sent { command, at: now }
            };
            let detail = d::KillSent {
                inputs: self.inputs(Some(inc), now),
                command: command.text(),
                reply_seen: reply,
            };
            step.events.push(self.event(Some(inc), dry_run, detail));
            if !dry_run {
                step.action = Some(Action::Kill(command));
            }
            return;
        }
        let killed_or_none = matches!(inc.kill, Kill::NoneExists | Kill::Answered { .. });
        let budget_spent = now >= first + inc.ladder.wait || inc.approved;
        let due = match inc.escalation {
            Escalation::NotYet if killed_or_none && budget_spent => match inc.ladder.then {
                Then::Ask | Then::Shutdown if inc.approved => Due::Order(Order::Approved),
                Then::Ask => Due::Ask,
                Then::Failover => Due::Failover,
                Then::Shutdown => Due::Order(Order::Shutdown),
                Then::Notify => Due::Order(Order::Notify),
            },
            Escalation::Asked { .. } if inc.approved => Due::Order(Order::Approved),
            Escalation::Asked { since } if now >= since + rules.ask_timeout => {
                Due::Order(Order::AskDefault(rules.ask_default))
            }
            _ => return,
        };
        if let Some(why) = self.steered(now, true) {
            self.withhold_for_operator(inc, now, why, None, reply, step);
            return;
        }
        // What may change the server rests on a fresh reply; a slow one is said once, and the
        // next BUSY reply decides.
        let drastic = match &due {
            Due::Ask | Due::Order(Order::Notify) => false,
            Due::Failover | Due::Order(_) => true,
        };
        if let (true, Some(why)) = (drastic, self.stale()) {
            if !inc.slow_reported {
                inc.slow_reported = true;
                let detail = d::EscalationWithheld {
                    inputs: self.inputs(Some(inc), now),
                    reason: why,
                    missing: None,
                    withheld_action: None,
                    reply_seen: Some(reply),
                    silent_ms: None,
                    signal: None,
                    by_operator: false,
                };
                step.events
                    .push(self.event(Some(inc), self.rules.dry_run, detail));
            }
            return;
        }
        match due {
            Due::Ask => self.ask(inc, now, step),
            Due::Failover => self.failover(inc, now, reply, step),
            Due::Order(order) => self.escalate(inc, now, reply, order, step),
        }
    }

    /// A pause or a hold keeps an action from going: recorded once per reason; the action is
    /// decided again at the first BUSY reply after it ends.
    fn withhold_for_operator(
        &self,
        inc: &mut Incident,
        now: Millis,
        why: String,
        action: Option<d::WithheldAction>,
        reply: String,
        step: &mut Step,
    ) {
        if inc.steer_reported.as_deref() == Some(why.as_str()) {
            return;
        }
        inc.steer_reported = Some(why.clone());
        let detail = d::EscalationWithheld {
            inputs: self.inputs(Some(inc), now),
            reason: why,
            missing: None,
            withheld_action: action,
            reply_seen: Some(reply),
            silent_ms: None,
            signal: None,
            by_operator: true,
        };
        step.events
            .push(self.event(Some(inc), self.rules.dry_run, detail));
    }

    /// `then: ask`: the budget is spent; an operator approves (or holds) within `ask.timeout`.
    fn ask(&self, inc: &mut Incident, now: Millis, step: &mut Step) {
        inc.escalation = Escalation::Asked { since: now };
        let rules = &self.rules;
        let instance = &rules.instance;
        let wall_deadline = self.wall(now + rules.ask_timeout);
        let detail = d::ApprovalRequested {
            inputs: self.inputs(Some(inc), now),
            timeout_ms: rules.ask_timeout,
            default: rules.ask_default,
            deadline: crate::model::clock::rfc3339(wall_deadline),
            approve: format!("busyguard approve {instance} --reason TEXT"),
            hold: format!("busyguard hold {instance} --reason TEXT"),
        };
        step.events
            .push(self.event(Some(inc), rules.dry_run, detail));
    }

    /// The budget is spent (or the escalation approved) and the last reply was BUSY: shut down,
    /// or say why not. `order` says whose word it follows (the policy's `then`, an approval,
    /// `ask.default`, `failover.fallback`).
    pub(super) fn escalate(
        &mut self,
        inc: &mut Incident,
        now: Millis,
        reply: String,
        order: Order,
        step: &mut Step,
    ) {
        let rules = &self.rules;
        let dry_run = rules.dry_run;
        let replicated = inc.kill == Kill::Answered { replicated: true };
        let withheld = if replicated && !rules.shutdown_replicated {
            Some(Withheld {
                reason: "the script was sent by the master (replication) and has already ended \
                         there: it is waited out, never shut down, unless \
                         `on_unkillable.shutdown_replicated` says so"
                    .into(),
                missing: None,
            })
        } else {
            let known = self.known(inc);
            guards::withheld(rules, order, self.shutdowns.counted(dry_run), known, now)
        };
        let inputs = self.inputs(Some(inc), now);
        if let Some(w) = withheld {
            inc.escalation = Escalation::Withheld;
            inc.withheld = Some(w.reason.clone());
            let detail = d::EscalationWithheld {
                inputs,
                reason: w.reason,
                missing: w.missing,
                withheld_action: None,
                reply_seen: Some(reply),
                silent_ms: None,
                signal: None,
                by_operator: false,
            };
            step.events.push(self.event(Some(inc), dry_run, detail));
            return;
        }
        let major = self.snapshot().and_then(Snapshot::major_version);
        let command = ShutdownCommand {
            run_id: self.snapshot().and_then(|s| s.run_id.clone()),
            evidence: self.busy_seen(inc, now),
            ..ShutdownCommand::for_version(major, rules.force)
        };
        inc.escalation = if dry_run {
            Escalation::ShutdownDecided
        } else {
            Escalation::ShutdownSent
        };
        self.shutdowns.decided(dry_run, now);
        inc.shutdown_at = Some(now);
        let detail = d::ShutdownSent {
            inputs,
            reply_seen: reply,
            command: command.text(),
            abort_first: command.abort_first,
            fallback: command.fallback_text(),
        };
        step.events.push(self.event(Some(inc), dry_run, detail));
        if !dry_run {
            step.action = Some(Action::Shutdown(command));
        }
    }

    /// What a shutdown of `inc` would rest on, for the guards.
    pub(super) fn known(&self, inc: &Incident) -> Known<'_> {
        Known {
            snapshot: self.snapshot(),
            fresh: self.snapshot.as_ref().is_some_and(|h| h.fresh),
            demoted: inc.failed_over,
            counted: self.counted(inc),
        }
    }

    /// Another server took over from this one, as busyguard verified (told by Sentinel or seen
    /// on a listed replica): recorded once per incident; a shutdown withheld for this server's
    /// role is decided again at the next BUSY reply (the evidence an action needs). Under
    /// `then: notify` nothing changes but the record: nothing is ever sent.
    pub(super) fn on_demoted(&mut self, successor: Successor, by: &'static str, step: &mut Step) {
        // A verified fact about this server, whatever is in flight: the fence's target should it
        // answer as a primary at the end of an incident.
        self.successor = Some(successor.clone());
        let Some(mut inc) = self.incident.take() else {
            return;
        };
        if !inc.failed_over && inc.first_busy.is_some() {
            let notify = inc.ladder.then == Then::Notify;
            if inc.escalation == Escalation::Withheld && !notify {
                inc.escalation = Escalation::NotYet;
            }
            let note = match notify {
                true => {
                    "this server was failed over; under `then: notify` busyguard sends it nothing: end its script (SHUTDOWN NOSAVE) and make it a replica of the new primary (REPLICAOF) by hand"
                }
                false => {
                    "this server was failed over: the guards that protect a primary and its replicas no longer hold back its shutdown; limits and `then` still apply"
                }
            };
            let detail = d::RoleChanged {
                by: by.into(),
                primary: successor.address.clone(),
                primary_run_id: successor.run_id.clone(),
                primary_replid2: Some(successor.replid2.clone()),
                note: note.into(),
            };
            inc.failed_over = true;
            step.events.push(self.event(Some(&inc), false, detail));
        }
        self.incident = Some(inc);
    }

    /// The gate held back a command the engine decided (its record written, the command not
    /// sent): the evidence no longer held by the time it would have left. It does not count for
    /// `limits`, and the next fresh BUSY reply decides again.
    pub(super) fn on_not_sent(
        &mut self,
        now: Millis,
        action: d::WithheldAction,
        reason: String,
        missing: String,
        step: &mut Step,
    ) {
        let Some(mut inc) = self.incident.take() else {
            return;
        };
        match (action, &inc.escalation) {
            (d::WithheldAction::Shutdown, Escalation::ShutdownSent) => {
                if let Some(at) = inc.shutdown_at.take() {
                    self.shutdowns.forget(at);
                }
                inc.escalation = Escalation::NotYet;
            }
            (d::WithheldAction::Failover, Escalation::FailoverRequested { .. }) => {
                inc.escalation = Escalation::NotYet;
            }
            _ => {}
        }
        let detail = d::EscalationWithheld {
            inputs: self.inputs(Some(&inc), now),
            reason: format!(
                "not sent, though its record was written: {reason}; the next fresh BUSY reply \
                 decides again"
            ),
            withheld_action: Some(action),
            missing: Some(missing),
            reply_seen: None,
            silent_ms: None,
            signal: None,
            by_operator: false,
        };
        step.events.push(self.event(Some(&inc), false, detail));
        self.incident = Some(inc);
    }

    pub(super) fn on_kill_reply(&mut self, now: Millis, reply: KillReply, step: &mut Step) {
        let Some(mut inc) = self.incident.take() else {
            return;
        };
        if let Kill::Sent { command, at } = inc.kill {
            if matches!(
                reply,
                KillReply::Ok | KillReply::Unkillable(_) | KillReply::Replicated(_)
            ) {
                self.script_answered(&mut inc, now);
            }
            self.kill_answered(&mut inc, command, at, now, reply, step);
            // Every EVAL is named in its incident when the server's log is at hand: read once
            // its kill is on its way (a local file; never ahead of the kill).
            if self.rules.server_log
                && command == KillCommand::ScriptKill
                && inc.identity.is_none()
                && step.inquiry.is_none()
            {
                step.inquiry = Some(Inquiry::IdentifyEval);
            }
        }
        self.incident = Some(inc);
    }

    pub(super) fn kill_answered(
        &self,
        inc: &mut Incident,
        command: KillCommand,
        sent_at: Millis,
        now: Millis,
        reply: KillReply,
        step: &mut Step,
    ) {
        let answer = |reply: String, replicated: bool| d::KillAnswer {
            command: command.text(),
            reply_ms: now.saturating_sub(sent_at),
            budget_left_ms: inc
                .first_busy
                .map(|f| (f + inc.ladder.wait).saturating_sub(now)),
            then: inc.ladder.then,
            reply,
            replicated,
            data_at_risk: self.snapshot().map(Snapshot::data_at_risk),
            data_at_risk_age_ms: self.snapshot.as_ref().map(|h| now.saturating_sub(h.taken)),
            function: inc
                .function
                .as_ref()
                .and_then(|f| f.name())
                .map(str::to_string),
            since_first_busy_ms: inc.first_busy.map(|f| now.saturating_sub(f)),
        };
        let unknown = inc.cause == Cause::Busy(BusyKind::Unknown);
        let detail: Detail = match reply {
            KillReply::Ok => {
                inc.kill = Kill::Accepted {
                    command,
                    reply_at: now,
                };
                return;
            }
            KillReply::Unkillable(text) => {
                inc.kill = Kill::Answered { replicated: false };
                answer(text, false).into()
            }
            KillReply::Replicated(text) => {
                inc.kill = Kill::Answered { replicated: true };
                answer(text, true).into()
            }
            // A BUSY of unknown form, answered with a BUSY naming the other kill: the right
            // kill is owed, once, at the next BUSY reply.
            KillReply::Error(text)
                if unknown
                    && !inc.kill_retried
                    && BusyKind::from_error(&text) == Some(BusyKind::Function) =>
            {
                inc.kill_retried = true;
                inc.cause = Cause::Busy(BusyKind::Function);
                inc.kill = Kill::NotYet;
                return;
            }
            // NOTBUSY to a kill of a BUSY of unknown form: a module command, which no kill
            // ends. Not a failure: the budget applies.
            KillReply::Error(text) if unknown && text.split(' ').next() == Some("NOTBUSY") => {
                inc.kill = Kill::Answered { replicated: false };
                answer(text, false).into()
            }
            // NOTBUSY to the kill a script's BUSY named: it was gone before the kill arrived
            // (another client's kill, Sentinel's when it marks a busy primary down, or its own
            // end). Not a failure to page for: the next PONG ends the incident, and `recovered`
            // says who ended it.
            KillReply::Error(text) if text.split(' ').next() == Some("NOTBUSY") => {
                inc.kill = Kill::Gone {
                    at: now,
                    reply: text,
                };
                return;
            }
            KillReply::Error(text) | KillReply::Lost(text) => {
                inc.kill = Kill::Answered { replicated: false };
                d::ActionFailed::Kill(answer(text, false)).into()
            }
        };
        step.events.push(self.event(Some(inc), false, detail));
    }

    pub(super) fn on_shutdown(&mut self, now: Millis, outcome: ShutdownOutcome, step: &mut Step) {
        let Some(mut inc) = self.incident.take() else {
            return;
        };
        if inc.escalation == Escalation::ShutdownSent {
            let since_first_busy_ms = inc.first_busy.map(|f| now.saturating_sub(f));
            let unlanded = matches!(outcome, ShutdownOutcome::Unlanded(_));
            let detail: Detail = match outcome {
                ShutdownOutcome::Confirmed {
                    elapsed_ms,
                    command,
                    how,
                } => {
                    inc.escalation = Escalation::ShutdownConfirmed;
                    d::ShutdownConfirmed {
                        confirm_ms: elapsed_ms,
                        since_first_busy_ms,
                        how: how.unwrap_or_else(|| {
                            "the connection closed without a reply and the server refused new \
                             connections"
                                .into()
                        }),
                        command,
                    }
                    .into()
                }
                ShutdownOutcome::Refused(reply) => {
                    inc.escalation = Escalation::ShutdownFailed;
                    d::ActionFailed::Shutdown {
                        action: d::FailedAction::Shutdown,
                        reply,
                        note:
                            "refused by the server: not retried (a shutdown is sent at most once)"
                                .into(),
                    }
                    .into()
                }
                ShutdownOutcome::Failed(reply) | ShutdownOutcome::Unlanded(reply) => {
                    inc.escalation = Escalation::ShutdownFailed;
                    inc.shutdown_lost = true;
                    // Unlanded: seen BUSY through the endpoint just now, what the next
                    // connection's BUSY is measured from.
                    if unlanded {
                        inc.last_busy = now;
                    }
                    let note = match (&inc.retries, unlanded) {
                        (Some(_), _) => {
                            "not sent again: it was itself the one retry of a lost shutdown"
                        }
                        (None, true) => {
                            "it had no effect: it goes once more at the first BUSY reply on the \
                             next connection (within the budget already spent when that reply \
                             shows the same script: a local server, a threshold apart at most)"
                        }
                        (None, false) => {
                            "it may have landed, so it is not sent again on this evidence; should \
                             the server still answer BUSY on a new connection, it had no effect and \
                             may go once more"
                        }
                    };
                    d::ActionFailed::Shutdown {
                        action: d::FailedAction::Shutdown,
                        reply,
                        note: note.into(),
                    }
                    .into()
                }
            };
            step.events.push(self.event(Some(&inc), false, detail));
        }
        self.incident = Some(inc);
    }

    /// A healthy answer ends the incident in flight. Its `recovered` record carries what the
    /// server tells after it: unless the server restarted (its SLOWLOG and counters began anew)
    /// or was unreachable rather than busy, the record waits for [`Inquiry::AfterRecovery`].
    pub(super) fn recover(&mut self, now: Millis, step: &mut Step) {
        self.recover_as(now, None, step);
    }

    /// [`Engine::recover`], saying how it ended when the engine knows better (`how`: a fence).
    pub(super) fn recover_as(&mut self, now: Millis, how: Option<RecoveredHow>, step: &mut Step) {
        let Some(inc) = self.incident.take() else {
            return;
        };
        // A hold is on an incident: it ends with it.
        self.hold = None;
        let run_id_now = self.snapshot().and_then(|s| s.run_id.clone());
        let restarted = match (&inc.run_id_before, &run_id_now) {
            (Some(a), Some(b)) => Some(a != b),
            _ => None,
        };
        let since_first_busy_ms = inc.first_busy.map(|f| now.saturating_sub(f));
        if let Kill::Accepted { command, reply_at } = inc.kill {
            let detail = d::Killed {
                command: command.text(),
                confirmed_ms_after_reply: now.saturating_sub(reply_at),
                since_first_busy_ms,
            };
            step.events.push(self.event(Some(&inc), false, detail));
        }
        let how_seen = match (&inc.kill, &inc.escalation) {
            (Kill::Accepted { .. }, _) => RecoveredHow::Killed,
            (_, Escalation::ShutdownConfirmed | Escalation::ShutdownSent) => {
                RecoveredHow::RestartedAfterShutdown
            }
            // Back under a new run id: a restart, whatever it looked like from here (what it had
            // not saved is gone), never merely "reachable again".
            _ if restarted == Some(true) => RecoveredHow::RestartedByOther,
            (_, _) if inc.cause == Cause::Unreachable => RecoveredHow::ReachableAgain,
            _ => RecoveredHow::EndedByItself,
        };
        let how = how.unwrap_or(how_seen);
        let duration_ms = now.saturating_sub(inc.opened);
        let detail = d::Recovered {
            how,
            kill_reply: match &inc.kill {
                Kill::Gone { reply, .. } => Some(reply.clone()),
                _ => None,
            },
            duration_ms,
            since_first_busy_ms,
            restarted,
            run_id: run_id_now,
            forensics: None,
        };
        let mut found = serde_json::Map::new();
        if let Some(function) = &inc.function {
            found.insert("function".into(), function.to_json());
        }
        if let Some(sha) = &inc.eval_sha {
            found.insert(
                "eval".into(),
                serde_json::json!({ "sha": sha, "named_by": "the server's log" }),
            );
        }
        let server_knows = restarted != Some(true) && how != RecoveredHow::ReachableAgain;
        if restarted == Some(true) {
            found.insert(
                "note".into(),
                "the server restarted: its SLOWLOG and counters began anew".into(),
            );
        }
        let recovering = Recovering {
            event: self.event(Some(&inc), false, detail),
            found,
            kills_sent: inc.kills_sent,
            opened_unix_ms: self.wall(inc.opened),
            duration_ms,
            place: step.events.len(),
        };
        match server_knows {
            true => self.recovering = Some(recovering),
            false => step.events.push(recovering.finish(None)),
        }
    }

    /// Ask the server what it can tell of the incident that just ended, unless this step also
    /// acts (a new incident right after the last: nothing may wait ahead of its action) or asks
    /// something else; then the record goes as it is known.
    pub(super) fn ask_after_recovery(&mut self, step: &mut Step) {
        if self.recovering.is_none() {
            return;
        }
        let why = match (&step.action, &step.inquiry) {
            (None, None) => {
                step.inquiry = Some(Inquiry::AfterRecovery);
                return;
            }
            (Some(_), _) => None,
            (None, Some(_)) => Some("not asked: another script holds the server".to_string()),
        };
        // In its place among this step's records: before the next incident's.
        let Some(mut r) = self.recovering.take() else {
            return;
        };
        let place = r.place.min(step.events.len());
        let forensics = why.map(|why| {
            r.found.insert("error".into(), why.into());
            std::mem::take(&mut r.found)
        });
        step.events.insert(place, r.finish(forensics));
    }

    /// The waiting `recovered` record goes as it is known: its answer was never given.
    pub(super) fn recovered_as_known(&mut self, step: &mut Step) {
        if let Some(r) = self.recovering.take() {
            step.events.push(r.finish(None));
        }
    }

    /// What the server said after the incident completes its `recovered` record: the offending
    /// script's SLOWLOG entry, the counters' growth against the last healthy snapshot, and who
    /// ended the script (more kills counted by the server than busyguard sent: another client).
    pub(super) fn recovered_with(
        &mut self,
        told: Result<Box<AfterRecovery>, String>,
        step: &mut Step,
    ) {
        let Some(mut r) = self.recovering.take() else {
            return;
        };
        let told = match told {
            Ok(told) => told,
            Err(why) => {
                r.found.insert("error".into(), why.into());
                let found = std::mem::take(&mut r.found);
                step.events.push(r.finish(Some(found)));
                return;
            }
        };
        let before = self.baseline.as_ref();
        // The server's log is read against the server's clock.
        let since_unix_s = match told.snapshot.as_ref().ok().and_then(|s| s.server_time_usec) {
            Some(us) => (us / 1000).saturating_sub(r.duration_ms) / 1000,
            None => r.opened_unix_ms / 1000,
        };
        let slowlog = match &told.slowlog {
            Ok(entries) => offending_entry(entries, since_unix_s),
            Err(e) => serde_json::json!({ "error": e }),
        };
        let counters = match &told.snapshot {
            Ok(now) => {
                let kills = before
                    .and_then(|b| b.kill_calls)
                    .zip(now.kill_calls)
                    .map(|(b, n)| n.saturating_sub(b));
                if kills.is_some_and(|k| k > r.kills_sent)
                    && let Detail::Recovered(rec) = &mut r.event.detail
                    && rec.how == RecoveredHow::EndedByItself
                {
                    rec.how = RecoveredHow::KilledByOther;
                }
                serde_json::json!({
                    "busy_replies": delta(before.and_then(|b| b.busy_errors), now.busy_errors),
                    "unkillable_replies": delta(before.and_then(|b| b.unkillable_errors), now.unkillable_errors),
                    "rejected_calls": delta(before.and_then(|b| b.rejected_calls), now.rejected_calls),
                    "kill_calls": kills,
                })
            }
            Err(e) => serde_json::json!({ "error": e }),
        };
        r.found.insert("slowlog".into(), slowlog);
        r.found.insert("served_during_incident".into(), counters);
        let found = std::mem::take(&mut r.found);
        step.events.push(r.finish(Some(found)));
    }
}

/// A `recovered` record waiting for what the server tells after the incident.
#[derive(Debug)]
pub(super) struct Recovering {
    event: crate::event::Event,
    /// The forensics known already (the running function, a restart's note).
    found: serde_json::Map<String, serde_json::Value>,
    kills_sent: u64,
    opened_unix_ms: u64,
    duration_ms: u64,
    /// Where it stands among the records of the step that ended the incident.
    place: usize,
}

impl Recovering {
    /// The record, with its forensics.
    fn finish(
        mut self,
        forensics: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> crate::event::Event {
        if let Detail::Recovered(r) = &mut self.event.detail {
            r.forensics = forensics.map(serde_json::Value::Object);
        }
        self.event
    }
}

impl Engine {
    /// FUNCTION STATS answered: the function that runs, and the ladder it climbs. A kill that
    /// waited for the name is decided now, on the BUSY reply it waited with.
    pub(super) fn on_running_function(
        &mut self,
        now: Millis,
        seen: RunningFunction,
        step: &mut Step,
    ) {
        let Some(mut inc) = self.incident.take() else {
            return;
        };
        // A function that runs now: as good as a BUSY reply for continuity.
        if seen.name().is_some() {
            inc.last_busy = now;
        }
        // The first name decides; a later answer never moves an incident to another ladder. A
        // name that comes after the kill still sets the rule's `wait` and `then`.
        let after = inc.first_busy.map_or(0, |f| now.saturating_sub(f));
        let killed = !matches!(inc.kill, Kill::NotYet | Kill::NoneExists);
        let named = inc.function.as_ref().and_then(|f| f.name()).is_some();
        if let (None, Some(name), false) = (&inc.ladder.rule, seen.name(), named) {
            inc.ladder = Ladder::for_script(&self.rules, Running::Function(name));
        }
        if self.rules.function_rules && !named {
            let late = match killed {
                true => "; named after the kill went: the rule's wait and then apply",
                false => "",
            };
            let identity = match &seen {
                RunningFunction::Seen { name: Some(n), .. } => Some(format!(
                    "function {n} (FUNCTION STATS, {after} ms after the first BUSY reply{late})"
                )),
                RunningFunction::Seen { name: None, .. } => Some(
                    "unknown: FUNCTION STATS named no running function; the instance's ladder applies".into(),
                ),
                // Asked again later: said once.
                RunningFunction::Unknown(why) if inc.identity.is_none() => Some(format!(
                    "unknown: FUNCTION STATS: {why}; asked again at each BUSY reply, the instance's ladder applies meanwhile"
                )),
                RunningFunction::Unknown(_) => None,
            };
            if identity.is_some() {
                inc.identity = identity;
            }
        }
        if !named {
            inc.function = Some(seen);
        }
        self.identified(&mut inc, now, step);
        self.incident = Some(inc);
    }

    /// The server's log named the EVAL that went BUSY (or could not): its ladder, then the kill
    /// that waited for it.
    pub(super) fn on_eval_named(
        &mut self,
        now: Millis,
        named: Result<String, String>,
        step: &mut Step,
    ) {
        let Some(mut inc) = self.incident.take() else {
            return;
        };
        inc.identity = Some(match &named {
            Ok(sha) => format!("eval {sha} (the server's log)"),
            Err(why) => format!("unknown: {why}; the instance's ladder applies"),
        });
        if let (None, Ok(sha)) = (&inc.ladder.rule, &named) {
            inc.ladder = Ladder::for_script(&self.rules, Running::Eval(sha));
        }
        inc.eval_sha = named.ok();
        self.identified(&mut inc, now, step);
        self.incident = Some(inc);
    }

    /// The kill that waited for the script's name is decided now, on the BUSY reply it kept.
    fn identified(&mut self, inc: &mut Incident, now: Millis, step: &mut Step) {
        if let Some(reply) = inc.identifying.take() {
            let kind = match inc.cause {
                Cause::Busy(k) => k,
                _ => BusyKind::Unknown,
            };
            self.decide(inc, now, kind, reply, step);
        }
    }
}
