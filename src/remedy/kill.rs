//! SCRIPT KILL or FUNCTION KILL, on the probe's connection where BUSY was just seen: harmless
//! and idempotent, so it goes even when its record could not be written, and the trail's flush
//! starts only once the command is on its way.

use super::gate::Needs;
use super::{Context, Gate, Remedy, Runtime};
use crate::engine::{KillCommand, KillReply, Observation};
use crate::redis::probe::{Connection, Outcome};

impl Remedy for KillCommand {
    const GATE: Gate = Gate::Anyway;

    fn needs(&self) -> Needs<'_> {
        Needs::Nothing
    }

    fn not_sent(&self, reason: String, _missing: String) -> Observation {
        Observation::KillReply(KillReply::Error(reason))
    }

    async fn perform(&self, ctx: &Context<'_>, runtime: &impl Runtime) -> (Observation, bool) {
        let reply = kill_then(ctx.conn, *self, || runtime.flush_later()).await;
        let gone = matches!(reply, KillReply::Lost(_));
        (Observation::KillReply(reply), gone)
    }

    fn unanswered(&self, why: String, lost: bool) -> Observation {
        Observation::KillReply(match lost {
            true => KillReply::Lost(why),
            false => KillReply::Error(why),
        })
    }
}

/// Send SCRIPT KILL or FUNCTION KILL; `sent` runs once the command is on its way (the trail's
/// flush goes then, never ahead of the kill).
pub async fn kill_then(conn: &Connection, command: KillCommand, sent: impl FnOnce()) -> KillReply {
    let words = command.words();
    let reply = conn.call(&words);
    tokio::pin!(reply);
    // Polling once writes the command to fred's connection task; the flush is started after.
    let first = futures_poll_once(&mut reply).await;
    sent();
    let outcome = match first {
        Some(outcome) => outcome,
        None => reply.await,
    };
    match outcome {
        Outcome::Reply(_) => KillReply::Ok,
        Outcome::ErrorReply(e) => KillReply::from_error(&e),
        Outcome::Lost(e) => KillReply::Lost(e),
    }
}

/// Poll a future once: its outcome if it is ready at once, else `None` (it stays pinned for
/// the caller to await).
async fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}
