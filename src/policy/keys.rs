//! Every policy key, its default and what it means: the single source for the validator's list
//! of allowed keys and for the README's policy reference (a test compares the two).

/// One documented key. `path` uses `.` between levels and `[]` for list items.
pub struct KeyDoc {
    pub path: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

/// Every leaf key a policy file may hold. Sections are the prefixes of these paths.
pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        path: "instance",
        default: "required",
        doc: "Unique name of the Redis instance; used in audit records, webhooks, metrics. Letters, digits, `.`, `_`, `-`.",
    },
    KeyDoc {
        path: "redis.url",
        default: "required",
        doc: "`redis://host:port`, `rediss://host:port` (TLS) or `unix:///path/to/redis.sock`. No password and no database in the URL.",
    },
    KeyDoc {
        path: "redis.username",
        default: "none (the `default` user)",
        doc: "ACL user busyguard authenticates as.",
    },
    KeyDoc {
        path: "redis.password_file",
        default: "none",
        doc: "File holding the password (first line). Read at load; unreadable is an error.",
    },
    KeyDoc {
        path: "redis.password_env",
        default: "none",
        doc: "Environment variable holding the password. Unset is an error.",
    },
    KeyDoc {
        path: "redis.connect_timeout",
        default: "1s",
        doc: "Time allowed to open a connection and authenticate.",
    },
    KeyDoc {
        path: "mode",
        default: "enforce",
        doc: "`enforce` acts; `dry-run` decides and records everything with `dry_run: true` and sends nothing.",
    },
    KeyDoc {
        path: "probe.interval",
        default: "100ms",
        doc: "Time between PINGs while the server answers. A PING that gets no answer stays outstanding, so BUSY is seen the moment the threshold passes whatever this is.",
    },
    KeyDoc {
        path: "probe.snapshot_every",
        default: "10s",
        doc: "How often the healthy snapshot (INFO, CONFIG GET) the decisions rest on is refreshed.",
    },
    KeyDoc {
        path: "on_busy.kill_after",
        default: "0s",
        doc: "Grace after the first BUSY reply before SCRIPT KILL or FUNCTION KILL (chosen from the BUSY text).",
    },
    KeyDoc {
        path: "on_busy.on_unkillable.wait",
        default: "2m",
        doc: "Recovery budget, counted from the first BUSY reply, for a script that cannot be killed (it already wrote, or a module is busy).",
    },
    KeyDoc {
        path: "on_busy.on_unkillable.then",
        default: "notify",
        doc: "At the end of the budget: `shutdown` (SHUTDOWN NOSAVE, version-aware) or `notify` (never shut down).",
    },
    KeyDoc {
        path: "on_busy.on_unkillable.force",
        default: "false",
        doc: "Add FORCE to the shutdown (7.0+), needed while the first AOF is still being written.",
    },
    KeyDoc {
        path: "on_busy.on_unkillable.shutdown_replicated",
        default: "false",
        doc: "Allow the shutdown of a replica replaying its master's script (UNKILLABLE \"... in the context of replication\"). Off: such a script has already ended on the master; it is waited out and notified, never shut down.",
    },
    KeyDoc {
        path: "on_hang.after",
        default: "30s",
        doc: "Silence (an outstanding PING, no BUSY) for this long opens a hang incident that notifies. Keep it above the server's busy threshold.",
    },
    KeyDoc {
        path: "on_hang.signal",
        default: "none",
        doc: "`none`, or `sigkill` to kill a hung local redis-server (pid from the healthy snapshot, checked against pid reuse). Needs a local URL.",
    },
    KeyDoc {
        path: "on_hang.signal_after",
        default: "2m",
        doc: "Silence before the signal is sent; at least `on_hang.after`.",
    },
    KeyDoc {
        path: "limits.max_shutdowns",
        default: "1",
        doc: "Shutdowns allowed per instance within `limits.per`; beyond it escalation is withheld and recorded.",
    },
    KeyDoc {
        path: "limits.per",
        default: "1h",
        doc: "The window of `limits.max_shutdowns`.",
    },
    KeyDoc {
        path: "guards.max_unsaved_changes",
        default: "off",
        doc: "Withhold a shutdown of an RDB-only instance (AOF off) with more unsaved changes than this.",
    },
    KeyDoc {
        path: "guards.keep_primary_with_replicas",
        default: "false",
        doc: "Withhold a shutdown of a primary that has replicas attached (let failover handle it).",
    },
    KeyDoc {
        path: "notify[].slack.url",
        default: "none",
        doc: "Slack incoming-webhook URL inline (warned about: prefer `url_file`).",
    },
    KeyDoc {
        path: "notify[].slack.url_file",
        default: "none",
        doc: "File holding the Slack webhook URL.",
    },
    KeyDoc {
        path: "notify[].slack.url_env",
        default: "none",
        doc: "Environment variable holding the Slack webhook URL.",
    },
    KeyDoc {
        path: "notify[].slack.events",
        default: "every incident event",
        doc: "Only these events (a list of event names) reach this receiver.",
    },
    KeyDoc {
        path: "notify[].slack.min_severity",
        default: "info",
        doc: "Only events of this severity or higher: `info`, `warning`, `error`, `critical` (see Notifications).",
    },
    KeyDoc {
        path: "notify[].slack.max_age",
        default: "1h",
        doc: "An event still undelivered this long after it happened is given up (`notify_failed` in the trail).",
    },
    KeyDoc {
        path: "notify[].pagerduty.routing_key",
        default: "none",
        doc: "PagerDuty Events API v2 routing key inline (warned about).",
    },
    KeyDoc {
        path: "notify[].pagerduty.routing_key_file",
        default: "none",
        doc: "File holding the routing key.",
    },
    KeyDoc {
        path: "notify[].pagerduty.routing_key_env",
        default: "none",
        doc: "Environment variable holding the routing key.",
    },
    KeyDoc {
        path: "notify[].pagerduty.events_url",
        default: "https://events.pagerduty.com/v2/enqueue",
        doc: "Events API endpoint.",
    },
    KeyDoc {
        path: "notify[].pagerduty.severity_busy",
        default: "warning",
        doc: "PagerDuty severity of the trigger when an incident opens (BUSY, hang, unreachable).",
    },
    KeyDoc {
        path: "notify[].pagerduty.severity_unkillable",
        default: "error",
        doc: "Severity of the new trigger when the script is unkillable.",
    },
    KeyDoc {
        path: "notify[].pagerduty.severity_escalated",
        default: "critical",
        doc: "Severity of the trigger on a shutdown, a withheld escalation or a failed action.",
    },
    KeyDoc {
        path: "notify[].pagerduty.events",
        default: "every incident event",
        doc: "Only these events (a list of event names) reach this receiver.",
    },
    KeyDoc {
        path: "notify[].pagerduty.min_severity",
        default: "info",
        doc: "Only events of this severity or higher: `info`, `warning`, `error`, `critical` (see Notifications).",
    },
    KeyDoc {
        path: "notify[].pagerduty.max_age",
        default: "1h",
        doc: "An event still undelivered this long after it happened is given up (`notify_failed` in the trail).",
    },
    KeyDoc {
        path: "notify[].webhook.url",
        default: "none",
        doc: "Receiver URL of a Standard Webhooks 1.0 signed webhook inline (warned about: prefer `url_file`).",
    },
    KeyDoc {
        path: "notify[].webhook.url_file",
        default: "none",
        doc: "File holding the receiver URL.",
    },
    KeyDoc {
        path: "notify[].webhook.url_env",
        default: "none",
        doc: "Environment variable holding the receiver URL.",
    },
    KeyDoc {
        path: "notify[].webhook.secret",
        default: "none",
        doc: "Signing secret `whsec_<base64>` inline (warned about).",
    },
    KeyDoc {
        path: "notify[].webhook.secret_file",
        default: "none",
        doc: "File holding the signing secret.",
    },
    KeyDoc {
        path: "notify[].webhook.secret_env",
        default: "none",
        doc: "Environment variable holding the signing secret.",
    },
    KeyDoc {
        path: "notify[].webhook.events",
        default: "every incident event",
        doc: "Only these events (a list of event names) reach this receiver.",
    },
    KeyDoc {
        path: "notify[].webhook.min_severity",
        default: "info",
        doc: "Only events of this severity or higher: `info`, `warning`, `error`, `critical` (see Notifications).",
    },
    KeyDoc {
        path: "notify[].webhook.max_age",
        default: "1h",
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
