//! Durations written for people: `850ms`, `12.3s`, `1m37s`, `2h05m`, `3d04h`, and `1h` rather
//! than `1h00m` when the smaller unit is nought. Records and JSON
//! keep exact milliseconds; this is only for what an operator reads (`ps`, `status`, `show`,
//! notifications, errors).

/// `ms` milliseconds as a person reads them: two units at most, the larger first.
pub fn human_ms(ms: u64) -> String {
    const S: u64 = 1000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;
    match ms {
        0..S => format!("{ms}ms"),
        S..M => {
            let tenths = ms / 100;
            match tenths % 10 {
                0 => format!("{}s", tenths / 10),
                t => format!("{}.{t}s", tenths / 10),
            }
        }
        M..H => two(ms / M, "m", ms % M / S, "s"),
        H..D => two(ms / H, "h", ms % H / M, "m"),
        _ => two(ms / D, "d", ms % D / H, "h"),
    }
}

/// `1h05m`, or `1h` when the smaller unit is nought.
fn two(large: u64, large_unit: &str, small: u64, small_unit: &str) -> String {
    match small {
        0 => format!("{large}{large_unit}"),
        _ => format!("{large}{large_unit}{small:02}{small_unit}"),
    }
}

#[cfg(test)]
mod tests {
    use super::human_ms;

    #[test]
    fn each_range_reads_in_its_own_units() {
        assert_eq!(human_ms(0), "0ms");
        assert_eq!(human_ms(850), "850ms");
        assert_eq!(human_ms(1000), "1s");
        assert_eq!(human_ms(12_345), "12.3s");
        assert_eq!(human_ms(97_376), "1m37s");
        assert_eq!(human_ms(3_600_000 + 5 * 60_000 + 7_000), "1h05m");
        assert_eq!(human_ms(3 * 86_400_000 + 4 * 3_600_000), "3d04h");
        assert_eq!(human_ms(3_600_000), "1h");
        assert_eq!(human_ms(60_000), "1m");
    }
}
