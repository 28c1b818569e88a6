//! The pod is stopping (`busyguard run --kill-on-stop`): kubelet's preStop call on the metrics
//! listener (`GET /prestop[/INSTANCE]`), or busyguard's own SIGTERM, asks every watchdog
//! concerned to kill the running script at its next BUSY reply, whatever the ladder's grace or a
//! rule's `never_kill`. Redis defers its SIGTERM while a script runs, so without the kill kubelet
//! SIGKILLs it at the end of the grace period and everything since the last save is lost; with
//! it, Redis acts on its SIGTERM (and saves, if configured to). An unkillable script is left to
//! the policy and the grace period. The request goes the way an operator's command goes (one
//! steering path, recorded as `operator_command` `stopping`), and the answer waits, within
//! [`SETTLE_WITHIN`], for the scripts to be over, so it can say what became of them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::daemon::control::{Caller, Command, Request};
use crate::model::kinds::State;
use crate::record::health::Seen;
use crate::record::metrics::Metrics;

/// How long the answer waits for the scripts to end: a kill is answered within a probe
/// interval or two; an unkillable script is not waited for (the grace period is kubelet's).
pub const SETTLE_WITHIN: Duration = Duration::from_secs(3);

/// How often the instances' states are looked at while settling.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// The steering request: the pod is stopping, for `instance` (`None`: all).
pub fn request(instance: Option<String>, why: &str) -> Request {
    Request {
        command: Command::Stopping,
        instance,
        reason: format!("the pod is stopping ({why})"),
    }
}

/// Who asked, as the trail names it: kubelet's preStop call carries no credential.
pub fn caller(who: String) -> Caller {
    Caller {
        uid: None,
        user: who,
    }
}

/// A script still runs on this server: BUSY, or a ladder past it waiting for its end.
fn busy(seen: &Seen) -> bool {
    matches!(
        seen.state,
        Some(State::Busy | State::Asking | State::FailingOver)
    )
}

/// Wait, at most [`SETTLE_WITHIN`], until none of `instances` (all, when empty) runs a script;
/// say for each what became of it.
pub async fn settle(metrics: &Metrics, instances: &[String]) -> String {
    let started = tokio::time::Instant::now();
    let concerned = |view: BTreeMap<String, Seen>| -> BTreeMap<String, Seen> {
        view.into_iter()
            .filter(|(name, _)| instances.is_empty() || instances.contains(name))
            .collect()
    };
    let mut view = concerned(metrics.health_view());
    while view.values().any(busy) && started.elapsed() < SETTLE_WITHIN {
        tokio::time::sleep(LOOK_EVERY).await;
        view = concerned(metrics.health_view());
    }
    let waited =
        humantime::format_duration(Duration::from_millis(started.elapsed().as_millis() as u64));
    view.iter()
        .map(|(name, seen)| match (busy(seen), seen.state) {
            (true, _) => format!(
                "{name}: a script still runs after {waited} (unkillable, or a pause withholds the kill): Redis acts on its SIGTERM only when it ends, and kubelet SIGKILLs it at the end of the grace period"
            ),
            (false, Some(state)) => format!(
                "{name}: no script runs ({}): Redis acts on its SIGTERM at once",
                state.name()
            ),
            (false, None) => format!("{name}: not probed yet"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
