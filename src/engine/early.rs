//! Before BUSY: scripts creeping toward the busy threshold, read from the server's SLOWLOG with
//! each healthy snapshot. Pure, like the engine: given the entries, the threshold and the time,
//! it says which deserve a `slow_script` warning.
//!
//! Every SLOWLOG entry has an id that only grows while the server runs (`SLOWLOG RESET` empties
//! the log but does not reset the ids; a restart does, and changes the run id), so a cursor of
//! (run id, last id) sees each entry once; the trail's newest `slow_script` record carries it
//! across a restart of busyguard. With no cursor at all (a first start) the entries already in
//! the log are taken as seen: busyguard warns of what happens while it watches.
//!
//! A script that reached the threshold is not one of them: it went BUSY, and its incident tells
//! it.
//!
//! A script that keeps crossing the line is told once an hour at most: the first time, then a
//! summary (`repeats_since_last`) at its next crossing an hour or more later; every warning
//! says how often the script was slow in the last hour.
//!
//! A storm is told on its own (valkey-io/valkey#2773): one script run again and again just
//! under the threshold (80% of it or more, never reaching it) holds the server as surely as a
//! runaway, yet never goes BUSY. When its runs in the last minute held the server half of that
//! minute or more, a `slow_script` record with `storm` says so, once an hour per script.

use std::collections::{HashMap, VecDeque};

use crate::event::detail::SlowScript;
use crate::model::slowlog::SlowEntry;
use crate::policy::EarlyWarning;

/// How often one script may be told.
const TELL_EVERY_MS: u64 = 3_600_000;
/// The window of `count_last_hour`.
const HOUR_MS: u64 = 3_600_000;
/// The window a storm is measured over, and the share of it its runs must have held.
const STORM_WINDOW_MS: u64 = 60_000;
const STORM_HELD_MS: u64 = STORM_WINDOW_MS / 2;
/// The fewest runs that make a storm (one long run is not one).
const STORM_RUNS: usize = 3;

/// Which scripts deserve a warning, and which entries were already seen.
#[derive(Debug)]
pub struct EarlyWarnings {
    rule: EarlyWarning,
    /// (run id, last id seen); `None` until the first look at the log.
    cursor: Option<(Option<String>, Option<u64>)>,
    /// When each script was slow, within the last hour.
    recent: HashMap<String, VecDeque<u64>>,
    /// When each script was last told, and how often it was slow since.
    told: HashMap<String, (u64, u32)>,
    /// Per script: the (end ms, duration ms) of its runs just under the threshold, within the
    /// storm window of its newest run, and when a storm of it was last told.
    near: HashMap<String, VecDeque<(u64, u64)>>,
    storm_told: HashMap<String, u64>,
}

impl EarlyWarnings {
    /// `cursor`: the (run id, SLOWLOG id) of the newest warning the trail holds.
    pub fn new(rule: EarlyWarning, cursor: Option<(Option<String>, u64)>) -> EarlyWarnings {
        EarlyWarnings {
            rule,
            cursor: cursor.map(|(run, id)| (run, Some(id))),
            recent: HashMap::new(),
            told: HashMap::new(),
            near: HashMap::new(),
            storm_told: HashMap::new(),
        }
    }

    pub fn set_rule(&mut self, rule: EarlyWarning) {
        self.rule = rule;
    }

    /// The line a script must reach, in ms (`None`: off, or a share of an unknown threshold).
    pub fn line_ms(&self, threshold_ms: Option<u64>) -> Option<f64> {
        match self.rule {
            EarlyWarning::Off => None,
            EarlyWarning::After(d) => Some(d.as_secs_f64() * 1000.0),
            EarlyWarning::Share(share) => threshold_ms.filter(|t| *t > 0).map(|t| t as f64 * share),
        }
    }

    /// The script entries not seen before (for the metrics), and the warnings they call for.
    pub fn observe(
        &mut self,
        run_id: Option<&str>,
        threshold_ms: Option<u64>,
        entries: &[SlowEntry],
        now_unix_ms: u64,
    ) -> (Vec<SlowEntry>, Vec<SlowScript>) {
        let newest = entries.iter().map(|e| e.id).max();
        let last = match &self.cursor {
            None => {
                // A first look: what is already in the log happened before busyguard watched.
                self.cursor = Some((run_id.map(str::to_string), newest));
                return (Vec::new(), Vec::new());
            }
            Some((run, _)) if run.as_deref() != run_id => None, // the server restarted
            Some((_, last)) => *last,
        };
        let mut fresh: Vec<SlowEntry> = entries
            .iter()
            .filter(|e| last.is_none_or(|l| e.id > l) && e.script().is_some())
            .cloned()
            .collect();
        fresh.sort_by_key(|e| e.id);
        self.cursor = Some((run_id.map(str::to_string), newest.max(last)));
        let mut warnings = Vec::new();
        let line = self.line_ms(threshold_ms);
        for entry in &fresh {
            let duration_ms = entry.duration_us as f64 / 1000.0;
            if line.is_none_or(|l| duration_ms < l) {
                continue;
            }
            // At or past the threshold the script went BUSY: its incident tells it, and "a slow
            // script, before BUSY" would be a second, wrong, message about it.
            if threshold_ms.is_some_and(|t| t > 0 && duration_ms >= t as f64) {
                continue;
            }
            let Some((command, script)) = entry.script() else {
                continue;
            };
            let storm = self.storm(&script, entry, threshold_ms, now_unix_ms);
            let at = entry.at_unix_s * 1000;
            let recent = self.recent.entry(script.clone()).or_default();
            recent.push_back(at);
            while recent
                .front()
                .is_some_and(|t| now_unix_ms.saturating_sub(*t) > HOUR_MS)
            {
                recent.pop_front();
            }
            let count_last_hour = recent.len() as u32;
            let told = self.told.entry(script.clone()).or_insert((0, 0));
            let due = told.0 == 0 || now_unix_ms.saturating_sub(told.0) >= TELL_EVERY_MS;
            if !due && storm.is_none() {
                told.1 += 1;
                continue;
            }
            let repeats_since_last = match due {
                true => std::mem::take(&mut told.1),
                false => 0,
            };
            if due {
                told.0 = now_unix_ms.max(1);
            }
            warnings.push(SlowScript {
                script,
                command,
                duration_ms: entry.duration_us / 1000,
                threshold_ms,
                share_of_threshold: threshold_ms
                    .filter(|t| *t > 0)
                    .map(|t| (duration_ms / t as f64 * 100.0).round() / 100.0),
                client_addr: entry.client_addr.clone(),
                client_name: entry.client_name.clone(),
                count_last_hour,
                repeats_since_last,
                slowlog_id: entry.id,
                run_id: run_id.map(str::to_string),
                logged_at_unix: entry.at_unix_s,
                storm,
            });
        }
        (fresh, warnings)
    }

    /// Count `entry` toward a storm of `script` (a run at 80% or more of the threshold that
    /// stayed below it), and say whether one is to be told now. Times are the server's own
    /// (its SLOWLOG), so the window does not depend on the two clocks agreeing.
    fn storm(
        &mut self,
        script: &str,
        entry: &SlowEntry,
        threshold_ms: Option<u64>,
        now_unix_ms: u64,
    ) -> Option<crate::event::detail::Storm> {
        let threshold = threshold_ms.filter(|t| *t > 0)? as f64;
        let duration_ms = entry.duration_us / 1000;
        let share = duration_ms as f64 / threshold;
        if !(crate::event::NEAR_THRESHOLD..1.0).contains(&share) {
            return None;
        }
        let end = entry.at_unix_s * 1000 + duration_ms;
        let runs = self.near.entry(script.to_string()).or_default();
        runs.push_back((end, duration_ms));
        while runs
            .front()
            .is_some_and(|(t, _)| end.saturating_sub(*t) > STORM_WINDOW_MS)
        {
            runs.pop_front();
        }
        let held_ms: u64 = runs.iter().map(|(_, d)| d).sum();
        if runs.len() < STORM_RUNS || held_ms < STORM_HELD_MS {
            return None;
        }
        let told = self.storm_told.entry(script.to_string()).or_insert(0);
        if *told != 0 && now_unix_ms.saturating_sub(*told) < TELL_EVERY_MS {
            return None;
        }
        *told = now_unix_ms.max(1);
        Some(crate::event::detail::Storm {
            runs: runs.len() as u32,
            held_ms,
            window_ms: STORM_WINDOW_MS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::slowlog::SCRIPT_CHARS;

    fn entry(id: u64, ms: u64, body: &str) -> SlowEntry {
        SlowEntry {
            id,
            at_unix_s: 1_800_000_000,
            duration_us: ms * 1000,
            args: vec!["EVAL".into(), body.into(), "0".into()],
            client_addr: "127.0.0.1:5000".into(),
            client_name: "app".into(),
        }
    }

    fn warnings(e: &mut EarlyWarnings, run: &str, entries: &[SlowEntry], now: u64) -> Vec<u64> {
        e.observe(Some(run), Some(200), entries, now)
            .1
            .iter()
            .map(|w| w.slowlog_id)
            .collect()
    }

    #[test]
    fn each_entry_is_told_once_at_the_line_and_a_restart_starts_anew() {
        let mut e = EarlyWarnings::new(EarlyWarning::Share(0.5), None);
        let t = 1_800_000_000_000;
        // What was in the log before busyguard looked is not told.
        assert!(warnings(&mut e, "a", &[entry(1, 150, "old")], t).is_empty());
        let log = [
            entry(1, 150, "old"),
            entry(2, 60, "s30"),
            entry(3, 120, "s60"),
            entry(4, 180, "s90"),
        ];
        assert_eq!(warnings(&mut e, "a", &log, t), [3, 4]);
        assert!(warnings(&mut e, "a", &log, t).is_empty(), "never twice");
        // SLOWLOG RESET empties the log; the ids go on.
        assert!(warnings(&mut e, "a", &[], t).is_empty());
        assert_eq!(warnings(&mut e, "a", &[entry(5, 190, "s95")], t), [5]);
        // A restarted server counts ids from 0 again, under a new run id.
        assert_eq!(warnings(&mut e, "b", &[entry(0, 150, "new")], t), [0]);
        // A script that reached the threshold (200 ms) went BUSY: its incident tells it.
        assert!(warnings(&mut e, "b", &[entry(1, 200, "busy"), entry(2, 900, "x")], t).is_empty());
    }

    #[test]
    fn a_script_crossing_again_and_again_is_summarised_hourly() {
        let mut e = EarlyWarnings::new(EarlyWarning::Share(0.5), Some((Some("a".into()), 0)));
        let t = 1_800_000_000_000;
        assert_eq!(warnings(&mut e, "a", &[entry(1, 150, "same")], t), [1]);
        assert!(warnings(&mut e, "a", &[entry(2, 150, "same")], t + 1_000).is_empty());
        assert!(warnings(&mut e, "a", &[entry(3, 150, "same")], t + 2_000).is_empty());
        let later = e
            .observe(
                Some("a"),
                Some(200),
                &[entry(4, 150, "same")],
                t + HOUR_MS + 1,
            )
            .1;
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].repeats_since_last, 2);
    }

    /// valkey-io/valkey#2773: runs just under the threshold, back to back, hold the server
    /// without ever going BUSY: told once as a storm, with how long they held it.
    #[test]
    fn scripts_back_to_back_just_under_the_threshold_are_a_storm_told_once() {
        let mut e = EarlyWarnings::new(EarlyWarning::Share(0.5), Some((Some("a".into()), 0)));
        let t = 1_800_000_000_000;
        // 180 ms runs (90% of a 200 ms threshold), five a second, over a minute.
        let runs: Vec<SlowEntry> = (1..=300)
            .map(|i| SlowEntry {
                at_unix_s: 1_800_000_000 + i / 5,
                ..entry(i, 180, "storm")
            })
            .collect();
        let told = e.observe(Some("a"), Some(200), &runs, t).1;
        let storms: Vec<_> = told.iter().filter_map(|w| w.storm.as_ref()).collect();
        assert_eq!(storms.len(), 1, "{told:?}");
        assert!(
            storms[0].held_ms >= STORM_HELD_MS && storms[0].runs >= 3,
            "{storms:?}"
        );
        // The first run was told as slow; the storm once more; nothing else this hour.
        assert_eq!(told.len(), 2);
        // Runs that went BUSY (at the threshold) or far below it are no storm.
        let mut e = EarlyWarnings::new(EarlyWarning::Share(0.5), Some((Some("a".into()), 0)));
        let busy: Vec<SlowEntry> = (1..=300).map(|i| entry(i, 200, "busy")).collect();
        let slow: Vec<SlowEntry> = (301..=600).map(|i| entry(i, 120, "slow")).collect();
        let told = e.observe(Some("a"), Some(200), &[busy, slow].concat(), t).1;
        assert!(told.iter().all(|w| w.storm.is_none()), "{told:?}");
    }

    #[test]
    fn functions_are_named_and_bodies_cut() {
        let f = SlowEntry {
            args: vec!["FCALL".into(), "spin".into(), "0".into()],
            ..entry(1, 1, "")
        };
        assert_eq!(f.script(), Some(("FCALL".into(), "spin".into())));
        let long = format!("\n  {}\nsecond line", "x".repeat(200));
        let (_, first) = entry(1, 1, &long).script().unwrap();
        assert_eq!(first.chars().count(), SCRIPT_CHARS + 3);
        assert_eq!(entry(1, 1, "").args[0], "EVAL");
        let get = SlowEntry {
            args: vec!["GET".into(), "k".into()],
            ..entry(1, 1, "")
        };
        assert_eq!(get.script(), None);
    }
}
