//! The busyguard policy schema: which sections and keys make a [`Policy`], one function per
//! section, read through [`super::reader`] (which reports every mistake with its position and a
//! hint, and takes defaults and bounds from [`super::keys`]).

use std::path::Path;

use sha2::{Digest, Sha256};

use super::reader::{Inline, Reader, Section};
use super::replicas::{MAX_REPLICAS, TrustedReplica};
use super::scripts::{MAX_RULES, Names, Running, ScriptRule, valid_pattern, valid_sha};
use super::url::parse_url;
use super::yaml::{self, Node, Pos};
use super::{
    Diagnostic, EarlyWarning, Endpoint, FailoverPolicy, Filter, Guards, HangSignal, Limits, Mode,
    OnBusy, OnHang, OnUnkillable, PagerDutySeverities, Policy, Probe, Receiver, ReceiverKind,
    RedisTarget, RedisTls, Resort, Secret, SentinelTopology, Severity, Sources, Then, Topology,
};

/// Parse one policy file's bytes. On success: the policy, its warnings, and where `instance`
/// was set (so a duplicate in another file can point at both).
pub fn parse_policy(
    file: &Path,
    bytes: &[u8],
) -> Result<(Policy, Vec<Diagnostic>, Diagnostic), Vec<Diagnostic>> {
    parse_policy_with(file, bytes, &Sources::Service)
}

/// [`parse_policy`], reading secrets and certificates from `sources`.
pub fn parse_policy_with(
    file: &Path,
    bytes: &[u8],
    sources: &Sources,
) -> Result<(Policy, Vec<Diagnostic>, Diagnostic), Vec<Diagnostic>> {
    let mut w = Reader {
        file: file.to_path_buf(),
        errors: Vec::new(),
        warnings: Vec::new(),
        sources: sources.clone(),
    };
    let fail = |w: Reader, pos: Pos, msg: String| {
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
        Err(e) => {
            // `{ url_file: ${CREDENTIALS_DIRECTORY}/x }`: the `{` of `${` opens a mapping in
            // YAML's flow style. The commonest way to meet this error in a busyguard policy.
            let line = text.lines().nth(e.pos.line.saturating_sub(1)).unwrap_or("");
            let hint = match line.contains("${") && line.contains('{') {
                true => {
                    "; a value holding `${...}` must be quoted in flow style (`{ ... }`): `\"${CREDENTIALS_DIRECTORY}/name\"`"
                }
                false => "",
            };
            return fail(w, e.pos, format!("YAML syntax: {}{hint}", e.message));
        }
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
    let instance = instance(&mut w, &top, root.pos());
    let redis = redis(&mut w, &top, root.pos());
    let mode = match w.opt_choice(&top, "mode") {
        "dry-run" => Mode::DryRun,
        _ => Mode::Enforce,
    };
    let probe = probe(&mut w, &top);
    let on_busy = on_busy(&mut w, &top);
    let on_hang = on_hang(&mut w, &top, redis.as_ref());
    let limits = limits(&mut w, &top);
    let guards = guards(&mut w, &top);
    let early_warning = early_warning(&mut w, &top);
    let notify = notify(&mut w, &top);
    let topology = topology(&mut w, &top);
    fence_that_never_goes(&mut w, &top, &on_busy, &topology);
    let runbook_url = match top.get("runbook_url") {
        Some(n) => w.http_url(n, "runbook_url"),
        None => None,
    };
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
                early_warning,
                notify,
                runbook_url,
                topology,
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

/// `topology.fence: true` where no ladder can use it (every `then` is `notify` or `failover`,
/// which fences anyway): said, so an operator does not count on it.
fn fence_that_never_goes(r: &mut Reader, top: &Section, on_busy: &OnBusy, topology: &Topology) {
    let Some(Node::Map { entries, .. }) = top.get("topology") else {
        return;
    };
    let Some((_, n)) = entries.iter().find(|(k, _)| k.name == "fence") else {
        return;
    };
    if topology.fence && !on_busy.may(Then::Shutdown) && !on_busy.may(Then::Ask) {
        r.warn(
            n.pos(),
            "`topology.fence: true` changes nothing here: no ladder ends in `then: shutdown` or `ask` (`then: failover` fences anyway, and `then: notify` never sends anything, a fence included)".into(),
        );
    }
}

fn instance(r: &mut Reader, top: &Section, root: Pos) -> (Option<String>, Pos) {
    let Some(node) = top.get("instance") else {
        r.error(
            root,
            "missing required key `instance` (a unique name for this Redis instance)".into(),
        );
        return (None, root);
    };
    let name = r.bounded_string(top, "instance", node);
    let valid = |n: &String| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    match name {
        Some(n) if !valid(&n) => {
            r.error(
                node.pos(),
                format!("`instance` may hold only letters, digits, `.`, `_` and `-`; found `{n}`"),
            );
            (None, node.pos())
        }
        other => (other, node.pos()),
    }
}

fn redis(r: &mut Reader, top: &Section, root: Pos) -> Option<RedisTarget> {
    let Some(node) = top.get("redis") else {
        r.error(
            root,
            "missing required section `redis` with at least `url`".into(),
        );
        return None;
    };
    let s = r.section(node, "redis");
    let endpoint = match s.get("url") {
        None => {
            let at = top.key_pos("redis").unwrap_or(root);
            r.error(at, "missing required key `redis.url`".into());
            None
        }
        Some(n) => r
            .string(n, "redis.url")
            .and_then(|url| match parse_url(&url) {
                Ok(ep) => Some(ep),
                Err(msg) => {
                    r.error(n.pos(), format!("`redis.url`: {msg}"));
                    None
                }
            }),
    };
    let (username, password) = credentials(r, &s);
    let connect_timeout = r.opt_duration(&s, "connect_timeout");
    let tls = redis_tls(r, &s, endpoint.iter().collect());
    let commands = redis_commands(r, &s);
    Some(RedisTarget {
        endpoint: endpoint?,
        username,
        password,
        connect_timeout,
        tls,
        commands,
    })
}

/// `username` and `password_file`/`password_env` of a section (`redis`, `topology.sentinel`).
fn credentials(r: &mut Reader, s: &Section) -> (Option<String>, Option<Secret>) {
    let username = s
        .get("username")
        .and_then(|n| r.string(n, &s.path("username")));
    let password = r.secret(s, "password", Inline::Refused);
    // Without a password the client never sends AUTH: it would connect as `default` while
    // everything busyguard says names the user.
    if let (Some(user), Some(None)) = (&username, &password)
        && let Some(n) = s.get("username")
    {
        let (u, f, e) = (
            s.path("username"),
            s.path("password_file"),
            s.path("password_env"),
        );
        r.error(
            n.pos(),
            format!("`{u}` is `{user}` but no password is given (`{f}` or `{e}`): busyguard would connect as the `default` user, not as `{user}`; for a `nopass` user write any password"),
        );
    }
    (username, password.flatten())
}

/// The addresses an endpoint names (a TCP host resolved; none for a unix socket, which is its
/// own path). Resolving a name touches no Redis.
fn resolved(ep: &Endpoint) -> Vec<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    match ep {
        Endpoint::Tcp { host, port, .. } => (host.trim_matches(['[', ']']), *port)
            .to_socket_addrs()
            .map(Iterator::collect)
            .unwrap_or_default(),
        Endpoint::Unix { .. } => Vec::new(),
    }
}

fn topology(r: &mut Reader, top: &Section) -> Topology {
    let t = r.optional_section(top, "topology");
    Topology {
        sentinel: t.get("sentinel").and_then(|node| sentinel(r, &t, node)),
        replicas: replicas(r, &t),
        fence: r.opt_bool(&t, "fence"),
    }
}

/// The items of the list `key` in `s`, at most `max` of them (more is an error naming the
/// bound, `what` they are and `why`); not a list is an error saying it must be `shape`.
fn bounded_list<'n>(
    r: &mut Reader,
    s: &Section<'n>,
    key: &str,
    shape: &str,
    (max, what, why): (usize, &str, &str),
) -> &'n [Node] {
    let path = s.path(key);
    match s.get(key) {
        None => &[],
        Some(Node::Seq { items, .. }) => {
            if items.len() > max {
                r.error(
                    s.key_pos(key).unwrap_or(items[0].pos()),
                    format!("`{path}` lists {} {what}; at most {max}{why}", items.len()),
                );
            }
            &items[..items.len().min(max)]
        }
        Some(n) => {
            r.error(n.pos(), format!("`{path}` must be {shape}"));
            &[]
        }
    }
}

/// `topology.replicas`: `host:port` each (reached like `redis.url`, with its TLS and
/// credentials), or `{address, username, password_file}` for a replica with its own password.
fn replicas(r: &mut Reader, t: &Section) -> Vec<TrustedReplica> {
    const KEY: &str = "topology.replicas";
    let items = bounded_list(
        r,
        t,
        "replicas",
        "a list of `host:port` addresses (`[10.0.0.8:6379]`)",
        (
            MAX_REPLICAS,
            "replicas",
            " (each is asked once a second during an incident)",
        ),
    );
    let mut out: Vec<TrustedReplica> = Vec::new();
    for item in items {
        let (text, (username, password)) = match item {
            Node::Map { .. } => {
                let s = r.section(item, "topology.replicas[]");
                let address = match s.get("address") {
                    Some(n) => r.string(n, "topology.replicas[].address"),
                    None => {
                        r.error(
                            item.pos(),
                            "missing required key `topology.replicas[].address` (`host:port`)"
                                .into(),
                        );
                        None
                    }
                };
                let credentials = credentials(r, &s);
                let Some(address) = address else { continue };
                (address, credentials)
            }
            _ => match r.string(item, KEY) {
                Some(text) => (text, (None, None)),
                None => continue,
            },
        };
        let endpoint = match text.contains("://") {
            true => Err("a replica is `host:port` (it is reached like `redis.url`, with its TLS and credentials), not a URL".to_string()),
            false => parse_url(&format!("redis://{text}")),
        };
        match endpoint {
            Ok(ep @ Endpoint::Tcp { .. })
                if text
                    .rsplit_once(':')
                    .is_some_and(|(_, p)| !p.ends_with(']')) =>
            {
                let resolved = resolved(&ep);
                let Endpoint::Tcp { host, port, .. } = ep else {
                    continue;
                };
                let replica = TrustedReplica {
                    host,
                    port,
                    resolved,
                    username,
                    password,
                };
                if out
                    .iter()
                    .any(|o| o.host == replica.host && o.port == replica.port)
                {
                    r.error(item.pos(), format!("`{KEY}`: `{text}` is listed twice"));
                }
                out.push(replica);
            }
            Ok(_) => r.error(
                item.pos(),
                format!("`{KEY}`: `{text}` needs a port (`host:port`)"),
            ),
            Err(msg) => r.error(item.pos(), format!("`{KEY}`: `{text}`: {msg}")),
        }
    }
    out
}

/// `topology.sentinel`.
fn sentinel(r: &mut Reader, t: &Section, node: &Node) -> Option<SentinelTopology> {
    let s = r.section(node, "topology.sentinel");
    let at = t.key_pos("sentinel").unwrap_or(node.pos());
    let master = match s.get("master") {
        Some(n) => r.string(n, "topology.sentinel.master"),
        None => {
            r.error(at, "missing required key `topology.sentinel.master` (the name in `sentinel monitor <name> ...`)".into());
            None
        }
    };
    let mut endpoints = Vec::new();
    match s.get("urls") {
        Some(Node::Seq { items, .. }) if !items.is_empty() => {
            // Each sentinel's addresses, names resolved: the same sentinel listed twice (or as
            // `localhost` and `127.0.0.1`) would count twice toward "more than half".
            let mut seen: Vec<(usize, Vec<std::net::SocketAddr>)> = Vec::new();
            for item in items {
                let Some(url) = r.string(item, "topology.sentinel.urls") else {
                    continue;
                };
                match parse_url(&url) {
                    Ok(ep) => {
                        let addrs = resolved(&ep);
                        if let Some((first, _)) =
                            seen.iter().find(|(_, a)| a.iter().any(|x| addrs.contains(x)))
                        {
                            r.error(
                                item.pos(),
                                format!(
                                    "`topology.sentinel.urls`: `{url}` is the same sentinel as urls[{first}] (same address after resolving names): a majority must be of different sentinels"
                                ),
                            );
                        }
                        seen.push((endpoints.len(), addrs));
                        endpoints.push(ep);
                    }
                    Err(msg) => r.error(item.pos(), format!("`topology.sentinel.urls`: {msg}")),
                }
            }
        }
        Some(n) => r.error(
            n.pos(),
            "`topology.sentinel.urls` must be a list of one or more sentinel URLs (`[redis://10.0.0.5:26379]`)".into(),
        ),
        None => r.error(at, "missing required key `topology.sentinel.urls`".into()),
    }
    let (username, password) = credentials(r, &s);
    let tls = redis_tls(r, &s, endpoints.iter().collect());
    let connect_timeout = r.opt_duration(&s, "connect_timeout");
    let sentinels = endpoints
        .into_iter()
        .map(|endpoint| RedisTarget {
            endpoint,
            username: username.clone(),
            password: password.clone(),
            connect_timeout,
            tls: tls.clone(),
            commands: Default::default(),
        })
        .collect();
    master.map(|master| SentinelTopology { master, sentinels })
}

/// `redis.commands`: what `rename-command` made of the commands busyguard sends.
fn redis_commands(r: &mut Reader, redis: &Section) -> std::collections::BTreeMap<String, String> {
    let s = r.optional_section(redis, "commands");
    let mut out = std::collections::BTreeMap::new();
    for name in super::RENAMEABLE {
        let Some(node) = s.get(name) else { continue };
        let Some(actual) = r.string(node, &format!("redis.commands.{name}")) else {
            continue;
        };
        if actual.chars().any(|c| c.is_whitespace() || c.is_control()) {
            r.error(
                node.pos(),
                format!("`redis.commands.{name}` must be one word, as `rename-command` takes it"),
            );
            continue;
        }
        out.insert(name.to_ascii_uppercase(), actual);
    }
    out
}

/// `<section>.tls` (`redis.tls`, `topology.sentinel.tls`): each file read and parsed now, so
/// `check` names a wrong one.
fn redis_tls(r: &mut Reader, parent: &Section, endpoints: Vec<&Endpoint>) -> RedisTls {
    let s = r.optional_section(parent, "tls");
    let plain = endpoints
        .iter()
        .any(|e| matches!(e, Endpoint::Unix { .. } | Endpoint::Tcp { tls: false, .. }));
    if let (Some(node), true) = (parent.get("tls"), plain) {
        r.error(
            parent.key_pos("tls").unwrap_or(node.pos()),
            format!("`{}` applies to `rediss://` URLs only; use `rediss://host:port` (the server's `tls-port`)", parent.path("tls")),
        );
    }
    let mut parsed = |key: &str, parse: fn(&[u8]) -> Result<(), String>| {
        let at = s.get(key)?.pos();
        let bytes = r.file_contents(&s, key)?;
        match parse(&bytes) {
            Ok(()) => Some(bytes),
            Err(why) => {
                r.error(at, format!("`{}` {why}", s.path(key)));
                None
            }
        }
    };
    let ca_pem = parsed("ca_file", |b| super::pem::certificates(b).map(drop));
    let cert_pem = parsed("cert_file", |b| super::pem::certificates(b).map(drop));
    let key_pem = parsed("key_file", |b| super::pem::private_key(b).map(drop))
        .map(|b| Secret::new(String::from_utf8_lossy(&b)));
    for (given, missing) in [("cert_file", "key_file"), ("key_file", "cert_file")] {
        if let Some(node) = s.get(given)
            && s.get(missing).is_none()
        {
            r.error(
                node.pos(),
                format!(
                    "`{}` needs `{}` beside it (mutual TLS takes both)",
                    s.path(given),
                    s.path(missing)
                ),
            );
        }
    }
    let server_name = s
        .get("server_name")
        .and_then(|n| r.string(n, &s.path("server_name")));
    RedisTls {
        ca_pem,
        cert_pem,
        key_pem,
        server_name,
    }
}

fn probe(r: &mut Reader, top: &Section) -> Probe {
    let s = r.optional_section(top, "probe");
    Probe {
        interval: r.opt_duration(&s, "interval"),
        snapshot_every: r.opt_duration(&s, "snapshot_every"),
    }
}

fn on_busy(r: &mut Reader, top: &Section) -> OnBusy {
    let s = r.optional_section(top, "on_busy");
    let kill_after = r.opt_duration(&s, "kill_after");
    let u = r.optional_section(&s, "on_unkillable");
    let wait = r.opt_duration(&u, "wait");
    if wait < kill_after
        && let Some(n) = u.get("wait")
    {
        r.error(
            n.pos(),
            format!(
                "`on_busy.on_unkillable.wait` ({}) is shorter than `on_busy.kill_after` ({}); the budget counts from the first BUSY reply and must leave room for the kill",
                humantime::format_duration(wait),
                humantime::format_duration(kill_after)
            ),
        );
    }
    let then = Then::parse(r.opt_choice(&u, "then")).unwrap_or_default();
    let f = r.optional_section(&u, "failover");
    let failover = FailoverPolicy {
        fallback: Resort::parse(r.opt_choice(&f, "fallback")).unwrap_or_default(),
        timeout: r.opt_duration(&f, "timeout"),
        max_lag: r.opt_count(&f, "max_lag").unwrap_or(0),
    };
    let ask = r.optional_section(&u, "ask");
    let ask_timeout = r.opt_duration(&ask, "timeout");
    let ask_default = Resort::parse(r.opt_choice(&ask, "default")).unwrap_or_default();
    let scripts = script_rules(r, &s, kill_after, wait);
    let server_log = s
        .get("server_log")
        .and_then(|n| r.string(n, "on_busy.server_log"))
        .map(std::path::PathBuf::from);
    // Said before any incident needs it: an unreadable log names no EVAL.
    if let (Some(path), Some(n), false) =
        (&server_log, s.get("server_log"), r.sources == Sources::Skip)
        && let Err(why) = super::readable::by_the_service(path)
    {
        r.warn(
            n.pos(),
            format!("`on_busy.server_log`: {why}: {}", super::readable::FIX),
        );
    }
    let evals = scripts.iter().any(|x| matches!(x.names, Names::Eval(_)));
    if let (true, None, Some(pos)) = (evals, &server_log, s.key_pos("scripts")) {
        r.warn(pos, "`on_busy.scripts` names EVALs by `sha`, but `on_busy.server_log` is not set: an EVAL is named only by the server's log, so those rules never apply".into());
    }
    OnBusy {
        kill_after,
        scripts,
        server_log,
        identify_within: r.opt_duration(&s, "identify_within"),
        on_unkillable: OnUnkillable {
            wait,
            then,
            force: r.opt_bool(&u, "force"),
            ask_timeout,
            ask_default,
            shutdown_replicated: r.opt_bool(&u, "shutdown_replicated"),
            failover,
        },
    }
}

/// `on_busy.scripts`: each rule's function (a name or glob) and what differs from the
/// instance's ladder; a rule that an earlier one shadows is said (the first listed wins).
fn script_rules(
    r: &mut Reader,
    s: &Section,
    kill_after: std::time::Duration,
    wait: std::time::Duration,
) -> Vec<ScriptRule> {
    const KEY: &str = "on_busy.scripts";
    let items = bounded_list(
        r,
        s,
        "scripts",
        "a list of rules (`- {function: nightly_*, kill_after: 10m}`)",
        (MAX_RULES, "rules", ""),
    );
    let mut rules: Vec<ScriptRule> = Vec::new();
    for item in items {
        if !matches!(item, Node::Map { .. }) {
            r.error(
                item.pos(),
                format!("each `{KEY}` item is a mapping with a `function`"),
            );
            continue;
        }
        let rs = r.section(item, "on_busy.scripts[]");
        let names = match (rs.get("function"), rs.get("sha")) {
            (Some(n), None) => r.string(n, "on_busy.scripts[].function").and_then(|f| {
                if valid_pattern(&f) {
                    Some(Names::Function(f))
                } else {
                    r.error(n.pos(), format!("`on_busy.scripts[].function` `{f}`: a function name or glob has letters, digits, `_`, `*` and `?` only"));
                    None
                }
            }),
            (None, Some(n)) => r.string(n, "on_busy.scripts[].sha").and_then(|sha| {
                if valid_sha(&sha) {
                    Some(Names::Eval(sha.to_ascii_lowercase()))
                } else {
                    r.error(n.pos(), format!("`on_busy.scripts[].sha` `{sha}`: an EVAL's SHA1 is 40 hex digits (`redis-cli SCRIPT LOAD` prints it)"));
                    None
                }
            }),
            (Some(_), Some(n)) => {
                r.error(n.pos(), "a rule names a `function` or an EVAL's `sha`, not both".into());
                None
            }
            (None, None) => {
                r.error(item.pos(), "missing required key `on_busy.scripts[].function` (or `sha`, for an EVAL)".into());
                None
            }
        };
        let duration = |r: &mut Reader, sec: &Section, key: &str, table: &str| {
            sec.get(key)
                .and_then(|n| r.duration(n, &sec.path(key), table))
        };
        let rule_kill_after = duration(r, &rs, "kill_after", "on_busy.scripts[].kill_after");
        let never_kill = r.opt_bool(&rs, "never_kill");
        let u = r.optional_section(&rs, "on_unkillable");
        let rule_wait = duration(r, &u, "wait", "on_busy.scripts[].on_unkillable.wait");
        let then = u.get("then").and_then(|n| {
            r.choice(n, "on_busy.scripts[].on_unkillable.then", Then::NAMES)
                .and_then(Then::parse)
        });
        let (k, w) = (
            rule_kill_after.unwrap_or(kill_after),
            rule_wait.unwrap_or(wait),
        );
        if w < k && !never_kill {
            r.error(
                item.pos(),
                format!(
                    "the rule's budget ({}) is shorter than its `kill_after` ({}): the budget counts from the first BUSY reply and must leave room for the kill",
                    humantime::format_duration(w),
                    humantime::format_duration(k)
                ),
            );
        }
        let Some(names) = names else { continue };
        // A later rule that an earlier one matches as written is (at least partly) shadowed.
        let as_running = match &names {
            Names::Function(f) => Running::Function(f),
            Names::Eval(sha) => Running::Eval(sha),
        };
        if let Some(earlier) = rules.iter().find(|e| e.matches(as_running)) {
            r.warn(
                item.pos(),
                format!(
                    "`on_busy.scripts`: `{}` is also named by `{}` listed before it, which wins for the names both match",
                    names.label(),
                    earlier.names.label()
                ),
            );
        }
        rules.push(ScriptRule {
            names,
            kill_after: rule_kill_after,
            never_kill,
            wait: rule_wait,
            then,
        });
    }
    rules
}

fn on_hang(r: &mut Reader, top: &Section, redis: Option<&RedisTarget>) -> OnHang {
    let s = r.optional_section(top, "on_hang");
    let after = r.opt_duration(&s, "after");
    let signal_after = r.opt_duration(&s, "signal_after");
    let signal = match r.opt_choice(&s, "signal") {
        "sigkill" => {
            if redis.is_some_and(|t| !t.endpoint.is_local())
                && let Some(n) = s.get("signal")
            {
                r.error(n.pos(), "`on_hang.signal` needs a server on this host (`unix://`, `127.0.0.1`, `localhost` or `::1`); it signals a local pid".into());
            }
            if signal_after < after
                && let Some(sa) = s.get("signal_after")
            {
                r.error(
                    sa.pos(),
                    "`on_hang.signal_after` must be at least `on_hang.after`".into(),
                );
            }
            HangSignal::Sigkill
        }
        _ => HangSignal::None,
    };
    OnHang {
        after,
        signal,
        signal_after,
    }
}

fn limits(r: &mut Reader, top: &Section) -> Limits {
    let s = r.optional_section(top, "limits");
    Limits {
        max_shutdowns: r.opt_count(&s, "max_shutdowns").unwrap_or(1) as u32,
        per: r.opt_duration(&s, "per"),
    }
}

fn guards(r: &mut Reader, top: &Section) -> Guards {
    let s = r.optional_section(top, "guards");
    let allow_empty_restart = r.opt_bool(&s, "allow_empty_restart");
    if let (true, Some(n)) = (allow_empty_restart, s.get("allow_empty_restart")) {
        r.warn(
            n.pos(),
            "`guards.allow_empty_restart: true` lets busyguard shut down a primary with replicas and no persistence: restarted by its supervisor it comes back empty, and its replicas resync to the empty dataset; `then: failover` moves the role first instead".into(),
        );
    }
    Guards {
        max_unsaved_changes: r.opt_count(&s, "max_unsaved_changes"),
        keep_primary_with_replicas: r.opt_bool(&s, "keep_primary_with_replicas"),
        allow_empty_restart,
    }
}

fn early_warning(r: &mut Reader, top: &Section) -> EarlyWarning {
    let s = r.optional_section(top, "early_warning");
    let text = match s.get("at") {
        None => r.opt_word(&s, "at").unwrap_or_default(),
        Some(n) => match r.string(n, "early_warning.at") {
            Some(t) => t,
            None => return EarlyWarning::Off,
        },
    };
    let text = text.trim();
    if text == "off" {
        return EarlyWarning::Off;
    }
    if let Some(percent) = text.strip_suffix('%') {
        return match percent.trim().parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => EarlyWarning::Share(p / 100.0),
            _ => {
                if let Some(n) = s.get("at") {
                    r.error(
                        n.pos(),
                        format!("`early_warning.at`: `{text}` must be a share from 1% to 100%"),
                    );
                }
                EarlyWarning::Off
            }
        };
    }
    match s.get("at") {
        Some(n) => r
            .duration(n, "early_warning.at", "early_warning.at")
            .map_or(EarlyWarning::Off, EarlyWarning::After),
        None => EarlyWarning::Off,
    }
}

fn notify(r: &mut Reader, top: &Section) -> Vec<Receiver> {
    let Some(node) = top.get("notify") else {
        return Vec::new();
    };
    let Node::Seq { items, .. } = node else {
        r.error(
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
        let s = r.section(item, "notify[]");
        let [(key, body)] = s.entries.as_slice() else {
            if s.entries.len() > 1 {
                r.error(item.pos(), "each `notify` entry names one receiver: `slack`, `pagerduty` or `webhook`; start a new `- ` item for the next".into());
            } else if matches!(item, Node::Map { .. }) {
                r.error(
                    item.pos(),
                    "empty `notify` entry; name `slack`, `pagerduty` or `webhook`".into(),
                );
            }
            continue;
        };
        let rs = r.section(body, &format!("notify[].{}", key.name));
        let filter = filter(r, &rs);
        let max_age = r.opt_duration(&rs, "max_age");
        let quiet = r.opt_duration(&rs, "quiet");
        let unreachable_grace = r.opt_duration(&rs, "unreachable_grace");
        let page_dry_run = key_of(&rs, "page_dry_run") && r.opt_bool(&rs, "page_dry_run");
        let kind = match key.name.as_str() {
            "slack" => r
                .required_secret(&rs, "url", body.pos(), Inline::Secret)
                .map(|url| ReceiverKind::Slack { url }),
            "pagerduty" => pagerduty(r, &rs, body.pos()),
            _ => webhook(r, &rs, body.pos()),
        };
        out.extend(kind.map(|kind| Receiver {
            kind,
            filter,
            max_age,
            quiet,
            unreachable_grace,
            page_dry_run,
        }));
    }
    out
}

/// Whether the key table has `key` for this receiver's kind.
fn key_of(rs: &Section, key: &str) -> bool {
    crate::policy::keys::get(&format!("{}.{key}", rs.name)).is_some()
}

fn pagerduty(r: &mut Reader, rs: &Section, at: Pos) -> Option<ReceiverKind> {
    let events_url = match rs.get("events_url") {
        Some(n) => r.http_url(n, &rs.path("events_url")),
        None => r.opt_word(rs, "events_url"),
    };
    let severity = PagerDutySeverities {
        busy: severity(r, rs, "severity_busy"),
        unkillable: severity(r, rs, "severity_unkillable"),
        escalated: severity(r, rs, "severity_escalated"),
    };
    let routing_key = r.required_secret(rs, "routing_key", at, Inline::Secret)?;
    Some(ReceiverKind::PagerDuty {
        routing_key,
        events_url: events_url?,
        severity,
    })
}

fn webhook(r: &mut Reader, rs: &Section, at: Pos) -> Option<ReceiverKind> {
    let url = r.required_secret(rs, "url", at, Inline::UrlIfCredentialed);
    let secret = r.secret(rs, "secret", Inline::Secret);
    if let Some(Some(s)) = &secret
        && !s.is_unread()
        && !s.expose().starts_with("whsec_")
        && let Some(n) = rs
            .get("secret")
            .or(rs.get("secret_file"))
            .or(rs.get("secret_env"))
    {
        r.error(
            n.pos(),
            format!(
                "`{}` must be a Standard Webhooks secret `whsec_<base64>`",
                rs.path("secret")
            ),
        );
    }
    Some(ReceiverKind::Webhook {
        url: url?,
        secret: secret?,
    })
}

fn severity(r: &mut Reader, s: &Section, key: &str) -> Severity {
    let name = r.opt_choice(s, key);
    Severity::parse(name).unwrap_or(Severity::Info)
}

/// `events` (notifiable event names) and `min_severity` of a receiver.
fn filter(r: &mut Reader, s: &Section) -> Filter {
    let events = s.get("events").and_then(|n| {
        let path = s.path("events");
        let Node::Seq { items, .. } = n else {
            r.error(
                n.pos(),
                format!("`{path}` must be a list of event names, found {}", n.kind()),
            );
            return None;
        };
        let mut names = Vec::new();
        for item in items {
            if let Some(name) = r.choice(item, &path, &crate::event::EventKind::notifiable_names())
            {
                names.push(name.to_string());
            }
        }
        Some(names)
    });
    Filter {
        events,
        min_severity: severity(r, s, "min_severity"),
    }
}
