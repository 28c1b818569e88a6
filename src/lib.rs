//! busyguard: ends runaway Redis scripts by policy, in milliseconds, and leaves a trail.
//!
//! (The map below names internal modules on purpose: it is for the next engineer.)
//!
//! # Layout
//! One path for the data:
//!
//! ```text
//! policy files -> policy::load -> Policy (validated, defaults and bounds from policy::keys)
//!    one watchdog task per instance (daemon::watchdog):
//!    redis::probe --Observation--> engine (pure) --Step{events, action}--> remedy
//!      ^ its own fred                no I/O, no clock;          SCRIPT KILL / FUNCTION KILL
//!      | connection (through         time is an input           SHUTDOWN NOSAVE [NOW]
//!      | redis::relay)                                          SIGKILL, failover, fence
//!      | healthy snapshot
//!    Event (typed detail per kind) --> record --> log line, metrics, audit trail
//!    audit trail (Record, hash chain) --> notify: one delivery task per receiver, from a cursor
//! ```
//!
//! One folder per layer; each uses only the folders listed below it (no loop between them):
//! - [`commands`]: one file per `busyguard <verb>` but `run` (check, status, show, simulate,
//!   steer).
//! - [`daemon`]: `busyguard run`'s runtime: the watchdog tasks (and `act`, which records, then
//!   sends, every wait bounded), reload and stop, the control socket's server, systemd.
//! - [`notify`]: delivery to Slack, PagerDuty and signed webhooks from the trail, never in the
//!   way.
//! - [`remedy`]: carrying out what the engine decided, once: one file per action.
//! - [`record`]: one call logs, counts and appends an event; the Prometheus metrics.
//! - [`redis`]: the only code that speaks RESP: the probe's connection, the relay every
//!   connection passes through (TCP, TLS, a bound on each reply), replies, forensics, Sentinel's
//!   view, the listed replicas.
//! - [`audit`]: the trail: append and chain, verify, read back (history, follow).
//! - [`engine`]: the pure state machine that decides, and the early warnings.
//! - [`policy`]: YAML into a validated [`policy::Policy`], every error with file:line:col.
//! - [`event`]: what happened: one table of kinds, a typed [`event::Detail`] per kind.
//! - [`model`]: plain values every layer shares (the domain's words, the snapshot, a SLOWLOG
//!   entry, text, the clock).
//!
//! The runtime is single-threaded: the work is waiting on sockets, and one thread halves the
//! cost of each probe compared with hand-offs between worker threads (see BENCHMARKS.md).
#![allow(rustdoc::private_intra_doc_links)]

pub mod audit;
pub mod cli;
pub mod commands;
pub mod daemon;
pub(crate) mod engine;
pub mod event;
pub mod model;
pub(crate) mod notify;
pub mod policy;
pub(crate) mod record;
pub(crate) mod redis;
pub(crate) mod remedy;

/// The commit busyguard was built from (`git describe`), or `unknown` outside a checkout.
pub const COMMIT: &str = env!("BUSYGUARD_COMMIT");

/// The process-wide rustls provider (ring, which fred already brings) for fred's and reqwest's
/// TLS, installed in this one place.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod layering {
    //! The folders are the layers: each uses only the folders below it, and the pure ones
    //! (model, event, engine) name no runtime, no client, no file system and no network. Read
    //! from the code as text, outside `#[cfg(test)]` and test files.

    /// Bottom first: each may use only those before it.
    const LAYERS: &[&str] = &[
        "model", "event", "policy", "engine", "audit", "redis", "record", "remedy", "notify",
        "daemon", "commands",
    ];
    /// The layers that decide or describe, and never do I/O.
    const PURE: &[&str] = &["model", "event", "engine"];
    const IMPURE_WORDS: &[&str] = &["tokio", "fred", "reqwest", "std::fs", "std::net", "nix::"];
    /// The layers that decide with time as an input, and the ways to read a clock.
    const CLOCKLESS: &[&str] = &["event", "engine"];
    const CLOCKS: &[&str] = &["unix_ms()", "now_rfc3339", "SystemTime", "Instant::now"];

    /// The code of a file, without its tests.
    fn code(path: &std::path::Path) -> String {
        let text = std::fs::read_to_string(path).unwrap();
        text.split("#[cfg(test)]").next().unwrap_or("").to_string()
    }

    fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(files(&path));
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("tests.rs")
                && !path.to_string_lossy().ends_with("_tests.rs")
            {
                out.push(path);
            }
        }
        out
    }

    #[test]
    fn each_folder_uses_only_the_folders_below_it_and_the_pure_ones_do_no_io() {
        let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
        let mut offences = Vec::new();
        for (level, layer) in LAYERS.iter().enumerate() {
            let above = &LAYERS[level + 1..];
            for file in files(&root.join(layer)) {
                for (n, line) in code(&file).lines().enumerate() {
                    if line.trim_start().starts_with("//") {
                        continue;
                    }
                    let at = || format!("{}:{}: {}", file.display(), n + 1, line.trim());
                    if above.iter().any(|up| {
                        line.contains(&format!("crate::{up}::"))
                            || line.contains(&format!("crate::{up};"))
                    }) {
                        offences.push(format!("uses a layer above `{layer}`: {}", at()));
                    }
                    if PURE.contains(layer) && IMPURE_WORDS.iter().any(|w| line.contains(w)) {
                        offences.push(format!("I/O in the pure `{layer}`: {}", at()));
                    }
                    if CLOCKLESS.contains(layer) && CLOCKS.iter().any(|w| line.contains(w)) {
                        offences.push(format!("a clock read in `{layer}`: {}", at()));
                    }
                }
            }
        }
        assert!(offences.is_empty(), "{}", offences.join("\n"));
    }

    /// A handful of files flat in `src/`, the rest in folders that are layers.
    #[test]
    fn src_holds_the_layers_and_a_handful_of_files() {
        let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
        for entry in std::fs::read_dir(root).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            match path.is_dir() {
                true => assert!(
                    LAYERS.contains(&name.as_str()),
                    "a folder that is no layer: {name}"
                ),
                false => assert!(
                    ["main.rs", "lib.rs", "cli.rs"].contains(&name.as_str()),
                    "a file flat in src/: {name}"
                ),
            }
        }
    }
}
