//! `busyguard simulate`: rehearse a policy without a runaway script. The pure engine runs over a
//! scenario (a small text timeline of what the server says and what operators do) or over the
//! observations a real incident's trail implies, and prints every decision and record it would
//! make, with times. No Redis, no network, no trail written.
//!
//! A scenario, one step per line (`#` starts a comment), times from the start:
//!
//! ```text
//! 0s    pong threshold=200 version=7.0.15 role=master replicas=1 aof=no changes=10
//! 1s    busy script            # script | function | module | unknown
//! 1s    kill unkillable        # ok | unkillable | replicated | notbusy | lost
//! 3s    busy script
//! 3s    shutdown confirmed     # confirmed | refused | failed
//! 4s    pong run_id=b
//! ```
//! Also `silent DURATION`, `unreachable`, `loading`, `fault TEXT`, `function NAME` (what
//! FUNCTION STATS answers after a `busy function`), and the operators' `pause DURATION`,
//! `resume`, `hold`, `release`, `approve`.

use std::path::Path;

use crate::audit::Record;
use crate::engine::{
    At, Engine, FailoverOutcome, Inquiry, KillReply, Millis, Observation, Rules, ShutdownOutcome,
    Steer, Step,
};
use crate::event::Detail;
use crate::event::detail::ActionFailed;
use crate::model::kinds::BusyKind;
use crate::model::slowlog::SlowEntry;
use crate::model::snapshot::Snapshot;
use crate::model::takeover::Successor;
use crate::model::told::{AfterRecovery, RunningFunction};

/// Where simulated time starts on the wall clock (only names incidents).
const WALL_START_MS: u64 = 1_800_000_000_000;

/// One step of a scenario: when, and what.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    Observe(Observation),
    Steer(Steer),
}

/// The canonical BUSY texts, as Redis writes them.
fn busy_text(kind: BusyKind) -> &'static str {
    match kind {
        BusyKind::Script => {
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
        }
        BusyKind::Function => {
            "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
        }
        BusyKind::Module => "BUSY Redis is busy running a module command.",
        BusyKind::Unknown => "BUSY",
    }
}

/// Read a scenario; errors name the line.
pub fn parse(text: &str) -> Result<Vec<(Millis, Input)>, String> {
    Ok(parse_numbered(text)?
        .into_iter()
        .map(|(_, t, input)| (t, input))
        .collect())
}

/// Read a scenario, each step with its line number. Times must not go back: a line written
/// out of order would be replayed where the author did not mean it.
fn parse_numbered(text: &str) -> Result<Vec<(usize, Millis, Input)>, String> {
    let mut steps: Vec<(usize, Millis, Input)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = |msg: String| format!("line {}: {msg}", n + 1);
        let mut words = line.split_whitespace();
        let time = words.next().unwrap_or("");
        let t = humantime::parse_duration(time)
            .map_err(|e| at(format!("`{time}` is not a time ({e})")))?;
        let what = words
            .next()
            .ok_or_else(|| at("a time and then what happens".into()))?;
        let rest: Vec<&str> = words.collect();
        let arg = rest.first().copied().unwrap_or("");
        let input = match what {
            "pong" => Input::Observe(Observation::Pong {
                snapshot: snapshot(&rest).map_err(at)?.map(Box::new),
            }),
            "busy" => {
                let kind = match arg {
                    "script" | "" => BusyKind::Script,
                    "function" => BusyKind::Function,
                    "module" => BusyKind::Module,
                    "unknown" => BusyKind::Unknown,
                    other => return Err(at(format!("`busy {other}`: script, function, module or unknown"))),
                };
                Input::Observe(Observation::Busy {
                    kind,
                    reply: busy_text(kind).into(),
                })
            }
            "kill" => Input::Observe(Observation::KillReply(match arg {
                "ok" => KillReply::Ok,
                "unkillable" => KillReply::Unkillable("UNKILLABLE Sorry the script already executed write commands against the dataset.".into()),
                "replicated" => KillReply::Replicated("UNKILLABLE The busy script was sent by a master instance in the context of replication and cannot be killed.".into()),
                "notbusy" => KillReply::Error("NOTBUSY No scripts in execution right now.".into()),
                "lost" => KillReply::Lost("connection lost".into()),
                other => return Err(at(format!("`kill {other}`: ok, unkillable, replicated, notbusy or lost"))),
            })),
            "shutdown" => Input::Observe(Observation::Shutdown(match arg {
                "confirmed" => ShutdownOutcome::Confirmed { elapsed_ms: 2, command: None, how: None },
                "refused" => ShutdownOutcome::Refused("ERR Errors trying to SHUTDOWN. Check logs.".into()),
                "failed" => ShutdownOutcome::Failed("the server still accepts connections".into()),
                other => return Err(at(format!("`shutdown {other}`: confirmed, refused or failed"))),
            })),
            "failover" => Input::Observe(Observation::Failover(match arg {
                "promoted" => FailoverOutcome::Promoted {
                    successor: Successor {
                        address: rest.get(1).copied().unwrap_or("replica:6379").into(),
                        run_id: "the-promoted-replica".into(),
                        replid2: "this-servers-replication-id".into(),
                    },
                    seen_by: "ROLE and INFO on the replica".into(),
                },
                "failed" => FailoverOutcome::Failed {
                    accepted: true,
                    reason: "no promotion seen within failover.timeout".into(),
                },
                other => return Err(at(format!("`failover {other}`: promoted [HOST:PORT] or failed"))),
            })),
            "silent" => Input::Observe(Observation::Silent {
                for_ms: humantime::parse_duration(arg)
                    .map_err(|e| at(format!("`silent {arg}`: {e}")))?
                    .as_millis() as Millis,
            }),
            "unreachable" => Input::Observe(Observation::Unreachable {
                reason: "connection refused".into(),
            }),
            "loading" => Input::Observe(Observation::Loading),
            // The server's log naming the EVAL that went BUSY.
            "eval" if !arg.is_empty() => Input::Observe(Observation::EvalNamed(Ok(arg.into()))),
            // FUNCTION STATS's answer: the running function's name.
            "function" if !arg.is_empty() => Input::Observe(Observation::RunningFunction(
                RunningFunction::Seen {
                    name: Some(arg.into()),
                    command: None,
                    duration_ms: None,
                },
            )),
            "fault" => Input::Observe(Observation::Fault {
                reply: rest.join(" "),
            }),
            "pause" => Input::Steer(Steer::Pause {
                until_unix_ms: WALL_START_MS
                    + t.as_millis() as u64
                    + humantime::parse_duration(arg)
                        .map_err(|e| at(format!("`pause {arg}`: {e}")))?
                        .as_millis() as u64,
                by: "operator".into(),
                reason: "simulated".into(),
            }),
            "resume" => Input::Steer(Steer::Resume),
            "hold" => Input::Steer(Steer::Hold {
                by: "operator".into(),
                reason: "simulated".into(),
            }),
            "release" => Input::Steer(Steer::Release { now: true }),
            "approve" => Input::Steer(Steer::Approve),
            other => return Err(at(format!("unknown step `{other}`"))),
        };
        let t = t.as_millis() as Millis;
        if let Some((line, before, _)) = steps.last().filter(|(_, before, _)| *before > t) {
            return Err(at(format!(
                "{time} comes before line {line}'s {}: times go forward",
                crate::model::duration::human_ms(*before)
            )));
        }
        steps.push((n + 1, t, input));
    }
    Ok(steps)
}

/// The lines that answer an action the policy never sent before them (a `kill` reply with no
/// kill outstanding, a `shutdown` or `failover` outcome with none asked): the timeline never
/// reaches them, so they change nothing, and the author should know.
fn unreached(steps: &[(usize, Millis, Input)], decided: &[(Millis, Step)]) -> Vec<String> {
    use crate::engine::Action;
    let mut sent: Option<&'static str> = None;
    let mut warnings = Vec::new();
    for ((line, _, input), (_, step)) in steps.iter().zip(decided) {
        let answers = match input {
            Input::Observe(Observation::KillReply(_)) => Some("kill"),
            Input::Observe(Observation::Shutdown(_)) => Some("shutdown"),
            Input::Observe(Observation::Failover(_)) => Some("failover"),
            _ => None,
        };
        if let Some(kind) = answers {
            if sent == Some(kind) {
                sent = None;
            } else {
                warnings.push(format!(
                    "warning: line {line}: a {kind} outcome, but the policy sent no {kind} before it (the timeline never reaches this line; it changed nothing)"
                ));
            }
        }
        match &step.action {
            Some(Action::Kill(_)) => sent = Some("kill"),
            Some(Action::Shutdown(_)) => sent = Some("shutdown"),
            Some(Action::Failover(_)) => sent = Some("failover"),
            _ => {}
        }
    }
    warnings
}

/// `key=value` words as a healthy snapshot (`None` when there are none).
fn snapshot(words: &[&str]) -> Result<Option<Snapshot>, String> {
    if words.is_empty() {
        return Ok(None);
    }
    let mut s = Snapshot {
        server_name: "redis".into(),
        ..Snapshot::default()
    };
    for word in words {
        let (k, v) = word
            .split_once('=')
            .ok_or_else(|| format!("`{word}` is not key=value"))?;
        let num = || {
            v.parse::<u64>()
                .map_err(|_| format!("`{word}`: not a number"))
        };
        match k {
            "threshold" => s.busy_threshold_ms = Some(num()?),
            "version" => s.version = Some(v.into()),
            "role" => s.role = Some(v.into()),
            "replicas" => s.connected_replicas = Some(num()?),
            "aof" => s.aof_enabled = Some(v == "yes"),
            "changes" => s.rdb_changes_since_last_save = Some(num()?),
            "run_id" => s.run_id = Some(v.into()),
            "pid" => s.process_id = Some(num()? as u32),
            "save" => s.save = Some(v.trim_matches('"').into()),
            "cluster" => s.cluster_enabled = Some(v == "yes"),
            "offset" => s.master_repl_offset = Some(num()?),
            // An online replica, `HOST:PORT` or `HOST:PORT/LAG_S`, in sync with the offset.
            "replica" => {
                let (address, lag) = v.split_once('/').unwrap_or((v, "0"));
                let (host, port) = address
                    .rsplit_once(':')
                    .ok_or_else(|| format!("`{word}`: replica=HOST:PORT[/LAG_S]"))?;
                s.replicas.push(format!(
                    "slave{}:ip={host},port={port},state=online,offset=0,lag={lag}",
                    s.replicas.len()
                ));
                s.connected_replicas = Some(s.replicas.len() as u64);
                // The primary's offset, unless the scenario names one: the replicas' own.
                s.master_repl_offset.get_or_insert(0);
            }
            other => return Err(format!("unknown snapshot key `{other}`")),
        }
    }
    Ok(Some(s))
}

/// Run the engine over `steps`: each input with the step it produced. What the engine asks of
/// the server is answered by the next step when it is such an answer (a trail's forensics),
/// else as not asked.
pub fn run(rules: Rules, steps: &[(Millis, Input)]) -> Vec<(Millis, Step)> {
    let mut engine = Engine::new(rules);
    let mut out = Vec::new();
    for (i, (t, input)) in steps.iter().enumerate() {
        let at = At {
            mono: *t,
            unix_ms: WALL_START_MS + t,
        };
        let mut step = match input {
            Input::Observe(o) => engine.observe(at, o.clone()),
            Input::Steer(s) => {
                if let Err(e) = engine.steer(at, s.clone()) {
                    tracing::warn!("at {t} ms: {e}");
                }
                Step::default()
            }
        };
        while let Some(inquiry) = step.inquiry.take() {
            if steps
                .get(i + 1)
                .is_some_and(|(_, next)| answers(next, &inquiry))
            {
                break;
            }
            let mut more = engine.observe(at, not_asked(&inquiry));
            // The candidates' offsets come beside the probe, and the BUSY reply after them
            // decides: an idealized probe has one at the same instant.
            if let (
                Inquiry::ReplicaOffsets { .. },
                Input::Observe(busy @ Observation::Busy { .. }),
            ) = (&inquiry, input)
            {
                let next = engine.observe(at, busy.clone());
                more.events.extend(next.events);
                more.action = more.action.or(next.action);
                more.inquiry = more.inquiry.or(next.inquiry);
            }
            step.events.extend(more.events);
            step.action = step.action.or(more.action);
            step.inquiry = more.inquiry;
        }
        out.push((*t, step));
    }
    out
}

/// Whether `input` is the server's answer to `inquiry`.
fn answers(input: &Input, inquiry: &Inquiry) -> bool {
    match (inquiry, input) {
        (
            Inquiry::RunningFunction | Inquiry::Identify { .. },
            Input::Observe(Observation::RunningFunction(_)),
        ) => true,
        (Inquiry::IdentifyEval, Input::Observe(Observation::EvalNamed(_))) => true,
        (Inquiry::AfterRecovery, Input::Observe(Observation::AfterRecovery(_))) => true,
        (Inquiry::ReplicaOffsets { .. }, Input::Observe(Observation::ReplicaOffsets(_))) => true,
        (
            Inquiry::RunningFunction
            | Inquiry::Identify { .. }
            | Inquiry::IdentifyEval
            | Inquiry::AfterRecovery
            | Inquiry::ReplicaOffsets { .. },
            _,
        ) => false,
    }
}

/// The answer to an inquiry a simulation has no server to ask: the replicas, as caught up
/// as the scenario's snapshot says.
fn not_asked(inquiry: &Inquiry) -> Observation {
    const WHY: &str = "not asked in a simulation";
    match inquiry {
        Inquiry::RunningFunction | Inquiry::Identify { .. } => {
            Observation::RunningFunction(RunningFunction::Unknown(WHY.into()))
        }
        Inquiry::AfterRecovery => Observation::AfterRecovery(Err(WHY.into())),
        Inquiry::IdentifyEval => Observation::EvalNamed(Err(WHY.into())),
        Inquiry::ReplicaOffsets {
            replicas,
            primary_offset,
            ..
        } => Observation::ReplicaOffsets(
            replicas
                .iter()
                .map(|r| (r.clone(), Some(*primary_offset)))
                .collect(),
        ),
    }
}

/// The decisions as lines: time, event, what it says, and the action sent.
pub fn render(steps: &[(Millis, Step)]) -> String {
    let mut out = String::new();
    for (t, step) in steps {
        for e in &step.events {
            let dry = if e.dry_run {
                " (dry run: not sent)"
            } else {
                ""
            };
            out.push_str(&format!(
                "{:>9}  {:<20} {}{dry}\n",
                format!("{:.3}s", *t as f64 / 1000.0),
                e.kind().name(),
                crate::commands::show::summary(&e.detail)
            ));
        }
        if let Some(action) = &step.action {
            out.push_str(&format!("{:>9}  -> {}\n", "", action_text(action)));
        }
    }
    out
}

fn action_text(action: &crate::engine::Action) -> String {
    use crate::engine::Action;
    match action {
        Action::Kill(k) => k.text(),
        Action::Shutdown(s) => match s.abort_first {
            true => format!("SHUTDOWN ABORT, then {}", s.text()),
            false => s.text(),
        },
        Action::Signal(target) => format!("SIGKILL to pid {}", target.pid),
        Action::Fence(plan) => plan.text(),
        Action::Failover(plan) => match plan.via {
            crate::model::kinds::FailoverVia::Sentinel => {
                format!("SENTINEL FAILOVER {}", plan.target)
            }
            crate::model::kinds::FailoverVia::Cluster => {
                format!("CLUSTER FAILOVER FORCE to {}", plan.target)
            }
        },
    }
}

/// The observations one instance's records imply, in order, with their times: what the server
/// said that led to each decision. Replaying them reproduces the decisions.
pub fn from_trail(path: &Path, instance: &str) -> std::io::Result<Vec<(Millis, Input)>> {
    use std::io::BufRead;
    let file = std::fs::File::open(path)?;
    let records: Vec<Record> = std::io::BufReader::new(file)
        .split(b'\n')
        .filter_map(|l| Record::parse(&l.ok()?).ok())
        .filter(|r| r.event.instance.as_deref() == Some(instance))
        .collect();
    let start = records
        .iter()
        .filter_map(Record::unix_ms)
        .min()
        .unwrap_or(0);
    // What FUNCTION STATS named in each incident, as its records keep it.
    let functions: std::collections::HashMap<&str, RunningFunction> = records
        .iter()
        .filter_map(|r| {
            Some((
                r.event.incident.as_deref()?,
                told_function(&r.event.detail)?,
            ))
        })
        .collect();
    let mut steps: Vec<(Millis, Input)> = Vec::new();
    let mut last_busy_at: Option<u64> = None;
    // The healthy snapshot the earliest decision rested on, as the engine held it then.
    let mut held: Option<Snapshot> = None;
    for r in &records {
        let at = r.unix_ms().unwrap_or(start);
        let t = at.saturating_sub(start) + 1;
        let busy = |reply: &str| {
            Input::Observe(Observation::Busy {
                kind: BusyKind::from_error(reply).unwrap_or(BusyKind::Unknown),
                reply: reply.to_string(),
            })
        };
        if let (None, Some(inputs)) = (&held, r.event.detail.inputs())
            && let Some(s) = &inputs.snapshot
        {
            // The trail keeps no counters: they start at zero, and forensics say what grew.
            let s = Snapshot {
                kill_calls: Some(0),
                busy_errors: Some(0),
                unkillable_errors: Some(0),
                rejected_calls: Some(0),
                ..s.clone()
            };
            held = Some(s.clone());
            steps.insert(
                0,
                (
                    0,
                    Input::Observe(Observation::Pong {
                        snapshot: Some(Box::new(s.clone())),
                    }),
                ),
            );
        }
        let mut push = |input: Input| steps.push((t, input));
        let same_step = last_busy_at == Some(at);
        match &r.event.detail {
            Detail::BusyDetected(d) => {
                push(busy(&d.reply));
                let incident = r.event.incident.as_deref().unwrap_or_default();
                if let Some(f) = functions.get(incident) {
                    push(Input::Observe(Observation::RunningFunction(f.clone())));
                }
                last_busy_at = Some(at);
            }
            Detail::KillSent(d) if !same_step => push(busy(&d.reply_seen)),
            Detail::ShutdownSent(d) if !same_step => push(busy(&d.reply_seen)),
            Detail::FailoverRequested(d) if !same_step => push(busy(&d.reply_seen)),
            Detail::FailoverCompleted(d) => push(Input::Observe(Observation::Failover(
                FailoverOutcome::Promoted {
                    successor: Successor {
                        address: d.new_primary.clone(),
                        run_id: d.new_primary_run_id.clone().unwrap_or_default(),
                        replid2: d.new_primary_replid2.clone().unwrap_or_default(),
                    },
                    seen_by: d.seen_by.clone(),
                },
            ))),
            Detail::FailoverFailed(d) if d.requested => push(Input::Observe(
                Observation::Failover(FailoverOutcome::Failed {
                    accepted: true,
                    reason: d.reason.clone(),
                }),
            )),
            Detail::EscalationWithheld(d) if !same_step => {
                if let Some(reply) = &d.reply_seen {
                    push(busy(reply));
                }
            }
            Detail::Unkillable(d) => {
                push(Input::Observe(Observation::KillReply(match d.replicated {
                    true => KillReply::Replicated(d.reply.clone()),
                    false => KillReply::Unkillable(d.reply.clone()),
                })))
            }
            Detail::ActionFailed(ActionFailed::Kill(d)) => push(Input::Observe(
                Observation::KillReply(KillReply::Error(d.reply.clone())),
            )),
            Detail::ActionFailed(ActionFailed::Shutdown { reply, .. }) => push(Input::Observe(
                Observation::Shutdown(ShutdownOutcome::Refused(reply.clone())),
            )),
            Detail::Killed(_) => push(Input::Observe(Observation::KillReply(KillReply::Ok))),
            Detail::ShutdownConfirmed(d) => push(Input::Observe(Observation::Shutdown(
                ShutdownOutcome::Confirmed {
                    elapsed_ms: d.confirm_ms,
                    command: d.command.clone(),
                    how: Some(d.how.clone()),
                },
            ))),
            Detail::Recovered(d) => {
                // The server as it answered again (a restart shows in its run id).
                let snapshot = match (&held, &d.run_id) {
                    (Some(s), Some(id)) => Some(Box::new(Snapshot {
                        run_id: Some(id.clone()),
                        ..s.clone()
                    })),
                    _ => None,
                };
                push(Input::Observe(Observation::Pong { snapshot }));
                if let (Some(forensics), Some(s)) = (&d.forensics, &held) {
                    push(Input::Observe(Observation::AfterRecovery(told_after(
                        forensics, s,
                    ))));
                }
            }
            Detail::HangDetected(d) => push(Input::Observe(Observation::Silent {
                for_ms: d.silent_ms,
            })),
            Detail::Unreachable(d) => push(Input::Observe(Observation::Unreachable {
                reason: d.reason.clone(),
            })),
            _ => {}
        }
    }
    Ok(steps)
}

/// The running function a record names (the `recovered` forensics, or `unkillable`).
fn told_function(detail: &Detail) -> Option<RunningFunction> {
    let name = |n: Option<&str>| n.map(str::to_string);
    match detail {
        Detail::Recovered(d) => {
            let f = d.forensics.as_ref()?.get("function")?;
            Some(RunningFunction::Seen {
                name: name(f.get("name")?.as_str()),
                command: f.get("command").and_then(|c| {
                    c.as_array().map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                }),
                duration_ms: f.get("duration_ms").and_then(serde_json::Value::as_u64),
            })
        }
        Detail::Unkillable(d) => d.function.as_ref().map(|f| RunningFunction::Seen {
            name: Some(f.clone()),
            command: None,
            duration_ms: None,
        }),
        _ => None,
    }
}

/// What the server told after an incident, as a `recovered` record's forensics keep it: its
/// counters' growth over `held` and the offending SLOWLOG entry.
fn told_after(
    forensics: &serde_json::Value,
    held: &Snapshot,
) -> Result<Box<AfterRecovery>, String> {
    if let Some(e) = forensics.get("error").and_then(|e| e.as_str()) {
        return Err(e.to_string());
    }
    let served = &forensics["served_during_incident"];
    let grown =
        |key: &str, before: Option<u64>| served[key].as_u64().map(|n| before.unwrap_or(0) + n);
    let slow = &forensics["slowlog"];
    let entry = slow["duration_us"].as_u64().map(|duration_us| SlowEntry {
        id: 0,
        at_unix_s: slow["logged_at_unix"].as_u64().unwrap_or(0),
        duration_us,
        args: slow["command"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        client_addr: slow["client_addr"].as_str().unwrap_or_default().into(),
        client_name: slow["client_name"].as_str().unwrap_or_default().into(),
    });
    let snapshot = Snapshot {
        kill_calls: grown("kill_calls", held.kill_calls),
        busy_errors: grown("busy_replies", held.busy_errors),
        unkillable_errors: grown("unkillable_replies", held.unkillable_errors),
        rejected_calls: grown("rejected_calls", held.rejected_calls),
        // The entry was logged before the server answered: its own clock, as the trail says.
        server_time_usec: entry.as_ref().map(|e| (e.at_unix_s + 1) * 1_000_000),
        ..held.clone()
    };
    Ok(Box::new(AfterRecovery {
        snapshot: Ok(snapshot),
        slowlog: Ok(entry.into_iter().collect()),
    }))
}

/// `busyguard simulate`: the policy file, and a scenario file or a trail; the decisions as text.
pub fn simulate_files(
    policy: &Path,
    scenario: Option<&Path>,
    trail: Option<&Path>,
) -> Result<String, String> {
    // A rehearsal talks to no server: the policy's secrets are not read (the README's policy
    // names `${CREDENTIALS_DIRECTORY}`, which only the service has).
    let report = crate::policy::load_with(&[policy.to_path_buf()], &crate::policy::Sources::Skip);
    if let Some((_, diags)) = report.rejected.first() {
        return Err(diags
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"));
    }
    let policy = report.policies.first().ok_or("no policy loaded")?;
    let mut rules = Rules::from_policy(policy, false);
    // A dry-run policy is rehearsed as it will act once enforced: in dry-run the daemon sends
    // nothing, so no kill or shutdown would ever meet the scenario's outcomes.
    let note = match rules.dry_run {
        true => {
            "note: this policy is `mode: dry-run`: rehearsed as it will act with `mode: enforce` (in dry-run the daemon decides the same but sends nothing)\n"
        }
        false => "",
    };
    rules.dry_run = false;
    simulate_with(rules, &policy.instance, scenario, trail).map(|out| format!("{note}{out}"))
}

fn simulate_with(
    rules: Rules,
    instance: &str,
    scenario: Option<&Path>,
    trail: Option<&Path>,
) -> Result<String, String> {
    match (scenario, trail) {
        (Some(file), _) => {
            let text =
                std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let numbered = parse_numbered(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            let steps: Vec<(Millis, Input)> =
                numbered.iter().map(|(_, t, i)| (*t, i.clone())).collect();
            let decided = run(rules, &steps);
            let mut out = render(&decided);
            for warning in unreached(&numbered, &decided) {
                out.push_str(&format!("{}: {warning}\n", file.display()));
            }
            Ok(out)
        }
        (None, Some(trail)) => {
            let steps =
                from_trail(trail, instance).map_err(|e| format!("{}: {e}", trail.display()))?;
            Ok(render(&run(rules, &steps)))
        }
        (None, None) => Err("a scenario or --trail".into()),
    }
}
