//! SHUTDOWN NOSAVE in the form the server's version takes while busy, and its confirmation:
//! success is the connection closing with no reply and the server then refusing connections.

use std::time::{Duration, Instant};

use super::{Context, Gate, Remedy, Runtime};
use crate::engine::{LEGACY_SHUTDOWN, Observation, ShutdownCommand, ShutdownOutcome};
use crate::model::kinds::BusyKind;
use crate::policy::Endpoint;
use crate::redis::probe::{Connection, Outcome};

impl Remedy for ShutdownCommand {
    const GATE: Gate = Gate::OnDisk;

    async fn perform(&self, ctx: &Context<'_>, _: &impl Runtime) -> (Observation, bool) {
        let outcome = shutdown(ctx.conn, self, &ctx.policy.redis.endpoint).await;
        let gone = matches!(
            outcome,
            ShutdownOutcome::Confirmed { .. } | ShutdownOutcome::Failed(_)
        );
        (Observation::Shutdown(outcome), gone)
    }

    fn unanswered(&self, why: String, _lost: bool) -> Observation {
        Observation::Shutdown(ShutdownOutcome::Failed(why))
    }
}

/// How long a server may take to stop accepting connections after closing ours on SHUTDOWN.
const SHUTDOWN_CONFIRM_LIMIT: Duration = Duration::from_secs(10);

/// Send the shutdown (after `SHUTDOWN ABORT` where a plain shutdown may be pending; its BUSY
/// answer turns an unknown version's shutdown into the 6.x form). Success is
/// the connection closing with no reply and the server then refusing connections; any reply is
/// a failure.
pub async fn shutdown(
    conn: &Connection,
    command: &ShutdownCommand,
    endpoint: &Endpoint,
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
        Outcome::Lost(_) => match wait_refused(endpoint, SHUTDOWN_CONFIRM_LIMIT).await {
            true => ShutdownOutcome::Confirmed {
                elapsed_ms: sent.elapsed().as_millis() as u64,
                command: Some(words.join(" ")),
            },
            false => ShutdownOutcome::Failed(
                "the connection closed but the server still accepts connections".into(),
            ),
        },
    }
}

/// True once a connection to `endpoint` is refused (or its socket file is gone).
pub async fn wait_refused(endpoint: &Endpoint, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let refused = match endpoint {
            Endpoint::Tcp { host, port, .. } => {
                tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .is_err()
            }
            Endpoint::Unix { path } => tokio::net::UnixStream::connect(path).await.is_err(),
        };
        if refused {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
