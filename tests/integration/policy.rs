//! Policy files: golden error messages for broken files, the full shape of a valid one, the
//! shipped examples (the generated reference is checked in [`super::docs`]).

use crate::support;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use busyguard::model::kinds::{Resort, Then};
use busyguard::policy::{
    self, EarlyWarning, Endpoint, FailoverPolicy, Filter, Guards, HangSignal, Limits, Mode, OnBusy,
    OnHang, OnUnkillable, PagerDutySeverities, Probe, Receiver, ReceiverKind, RedisTarget, Secret,
    Severity,
};

fn check_output(paths: &[&str]) -> (bool, String) {
    let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    let mut out = Vec::new();
    let ok = busyguard::commands::check::check(&paths, &Default::default(), &mut out).unwrap();
    (ok, String::from_utf8(out).unwrap())
}

/// Every broken fixture gives exactly the message in the golden file (BLESS=1 rewrites it).
#[test]
fn broken_policies_match_golden_messages() {
    let (ok, out) = check_output(&["tests/fixtures/broken"]);
    assert!(!ok);
    let golden = Path::new("tests/fixtures/broken.expected");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(golden, &out).unwrap();
    }
    let expected = std::fs::read_to_string(golden).unwrap();
    assert_eq!(out, expected, "check output differs from {golden:?}");
}

#[test]
fn every_broken_fixture_is_rejected_with_a_position() {
    let (_, out) = check_output(&["tests/fixtures/broken"]);
    let files = policy::expand_paths(&[PathBuf::from("tests/fixtures/broken")])
        .unwrap()
        .files;
    assert!(files.len() >= 15, "at least 15 distinct broken files");
    for file in files {
        let prefix = format!("{}:", file.display());
        let line = out
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no error for {file:?}"));
        let mut parts = line[prefix.len()..].splitn(3, ':');
        let (l, c) = (parts.next().unwrap(), parts.next().unwrap());
        assert!(
            l.parse::<usize>().unwrap() >= 1 && c.parse::<usize>().unwrap() >= 1,
            "{line}"
        );
        assert!(!out.contains(&format!("{}: ok", file.display())));
    }
}

#[test]
fn secrets_written_inline_never_reach_the_output() {
    let (_, out) = check_output(&["tests/fixtures/broken"]);
    assert!(!out.contains("hunter2"), "{out}");
}

#[test]
fn a_file_with_every_key_loads_to_the_expected_policy() {
    let report = policy::load(&[PathBuf::from("tests/fixtures/valid/every-key.yaml")]);
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    let p = &report.policies[0];
    let bytes = std::fs::read("tests/fixtures/valid/every-key.yaml").unwrap();
    assert_eq!(p.content_hash.len(), 64);
    assert_ne!(p.content_hash, format!("{:x}", 0), "{bytes:?}");
    let ms = Duration::from_millis;
    let tls = policy::RedisTls {
        ca_pem: Some(std::fs::read("tests/fixtures/valid/redis-ca.crt").unwrap()),
        cert_pem: Some(std::fs::read("tests/fixtures/valid/redis-client.crt").unwrap()),
        key_pem: Some(Secret::new(
            std::fs::read_to_string("tests/fixtures/valid/redis-client.key").unwrap(),
        )),
        server_name: Some("redis.internal".into()),
    };
    let expected = policy::Policy {
        instance: "every-key.01".into(),
        source: "tests/fixtures/valid/every-key.yaml".into(),
        content_hash: p.content_hash.clone(),
        redis: RedisTarget {
            endpoint: Endpoint::Tcp {
                host: "::1".into(),
                port: 7000,
                tls: true,
            },
            username: Some("busyguard".into()),
            password: Some(Secret::new("s3cret-pass")),
            connect_timeout: ms(250),
            tls: tls.clone(),
            commands: [
                ("INFO", "INFO_0a"),
                ("CONFIG", "CONFIG_b840fc02"),
                ("SCRIPT", "SCRIPT_1b"),
                ("FUNCTION", ""),
                ("SHUTDOWN", "SHUTDOWN_2c"),
                ("SLOWLOG", "SLOWLOG_3d"),
                ("ACL", "ACL_4e"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        },
        mode: Mode::DryRun,
        probe: Probe {
            interval: ms(50),
            snapshot_every: ms(30_000),
        },
        on_busy: OnBusy {
            identify_within: ms(300),
            kill_after: ms(1000),
            on_unkillable: OnUnkillable {
                wait: ms(90_000),
                then: Then::Shutdown,
                force: true,
                ask_timeout: ms(600_000),
                ask_default: Resort::Shutdown,
                shutdown_replicated: true,
                failover: FailoverPolicy {
                    fallback: Resort::Shutdown,
                    timeout: ms(20_000),
                    max_lag: 0,
                },
            },
            server_log: Some("tests/fixtures/valid/redis-server.log".into()),
            scripts: vec![
                busyguard::policy::scripts::ScriptRule {
                    names: busyguard::policy::scripts::Names::Function("nightly_*".into()),
                    kill_after: Some(ms(600_000)),
                    never_kill: true,
                    wait: Some(ms(7_200_000)),
                    then: Some(Then::Notify),
                },
                busyguard::policy::scripts::ScriptRule {
                    // Lower case: the server's log writes it so.
                    names: busyguard::policy::scripts::Names::Eval(
                        "94b1e6a8b4b4f7d6b8f4c3b2a19e8d7c6b5a4f3e".into(),
                    ),
                    kill_after: Some(ms(60_000)),
                    never_kill: false,
                    wait: None,
                    then: None,
                },
            ],
        },
        on_hang: OnHang {
            after: ms(20_000),
            signal: HangSignal::Sigkill,
            signal_after: ms(40_000),
        },
        limits: Limits {
            max_shutdowns: 3,
            per: ms(7_200_000),
        },
        guards: Guards {
            max_unsaved_changes: Some(1000),
            keep_primary_with_replicas: true,
            allow_empty_restart: true,
        },
        early_warning: EarlyWarning::After(ms(150)),
        notify: vec![
            Receiver {
                kind: ReceiverKind::Slack {
                    url: Secret::new("https://hooks.slack.example/services/T0/B0/xyz"),
                },
                filter: Filter {
                    events: None,
                    min_severity: Severity::Info,
                },
                max_age: ms(3_600_000),
                quiet: ms(2_000),
                unreachable_grace: ms(30_000),
                page_dry_run: false,
            },
            Receiver {
                kind: ReceiverKind::PagerDuty {
                    routing_key: Secret::new("pd-routing-key-0123"),
                    events_url: "http://127.0.0.1:9/v2/enqueue".into(),
                    severity: PagerDutySeverities {
                        busy: Severity::Error,
                        unkillable: Severity::Critical,
                        escalated: Severity::Critical,
                    },
                },
                filter: Filter {
                    events: Some(vec!["busy_detected".into(), "recovered".into()]),
                    min_severity: Severity::Info,
                },
                max_age: ms(600_000),
                quiet: ms(0),
                unreachable_grace: ms(5_000),
                page_dry_run: true,
            },
            Receiver {
                kind: ReceiverKind::Webhook {
                    url: Secret::new("https://ops.example/hook"),
                    secret: Some(Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
                },
                filter: Filter {
                    events: None,
                    min_severity: Severity::Warning,
                },
                max_age: ms(3_600_000),
                quiet: ms(0),
                unreachable_grace: ms(0),
                page_dry_run: false,
            },
        ],
        runbook_url: Some("https://wiki.example/runbooks/redis-busy".into()),
        topology: policy::Topology {
            fence: false,
            replicas: vec![
                policy::replicas::TrustedReplica {
                    host: "10.0.0.8".into(),
                    port: 6379,
                    resolved: vec!["10.0.0.8:6379".parse().unwrap()],
                    username: None,
                    password: None,
                },
                policy::replicas::TrustedReplica {
                    host: "::1".into(),
                    port: 6390,
                    resolved: vec!["[::1]:6390".parse().unwrap()],
                    username: Some("watcher".into()),
                    password: Some(Secret::new("r3plica-own")),
                },
            ],
            sentinel: Some(policy::SentinelTopology {
                master: "orders".into(),
                sentinels: ["10.0.0.5", "10.0.0.6"]
                    .into_iter()
                    .map(|host| RedisTarget {
                        endpoint: Endpoint::Tcp {
                            host: host.into(),
                            port: 26379,
                            tls: true,
                        },
                        username: Some("busyguard".into()),
                        password: Some(Secret::new("s3cret-pass")),
                        connect_timeout: ms(500),
                        tls: policy::RedisTls {
                            server_name: Some("sentinel.internal".into()),
                            ..tls.clone()
                        },
                        commands: Default::default(),
                    })
                    .collect(),
            }),
        },
    };
    assert_eq!(p, &expected);
    // Accepting empty restarts is allowed, and warned about; a plain webhook URL
    // (https://ops.example/hook) is no secret and is not.
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(report.warnings[0].message.contains("allow_empty_restart"));
    // A webhook URL carrying a credential (a password, a token in its query) is warned about.
    let dir = tempfile::tempdir().unwrap();
    for (url, warned) in [
        ("https://ops.example/hook", false),
        ("http://ops.example:8080/hook/path", false),
        ("https://user:pw@ops.example/hook", true),
        ("https://ops.example/hook?token=abc", true),
    ] {
        let file = dir.path().join("w.yaml");
        std::fs::write(
            &file,
            format!("instance: w\nredis:\n  url: redis://127.0.0.1:1\nnotify:\n  - webhook: {{ url: \"{url}\" }}\n"),
        )
        .unwrap();
        let report = policy::load(&[file]);
        assert!(report.rejected.is_empty(), "{:?}", report.rejected);
        let said = report
            .warnings
            .iter()
            .any(|w| w.message.contains("secret inline"));
        assert_eq!(said, warned, "{url}: {:?}", report.warnings);
    }
    // Debug output of a policy hides every secret.
    let debug = format!("{p:?}");
    for secret in [
        "s3cret-pass",
        "r3plica-own",
        "pd-routing-key",
        "whsec_",
        "hooks.slack",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked in {debug}");
    }
}

#[test]
fn a_minimal_file_gets_the_documented_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("min.yaml");
    std::fs::write(&file, "instance: m\nredis:\n  url: redis://localhost\n").unwrap();
    let report = policy::load(&[file]);
    let p = &report.policies[0];
    for key in policy::keys::KEYS {
        let shown = match key.path {
            "redis.connect_timeout" => {
                humantime::format_duration(p.redis.connect_timeout).to_string()
            }
            "mode" => {
                if p.mode == Mode::Enforce {
                    "enforce".into()
                } else {
                    "dry-run".into()
                }
            }
            "probe.interval" => humantime::format_duration(p.probe.interval).to_string(),
            "probe.snapshot_every" => {
                humantime::format_duration(p.probe.snapshot_every).to_string()
            }
            "on_busy.kill_after" => humantime::format_duration(p.on_busy.kill_after).to_string(),
            "on_busy.on_unkillable.wait" => {
                humantime::format_duration(p.on_busy.on_unkillable.wait).to_string()
            }
            "on_busy.on_unkillable.then" => {
                format!("{:?}", p.on_busy.on_unkillable.then).to_lowercase()
            }
            "on_busy.on_unkillable.force" => p.on_busy.on_unkillable.force.to_string(),
            "on_busy.on_unkillable.ask.timeout" => {
                humantime::format_duration(p.on_busy.on_unkillable.ask_timeout).to_string()
            }
            "on_busy.on_unkillable.ask.default" => {
                format!("{:?}", p.on_busy.on_unkillable.ask_default).to_lowercase()
            }
            "on_busy.on_unkillable.shutdown_replicated" => {
                p.on_busy.on_unkillable.shutdown_replicated.to_string()
            }
            "on_hang.after" => humantime::format_duration(p.on_hang.after).to_string(),
            "on_hang.signal" => format!("{:?}", p.on_hang.signal).to_lowercase(),
            "on_hang.signal_after" => {
                humantime::format_duration(p.on_hang.signal_after).to_string()
            }
            "limits.max_shutdowns" => p.limits.max_shutdowns.to_string(),
            "limits.per" => humantime::format_duration(p.limits.per).to_string(),
            "guards.keep_primary_with_replicas" => p.guards.keep_primary_with_replicas.to_string(),
            "early_warning.at" => match p.early_warning {
                EarlyWarning::Share(s) => format!("{}%", s * 100.0),
                other => format!("{other:?}"),
            },
            "guards.max_unsaved_changes" => p
                .guards
                .max_unsaved_changes
                .map_or("off".into(), |n| n.to_string()),
            _ => continue,
        };
        assert_eq!(
            shown,
            key.default_text(),
            "documented default of `{}`",
            key.path
        );
    }
}

/// Values that cannot mean what they say: a 5 MB instance name is refused (and not echoed
/// back); the same file named twice, or a folder and a file in it, is one policy, not a
/// duplicate of itself; hidden files in a folder are not policies.
#[test]
fn a_huge_name_is_refused_and_a_file_named_twice_is_loaded_once() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, len: usize| {
        let file = dir.path().join(name);
        let instance = "a".repeat(len);
        std::fs::write(
            &file,
            format!("instance: {instance}\nredis:\n  url: redis://localhost\n"),
        )
        .unwrap();
        file
    };
    // A file larger than any policy is not read at all; a long name in a small file is refused.
    for (file, expected) in [
        (
            write("huge.yaml", 5 * 1024 * 1024),
            "cannot read: larger than 1048576 bytes",
        ),
        (
            write("long.yaml", 200 * 1024),
            "`instance` must be at most 128 characters",
        ),
    ] {
        let (ok, out) = check_output(&[file.to_str().unwrap()]);
        assert!(!ok);
        assert!(out.contains(expected), "{}", &out[..200.min(out.len())]);
        assert!(out.len() < 1000, "the name is not echoed back");
    }
    let folder = dir.path().join("policies");
    std::fs::create_dir(&folder).unwrap();
    let one = folder.join("one.yaml");
    std::fs::write(&one, "instance: one\nredis:\n  url: redis://localhost\n").unwrap();
    std::fs::write(
        folder.join(".one.yaml"),
        "instance: one\nredis:\n  url: redis://localhost\n",
    )
    .unwrap();
    let (ok, out) = check_output(&[
        one.to_str().unwrap(),
        one.to_str().unwrap(),
        folder.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.ends_with(": ok")).count(),
        1,
        "{out}"
    );
    assert!(
        out.contains(".one.yaml: skipped: a hidden file is not a policy"),
        "{out}"
    );
}

#[test]
fn two_files_claiming_one_instance_are_an_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "instance: same\nredis:\n  url: redis://127.0.0.1\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "# b\ninstance: same\nredis:\n  url: redis://127.0.0.1:6380\n",
    )
    .unwrap();
    let (ok, out) = check_output(&[dir.path().to_str().unwrap()]);
    assert!(!ok);
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    assert_eq!(
        out,
        format!(
            "{}: ok\n{}:2:11: instance `same` is already defined in {}:1:11; each instance needs its own name\n",
            a.display(),
            b.display(),
            a.display()
        )
    );
}

#[test]
fn shipped_example_policies_all_pass_check() {
    let (ok, out) = check_output(&["policies"]);
    assert!(ok, "{out}");
    for name in [
        "cache.yaml",
        "critical-primary.yaml",
        "staging.yaml",
        "demo.yaml",
        "sentinel-primary.yaml",
        "cluster-node.yaml",
    ] {
        assert!(out.contains(&format!("policies/{name}: ok")), "{out}");
    }
}

#[test]
fn check_binary_exit_codes_follow_the_contract() {
    let ok = Command::new(support::busyguard_bin())
        .args(["check", "policies"])
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0));
    let bad = Command::new(support::busyguard_bin())
        .args([
            "check",
            "policies/demo.yaml",
            "tests/fixtures/broken/01-typo-key.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let out = String::from_utf8(bad.stdout).unwrap();
    assert!(out.starts_with("policies/demo.yaml: ok\n"), "{out}");
    assert!(
        out.contains("01-typo-key.yaml:5:3: unknown key `kil_after`"),
        "{out}"
    );
}

/// #16: a policy written for the service (`${CREDENTIALS_DIRECTORY}/NAME`) is checked from an
/// admin shell with `--credentials DIR` (the folder `LoadCredential=` takes the files from), and
/// by a CI pipeline that has no secrets with `--syntax-only`; `status` takes `--credentials` too.
#[test]
fn service_policies_are_checked_outside_the_service() {
    let dir = support::state_dir();
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    let policy = dir.path().join("cache-01.yaml");
    std::fs::write(
        &policy,
        "instance: cache-01\nredis:\n  url: redis://127.0.0.1:1\n  username: busyguard\n  password_file: ${CREDENTIALS_DIRECTORY}/cache-01\nnotify:\n  - webhook: { url_file: \"${CREDENTIALS_DIRECTORY}/hook-url\", secret_file: \"${CREDENTIALS_DIRECTORY}/hook-secret\" }\n",
    )
    .unwrap();
    let check = |args: &[&str]| {
        let out = Command::new(support::busyguard_bin())
            .arg("check")
            .args(args)
            .arg(&policy)
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    // Plainly: the variable is unset outside the service, and the error says what to do.
    let (code, out) = check(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("--credentials /etc/busyguard/credentials"),
        "{out}"
    );
    // With the folder, the files are really read: missing ones are named, present ones pass.
    let creds_arg = creds.display().to_string();
    let (code, out) = check(&["--credentials", &creds_arg]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("cannot read `{creds_arg}/cache-01`")),
        "{out}"
    );
    std::fs::write(creds.join("cache-01"), "pw\n").unwrap();
    std::fs::write(creds.join("hook-url"), "https://hooks.example/x\n").unwrap();
    std::fs::write(creds.join("hook-secret"), "not-a-whsec\n").unwrap();
    let (code, out) = check(&["--credentials", &creds_arg]);
    assert_eq!(code, Some(1), "the secret's form is checked: {out}");
    assert!(out.contains("whsec_"), "{out}");
    std::fs::write(creds.join("hook-secret"), "whsec_c2VjcmV0\n").unwrap();
    let (code, out) = check(&["--credentials", &creds_arg]);
    assert_eq!(code, Some(0), "{out}");
    // Syntax only: nothing is read, the form still is checked.
    std::fs::remove_dir_all(&creds).unwrap();
    let (code, out) = check(&["--syntax-only"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok (syntax only"), "{out}");
    // status with the folder reads the password too (the server is away: unreachable, not
    // a policy error).
    std::fs::create_dir(&creds).unwrap();
    for f in ["cache-01", "hook-url"] {
        std::fs::write(creds.join(f), "https://hooks.example/x\n").unwrap();
    }
    std::fs::write(creds.join("hook-secret"), "whsec_c2VjcmV0\n").unwrap();
    let out = Command::new(support::busyguard_bin())
        .args(["status", "--json", "--credentials", &creds_arg])
        .arg(&policy)
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &status["instances"][0];
    assert_eq!(s["instance"], "cache-01", "{status}");
    assert!(s["problems"].is_null(), "{status}");
    let (code, _) = check(&["--syntax-only", "--credentials", &creds_arg]);
    assert_eq!(code, Some(2), "the two flags exclude each other");
}

/// #14: a policy that accepts the shutdown of a replicated primary without persistence is valid,
/// and `check` says what it accepts, at the key's line.
#[test]
fn check_warns_of_a_policy_accepting_empty_restarts() {
    let dir = support::state_dir();
    let file = dir.path().join("cache.yaml");
    std::fs::write(
        &file,
        format!(
            "instance: c\nredis:\n  url: unix:///x.sock\n{}",
            support::ACCEPT_EMPTY_RESTART
        ),
    )
    .unwrap();
    let (ok, out) = check_output(&[file.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(
        out.contains("cache.yaml:5:24: warning: `guards.allow_empty_restart: true` lets busyguard shut down a primary with replicas and no persistence"),
        "{out}"
    );
}

/// #33.2: `topology.fence` serves only `then: shutdown` or `ask` (a failover fences anyway;
/// `notify` never sends anything): with neither, `check` says it changes nothing, at its line.
#[test]
fn check_warns_of_a_fence_no_ladder_can_use() {
    let dir = support::state_dir();
    let file = dir.path().join("fenced.yaml");
    let write = |then: &str| {
        std::fs::write(
            &file,
            format!("instance: f\nredis:\n  url: unix:///x.sock\non_busy:\n  on_unkillable:\n    then: {then}\ntopology:\n  fence: true\n"),
        )
        .unwrap();
        check_output(&[file.to_str().unwrap()])
    };
    let (ok, out) = write("notify");
    assert!(ok, "{out}");
    assert!(
        out.contains("fenced.yaml:8:10: warning: `topology.fence: true` changes nothing here"),
        "{out}"
    );
    let (ok, out) = write("shutdown");
    assert!(ok && !out.contains("warning"), "{out}");
}

/// #34.3: a server log the service cannot read is said before any incident: by `check` and
/// `status` (here run as `nobody`, a user outside the log's group), and by the daemon (a
/// `probe_fault` and `busyguard_server_log_readable` 0). Before, `check` said ok, `status`
/// nothing, and at the incident every `sha` rule silently fell back to the instance's ladder.
#[test]
fn an_unreadable_server_log_is_said_before_any_incident() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.path().join("server.log");
    std::fs::write(&log, "").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = crate::support::RedisServer::start(crate::support::ServerOptions::default());
    let file = dir.path().join("logged.yaml");
    std::fs::write(
        &file,
        format!(
            "instance: logged\nredis:\n  url: redis://127.0.0.1:{}\non_busy:\n  server_log: {}\n",
            server.port,
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let as_nobody = |args: &[&str]| {
        let out = std::process::Command::new("runuser")
            .args(["-u", "nobody", "--"])
            .arg(support::busyguard_bin())
            .args(args)
            .arg(&file)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let out = as_nobody(&["check"]);
    assert!(
        out.contains("logged.yaml:5:15: warning: `on_busy.server_log`")
            && out.contains("cannot be read: permission denied")
            && out.contains("add the service's user to `adm`"),
        "{out}"
    );
    let out = as_nobody(&["status", "--state-dir", "/nonexistent"]);
    assert!(out.contains("cannot be read: permission denied"), "{out}");
    // The daemon (root here, so a log that does not exist).
    let port = support::free_port();
    let missing = dir.path().join("missing.log");
    let daemon = support::Daemon::start(
        &server.policy(
            "logged",
            &format!("on_busy:\n  server_log: {}\n", missing.display()),
        ),
        &["--metrics", &format!("127.0.0.1:{port}")],
    );
    let fault = daemon.wait_event("probe_fault", Duration::from_secs(20));
    assert!(
        fault["detail"]["reply"]
            .as_str()
            .unwrap()
            .contains("missing.log cannot be read: no such file"),
        "{fault}"
    );
    let metrics = support::http_get(port, "/metrics");
    assert!(
        metrics.contains("busyguard_server_log_readable{redis=\"logged\"} 0"),
        "{metrics}"
    );
}
