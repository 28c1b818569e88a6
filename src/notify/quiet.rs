//! Less noise for humans: a receiver holds an incident's first records for a moment, so that
//! what resolves by itself in that moment is told as its outcome, not as every step.
//!
//! - A BUSY incident's `busy_detected`, `kill_sent` and `killed` are held for `quiet` (2 s by
//!   default for Slack and PagerDuty): a script killed within it is one message, its
//!   `recovered` (how: killed), and no page at all; anything else in that time (unkillable, a
//!   failed kill) or the end of the wait lets every held record go, in order.
//! - An `unreachable` incident is held for `unreachable_grace` (30 s by default): a restart
//!   shorter than that is not news, unless the server came back under a new run id (what it
//!   had not saved is gone): that outcome alone is told, never paged.
//! - A pager gets an unkillable script as one trigger: the `unkillable` stands for the held
//!   `busy_detected` and `kill_sent`.
//! - For people reading a chat (`collapse`, Slack): what changed, not every step. An
//!   `unkillable` within the moment stands for the `busy_detected` and `kill_sent` before it
//!   (it names the kill and its answer), and a `shutdown_confirmed` for its `shutdown_sent` (held
//!   for the same moment): an unkillable incident ended by a shutdown is three messages
//!   (unkillable, shutdown confirmed, recovered), not six.
//!
//! Pure: the outbox feeds it records and the time, and delivers what it hands back.

use crate::event::Detail;
use crate::event::detail::RecoveredHow;

use crate::audit::follow::TrailRecord;

/// How long records are held, per kind of incident (ms; 0: not held).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub quiet_ms: u64,
    pub grace_ms: u64,
    /// A receiver that pages (PagerDuty): a quick kill is not told at all, not even its outcome.
    pub pages: bool,
    /// A receiver people read as a stream (Slack): steps that the next record tells are left out.
    pub collapse: bool,
}

/// Records of one incident, held until `until` (Unix ms).
#[derive(Debug)]
struct Held {
    incident: String,
    records: Vec<TrailRecord>,
    until: u64,
    /// Held as an unreachable episode (else a BUSY one).
    unreachable: bool,
}

#[derive(Debug, Default)]
pub struct Quiet {
    rules: Rules,
    held: Vec<Held>,
}

impl Quiet {
    pub fn new(rules: Rules) -> Quiet {
        Quiet {
            rules,
            held: Vec::new(),
        }
    }

    /// Take the next record of the trail; returns what to deliver now, in order.
    pub fn take(&mut self, r: TrailRecord) -> Vec<TrailRecord> {
        let Some(id) = r.record.event.incident.clone() else {
            return vec![r];
        };
        if let Some(i) = self.held.iter().position(|h| h.incident == id) {
            let held = &mut self.held[i];
            return match &r.record.event.detail {
                Detail::KillSent(_) | Detail::Killed(_) if !held.unreachable => {
                    held.records.push(r);
                    Vec::new()
                }
                // For a chat, and a pager: the answer to the kill tells the BUSY and the kill
                // (one page, at the unkillable's severity, not a BUSY trigger 2 ms before it).
                Detail::Unkillable(_)
                    if (self.rules.collapse || self.rules.pages) && !held.unreachable =>
                {
                    self.held.remove(i);
                    vec![r]
                }
                // For a chat: the shutdown confirmed tells that it was sent.
                Detail::ShutdownConfirmed(_)
                    if self.rules.collapse
                        && held
                            .records
                            .iter()
                            .all(|h| matches!(h.record.event.detail, Detail::ShutdownSent(_))) =>
                {
                    self.held.remove(i);
                    vec![r]
                }
                // Resolved within the moment: the outcome alone (or nothing, for a pager).
                Detail::Recovered(rec) if rec.how == RecoveredHow::Killed && !held.unreachable => {
                    self.held.remove(i);
                    match self.rules.pages {
                        true => Vec::new(),
                        false => vec![r],
                    }
                }
                // Back under a new run id: what it had not saved is gone. Told to people
                // (the outcome alone), not paged.
                Detail::Recovered(rec)
                    if held.unreachable
                        && rec.how == RecoveredHow::RestartedByOther
                        && !self.rules.pages =>
                {
                    self.held.remove(i);
                    vec![r]
                }
                Detail::Recovered(_) if held.unreachable => {
                    self.held.remove(i);
                    Vec::new()
                }
                _ => {
                    let mut out = self.held.remove(i).records;
                    out.push(r);
                    out
                }
            };
        }
        let at = r.record.unix_ms().unwrap_or(0);
        let (window, unreachable) = match &r.record.event.detail {
            Detail::BusyDetected(_) => (self.rules.quiet_ms, false),
            Detail::Unreachable(_) => (self.rules.grace_ms, true),
            Detail::ShutdownSent(_) if self.rules.collapse => (self.rules.quiet_ms, false),
            _ => (0, false),
        };
        if window == 0 {
            return vec![r];
        }
        self.held.push(Held {
            incident: id,
            records: vec![r],
            until: at + window,
            unreachable,
        });
        Vec::new()
    }

    /// Records whose wait is over at `now` (Unix ms), in order.
    pub fn due(&mut self, now: u64) -> Vec<TrailRecord> {
        let mut out = Vec::new();
        self.held.retain_mut(|h| {
            if h.until <= now {
                out.append(&mut h.records);
                false
            } else {
                true
            }
        });
        out
    }

    /// When the next held records are due (Unix ms).
    pub fn next_due(&self) -> Option<u64> {
        self.held.iter().map(|h| h.until).min()
    }

    /// The oldest record still held: the cursor must not pass it.
    pub fn oldest_held_seq(&self) -> Option<u64> {
        self.held
            .iter()
            .filter_map(|h| h.records.first().map(|r| r.seq))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Record;
    use crate::event::Event;
    use crate::event::detail::{self as d, DecisionInputs, Recovered};

    fn rec(seq: u64, ms: u64, incident: &str, detail: Detail) -> TrailRecord {
        let record = Record {
            ts: crate::model::clock::rfc3339(1_800_000_000_000 + ms),
            seq,
            prev: String::new(),
            version: String::new(),
            event: Event {
                instance: Some("i".into()),
                incident: Some(incident.into()),
                dry_run: false,
                policy: None,
                detail,
            },
        };
        TrailRecord {
            seq,
            line: String::new(),
            record,
        }
    }

    fn busy() -> Detail {
        d::BusyDetected {
            inputs: DecisionInputs::default(),
            reply: "BUSY".into(),
            busy_kind: crate::model::kinds::BusyKind::Script,
            warning: None,
            supersedes: None,
        }
        .into()
    }

    fn recovered(how: RecoveredHow) -> Detail {
        Recovered {
            how,
            kill_reply: None,
            duration_ms: 3,
            since_first_busy_ms: None,
            restarted: None,
            run_id: None,
            forensics: None,
        }
        .into()
    }

    fn kill_sent() -> Detail {
        d::KillSent {
            inputs: DecisionInputs::default(),
            command: "SCRIPT KILL".into(),
            reply_seen: "BUSY".into(),
        }
        .into()
    }

    const RULES: Rules = Rules {
        quiet_ms: 2_000,
        grace_ms: 30_000,
        pages: false,
        collapse: false,
    };

    #[test]
    fn a_quick_kill_is_its_outcome_and_pages_nothing() {
        let mut q = Quiet::new(RULES);
        assert!(q.take(rec(1, 0, "a", busy())).is_empty());
        assert!(q.take(rec(2, 1, "a", kill_sent())).is_empty());
        assert_eq!(q.oldest_held_seq(), Some(1));
        let out = q.take(rec(3, 4, "a", recovered(RecoveredHow::Killed)));
        assert_eq!(out.iter().map(|r| r.seq).collect::<Vec<_>>(), [3]);
        assert_eq!(q.oldest_held_seq(), None);
        let mut pager = Quiet::new(Rules {
            pages: true,
            ..RULES
        });
        pager.take(rec(1, 0, "a", busy()));
        assert!(
            pager
                .take(rec(3, 4, "a", recovered(RecoveredHow::Killed)))
                .is_empty()
        );
    }

    #[test]
    fn what_does_not_resolve_in_time_goes_out_in_order() {
        let mut q = Quiet::new(RULES);
        q.take(rec(1, 0, "a", busy()));
        q.take(rec(2, 1, "a", kill_sent()));
        assert!(q.due(1_800_000_001_999).is_empty());
        let out = q.due(1_800_000_002_000);
        assert_eq!(out.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
        // An outcome other than a kill releases at once.
        q.take(rec(5, 10_000, "b", busy()));
        let out = q.take(rec(6, 10_001, "b", recovered(RecoveredHow::EndedByItself)));
        assert_eq!(out.iter().map(|r| r.seq).collect::<Vec<_>>(), [5, 6]);
    }

    fn unkillable() -> Detail {
        Detail::Unkillable(d::KillAnswer {
            command: "SCRIPT KILL".into(),
            reply_ms: 1,
            budget_left_ms: Some(1000),
            then: crate::model::kinds::Then::Shutdown,
            reply: "UNKILLABLE".into(),
            replicated: false,
            data_at_risk: None,
            data_at_risk_age_ms: None,
            function: None,
            since_first_busy_ms: Some(1),
        })
    }

    fn shutdown_sent() -> Detail {
        d::ShutdownSent {
            inputs: DecisionInputs::default(),
            reply_seen: "BUSY".into(),
            command: "SHUTDOWN NOSAVE NOW".into(),
            abort_first: false,
            fallback: None,
        }
        .into()
    }

    fn shutdown_confirmed() -> Detail {
        d::ShutdownConfirmed {
            confirm_ms: 3,
            since_first_busy_ms: Some(1003),
            how: "the connection closed".into(),
            command: None,
        }
        .into()
    }

    #[test]
    fn for_a_chat_an_unkillable_shutdown_is_three_messages_not_six() {
        let mut chat = Quiet::new(Rules {
            collapse: true,
            ..RULES
        });
        let mut sent = Vec::new();
        sent.extend(chat.take(rec(1, 0, "a", busy())));
        sent.extend(chat.take(rec(2, 1, "a", kill_sent())));
        sent.extend(chat.take(rec(3, 2, "a", unkillable())));
        sent.extend(chat.take(rec(4, 1000, "a", shutdown_sent())));
        assert_eq!(chat.oldest_held_seq(), Some(4));
        sent.extend(chat.take(rec(5, 1003, "a", shutdown_confirmed())));
        sent.extend(chat.take(rec(
            6,
            9000,
            "a",
            recovered(RecoveredHow::RestartedAfterShutdown),
        )));
        assert_eq!(sent.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 5, 6]);
        assert_eq!(chat.oldest_held_seq(), None);
        // Every record, for a receiver that is not a chat.
        let mut hook = Quiet::new(RULES);
        let mut all = Vec::new();
        for (seq, detail) in [
            (1, busy()),
            (2, kill_sent()),
            (3, unkillable()),
            (4, shutdown_sent()),
            (5, shutdown_confirmed()),
        ] {
            all.extend(hook.take(rec(seq, seq, "a", detail)));
        }
        assert_eq!(
            all.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
    }

    /// #35: a pager is sent the unkillable alone, not a BUSY trigger 2 ms before it.
    #[test]
    fn for_a_pager_an_unkillable_script_is_one_trigger() {
        let mut pager = Quiet::new(Rules {
            pages: true,
            ..RULES
        });
        let mut sent = Vec::new();
        sent.extend(pager.take(rec(1, 0, "a", busy())));
        sent.extend(pager.take(rec(2, 1, "a", kill_sent())));
        sent.extend(pager.take(rec(3, 2, "a", unkillable())));
        assert_eq!(sent.iter().map(|r| r.seq).collect::<Vec<_>>(), [3]);
        assert_eq!(pager.oldest_held_seq(), None);
    }

    fn unreachable() -> Detail {
        d::Unreachable {
            inputs: DecisionInputs::default(),
            reason: "connection refused".into(),
        }
        .into()
    }

    /// #35: a short outage is no news, but a server back under a new run id lost what it had
    /// not saved: people are told (the outcome alone), a pager is not.
    #[test]
    fn a_short_outage_is_quiet_unless_the_server_came_back_as_a_new_run() {
        for (how, chat_told, paged) in [
            (RecoveredHow::ReachableAgain, false, false),
            (RecoveredHow::RestartedByOther, true, false),
        ] {
            for (pages, told) in [(false, chat_told), (true, paged)] {
                let mut q = Quiet::new(Rules { pages, ..RULES });
                assert!(q.take(rec(1, 0, "a", unreachable())).is_empty());
                let out = q.take(rec(2, 5_000, "a", recovered(how)));
                let want: &[u64] = if told { &[2] } else { &[] };
                assert_eq!(out.iter().map(|r| r.seq).collect::<Vec<_>>(), want);
                assert_eq!(q.oldest_held_seq(), None);
            }
        }
    }

    #[test]
    fn for_a_chat_a_shutdown_never_confirmed_is_told_when_its_moment_is_over() {
        let mut chat = Quiet::new(Rules {
            collapse: true,
            ..RULES
        });
        assert!(chat.take(rec(4, 0, "a", shutdown_sent())).is_empty());
        let out = chat.due(1_800_000_002_000);
        assert_eq!(out.iter().map(|r| r.seq).collect::<Vec<_>>(), [4]);
    }
}
