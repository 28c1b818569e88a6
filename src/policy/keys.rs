//! Every policy key, its default, its bounds and what it means: the single source for the
//! validator's allowed keys, defaults and limits, and for the README's policy reference (a test
//! compares the two). A default or a bound is written here once; the validator reads it from
//! here.

use std::time::Duration;

use crate::event::Severity;
use crate::model::kinds::{Resort, Then};

/// One documented key. `path` uses `.` between levels and `[]` for list items.
pub struct KeyDoc {
    pub path: &'static str,
    pub default: Default,
    pub bounds: Bounds,
    pub doc: &'static str,
}

/// What applies when a key is not written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Default {
    Required,
    /// Nothing is set; the text says what that means.
    Unset(&'static str),
    Duration(Duration),
    Bool(bool),
    Count(u64),
    /// A word of a choice, or a fixed text such as a URL.
    Word(&'static str),
}

/// What values make sense; anything else is refused with the bounds in the message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bounds {
    None,
    Duration {
        min: Duration,
        max: Duration,
    },
    Count {
        max: u64,
    },
    Chars {
        max: usize,
    },
    /// One of these words (the validator refuses any other; the docs list them).
    Words(&'static [&'static str]),
}

impl KeyDoc {
    /// The default as the README shows it.
    pub fn default_text(&self) -> String {
        match self.default {
            Default::Required => "required".into(),
            Default::Unset(text) | Default::Word(text) => text.into(),
            Default::Duration(d) => humantime::format_duration(d).to_string(),
            Default::Bool(b) => b.to_string(),
            Default::Count(n) => n.to_string(),
        }
    }

    /// The bounds as the README and the validator's messages say them.
    pub fn bounds_text(&self) -> Option<String> {
        match self.bounds {
            Bounds::None => None,
            Bounds::Duration { min, max } => Some(format!(
                "from {} to {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            )),
            Bounds::Count { max } => Some(format!("from 0 to {max}")),
            Bounds::Chars { max } => Some(format!("at most {max} characters")),
            Bounds::Words(words) => Some(format!(
                "one of {}",
                words
                    .iter()
                    .map(|w| format!("`{w}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

/// The entry of a key (by its table path, e.g. `notify[].slack.max_age`).
pub fn get(path: &str) -> Option<&'static KeyDoc> {
    KEYS.iter().find(|k| k.path == path)
}

/// Every leaf key a policy file may hold. Sections are the prefixes of these paths.
/// The policy reference as a Markdown page (docs/policy-reference.md): one row per key with its
/// default, meaning and bounds, the same table `busyguard-policy(5)` is made from.
pub fn markdown_reference() -> String {
    let mut page = String::from(
        "# Policy reference\n\n\
         Generated from the validator's key table (`src/policy/keys.rs`) by \
         `cargo run -q --example gen-docs -- --policy-reference > docs/policy-reference.md`; \
         the same table makes `busyguard-policy(5)`, and a test fails if this page differs.\n\n\
         | key | default | meaning |\n|---|---|---|\n",
    );
    for key in KEYS {
        let bounds = key
            .bounds_text()
            .map(|b| format!(" Bounds: {b}."))
            .unwrap_or_default();
        page.push_str(&format!(
            "| `{}` | {} | {}{bounds} |\n",
            key.path,
            key.default_text(),
            key.doc.replace('|', "\\|")
        ));
    }
    page.push_str(
        "\n`notify` is a list; each item names one receiver (`- slack: {...}`, \
         `- pagerduty: {...}`, `- webhook: {...}`). Secrets come from `*_file` (first line) or \
         `*_env`; an inline secret is accepted with a warning from `check`.\n",
    );
    page
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        path: "instance",
        default: Default::Required,
        bounds: Bounds::Chars { max: 128 },
        doc: "Unique name of the Redis instance; used in audit records, webhooks, metrics. Letters, digits, `.`, `_`, `-`.",
    },
    KeyDoc {
        path: "runbook_url",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "A runbook for this instance (http:// or https://), linked from Slack messages and PagerDuty events.",
    },
    KeyDoc {
        path: "redis.url",
        default: Default::Required,
        bounds: Bounds::None,
        doc: "`redis://host:port`, `rediss://host:port` (TLS) or `unix:///path/to/redis.sock`. No password and no database in the URL.",
    },
    KeyDoc {
        path: "redis.username",
        default: Default::Unset("none (the `default` user)"),
        bounds: Bounds::None,
        doc: "ACL user busyguard authenticates as.",
    },
    KeyDoc {
        path: "redis.password_file",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "File holding the password (first line). Read at load; unreadable is an error.",
    },
    KeyDoc {
        path: "redis.password_env",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "Environment variable holding the password. Unset is an error.",
    },
    KeyDoc {
        path: "redis.connect_timeout",
        default: Default::Duration(Duration::from_secs(1)),
        bounds: Bounds::Duration {
            min: Duration::from_millis(10),
            max: Duration::from_secs(60),
        },
        doc: "Time allowed to open a connection and authenticate.",
    },
    KeyDoc {
        path: "redis.tls.ca_file",
        default: Default::Unset("the system's trusted roots"),
        bounds: Bounds::None,
        doc: "PEM file of the CA (or CAs) that signed the server's certificate (`rediss://` only). Trusted for this server alone: the notifiers keep the system's roots.",
    },
    KeyDoc {
        path: "redis.tls.cert_file",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "PEM client certificate (chain) for servers with `tls-auth-clients yes`; needs `key_file`.",
    },
    KeyDoc {
        path: "redis.tls.key_file",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "PEM private key of `cert_file` (a secret: readable only by busyguard, e.g. through `LoadCredential=`).",
    },
    KeyDoc {
        path: "redis.tls.server_name",
        default: Default::Unset("the URL's host"),
        bounds: Bounds::None,
        doc: "The DNS name the server's certificate must hold, when the URL names an IP address or another name.",
    },
    KeyDoc {
        path: "redis.commands.info",
        default: Default::Unset("`INFO`"),
        bounds: Bounds::None,
        doc: "The name `rename-command` gave INFO (the healthy snapshot) in redis.conf; `\"\"` when it is disabled there.",
    },
    KeyDoc {
        path: "redis.commands.config",
        default: Default::Unset("`CONFIG`"),
        bounds: Bounds::None,
        doc: "The name `rename-command` gave CONFIG (CONFIG GET in the snapshot) in redis.conf; `\"\"` when it is disabled there.",
    },
    KeyDoc {
        path: "redis.commands.script",
        default: Default::Unset("`SCRIPT`"),
        bounds: Bounds::None,
        doc: "The name `rename-command` gave SCRIPT (SCRIPT KILL) in redis.conf; `\"\"` when it is disabled there.",
    },
    KeyDoc {
        path: "redis.commands.function",
        default: Default::Unset("`FUNCTION`"),
        bounds: Bounds::None,
        doc: "The name `rename-command` gave FUNCTION (FUNCTION KILL, FUNCTION STATS) in redis.conf; `\"\"` when it is disabled there.",
    },
    KeyDoc {
        path: "redis.commands.shutdown",
        default: Default::Unset("`SHUTDOWN`"),
        bounds: Bounds::None,
        doc: "The name `rename-command` gave SHUTDOWN (the escalation) in redis.conf; `\"\"` when it is disabled there.",
    },
    KeyDoc {
        path: "redis.commands.slowlog",
        default: Default::Unset("`SLOWLOG`"),
        bounds: Bounds::None,
        doc: "The name `rename-command` gave SLOWLOG (early warnings, forensics) in redis.conf; `\"\"` when it is disabled there.",
    },
    KeyDoc {
        path: "redis.commands.acl",
        default: Default::Unset("`ACL`"),
        bounds: Bounds::None,
        doc: "The name `rename-command` gave ACL (ACL WHOAMI and ACL LIST in `status`) in redis.conf; `\"\"` when it is disabled there.",
    },
    KeyDoc {
        path: "topology.replicas",
        default: Default::Unset("none: no replica is connected to"),
        bounds: Bounds::None,
        doc: "The replicas busyguard may connect to, `[10.0.0.8:6379, redis-b.internal:6379]` (at most 16), reached like `redis.url` (its TLS; its credentials, unless an entry is a mapping with its own). Only these are watched for a takeover, asked their offset and promoted by `then: failover`: a replica the primary's INFO lists is a claim any client allowed REPLCONF can make, and busyguard never sends credentials to an address a server announced. A listed name matches the INFO entry of any address it resolves to.",
    },
    KeyDoc {
        path: "topology.replicas[].address",
        default: Default::Unset("required in a replica written as a mapping"),
        bounds: Bounds::None,
        doc: "`host:port` of a replica with credentials of its own (`{address: 10.0.0.8:6379, username: busyguard, password_file: \"${CREDENTIALS_DIRECTORY}/replica-b\"}`).",
    },
    KeyDoc {
        path: "topology.replicas[].username",
        default: Default::Unset("`redis.username`, when no password is given here"),
        bounds: Bounds::None,
        doc: "ACL user on this replica (needs a password beside it).",
    },
    KeyDoc {
        path: "topology.replicas[].password_file",
        default: Default::Unset("`redis.password_file`"),
        bounds: Bounds::None,
        doc: "File holding this replica's own password (first line): a replica's host then never learns the primary's.",
    },
    KeyDoc {
        path: "topology.replicas[].password_env",
        default: Default::Unset("`redis.password_env`"),
        bounds: Bounds::None,
        doc: "Environment variable holding this replica's own password.",
    },
    KeyDoc {
        path: "topology.fence",
        default: Default::Bool(false),
        bounds: Bounds::None,
        doc: "Fence this server (`REPLICAOF` the new primary) when it answers as a primary after a failover busyguard did not ask for (Sentinel's own, a replica promoted by hand), under `then: shutdown` or `ask`. Under `then: failover` the fence is part of the failover and always on; under `then: notify` nothing is ever sent (a split brain is recorded and paged). Either way the new primary must be one of `topology.replicas` that busyguard itself saw take over from this server (ROLE master, this server's replication ID as its `master_replid2`), asked again just before the fence leaves.",
    },
    KeyDoc {
        path: "topology.sentinel.master",
        default: Default::Unset("required with `topology.sentinel`"),
        bounds: Bounds::None,
        doc: "The name Sentinel knows this primary by (`sentinel monitor <name> ...`).",
    },
    KeyDoc {
        path: "topology.sentinel.urls",
        default: Default::Unset("required with `topology.sentinel`"),
        bounds: Bounds::None,
        doc: "One or more sentinels, `[redis://10.0.0.5:26379, ...]` (`rediss://` with `topology.sentinel.tls`). `status` asks each for its view of the primary.",
    },
    KeyDoc {
        path: "topology.sentinel.username",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "ACL user on the sentinels (needs a password beside it).",
    },
    KeyDoc {
        path: "topology.sentinel.password_file",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "File holding the sentinels' password (first line).",
    },
    KeyDoc {
        path: "topology.sentinel.password_env",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "Environment variable holding the sentinels' password.",
    },
    KeyDoc {
        path: "topology.sentinel.connect_timeout",
        default: Default::Duration(Duration::from_secs(1)),
        bounds: Bounds::Duration {
            min: Duration::from_millis(10),
            max: Duration::from_secs(60),
        },
        doc: "Time allowed to open a connection to a sentinel and authenticate.",
    },
    KeyDoc {
        path: "topology.sentinel.tls.ca_file",
        default: Default::Unset("the system's trusted roots"),
        bounds: Bounds::None,
        doc: "As `redis.tls.ca_file`, for sentinels that speak TLS.",
    },
    KeyDoc {
        path: "topology.sentinel.tls.cert_file",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "As `redis.tls.cert_file`, for sentinels that speak TLS.",
    },
    KeyDoc {
        path: "topology.sentinel.tls.key_file",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "As `redis.tls.key_file`, for sentinels that speak TLS.",
    },
    KeyDoc {
        path: "topology.sentinel.tls.server_name",
        default: Default::Unset("the URL's host"),
        bounds: Bounds::None,
        doc: "As `redis.tls.server_name`, for sentinels that speak TLS.",
    },
    KeyDoc {
        path: "mode",
        default: Default::Word("enforce"),
        bounds: Bounds::Words(&["enforce", "dry-run"]),
        doc: "`enforce` acts; `dry-run` decides and records everything with `dry_run: true` and sends nothing.",
    },
    KeyDoc {
        path: "probe.interval",
        default: Default::Duration(Duration::from_millis(100)),
        bounds: Bounds::Duration {
            min: Duration::from_millis(10),
            max: Duration::from_secs(60),
        },
        doc: "Time between PINGs while the server answers. A PING that gets no answer stays outstanding, so BUSY is seen the moment the threshold passes whatever this is.",
    },
    KeyDoc {
        path: "probe.snapshot_every",
        default: Default::Duration(Duration::from_secs(10)),
        bounds: Bounds::Duration {
            min: Duration::from_secs(1),
            max: Duration::from_secs(3600),
        },
        doc: "How often the healthy snapshot (INFO, CONFIG GET) the decisions rest on is refreshed.",
    },
    KeyDoc {
        path: "on_busy.kill_after",
        default: Default::Duration(Duration::ZERO),
        bounds: Bounds::Duration {
            min: Duration::ZERO,
            max: Duration::from_secs(3600),
        },
        doc: "Grace after the first BUSY reply before SCRIPT KILL or FUNCTION KILL (chosen from the BUSY text).",
    },
    KeyDoc {
        path: "on_busy.on_unkillable.wait",
        default: Default::Duration(Duration::from_secs(120)),
        bounds: Bounds::Duration {
            min: Duration::from_millis(1),
            max: Duration::from_secs(24 * 3600),
        },
        doc: "Recovery budget, counted from the first BUSY reply, for a script that cannot be killed (it already wrote, or a module is busy).",
    },
    KeyDoc {
        path: "on_busy.on_unkillable.then",
        default: Default::Word("notify"),
        bounds: Bounds::Words(Then::NAMES),
        doc: "At the end of the budget: `shutdown` (SHUTDOWN NOSAVE, version-aware), `notify` (never shut down), `failover` (promote a replica through Sentinel or the Cluster, then shut the busy old primary down), or `ask` (an operator approves within `ask.timeout`, else `ask.default`).",
    },
    KeyDoc {
        path: "on_busy.scripts",
        default: Default::Unset("none: every script gets the instance's ladder"),
        bounds: Bounds::None,
        doc: "Rules for known scripts, at most 32, the first that names the running script wins: `- {function: nightly_*, kill_after: 10m, never_kill: true, on_unkillable: {wait: 2h, then: notify}}`, or `- {sha: <sha1>, kill_after: 30s}` for an EVAL. A rule applies only when the server named the script during the incident: a function by FUNCTION STATS (asked at the first BUSY reply; the kill waits for it up to `on_busy.identify_within`, and a name that comes later still decides the rule's `wait` and `then`), an EVAL by `on_busy.server_log` (only when every slow-script line since the last healthy answer names the same script: a script can write such a line itself). An unknown name, or a script no rule names, gets the instance's ladder.",
    },
    KeyDoc {
        path: "on_busy.identify_within",
        default: Default::Duration(Duration::from_millis(300)),
        bounds: Bounds::Duration {
            min: Duration::ZERO,
            max: Duration::from_secs(5),
        },
        doc: "With rules that name functions: how long a busy FCALL's kill waits for FUNCTION STATS to name it (a busy server answers it only at its script's hook: within a millisecond for a loop of cheap steps, 40 to 300 ms for a job with heavy calls). Past it the kill goes on the instance's ladder, FUNCTION STATS is asked again at each BUSY reply, and a name that comes later still sets the rule's `wait` and `then`.",
    },
    KeyDoc {
        path: "on_busy.scripts[].function",
        default: Default::Unset("required, or `sha`"),
        bounds: Bounds::None,
        doc: "The function's name, or a glob of it (`*` any run of characters, `?` one): letters, digits, `_`, `*`, `?`.",
    },
    KeyDoc {
        path: "on_busy.scripts[].sha",
        default: Default::Unset("required, or `function`"),
        bounds: Bounds::None,
        doc: "An EVAL's SHA1 (40 hex digits, as `SCRIPT LOAD` prints it): named by the server's log only, so it needs `on_busy.server_log`.",
    },
    KeyDoc {
        path: "on_busy.server_log",
        default: Default::Unset("none: an EVAL is never named"),
        bounds: Bounds::None,
        doc: "The server's log file on this host (`logfile` in redis.conf), read at a busy EVAL's first BUSY reply for the line that names it (`Slow script detected ... Script name is: <sha1>`, Redis 7.0.1+ and Valkey; 6.2's `Script SHA1 is`; Valkey's logfmt too). With it every EVAL is named in its incident's records; `sha` rules need it. busyguard's user must be able to read it (on Debian the package adds it to `adm`, the group that reads /var/log/redis); `check` and `status` say when it cannot, and `busyguard_server_log_readable` tells it. A path the server announces is never opened.",
    },
    KeyDoc {
        path: "on_busy.scripts[].kill_after",
        default: Default::Unset("`on_busy.kill_after`"),
        bounds: Bounds::Duration {
            min: Duration::ZERO,
            max: Duration::from_secs(24 * 3600),
        },
        doc: "Grace after the first BUSY reply before FUNCTION KILL, for this function.",
    },
    KeyDoc {
        path: "on_busy.scripts[].never_kill",
        default: Default::Bool(false),
        bounds: Bounds::None,
        doc: "A job that must not be interrupted half-way: no FUNCTION KILL (the withheld kill is recorded); only the rule's wait and its `then` apply.",
    },
    KeyDoc {
        path: "on_busy.scripts[].on_unkillable.wait",
        default: Default::Unset("`on_busy.on_unkillable.wait`"),
        bounds: Bounds::Duration {
            min: Duration::from_millis(1),
            max: Duration::from_secs(7 * 24 * 3600),
        },
        doc: "Recovery budget for this function, counted from the first BUSY reply.",
    },
    KeyDoc {
        path: "on_busy.scripts[].on_unkillable.then",
        default: Default::Unset("`on_busy.on_unkillable.then`"),
        bounds: Bounds::Words(Then::NAMES),
        doc: "What the end of this function's budget does: `shutdown`, `notify`, `failover` or `ask` (their settings are the instance's).",
    },
    KeyDoc {
        path: "on_busy.on_unkillable.failover.fallback",
        default: Default::Word("notify"),
        bounds: Bounds::Words(Resort::NAMES),
        doc: "With `then: failover`: what happens when no failover can be made (no replica online within 10 s of lag in the healthy snapshot, neither `topology.sentinel` nor a Cluster, the request refused, no promotion within `failover.timeout`): `shutdown` (under the guards) or `notify`.",
    },
    KeyDoc {
        path: "on_busy.on_unkillable.failover.timeout",
        default: Default::Duration(Duration::from_secs(10)),
        bounds: Bounds::Duration {
            min: Duration::from_millis(100),
            max: Duration::from_secs(600),
        },
        doc: "With `then: failover`: how long the request and the promotion (a replica answering ROLE `master`, or Sentinel naming another primary) may take before the fallback applies.",
    },
    KeyDoc {
        path: "on_busy.on_unkillable.failover.max_lag",
        default: Default::Count(0),
        bounds: Bounds::None,
        doc: "With `then: failover`: the most bytes a replica may be behind the primary's last known replication offset (a lower bound: the healthy snapshot's) when it is asked, just before the request, after waiting up to half `failover.timeout` for it to catch up. Behind more, no failover goes: the fallback applies. 0: only a replica that has everything the primary was last seen to have.",
    },
    KeyDoc {
        path: "on_busy.on_unkillable.ask.timeout",
        default: Default::Duration(Duration::from_secs(300)),
        bounds: Bounds::Duration {
            min: Duration::from_secs(1),
            max: Duration::from_secs(24 * 3600),
        },
        doc: "With `then: ask`: how long an operator's `busyguard approve` (or `hold`) is awaited once the budget is spent.",
    },
    KeyDoc {
        path: "on_busy.on_unkillable.ask.default",
        default: Default::Word("notify"),
        bounds: Bounds::Words(Resort::NAMES),
        doc: "With `then: ask`: what happens when no one answers within `ask.timeout`: `shutdown` or `notify`.",
    },
    KeyDoc {
        path: "on_busy.on_unkillable.force",
        default: Default::Bool(false),
        bounds: Bounds::None,
        doc: "Add FORCE to the shutdown (7.0+), needed while the first AOF is still being written.",
    },
    KeyDoc {
        path: "on_busy.on_unkillable.shutdown_replicated",
        default: Default::Bool(false),
        bounds: Bounds::None,
        doc: "Allow the shutdown of a replica replaying its master's script (UNKILLABLE \"... in the context of replication\"). Off: such a script has already ended on the master; it is waited out and notified, never shut down.",
    },
    KeyDoc {
        path: "on_hang.after",
        default: Default::Duration(Duration::from_secs(30)),
        bounds: Bounds::Duration {
            min: Duration::from_millis(100),
            max: Duration::from_secs(24 * 3600),
        },
        doc: "Silence (an outstanding PING, no BUSY) for this long opens a hang incident that notifies. Keep it above the server's busy threshold.",
    },
    KeyDoc {
        path: "on_hang.signal",
        default: Default::Word("none"),
        bounds: Bounds::Words(&["none", "sigkill"]),
        doc: "`none`, or `sigkill` to kill a hung local redis-server (pid from the healthy snapshot, checked against pid reuse). Needs a local URL.",
    },
    KeyDoc {
        path: "on_hang.signal_after",
        default: Default::Duration(Duration::from_secs(120)),
        bounds: Bounds::Duration {
            min: Duration::from_millis(100),
            max: Duration::from_secs(24 * 3600),
        },
        doc: "Silence before the signal is sent; at least `on_hang.after`.",
    },
    KeyDoc {
        path: "limits.max_shutdowns",
        default: Default::Count(1),
        bounds: Bounds::Count { max: 1000 },
        doc: "Shutdowns allowed per instance within `limits.per`; beyond it escalation is withheld and recorded.",
    },
    KeyDoc {
        path: "limits.per",
        default: Default::Duration(Duration::from_secs(3600)),
        bounds: Bounds::Duration {
            min: Duration::from_secs(1),
            max: Duration::from_secs(30 * 24 * 3600),
        },
        doc: "The window of `limits.max_shutdowns`.",
    },
    KeyDoc {
        path: "guards.max_unsaved_changes",
        default: Default::Unset("off"),
        bounds: Bounds::None,
        doc: "Withhold a shutdown of an RDB-only instance (AOF off) with more unsaved changes than this.",
    },
    KeyDoc {
        path: "guards.keep_primary_with_replicas",
        default: Default::Bool(false),
        bounds: Bounds::None,
        doc: "Withhold a shutdown of a primary that has replicas attached (let failover handle it).",
    },
    KeyDoc {
        path: "guards.allow_empty_restart",
        default: Default::Bool(false),
        bounds: Bounds::None,
        doc: "Shut down a primary that has replicas and no persistence (`appendonly no`, `save \"\"`) all the same. Off, such a shutdown is withheld: the server restarts empty (a supervisor's `Restart=always`) and its replicas resync to the empty dataset. It needs the role, the replicas and the persistence from a healthy snapshot (this run's, or one restored from the trail); unknown, the shutdown is withheld.",
    },
    KeyDoc {
        path: "early_warning.at",
        default: Default::Word("50%"),
        bounds: Bounds::None,
        doc: "A script in the SLOWLOG that ran at least this long is a `slow_script` warning: a share of the server's busy threshold (`50%`, from 1% to 100%), a duration (`150ms`), or `off`. Read with each healthy snapshot.",
    },
    KeyDoc {
        path: "notify[].slack.url",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "Slack incoming-webhook URL inline (warned about: prefer `url_file`).",
    },
    KeyDoc {
        path: "notify[].slack.url_file",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "File holding the Slack webhook URL.",
    },
    KeyDoc {
        path: "notify[].slack.url_env",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "Environment variable holding the Slack webhook URL.",
    },
    KeyDoc {
        path: "notify[].slack.events",
        default: Default::Unset("every incident event"),
        bounds: Bounds::None,
        doc: "Only these events (a list of event names) reach this receiver.",
    },
    KeyDoc {
        path: "notify[].slack.min_severity",
        default: Default::Word("info"),
        bounds: Bounds::Words(&Severity::NAMES),
        doc: "Only events of this severity or higher: `info`, `warning`, `error`, `critical` (see Notifications).",
    },
    KeyDoc {
        path: "notify[].slack.quiet",
        default: Default::Duration(Duration::from_secs(2)),
        bounds: Bounds::Duration {
            min: Duration::ZERO,
            max: Duration::from_secs(60),
        },
        doc: "An incident's first records are held this long: a script killed within it is told as one message (its outcome). `0s` sends every record as it comes.",
    },
    KeyDoc {
        path: "notify[].slack.unreachable_grace",
        default: Default::Duration(Duration::from_secs(30)),
        bounds: Bounds::Duration {
            min: Duration::ZERO,
            max: Duration::from_secs(3600),
        },
        doc: "An `unreachable` incident is told only if it lasts this long (a restart is not news).",
    },
    KeyDoc {
        path: "notify[].slack.max_age",
        default: Default::Duration(Duration::from_secs(3600)),
        bounds: Bounds::Duration {
            min: Duration::from_secs(1),
            max: Duration::from_secs(7 * 24 * 3600),
        },
        doc: "An event still undelivered this long after it happened is given up (`notify_failed` in the trail).",
    },
    KeyDoc {
        path: "notify[].pagerduty.routing_key",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "PagerDuty Events API v2 routing key inline (warned about).",
    },
    KeyDoc {
        path: "notify[].pagerduty.routing_key_file",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "File holding the routing key.",
    },
    KeyDoc {
        path: "notify[].pagerduty.routing_key_env",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "Environment variable holding the routing key.",
    },
    KeyDoc {
        path: "notify[].pagerduty.events_url",
        default: Default::Word("https://events.pagerduty.com/v2/enqueue"),
        bounds: Bounds::None,
        doc: "Events API endpoint.",
    },
    KeyDoc {
        path: "notify[].pagerduty.severity_busy",
        default: Default::Word("warning"),
        bounds: Bounds::Words(&Severity::NAMES),
        doc: "PagerDuty severity of the trigger when an incident opens (BUSY, hang, unreachable).",
    },
    KeyDoc {
        path: "notify[].pagerduty.severity_unkillable",
        default: Default::Word("error"),
        bounds: Bounds::Words(&Severity::NAMES),
        doc: "Severity of the new trigger when the script is unkillable.",
    },
    KeyDoc {
        path: "notify[].pagerduty.severity_escalated",
        default: Default::Word("critical"),
        bounds: Bounds::Words(&Severity::NAMES),
        doc: "Severity of the trigger on a shutdown, a withheld escalation or a failed action.",
    },
    KeyDoc {
        path: "notify[].pagerduty.page_dry_run",
        default: Default::Bool(false),
        bounds: Bounds::None,
        doc: "Page dry-run records too (off: a staging dry run never pages).",
    },
    KeyDoc {
        path: "notify[].pagerduty.events",
        default: Default::Unset("every incident event"),
        bounds: Bounds::None,
        doc: "Only these events (a list of event names) reach this receiver.",
    },
    KeyDoc {
        path: "notify[].pagerduty.min_severity",
        default: Default::Word("info"),
        bounds: Bounds::Words(&Severity::NAMES),
        doc: "Only events of this severity or higher: `info`, `warning`, `error`, `critical` (see Notifications).",
    },
    KeyDoc {
        path: "notify[].pagerduty.quiet",
        default: Default::Duration(Duration::from_secs(2)),
        bounds: Bounds::Duration {
            min: Duration::ZERO,
            max: Duration::from_secs(60),
        },
        doc: "An incident's first records are held this long: a script killed within it is told as one message (its outcome), and not paged at all. `0s` sends every record as it comes.",
    },
    KeyDoc {
        path: "notify[].pagerduty.unreachable_grace",
        default: Default::Duration(Duration::from_secs(30)),
        bounds: Bounds::Duration {
            min: Duration::ZERO,
            max: Duration::from_secs(3600),
        },
        doc: "An `unreachable` incident is told only if it lasts this long (a restart is not news).",
    },
    KeyDoc {
        path: "notify[].pagerduty.max_age",
        default: Default::Duration(Duration::from_secs(3600)),
        bounds: Bounds::Duration {
            min: Duration::from_secs(1),
            max: Duration::from_secs(7 * 24 * 3600),
        },
        doc: "An event still undelivered this long after it happened is given up (`notify_failed` in the trail).",
    },
    KeyDoc {
        path: "notify[].webhook.url",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "Receiver URL of a Standard Webhooks 1.0 signed webhook inline (warned about: prefer `url_file`).",
    },
    KeyDoc {
        path: "notify[].webhook.url_file",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "File holding the receiver URL.",
    },
    KeyDoc {
        path: "notify[].webhook.url_env",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "Environment variable holding the receiver URL.",
    },
    KeyDoc {
        path: "notify[].webhook.secret",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "Signing secret `whsec_<base64>` inline (warned about).",
    },
    KeyDoc {
        path: "notify[].webhook.secret_file",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "File holding the signing secret.",
    },
    KeyDoc {
        path: "notify[].webhook.secret_env",
        default: Default::Unset("none"),
        bounds: Bounds::None,
        doc: "Environment variable holding the signing secret.",
    },
    KeyDoc {
        path: "notify[].webhook.events",
        default: Default::Unset("every incident event"),
        bounds: Bounds::None,
        doc: "Only these events (a list of event names) reach this receiver.",
    },
    KeyDoc {
        path: "notify[].webhook.min_severity",
        default: Default::Word("info"),
        bounds: Bounds::Words(&Severity::NAMES),
        doc: "Only events of this severity or higher: `info`, `warning`, `error`, `critical` (see Notifications).",
    },
    KeyDoc {
        path: "notify[].webhook.quiet",
        default: Default::Duration(Duration::ZERO),
        bounds: Bounds::Duration {
            min: Duration::ZERO,
            max: Duration::from_secs(60),
        },
        doc: "An incident's first records are held this long: a script killed within it is told as one message (its outcome). `0s` sends every record as it comes.",
    },
    KeyDoc {
        path: "notify[].webhook.unreachable_grace",
        default: Default::Duration(Duration::ZERO),
        bounds: Bounds::Duration {
            min: Duration::ZERO,
            max: Duration::from_secs(3600),
        },
        doc: "An `unreachable` incident is told only if it lasts this long (a restart is not news).",
    },
    KeyDoc {
        path: "notify[].webhook.max_age",
        default: Default::Duration(Duration::from_secs(3600)),
        bounds: Bounds::Duration {
            min: Duration::from_secs(1),
            max: Duration::from_secs(7 * 24 * 3600),
        },
        doc: "An event still undelivered this long after it happened is given up (`notify_failed` in the trail).",
    },
];

/// The keys allowed directly under `section` ("" for the top level), in table order.
pub fn children(section: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for key in KEYS {
        let rest = if section.is_empty() {
            Some(key.path)
        } else {
            key.path
                .strip_prefix(section)
                .and_then(|r| r.strip_prefix('.'))
        };
        if let Some(rest) = rest {
            let first = rest.split(['.', '[']).next().unwrap_or(rest);
            if !out.contains(&first) {
                out.push(first);
            }
        }
    }
    out
}

/// Sections in which `name` is a valid key, for "it belongs under ..." hints.
pub fn sections_holding(name: &str) -> Vec<&'static str> {
    KEYS.iter()
        .filter_map(|k| {
            let (parent, leaf) = k.path.rsplit_once('.')?;
            (leaf == name).then_some(parent)
        })
        .collect()
}
