//! The probe's connection: the only code besides `remedy` that speaks to Redis.
//!
//! One dedicated fred client per instance, configured for a server that may be busy: RESP3 so
//! authentication happens in HELLO (allowed while busy), database 0 and no CLIENT SETNAME (both
//! refused while busy), no command timeout (a PING outstanding through the silent phase is the
//! whole point: it is answered BUSY the moment the threshold passes), no automatic reconnect and
//! `max_command_attempts = 1`, so no command is ever sent twice. A lost connection is the
//! watchdog's to notice and re-open.

use std::collections::HashMap;
use std::time::Duration;

use fred::prelude::*;
use fred::types::config::ServerConfig;
use fred::types::{ClusterHash, ConnectHandle, CustomCommand, RespVersion};
use tokio::sync::watch;

pub use super::ConnectError;
use super::reply::{pairs, slowlog_entries};
use crate::engine::Observation;
use crate::model::kinds::BusyKind;
use crate::model::slowlog::SlowEntry;
use crate::model::snapshot::Snapshot;
use crate::policy::RedisTarget;

/// How a command's outcome reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A normal reply.
    Reply(Value),
    /// An error reply, as the server wrote it (`BUSY Redis is busy ...`).
    ErrorReply(String),
    /// No reply: the connection closed, was reset or could not send.
    Lost(String),
}

/// What went wrong, in words an operator reads (records, notifications, `status`): never
/// Rust's Debug text.
impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Reply(_) => write!(f, "an unexpected reply"),
            Outcome::ErrorReply(text) => write!(f, "{text}"),
            Outcome::Lost(why) => write!(f, "no reply: {why}"),
        }
    }
}

/// A client library error with no reply in it (the connection closed, timed out), in words.
fn lost_words(e: &Error) -> String {
    let what = match e.kind() {
        ErrorKind::Timeout => "timed out",
        ErrorKind::Canceled => "canceled",
        _ => "the connection failed",
    };
    format!("{what}: {}", super::plain_io_text(e.details()))
}

impl Outcome {
    fn from_result(result: Result<Value, Error>) -> Outcome {
        match result {
            Ok(v) => Outcome::Reply(v),
            Err(e) => match e.kind() {
                ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Timeout => {
                    Outcome::Lost(lost_words(&e))
                }
                // Error replies keep the server's text in `details` (fred's `pretty_error`).
                _ => Outcome::ErrorReply(e.details().to_string()),
            },
        }
    }

    /// What this outcome of a probe command tells the engine (`None` for a healthy reply).
    pub fn observation(&self) -> Option<Observation> {
        match self {
            Outcome::Reply(_) => None,
            Outcome::ErrorReply(line) => Some(classify_error(line)),
            Outcome::Lost(reason) => Some(Observation::Unreachable {
                reason: reason.clone(),
            }),
        }
    }
}

/// An error reply to a probe: BUSY (by its exact first word), LOADING, or a fault.
pub fn classify_error(line: &str) -> Observation {
    if let Some(kind) = BusyKind::from_error(line) {
        return Observation::Busy {
            kind,
            reply: line.to_string(),
        };
    }
    if line.split(' ').next() == Some("LOADING") {
        return Observation::Loading;
    }
    Observation::Fault {
        reply: line.to_string(),
    }
}

/// What a healthy server said: its snapshot and its SLOWLOG, read together.
#[derive(Clone, Debug)]
pub struct Healthy {
    pub snapshot: Snapshot,
    /// Its SLOWLOG (newest first), or why it could not be read.
    pub slowlog: Result<Vec<SlowEntry>, String>,
    /// Whether any of its reads was answered: a refusal (NOPERM) comes before the busy check,
    /// so a snapshot refused whole says nothing of the server's health.
    pub answered: bool,
}

/// One open connection to one server.
pub struct Connection {
    client: Client,
    /// `redis.commands`: renamed commands by their own name (empty: disabled).
    renamed: std::collections::BTreeMap<String, String>,
    /// fred's connection task, aborted when the connection is dropped.
    task: tokio::task::AbortHandle,
    /// Turns true when fred's connection task ends. Without a reconnect policy fred then stops
    /// serving commands, and a command sent after that would wait forever: every call races it.
    closed: watch::Receiver<bool>,
    /// What fred's bytes pass through.
    relay: super::relay::Relay,
    /// The credential it logged in with, checked again with each snapshot.
    login: Option<(Option<String>, crate::policy::Secret)>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Connection {
    /// Why the relay dropped this connection (a reply past its bound, not RESP), if it did:
    /// a fault of the peer, recorded once, not an outage.
    pub fn cut(&self) -> Option<String> {
        self.relay.cut()
    }
}

/// Watch fred's connection task and say when it ends.
fn watch_closed(task: ConnectHandle) -> (tokio::task::AbortHandle, watch::Receiver<bool>) {
    let abort = task.abort_handle();
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let _ = task.await;
        let _ = tx.send(true);
    });
    (abort, rx)
}

/// Open a connection through a [`relay`](super::relay) (which reads every reply with a bound).
/// `setup_timeout` bounds the set-up commands (HELLO): during a script's silent phase they are
/// answered only once the threshold passes, so it should exceed it.
pub async fn connect(
    target: &RedisTarget,
    setup_timeout: Duration,
) -> Result<Connection, ConnectError> {
    let relay = super::relay::open(target, target.connect_timeout + setup_timeout).await?;
    let config = Config {
        server: ServerConfig::Unix {
            path: relay.socket.clone(),
        },
        username: target.username.clone(),
        password: target.password.as_ref().map(|p| p.expose().to_string()),
        version: RespVersion::RESP3,
        database: None,
        fail_fast: true,
        ..Config::default()
    };
    let client = Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = target.connect_timeout;
            c.internal_command_timeout = setup_timeout;
            c.max_command_attempts = 1;
            c.max_redirections = 0;
            c.reconnect_on_auth_error = false;
            c.auto_client_setname = false;
            c.disable_cluster_health_check = true;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = Duration::ZERO;
            // fred keeps event channels (errors, pub/sub, reconnections) per client that the
            // probe never listens to; their default capacity (32) costs memory on every
            // instance. Not below 8: fred's own `init` reads the connect channel, and a failed
            // connection broadcasts more than one event (capacity 1 made `init` fail "lagged").
            p.broadcast_channel_capacity = 8;
        })
        .build()
        .map_err(|e| ConnectError::Unreachable(e.details().to_string()))?;
    match client.init().await {
        Ok(task) => {
            let (task, closed) = watch_closed(task);
            Ok(Connection {
                client,
                renamed: target.commands.clone(),
                task,
                closed,
                relay,
                login: target
                    .password
                    .clone()
                    .map(|p| (target.username.clone(), p)),
            })
        }
        Err(e) if is_unknown_hello(e.details()) => Err(ConnectError::Rejected(format!(
            "{}: this server has no HELLO, so busyguard cannot use it; Redis 6.0 or newer (or Valkey) is needed (busyguard authenticates with HELLO because it is allowed while a script is busy)",
            e.details()
        ))),
        // A set-up reply past the relay's bound: a fault of the peer, not an outage.
        Err(_) if relay.cut().is_some() => {
            Err(ConnectError::Rejected(relay.cut().unwrap_or_default()))
        }
        Err(e) => Err(match e.kind() {
            ErrorKind::Auth | ErrorKind::Unknown => ConnectError::Rejected(e.details().to_string()),
            _ => ConnectError::Unreachable(lost_words(&e)),
        }),
    }
}

/// Redis 5 and older answer HELLO `ERR unknown command `HELLO`, ...` (4.x: `'HELLO'`).
fn is_unknown_hello(reply: &str) -> bool {
    reply.starts_with("ERR unknown command") && reply.to_ascii_uppercase().contains("HELLO")
}

/// A connection to one target kept between questions (the Sentinel feed, the replica watch,
/// a failover's watch), opened at the first question and anew after one that lost it.
pub struct Kept {
    pub target: RedisTarget,
    conn: Option<Connection>,
}

impl Kept {
    pub fn new(target: RedisTarget) -> Kept {
        Kept { target, conn: None }
    }

    /// The connection, opened first (within `limit`) when there is none; `None` when it cannot
    /// be, or `ask` finds it lost.
    pub async fn ask<T>(
        &mut self,
        limit: Duration,
        ask: impl AsyncFnOnce(&Connection) -> Result<T, Lost>,
    ) -> Option<T> {
        if self.conn.is_none() {
            let opened = tokio::time::timeout(limit, connect(&self.target, limit)).await;
            self.conn = opened.ok().and_then(Result::ok);
        }
        let answer = ask(self.conn.as_ref()?).await;
        if answer.is_err() {
            self.conn = None;
        }
        answer.ok()
    }
}

/// The connection was lost (or gave no answer in time): it is opened anew next time.
pub struct Lost;

impl Connection {
    /// Send one command, once, and wait for its outcome with no time limit.
    pub async fn call(&self, words: &[&'static str]) -> Outcome {
        let (name, args) = words.split_first().expect("a command");
        let cmd = match self.renamed.get(*name) {
            None => CustomCommand::new_static(name, ClusterHash::FirstKey, false),
            Some(_) if self.disabled(name) => {
                return Outcome::ErrorReply(format!(
                    "ERR unknown command '{name}': disabled in redis.conf (`redis.commands.{}` is empty)",
                    name.to_ascii_lowercase()
                ));
            }
            Some(actual) => CustomCommand::new(actual.as_str(), ClusterHash::FirstKey, false),
        };
        let args: Vec<Value> = args.iter().map(|a| Value::from(*a)).collect();
        self.send(cmd, args).await
    }

    /// `redis.commands` says `name` is disabled in redis.conf (renamed to `""`): never sent.
    pub fn disabled(&self, name: &str) -> bool {
        self.renamed.get(name).is_some_and(String::is_empty)
    }

    /// [`Connection::call`] with arguments known only at run time (a Sentinel master name);
    /// the command's own name is static and never renamed (Sentinel has no rename-command).
    pub async fn call_with(&self, name: &'static str, args: &[&str]) -> Outcome {
        let cmd = CustomCommand::new_static(name, ClusterHash::FirstKey, false);
        let args: Vec<Value> = args.iter().map(|a| Value::from(a.to_string())).collect();
        self.send(cmd, args).await
    }

    async fn send(&self, cmd: CustomCommand, args: Vec<Value>) -> Outcome {
        let mut closed = self.closed.clone();
        tokio::select! {
            result = self.client.custom::<Value, _>(cmd, args) => match (Outcome::from_result(result), self.cut()) {
                (Outcome::Lost(_), Some(why)) => Outcome::Lost(why),
                (outcome, _) => outcome,
            },
            _ = closed.wait_for(|c| *c) => Outcome::Lost(self.cut().unwrap_or_else(|| "connection closed".into())),
        }
    }

    /// One CONFIG GET value (`None` when refused or unknown): the one way a setting outside
    /// the snapshot is read.
    pub async fn config(&self, name: &'static str) -> Option<String> {
        match self.call(&["CONFIG", "GET", name]).await {
            Outcome::Reply(v) => pairs(v).remove(name),
            Outcome::ErrorReply(_) | Outcome::Lost(_) => None,
        }
    }

    /// INFO persistence, the probe under `guards.max_unsaved_changes`: answered like a PING
    /// (BUSY, LOADING), and while healthy it says how many changes are not saved yet and
    /// whether the AOF is on. `Err` holds any other outcome (a reply without those fields, a
    /// refusal) for the caller to read.
    pub async fn unsaved(&self) -> Result<(u64, bool), Outcome> {
        match self.call(&["INFO", "persistence"]).await {
            Outcome::Reply(v) => {
                let info = v.as_string().unwrap_or_default();
                let field = |k| crate::model::snapshot::info_field(&info, k);
                let changes = field("rdb_changes_since_last_save").and_then(|n| n.parse().ok());
                let aof = field("aof_enabled").map(|a| a == "1");
                match (changes, aof) {
                    (Some(changes), Some(aof)) => Ok((changes, aof)),
                    _ => Err(Outcome::Reply(v)),
                }
            }
            other => Err(other),
        }
    }

    pub async fn ping(&self) -> Outcome {
        self.call(&["PING"]).await
    }

    /// The probe of a server that defers PING while a script runs (Valkey's proposed #3363)
    /// but answers FUNCTION STATS (allowed while busy): BUSY for an EVAL, the running function
    /// for an FCALL, nothing running when healthy. `None` when FUNCTION STATS tells nothing
    /// (refused, unknown to a 6.x server, lost): the probe goes back to PING.
    pub async fn stats_probe(&self) -> Option<Observation> {
        match self.call(&["FUNCTION", "STATS"]).await {
            Outcome::ErrorReply(e) => {
                BusyKind::from_error(&e).map(|kind| Observation::Busy { kind, reply: e })
            }
            outcome @ Outcome::Reply(_) => match super::forensics::running_function(&outcome) {
                crate::model::told::RunningFunction::Seen {
                    name: Some(name), ..
                } => Some(Observation::Busy {
                    kind: BusyKind::Function,
                    reply: format!(
                        "BUSY FUNCTION STATS names the running function `{name}` (the server defers PING while busy). You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
                    ),
                }),
                _ => Some(Observation::Pong { snapshot: None }),
            },
            Outcome::Lost(_) => None,
        }
    }

    /// AUTH again with the credential this connection logged in with, so that a password
    /// rotated on the server shows within `snapshot_every`, not at the next reconnect. A
    /// refused AUTH leaves the connection logged in as before. `Some(reply)`: refused; any
    /// other error (NOPERM) is no verdict on the credential.
    async fn login_again(&self) -> Result<Option<String>, Outcome> {
        let Some((user, password)) = &self.login else {
            return Ok(None);
        };
        let mut args: Vec<&str> = user.iter().map(String::as_str).collect();
        args.push(password.expose());
        match self.call_with("AUTH", &args).await {
            Outcome::ErrorReply(e)
                if crate::model::kinds::FaultCause::of(&e)
                    == crate::model::kinds::FaultCause::Login =>
            {
                Ok(Some(e))
            }
            Outcome::Reply(_) | Outcome::ErrorReply(_) => Ok(None),
            lost @ Outcome::Lost(_) => Err(lost),
        }
    }

    /// The healthy snapshot: INFO of the sections it reads (`INFO all` on 6.2), then CONFIG GET of
    /// what INFO does not say, and the SLOWLOG. A BUSY, LOADING or lost connection is returned
    /// for the probe to classify; anything else refused (NOPERM, a renamed or unknown command)
    /// leaves those facts unknown and is named in the snapshot's `errors`.
    pub async fn snapshot(&self) -> Result<Healthy, Outcome> {
        let login_refused = self.login_again().await?;
        let mut errors = Vec::new();
        let asked = match self.call(&INFO_SECTIONS).await {
            // Redis 6.2's INFO takes one section: all of them then.
            Outcome::ErrorReply(e) if e.starts_with("ERR syntax error") => {
                self.call(&["INFO", "all"]).await
            }
            other => other,
        };
        let info = match asked {
            Outcome::Reply(v) => v.as_string().unwrap_or_default(),
            Outcome::ErrorReply(e) if refusal(&e) => {
                errors.push(refused("INFO", &e));
                String::new()
            }
            other => return Err(other),
        };
        let config = match self.call(&CONFIG_GET).await {
            Outcome::Reply(v) => pairs(v),
            // Redis 6.2's CONFIG GET takes one parameter: ask for each.
            Outcome::ErrorReply(e) if e.contains("wrong number of arguments") => {
                let mut found = HashMap::new();
                for name in &CONFIG_GET[2..] {
                    match self.call(&["CONFIG", "GET", name]).await {
                        Outcome::Reply(v) => found.extend(pairs(v)),
                        Outcome::ErrorReply(e) if refusal(&e) => {}
                        other => return Err(other),
                    }
                }
                found
            }
            Outcome::ErrorReply(e) if refusal(&e) => {
                errors.push(refused("CONFIG GET", &e));
                HashMap::new()
            }
            other => return Err(other),
        };
        // What scripts took long while the server was healthy (early warnings). A user without
        // `+slowlog|get` goes without them; that is no snapshot error.
        let slowlog = match self.call(&["SLOWLOG", "GET", "128"]).await {
            Outcome::Reply(v) => Ok(slowlog_entries(&v)),
            Outcome::ErrorReply(e) if refusal(&e) => Err(e),
            other => return Err(other),
        };
        let answered = !info.is_empty() || !config.is_empty() || slowlog.is_ok();
        let mut snapshot = Snapshot::from_info(&info, &config);
        snapshot.errors = errors;
        snapshot.login_refused = login_refused;
        Ok(Healthy {
            snapshot,
            slowlog,
            answered,
        })
    }
}

/// The INFO sections the snapshot reads (7.0 and newer take several at once): no more, so
/// an answer stays a few KiB (`latencystats` and `keyspace` can be large).
const INFO_SECTIONS: [&str; 8] = [
    "INFO",
    "server",
    "persistence",
    "stats",
    "replication",
    "cluster",
    "commandstats",
    "errorstats",
];

/// What the snapshot asks CONFIG for.
const CONFIG_GET: [&str; 7] = [
    "CONFIG",
    "GET",
    "busy-reply-threshold",
    "lua-time-limit",
    "appendonly",
    "appendfsync",
    "save",
];

/// What the snapshot says of a refused command; an unknown one is likely renamed in redis.conf.
fn refused(command: &str, reply: &str) -> String {
    let word = command
        .split(' ')
        .next()
        .unwrap_or(command)
        .to_ascii_lowercase();
    match reply.starts_with("ERR unknown command") {
        true => format!(
            "{command} refused: {reply} (renamed with `rename-command` in redis.conf? name it in `redis.commands.{word}`)"
        ),
        false => format!("{command} refused: {reply}"),
    }
}

/// An error reply that refuses a command (rights, a renamed or unknown command) rather than
/// telling the server's state: BUSY and LOADING are the probe's to read.
pub fn refusal(line: &str) -> bool {
    !matches!(
        classify_error(line),
        Observation::Busy { .. } | Observation::Loading
    )
}
