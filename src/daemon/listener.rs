//! The metrics listener (`--metrics ADDR`): `GET /metrics` and the health endpoints
//! ([`crate::record::health`]) from the metrics registry, and, with `--kill-on-stop`, kubelet's
//! preStop call `GET /prestop[/INSTANCE]` ([`super::stopping`]). A minimal HTTP/1.1 responder:
//! one bounded request per connection, read within [`REQUEST_TIME`], answered and closed.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::daemon::control::Incoming;
use crate::daemon::stopping;
use crate::record::metrics::Metrics;

/// How long a client may take to send its request.
const REQUEST_TIME: Duration = Duration::from_secs(5);
/// How long the daemon may take to apply a preStop request before it is answered as failed.
const STEER_LIMIT: Duration = Duration::from_secs(5);

/// Serve on `listener` until the task is dropped; `prestop` is the daemon's steering channel
/// when `--kill-on-stop` enables `/prestop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    prestop: Option<mpsc::Sender<Incoming>>,
) {
    loop {
        let Ok((mut stream, peer)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        let prestop = prestop.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(REQUEST_TIME, stream.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            // `GET PATH HTTP/1.x`; a query string is no part of the path.
            let path = request
                .strip_prefix("GET ")
                .and_then(|r| r.split(' ').next())
                .map(|p| p.split('?').next().unwrap_or(p));
            let (status, body) = match (path, prestop) {
                (Some("/metrics"), _) => (200, metrics.render()),
                (Some(p), Some(daemon)) if p == "/prestop" || p.starts_with("/prestop/") => {
                    let instance = p.strip_prefix("/prestop/").map(str::to_string);
                    prestop_call(&metrics, daemon, instance, peer.ip()).await
                }
                (Some(path), _) => {
                    match crate::record::health::answer(path, &metrics.health_view()) {
                        Some(a) => (a.status, a.body + "\n"),
                        None => not_served(),
                    }
                }
                (None, _) => not_served(),
            };
            let reply = format!(
                "HTTP/1.1 {}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                status_line(status),
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        });
    }
}

/// kubelet's preStop: the pod is stopping. Steer the watchdogs, then say what became of the
/// scripts; 503 when the request did not apply (kubelet reports a failed preStop hook).
async fn prestop_call(
    metrics: &Metrics,
    daemon: mpsc::Sender<Incoming>,
    instance: Option<String>,
    peer: std::net::IpAddr,
) -> (u16, String) {
    let request = stopping::request(instance.clone(), "preStop");
    let caller = stopping::caller(format!("preStop (HTTP from {peer})"));
    let (tx, rx) = oneshot::channel();
    if daemon.send((request, caller, tx)).await.is_err() {
        return (503, "busyguard is stopping: nothing was asked\n".into());
    }
    let response = match tokio::time::timeout(STEER_LIMIT, rx).await {
        Ok(Ok(response)) => response,
        _ => return (503, "busyguard did not answer in time\n".into()),
    };
    if !response.ok {
        return (503, response.message + "\n");
    }
    let settled = stopping::settle(metrics, &instance.into_iter().collect::<Vec<_>>()).await;
    (200, format!("{}\n{settled}\n", response.message))
}

fn not_served() -> (u16, String) {
    (
        404,
        "served here: GET /metrics, /livez[/INSTANCE], /readyz[/INSTANCE], /healthz (and /prestop[/INSTANCE] with --kill-on-stop)\n"
            .to_string(),
    )
}

/// The status line's code and reason.
fn status_line(status: u16) -> &'static str {
    match status {
        200 => "200 OK",
        404 => "404 Not Found",
        _ => "503 Service Unavailable",
    }
}
