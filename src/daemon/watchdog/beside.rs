//! Work that goes on beside the probe: a failover (the request and the watch for its promotion,
//! up to `failover.timeout`) and the candidates' offsets asked just before it (up to half of
//! it). Neither talks on the probe's connection, and both are long: carried out inline they would
//! stop the PINGs, and a gap as long as a threshold breaks continuity (a new script could have
//! started in it), so the failover or its fallback would rest on a BUSY reply seconds old. Beside
//! the probe, the PINGs go on, and what the work finds comes back as an observation the engine
//! decides on, at the next BUSY reply.
//!
//! One job at a time per watchdog; dropping it (a stop, a reconnect's new session keeps it)
//! aborts the task.

use std::future::Future;

use tokio::sync::oneshot;

use crate::engine::Observation;

/// A job in flight beside the probe.
pub(super) struct Beside {
    outcome: oneshot::Receiver<Observation>,
    task: tokio::task::AbortHandle,
}

impl Drop for Beside {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Beside {
    /// Start `work` on the runtime.
    pub(super) fn start(work: impl Future<Output = Observation> + Send + 'static) -> Beside {
        let (tx, outcome) = oneshot::channel();
        let task = tokio::spawn(async move {
            let _ = tx.send(work.await);
        })
        .abort_handle();
        Beside { outcome, task }
    }

    /// Its outcome, when it has come (without waiting).
    pub(super) fn try_outcome(&mut self) -> Option<Observation> {
        self.outcome.try_recv().ok()
    }

    /// Its outcome, when it comes.
    pub(super) async fn outcome(&mut self) -> Option<Observation> {
        (&mut self.outcome).await.ok()
    }
}
