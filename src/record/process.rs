//! The `process_*` series every Prometheus exporter is expected to have (CPU, memory, file
//! descriptors, start time), read from `/proc/self` when `/metrics` is scraped, so a dashboard or
//! an alert on busyguard's own health works as it does for any other exporter.

use std::fmt::Write as _;

/// What `/proc` says of this process now; a field it could not read is left out of the output.
#[derive(Debug, Default, PartialEq)]
pub struct ProcessFacts {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

impl ProcessFacts {
    /// Read this process's facts; Linux only (elsewhere every field is unknown).
    pub fn read() -> ProcessFacts {
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|t| *t > 0)
            .map(|t| t as f64);
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .filter(|p| *p > 0)
            .map(|p| p as u64);
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s));
        let mut facts = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .map(|s| from_stat(&s, ticks, page, boot))
            .unwrap_or_default();
        facts.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        facts.max_fds = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .ok()
            .map(|(soft, _)| soft);
        facts
    }

    /// The exposition text of the facts known.
    pub fn render(&self, out: &mut String) {
        let series: [(&str, &str, &str, Option<String>); 6] = [
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds",
                self.cpu_seconds.map(|v| format!("{v:.2}")),
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes",
                self.resident_bytes.map(|v| v.to_string()),
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes",
                self.virtual_bytes.map(|v| v.to_string()),
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since the Unix epoch in seconds",
                self.start_time_seconds.map(|v| format!("{v:.2}")),
            ),
            (
                "process_open_fds",
                "gauge",
                "Number of open file descriptors",
                self.open_fds.map(|v| v.to_string()),
            ),
            (
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors",
                self.max_fds.map(|v| v.to_string()),
            ),
        ];
        for (name, kind, help, value) in series {
            if let Some(value) = value {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
                );
            }
        }
    }
}

/// `btime` of `/proc/stat`: when the machine booted, Unix seconds.
fn boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The fields of `/proc/self/stat` the series need. The command name (field 2) is in brackets and
/// may itself hold spaces or brackets, so fields are counted from the last `)`.
fn from_stat(stat: &str, ticks: Option<f64>, page: Option<u64>, boot: Option<f64>) -> ProcessFacts {
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return ProcessFacts::default();
    };
    // After the name: field 3 (state) is index 0, so field N is index N - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    ProcessFacts {
        cpu_seconds: ticks.and_then(|t| Some((field(14)? + field(15)?) as f64 / t)),
        resident_bytes: page.and_then(|p| Some(field(24)? * p)),
        virtual_bytes: field(23),
        start_time_seconds: ticks.and_then(|t| Some(boot? + field(22)? as f64 / t)),
        open_fds: None,
        max_fds: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_a_name_with_spaces_and_brackets() {
        // utime 250, stime 50 ticks; starttime 1000 ticks; vsize 4096000; rss 100 pages.
        let stat = "42 (busy guard) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 5 0 1000 4096000 100 18446744073709551615";
        let facts = from_stat(stat, Some(100.0), Some(4096), Some(1_700_000_000.0));
        assert_eq!(facts.cpu_seconds, Some(3.0));
        assert_eq!(facts.virtual_bytes, Some(4_096_000));
        assert_eq!(facts.resident_bytes, Some(409_600));
        assert_eq!(facts.start_time_seconds, Some(1_700_000_010.0));
    }

    #[test]
    fn this_process_is_read_and_rendered() {
        let facts = ProcessFacts::read();
        assert!(facts.resident_bytes.is_some_and(|b| b > 0), "{facts:?}");
        assert!(facts.open_fds.is_some_and(|n| n >= 3), "{facts:?}");
        let mut out = String::new();
        facts.render(&mut out);
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                out.contains(&format!("\n{name} ")),
                "{name} missing from {out}"
            );
        }
        assert_eq!(
            boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000.0)
        );
    }
}
