//! `limits`: how many shutdowns an instance may have within `per`, and how many it has had.
//! Enforced shutdowns and dry-run decisions are kept apart: a dry run shows what enforce would
//! do, limits included, but a rehearsal never spends what enforce may send (following the
//! README's way in, a dry-run rehearsal before `mode: enforce`, the first real unkillable
//! script would otherwise find its limit spent by a decision that sent nothing).

use serde::{Deserialize, Serialize};

use super::Millis;

/// The instants (engine time) at which shutdowns were decided, by mode.
#[derive(Clone, Debug, Default)]
pub(super) struct Ledger {
    enforced: Vec<Millis>,
    rehearsed: Vec<Millis>,
}

/// How much of `limits` is used, for `ps` and `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsUsed {
    /// Shutdowns within the last `per` that count (enforced ones, or dry-run decisions in
    /// dry-run).
    pub used: u32,
    pub max: u32,
    pub per_ms: u64,
    /// When the oldest of them leaves the window (wall clock, Unix ms): one more may go then.
    pub frees_at_unix_ms: Option<u64>,
    /// Under enforce, the dry-run decisions within the window (shown apart, never counted).
    pub rehearsed: u32,
}

impl Ledger {
    /// From the trail: enforced shutdowns and dry-run decisions, engine time.
    pub(super) fn resumed(enforced: Vec<Millis>, rehearsed: Vec<Millis>) -> Ledger {
        Ledger {
            enforced,
            rehearsed,
        }
    }

    /// The shutdowns that count against the limits of a policy in `dry_run` or not.
    pub(super) fn counted(&self, dry_run: bool) -> &[Millis] {
        match dry_run {
            true => &self.rehearsed,
            false => &self.enforced,
        }
    }

    pub(super) fn decided(&mut self, dry_run: bool, at: Millis) {
        match dry_run {
            true => self.rehearsed.push(at),
            false => self.enforced.push(at),
        }
    }

    /// A shutdown that had no effect (lost, and the server still answers BUSY) no longer counts.
    pub(super) fn forget(&mut self, at: Millis) {
        if let Some(i) = self.enforced.iter().position(|t| *t == at) {
            self.enforced.remove(i);
        }
    }

    /// How much is used at `now`; `wall` places an engine instant on the wall clock.
    pub(super) fn used(
        &self,
        dry_run: bool,
        max: u32,
        per: Millis,
        now: Millis,
        wall: impl Fn(Millis) -> u64,
    ) -> LimitsUsed {
        let within = |list: &[Millis]| -> Vec<Millis> {
            list.iter()
                .copied()
                .filter(|t| now.saturating_sub(*t) < per)
                .collect()
        };
        let counted = within(self.counted(dry_run));
        let frees_at = (counted.len() as u32 >= max && max > 0)
            .then(|| counted.iter().min().map(|t| wall(t + per)))
            .flatten();
        LimitsUsed {
            used: counted.len() as u32,
            max,
            per_ms: per,
            frees_at_unix_ms: frees_at,
            rehearsed: match dry_run {
                true => 0,
                false => within(&self.rehearsed).len() as u32,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rehearsal_spends_nothing_of_enforce_and_counts_in_dry_run() {
        let mut ledger = Ledger::default();
        ledger.decided(true, 1_000);
        assert!(ledger.counted(false).is_empty());
        assert_eq!(ledger.counted(true), [1_000]);
        let used = ledger.used(false, 1, 3_600_000, 2_000, |t| t);
        assert_eq!(
            (used.used, used.rehearsed, used.frees_at_unix_ms),
            (0, 1, None)
        );
        ledger.decided(false, 1_500);
        let used = ledger.used(false, 1, 3_600_000, 2_000, |t| t + 10);
        assert_eq!(used.used, 1);
        assert_eq!(used.frees_at_unix_ms, Some(1_500 + 3_600_000 + 10));
    }
}
