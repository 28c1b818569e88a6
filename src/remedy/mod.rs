//! The commands and signals that change a server, one file each: [`kill`], [`shutdown`],
//! [`signal`], [`failover`], [`fence`]. Each is sent exactly once, on the probe's own connection (where
//! BUSY was just seen) or to the peers the plan names, and never retried: its outcome goes back
//! to the engine.
//!
//! [`carry_out`] is the one dispatch over the engine's [`Action`]: each action says, through
//! [`Remedy`], what its record must be before it leaves ([`Gate`]), whether it bounds its own
//! wait, how it is performed, and what the engine is told when it could not go or got no answer
//! in time. The watchdog's part (flushing the trail, a stop, signs of life) comes in through
//! [`Runtime`]; nothing here decides.

pub mod failover;
pub mod fence;
pub mod gate;
pub mod kill;
pub mod shutdown;
pub mod signal;

use std::time::Duration;

use crate::engine::{Action, FailoverPlan, Inquiry, Observation};
use crate::policy::Policy;
use crate::redis::forensics;
use crate::redis::probe::Connection;

/// How an action's record must stand before the action leaves the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// It goes even when its record could not be written: a kill is harmless and idempotent,
    /// and an operator prefers a killed script to a stalled server.
    Anyway,
    /// Written and flushed to disk first: a restarted daemon must never send it twice.
    OnDisk,
}

/// One kind of action, carried out.
pub trait Remedy {
    const GATE: Gate;

    /// What it rests on besides its record, checked by the gate just before it leaves.
    fn needs(&self) -> gate::Needs<'_>;

    /// What the engine is told when the gate held it back because its evidence no longer held.
    fn not_sent(&self, reason: String, missing: String) -> Observation;

    /// Its own bound on the wait, when it has one (a failover); else the watchdog's reply limit.
    fn bound(&self) -> Option<Duration> {
        None
    }

    /// Send it, once; its outcome for the engine, and whether the connection is gone.
    async fn perform(&self, ctx: &Context<'_>, runtime: &impl Runtime) -> (Observation, bool);

    /// What the engine is told when it was held back (`lost`: false) or got no answer in time
    /// (`lost`: true).
    fn unanswered(&self, why: String, lost: bool) -> Observation;
}

/// What the watchdog lends an action.
pub trait Runtime {
    /// Flush the trail and wait for it (off the runtime thread).
    async fn flushed(&self) -> Result<(), String>;
    /// Flush the trail without waiting (once a kill has left).
    fn flush_later(&self);
    /// Resolves when the watchdog is told to stop; shows signs of life meanwhile (a bounded wait
    /// on an action is the loop at work, not a stalled one).
    async fn stopped(&self);
}

/// What an action needs beyond its own words.
pub struct Context<'a> {
    /// The connection BUSY was just seen on, and its generation (the engine's `conn`).
    pub conn: &'a Connection,
    pub generation: u64,
    /// The engine's clock (monotonic ms), for the age of the evidence.
    pub now_ms: &'a (dyn Fn() -> u64 + Sync),
    pub policy: &'a Policy,
    /// Whether the action's records were written, or why not.
    pub recorded: Result<(), String>,
    /// Asked just ahead of the action, so it reaches the server first (FUNCTION STATS before
    /// the kill, while the function still runs).
    pub ahead: Option<Inquiry>,
    /// How long an answer is awaited unless the action bounds itself: the next deadline that
    /// matters.
    pub reply_limit: Duration,
}

/// What came of an action: the observations for the engine, in order (an inquiry's answer
/// first), whether the connection is gone and must be opened anew, and the work that goes on
/// beside the probe (a failover: its outcome comes later, as an observation).
pub struct Performed {
    pub observations: Vec<Observation>,
    pub gone: bool,
    pub beside: Option<std::pin::Pin<Box<dyn std::future::Future<Output = Observation> + Send>>>,
}

/// Carry out `action`: the one place an action is dispatched.
pub async fn carry_out(action: &Action, ctx: &Context<'_>, runtime: &impl Runtime) -> Performed {
    match action {
        Action::Kill(command) => run(command, ctx, runtime).await,
        Action::Shutdown(command) => run(command, ctx, runtime).await,
        Action::Signal(target) => run(target, ctx, runtime).await,
        Action::Failover(plan) => beside(plan, ctx, runtime).await,
        Action::Fence(plan) => run(plan, ctx, runtime).await,
    }
}

/// Whether an action whose records stand as `recorded` may leave under `gate`: `Err` says why
/// not (a record that could not be written or flushed to disk).
pub async fn recorded_first(
    gate: Gate,
    recorded: &Result<(), String>,
    runtime: &impl Runtime,
) -> Result<(), String> {
    match (gate, recorded) {
        (Gate::Anyway, Err(e)) => {
            tracing::error!(error = %e, "the audit record could not be written: the kill goes all the same");
            Ok(())
        }
        (Gate::Anyway, Ok(())) => Ok(()),
        (Gate::OnDisk, Err(e)) => Err(format!(
            "not sent: the audit record could not be written ({e})"
        )),
        (Gate::OnDisk, Ok(())) => runtime
            .flushed()
            .await
            .map_err(|e| format!("not sent: the audit record could not be flushed ({e})")),
    }
}

/// Through the gate, or what the engine is told when it held the command back.
async fn admitted<R: Remedy>(
    remedy: &R,
    ctx: &Context<'_>,
    runtime: &impl Runtime,
) -> Result<(), Performed> {
    let (why, observation) = match gate::admit(R::GATE, remedy.needs(), ctx, runtime).await {
        Ok(()) => return Ok(()),
        Err(gate::Held::Record(why)) => (why.clone(), remedy.unanswered(why, false)),
        Err(gate::Held::Evidence { reason, missing }) => {
            (reason.clone(), remedy.not_sent(reason, missing))
        }
    };
    tracing::error!(reason = %why, "action withheld");
    Err(Performed {
        observations: vec![observation],
        gone: false,
        beside: None,
    })
}

/// A failover: through the gate here, then carried out beside the probe (it talks to the
/// sentinels and the replicas, not on the probe's connection, for up to `failover.timeout`).
async fn beside(plan: &FailoverPlan, ctx: &Context<'_>, runtime: &impl Runtime) -> Performed {
    if let Err(held) = admitted(plan, ctx, runtime).await {
        return held;
    }
    Performed {
        observations: Vec::new(),
        gone: false,
        beside: Some(Box::pin(failover::detached(
            plan.clone(),
            ctx.policy.clone(),
        ))),
    }
}

async fn run<R: Remedy>(remedy: &R, ctx: &Context<'_>, runtime: &impl Runtime) -> Performed {
    if let Err(held) = admitted(remedy, ctx, runtime).await {
        return held;
    }
    let limit = remedy.bound().unwrap_or(ctx.reply_limit);
    // The inquiry is polled first (join polls in order): it is written ahead of the action.
    let ahead = async {
        match &ctx.ahead {
            Some(Inquiry::RunningFunction | Inquiry::Identify { .. }) => Some(
                Observation::RunningFunction(forensics::ask_running_function(ctx.conn).await),
            ),
            // The server's log is read alone, never with an action (a kill waits for it).
            Some(
                Inquiry::AfterRecovery | Inquiry::ReplicaOffsets { .. } | Inquiry::IdentifyEval,
            )
            | None => None,
        }
    };
    let both = async { tokio::join!(ahead, remedy.perform(ctx, runtime)) };
    let answered = tokio::select! {
        // The action first: even at a stop, it is sent (once) before the wait ends.
        biased;
        r = tokio::time::timeout(limit, both) => r.map_err(|_| format!(
            "no reply within {} ms (the next deadline that matters): the connection is dropped \
             and opened anew",
            limit.as_millis()
        )),
        _ = runtime.stopped() => Err("busyguard stopped before a reply came".to_string()),
    };
    match answered {
        Ok((answer, (outcome, gone))) => Performed {
            observations: answer.into_iter().chain([outcome]).collect(),
            gone,
            beside: None,
        },
        Err(why) => {
            tracing::warn!(reason = %why, "action unanswered");
            Performed {
                observations: vec![remedy.unanswered(why, true)],
                gone: true,
                beside: None,
            }
        }
    }
}
