//! Prometheus metrics: a small registry the watchdogs and delivery tasks update, rendered in
//! the text exposition format at `/metrics` by a minimal HTTP responder (`--metrics ADDR`), which
//! also answers the health endpoints ([`super::health`]) from the same registry.
//!
//! Every per-Redis series names the policy's instance in the label `redis`: `instance` and `job`
//! belong to Prometheus (the busyguard host it scraped), so two hosts watching one server never
//! collide and no `honor_labels` is needed. A series leaves with its policy ([`Metrics::unregister`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::event::detail::WithheldAction;
use crate::event::{Detail, Event, EventKind};
use crate::model::kinds::State;

/// Upper bounds (seconds) of the probe round-trip histogram.
const PROBE_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A histogram's cumulative buckets over `N` upper bounds, its count and its sum.
#[derive(Clone, Copy)]
struct Histogram<const N: usize> {
    buckets: [u64; N],
    count: u64,
    sum: f64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Histogram {
            buckets: [0; N],
            count: 0,
            sum: 0.0,
        }
    }
}

impl<const N: usize> Histogram<N> {
    fn observe(&mut self, bounds: &[f64; N], secs: f64) {
        for (slot, bound) in self.buckets.iter_mut().zip(bounds) {
            if secs <= *bound {
                *slot += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    /// The `_bucket`, `_sum` and `_count` lines of the Redis named `redis`.
    fn render(&self, out: &mut String, name: &str, bounds: &[f64; N], redis: &str) {
        let labels = format!("redis=\"{redis}\"");
        for (bound, n) in bounds.iter().zip(self.buckets) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct Registry {
    /// The instances whose policies are loaded: a watchdog still stopping after a reload removed
    /// its policy must not bring its series back.
    registered: std::collections::BTreeSet<String>,
    /// Whether the server answered the last attempt at all (a reply, an error, a refused AUTH).
    up: BTreeMap<String, bool>,
    state: BTreeMap<String, State>,
    /// When each instance entered its state (Unix seconds), and how long it may answer nothing
    /// before `/livez` calls it dead (`on_hang.after`).
    state_since: BTreeMap<String, f64>,
    liveness_grace: BTreeMap<String, f64>,
    last_reply: BTreeMap<String, f64>,
    /// When the watchdog's loop last ran: it stops moving only when the task is stuck or gone.
    heartbeat: BTreeMap<String, f64>,
    probes: BTreeMap<String, Histogram<{ PROBE_BUCKETS.len() }>>,
    actions: BTreeMap<(String, &'static str, &'static str), u64>,
    incidents: BTreeMap<(String, &'static str), u64>,
    notifications: BTreeMap<(String, &'static str), u64>,
    /// Records the audit trail could not write (a full disk, an I/O error).
    trail_write_failures: u64,
    /// Per instance: script durations seen in the SLOWLOG.
    script_durations: BTreeMap<String, Histogram<{ SCRIPT_BUCKETS.len() }>>,
    /// Slow-script warnings per (instance, script).
    slow_scripts: BTreeMap<(String, String), u64>,
    /// Scripts at or past [`crate::event::NEAR_THRESHOLD`] of the busy threshold that stayed
    /// below it (one that reached it went BUSY, and is an incident, not an early warning).
    near_threshold: BTreeMap<String, u64>,
    /// Whether an operator's pause is in force.
    paused: BTreeMap<String, bool>,
    /// Whether the server's log (`on_busy.server_log`) can be read, for instances that name one.
    server_log_readable: BTreeMap<String, bool>,
    /// The escalation deadline of the incident in flight, Unix seconds (0: none).
    deadline: BTreeMap<String, f64>,
    /// Whether the last load of the policies took every file, and when one last did.
    reload_ok: bool,
    reload_ok_at: f64,
}

/// Every (action, outcome) `busyguard_actions_total` counts, exported at 0 from the start.
const ACTION_OUTCOMES: [(&str, &str); 25] = [
    ("kill", "sent"),
    ("kill", "decided"),
    ("kill", "confirmed"),
    ("kill", "unkillable"),
    ("kill", "withheld"),
    ("kill", "held"),
    ("kill", "failed"),
    ("shutdown", "sent"),
    ("shutdown", "decided"),
    ("shutdown", "confirmed"),
    ("shutdown", "withheld"),
    ("shutdown", "held"),
    ("shutdown", "failed"),
    ("signal", "sent"),
    ("signal", "decided"),
    ("signal", "failed"),
    ("failover", "sent"),
    ("failover", "decided"),
    ("failover", "confirmed"),
    ("failover", "withheld"),
    ("failover", "failed"),
    ("fence", "sent"),
    ("fence", "decided"),
    ("fence", "withheld"),
    ("fence", "failed"),
];

/// Upper bounds (seconds) of the script duration histogram.
const SCRIPT_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Scripts named in `busyguard_slow_scripts_total` per instance; the rest are `other`.
const TOP_SCRIPTS: usize = 10;

/// Shared by every task; each update is a short lock.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Registry>,
}

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Registry)) {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Update the series of `instance`, if its policy is still loaded.
    fn with_redis(&self, instance: &str, f: impl FnOnce(&mut Registry)) {
        self.with(|r| {
            if r.registered.contains(instance) {
                f(r)
            }
        });
    }

    /// A probe got a reply (any reply) after `rtt`.
    pub fn probe_replied(&self, instance: &str, rtt: Duration) {
        let secs = rtt.as_secs_f64();
        let now = crate::model::clock::unix_secs_f64();
        self.with_redis(instance, |r| {
            set(&mut r.up, instance, true);
            set(&mut r.last_reply, instance, now);
            match r.probes.get_mut(instance) {
                Some(h) => h.observe(&PROBE_BUCKETS, secs),
                None => {
                    let mut h = Histogram::default();
                    h.observe(&PROBE_BUCKETS, secs);
                    r.probes.insert(instance.to_string(), h);
                }
            }
        });
    }

    /// The connection is gone or could not be made: no answer at all.
    pub fn probe_lost(&self, instance: &str) {
        self.with_redis(instance, |r| set(&mut r.up, instance, false));
    }

    /// The server answered the connection's set-up, but refused it (WRONGPASS, NOPERM): it is
    /// up, and busyguard is blind to it (the state says `fault`).
    pub fn answered_refusal(&self, instance: &str) {
        let now = crate::model::clock::unix_secs_f64();
        self.with_redis(instance, |r| {
            set(&mut r.up, instance, true);
            set(&mut r.last_reply, instance, now);
        });
    }

    /// The watchdog's loop ran (a probe answered, a connection attempt ended, a beat).
    pub fn heartbeat(&self, instance: &str) {
        let now = crate::model::clock::unix_secs_f64();
        self.with_redis(instance, |r| set(&mut r.heartbeat, instance, now));
    }

    pub fn set_state(&self, instance: &str, state: State) {
        let now = crate::model::clock::unix_secs_f64();
        self.with_redis(instance, |r| {
            if r.state.get(instance) != Some(&state) {
                set(&mut r.state_since, instance, now);
            }
            set(&mut r.state, instance, state)
        });
    }

    /// How long the instance's server may answer nothing before `/livez` says it is dead.
    pub fn set_liveness_grace(&self, instance: &str, grace: Duration) {
        self.with_redis(instance, |r| {
            set(&mut r.liveness_grace, instance, grace.as_secs_f64())
        });
    }

    /// What the health endpoints judge, per loaded instance, at this moment.
    pub fn health_view(&self) -> BTreeMap<String, super::health::Seen> {
        let now = crate::model::clock::unix_secs_f64();
        let r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.registered
            .iter()
            .map(|i| {
                let age =
                    |map: &BTreeMap<String, f64>| map.get(i).map_or(0.0, |t| (now - t).max(0.0));
                let seen = super::health::Seen {
                    state: r.state.get(i).copied(),
                    state_for_s: age(&r.state_since),
                    heartbeat_age_s: age(&r.heartbeat),
                    grace_s: r.liveness_grace.get(i).copied().unwrap_or(0.0),
                };
                (i.clone(), seen)
            })
            .collect()
    }

    /// Count what an event says was done, and incidents opened.
    pub fn record(&self, event: &Event) {
        let instance = event.instance.clone().unwrap_or_default();
        let decided = if event.dry_run { "decided" } else { "sent" };
        let action = match event.kind() {
            EventKind::KillSent => Some(("kill", decided)),
            EventKind::Killed => Some(("kill", "confirmed")),
            EventKind::Unkillable => Some(("kill", "unkillable")),
            EventKind::ShutdownSent => Some(("shutdown", decided)),
            EventKind::ShutdownConfirmed => Some(("shutdown", "confirmed")),
            EventKind::EscalationWithheld => match &event.detail {
                Detail::EscalationWithheld(w) => Some((
                    match w.withheld_action {
                        Some(WithheldAction::Kill) => "kill",
                        Some(WithheldAction::Failover) => "failover",
                        Some(WithheldAction::Shutdown) | None => "shutdown",
                    },
                    // An operator's own pause or hold: `held`, which no alert pages for.
                    match w.by_operator {
                        true => "held",
                        false => "withheld",
                    },
                )),
                _ => None,
            },
            // The fence's record is its `*_sent`: counted as sent (or decided), or as withheld
            // when the policy lets busyguard send nothing.
            EventKind::SplitBrain => match &event.detail {
                Detail::SplitBrain(s) if s.fence.is_some() => Some(("fence", decided)),
                _ => Some(("fence", "withheld")),
            },
            EventKind::SignalSent => Some(("signal", decided)),
            EventKind::FailoverRequested => Some(("failover", decided)),
            EventKind::FailoverCompleted => Some(("failover", "confirmed")),
            EventKind::FailoverFailed => Some(("failover", "failed")),
            EventKind::ActionFailed => match &event.detail {
                Detail::ActionFailed(failed) => Some((failed.action(), "failed")),
                _ => None,
            },
            _ => None,
        };
        let opened = match event.kind() {
            EventKind::BusyDetected => Some("busy"),
            EventKind::HangDetected => Some("hang"),
            EventKind::Unreachable => Some("unreachable"),
            _ => None,
        };
        self.with_redis(&instance, |r| {
            if let Some((a, o)) = action {
                *r.actions.entry((instance.clone(), a, o)).or_default() += 1;
            }
            if let Some(cause) = opened {
                *r.incidents.entry((instance.clone(), cause)).or_default() += 1;
            }
        });
    }

    /// A delivery outcome: `delivered`, `retried` or `given_up`.
    pub fn notification(&self, receiver: &str, outcome: &'static str) {
        self.with(|r| {
            *r.notifications
                .entry((receiver.to_string(), outcome))
                .or_default() += 1;
        });
    }

    /// Every series of an instance exists from the moment it is loaded: counters at 0 (so
    /// `increase()` sees the first event after a start), `up` at 0 and the last reply at 0
    /// until a probe is answered.
    pub fn register(&self, instance: &str) {
        self.with(|r| {
            r.registered.insert(instance.to_string());
            r.near_threshold.entry(instance.to_string()).or_default();
            r.up.entry(instance.to_string()).or_insert(false);
            r.last_reply.entry(instance.to_string()).or_insert(0.0);
            r.paused.entry(instance.to_string()).or_insert(false);
            r.deadline.entry(instance.to_string()).or_insert(0.0);
            r.heartbeat
                .entry(instance.to_string())
                .or_insert_with(crate::model::clock::unix_secs_f64);
            r.probes.entry(instance.to_string()).or_default();
            for (action, outcome) in ACTION_OUTCOMES {
                r.actions
                    .entry((instance.to_string(), action, outcome))
                    .or_default();
            }
            for cause in ["busy", "hang", "unreachable"] {
                r.incidents
                    .entry((instance.to_string(), cause))
                    .or_default();
            }
        });
    }

    /// Every series of an instance leaves with its policy (a reload that removed it), so its
    /// alerts resolve instead of firing on a ghost until the next restart.
    pub fn unregister(&self, instance: &str) {
        self.with(|r| {
            r.registered.remove(instance);
            r.up.remove(instance);
            r.state.remove(instance);
            r.state_since.remove(instance);
            r.liveness_grace.remove(instance);
            r.last_reply.remove(instance);
            r.heartbeat.remove(instance);
            r.probes.remove(instance);
            r.actions.retain(|(i, _, _), _| i != instance);
            r.incidents.retain(|(i, _), _| i != instance);
            r.script_durations.remove(instance);
            r.slow_scripts.retain(|(i, _), _| i != instance);
            r.near_threshold.remove(instance);
            r.paused.remove(instance);
            r.server_log_readable.remove(instance);
            r.deadline.remove(instance);
        });
    }

    /// A receiver's series exist from the moment it is loaded.
    pub fn register_receiver(&self, receiver: &str) {
        self.with(|r| {
            for outcome in ["delivered", "retried", "given_up"] {
                r.notifications
                    .entry((receiver.to_string(), outcome))
                    .or_default();
            }
        });
    }

    /// The outcome of a reload (or of the start's load): whether every file loaded.
    pub fn reloaded(&self, ok: bool) {
        self.with(|r| {
            r.reload_ok = ok;
            if ok {
                r.reload_ok_at = crate::model::clock::unix_secs_f64();
            }
        });
    }

    /// When the escalation of the incident in flight is due (Unix seconds; 0 when none is).
    pub fn set_deadline(&self, instance: &str, unix_s: f64) {
        self.with_redis(instance, |r| set(&mut r.deadline, instance, unix_s));
    }

    /// Whether an operator's pause is in force on the instance.
    /// Whether the server's log can be read (`None`: the policy names none).
    pub fn set_server_log_readable(&self, instance: &str, readable: Option<bool>) {
        self.with_redis(instance, |r| match readable {
            Some(readable) => set(&mut r.server_log_readable, instance, readable),
            None => {
                r.server_log_readable.remove(instance);
            }
        });
    }

    pub fn set_paused(&self, instance: &str, paused: bool) {
        self.with_redis(instance, |r| set(&mut r.paused, instance, paused));
    }

    /// A script the SLOWLOG shows, and whether it was slow enough for a warning (`slow`: its
    /// name) or near the threshold.
    pub fn script_seen(&self, instance: &str, duration: Duration, slow: Option<&str>, near: bool) {
        let secs = duration.as_secs_f64();
        self.with_redis(instance, |r| {
            r.script_durations
                .entry(instance.to_string())
                .or_default()
                .observe(&SCRIPT_BUCKETS, secs);
            if let Some(script) = slow {
                *r.slow_scripts
                    .entry((instance.to_string(), script.to_string()))
                    .or_default() += 1;
            }
            if near {
                *r.near_threshold.entry(instance.to_string()).or_default() += 1;
            }
        });
    }

    /// A record could not be written to the audit trail.
    pub fn trail_write_failed(&self) {
        self.with(|r| r.trail_write_failures += 1);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        head(
            &mut out,
            "busyguard_up",
            "gauge",
            "1 when the server answered the last attempt (a reply, an error, a refused login); 0 when nothing answered",
        );
        for (i, up) in &r.up {
            let _ = writeln!(out, "busyguard_up{{redis=\"{i}\"}} {}", u8::from(*up));
        }
        head(
            &mut out,
            "busyguard_state",
            "gauge",
            "1 for the state the instance is in",
        );
        for (i, state) in &r.state {
            for s in State::ALL {
                let _ = writeln!(
                    out,
                    "busyguard_state{{redis=\"{i}\",state=\"{s}\"}} {}",
                    u8::from(s == state)
                );
            }
        }
        per_instance(
            &mut out,
            ("busyguard_last_reply_timestamp_seconds", "gauge"),
            "When the instance last answered a probe (any reply, BUSY included)",
            r.last_reply.iter().map(|(i, t)| (i, format!("{t:.3}"))),
        );
        per_instance(
            &mut out,
            ("busyguard_watchdog_heartbeat_timestamp_seconds", "gauge"),
            "When the instance's watchdog last ran (it stands still only when the task is stuck)",
            r.heartbeat.iter().map(|(i, t)| (i, format!("{t:.3}"))),
        );
        head(
            &mut out,
            "busyguard_probe_duration_seconds",
            "histogram",
            "Round trip of probe commands that got a reply",
        );
        for (i, h) in &r.probes {
            h.render(
                &mut out,
                "busyguard_probe_duration_seconds",
                &PROBE_BUCKETS,
                i,
            );
        }
        head(
            &mut out,
            "busyguard_actions_total",
            "counter",
            "Kills, shutdowns and signals by outcome (sent, decided in dry-run, confirmed, unkillable, withheld, failed)",
        );
        for ((i, a, o), n) in &r.actions {
            let _ = writeln!(
                out,
                "busyguard_actions_total{{redis=\"{i}\",action=\"{a}\",outcome=\"{o}\"}} {n}"
            );
        }
        head(
            &mut out,
            "busyguard_incidents_total",
            "counter",
            "Incidents opened, by cause",
        );
        for ((i, c), n) in &r.incidents {
            let _ = writeln!(
                out,
                "busyguard_incidents_total{{redis=\"{i}\",cause=\"{c}\"}} {n}"
            );
        }
        head(
            &mut out,
            "busyguard_notifications_total",
            "counter",
            "Notification deliveries by receiver and outcome (delivered, retried, given_up)",
        );
        for ((recv, o), n) in &r.notifications {
            let _ = writeln!(
                out,
                "busyguard_notifications_total{{receiver=\"{recv}\",outcome=\"{o}\"}} {n}"
            );
        }
        head(
            &mut out,
            "busyguard_trail_write_failures_total",
            "counter",
            "Records the audit trail could not write (a full disk, an I/O error); kills still go, shutdowns do not",
        );
        let _ = writeln!(
            out,
            "busyguard_trail_write_failures_total {}",
            r.trail_write_failures
        );
        render_scripts(&r, &mut out);
        per_instance(
            &mut out,
            ("busyguard_escalation_deadline_timestamp_seconds", "gauge"),
            "When the escalation of the incident in flight is due (Unix time; 0 when none is pending)",
            r.deadline.iter().map(|(i, t)| (i, format!("{t:.3}"))),
        );
        head(
            &mut out,
            "busyguard_build_info",
            "gauge",
            "busyguard's version and the commit it was built from",
        );
        let _ = writeln!(
            out,
            "busyguard_build_info{{version=\"{}\",commit=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            crate::COMMIT
        );
        head(
            &mut out,
            "busyguard_config_last_reload_successful",
            "gauge",
            "1 when the last load of the policies (start or SIGHUP) took every file",
        );
        let _ = writeln!(
            out,
            "busyguard_config_last_reload_successful {}",
            u8::from(r.reload_ok)
        );
        head(
            &mut out,
            "busyguard_config_last_reload_success_timestamp_seconds",
            "gauge",
            "When the policies last loaded without an error",
        );
        let _ = writeln!(
            out,
            "busyguard_config_last_reload_success_timestamp_seconds {:.3}",
            r.reload_ok_at
        );

        per_instance(
            &mut out,
            ("busyguard_paused", "gauge"),
            "1 while an operator's pause withholds every action on the instance",
            r.paused.iter().map(|(i, p)| (i, u8::from(*p).to_string())),
        );
        per_instance(
            &mut out,
            ("busyguard_server_log_readable", "gauge"),
            "1 while the server's log (on_busy.server_log) can be read by busyguard, 0 when it cannot: no EVAL is then named and sha rules never apply",
            r.server_log_readable
                .iter()
                .map(|(i, p)| (i, u8::from(*p).to_string())),
        );
        // /proc is read outside the lock: a probe never waits on a scrape's file reads.
        drop(r);
        super::process::ProcessFacts::read().render(&mut out);
        out
    }
}

/// The early-warning series: durations, slow scripts (the top few by count, the rest as
/// `other`, so a stream of distinct scripts cannot grow the series without bound), and scripts
/// near the threshold.
fn render_scripts(r: &Registry, out: &mut String) {
    head(
        out,
        "busyguard_script_duration_seconds",
        "histogram",
        "Durations of scripts (EVAL, EVALSHA, FCALL) seen in the SLOWLOG",
    );
    for (i, h) in &r.script_durations {
        h.render(out, "busyguard_script_duration_seconds", &SCRIPT_BUCKETS, i);
    }
    head(
        out,
        "busyguard_slow_scripts_total",
        "counter",
        "Slow-script warnings by script (the most frequent per instance; the rest as `other`)",
    );
    let mut by_instance: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
    for ((i, script), n) in &r.slow_scripts {
        by_instance.entry(i).or_default().push((script, *n));
    }
    for (i, mut scripts) in by_instance {
        scripts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let other: u64 = scripts.iter().skip(TOP_SCRIPTS).map(|(_, n)| n).sum();
        for (script, n) in scripts.iter().take(TOP_SCRIPTS) {
            let script = label_value(script);
            let _ = writeln!(
                out,
                "busyguard_slow_scripts_total{{redis=\"{i}\",script=\"{script}\"}} {n}"
            );
        }
        if other > 0 {
            let _ = writeln!(
                out,
                "busyguard_slow_scripts_total{{redis=\"{i}\",script=\"other\"}} {other}"
            );
        }
    }
    per_instance(
        out,
        ("busyguard_scripts_near_threshold_total", "counter"),
        "Scripts that ran 80% or more of the busy threshold but ended below it (without going BUSY)",
        r.near_threshold.iter().map(|(i, n)| (i, n.to_string())),
    );
}

/// A series with one value per instance.
fn per_instance<'a>(
    out: &mut String,
    (name, kind): (&str, &str),
    help: &str,
    values: impl Iterator<Item = (&'a String, String)>,
) {
    head(out, name, kind, help);
    for (i, v) in values {
        let _ = writeln!(out, "{name}{{redis=\"{i}\"}} {v}");
    }
}

/// A label value as the exposition format escapes it.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Update a per-instance value; allocates the key only the first time (this runs every probe).
fn set<V>(map: &mut BTreeMap<String, V>, instance: &str, value: V) {
    match map.get_mut(instance) {
        Some(slot) => *slot = value,
        None => {
            map.insert(instance.to_string(), value);
        }
    }
}

/// The `# HELP` and `# TYPE` lines of a metric.
fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
