//! SHUTDOWN NOSAVE in the form the server's version takes while busy, and its confirmation:
//! success is the connection closing with no reply and the server then refusing connections.

use std::time::{Duration, Instant};

use super::gate::Needs;
use super::{Context, Gate, Remedy, Runtime};
use crate::engine::{LEGACY_SHUTDOWN, Observation, ShutdownCommand, ShutdownOutcome};
use crate::event::detail::WithheldAction;
use crate::model::kinds::BusyKind;
use crate::policy::{Endpoint, RedisTarget};
use crate::redis::probe::{self, ConnectError, Connection, Outcome};

impl Remedy for ShutdownCommand {
    const GATE: Gate = Gate::OnDisk;

    fn needs(&self) -> Needs<'_> {
        Needs::Busy(self.evidence.as_ref())
    }

    fn not_sent(&self, reason: String, missing: String) -> Observation {
        Observation::NotSent {
            action: WithheldAction::Shutdown,
            reason,
            missing,
        }
    }

    async fn perform(&self, ctx: &Context<'_>, _: &impl Runtime) -> (Observation, bool) {
        let outcome = shutdown(ctx.conn, self, &ctx.policy.redis).await;
        let gone = matches!(
            outcome,
            ShutdownOutcome::Confirmed { .. }
                | ShutdownOutcome::Failed(_)
                | ShutdownOutcome::Unlanded(_)
        );
        (Observation::Shutdown(outcome), gone)
    }

    fn unanswered(&self, why: String, _lost: bool) -> Observation {
        Observation::Shutdown(ShutdownOutcome::Failed(why))
    }
}

/// How long a server may take to be seen gone after closing ours on SHUTDOWN.
const SHUTDOWN_CONFIRM_LIMIT: Duration = Duration::from_secs(10);
/// What one look at the endpoint (a connection and its HELLO, then INFO) may take.
const LOOK_LIMIT: Duration = Duration::from_millis(500);

/// Send the shutdown (after `SHUTDOWN ABORT` where a plain shutdown may be pending; its BUSY
/// answer turns an unknown version's shutdown into the 6.x form). Success is the connection
/// closing with no reply and the server then seen gone through its endpoint ([`gone`]); any
/// reply is a failure.
pub async fn shutdown(
    conn: &Connection,
    command: &ShutdownCommand,
    target: &RedisTarget,
) -> ShutdownOutcome {
    let mut words: &[&'static str] = &command.words;
    if command.abort_first {
        // `-ERR No shutdown in progress.` is the usual answer, and harmless.
        match conn.call(&["SHUTDOWN", "ABORT"]).await {
            Outcome::Lost(e) => {
                return ShutdownOutcome::Failed(format!(
                    "connection lost before the shutdown: {e}"
                ));
            }
            // A 7.0+ server takes SHUTDOWN while busy; BUSY here means 6.x.
            Outcome::ErrorReply(e)
                if command.legacy_fallback && BusyKind::from_error(&e).is_some() =>
            {
                words = &LEGACY_SHUTDOWN;
            }
            _ => {}
        }
    }
    let sent = Instant::now();
    match conn.call(words).await {
        Outcome::ErrorReply(e) => ShutdownOutcome::Refused(e),
        Outcome::Reply(v) => ShutdownOutcome::Failed(format!("unexpected reply {v:?}")),
        Outcome::Lost(_) => {
            match gone(target, command.run_id.as_deref(), SHUTDOWN_CONFIRM_LIMIT).await {
                Ok(how) => ShutdownOutcome::Confirmed {
                    elapsed_ms: sent.elapsed().as_millis() as u64,
                    command: Some(words.join(" ")),
                    how,
                },
                Err(NotGone::StillBusy) => ShutdownOutcome::Unlanded(
                    "the connection was lost and the server still answers BUSY on new connections"
                        .into(),
                ),
                Err(NotGone::Unconfirmed(why)) => ShutdownOutcome::Failed(why),
            }
        }
    }
}

/// Why a server is not seen gone.
pub enum NotGone {
    /// BUSY on two new connections, one after the other: the shutdown never reached it.
    StillBusy,
    /// Not seen gone within the limit: the last look's words.
    Unconfirmed(String),
}

/// Whether the server is gone, as seen through its endpoint within `limit`: connections
/// refused (or its socket file gone), accepted but closed before any answer (a proxy or a load
/// balancer in front of a stopped server), or answered by another run of the server (its
/// supervisor restarted it). The same run answering means it did not stop; BUSY twice, that the
/// shutdown never reached it (found in milliseconds, not at the end of `limit`). `Ok(None)` is
/// the usual way (refused); `Ok(Some(how))` another.
pub async fn gone(
    target: &RedisTarget,
    run_id: Option<&str>,
    limit: Duration,
) -> Result<Option<String>, NotGone> {
    let deadline = Instant::now() + limit;
    let mut last = "the connection closed but the server still accepts connections".to_string();
    let mut busy_looks = 0;
    loop {
        let refused = match &target.endpoint {
            Endpoint::Tcp { host, port, .. } => {
                tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .is_err()
            }
            Endpoint::Unix { path } => tokio::net::UnixStream::connect(path).await.is_err(),
        };
        if refused {
            return Ok(None);
        }
        // Something accepts: is a server behind it, and which run?
        match tokio::time::timeout(LOOK_LIMIT, look(target)).await {
            Ok(Look::NoServer(why)) => {
                return Ok(Some(format!(
                    "the endpoint accepts connections but no server answers behind it ({why})"
                )));
            }
            Ok(Look::Run(now)) if run_id.is_some_and(|before| before != now) => {
                return Ok(Some(format!(
                    "another run of the server answers (run id {now}): it stopped and was \
                     restarted"
                )));
            }
            Ok(Look::Run(_)) => last = "the same server still answers".into(),
            // The first BUSY may have been read in the same turn of the server's loop as a
            // shutdown that is carried out next; a second, asked after it, may not.
            Ok(Look::Busy) if busy_looks >= 1 => return Err(NotGone::StillBusy),
            Ok(Look::Busy) => {
                busy_looks += 1;
                last = "the server still answers BUSY".into();
            }
            Ok(Look::Unknown(why)) => last = why,
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Err(NotGone::Unconfirmed(last));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What answers at the endpoint.
enum Look {
    /// The connection was accepted and closed, or reset, before any answer.
    NoServer(String),
    /// A server, and its run id.
    Run(String),
    Busy,
    Unknown(String),
}

async fn look(target: &RedisTarget) -> Look {
    let conn = match probe::connect(target, LOOK_LIMIT).await {
        Ok(conn) => conn,
        Err(ConnectError::Unreachable(why)) => return Look::NoServer(why),
        Err(ConnectError::Rejected(why)) => return Look::Unknown(why),
    };
    match conn.call(&["INFO", "server"]).await {
        Outcome::Reply(v) => {
            let info = v.as_string().unwrap_or_default();
            match crate::model::snapshot::info_field(&info, "run_id") {
                Some(id) => Look::Run(id.to_string()),
                None => Look::Unknown("INFO names no run id".into()),
            }
        }
        Outcome::ErrorReply(e) if BusyKind::from_error(&e).is_some() => Look::Busy,
        Outcome::ErrorReply(e) => Look::Unknown(e),
        Outcome::Lost(why) => Look::NoServer(why),
    }
}
