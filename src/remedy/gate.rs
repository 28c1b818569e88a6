//! The one gate: every command that changes a server (a kill, a shutdown, a fence, a failover
//! request, a signal) leaves the process through [`admit`], which checks what it rests on just
//! before it goes, and lets it go or holds it back saying why. Nothing here decides: the engine
//! decided on evidence it had; the gate only makes sure that evidence still holds when the
//! command leaves (writing and flushing its record takes time, and time ages evidence).
//!
//! What each command needs ([`Needs`]):
//! - a kill: its record written if it can be (it goes even when it cannot: a kill is harmless,
//!   it ends only a script that has not written);
//! - a shutdown, a failover request: their record on disk, and the BUSY reply they rest on
//!   ([`BusySeen`]) still fresh on this connection. A reply older than its fresh bound (the
//!   flush was slow) is asked again with one PING, while no other script can have answered BUSY
//!   since (less than a threshold after it): the same BUSY makes it fresh, anything else holds
//!   the command back. A shutdown decided without one does not leave at all;
//! - a fence: its record on disk, and its successor asked again (`redis::takeover`): still a
//!   primary that took over from this server, at an address that is not this server's own;
//! - a signal: its record on disk (the process's identity is checked as it is sent).
//!
//! A command held back by its evidence is told to the engine ([`crate::engine::Observation::
//! NotSent`]), which records it with the missing input and decides again at the next fresh
//! BUSY reply; one held back by its record is told as the failure it is.

use std::time::Duration;

use super::{Context, Gate, Runtime, recorded_first};
use crate::engine::{BusySeen, FencePlan};
use crate::model::kinds::BusyKind;
use crate::redis::probe::{Kept, Outcome};
use crate::redis::takeover::{self, Verdict};

/// What a command rests on, besides its record.
pub enum Needs<'a> {
    /// Nothing: a kill.
    Nothing,
    /// A BUSY reply still fresh on this connection (`None`: the engine had none).
    Busy(Option<&'a BusySeen>),
    /// A successor verified again now.
    Successor(&'a FencePlan),
}

/// Why a command does not leave.
pub enum Held {
    /// Its record could not be written or flushed to disk.
    Record(String),
    /// What it rests on no longer holds: why, and the input that is missing.
    Evidence { reason: String, missing: String },
}

/// Let a command under `gate`, resting on `needs`, leave now, or say why not.
pub async fn admit(
    gate: Gate,
    needs: Needs<'_>,
    ctx: &Context<'_>,
    runtime: &impl Runtime,
) -> Result<(), Held> {
    recorded_first(gate, &ctx.recorded, runtime)
        .await
        .map_err(Held::Record)?;
    match needs {
        Needs::Nothing => Ok(()),
        Needs::Busy(seen) => still_busy(seen, ctx).await,
        Needs::Successor(plan) => still_taken_over(plan, ctx).await,
    }
}

/// The BUSY reply still holds: fresh, or confirmed by one PING while no other script can have
/// answered BUSY since.
async fn still_busy(seen: Option<&BusySeen>, ctx: &Context<'_>) -> Result<(), Held> {
    let held = |reason: String| Held::Evidence {
        reason,
        missing: "a fresh BUSY reply".into(),
    };
    let Some(seen) = seen else {
        return Err(held(
            "it was decided on no BUSY reply with a known threshold".into(),
        ));
    };
    if seen.conn != ctx.generation {
        return Err(held(
            "the connection changed since the BUSY reply it rested on".into(),
        ));
    }
    let age = (ctx.now_ms)().saturating_sub(seen.at);
    if age <= seen.fresh_ms {
        return Ok(());
    }
    if age >= seen.continuity_ms {
        return Err(held(format!(
            "the BUSY reply it rested on is {age} ms old by now (its record took that long to \
             reach the disk), as long as another script takes to answer BUSY"
        )));
    }
    // Asked again, within what is left of continuity.
    let left = Duration::from_millis(seen.continuity_ms - age);
    match tokio::time::timeout(left, ctx.conn.ping()).await {
        Ok(Outcome::ErrorReply(e)) if BusyKind::from_error(&e) == Some(seen.kind) => {
            tracing::info!(
                age_ms = age,
                "the BUSY reply a command rests on aged past its fresh bound before the command could leave (its record's flush); asked again: still BUSY"
            );
            Ok(())
        }
        Ok(Outcome::Reply(_)) => Err(held(format!(
            "the BUSY reply it rested on was {age} ms old, and a PING asked again was answered: \
             the script is over"
        ))),
        Ok(Outcome::ErrorReply(e) | Outcome::Lost(e)) => Err(held(format!(
            "the BUSY reply it rested on was {age} ms old, and a PING asked again got `{}`",
            crate::model::text::printable(&e)
        ))),
        Err(_) => Err(held(format!(
            "the BUSY reply it rested on was {age} ms old, and a PING asked again got no answer \
             before another script could have answered BUSY"
        ))),
    }
}

/// The fence's successor, asked again now: a listed address, not this server's own, a primary
/// that continues this server's history, and the same run the engine verified.
async fn still_taken_over(plan: &FencePlan, ctx: &Context<'_>) -> Result<(), Held> {
    let held = |reason: String| Held::Evidence {
        reason,
        missing: "a successor verified just before the fence".into(),
    };
    let policy = ctx.policy;
    let address = &plan.successor.address;
    let target = takeover::listed(
        &policy.redis,
        &policy.topology.replicas,
        address,
        &plan.lineage,
    )
    .await
    .map_err(|verdict| match verdict {
        Verdict::Not(why) | Verdict::Unknown(why) => held(why),
        Verdict::TookOver(_) => held(String::new()),
    })?;
    match takeover::verify(&mut Kept::new(target), address, &plan.lineage).await {
        Verdict::TookOver(now) if now.run_id == plan.successor.run_id => Ok(()),
        Verdict::TookOver(now) => Err(held(format!(
            "{address} answers under another run id ({}) than the successor busyguard saw take \
             over ({}): it restarted, and nothing proves it still holds this server's data",
            now.run_id, plan.successor.run_id
        ))),
        Verdict::Not(why) | Verdict::Unknown(why) => Err(held(format!(
            "the new primary could not be verified again just before the fence: {why}"
        ))),
    }
}
