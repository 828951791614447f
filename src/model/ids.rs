//! Identifiers and small value checks shared by every room.

use rand::Rng;

/// MAAS's system-id alphabet: lower-case letters and digits without look-alikes (no i, l, o, 0, 1).
const SYSTEM_ID_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxy23456789";

/// A fresh MAAS-style short system id, e.g. `4y3h7n`. The caller checks it is not taken.
pub(crate) fn new_system_id() -> String {
    let mut rng = rand::rng();
    (0..6)
        .map(|_| SYSTEM_ID_ALPHABET[rng.random_range(0..SYSTEM_ID_ALPHABET.len())] as char)
        .collect()
}

/// A random string of `len` characters from [A-Za-z0-9], for API keys and secrets.
pub(crate) fn random_token(len: usize) -> String {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHA[rng.random_range(0..ALPHA.len())] as char)
        .collect()
}

/// A hostname for a machine that has none: two short words from its system id.
pub(crate) fn default_hostname(system_id: &str) -> String {
    format!("machine-{system_id}")
}

/// Normalizes a MAC address to lower-case colon form, or says why it is not one.
pub(crate) fn normalize_mac(text: &str) -> Result<String, String> {
    let hex: String = text
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("{text:?} is not a MAC address"));
    }
    let hex = hex.to_ascii_lowercase();
    let pairs: Vec<&str> = (0..6).map(|i| &hex[i * 2..i * 2 + 2]).collect();
    Ok(pairs.join(":"))
}

/// Checks a hostname label (RFC 1123: letters, digits, hyphens, 1-63 characters, no leading or
/// trailing hyphen).
pub(crate) fn check_hostname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "hostname {name:?} must be 1-63 letters, digits or hyphens, not starting or ending with a hyphen"
        ))
    }
}

/// Checks a name of a user, zone, pool or tag: 1-64 characters of letters, digits, '-', '_', '.'.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{kind} name {name:?} must be 1-64 letters, digits, '-', '_' or '.'"
        ))
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix milliseconds as a UTC date and the seconds since its midnight: `(year, month, day,
/// seconds)`, by Howard Hinnant's civil-from-days (no time-zone database needed).
pub fn utc_date(ms: u64) -> (i64, i64, i64, u64) {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem)
}

/// RFC 3339 UTC text for unix milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let (y, m, d, rem) = utc_date(ms);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_ids_use_the_alphabet() {
        for _ in 0..100 {
            let id = new_system_id();
            assert_eq!(id.len(), 6);
            assert!(id.bytes().all(|b| SYSTEM_ID_ALPHABET.contains(&b)));
        }
    }

    #[test]
    fn macs_normalize() {
        assert_eq!(
            normalize_mac("52-54-00-AB-cd-01").unwrap(),
            "52:54:00:ab:cd:01"
        );
        assert_eq!(
            normalize_mac("5254.00ab.cd01").unwrap(),
            "52:54:00:ab:cd:01"
        );
        assert!(normalize_mac("52:54:00:ab:cd").is_err());
        assert!(normalize_mac("zz:54:00:ab:cd:01").is_err());
    }

    #[test]
    fn time_renders() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_763_700_000_123), "2025-11-21T04:40:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
