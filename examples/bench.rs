//! `scripts/bench`: busyguard measured against the physical limit and Redis Sentinel on real
//! redis-server and redis-sentinel processes, in one run. Prints every figure and writes
//! `BENCHMARKS.md` and `docs/bench.svg`.
//!
//! 1. Time to recover from a killable runaway script (script start -> its caller gets "Script
//!    killed"), thresholds 200 ms and 5000 ms: busyguard, a raw client that keeps a PING
//!    outstanding and kills on the BUSY reply (the floor), and Sentinel with down-after equal to
//!    the threshold and with its default 30000 ms.
//! 2. Time to shutdown past the budget for an unkillable script (script start -> the server gone).
//! 3. Overhead at 1, 10, 100, 500 supervised servers, and detection latency at 500.
//! 4. False positives under saturating load with legitimate scripts just under the threshold.
//! 5. The kill's tail over many incidents, on a quiet and on a stalling disk, and on a host
//!    whose cores are all busy (beside the raw floor at busyguard's priority).
//! 6. Time to a writable new primary for an unkillable script on a replicated primary
//!    (`then: failover` through Sentinel and in a Cluster, against Sentinel's own detection at
//!    its default and a tuned down-after, and a Cluster left to itself).
//!
//! `--quick` runs a few samples of everything (a smoke test of the bench itself).

// The bench uses part of the test harness; the rest is the tests'.
#[allow(dead_code)]
#[path = "../tests/integration/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::cluster::Cluster;
use support::sentinel::Sentinel;
use support::{Caller, Daemon, RedisServer, Reply, ServerOptions, scripts, wait_for};

const LONG: Duration = Duration::from_secs(60);

/// One chart group: a title and rows of (system, median ms, p99 ms).
type ChartGroup = (String, Vec<(String, f64, f64)>);

/// Milliseconds samples.
#[derive(Default, Clone)]
struct Samples(Vec<f64>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1000.0);
    }
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }
    fn quantile(&self, q: f64) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        v[((v.len() as f64 - 1.0) * q).round() as usize]
    }
    fn median(&self) -> f64 {
        self.quantile(0.5)
    }
    fn p99(&self) -> f64 {
        self.quantile(0.99)
    }
    /// Median, p90, p99 and max past `threshold` ms, as the focused runs print them.
    fn past(&self, threshold: u64) -> String {
        let t = threshold as f64;
        format!(
            "median=+{:.2} p90=+{:.2} p99=+{:.2} max=+{:.2}",
            self.median() - t,
            self.quantile(0.9) - t,
            self.p99() - t,
            self.quantile(1.0) - t
        )
    }
}

struct Config {
    quick: bool,
}

impl Config {
    fn n(&self, full: usize) -> usize {
        if self.quick { full.min(3) } else { full }
    }
}

fn main() {
    let cfg = Config {
        quick: std::env::args().any(|a| a == "--quick"),
    };
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str, i: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|p| args.get(p + i))
            .map(|v| v.parse::<u64>().expect("a number"))
    };
    // A CPU-bound neighbour for `--saturated`: spins until killed.
    if args.iter().any(|a| a == "--spin") {
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    // `--saturated T N`: recovery at threshold T, N incidents, with one CPU-bound neighbour per
    // core, and in the same run the raw floor client at busyguard's scheduling.
    if let (Some(t), Some(n)) = (arg("--saturated", 1), arg("--saturated", 2)) {
        let (neighbours, guarded, floor) = saturated(t, n as usize);
        for (name, s) in [
            ("busyguard", guarded),
            ("raw floor, same scheduling", floor),
        ] {
            println!(
                "saturated ({neighbours} CPU-bound neighbours) threshold={t} {name}: n={n} {}",
                s.past(t)
            );
        }
        return;
    }
    // `--recovery T N`: only busyguard's recovery at threshold T, N incidents (for profiling).
    if let (Some(t), Some(n)) = (arg("--recovery", 1), arg("--recovery", 2)) {
        let s = busyguard_recovery(t, n as usize);
        println!("recovery threshold={t}: n={n} {}", s.past(t));
        return;
    }
    // `--fcall T N`: runaway FCALLs at threshold T, without script rules and with one that
    // names another function: what identifying the function (FUNCTION STATS) costs a kill.
    if let (Some(t), Some(n)) = (arg("--fcall", 1), arg("--fcall", 2)) {
        let plain = recovery_of(t, n as usize, "on_busy:\n  kill_after: 0s\n", true);
        let ruled = recovery_of(
            t,
            n as usize,
            "on_busy:\n  kill_after: 0s\n  scripts:\n    - function: nightly_*\n      kill_after: 1m\n",
            true,
        );
        for (name, s) in [("no rules", plain), ("with a rule", ruled)] {
            println!(
                "fcall threshold={t} {name}: n={n} median=+{:.2} p90=+{:.2} p99=+{:.2}",
                s.median() - t as f64,
                s.quantile(0.9) - t as f64,
                s.p99() - t as f64
            );
        }
        return;
    }
    // `--slow-hook-job T N`: a job whose hooks are far apart (a ZRANGE of 100 members per step),
    // named by a `never_kill` rule, N times at threshold T: how late FUNCTION STATS names it
    // (its kill waits for that), and, on the same server, a runaway's kill under the same rules.
    if let (Some(t), Some(n)) = (arg("--slow-hook-job", 1), arg("--slow-hook-job", 2)) {
        let (named, runaways) = slow_hook_job(t, n as usize);
        println!(
            "slow-hook job, threshold={t}: named n={n} median={:.1} p99={:.1} max={:.1} ms after its first BUSY reply (never killed); runaway FCALL under the same rules: median=+{:.2} p99=+{:.2}",
            named.median(),
            named.p99(),
            named.quantile(1.0),
            runaways.median() - t as f64,
            runaways.p99() - t as f64
        );
        return;
    }
    // `--slow-disk N`: recovery at threshold 200 while another writer stalls the trail's disk
    // with large flushes (no disk flush is on a watchdog's path).
    if let Some(n) = arg("--slow-disk", 1) {
        let (s, flushes) = recovery_on_a_stalling_disk(n as usize);
        println!(
            "slow disk: n={n} kill-threshold median=+{:.2} p99=+{:.2} max=+{:.2}; the neighbour's fdatasync: n={} median={:.1} p99={:.1} max={:.1} ms",
            s.median() - 200.0,
            s.p99() - 200.0,
            s.quantile(1.0) - 200.0,
            flushes.0.len(),
            flushes.median(),
            flushes.p99(),
            flushes.quantile(1.0)
        );
        return;
    }
    // `--shutdown N`: only the shutdown timing, N incidents.
    if let Some(n) = arg("--shutdown", 1) {
        let s = shutdown_timing(200, 1000, n as usize);
        println!(
            "shutdown: n={n} median=+{:.2} p90=+{:.2} p99=+{:.2}",
            s.median() - 1200.0,
            s.quantile(0.9) - 1200.0,
            s.p99() - 1200.0
        );
        return;
    }
    // `--failover N`: only section 6, N samples of each busyguard failover; its markdown.
    if let Some(n) = arg("--failover", 1) {
        println!("{}", failover_section(n as usize, 3));
        return;
    }
    // `--false-positives S`: only the false-positive run, S seconds, printing what was acted on.
    if let Some(secs) = arg("--false-positives", 1) {
        let (acted, n, ops) = false_positives(Duration::from_secs(secs));
        println!("false positives: {acted} actions, {n} scripts, {ops}");
        return;
    }
    // `--overhead N`: only the overhead of supervising N servers (for profiling).
    if let Some(n) = std::env::args().skip_while(|a| a != "--overhead").nth(1) {
        let n: usize = n.parse().expect("--overhead N");
        let (cpu, rss, _) = overhead(n, Duration::from_secs(20), 0);
        println!(
            "overhead n={n}: cpu {cpu:.2}s/min ({:.2}% of a core) rss {rss:.1}MiB",
            cpu / 60.0 * 100.0
        );
        let floor = raw_probe_floor(n, Duration::from_secs(20));
        println!(
            "floor n={n}: cpu {floor:.2}s/min ({:.2}% of a core)",
            floor / 60.0 * 100.0
        );
        return;
    }
    let mut md = String::new();
    let version = Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    writeln!(md, "# busyguard benchmarks\n\nReproduce: `scripts/bench` (about 20 minutes; `scripts/bench --quick` for a smoke run).\n").unwrap();
    writeln!(md, "Measured on this project's machine: {cores} cores, {version}, busyguard built with `--release`, everything on one host over unix sockets (Sentinel over loopback TCP). Generated by `examples/bench.rs`{}.\n", if cfg.quick { " in --quick mode (few samples: indicative only)" } else { "" }).unwrap();

    let mut chart: Vec<ChartGroup> = Vec::new();
    writeln!(md, "## 1. Time to recover from a killable runaway script\n\nFrom the script's start to its caller receiving `Script killed by user`, `kill_after: 0s`. The physical limit is the threshold: the server accepts no command before it.\n").unwrap();
    writeln!(md, "| threshold | system | samples | median ms | p99 ms | median - threshold |\n|---|---|---|---|---|---|").unwrap();
    for threshold in [200u64, 5000] {
        let mut rows = Vec::new();
        let limit = threshold as f64;
        rows.push(("limit (threshold)".to_string(), limit, limit));
        let floor = raw_client(threshold, cfg.n(20));
        let bg = busyguard_recovery(threshold, cfg.n(20));
        let sentinel_same = sentinel_recovery(
            threshold,
            threshold,
            cfg.n(if threshold == 200 { 20 } else { 10 }),
        );
        let sentinel_default = sentinel_recovery(
            threshold,
            30_000,
            cfg.n(5).min(if cfg.quick { 1 } else { 5 }),
        );
        for (name, s) in [
            ("raw PING+KILL client (floor)", &floor),
            ("busyguard", &bg),
            ("Sentinel, down-after = threshold", &sentinel_same),
            ("Sentinel, default down-after 30000", &sentinel_default),
        ] {
            writeln!(
                md,
                "| {threshold} ms | {name} | {} | {:.1} | {:.1} | {:+.1} |",
                s.0.len(),
                s.median(),
                s.p99(),
                s.median() - limit
            )
            .unwrap();
            println!(
                "recovery threshold={threshold} {name}: n={} median={:.1} p99={:.1}",
                s.0.len(),
                s.median(),
                s.p99()
            );
            rows.push((name.to_string(), s.median(), s.p99()));
        }
        writeln!(md, "| {threshold} ms | ratios | | busyguard/limit {:.4} | | Sentinel default/busyguard {:.1}x, Sentinel same-threshold/busyguard {:.2}x |",
            bg.median() / limit, sentinel_default.median() / bg.median(), sentinel_same.median() / bg.median()).unwrap();
        chart.push((format!("threshold {threshold} ms"), rows));
    }
    writeln!(md, "\n![time to recovery](docs/bench.svg)\n").unwrap();

    writeln!(md, "## 2. Time to shutdown past the budget\n\nAn unkillable script (it wrote first), threshold 200 ms, `wait: 1s`, `then: shutdown`: from the script's start to the server's exit (its caller's connection closes), against threshold + wait.\n").unwrap();
    let shut = shutdown_timing(200, 1000, cfg.n(20));
    writeln!(md, "| samples | median ms | p99 ms | median - (threshold + wait) | p99 - (threshold + wait) |\n|---|---|---|---|---|\n| {} | {:.1} | {:.1} | {:+.1} | {:+.1} |\n", shut.0.len(), shut.median(), shut.p99(), shut.median() - 1200.0, shut.p99() - 1200.0).unwrap();
    println!(
        "shutdown: median={:.1} p99={:.1}",
        shut.median(),
        shut.p99()
    );

    writeln!(md, "## 3. Overhead and scale\n\n`probe.interval: 100ms`, real redis-server processes, CPU of the busyguard process (user+sys) over a measured window scaled to one minute, peak RSS (VmHWM).\n").unwrap();
    writeln!(
        md,
        "| instances | CPU s per minute | % of one core | peak RSS MiB |\n|---|---|---|---|"
    )
    .unwrap();
    let sizes: &[usize] = if cfg.quick {
        &[1, 10]
    } else {
        &[1, 10, 100, 500]
    };
    let window = if cfg.quick {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(30)
    };
    let mut detection = Samples::default();
    for &n in sizes {
        let (cpu_per_min, rss_mib, det) = overhead(
            n,
            window,
            if n == *sizes.last().unwrap() {
                cfg.n(20)
            } else {
                0
            },
        );
        writeln!(
            md,
            "| {n} | {cpu_per_min:.2} | {:.2} | {rss_mib:.1} |",
            cpu_per_min / 60.0 * 100.0
        )
        .unwrap();
        println!("overhead n={n}: cpu {cpu_per_min:.2}s/min rss {rss_mib:.1}MiB");
        if !det.0.is_empty() {
            detection = det;
        }
    }
    if !cfg.quick {
        let (cpu, rss, _) = with_interval("250ms", || overhead(100, window, 0));
        writeln!(
            md,
            "| 100, `interval: 250ms` | {cpu:.2} | {:.2} | {rss:.1} |",
            cpu / 60.0 * 100.0
        )
        .unwrap();
        println!("overhead n=100 at 250ms: cpu {cpu:.2}s/min rss {rss:.1}MiB");
        let floor = raw_probe_floor(100, window);
        writeln!(
            md,
            "| floor: 100 raw PINGs every 100 ms, no client library | {floor:.2} | {:.2} | - |",
            floor / 60.0 * 100.0
        )
        .unwrap();
        println!("floor n=100: {floor:.2}s/min");
    }
    writeln!(md, "\nDetection latency while supervising {} instances (one goes busy at a time; from the instant the threshold passes to the `busy_detected` record, trail timestamps in ms): samples {}, p50 {:.1} ms, p99 {:.1} ms.\n",
        sizes.last().unwrap(), detection.0.len(), detection.median(), detection.p99()).unwrap();
    println!(
        "detection: p50={:.1} p99={:.1}",
        detection.median(),
        detection.p99()
    );

    writeln!(md, "## 4. False positives\n").unwrap();
    let fp_window = if cfg.quick {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(60)
    };
    let (actions, scripts_run, bench_ops) = false_positives(fp_window);
    writeln!(md, "{} s of `redis-benchmark` (50 clients, SET/GET/INCR/LPUSH) on one server plus {scripts_run} legitimate scripts of 170 ms back to back (threshold 200 ms), under the most aggressive remediation policy (`probe.interval: 10ms`, `kill_after: 0s`, `wait: 10ms`, `then: shutdown`, `on_hang.after: 250ms`): **{actions} actions taken** (kills, shutdowns, signals sent). Server: {bench_ops}. A hang detection here is true: the server answered nothing for 250 ms (a 170 ms script plus CPU starvation with everything on 2 cores); it is reported and notified, never acted on without `on_hang.signal`.\n", fp_window.as_secs()).unwrap();
    println!("false positives: {actions} actions, {scripts_run} scripts");

    writeln!(md, "## 5. The kill's tail: many incidents, and a stalling disk\n\nNo disk flush is on a watchdog's path: a kill's record is written before the kill leaves and flushed right after it, off the runtime thread. {} killable incidents at threshold 200 ms, from the script's start to its caller's answer, minus the threshold (ms); then the same while a neighbour process writes 8 MiB and `fdatasync`s it over and over on the trail's file system.\n", if cfg.quick { 20 } else { 200 }).unwrap();
    let n = if cfg.quick { 20 } else { 200 };
    let plain = busyguard_recovery(200, n);
    let (stalled, flushes) = recovery_on_a_stalling_disk(n);
    let (neighbours, saturated_guarded, saturated_floor) = saturated(200, n.min(100));
    writeln!(md, "| host | incidents | p50 | p99 | max | the neighbour's fdatasync p50 / p99 / max (ms) |\n|---|---|---|---|---|---|").unwrap();
    let fsyncs = format!(
        "{:.1} / {:.1} / {:.1} ({} flushes)",
        flushes.median(),
        flushes.p99(),
        flushes.quantile(1.0),
        flushes.0.len()
    );
    for (name, s, fsyncs) in [
        ("quiet".to_string(), &plain, "-".to_string()),
        ("a stalling disk".to_string(), &stalled, fsyncs),
        (
            format!("saturated ({neighbours} CPU-bound neighbours), busyguard"),
            &saturated_guarded,
            "-".to_string(),
        ),
        (
            "saturated, a raw client at busyguard's priority (the floor)".to_string(),
            &saturated_floor,
            "-".to_string(),
        ),
    ] {
        writeln!(
            md,
            "| {name} | {} | {:+.2} | {:+.2} | {:+.2} | {fsyncs} |",
            s.0.len(),
            s.median() - 200.0,
            s.p99() - 200.0,
            s.quantile(1.0) - 200.0
        )
        .unwrap();
    }
    writeln!(md, "\nGoal: p99 within +5 ms of the threshold, and on a saturated host within +2 ms of the floor measured in the same run (busyguard's watchdogs run at real-time priority: docs/install.md, Scheduling). Focused runs: `target/release/examples/bench --recovery 200 200`, `--slow-disk 200` and `--saturated 200 100`.\n").unwrap();
    println!(
        "kill tail: quiet p99=+{:.2}, stalling p99=+{:.2}",
        plain.p99() - 200.0,
        stalled.p99() - 200.0
    );

    md.push_str(&failover_section(cfg.n(5), cfg.n(3).min(3)));

    std::fs::write("BENCHMARKS.md", md).unwrap();
    std::fs::create_dir_all("docs").unwrap();
    std::fs::write("docs/bench.svg", svg(&chart)).unwrap();
    println!("wrote BENCHMARKS.md and docs/bench.svg");
}

/// `probe.interval: 100ms`, or `$BENCH_INTERVAL` (e.g. `250ms`) to see how overhead scales.
fn policy_for(server: &RedisServer, name: &str, rest: &str) -> String {
    let interval = std::env::var("BENCH_INTERVAL").unwrap_or_else(|_| "100ms".into());
    server
        .policy(name, rest)
        .replace("interval: 50ms", &format!("interval: {interval}"))
}

/// Recovery with busyguard supervising. With `explain`, the slowest incident is broken down
/// by the trail's own timestamps.
fn busyguard_recovery(threshold: u64, n: usize) -> Samples {
    recovery_of(threshold, n, "on_busy:\n  kill_after: 0s\n", false)
}

/// Recovery of runaway FCALLs, `on_busy` the policy's section: with script rules, the kill
/// waits for FUNCTION STATS to name the function (the identification's cost).
fn recovery_of(threshold: u64, n: usize, on_busy: &str, fcall: bool) -> Samples {
    let server = RedisServer::start(ServerOptions {
        threshold_ms: threshold,
        ..Default::default()
    });
    if fcall {
        server
            .conn()
            .call(&["FUNCTION", "LOAD", scripts::SPIN_LIBRARY])
            .unwrap();
    }
    let daemon = Daemon::start(&policy_for(&server, "bench", on_busy), &[]);
    server.wait_snapshot();
    let mut s = Samples::default();
    let mut worst = (0.0, String::new());
    for i in 0..n {
        let started_ms = unix_ms_now();
        let caller = match fcall {
            true => Caller::start(&server, &["FCALL", "spin", "0"]),
            false => Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]),
        };
        let (reply, took) = caller.reply_timed();
        assert!(reply.unwrap().error().unwrap().contains("killed"));
        s.push(took);
        // The next incident starts once busyguard has seen this one end.
        wait_recovered(&daemon, i + 1);
        let ms = took.as_secs_f64() * 1000.0;
        if ms > worst.0 {
            let records = daemon.records();
            let at = |e: &str| {
                records
                    .iter()
                    .rev()
                    .find(|r| r["event"] == e)
                    .map(|r| ts_ms(r) - started_ms)
            };
            worst = (
                ms,
                format!(
                    "caller answered +{:.1}; busy_detected +{:.1}, kill_sent +{:.1}, killed +{:.1} (ms after the script was sent; trail ts in ms)",
                    ms,
                    at("busy_detected").unwrap_or(f64::NAN),
                    at("kill_sent").unwrap_or(f64::NAN),
                    at("killed").unwrap_or(f64::NAN)
                ),
            );
            if std::env::var_os("RUST_LOG").is_some() {
                let log = daemon.stderr();
                let lines: Vec<&str> = log.lines().collect();
                let at = lines
                    .iter()
                    .rposition(|l| l.contains("busy_detected"))
                    .unwrap_or(0);
                for l in lines.iter().take(at + 1).rev().take(10).rev() {
                    worst.1.push_str(&format!(
                        "\n  | {}",
                        l.chars().take(200).collect::<String>()
                    ));
                }
            }
        }
    }
    println!("slowest incident at threshold {threshold}: {}", worst.1);
    s
}

/// A job named by a `never_kill` rule (its hooks ~120 ms apart) and runaways of another
/// function, alternately, `n` of each: when its name came (ms after its first BUSY reply), and
/// the runaways' answer times.
fn slow_hook_job(threshold: u64, n: usize) -> (Samples, Samples) {
    let server = RedisServer::start(ServerOptions {
        threshold_ms: threshold,
        ..Default::default()
    });
    server
        .conn()
        .call(&["FUNCTION", "LOAD", scripts::JOBS_LIBRARY])
        .unwrap();
    server.sorted_set("z", 100);
    let rules = "on_busy:\n  kill_after: 0s\n  scripts:\n    - function: scan_job\n      never_kill: true\n";
    let daemon = Daemon::start(&policy_for(&server, "bench", rules), &[]);
    server.wait_snapshot();
    let (mut named, mut runaways) = (Samples::default(), Samples::default());
    for i in 0..n {
        let job = Caller::start(&server, &["FCALL", "scan_job", "1", "z"]);
        assert!(wait_for(Duration::from_secs(30), || {
            daemon
                .records_of("escalation_withheld")
                .iter()
                .filter(|r| r["detail"]["withheld_action"] == "kill")
                .count()
                > i
        }));
        let withheld = daemon
            .records_of("escalation_withheld")
            .into_iter()
            .filter(|r| r["detail"]["withheld_action"] == "kill")
            .nth(i)
            .unwrap();
        named.push(Duration::from_millis(
            withheld["detail"]["since_first_busy_ms"].as_u64().unwrap(),
        ));
        // Ended by the bench itself (read-only: FUNCTION KILL works), then a runaway.
        let mut admin = server.conn();
        assert!(wait_for(Duration::from_secs(10), || admin
            .call(&["FUNCTION", "KILL"])
            .is_ok_and(|r| r.error().is_none())));
        let _ = job.reply();
        wait_recovered(&daemon, 2 * i + 1);
        let caller = Caller::start(&server, &["FCALL", "spin", "0"]);
        let (reply, took) = caller.reply_timed();
        assert!(reply.unwrap().error().unwrap().contains("killed"));
        runaways.push(took);
        wait_recovered(&daemon, 2 * i + 2);
    }
    assert!(
        daemon.records_of("kill_sent").len() == n,
        "only the runaways were killed"
    );
    (named, runaways)
}

/// Recovery at threshold 200 while a neighbour writes 8 MiB and `fdatasync`s it, over and over,
/// on the file system of the trail (whose own flushes then stall): returns the callers' answer
/// times and the neighbour's flush times.
fn recovery_on_a_stalling_disk(n: usize) -> (Samples, Samples) {
    use std::io::Write;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flushes = std::sync::Arc::new(std::sync::Mutex::new(Samples::default()));
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let neighbour = {
        let (stop, flushes) = (stop.clone(), flushes.clone());
        let path = dir.path().join("neighbour");
        std::thread::spawn(move || {
            let chunk = vec![7u8; 8 * 1024 * 1024];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut f = std::fs::File::create(&path).unwrap();
                f.write_all(&chunk).unwrap();
                let t = Instant::now();
                f.sync_data().unwrap();
                flushes.lock().unwrap().push(t.elapsed());
            }
        })
    };
    let s = busyguard_recovery(200, n);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    neighbour.join().unwrap();
    let flushes = std::mem::take(&mut *flushes.lock().unwrap());
    (s, flushes)
}

/// Wait until the trail holds `count` `recovered` records: busyguard has seen the incident end.
fn wait_recovered(daemon: &Daemon, count: usize) {
    assert!(wait_for(LONG, || daemon
        .events()
        .iter()
        .filter(|e| *e == "recovered")
        .count()
        >= count));
}

fn unix_ms_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// Recovery (busyguard's, then the raw floor's with its killer at the watchdogs' scheduling)
/// with one CPU-bound neighbour per core running all along: how many, and the two samples.
fn saturated(threshold: u64, n: usize) -> (usize, Samples, Samples) {
    struct Neighbours(Vec<std::process::Child>);
    impl Drop for Neighbours {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let neighbours = Neighbours(
        (0..cores)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .arg("--spin")
                    .spawn()
                    .expect("a neighbour")
            })
            .collect(),
    );
    let guarded = busyguard_recovery(threshold, n);
    let floor = raw_client_at(threshold, n, true);
    drop(neighbours);
    (cores, guarded, floor)
}

/// The floor: one connection that keeps a PING outstanding and sends SCRIPT KILL on BUSY.
fn raw_client(threshold: u64, n: usize) -> Samples {
    raw_client_at(threshold, n, false)
}

/// [`raw_client`], its killer thread at the watchdogs' real-time priority when `favoured`.
fn raw_client_at(threshold: u64, n: usize, favoured: bool) -> Samples {
    let server = RedisServer::start(ServerOptions {
        threshold_ms: threshold,
        ..Default::default()
    });
    let mut s = Samples::default();
    for _ in 0..n {
        let mut watcher = server.conn();
        let caller = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]);
        let killer = std::thread::spawn(move || {
            if favoured {
                let got = busyguard::daemon::sched::favour_this_thread();
                assert!(got.contains("real-time"), "{got}");
            }
            loop {
                let reply = watcher.call(&["PING"]).unwrap();
                if reply.error().is_some_and(|e| e.starts_with("BUSY ")) {
                    watcher.call(&["SCRIPT", "KILL"]).unwrap();
                    return;
                }
            }
        });
        let (reply, took) = caller.reply_timed();
        assert!(reply.unwrap().error().unwrap().contains("Script killed"));
        killer.join().unwrap();
        s.push(took);
    }
    s
}

fn sentinel_recovery(threshold: u64, down_after: u64, n: usize) -> Samples {
    let server = RedisServer::start(ServerOptions {
        threshold_ms: threshold,
        ..Default::default()
    });
    let sentinel = Sentinel::start(&server, down_after);
    let mut s = Samples::default();
    for _ in 0..n {
        let (reply, took) = Caller::eval(&server, scripts::READ_ONLY_LOOP, &[], &[]).reply_timed();
        assert!(reply.unwrap().error().unwrap().contains("Script killed"));
        s.push(took);
        // Sentinel's view must be healthy again, or the next incident would start already "down".
        assert!(wait_for(LONG, || sentinel.flags().as_deref()
            == Some("master")
            && sentinel.last_ok_ping_ms() < 1500));
    }
    s
}

fn shutdown_timing(threshold: u64, wait_ms: u64, n: usize) -> Samples {
    let mut server = RedisServer::start(ServerOptions {
        threshold_ms: threshold,
        ..Default::default()
    });
    let policy = policy_for(
        &server,
        "shut",
        &format!(
            "on_busy:\n  kill_after: 0s\n  on_unkillable:\n    wait: {wait_ms}ms\n    then: shutdown\nlimits:\n  max_shutdowns: 1000\n"
        ),
    );
    let daemon = Daemon::start(&policy, &[]);
    let mut s = Samples::default();
    for i in 0..n {
        server.wait_snapshot();
        let (reply, took) = Caller::eval(&server, scripts::WRITING_LOOP, &["k"], &[]).reply_timed();
        assert!(reply.is_err(), "the connection closes with the server");
        s.push(took);
        assert!(server.wait_exit(Duration::from_secs(10)));
        server.spawn().unwrap();
        wait_recovered(&daemon, i + 1);
    }
    s
}

fn proc_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// CPU s/min and peak RSS of busyguard supervising `n` servers; then `incidents` detection
/// latencies (threshold passing -> busy_detected record).
fn overhead(n: usize, window: Duration, incidents: usize) -> (f64, f64, Samples) {
    let servers: Vec<RedisServer> = (0..n)
        .map(|_| RedisServer::start(ServerOptions::default()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("policies");
    std::fs::create_dir(&pdir).unwrap();
    for (i, srv) in servers.iter().enumerate() {
        std::fs::write(
            pdir.join(format!("s{i}.yaml")),
            policy_for(srv, &format!("s{i}"), ""),
        )
        .unwrap();
    }
    let daemon = Daemon::start_with(dir, &[pdir], &[]);
    let pid = daemon_pid(&daemon);
    // Warm-up: every watchdog has connected and taken its snapshot.
    assert!(wait_for(LONG, || servers
        .iter()
        .all(|s| s.command_calls("config|get") >= 1)));
    let c0 = proc_cpu_seconds(pid);
    let t0 = Instant::now();
    std::thread::sleep(window);
    let cpu = (proc_cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64() * 60.0;
    let rss = peak_rss_mib(pid);
    let mut det = Samples::default();
    for k in 0..incidents {
        let srv = &servers[(k * 37) % n];
        let sent = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            * 1000.0;
        let (reply, _) = Caller::eval(srv, scripts::READ_ONLY_LOOP, &[], &[]).reply_timed();
        assert!(reply.unwrap().error().unwrap().contains("Script killed"));
        let instance = format!("s{}", (k * 37) % n);
        let rec = daemon
            .wait_record(LONG, |r| {
                r["instance"] == instance.as_str()
                    && r["event"] == "busy_detected"
                    && ts_ms(r) >= sent - 5.0
            })
            .expect("busy_detected");
        let latency = ts_ms(&rec) - (sent + 200.0);
        det.0.push(latency.max(0.0));
        assert!(wait_for(LONG, || daemon.records().iter().any(
            |r| r["instance"] == instance.as_str() && r["event"] == "recovered" && ts_ms(r) >= sent
        )));
    }
    (cpu, rss, det)
}

/// CPU s/min of the least a prober can do: one task per server on a single-threaded tokio
/// runtime, a raw PING every 100 ms over the unix socket, no client library, no decisions.
fn raw_probe_floor(n: usize, window: Duration) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let servers: Vec<RedisServer> = (0..n)
        .map(|_| RedisServer::start(ServerOptions::default()))
        .collect();
    let sockets: Vec<std::path::PathBuf> = servers.iter().map(|s| s.socket.clone()).collect();
    let before = cpu_of_self();
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let tasks: Vec<_> = sockets
            .into_iter()
            .map(|path| {
                tokio::spawn(async move {
                    let mut s = tokio::net::UnixStream::connect(path).await.unwrap();
                    let mut buf = [0u8; 64];
                    let mut tick = tokio::time::interval(Duration::from_millis(100));
                    let end = tokio::time::Instant::now() + window;
                    while tokio::time::Instant::now() < end {
                        tick.tick().await;
                        s.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
                        let _ = s.read(&mut buf).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    (cpu_of_self() - before) / started.elapsed().as_secs_f64() * 60.0
}

fn cpu_of_self() -> f64 {
    proc_cpu_seconds(std::process::id())
}

/// Run `f` with `probe.interval` set to `interval` for the policies it writes.
fn with_interval<T>(interval: &str, f: impl FnOnce() -> T) -> T {
    // SAFETY: the bench is single-threaded when it writes policies; no other thread reads the
    // environment meanwhile.
    unsafe { std::env::set_var("BENCH_INTERVAL", interval) };
    let out = f();
    unsafe { std::env::remove_var("BENCH_INTERVAL") };
    out
}

fn ts_ms(r: &serde_json::Value) -> f64 {
    let t = time::OffsetDateTime::parse(
        r["ts"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    t.unix_timestamp_nanos() as f64 / 1e6
}

fn daemon_pid(daemon: &Daemon) -> u32 {
    assert!(wait_for(LONG, || daemon.records().iter().any(
        |r| r["event"] == "watchdog_started" && r["instance"].is_null()
    )));
    daemon
        .records()
        .iter()
        .find(|r| r["event"] == "watchdog_started" && r["instance"].is_null())
        .unwrap()["detail"]["pid"]
        .as_u64()
        .unwrap() as u32
}

/// Actions taken under load and legitimate scripts, the script count, and redis-benchmark's summary.
fn false_positives(window: Duration) -> (usize, usize, String) {
    let server = RedisServer::start(ServerOptions::default());
    let policy = server.policy("calm", "on_busy:\n  kill_after: 0s\n  on_unkillable:\n    wait: 10ms\n    then: shutdown\non_hang:\n  after: 250ms\n")
        .replace("interval: 50ms", "interval: 10ms");
    let daemon = Daemon::start(&policy, &[]);
    server.wait_snapshot();
    let mut bench = Command::new("redis-benchmark")
        .args([
            "-s",
            server.socket.to_str().unwrap(),
            "-c",
            "50",
            "-n",
            "100000000",
            "-t",
            "set,get,incr,lpush",
            "-q",
            "--csv",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-benchmark");
    let start = Instant::now();
    let mut scripts_run = 0;
    while start.elapsed() < window {
        let (reply, _) = Caller::eval(&server, scripts::SPIN_MS, &[], &["170"]).reply_timed();
        assert_eq!(reply.unwrap(), Reply::Bulk(Some("done".into())));
        scripts_run += 1;
    }
    let ops = server
        .info("stats")
        .get("total_commands_processed")
        .cloned()
        .unwrap_or_default();
    let _ = bench.kill();
    let _ = bench.wait();
    let records = daemon.records();
    let count = |names: &[&str]| {
        records
            .iter()
            .filter(|r| names.contains(&r["event"].as_str().unwrap_or("")))
            .count()
    };
    // Actions change the server; detections only report what the server did (and notify).
    let acted = count(&["kill_sent", "shutdown_sent", "signal_sent"]);
    let detected = count(&["busy_detected", "hang_detected"]);
    for r in records
        .iter()
        .filter(|r| r["event"] == "hang_detected" || r["event"] == "busy_detected")
    {
        println!(
            "  detected: {} silent_ms={} reply={}",
            r["event"], r["detail"]["silent_ms"], r["detail"]["reply"]
        );
    }
    (
        acted,
        scripts_run,
        format!("{ops} commands processed; {detected} hang or busy detections"),
    )
}

/// Horizontal bars on a log scale: median with a p99 tick, per system, per threshold.
fn svg(groups: &[ChartGroup]) -> String {
    let (w, left, bar_h, gap) = (900.0, 280.0, 22.0, 8.0);
    let (lo, hi) = (100f64.log10(), 40_000f64.log10());
    let x = |v: f64| left + (v.max(100.0).log10() - lo) / (hi - lo) * (w - left - 40.0);
    let rows: usize = groups.iter().map(|(_, r)| r.len() + 1).sum();
    let h = 60.0 + rows as f64 * (bar_h + gap) + 40.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"13\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"24\" font-size=\"16\" font-weight=\"bold\">Time from script start to recovery (median, p99 tick; log scale, ms)</text>\n"
    );
    for tick in [
        100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10_000.0, 30_000.0,
    ] {
        let tx = x(tick);
        let _ = writeln!(
            out,
            "<line x1=\"{tx}\" y1=\"40\" x2=\"{tx}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{tx}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666\">{tick}</text>",
            h - 30.0,
            h - 14.0
        );
    }
    let mut y = 50.0;
    for (title, rows) in groups {
        let _ = writeln!(
            out,
            "<text x=\"10\" y=\"{}\" font-weight=\"bold\">{title}</text>",
            y + 15.0
        );
        y += bar_h + gap;
        for (name, median, p99) in rows {
            let color = match name.as_str() {
                n if n.starts_with("busyguard") => "#2a7",
                n if n.starts_with("limit") => "#999",
                n if n.starts_with("raw") => "#7ac",
                _ => "#d64",
            };
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{name}</text>",
                left - 8.0,
                y + 15.0
            );
            let _ = writeln!(
                out,
                "<rect x=\"{left}\" y=\"{y}\" width=\"{}\" height=\"{bar_h}\" fill=\"{color}\"/>",
                (x(*median) - left).max(1.0)
            );
            let _ = writeln!(
                out,
                "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\" stroke-width=\"2\"/>",
                x(*p99),
                y - 2.0,
                y + bar_h + 2.0
            );
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\">{median:.0}</text>",
                x(*p99) + 6.0,
                y + 15.0
            );
            y += bar_h + gap;
        }
    }
    out.push_str("</svg>\n");
    out
}

/// Section 6: from an unkillable script's start on a replicated primary (threshold 200 ms) to the
/// first write a replica accepts as the new primary. busyguard: `kill_after: 0s`, `wait: 500ms`,
/// `then: failover`; Sentinel alone: its default down-after and a tuned one; a Cluster alone.
fn failover_section(n: usize, n_sentinel: usize) -> String {
    let mut md = String::new();
    writeln!(md, "## 6. Time to a writable new primary\n\nAn unkillable script (it wrote first) on a primary with one replica, threshold 200 ms: from the script's start to the first `SET` the replica accepts as the new primary (it answers `READONLY` until promoted; asked every millisecond). busyguard: `kill_after: 0s`, `wait: 500ms`, `then: failover` (the sentinel's own down-after is 30 s, so it does not act first). Sentinel alone: one sentinel, quorum 1. A Cluster alone: 3 primaries, `cluster-node-timeout 5000`.\n").unwrap();
    writeln!(md, "| topology | who fails over | samples | median ms | p99 ms | after the budget (700 ms) |\n|---|---|---|---|---|---|").unwrap();
    let rows: Vec<(&str, &str, Samples)> = vec![
        (
            "Sentinel",
            "busyguard `then: failover`",
            sentinel_failover(Some(500), 30_000, n),
        ),
        (
            "Cluster",
            "busyguard `then: failover`",
            cluster_failover(true, n),
        ),
        (
            "Sentinel",
            "Sentinel, down-after 5000 (tuned)",
            sentinel_failover(None, 5_000, n_sentinel),
        ),
        (
            "Sentinel",
            "Sentinel, default down-after 30000",
            sentinel_failover(None, 30_000, 1),
        ),
        (
            "Cluster",
            "the Cluster itself (node-timeout 5000)",
            cluster_failover(false, 1),
        ),
    ];
    for (topology, who, s) in rows {
        let line = match s.0.is_empty() {
            true => format!(
                "| {topology} | {who} | 1 | never (not within 20 s: the busy node keeps answering the cluster bus) | - | - |"
            ),
            false => format!(
                "| {topology} | {who} | {} | {:.0} | {:.0} | {:+.0} |",
                s.0.len(),
                s.median(),
                s.p99(),
                s.median() - 700.0
            ),
        };
        println!("failover {topology} / {who}: {line}");
        writeln!(md, "{line}").unwrap();
    }
    writeln!(
        md,
        "\nFocused run: `target/release/examples/bench --failover 5`.\n"
    )
    .unwrap();
    md
}

/// A primary and its replica with 100 keys; with `busyguard_wait`, busyguard supervises the
/// primary with `then: failover`, else the sentinel alone acts (after `down_after`).
fn sentinel_failover(busyguard_wait: Option<u64>, down_after: u64, n: usize) -> Samples {
    let mut s = Samples::default();
    for _ in 0..n {
        let primary = RedisServer::start(ServerOptions::default());
        let replica = primary.start_replica(ServerOptions::default());
        primary.fill(100);
        assert!(wait_for(LONG, || replica.holds_keys(100)));
        let sentinel = Sentinel::start(&primary, down_after);
        assert!(wait_for(LONG, || sentinel.field("num-slaves").as_deref()
            == Some("1")));
        let daemon = busyguard_wait.map(|wait| {
            let policy = primary.policy(
                "failover",
                // A failover promotes only a replica the policy lists (#33).
                &format!(
                    "on_busy:\n  kill_after: 0s\n  on_unkillable:\n    wait: {wait}ms\n    then: failover\ntopology:\n{}  sentinel:\n    master: m\n    urls: [redis://127.0.0.1:{}]\n",
                    RedisServer::listed(&[&replica]),
                    sentinel.port
                ),
            );
            let d = Daemon::start(&policy, &[]);
            primary.wait_snapshot();
            d
        });
        s.push(
            time_to_writable(&primary, &replica, "k", Duration::from_secs(90)).expect("promoted"),
        );
        drop(daemon);
    }
    s
}

/// A Cluster whose first primary runs the script; with `busyguard`, it supervises that node.
fn cluster_failover(busyguard: bool, n: usize) -> Samples {
    let mut s = Samples::default();
    for _ in 0..n {
        let cluster = Cluster::start_on(None);
        let busy = &cluster.primaries[0];
        let daemon = busyguard.then(|| {
            let policy = busy.policy(
                "failover",
                &format!(
                    "on_busy:\n  kill_after: 0s\n  on_unkillable:\n    wait: 500ms\n    then: failover\ntopology:\n{}",
                    RedisServer::listed(&[&cluster.replica])
                ),
            );
            let d = Daemon::start(&policy, &[]);
            busy.wait_snapshot();
            d
        });
        let limit = Duration::from_secs(if busyguard { 90 } else { 20 });
        let key = format!("{}k", cluster.tag_of_first());
        if let Some(took) = time_to_writable(busy, &cluster.replica, &key, limit) {
            s.push(took);
        }
        drop(daemon);
    }
    s
}

/// Start an unkillable script on `primary`; the time until `replica` accepts a write, if it
/// does within `limit`.
fn time_to_writable(
    primary: &RedisServer,
    replica: &RedisServer,
    key: &str,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let _caller = Caller::eval(primary, scripts::WRITING_LOOP, &[key], &[]);
    let mut conn = None;
    while started.elapsed() < limit {
        // Sentinel's promotion closes every normal client of the replica: reconnect.
        let c = conn.get_or_insert_with(|| replica.conn());
        match c.call(&["SET", key, "after"]) {
            Ok(Reply::Status(ok)) if ok == "OK" => return Some(started.elapsed()),
            Ok(_) => {}
            Err(_) => conn = None,
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}
