//! The engine's vocabulary, shared with the probe, the remedy and the watchdog: instants, what
//! was observed, what to do, and the rules a policy gives. Plain values, no behaviour beyond
//! reading a reply and choosing a command's words.

use crate::event::Event;
use crate::model::kinds::{BusyKind, FailoverVia, Resort, Then};
use crate::model::snapshot::Snapshot;
use crate::model::takeover::{Lineage, Successor};
use crate::model::told::{AfterRecovery, RunningFunction};
use crate::policy::replicas::TrustedReplica;
use crate::policy::{self, HangSignal, Mode, Policy};

/// Milliseconds on the watchdog's monotonic clock.
pub type Millis = u64;

/// The busy threshold assumed when the snapshot does not know it (CONFIG GET refused): how
/// long after a kill's `+OK` a BUSY reply is taken for a new script rather than the dying one.
pub const UNKNOWN_THRESHOLD_MS: Millis = 5;

/// When an observation was made: the monotonic instant (for deadlines) and the wall clock
/// (only for naming incidents and placing the trail's times).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    pub mono: Millis,
    pub unix_ms: u64,
}

/// The kill that fits a kind of BUSY (none for a module; SCRIPT KILL for an unknown form, whose
/// answer then tells more).
pub fn kill_for(kind: BusyKind) -> Option<KillCommand> {
    match kind {
        BusyKind::Script | BusyKind::Unknown => Some(KillCommand::ScriptKill),
        BusyKind::Function => Some(KillCommand::FunctionKill),
        BusyKind::Module => None,
    }
}

/// Where an observation comes from: the probe connection it was made on (a generation number:
/// each reconnect starts the next) and when the command it answers was sent; the answer came at
/// the observation's [`At`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    pub conn: u64,
    pub sent: Millis,
}

/// What the probe or a remedy saw.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// A healthy answer; `snapshot` when one was just taken (always after a reconnect).
    Pong { snapshot: Option<Box<Snapshot>> },
    /// A healthy answer to INFO persistence (the probe under `guards.max_unsaved_changes`): as
    /// a PONG, with the changes not saved yet and whether the AOF is on.
    Unsaved { changes: u64, aof: bool },
    /// A BUSY error reply, with its text.
    Busy { kind: BusyKind, reply: String },
    /// A probe has been outstanding this long with no reply.
    Silent { for_ms: Millis },
    /// `-LOADING`: the dataset is loading; not an incident.
    Loading,
    /// An error reply that is a configuration fault (NOAUTH, NOPERM, WRONGPASS, ...).
    Fault { reply: String },
    /// No connection: refused, closed, reset, timed out connecting.
    Unreachable { reason: String },
    /// The reply to a kill the engine asked for.
    KillReply(KillReply),
    /// What became of a shutdown the engine asked for.
    Shutdown(ShutdownOutcome),
    /// Whether the signal the engine asked for was delivered.
    Signal(Result<(), String>),
    /// Another server serves as the primary now, verified by busyguard itself (see
    /// [`crate::model::takeover`]): this server was failed over. `by` says who told of it
    /// (`sentinel`, or `replica`: one of its own listed replicas took over).
    Demoted {
        successor: Successor,
        by: &'static str,
    },
    /// What became of a failover the engine asked for.
    Failover(FailoverOutcome),
    /// What came of a fence the engine asked for.
    Fenced(FenceOutcome),
    /// A command the engine decided did not leave: the gate found the evidence it rests on no
    /// longer holds (why, and the input that is missing). Its record was written; it was not
    /// sent.
    NotSent {
        action: crate::event::detail::WithheldAction,
        reason: String,
        missing: String,
    },
    /// What the Sentinel group of `topology.sentinel` says cannot be verified (it names a server
    /// that did not take over from this one, or one the policy does not list): nothing it says
    /// is acted on (why).
    SentinelUnbelieved(String),
    /// The Sentinel group names this server again.
    SentinelNamesThis,
    /// What FUNCTION STATS said, asked at the engine's [`Inquiry::RunningFunction`].
    RunningFunction(RunningFunction),
    /// The SHA1 of the EVAL that went BUSY, as the server's log named it
    /// ([`Inquiry::IdentifyEval`]), or why it is not known.
    EvalNamed(Result<String, String>),
    /// The failover candidates' replication offsets (`None`: not reached), asked at the
    /// engine's [`Inquiry::ReplicaOffsets`].
    ReplicaOffsets(Vec<(String, Option<u64>)>),
    /// What the server said once the incident was over, asked at the engine's
    /// [`Inquiry::AfterRecovery`], or why nothing could be asked (no reply in time).
    AfterRecovery(Result<Box<AfterRecovery>, String>),
}

/// Something the engine wants to hear from the server beside the probe: the watchdog asks,
/// within its bound, and hands the answer back as an observation, in the same step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inquiry {
    /// Each failover candidate's replication offset, asked just before the request, waiting
    /// up to `within_ms` for them to reach the primary's last known offset.
    ReplicaOffsets {
        replicas: Vec<String>,
        primary_offset: u64,
        within_ms: Millis,
    },
    /// FUNCTION STATS (allowed while busy): which function runs. With a kill in the same step it
    /// is written just ahead of it, so it reaches the server before the function dies.
    RunningFunction,
    /// FUNCTION STATS alone, for a kill that waits for the name (`on_busy.scripts`), or for a
    /// name still unknown after the kill: the watchdog gives it `within_ms` at most (a busy
    /// server answers at its script's next hook).
    Identify { within_ms: Millis },
    /// The server's log, for the line that names the EVAL that went BUSY (`on_busy.scripts`
    /// with `sha` rules and `on_busy.server_log`).
    IdentifyEval,
    /// The counters and the SLOWLOG once the script is gone: the `recovered` record waits for
    /// them (a short bound: the next script may already hold the server).
    AfterRecovery,
}

/// The BUSY reply a command that changes the server rests on: the connection it came on, when
/// it came, what it named, and for how long it holds. The gate checks it again just before the
/// command leaves (`remedy::gate`): a record flushed slowly to disk may have aged it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusySeen {
    pub conn: u64,
    pub at: Millis,
    pub kind: BusyKind,
    /// Up to this age it is fresh: the command goes on it.
    pub fresh_ms: Millis,
    /// Up to this age (a threshold, less the margin) no other script can have answered BUSY
    /// since: one PING asked again, answered BUSY of the same kind, makes it fresh again.
    pub continuity_ms: Millis,
}

/// What became of a requested failover.
#[derive(Clone, Debug, PartialEq)]
pub enum FailoverOutcome {
    /// A replica is the primary now, verified by busyguard, as `seen_by` says.
    Promoted {
        successor: Successor,
        seen_by: String,
    },
    /// No promotion was seen within the bound; `accepted` when a request was accepted.
    Failed { accepted: bool, reason: String },
}

/// A failover to carry out: where the request goes and which replicas may be promoted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverPlan {
    pub via: FailoverVia,
    /// The Sentinel master name, or the replica (`host:port`) told `CLUSTER FAILOVER FORCE`.
    pub target: String,
    /// The replicas whose ROLE is watched for the promotion (`host:port`).
    pub watch: Vec<String>,
    /// The request and the promotion together.
    pub timeout_ms: Millis,
    /// Who the busy server is (its run ids and replication IDs): the request goes only while
    /// Sentinel still serves this server, or to a replica that is still this server's, and a
    /// promotion counts only when the new primary continues this history.
    pub lineage: Lineage,
    /// The BUSY reply the request rests on.
    pub evidence: BusySeen,
}

#[derive(Clone, Debug, PartialEq)]
pub enum KillReply {
    /// `+OK`: the script stops at its next hook; a PONG confirms it.
    Ok,
    /// `-UNKILLABLE ...`: it already wrote.
    Unkillable(String),
    /// `-UNKILLABLE The busy script was sent by a master instance in the context of
    /// replication ...`: a replica (or an AOF load) replaying a script that the master already
    /// ran to its end.
    Replicated(String),
    /// Any other error reply (NOTBUSY, NOPERM, a BUSY naming the other kill).
    Error(String),
    /// No reply: the connection was lost, or no reply came before the deadline that mattered
    /// (then the watchdog dropped the connection).
    Lost(String),
}

impl KillReply {
    /// Read a kill's error reply.
    pub fn from_error(line: &str) -> KillReply {
        match line.split(' ').next() {
            Some("UNKILLABLE") if line.contains("in the context of replication") => {
                KillReply::Replicated(line.to_string())
            }
            Some("UNKILLABLE") => KillReply::Unkillable(line.to_string()),
            _ => KillReply::Error(line.to_string()),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ShutdownOutcome {
    /// The connection closed without a reply and the server is gone, as `how` says.
    Confirmed {
        elapsed_ms: Millis,
        /// The form that was sent (the 6.x fallback, or the command decided).
        command: Option<String>,
        /// How its end was seen (connections refused, no server behind the endpoint, a new
        /// run answering); `None`: refused, the usual way.
        how: Option<String>,
    },
    /// An error reply: the shutdown did not happen.
    Refused(String),
    /// The connection closed but the server still accepts connections, no reply came in time,
    /// or some other failure.
    Failed(String),
    /// The connection was lost and the server then answered BUSY on two new connections, one
    /// after the other: a shutdown that had reached it would have been carried out before the
    /// second answer (the server reads every ready connection at each turn of its loop), so it
    /// was lost on the way and had no effect. Seen now: as good as a BUSY reply for continuity.
    Unlanded(String),
}

/// A command or signal the watchdog must carry out, after writing the step's events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Kill(KillCommand),
    Shutdown(ShutdownCommand),
    /// SIGKILL to a local pid, only if its start time still matches.
    Signal(SignalTarget),
    /// Promote a replica (Sentinel, Cluster), and watch for the promotion.
    Failover(FailoverPlan),
    /// Make an old primary that answers as a primary after its failover a replica of the new
    /// one (`REPLICAOF host port`).
    Fence(FencePlan),
}

/// Where a fenced old primary is made to replicate from: the successor busyguard verified, and
/// the lineage it was verified against (the gate asks it again just before `REPLICAOF` leaves).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FencePlan {
    pub host: String,
    pub port: u16,
    pub successor: Successor,
    pub lineage: Lineage,
}

/// What came of a fence.
#[derive(Clone, Debug, PartialEq)]
pub enum FenceOutcome {
    /// `REPLICAOF` answered (its reply).
    Fenced(String),
    /// Sent, and refused or unanswered.
    Failed(String),
    /// Not sent: the gate's last check found the successor no longer verified, or the target is
    /// this server (why).
    NotSent(String),
}

impl FencePlan {
    /// The plan toward `successor`, if its address is a `host:port`.
    pub fn to(successor: &Successor, lineage: &Lineage) -> Option<FencePlan> {
        let (host, port) = successor.address.rsplit_once(':')?;
        Some(FencePlan {
            host: host.trim_matches(['[', ']']).to_string(),
            port: port.parse().ok()?,
            successor: successor.clone(),
            lineage: lineage.clone(),
        })
    }

    pub fn text(&self) -> String {
        format!("REPLICAOF {} {}", self.host, self.port)
    }
}

/// A local server's process, as the healthy snapshot saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalTarget {
    pub pid: u32,
    /// Its start time (clock ticks since boot): a reused pid is never signalled.
    pub start_ticks: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillCommand {
    ScriptKill,
    FunctionKill,
}

impl KillCommand {
    pub fn words(self) -> [&'static str; 2] {
        match self {
            KillCommand::ScriptKill => ["SCRIPT", "KILL"],
            KillCommand::FunctionKill => ["FUNCTION", "KILL"],
        }
    }

    pub fn text(self) -> String {
        self.words().join(" ")
    }
}

/// The version-aware SHUTDOWN form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShutdownCommand {
    /// `SHUTDOWN ABORT` first, clearing a plain SHUTDOWN that may be pending (7.0+).
    pub abort_first: bool,
    /// The words of the shutdown itself.
    pub words: Vec<&'static str>,
    /// The server's version is unknown: should `SHUTDOWN ABORT` be answered BUSY, the server is
    /// 6.x (which knows neither ABORT nor NOW while busy) and exactly `SHUTDOWN NOSAVE` goes
    /// instead. The ABORT is the probe, so only one shutdown is ever sent.
    pub legacy_fallback: bool,
    /// The server's run id (healthy snapshot): a different run answering after the shutdown is
    /// a restart (it did stop); the same one answering means it did not.
    pub run_id: Option<String>,
    /// The BUSY reply it rests on: without one, the gate does not let it leave.
    pub evidence: Option<BusySeen>,
}

/// The only SHUTDOWN a busy 6.x server accepts.
pub const LEGACY_SHUTDOWN: [&str; 2] = ["SHUTDOWN", "NOSAVE"];

impl ShutdownCommand {
    /// `SHUTDOWN NOSAVE` on 6.x (exactly those two words, the only form allowed while busy);
    /// `SHUTDOWN NOSAVE NOW [FORCE]` on 7.0+, where plain NOSAVE would wait for lagging replicas
    /// in a cron that never runs during a busy script. An unknown version gets the 7.0+ form,
    /// and the 6.x form should its `SHUTDOWN ABORT` be answered BUSY.
    pub fn for_version(major: Option<u32>, force: bool) -> ShutdownCommand {
        if major.is_some_and(|m| m < 7) {
            return ShutdownCommand {
                abort_first: false,
                words: LEGACY_SHUTDOWN.to_vec(),
                legacy_fallback: false,
                run_id: None,
                evidence: None,
            };
        }
        let mut words = vec!["SHUTDOWN", "NOSAVE", "NOW"];
        if force {
            words.push("FORCE");
        }
        ShutdownCommand {
            abort_first: true,
            words,
            legacy_fallback: major.is_none(),
            run_id: None,
            evidence: None,
        }
    }

    pub fn text(&self) -> String {
        self.words.join(" ")
    }

    /// What the trail says of the fallback, when there is one.
    pub fn fallback_text(&self) -> Option<String> {
        self.legacy_fallback.then(|| {
            format!(
                "{} if SHUTDOWN ABORT is answered BUSY (the version is unknown; a 6.x server knows neither ABORT nor NOW while busy)",
                LEGACY_SHUTDOWN.join(" ")
            )
        })
    }
}

/// Events to record (in order, before the action) and at most one action.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    pub events: Vec<Event>,
    pub action: Option<Action>,
    /// What the engine wants to hear before it goes on (asked after the events are recorded,
    /// ahead of the action).
    pub inquiry: Option<Inquiry>,
}

/// The part of a policy the engine decides with.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub instance: String,
    /// SHA-256 of the policy file, named in every record.
    pub policy_hash: String,
    pub dry_run: bool,
    pub kill_after: Millis,
    pub wait: Millis,
    pub then: Then,
    /// `then: ask`: how long an approval is awaited, and what applies without one.
    pub ask_timeout: Millis,
    pub ask_default: Resort,
    pub force: bool,
    /// A replica replaying its master's script may be shut down at the end of `wait`.
    pub shutdown_replicated: bool,
    /// `then: failover`: what applies when none is made, and its bound.
    pub failover_fallback: Resort,
    pub failover_timeout: Millis,
    /// `failover.max_lag`: bytes.
    pub failover_max_lag: u64,
    /// `topology.sentinel.master`: a failover goes through Sentinel under this name.
    pub sentinel_master: Option<String>,
    /// `topology.replicas`: the only replicas a failover may promote or ask.
    pub replicas: Vec<TrustedReplica>,
    /// `topology.fence`: fence this server after a failover busyguard did not make (Sentinel's
    /// own), under `then: shutdown` or `ask`; under `then: failover` the fence is always on.
    pub fence: bool,
    /// `on_busy.scripts`: ladders of their own for known functions.
    pub scripts: Vec<crate::policy::scripts::ScriptRule>,
    /// A rule names a function: a busy FCALL's kill waits for its name, up to
    /// `identify_within`, and it is asked again until known.
    pub function_rules: bool,
    pub identify_within: Millis,
    /// `on_busy.server_log` is set: every busy EVAL is named from it (after its kill).
    pub server_log: bool,
    /// A rule names an EVAL and the server's log can name one: a busy EVAL's kill waits for it.
    pub eval_rules: bool,
    /// The server is on this host (a unix socket, a loopback address): no other server can
    /// answer at its address while it runs, so a BUSY on a new connection within a threshold of
    /// the last is the same script's.
    pub local_server: bool,
    pub hang_after: Millis,
    pub hang_signal: HangSignal,
    pub signal_after: Millis,
    pub max_shutdowns: u32,
    pub per: Millis,
    pub guards: policy::Guards,
    /// `probe.interval`: how old the last count of unsaved changes may be at an incident's
    /// start.
    pub probe_interval: Millis,
}

impl Rules {
    /// `dry_run` is forced on by `--dry-run`, whatever the file says.
    pub fn from_policy(p: &Policy, force_dry_run: bool) -> Rules {
        let ms = |d: std::time::Duration| d.as_millis() as Millis;
        Rules {
            instance: p.instance.clone(),
            policy_hash: p.content_hash.clone(),
            dry_run: force_dry_run || p.mode == Mode::DryRun,
            kill_after: ms(p.on_busy.kill_after),
            wait: ms(p.on_busy.on_unkillable.wait),
            then: p.on_busy.on_unkillable.then,
            ask_timeout: ms(p.on_busy.on_unkillable.ask_timeout),
            ask_default: p.on_busy.on_unkillable.ask_default,
            force: p.on_busy.on_unkillable.force,
            shutdown_replicated: p.on_busy.on_unkillable.shutdown_replicated,
            failover_fallback: p.on_busy.on_unkillable.failover.fallback,
            failover_timeout: ms(p.on_busy.on_unkillable.failover.timeout),
            failover_max_lag: p.on_busy.on_unkillable.failover.max_lag,
            sentinel_master: p.topology.sentinel.as_ref().map(|s| s.master.clone()),
            replicas: p.topology.replicas.clone(),
            fence: p.topology.fence,
            scripts: p.on_busy.scripts.clone(),
            function_rules: p.on_busy.names_functions(),
            identify_within: ms(p.on_busy.identify_within),
            server_log: p.on_busy.server_log.is_some(),
            eval_rules: p.on_busy.eval_log().is_some(),
            local_server: p.redis.endpoint.is_local(),
            hang_after: ms(p.on_hang.after),
            hang_signal: p.on_hang.signal,
            signal_after: ms(p.on_hang.signal_after),
            max_shutdowns: p.limits.max_shutdowns,
            per: ms(p.limits.per),
            guards: p.guards.clone(),
            probe_interval: ms(p.probe.interval),
        }
    }
}
