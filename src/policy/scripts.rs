//! `on_busy.scripts`: a ladder of its own for a known function. Operators live with two kinds
//! of long scripts on one server: the runaway (killed at once) and the known long job (a nightly
//! FCALL they accept holding the server for a while, or that must never be killed half-way).
//! A rule names a function by its name, exactly or as a glob (`nightly_*`), or an EVAL by its
//! SHA1, and says what differs from the instance's ladder; what it leaves out is the instance's.
//!
//! A rule applies only when the server named the running script during this incident: a
//! function by FUNCTION STATS (allowed while busy), an EVAL by the line its log gets as the
//! threshold passes (`redis.log_file`). A script whose name is unknown, or that no rule names,
//! gets the instance's ladder. A rule never applies on a guess.

use std::time::Duration;

use crate::model::kinds::Then;

/// How many rules a policy may list.
pub const MAX_RULES: usize = 32;

/// What a rule names.
#[derive(Clone, Debug, PartialEq)]
pub enum Names {
    /// A function's name, or a glob of it (`*` any run of characters, `?` one).
    Function(String),
    /// An EVAL's SHA1 (40 hex digits, lower case).
    Eval(String),
}

/// The script the server named as running.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Running<'a> {
    Function(&'a str),
    Eval(&'a str),
}

impl Names {
    /// As records and `status` name the rule: `nightly_*`, `eval 94b1e6a8...`.
    pub fn label(&self) -> String {
        match self {
            Names::Function(f) => f.clone(),
            Names::Eval(sha) => format!("eval {sha}"),
        }
    }
}

/// One `on_busy.scripts` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptRule {
    pub names: Names,
    pub kill_after: Option<Duration>,
    /// A job that must not be interrupted: no kill, only the wait and its escalation.
    pub never_kill: bool,
    pub wait: Option<Duration>,
    pub then: Option<Then>,
}

impl ScriptRule {
    /// Whether this rule names the running script.
    pub fn matches(&self, running: Running) -> bool {
        match (&self.names, running) {
            (Names::Function(pattern), Running::Function(name)) => {
                glob(pattern.as_bytes(), name.as_bytes())
            }
            (Names::Eval(sha), Running::Eval(seen)) => sha.eq_ignore_ascii_case(seen),
            _ => false,
        }
    }
}

/// The first rule naming `running`, with its place in the list (the first listed wins).
pub fn rule_for<'r>(rules: &'r [ScriptRule], running: Running) -> Option<(usize, &'r ScriptRule)> {
    rules.iter().enumerate().find(|(_, r)| r.matches(running))
}

/// Whether `sha` is an EVAL's SHA1: 40 hex digits.
pub fn valid_sha(sha: &str) -> bool {
    sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit())
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
            names: Names::Function(function.into()),
            kill_after: None,
            never_kill: false,
            wait: None,
            then: None,
        }
    }

    #[test]
    fn globs_match_names_and_the_first_rule_wins() {
        assert!(rule("nightly_*").matches(Running::Function("nightly_compact")));
        assert!(rule("nightly_*").matches(Running::Function("nightly_")));
        assert!(!rule("nightly_*").matches(Running::Function("hourly_compact")));
        assert!(rule("*compact").matches(Running::Function("nightly_compact")));
        assert!(rule("job_?").matches(Running::Function("job_1")));
        assert!(!rule("job_?").matches(Running::Function("job_12")));
        assert!(
            rule("exact").matches(Running::Function("exact"))
                && !rule("exact").matches(Running::Function("exactly"))
        );
        let rules = [rule("nightly_compact"), rule("nightly_*")];
        assert_eq!(
            rule_for(&rules, Running::Function("nightly_compact")).map(|(i, _)| i),
            Some(0)
        );
        assert_eq!(
            rule_for(&rules, Running::Function("nightly_vacuum")).map(|(i, _)| i),
            Some(1)
        );
        assert!(rule_for(&rules, Running::Function("other")).is_none());
        assert!(valid_pattern("nightly_*") && !valid_pattern("a b") && !valid_pattern(""));
        let sha = "94b1e6a8b4b4f7d6b8f4c3b2a19e8d7c6b5a4f3e";
        let eval = ScriptRule {
            names: Names::Eval(sha.into()),
            ..rule("x")
        };
        assert!(eval.matches(Running::Eval(&sha.to_uppercase())));
        assert!(!eval.matches(Running::Function(sha)) && !rule("*").matches(Running::Eval(sha)));
        assert!(valid_sha(sha) && !valid_sha("94b1"));
    }
}
