//! `busyguard pause|resume|hold|release|approve|ps`: the control socket's client half. It finds
//! the running daemon's socket from the state dir, sends one request and reads one answer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::daemon::control::{
    ANSWER_LIMIT, PATH_FILE, RUNTIME_SOCKET, Request, Response, SOCKET_ENV,
};
use crate::engine::Live;

/// Send `request` to the daemon whose state dir is `state_dir` (the client side).
pub async fn send(state_dir: &Path, request: &Request) -> anyhow::Result<Response> {
    use anyhow::Context;
    let path = match std::env::var_os(SOCKET_ENV) {
        Some(path) => PathBuf::from(path),
        None => {
            let named = state_dir.join(PATH_FILE);
            match std::fs::read_to_string(&named) {
                Ok(path) => PathBuf::from(path.trim()),
                // An operator in the steering group may not read the service's state dir.
                Err(_) if Path::new(RUNTIME_SOCKET).exists() => PathBuf::from(RUNTIME_SOCKET),
                Err(e) => anyhow::bail!(
                    "cannot read {} ({e}): is `busyguard run` running with this --state-dir, and may you read it? (or name the socket in {SOCKET_ENV})",
                    named.display()
                ),
            }
        }
    };
    let mut stream = UnixStream::connect(&path)
        .await
        .with_context(|| format!("cannot connect to {}", path.display()))?;
    let mut bytes = serde_json::to_vec(request)?;
    bytes.push(b'\n');
    stream.write_all(&bytes).await?;
    let mut line = String::new();
    tokio::time::timeout(ANSWER_LIMIT + Duration::from_secs(1), async {
        BufReader::new(stream).read_line(&mut line).await
    })
    .await
    .context("no answer from the daemon")??;
    serde_json::from_str(&line).context("an answer that is not JSON")
}

/// `ps` as a person reads it.
pub fn ps_text(response: &Response) -> String {
    let mut out = String::new();
    for i in &response.instances {
        let live = i
            .live
            .as_ref()
            .map_or_else(|| "? (its watchdog did not answer)".into(), live_text);
        out.push_str(&format!("{}  {live}\n", i.instance));
    }
    out
}

/// One watchdog's state as a person reads it: incident, next step, pause and hold.
pub fn live_text(l: &Live) -> String {
    let mut line = l.state.name().to_string();
    if let Some(id) = &l.incident {
        line.push_str(&format!("  incident {id}"));
    }
    if let Some(ms) = l.since_first_busy_ms {
        line.push_str(&format!(
            "  busy for {}",
            crate::model::duration::human_ms(ms)
        ));
    }
    if let Some(next) = &l.next {
        line.push_str(&format!("  next: {next}"));
        if let Some(at) = l.deadline_unix_ms {
            line.push_str(&format!(" at {}", crate::model::clock::rfc3339(at)));
        }
    }
    if let Some(p) = &l.pause {
        line.push_str(&format!(
            "  PAUSED by {} until {}: {}",
            p.by,
            crate::model::clock::rfc3339(p.until_unix_ms),
            p.reason
        ));
    }
    if let Some(h) = &l.hold {
        line.push_str(&format!("  HELD by {}: {}", h.by, h.reason));
    }
    if let Some(limits) = l.limits.as_ref().filter(|u| u.used > 0 || u.rehearsed > 0) {
        line.push_str(&format!("  {}", limits_text(limits)));
    }
    line
}

/// How much of `limits` is used, in words: `limits: 1 of 1 shutdown(s) per 1h used (one more
/// may go at T)`, and the dry-run decisions apart.
pub fn limits_text(u: &crate::engine::LimitsUsed) -> String {
    let per = crate::model::duration::human_ms(u.per_ms);
    let mut text = format!("limits: {} of {} shutdown(s) per {per} used", u.used, u.max);
    match u.frees_at_unix_ms {
        Some(at) => text.push_str(&format!(
            " (spent: the next may go at {})",
            crate::model::clock::rfc3339(at)
        )),
        None if u.used >= u.max => text.push_str(" (spent)"),
        None => {}
    }
    if u.rehearsed > 0 {
        text.push_str(&format!(
            "; {} dry-run decision(s) within {per}, not counted",
            u.rehearsed
        ));
    }
    text
}
