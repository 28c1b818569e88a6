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
    /// Every action is decided and recorded as withheld for this long.
    Pause {
        for_ms: u64,
    },
    /// End a pause early.
    Resume,
    /// No escalation for the incident in flight until `release`.
    Hold,
    Release,
    /// The escalation goes at the next BUSY reply, ahead of the budget.
    Approve,
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
    pub uid: u32,
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
    // The group that may steer, when the service names one it is a member of.
    if let Ok(name) = std::env::var(GROUP_ENV) {
        let group = nix::unistd::Group::from_name(&name)
            .ok()
            .flatten()
            .ok_or_else(|| std::io::Error::other(format!("{GROUP_ENV}: no group `{name}`")))?;
        nix::unistd::chown(&path, None, Some(group.gid)).map_err(std::io::Error::from)?;
    }
    std::fs::write(state_dir.join(PATH_FILE), format!("{}\n", path.display()))?;
    Ok(listener)
}

/// Accept commands and hand each to the daemon; never returns.
pub async fn serve(listener: UnixListener, daemon: mpsc::Sender<Incoming>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let daemon = daemon.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, daemon).await {
                tracing::warn!(error = %e, "control connection failed");
            }
        });
    }
}

async fn answer(stream: UnixStream, daemon: mpsc::Sender<Incoming>) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let caller = Caller {
        uid: cred.uid(),
        user: nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(cred.uid()))
            .ok()
            .flatten()
            .map_or_else(|| format!("uid {}", cred.uid()), |u| u.name),
    };
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(tokio::io::AsyncReadExt::take(read, REQUEST_LIMIT))
        .read_line(&mut line)
        .await?;
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
