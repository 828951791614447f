//! Sizes and spans as people write them, for every face that prints them (the CLI, the control
//! page).

/// Bytes in binary units with one decimal: 1536 -> "1.5 KiB"; under 1 KiB exactly: "512 B".
/// A value that would print as 1024.0 of a unit prints as 1.0 of the next.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Seconds as "1 h 4 min", "3 min 20 s", "40 s".
pub fn human_duration(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_spans_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1024 * 1024 * 1024 - 1), "1.0 GiB");
        assert_eq!(human_duration(40), "40 s");
        assert_eq!(human_duration(200), "3 min 20 s");
        assert_eq!(human_duration(3840), "1 h 4 min");
    }
}
