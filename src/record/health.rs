//! The health endpoints served beside `/metrics`, for Kubernetes' probes:
//!
//! - `/livez[/INSTANCE]`: the Redis server's liveness as busyguard sees it, to replace
//!   `redis-cli ping` as the Redis container's livenessProbe. A BUSY server is alive: busyguard
//!   handles it under its policy (kill, budget, shutdown, hold, ask, notify), and kubelet's
//!   SIGKILL would lose everything since the last save with no policy and no record. Dead is a
//!   server that answers nothing: a hang (silent past `on_hang.after`), unreachable for as long,
//!   shut down by busyguard, or a watchdog that stopped probing it.
//! - `/readyz[/INSTANCE]`: ready only while the server answers PONG, so a Service drains a busy
//!   pod.
//! - `/healthz`: busyguard's own liveness: every watchdog loop ran within [`HEARTBEAT_LIMIT`].
//!
//! The bare `/livez` and `/readyz` name the one instance busyguard watches (a sidecar watches
//! one); with several, the instance must be named. Pure: given what the metrics hold and the
//! time, each answer is a status and one line that says why.

use std::collections::BTreeMap;

use crate::model::kinds::State;

/// A watchdog loop runs at least every second; one silent this long is stuck or gone.
pub const HEARTBEAT_LIMIT_S: f64 = 10.0;

/// What busyguard holds of one instance, as the metrics keep it.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    /// `None` until the first probe ended.
    pub state: Option<State>,
    /// How long it has been in that state.
    pub state_for_s: f64,
    /// How long since its watchdog loop last ran.
    pub heartbeat_age_s: f64,
    /// `on_hang.after`: how long a server may answer nothing before it is dead.
    pub grace_s: f64,
}

/// An answer: the HTTP status and one line for the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    fn ok(body: String) -> Answer {
        Answer { status: 200, body }
    }

    fn unavailable(body: String) -> Answer {
        Answer { status: 503, body }
    }
}

/// The answer to `path` (`/livez`, `/readyz/cache-01`, `/healthz`, ...); `None` for any other.
pub fn answer(path: &str, seen: &BTreeMap<String, Seen>) -> Option<Answer> {
    let (endpoint, named) = match path.split_once('/').map(|(_, p)| p.split_once('/')) {
        Some(Some((e, name))) => (e, Some(name)),
        _ => (path.trim_start_matches('/'), None),
    };
    Some(match endpoint {
        "healthz" if named.is_none() => healthz(seen),
        "livez" => one(seen, named, "livez").unwrap_or_else(|(name, s)| live(name, s)),
        "readyz" => one(seen, named, "readyz").unwrap_or_else(|(name, s)| ready(name, s)),
        _ => return None,
    })
}

/// The instance a probe asks about: the named one, or the only one. `Ok` is an answer already
/// (none, or several and none named); `Err` the instance to judge.
fn one<'a>(
    seen: &'a BTreeMap<String, Seen>,
    named: Option<&'a str>,
    endpoint: &str,
) -> Result<Answer, (&'a str, &'a Seen)> {
    match named {
        Some(name) => match seen.get_key_value(name) {
            Some((name, s)) => Err((name, s)),
            None => Ok(Answer {
                status: 404,
                body: format!("no policy watches `{name}` here"),
            }),
        },
        None => match seen.iter().next() {
            Some((name, s)) if seen.len() == 1 => Err((name, s)),
            _ => Ok(Answer {
                status: 404,
                body: format!(
                    "busyguard watches {} instances here: name one, /{endpoint}/INSTANCE ({})",
                    seen.len(),
                    seen.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            }),
        },
    }
}

/// Whether the server is alive: it answers at all, or busyguard handles what it answers.
pub fn live(instance: &str, s: &Seen) -> Answer {
    if s.heartbeat_age_s > HEARTBEAT_LIMIT_S {
        return Answer::unavailable(format!(
            "{instance}: busyguard's watchdog has not run for {:.0}s: the server is not watched",
            s.heartbeat_age_s
        ));
    }
    let Some(state) = s.state else {
        return Answer::ok(format!("{instance}: not probed yet"));
    };
    match state {
        State::Healthy => Answer::ok(format!("{instance}: healthy")),
        State::Busy | State::Asking | State::FailingOver => Answer::ok(format!(
            "{instance}: {} for {:.1}s, handled by busyguard's policy",
            state.name(),
            s.state_for_s
        )),
        State::Loading => Answer::ok(format!("{instance}: loading its dataset")),
        // It answers, refusing busyguard (WRONGPASS, NOPERM): alive, and busyguard is blind.
        State::Fault => Answer::ok(format!(
            "{instance}: answers, but refuses busyguard (a configuration fault)"
        )),
        State::Unreachable if s.state_for_s < s.grace_s => Answer::ok(format!(
            "{instance}: unreachable for {:.1}s (dead past {:.1}s)",
            s.state_for_s, s.grace_s
        )),
        State::Unreachable => {
            Answer::unavailable(format!("{instance}: unreachable for {:.1}s", s.state_for_s))
        }
        State::Hang => Answer::unavailable(format!(
            "{instance}: no reply and no BUSY for {:.1}s past on_hang.after",
            s.state_for_s
        )),
        State::Down => Answer::unavailable(format!("{instance}: shut down by busyguard")),
    }
}

/// Whether the server takes traffic: only while it answers PONG.
pub fn ready(instance: &str, s: &Seen) -> Answer {
    match (s.state, s.heartbeat_age_s > HEARTBEAT_LIMIT_S) {
        (Some(State::Healthy), false) => Answer::ok(format!("{instance}: healthy")),
        (_, true) => Answer::unavailable(format!("{instance}: not watched")),
        (None, false) => Answer::unavailable(format!("{instance}: not probed yet")),
        (Some(state), false) => Answer::unavailable(format!("{instance}: {}", state.name())),
    }
}

/// busyguard's own liveness: every watchdog loop ran within the limit.
pub fn healthz(seen: &BTreeMap<String, Seen>) -> Answer {
    let stuck: Vec<String> = seen
        .iter()
        .filter(|(_, s)| s.heartbeat_age_s > HEARTBEAT_LIMIT_S)
        .map(|(name, s)| format!("{name} ({:.0}s)", s.heartbeat_age_s))
        .collect();
    match stuck.is_empty() {
        true => Answer::ok(format!("busyguard: {} watchdog(s) running", seen.len())),
        false => Answer::unavailable(format!(
            "busyguard: watchdog(s) not running: {}",
            stuck.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(state: Option<State>, state_for_s: f64) -> Seen {
        Seen {
            state,
            state_for_s,
            heartbeat_age_s: 0.5,
            grace_s: 5.0,
        }
    }

    fn status(path: &str, seen: &BTreeMap<String, Seen>) -> u16 {
        answer(path, seen).expect("served").status
    }

    #[test]
    fn a_busy_server_is_alive_and_not_ready() {
        let one: BTreeMap<String, Seen> = [("r".to_string(), seen(Some(State::Busy), 30.0))].into();
        assert_eq!(status("/livez", &one), 200);
        assert_eq!(status("/livez/r", &one), 200);
        assert_eq!(status("/readyz", &one), 503);
        assert_eq!(status("/healthz", &one), 200);
        assert_eq!(status("/livez/other", &one), 404);
        assert!(answer("/metricz", &one).is_none());
    }

    #[test]
    fn dead_is_a_server_that_answers_nothing_or_is_not_watched() {
        for (state, for_s, want) in [
            (Some(State::Healthy), 0.0, 200),
            (None, 0.0, 200),
            (Some(State::Loading), 9.0, 200),
            (Some(State::Fault), 99.0, 200),
            (Some(State::Asking), 9.0, 200),
            (Some(State::FailingOver), 9.0, 200),
            (Some(State::Unreachable), 1.0, 200),
            (Some(State::Unreachable), 5.0, 503),
            (Some(State::Hang), 0.1, 503),
            (Some(State::Down), 0.1, 503),
        ] {
            assert_eq!(
                live("r", &seen(state, for_s)).status,
                want,
                "{state:?} {for_s}"
            );
        }
        let mut stuck = seen(Some(State::Busy), 1.0);
        stuck.heartbeat_age_s = 11.0;
        assert_eq!(live("r", &stuck).status, 503);
        assert_eq!(healthz(&[("r".to_string(), stuck)].into()).status, 503);
    }

    #[test]
    fn with_several_instances_a_bare_probe_must_name_one() {
        let two: BTreeMap<String, Seen> = [
            ("a".to_string(), seen(Some(State::Healthy), 1.0)),
            ("b".to_string(), seen(Some(State::Hang), 1.0)),
        ]
        .into();
        let bare = answer("/livez", &two).unwrap();
        assert_eq!(bare.status, 404);
        assert!(bare.body.contains("a, b"), "{}", bare.body);
        assert_eq!(status("/livez/a", &two), 200);
        assert_eq!(status("/livez/b", &two), 503);
        assert_eq!(status("/readyz/a", &two), 200);
    }
}
