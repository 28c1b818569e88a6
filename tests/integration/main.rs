//! busyguard's integration tests, one binary (so the harness compiles once).
//!
//! Every test here runs the real thing: its own `redis-server` (a unix socket and a free port
//! in a temporary folder, see [`support`]), real runaway scripts, the real `busyguard` binary
//! or the daemon in-process, and real local HTTP receivers. Nothing of Redis is mocked; where a
//! server must misbehave in a way no real one can be made to on demand (a kill read and never
//! answered), [`support::fake`] answers exactly the bytes under test.
//!
//! A module per theme:
//! - [`harness`]: the harness itself (BUSY, UNKILLABLE, FUNCTION KILL really happen).
//! - [`policy`]: `busyguard check`, every key and every error.
//! - [`docs`]: the README and docs/ as a user reads them: links, the generated policy
//!   reference, the man pages' sections.
//! - [`remediation`]: the ladder end to end: kill, wait, shutdown, limits, dry-run, ACL users.
//! - [`compat`]: the ladder on every server build (Redis 6.2 to 8.2, Valkey 8.0 to 9.1).
//! - [`safety`]: what busyguard does when it knows only part of the story.
//! - [`fencing`]: one writable primary: Sentinel's word checked, an old primary fenced.
//! - [`evidence`]: what a shutdown rests on: one script, one server, one connection, fresh
//!   replies and counts (a TCP proxy makes the network misbehave).
//! - [`audit`]: the trail: decision inputs, forensics, resume after a crash, verify, rotation.
//! - [`state`]: what hosts do to busyguard's state: a second copy, rotation, a full disk, a
//!   deleted trail, a large history, bad cursors, endless secret files and receivers.
//! - [`control`]: operators steering the daemon: pause, resume, hold, approve, `then: ask`, `ps`.
//! - [`early`]: before BUSY: slow scripts from the SLOWLOG, the prevention check.
//! - [`notify`]: Slack, PagerDuty and signed webhooks, retries, delivery after a restart.
//! - [`simulate`]: rehearsing a policy: example scenarios, and a real trail replayed.
//! - [`tls`]: TLS to Redis: a private CA, mutual TLS, server names, failures in plain words.
//! - [`topology`]: replicas and Sentinel as `status` sees them.
//! - [`trust`]: no peer is believed or handed more than it should be: announced replicas,
//!   hostile replies, control clients that hold on, the unit's user namespace.
//! - [`operations`]: systemd, reload, stop, metrics, `status`.
//! - [`health`]: `/livez`, `/readyz` and `/healthz` for Kubernetes' probes.
//! - [`container`]: the image in a real pod (podman), beside Redis (`--ignored`: scripts/test).
//! - [`pod`]: a pod being deleted: `--kill-on-stop`, kubelet's preStop call, busyguard's SIGTERM.
//!
//! Run with `scripts/test` (it installs redis-server when missing), or `cargo test`.

mod support;

mod audit;
mod compat;
mod container;
mod control;
mod docs;
mod early;
mod evidence;
mod fencing;
mod harness;
mod health;
mod notify;
mod operations;
mod pod;
mod policy;
mod remediation;
mod safety;
mod simulate;
mod state;
mod tls;
mod topology;
mod trust;
