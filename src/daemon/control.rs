//! The control socket: operators steer a running daemon (`pause`, `resume`, `hold`, `release`,
//! `approve`) and ask what it is doing (`ps`), without editing YAML or sending signals.
//!
//! A unix socket, `control.sock` under systemd's `$RUNTIME_DIRECTORY` (else in the state dir),
//! mode 0660: the daemon's user and group may steer, nobody else may even connect. The daemon
//! writes where it listens to `<state-dir>/control.path`, so the commands find it from
//! `--state-dir` alone. One JSON request per connection, one JSON answer. The caller is known
//! from the socket's peer credentials (`SO_PEERCRED`), and every command that applies is recorded
//! in the audit trail (`operator_command`, with the user, uid and reason) and notified.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::engine::Live;

/// The file in the state dir that names the socket.
pub const PATH_FILE: &str = "control.path";
/// The socket's name.
pub const SOCKET: &str = "control.sock";
/// Names the group whose members may steer (the socket is chowned to it).
pub const GROUP_ENV: &str = "BUSYGUARD_CONTROL_GROUP";
/// Names the socket for the commands, when neither the state dir nor systemd's default tells.
pub const SOCKET_ENV: &str = "BUSYGUARD_CONTROL_SOCKET";
/// Where systemd's `RuntimeDirectory=busyguard` puts the socket.
pub const RUNTIME_SOCKET: &str = "/run/busyguard/control.sock";
/// The longest pause without `--force`: a typo (`100000years`) must not disable busyguard.
pub const PAUSE_AT_MOST: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest pause with `--force`.
pub const PAUSE_FORCED_AT_MOST: Duration = Duration::from_secs(366 * 24 * 3600);

/// The most a request may hold.
const REQUEST_LIMIT: u64 = 64 * 1024;
/// How long a client waits for the daemon's answer (a steering command applies at the
/// watchdog's next wake-up, within one probe interval).
pub const ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// A request to the daemon: one JSON line, `{"command": "pause", "for_ms": ..., "instance":
/// ..., "reason": ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    #[serde(flatten)]
    pub command: Command,
    /// The instance, or `None` for all.
    pub instance: Option<String>,
    /// Why, as the trail records it.
    #[serde(default)]
    pub reason: String,
}

/// What the request asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// What the watchdogs are doing now (answered by the daemon, recorded nowhere).
    Ps,
    /// Every action is decided and recorded as withheld for this long: at most
    /// [`PAUSE_AT_MOST`], or [`PAUSE_FORCED_AT_MOST`] with `force`.
    Pause {
        for_ms: u64,
        #[serde(default)]
        force: bool,
    },
    /// End a pause early.
    Resume,
    /// No escalation for the incident in flight until `release`.
    Hold,
    /// End a hold; `now` lets an escalation whose budget already ended go at once.
    Release {
        #[serde(default)]
        now: bool,
    },
    /// The escalation goes at the next BUSY reply, ahead of the budget.
    Approve,
    /// The pod is stopping: kill the running script now (see [`super::stopping`]).
    Stopping,
}

impl Request {
    /// `ps`: what every watchdog is doing now.
    pub fn ps() -> Request {
        Request {
            command: Command::Ps,
            instance: None,
            reason: String::new(),
        }
    }
}

/// Who sent a command, from the socket's peer credentials.
#[derive(Clone, Debug, PartialEq)]
pub struct Caller {
    /// From the socket's peer credentials; `None` for kubelet's preStop call over HTTP.
    pub uid: Option<u32>,
    pub user: String,
}

/// One instance as `ps` shows it (`None`: its watchdog did not answer).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstanceLive {
    pub instance: String,
    pub live: Option<Live>,
}

/// The daemon's answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    pub message: String,
    #[serde(default)]
    pub instances: Vec<InstanceLive>,
}

impl Response {
    pub fn error(message: impl Into<String>) -> Response {
        Response {
            ok: false,
            message: message.into(),
            instances: Vec::new(),
        }
    }
}

/// A request on its way to the daemon, with where its answer goes.
pub type Incoming = (Request, Caller, oneshot::Sender<Response>);

/// Where the socket is for a state dir: under `$RUNTIME_DIRECTORY` when systemd set one.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    std::env::var("RUNTIME_DIRECTORY")
        .ok()
        .and_then(|v| v.split(':').next().map(PathBuf::from))
        .unwrap_or_else(|| state_dir.to_path_buf())
        .join(SOCKET)
}

/// Listen (the caller holds the state dir's lock, so a socket file left there is a dead
/// daemon's), mode 0660, and say where in the state dir.
pub fn listen(state_dir: &Path) -> std::io::Result<UnixListener> {
    let path = socket_path(state_dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    // The group that may steer, when the service names one it is a member of. Failing to give
    // the socket to it costs the operators their steering, never the supervision.
    if let Ok(name) = std::env::var(GROUP_ENV) {
        let given = nix::unistd::Group::from_name(&name)
            .ok()
            .flatten()
            .ok_or_else(|| format!("no group `{name}`"))
            .and_then(|g| {
                nix::unistd::chown(&path, None, Some(g.gid)).map_err(|e| {
                    format!(
                        "cannot give the socket to group `{name}` ({e}; under systemd's \
                         PrivateUsers= a group outside the service's own is not mapped)"
                    )
                })
            });
        if let Err(why) = given {
            tracing::error!(socket = %path.display(), "{GROUP_ENV}: {why}: only busyguard's own user and group may steer; supervision goes on");
        }
    }
    std::fs::write(state_dir.join(PATH_FILE), format!("{}\n", path.display()))?;
    Ok(listener)
}

/// Control connections served at once; more wait in the kernel's backlog.
const CONNECTIONS_AT_ONCE: usize = 32;
/// How long a client may take to send its request.
const REQUEST_TIME: Duration = Duration::from_secs(2);
/// How long to wait before accepting again when the process is out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accept commands and hand each to the daemon; never returns. At most
/// [`CONNECTIONS_AT_ONCE`] are served at a time, each must send its request within
/// [`REQUEST_TIME`], and an `accept` that fails (out of file descriptors: many idle clients, a
/// leaking tool) backs off instead of spinning: the control socket never starves the watchdogs.
pub async fn serve(listener: UnixListener, daemon: mpsc::Sender<Incoming>) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_AT_ONCE));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: accept failed; waiting before the next");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let daemon = daemon.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, daemon).await {
                tracing::warn!(error = %e, "control connection failed");
            }
            drop(slot);
        });
    }
}

/// Who the peer is: its uid, and its user's name; a uid with no name (one systemd's
/// `PrivateUsers=` did not map shows as 65534) is recorded as unknown, with a warning.
fn caller(uid: u32) -> Caller {
    let named = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .filter(|name| name != "nobody");
    let user = named.unwrap_or_else(|| {
        tracing::warn!(uid, "control socket: a caller whose uid maps to no user (under PrivateUsers=, operators' uids are not mapped): recorded as unknown");
        format!("unknown (uid {uid})")
    });
    Caller {
        uid: Some(uid),
        user,
    }
}

async fn answer(stream: UnixStream, daemon: mpsc::Sender<Incoming>) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let caller = caller(cred.uid());
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, REQUEST_LIMIT));
    match tokio::time::timeout(REQUEST_TIME, reader.read_line(&mut line)).await {
        Ok(read) => {
            read?;
        }
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no request in time",
            ));
        }
    }
    let response = match serde_json::from_str::<Request>(&line) {
        Err(e) => Response::error(format!("not a request: {e}")),
        Ok(request) => {
            let (tx, rx) = oneshot::channel();
            let _ = daemon.send((request, caller, tx)).await;
            tokio::time::timeout(ANSWER_LIMIT, rx)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_else(|| Response::error("the daemon did not answer in time"))
        }
    };
    let mut bytes = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await
}
