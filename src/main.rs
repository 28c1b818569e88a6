//! The `busyguard` binary: parse the command line, set up logging, call the library, and map
//! the outcome to the exit codes the contract names.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use busyguard::cli::{AuditCommand, Cli, Command};
use busyguard::daemon::{self, Control, RunEnd, RunOptions};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { paths } => {
            let mut out = std::io::stdout().lock();
            match busyguard::check::check(&paths, &mut out) {
                Ok(true) => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            }
        }
        Command::Run {
            policies,
            state_dir,
            dry_run,
            metrics,
        } => {
            init_logging();
            let Some(runtime) = runtime() else {
                return ExitCode::from(2);
            };
            let run = async {
                let metrics = match metrics {
                    None => None,
                    Some(addr) => Some(
                        tokio::net::TcpListener::bind(&addr)
                            .await
                            .with_context(|| format!("cannot serve metrics on {addr}"))?,
                    ),
                };
                let opts = RunOptions {
                    policies,
                    state_dir,
                    dry_run,
                    metrics,
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
        } => {
            let Some(runtime) = runtime() else {
                return ExitCode::from(1);
            };
            busyguard::install_crypto_provider();
            let mut out = std::io::stdout().lock();
            let trail = daemon::state_dir(state_dir).join("audit.jsonl");
            let status = busyguard::status::status(&paths, json, Some(&trail), &mut out);
            match runtime.block_on(status) {
                Ok(true) => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            }
        }
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
            AuditCommand::Show { file, incident } => {
                match busyguard::show::show(
                    &file,
                    incident.as_deref(),
                    &mut std::io::stdout().lock(),
                ) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("busyguard: {}: {e}", file.display());
                        ExitCode::from(1)
                    }
                }
            }
        },
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

/// Logs go to stderr; `RUST_LOG` overrides the level. Under systemd (`JOURNAL_STREAM` set)
/// stderr is the journal: each line then starts with its syslog priority (`<3>` error ...
/// `<7>` debug), which journald reads, and carries no timestamp or colour of its own.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // fred reports every closed connection as a warning; the watchdog reports what matters.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fred=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder
            .with_ansi(false)
            .event_format(busyguard::journal::JournalFormat)
            .init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}
