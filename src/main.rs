//! The `busyguard` binary: parse the command line, set up logging, call the library, and map
//! the outcome to the exit codes the contract names.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use busyguard::cli::{AuditCommand, Cli, Command};
use busyguard::commands::steer;
use busyguard::daemon::control;
use busyguard::daemon::{self, Control, RunEnd, RunOptions};
use busyguard::model::text::for_terminal;
use std::path::PathBuf;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            paths,
            sources,
            syntax_only,
        } => {
            let mut out = std::io::stdout().lock();
            let sources = match syntax_only {
                true => busyguard::policy::Sources::Skip,
                false => sources.sources(),
            };
            match busyguard::commands::check::check(&paths, &sources, &mut out) {
                Ok(true) => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            }
        }
        Command::Run {
            policies,
            state_dir,
            dry_run,
            metrics,
            kill_on_stop,
            log_format,
            log_level,
        } => {
            init_logging(log_level.as_deref(), log_format == "json");
            // Notifications first, on a thread of their own, so that it keeps normal priority
            // when this one, the watchdogs', gets real-time priority.
            let Some(notifications) = notifications_runtime() else {
                return ExitCode::from(2);
            };
            let scheduling = daemon::sched::favour_this_thread();
            tracing::info!("scheduling: {scheduling}");
            let Some(runtime) = runtime() else {
                return ExitCode::from(2);
            };
            let run = async {
                let metrics = match metrics {
                    None => None,
                    Some(addr) => Some(
                        // `:9754`, node_exporter's habit: every interface.
                        tokio::net::TcpListener::bind(match addr.strip_prefix(':') {
                            Some(port) => format!("0.0.0.0:{port}"),
                            None => addr.clone(),
                        })
                        .await
                        .with_context(|| format!("cannot serve metrics on {addr}"))?,
                    ),
                };
                let opts = RunOptions {
                    policies,
                    state_dir,
                    dry_run,
                    metrics,
                    kill_on_stop,
                    notifications: Some(notifications),
                };
                daemon::run(opts, os_signals()?).await
            };
            match runtime.block_on(run) {
                Ok(RunEnd::Stopped) => ExitCode::SUCCESS,
                Ok(RunEnd::NoValidPolicy) => ExitCode::from(2),
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Status {
            paths,
            json,
            state_dir,
            sources,
        } => {
            let Some(runtime) = runtime() else {
                return ExitCode::from(1);
            };
            busyguard::install_crypto_provider();
            let mut out = Vec::new();
            let dir = daemon::state_dir(state_dir);
            let sources = sources.sources();
            let status =
                busyguard::commands::status::status(&paths, json, &dir, &sources, &mut out);
            let healthy = runtime.block_on(status);
            let text = String::from_utf8_lossy(&out);
            let text = for_terminal(&text);
            let colour = !json && busyguard::commands::colour::wanted();
            print!("{}", busyguard::commands::colour::paint(&text, colour));
            match healthy {
                Ok(true) => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            }
        }
        Command::Pause {
            target,
            duration,
            force,
            steer,
        } => {
            let for_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
            steer_daemon(
                control::Command::Pause { for_ms, force },
                target.instance,
                steer,
            )
        }
        Command::Resume { target, steer } => {
            steer_daemon(control::Command::Resume, target.instance, steer)
        }
        Command::Hold { instance, steer } => {
            steer_daemon(control::Command::Hold, Some(instance), steer)
        }
        Command::Release {
            instance,
            now,
            steer,
        } => steer_daemon(control::Command::Release { now }, Some(instance), steer),
        Command::Approve { instance, steer } => {
            steer_daemon(control::Command::Approve, Some(instance), steer)
        }
        Command::Ps { json, state_dir } => match ask_daemon(state_dir, &control::Request::ps()) {
            Some(r) if json => {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Some(r) => {
                let text = steer::ps_text(&r);
                let text = for_terminal(&text);
                let colour = busyguard::commands::colour::wanted();
                print!("{}", busyguard::commands::colour::paint(&text, colour));
                ExitCode::SUCCESS
            }
            None => ExitCode::from(1),
        },
        Command::Simulate {
            policy,
            scenario,
            trail,
        } => match busyguard::commands::simulate::simulate_files(
            &policy,
            scenario.as_deref(),
            trail.as_deref(),
        ) {
            Ok(text) => {
                print!("{}", for_terminal(&text));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("busyguard: {e}");
                ExitCode::from(1)
            }
        },
        Command::Audit { command } => match command {
            AuditCommand::Verify { files } => match busyguard::audit::verify(&files) {
                Ok(ok) => {
                    let torn = if ok.torn > 0 {
                        format!(", {} torn record(s) reported", ok.torn)
                    } else {
                        String::new()
                    };
                    println!("intact: {} records{torn}; head {}", ok.records, ok.head);
                    ExitCode::SUCCESS
                }
                Err(b) => {
                    println!("{}:{}: {}", b.file.display(), b.line, b.reason);
                    ExitCode::from(1)
                }
            },
            AuditCommand::Show {
                files,
                incident,
                instance,
                since,
                summary,
                json,
                all,
                follow,
            } => {
                let since = match since
                    .as_deref()
                    .map(busyguard::commands::show::parse_since)
                    .transpose()
                {
                    Ok(since) => since,
                    Err(e) => {
                        eprintln!("busyguard: --since: {e}");
                        return ExitCode::from(2);
                    }
                };
                let opts = busyguard::commands::show::ShowOptions {
                    files,
                    incident,
                    instance,
                    since_unix_ms: since,
                    format: match (summary, json, all) {
                        (true, _, _) => busyguard::commands::show::Format::Summary,
                        (_, true, _) => busyguard::commands::show::Format::Json,
                        (_, _, true) => busyguard::commands::show::Format::All,
                        _ => busyguard::commands::show::Format::Timeline,
                    },
                };
                let mut out = std::io::stdout().lock();
                let following = match follow {
                    true => match busyguard::commands::show::start_following(&opts) {
                        Ok(reader) => Some(reader),
                        Err(e) => {
                            eprintln!("busyguard: {e}");
                            return ExitCode::from(1);
                        }
                    },
                    false => None,
                };
                match busyguard::commands::show::show(&opts, &mut out) {
                    Ok(shown)
                        if following.is_none()
                            && opts
                                .instance
                                .as_ref()
                                .is_some_and(|i| !shown.instances.contains(i)) =>
                    {
                        let known: Vec<&str> = shown.instances.iter().map(String::as_str).collect();
                        eprintln!(
                            "busyguard: no record of instance `{}` in these files (they name: {})",
                            opts.instance.as_deref().unwrap_or(""),
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        );
                        ExitCode::from(1)
                    }
                    Ok(_) if following.is_some() => {
                        let reader = following.expect("following");
                        match busyguard::commands::show::follow(&opts, reader, &mut out) {
                            Ok(()) => ExitCode::SUCCESS,
                            Err(e) => {
                                eprintln!("busyguard: {e}");
                                ExitCode::from(1)
                            }
                        }
                    }
                    Ok(shown) if shown.printed => ExitCode::SUCCESS,
                    Ok(_) => {
                        if let Some(id) = &opts.incident {
                            eprintln!("busyguard: no incident `{id}` in these files");
                        }
                        ExitCode::from(u8::from(opts.incident.is_some()))
                    }
                    Err(e) => {
                        eprintln!("busyguard: {e}");
                        ExitCode::from(1)
                    }
                }
            }
        },
    }
}

/// Send a steering command to the running daemon; print its answer.
fn steer_daemon(
    command: control::Command,
    instance: Option<String>,
    args: busyguard::cli::SteerArgs,
) -> ExitCode {
    let request = control::Request {
        command,
        instance,
        reason: args.reason,
    };
    match ask_daemon(args.state_dir, &request) {
        Some(r) => {
            println!("{}", for_terminal(&r.message));
            if r.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        None => ExitCode::from(1),
    }
}

/// One request to the daemon through its control socket; errors are printed.
fn ask_daemon(state_dir: Option<PathBuf>, request: &control::Request) -> Option<control::Response> {
    let runtime = runtime()?;
    let dir = daemon::state_dir(state_dir);
    match runtime.block_on(steer::send(&dir, request)) {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("busyguard: {e:#}");
            None
        }
    }
}

/// SIGHUP reloads; SIGTERM and SIGINT stop.
fn os_signals() -> anyhow::Result<tokio::sync::mpsc::Receiver<Control>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let control = tokio::select! {
                _ = term.recv() => Control::Stop,
                _ = int.recv() => Control::Stop,
                _ = hup.recv() => Control::Reload,
            };
            if tx.send(control).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// A runtime on a thread of its own for the notifications' delivery tasks (HTTP, TLS, reading
/// the trail back): off the watchdogs' thread and its priority. Lives as long as the process.
fn notifications_runtime() -> Option<tokio::runtime::Handle> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("notifications".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    let _ = tx.send(Ok(rt.handle().clone()));
                    rt.block_on(std::future::pending::<()>());
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
    let answer = spawned.ok().and_then(|_| rx.recv().ok());
    match answer {
        Some(Ok(handle)) => Some(handle),
        Some(Err(e)) => {
            eprintln!("busyguard: cannot start the notifications' runtime: {e}");
            None
        }
        None => {
            eprintln!("busyguard: cannot start the notifications' thread");
            None
        }
    }
}

/// The single-threaded runtime `run` and `status` share: the work is waiting on sockets, and one
/// thread spares every probe the hand-offs between worker threads (see BENCHMARKS.md).
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("busyguard: cannot start the runtime: {e}");
            None
        }
    }
}

/// Logs go to stderr, logfmt or JSON (see `daemon::logs`); `RUST_LOG` overrides the level.
/// Under systemd (`JOURNAL_STREAM` set) stderr is the journal: each line then starts with its
/// syslog priority, which journald reads, and carries no timestamp of its own.
fn init_logging(level: Option<&str>, json: bool) {
    use busyguard::daemon::logs::{Lines, LogFormat};
    // fred reports every closed connection as a warning; the watchdog reports what matters.
    let filter = match level {
        Some(level) => tracing_subscriber::EnvFilter::new(format!("{level},fred=error")),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fred=error")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(Lines {
            format: if json {
                LogFormat::Json
            } else {
                LogFormat::Logfmt
            },
            journald: std::env::var_os("JOURNAL_STREAM").is_some(),
        })
        .init();
}
