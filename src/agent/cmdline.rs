//! The agent's settings from the kernel command line (`/proc/cmdline`).
//!
//! The appliance's iPXE script boots the ephemeral ramdisk with
//! `rackbox.url=<base URL> rackbox.token=<per-boot token> rackbox.system_id=<id>`, or for an
//! unknown machine `rackbox.url=<base URL> rackbox.enlist=1`. Parsing is pure so that it is tested
//! without a kernel.

use std::collections::BTreeMap;

/// What the agent was told at boot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootParams {
    /// Base URL of the appliance, e.g. `http://192.0.2.1:5240`.
    pub url: Option<String>,
    /// Per-boot bearer token; absent when enlisting.
    pub(crate) token: Option<String>,
    /// The machine's system_id as the appliance knows it.
    pub(crate) system_id: Option<String>,
    /// Unknown machine: send the inventory to `/enlist` first and get a token back.
    pub(crate) enlist: bool,
    /// Print the inventory between markers on the console and power off, talking to nobody
    /// (used to test the ramdisk itself).
    pub(crate) inventory_only: bool,
    /// Serial console the agent also writes its log to (e.g. `ttyS0`).
    pub(crate) console: Option<String>,
    /// MAC address of the interface the firmware booted from (`BOOTIF=01-aa-bb-cc-dd-ee-ff`),
    /// lower case with colons.
    pub(crate) boot_mac: Option<String>,
}

/// Splits a kernel command line into words the way the kernel does: on whitespace, with
/// double quotes grouping a value that contains spaces (the quotes are removed).
pub fn split_words(cmdline: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(word);
    }
    words
}

/// Parses the words of a kernel command line into `key -> value` (a bare `key` maps to "").
/// A later repetition of a key wins, as with the kernel's own parameters.
pub fn parse_pairs(cmdline: &str) -> BTreeMap<String, String> {
    split_words(cmdline)
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (w, String::new()),
        })
        .collect()
}

/// True for the kernel's usual spellings of a set flag (`1`, `y`, `yes`, `true`, `on`, or bare).
fn truthy(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "" | "1" | "y" | "yes" | "true" | "on"
    )
}

/// Parses the `rackbox.*` parameters (and `BOOTIF`) from a kernel command line.
pub fn parse(cmdline: &str) -> BootParams {
    let pairs = parse_pairs(cmdline);
    let get = |k: &str| pairs.get(k).filter(|v| !v.is_empty()).cloned();
    BootParams {
        url: get("rackbox.url").map(|u| u.trim_end_matches('/').to_string()),
        token: get("rackbox.token"),
        system_id: get("rackbox.system_id"),
        enlist: pairs.get("rackbox.enlist").is_some_and(|v| truthy(v)),
        inventory_only: pairs
            .get("rackbox.inventory_only")
            .is_some_and(|v| truthy(v)),
        console: get("rackbox.console"),
        boot_mac: pairs.get("BOOTIF").and_then(|v| parse_bootif(v)),
    }
}

/// `BOOTIF=01-52-54-00-12-34-56` (ARP type 1, then the MAC) as pxelinux and iPXE write it.
fn parse_bootif(value: &str) -> Option<String> {
    let parts: Vec<&str> = value.split(['-', ':']).collect();
    let mac = match parts.len() {
        7 => &parts[1..],
        6 => &parts[..],
        _ => return None,
    };
    if mac
        .iter()
        .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        Some(mac.join(":").to_ascii_lowercase())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_deploy_boot() {
        let p = parse(
            "BOOT_IMAGE=/vmlinuz console=ttyS0 rackbox.url=http://192.0.2.1:5240/ \
             rackbox.token=abc.def rackbox.system_id=x7k2pq BOOTIF=01-52-54-00-AB-cd-01 quiet\n",
        );
        assert_eq!(p.url.as_deref(), Some("http://192.0.2.1:5240"));
        assert_eq!(p.token.as_deref(), Some("abc.def"));
        assert_eq!(p.system_id.as_deref(), Some("x7k2pq"));
        assert!(!p.enlist);
        assert!(!p.inventory_only);
        assert_eq!(p.boot_mac.as_deref(), Some("52:54:00:ab:cd:01"));
    }

    #[test]
    fn parses_enlist_and_flags() {
        let p = parse("rackbox.url=http://192.0.2.1 rackbox.enlist=1 rackbox.inventory_only");
        assert!(p.enlist);
        assert!(p.inventory_only);
        assert_eq!(p.token, None);
        let p = parse("rackbox.enlist=0 rackbox.inventory_only=no");
        assert!(!p.enlist);
        assert!(!p.inventory_only);
    }

    #[test]
    fn quotes_group_words() {
        assert_eq!(
            split_words(r#"a "b c"=d e="f g"  h"#),
            vec!["a", "b c=d", "e=f g", "h"]
        );
        assert_eq!(split_words("  "), Vec::<String>::new());
    }

    #[test]
    fn bad_bootif_is_ignored() {
        assert_eq!(parse("BOOTIF=01-zz-00-00-00-00-00").boot_mac, None);
        assert_eq!(parse("BOOTIF=").boot_mac, None);
    }
}
