//! The walk from a YAML tree to a [`Policy`]: each key read once, each mistake recorded with
//! its position and a hint, defaults filled in from the values documented in `keys`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::keys;
use super::{
    Diagnostic, Endpoint, Filter, Guards, HangSignal, Limits, Mode, OnBusy, OnHang, OnUnkillable,
    PagerDutySeverities, Policy, Probe, Receiver, ReceiverKind, RedisTarget, Secret, Severity,
    Then,
};
use crate::yaml::{self, Key, Node, Pos};

/// Parse one policy file's bytes. On success: the policy, its warnings, and where `instance`
/// was set (so a duplicate in another file can point at both).
pub fn parse_policy(
    file: &Path,
    bytes: &[u8],
) -> Result<(Policy, Vec<Diagnostic>, Diagnostic), Vec<Diagnostic>> {
    let mut w = Walker {
        file: file.to_path_buf(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let fail = |w: Walker, pos: Pos, msg: String| {
        let mut w = w;
        w.error(pos, msg);
        Err(w.errors)
    };
    let start = Pos { line: 1, col: 1 };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return fail(w, start, "the file is not UTF-8 text".into());
    };
    let root = match yaml::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return fail(
                w,
                start,
                "the file is empty; a policy needs at least `instance` and `redis.url`".into(),
            );
        }
        Err(e) => return fail(w, e.pos, format!("YAML syntax: {}", e.message)),
    };
    if !matches!(root, Node::Map { .. }) {
        let found = root.kind();
        return fail(
            w,
            root.pos(),
            format!("a policy file must be a mapping of keys (`instance: ...`), found {found}"),
        );
    }
    let top = w.section(&root, "");
    let instance = w.instance(&top, root.pos());
    let redis = w.redis(&top, root.pos());
    let mode = match top.get("mode") {
        None => Mode::Enforce,
        Some(n) => match w.choice(n, "mode", &["enforce", "dry-run"]) {
            Some("dry-run") => Mode::DryRun,
            _ => Mode::Enforce,
        },
    };
    let probe = w.probe(&top);
    let on_busy = w.on_busy(&top);
    let on_hang = w.on_hang(&top, redis.as_ref());
    let limits = w.limits(&top);
    let guards = w.guards(&top);
    let notify = w.notify(&top);
    let instance_at = Diagnostic {
        file: w.file.clone(),
        line: instance.1.line,
        col: instance.1.col,
        message: String::new(),
    };
    match (w.errors.is_empty(), instance.0, redis) {
        (true, Some(instance), Some(redis)) => Ok((
            Policy {
                instance,
                source: file.to_path_buf(),
                content_hash: hex::encode(Sha256::digest(bytes)),
                redis,
                mode,
                probe,
                on_busy,
                on_hang,
                limits,
                guards,
                notify,
            },
            w.warnings,
            instance_at,
        )),
        _ => {
            let mut errors = w.errors;
            errors.sort_by_key(|d| (d.line, d.col));
            Err(errors)
        }
    }
}

/// The keys of one mapping, after unknown and duplicate keys were reported.
struct Section<'n> {
    name: String,
    entries: Vec<(&'n Key, &'n Node)>,
}

impl<'n> Section<'n> {
    /// Where `key` itself is written, for errors about a section's missing parts.
    fn key_pos(&self, key: &str) -> Option<Pos> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(k, _)| k.pos)
    }

    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, n)| *n)
    }

    /// `section.key`, the name errors use.
    fn path(&self, key: &str) -> String {
        if self.name.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.name.replace("[]", ""))
        }
    }
}

struct Walker {
    file: PathBuf,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Walker {
    fn diag(&self, pos: Pos, message: String) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            col: pos.col,
            message,
        }
    }

    fn error(&mut self, pos: Pos, message: String) {
        let d = self.diag(pos, message);
        self.errors.push(d);
    }

    fn warn(&mut self, pos: Pos, message: String) {
        let d = self.diag(pos, message);
        self.warnings.push(d);
    }

    /// Read a mapping named `section` (its path in `keys`), reporting unknown and duplicate keys.
    fn section<'n>(&mut self, node: &'n Node, section: &str) -> Section<'n> {
        let mut out = Section {
            name: section.to_string(),
            entries: Vec::new(),
        };
        let shown = if section.is_empty() {
            "a policy file".to_string()
        } else {
            format!("`{}`", section.replace("[]", ""))
        };
        let Node::Map { entries, .. } = node else {
            self.error(
                node.pos(),
                format!("{shown} must be a mapping of keys, found {}", node.kind()),
            );
            return out;
        };
        let allowed = keys::children(section);
        for (key, value) in entries {
            if let Some((first, _)) = out.entries.iter().find(|(k, _)| k.name == key.name) {
                let line = first.pos.line;
                self.error(
                    key.pos,
                    format!(
                        "duplicate key `{}` (first set at line {line}); keep one",
                        out.path(&key.name)
                    ),
                );
                continue;
            }
            if !allowed.contains(&key.name.as_str()) {
                let msg = unknown_key_message(&key.name, section, &allowed);
                self.error(key.pos, msg);
                continue;
            }
            out.entries.push((key, value));
        }
        out
    }

    /// A scalar's text, or an error naming what was found instead.
    fn scalar<'n>(&mut self, node: &'n Node, path: &str, expected: &str) -> Option<&'n str> {
        match node {
            Node::Scalar { value, quoted, .. } if *quoted || !yaml::is_null(value) => {
                Some(value.as_str())
            }
            other => {
                self.error(
                    other.pos(),
                    format!("`{path}` must be {expected}, found {}", other.kind()),
                );
                None
            }
        }
    }

    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        self.scalar(node, path, "a string").map(str::to_string)
    }

    fn choice(
        &mut self,
        node: &Node,
        path: &str,
        options: &[&'static str],
    ) -> Option<&'static str> {
        let listed = options
            .iter()
            .map(|o| format!("`{o}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let value = self.scalar(node, path, &format!("one of {listed}"))?;
        if let Some(found) = options.iter().find(|o| **o == value) {
            return Some(found);
        }
        let hint = closest(value, options)
            .map(|c| format!(", did you mean `{c}`?"))
            .unwrap_or_default();
        self.error(
            node.pos(),
            format!("`{path}` must be one of {listed}; found `{value}`{hint}"),
        );
        None
    }

    fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match node {
            Node::Scalar {
                value,
                quoted: false,
                ..
            } if value == "true" || value == "false" => Some(value == "true"),
            other => {
                let found = describe(other);
                self.error(
                    other.pos(),
                    format!("`{path}` must be `true` or `false`, found {found}"),
                );
                None
            }
        }
    }

    fn count(&mut self, node: &Node, path: &str) -> Option<u64> {
        match node {
            Node::Scalar {
                value,
                quoted: false,
                ..
            } if value.parse::<u64>().is_ok() => value.parse().ok(),
            other => {
                let found = describe(other);
                self.error(
                    other.pos(),
                    format!("`{path}` must be a whole number (0 or more), found {found}"),
                );
                None
            }
        }
    }

    /// A humantime duration; `positive` refuses zero.
    fn duration(&mut self, node: &Node, path: &str, positive: bool) -> Option<Duration> {
        let text = self.scalar(node, path, "a duration such as `100ms` or `2m`")?;
        let pos = node.pos();
        let text = text.trim();
        if text.starts_with('-') {
            self.error(
                pos,
                format!("`{path}` must not be negative, found `{text}`"),
            );
            return None;
        }
        if text.parse::<f64>().is_ok() {
            self.error(
                pos,
                format!("`{path}`: `{text}` has no unit; write e.g. `{text}ms` or `{text}s`"),
            );
            return None;
        }
        match humantime::parse_duration(text) {
            Ok(d) if positive && d.is_zero() => {
                self.error(pos, format!("`{path}` must be greater than zero"));
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    pos,
                    format!(
                        "`{path}`: `{text}` is not a duration ({e}); write e.g. `500ms`, `5s`, `2m`"
                    ),
                );
                None
            }
        }
    }

    fn opt_duration(
        &mut self,
        s: &Section,
        key: &str,
        default: Duration,
        positive: bool,
    ) -> Duration {
        match s.get(key) {
            None => default,
            Some(n) => self.duration(n, &s.path(key), positive).unwrap_or(default),
        }
    }

    fn instance(&mut self, top: &Section, root: Pos) -> (Option<String>, Pos) {
        let Some(node) = top.get("instance") else {
            self.error(
                root,
                "missing required key `instance` (a unique name for this Redis instance)".into(),
            );
            return (None, root);
        };
        let name = self.string(node, "instance");
        let valid = |n: &String| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        match name {
            Some(n) if !valid(&n) => {
                self.error(
                    node.pos(),
                    format!(
                        "`instance` may hold only letters, digits, `.`, `_` and `-`; found `{n}`"
                    ),
                );
                (None, node.pos())
            }
            other => (other, node.pos()),
        }
    }

    fn redis(&mut self, top: &Section, root: Pos) -> Option<RedisTarget> {
        let Some(node) = top.get("redis") else {
            self.error(
                root,
                "missing required section `redis` with at least `url`".into(),
            );
            return None;
        };
        let s = self.section(node, "redis");
        let endpoint = match s.get("url") {
            None => {
                let at = top.key_pos("redis").unwrap_or(root);
                self.error(at, "missing required key `redis.url`".into());
                None
            }
            Some(n) => self
                .string(n, "redis.url")
                .and_then(|url| match parse_url(&url) {
                    Ok(ep) => Some(ep),
                    Err(msg) => {
                        self.error(n.pos(), format!("`redis.url`: {msg}"));
                        None
                    }
                }),
        };
        let username = s
            .get("username")
            .and_then(|n| self.string(n, "redis.username"));
        let password = self.secret(&s, "password", false);
        let connect_timeout =
            self.opt_duration(&s, "connect_timeout", Duration::from_secs(1), true);
        Some(RedisTarget {
            endpoint: endpoint?,
            username,
            password: password.flatten(),
            connect_timeout,
        })
    }

    /// A secret given as `<base>_file`, `<base>_env` or (when `inline_ok`) `<base>` itself.
    /// `None` on an error; `Some(None)` when none of the keys is set.
    fn secret(&mut self, s: &Section, base: &str, inline_ok: bool) -> Option<Option<Secret>> {
        let names = [
            base.to_string(),
            format!("{base}_file"),
            format!("{base}_env"),
        ];
        let given: Vec<(&str, &Node)> = names
            .iter()
            .filter_map(|n| s.get(n).map(|node| (n.as_str(), node)))
            .collect();
        let (key, node) = match given.as_slice() {
            [] => return Some(None),
            [one] => *one,
            [.., (_, last)] => {
                let listed = given
                    .iter()
                    .map(|(k, _)| format!("`{}`", s.path(k)))
                    .collect::<Vec<_>>()
                    .join(" and ");
                self.error(last.pos(), format!("set only one of {listed}"));
                return None;
            }
        };
        let path = s.path(key);
        let value = self.string(node, &path)?;
        if key == base {
            if !inline_ok {
                return None;
            }
            self.warn(
                node.pos(),
                format!("`{path}` holds a secret inline; prefer `{path}_file` or `{path}_env`"),
            );
            return Some(Some(Secret::new(value)));
        }
        let read = if key.ends_with("_file") {
            let value = match expand_credentials(&value) {
                Ok(v) => v,
                Err(msg) => {
                    self.error(node.pos(), format!("`{path}`: {msg}"));
                    return None;
                }
            };
            std::fs::read_to_string(&value)
                .map_err(|e| format!("`{path}`: cannot read `{value}`: {e}"))
                .map(|t| t.lines().next().unwrap_or("").trim().to_string())
        } else {
            std::env::var(&value)
                .map_err(|_| format!("`{path}`: environment variable `{value}` is not set"))
        };
        match read {
            Ok(secret) if secret.is_empty() => {
                self.error(node.pos(), format!("`{path}`: `{value}` is empty"));
                None
            }
            Ok(secret) => Some(Some(Secret::new(secret))),
            Err(msg) => {
                self.error(node.pos(), msg);
                None
            }
        }
    }

    fn probe(&mut self, top: &Section) -> Probe {
        let s = match top.get("probe") {
            Some(n) => self.section(n, "probe"),
            None => Section {
                name: "probe".into(),
                entries: Vec::new(),
            },
        };
        Probe {
            interval: self.opt_duration(&s, "interval", Duration::from_millis(100), true),
            snapshot_every: self.opt_duration(&s, "snapshot_every", Duration::from_secs(10), true),
        }
    }

    fn on_busy(&mut self, top: &Section) -> OnBusy {
        let s = self.optional_section(top, "on_busy");
        let kill_after = self.opt_duration(&s, "kill_after", Duration::ZERO, false);
        let u = self.optional_section(&s, "on_unkillable");
        let wait = self.opt_duration(&u, "wait", Duration::from_secs(120), true);
        if wait < kill_after
            && let Some(n) = u.get("wait")
        {
            self.error(
                n.pos(),
                format!(
                    "`on_busy.on_unkillable.wait` ({}) is shorter than `on_busy.kill_after` ({}); the budget counts from the first BUSY reply and must leave room for the kill",
                    humantime::format_duration(wait),
                    humantime::format_duration(kill_after)
                ),
            );
        }
        let then = match u.get("then") {
            None => Then::Notify,
            Some(n) => {
                match self.choice(n, "on_busy.on_unkillable.then", &["shutdown", "notify"]) {
                    Some("shutdown") => Then::Shutdown,
                    _ => Then::Notify,
                }
            }
        };
        let shutdown_replicated = u
            .get("shutdown_replicated")
            .and_then(|n| self.bool(n, "on_busy.on_unkillable.shutdown_replicated"))
            .unwrap_or(false);
        let force = u
            .get("force")
            .and_then(|n| self.bool(n, "on_busy.on_unkillable.force"))
            .unwrap_or(false);
        OnBusy {
            kill_after,
            on_unkillable: OnUnkillable {
                wait,
                then,
                force,
                shutdown_replicated,
            },
        }
    }

    /// A sub-section that may be absent (then all its defaults apply).
    fn optional_section<'n>(&mut self, parent: &Section<'n>, key: &str) -> Section<'n> {
        let name = if parent.name.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", parent.name)
        };
        match parent.get(key) {
            Some(n) => self.section(n, &name),
            None => Section {
                name,
                entries: Vec::new(),
            },
        }
    }

    fn on_hang(&mut self, top: &Section, redis: Option<&RedisTarget>) -> OnHang {
        let s = self.optional_section(top, "on_hang");
        let after = self.opt_duration(&s, "after", Duration::from_secs(30), true);
        let signal_after = self.opt_duration(&s, "signal_after", Duration::from_secs(120), true);
        let signal = match s.get("signal") {
            None => HangSignal::None,
            Some(n) => match self.choice(n, "on_hang.signal", &["none", "sigkill"]) {
                Some("sigkill") => {
                    if redis.is_some_and(|r| !r.endpoint.is_local()) {
                        self.error(n.pos(), "`on_hang.signal` needs a server on this host (`unix://`, `127.0.0.1`, `localhost` or `::1`); it signals a local pid".into());
                    }
                    if signal_after < after
                        && let Some(sa) = s.get("signal_after")
                    {
                        self.error(
                            sa.pos(),
                            "`on_hang.signal_after` must be at least `on_hang.after`".into(),
                        );
                    }
                    HangSignal::Sigkill
                }
                _ => HangSignal::None,
            },
        };
        OnHang {
            after,
            signal,
            signal_after,
        }
    }

    fn limits(&mut self, top: &Section) -> Limits {
        let s = self.optional_section(top, "limits");
        let max_shutdowns = s
            .get("max_shutdowns")
            .and_then(|n| self.count(n, "limits.max_shutdowns"))
            .map(|c| c.min(u32::MAX as u64) as u32)
            .unwrap_or(1);
        Limits {
            max_shutdowns,
            per: self.opt_duration(&s, "per", Duration::from_secs(3600), true),
        }
    }

    fn guards(&mut self, top: &Section) -> Guards {
        let s = self.optional_section(top, "guards");
        Guards {
            max_unsaved_changes: s
                .get("max_unsaved_changes")
                .and_then(|n| self.count(n, "guards.max_unsaved_changes")),
            keep_primary_with_replicas: s
                .get("keep_primary_with_replicas")
                .and_then(|n| self.bool(n, "guards.keep_primary_with_replicas"))
                .unwrap_or(false),
        }
    }

    fn notify(&mut self, top: &Section) -> Vec<Receiver> {
        let Some(node) = top.get("notify") else {
            return Vec::new();
        };
        let Node::Seq { items, .. } = node else {
            self.error(
                node.pos(),
                format!(
                    "`notify` must be a list of receivers (`- slack: ...`), found {}",
                    node.kind()
                ),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let s = self.section(item, "notify[]");
            let [(key, body)] = s.entries.as_slice() else {
                if s.entries.len() > 1 {
                    self.error(item.pos(), "each `notify` entry names one receiver: `slack`, `pagerduty` or `webhook`; start a new `- ` item for the next".into());
                } else if matches!(item, Node::Map { .. }) {
                    self.error(
                        item.pos(),
                        "empty `notify` entry; name `slack`, `pagerduty` or `webhook`".into(),
                    );
                }
                continue;
            };
            let section = format!("notify[].{}", key.name);
            let r = self.section(body, &section);
            let filter = self.filter(&r);
            let max_age = self.opt_duration(&r, "max_age", Duration::from_secs(3600), true);
            let kind = match key.name.as_str() {
                "slack" => self
                    .required_secret(&r, "url", body.pos())
                    .map(|url| ReceiverKind::Slack { url }),
                "pagerduty" => {
                    let events_url = r
                        .get("events_url")
                        .and_then(|n| self.http_url(n, &r.path("events_url")))
                        .unwrap_or_else(|| "https://events.pagerduty.com/v2/enqueue".into());
                    let severity = PagerDutySeverities {
                        busy: self.severity(&r, "severity_busy", Severity::Warning),
                        unkillable: self.severity(&r, "severity_unkillable", Severity::Error),
                        escalated: self.severity(&r, "severity_escalated", Severity::Critical),
                    };
                    self.required_secret(&r, "routing_key", body.pos())
                        .map(|routing_key| ReceiverKind::PagerDuty {
                            routing_key,
                            events_url,
                            severity,
                        })
                }
                _ => {
                    let url = self.required_secret(&r, "url", body.pos());
                    let secret = self.secret(&r, "secret", true);
                    if let Some(Some(s)) = &secret
                        && !s.expose().starts_with("whsec_")
                        && let Some(n) = r
                            .get("secret")
                            .or(r.get("secret_file"))
                            .or(r.get("secret_env"))
                    {
                        self.error(
                            n.pos(),
                            format!(
                                "`{}` must be a Standard Webhooks secret `whsec_<base64>`",
                                r.path("secret")
                            ),
                        );
                    }
                    match (url, secret) {
                        (Some(url), Some(secret)) => Some(ReceiverKind::Webhook { url, secret }),
                        _ => None,
                    }
                }
            };
            let receiver = kind.map(|kind| Receiver {
                kind,
                filter,
                max_age,
            });
            out.extend(receiver);
        }
        out
    }

    fn severity(&mut self, s: &Section, key: &str, default: Severity) -> Severity {
        match s.get(key) {
            None => default,
            Some(n) => self
                .choice(n, &s.path(key), &Severity::NAMES)
                .and_then(Severity::parse)
                .unwrap_or(default),
        }
    }

    /// `events` (notifiable event names) and `min_severity` of a receiver.
    fn filter(&mut self, s: &Section) -> Filter {
        let events = s.get("events").and_then(|n| {
            let path = s.path("events");
            let Node::Seq { items, .. } = n else {
                self.error(
                    n.pos(),
                    format!("`{path}` must be a list of event names, found {}", n.kind()),
                );
                return None;
            };
            let mut names = Vec::new();
            for item in items {
                if let Some(name) =
                    self.choice(item, &path, &crate::event::EventKind::notifiable_names())
                {
                    names.push(name.to_string());
                }
            }
            Some(names)
        });
        Filter {
            events,
            min_severity: self.severity(s, "min_severity", Severity::Info),
        }
    }

    fn required_secret(&mut self, s: &Section, base: &str, at: Pos) -> Option<Secret> {
        match self.secret(s, base, true) {
            Some(Some(secret)) => Some(secret),
            Some(None) => {
                let p = s.path(base);
                self.error(at, format!("missing `{p}` (or `{p}_file`, `{p}_env`)"));
                None
            }
            None => None,
        }
    }

    fn http_url(&mut self, node: &Node, path: &str) -> Option<String> {
        let url = self.string(node, path)?;
        if url.starts_with("https://") || url.starts_with("http://") {
            Some(url)
        } else {
            self.error(
                node.pos(),
                format!("`{path}` must be an http:// or https:// URL"),
            );
            None
        }
    }
}

/// systemd's `LoadCredential=` puts secrets in `$CREDENTIALS_DIRECTORY`; a secret file may be
/// named as `${CREDENTIALS_DIRECTORY}/name`.
fn expand_credentials(path: &str) -> Result<String, String> {
    const VAR: &str = "${CREDENTIALS_DIRECTORY}";
    if !path.contains(VAR) {
        return Ok(path.to_string());
    }
    match std::env::var("CREDENTIALS_DIRECTORY") {
        Ok(dir) => Ok(path.replace(VAR, &dir)),
        Err(_) => Err(format!(
            "`{path}` uses {VAR}, which systemd sets only inside the service (LoadCredential=); check it with `systemd-run -p LoadCredential=... busyguard check`"
        )),
    }
}

/// How a scalar looks in a message: `one` for text, `a list` for the rest.
fn describe(node: &Node) -> String {
    match node {
        Node::Scalar {
            value,
            quoted: false,
            ..
        } if !yaml::is_null(value) => format!("`{value}`"),
        Node::Scalar {
            value,
            quoted: true,
            ..
        } => format!("the string \"{value}\""),
        other => other.kind().to_string(),
    }
}

fn unknown_key_message(name: &str, section: &str, allowed: &[&'static str]) -> String {
    let place = if section.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in `{}`", section.replace("[]", ""))
    };
    if let Some(near) = closest(name, allowed) {
        return format!("unknown key `{name}` {place}, did you mean `{near}`?");
    }
    let homes = keys::sections_holding(name);
    if let Some(home) = homes.first() {
        return format!(
            "unknown key `{name}` {place}; it belongs under `{}`",
            home.replace("[]", "")
        );
    }
    let listed = allowed
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("unknown key `{name}` {place}; expected one of {listed}")
}

/// The closest candidate by edit distance, when it is close enough to be a typo.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// `redis://host[:port]`, `rediss://...`, `unix:///path`. Refuses credentials and a database
/// in the URL: secrets belong in files, and a busy script blocks every database alike.
fn parse_url(url: &str) -> Result<Endpoint, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("not a URL; write e.g. `redis://127.0.0.1:6379`".into());
    };
    if scheme == "unix" {
        if !rest.starts_with('/') {
            return Err(
                "a unix socket URL needs an absolute path: `unix:///run/redis/redis.sock`".into(),
            );
        }
        return Ok(Endpoint::Unix {
            path: PathBuf::from(rest),
        });
    }
    let tls = match scheme {
        "redis" => false,
        "rediss" => true,
        other => {
            return Err(format!(
                "scheme `{other}` is not supported; use redis://, rediss:// or unix://"
            ));
        }
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        return Err(
            "credentials do not belong in the URL; use `redis.username` and `redis.password_file`"
                .into(),
        );
    }
    if !path.is_empty() && path != "0" {
        return Err("busyguard always uses database 0 (a busy script blocks every database); remove the path".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed `[` in the host")?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    let port = match port {
        None => 6379,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{p}` is not a port number"))?,
    };
    Ok(Endpoint::Tcp {
        host: host.to_string(),
        port,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("redis://127.0.0.1").unwrap(),
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 6379,
                tls: false
            }
        );
        assert_eq!(
            parse_url("rediss://[::1]:7000").unwrap(),
            Endpoint::Tcp {
                host: "::1".into(),
                port: 7000,
                tls: true
            }
        );
        assert_eq!(
            parse_url("unix:///run/redis.sock").unwrap(),
            Endpoint::Unix {
                path: "/run/redis.sock".into()
            }
        );
        assert!(parse_url("redis://:pw@host").is_err());
        assert!(parse_url("redis://host/3").is_err());
        assert!(parse_url("redis://host:99999").is_err());
    }

    #[test]
    fn typo_suggestions() {
        assert_eq!(
            closest("kil_after", &["kill_after", "on_unkillable"]),
            Some("kill_after")
        );
        assert_eq!(closest("zzz", &["kill_after"]), None);
    }
}
