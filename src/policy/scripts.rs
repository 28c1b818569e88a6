//! `on_busy.scripts`: a ladder of its own for a known function. Operators live with two kinds
//! of long scripts on one server: the runaway (killed at once) and the known long job (a nightly
//! FCALL they accept holding the server for a while, or that must never be killed half-way).
//! A rule names the function by its name, exactly or as a glob (`nightly_*`), and says what
//! differs from the instance's ladder; what it leaves out is the instance's.
//!
//! A rule applies only when the server named the running function (FUNCTION STATS, allowed
//! while busy) during this incident: a script whose name is unknown, an EVAL, or a function
//! no rule names gets the instance's ladder. A rule never applies on a guess.

use std::time::Duration;

use crate::model::kinds::Then;

/// How many rules a policy may list.
pub const MAX_RULES: usize = 32;

/// One `on_busy.scripts` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptRule {
    /// The function's name, or a glob of it (`*` any run of characters, `?` one).
    pub function: String,
    pub kill_after: Option<Duration>,
    /// A job that must not be interrupted: no kill, only the wait and its escalation.
    pub never_kill: bool,
    pub wait: Option<Duration>,
    pub then: Option<Then>,
}

impl ScriptRule {
    /// Whether this rule names the function `name`.
    pub fn matches(&self, name: &str) -> bool {
        glob(self.function.as_bytes(), name.as_bytes())
    }
}

/// The first rule naming `function`, with its place in the list (the first listed wins).
pub fn rule_for<'r>(rules: &'r [ScriptRule], function: &str) -> Option<(usize, &'r ScriptRule)> {
    rules.iter().enumerate().find(|(_, r)| r.matches(function))
}

/// Whether a function name or glob is well formed: the characters a Redis function name may
/// have (letters, digits, `_`), plus `*` and `?`.
pub fn valid_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.len() <= 128
        && pattern
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'*' || b == b'?')
}

/// `*` and `?` globbing, iteratively (no recursion, linear in practice).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(function: &str) -> ScriptRule {
        ScriptRule {
            function: function.into(),
            kill_after: None,
            never_kill: false,
            wait: None,
            then: None,
        }
    }

    #[test]
    fn globs_match_names_and_the_first_rule_wins() {
        assert!(rule("nightly_*").matches("nightly_compact"));
        assert!(rule("nightly_*").matches("nightly_"));
        assert!(!rule("nightly_*").matches("hourly_compact"));
        assert!(rule("*compact").matches("nightly_compact"));
        assert!(rule("job_?").matches("job_1"));
        assert!(!rule("job_?").matches("job_12"));
        assert!(rule("exact").matches("exact") && !rule("exact").matches("exactly"));
        let rules = [rule("nightly_compact"), rule("nightly_*")];
        assert_eq!(rule_for(&rules, "nightly_compact").map(|(i, _)| i), Some(0));
        assert_eq!(rule_for(&rules, "nightly_vacuum").map(|(i, _)| i), Some(1));
        assert!(rule_for(&rules, "other").is_none());
        assert!(valid_pattern("nightly_*") && !valid_pattern("a b") && !valid_pattern(""));
    }
}
