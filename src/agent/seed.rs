//! The cloud-init NoCloud seed: `meta-data`, `user-data` and, when the machine's links say how
//! its interfaces come up, `network-config`, on a vfat filesystem labelled `CIDATA`, built in
//! memory with the `fatfs` crate.
//!
//! cloud-init's NoCloud datasource looks for a filesystem labelled `cidata`/`CIDATA` on any block
//! device, so after the image is written the agent puts this filesystem in a small partition at
//! the end of the disk (see `partition.rs`). No external tool (mkfs, mtools) is needed inside the
//! ramdisk.
//!
//! SSH keys go two ways: as `public-keys` in meta-data, which NoCloud hands to cc_ssh whatever the
//! user data is (a shell script, a MIME archive), and, when the user data is absent or a
//! `#cloud-config`, merged into it as `ssh_authorized_keys` so that a reader of the user data
//! sees them too.
//!
//! The deployed OS reports that it booted (the deploy becomes Deployed only then), and the seed
//! is how it learns where to: meta-data carries two rackbox keys, present only when the
//! appliance gave them (cloud-init ignores meta-data keys it does not know):
//!
//! - `rackbox-report-url`: the URL to `POST` to (`/api/agent/v1/deployed` on the appliance);
//! - `rackbox-report-token`: the bearer token for it (`Authorization: Bearer <token>`), the
//!   machine's token for this deploy; it lets its holder report only this machine's deploy.
//!
//! The body of the report is JSON `{"message": "..."}`. Every value in meta-data is a
//! double-quoted YAML string (JSON string syntax), so a small reader (the test OS's busybox
//! shell) can take it apart without a YAML parser.

use std::io::{Cursor, Write};

/// Size of the seed filesystem: small, yet big enough for generous user data (cloud-init caps
/// user data far below this on most clouds) and a whole number of MiB for alignment.
pub(crate) const SEED_BYTES: u64 = 8 * 1024 * 1024;

/// Volume label NoCloud looks for (the FAT label field is 11 bytes, space padded).
const LABEL: [u8; 11] = *b"CIDATA     ";

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(
        "the user data and seed files ({0} bytes) do not fit in the {SEED_BYTES} byte seed filesystem"
    )]
    TooBig(usize),
    #[error("cannot build the CIDATA filesystem: {0}")]
    Fat(#[source] std::io::Error),
}

/// What the seed says about the deployed machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SeedInput {
    pub(crate) instance_id: String,
    pub(crate) hostname: String,
    pub(crate) ssh_keys: Vec<String>,
    /// The user's data as given; empty when none.
    pub(crate) user_data: String,
    /// Where the deployed OS reports in (`rackbox-report-url`); empty when none.
    pub(crate) report_url: String,
    /// Bearer token for `report_url` (`rackbox-report-token`); empty when none.
    pub(crate) report_token: String,
    /// The `network-config` file (cloud-init's network configuration v2) as the appliance
    /// wrote it; empty: no file, and cloud-init brings up its fallback network.
    pub(crate) network_config: String,
}

/// The meta-data key holding the URL the deployed OS reports to.
pub(crate) const REPORT_URL_KEY: &str = "rackbox-report-url";
/// The meta-data key holding the bearer token of that report.
pub(crate) const REPORT_TOKEN_KEY: &str = "rackbox-report-token";

/// Quotes a string as YAML: a JSON string is valid YAML and escapes everything that matters.
fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// `meta-data`: instance-id, local-hostname, the report address when there is one, and
/// public-keys.
pub(crate) fn meta_data(input: &SeedInput) -> String {
    let mut out = format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        yaml_str(&input.instance_id),
        yaml_str(&input.hostname)
    );
    for (key, value) in [
        (REPORT_URL_KEY, &input.report_url),
        (REPORT_TOKEN_KEY, &input.report_token),
    ] {
        if !value.trim().is_empty() {
            out.push_str(&format!("{key}: {}\n", yaml_str(value.trim())));
        }
    }
    let keys: Vec<&str> = clean_keys(&input.ssh_keys);
    if !keys.is_empty() {
        out.push_str("public-keys:\n");
        for k in keys {
            out.push_str(&format!("  - {}\n", yaml_str(k)));
        }
    }
    out
}

/// SSH keys without surrounding whitespace or empty entries.
fn clean_keys(keys: &[String]) -> Vec<&str> {
    keys.iter()
        .map(|k| k.trim())
        .filter(|k| !k.is_empty())
        .collect()
}

/// `user-data`: the user's data, with the SSH keys merged in when it is absent or cloud-config.
///
/// The merge is textual (no YAML parser in the ramdisk): when the cloud-config has no top-level
/// `ssh_authorized_keys`, a block list is appended at the end (a new top-level key closes any
/// block above it); when it has a block list, the keys are inserted at its head with its
/// indentation; when it is in flow style (`[a, b]`) the user data is left as is, and the keys
/// still arrive through meta-data's public-keys.
pub(crate) fn user_data(input: &SeedInput) -> String {
    let keys = clean_keys(&input.ssh_keys);
    let ud = input.user_data.as_str();
    if ud.trim().is_empty() {
        let mut out = String::from("#cloud-config\n");
        if !keys.is_empty() {
            out.push_str("ssh_authorized_keys:\n");
            for k in &keys {
                out.push_str(&format!("  - {}\n", yaml_str(k)));
            }
        }
        return out;
    }
    let is_cloud_config = ud
        .lines()
        .next()
        .is_some_and(|l| l.trim_end() == "#cloud-config");
    if !is_cloud_config || keys.is_empty() {
        return ud.to_string();
    }
    let lines: Vec<&str> = ud.lines().collect();
    let existing = lines.iter().position(|l| {
        l.strip_prefix("ssh_authorized_keys")
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    });
    match existing {
        None => {
            let mut out = ud.to_string();
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("ssh_authorized_keys:\n");
            for k in &keys {
                out.push_str(&format!("  - {}\n", yaml_str(k)));
            }
            out
        }
        Some(i) => {
            let after_colon = lines[i]
                .split_once(':')
                .map(|(_, v)| v.trim())
                .unwrap_or("");
            if !after_colon.is_empty() && !after_colon.starts_with('#') {
                // Flow style or a scalar: leave it; meta-data carries the keys.
                return ud.to_string();
            }
            // Indentation of the list's first item, if the next content line is one.
            let indent = lines[i + 1..]
                .iter()
                .find(|l| !l.trim().is_empty())
                .filter(|l| l.trim_start().starts_with('-'))
                .map(|l| &l[..l.len() - l.trim_start().len()])
                .unwrap_or("  ");
            let mut out: Vec<String> = lines[..=i].iter().map(|s| s.to_string()).collect();
            for k in &keys {
                out.push(format!("{indent}- {}", yaml_str(k)));
            }
            out.extend(lines[i + 1..].iter().map(|s| s.to_string()));
            let mut text = out.join("\n");
            text.push('\n');
            text
        }
    }
}

/// Builds the `CIDATA` vfat filesystem image holding `meta-data` and `user-data`, with FAT
/// sectors of `sector_size` bytes (the disk's logical sector size, which Linux requires).
pub(crate) fn build_fat(input: &SeedInput, sector_size: u16) -> Result<Vec<u8>, SeedError> {
    let mut files = vec![
        ("meta-data", meta_data(input)),
        ("user-data", user_data(input)),
    ];
    if !input.network_config.trim().is_empty() {
        files.push(("network-config", input.network_config.clone()));
    }
    let total: usize = files.iter().map(|(_, c)| c.len()).sum();
    // Leave room for the FAT, the root directory and cluster rounding.
    if total as u64 > SEED_BYTES - 512 * 1024 {
        return Err(SeedError::TooBig(total));
    }
    let len = usize::try_from(SEED_BYTES).map_err(|_| SeedError::TooBig(total))?;
    let mut image = Cursor::new(vec![0u8; len]);
    fatfs::format_volume(
        &mut image,
        fatfs::FormatVolumeOptions::new()
            .volume_label(LABEL)
            .bytes_per_sector(sector_size),
    )
    .map_err(SeedError::Fat)?;
    image.set_position(0);
    {
        let fs =
            fatfs::FileSystem::new(&mut image, fatfs::FsOptions::new()).map_err(SeedError::Fat)?;
        for (name, content) in &files {
            let mut f = fs.root_dir().create_file(name).map_err(SeedError::Fat)?;
            f.truncate().map_err(SeedError::Fat)?;
            f.write_all(content.as_bytes()).map_err(SeedError::Fat)?;
            f.flush().map_err(SeedError::Fat)?;
        }
        fs.unmount().map_err(SeedError::Fat)?;
    }
    Ok(image.into_inner())
}

/// The MBR partition type for the seed: FAT16 with LBA addressing (what an 8 MiB FAT is).
pub(crate) const MBR_TYPE_FAT16_LBA: u8 = 0x0e;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn input(user_data: &str) -> SeedInput {
        SeedInput {
            instance_id: "i-x7k2pq-3".into(),
            hostname: "node1".into(),
            ssh_keys: vec!["ssh-ed25519 AAAAC3 alice@laptop".into(), "  ".into()],
            user_data: user_data.into(),
            ..Default::default()
        }
    }

    #[test]
    fn meta_data_quotes_values() {
        let mut i = input("");
        i.hostname = "node: 1".into();
        assert_eq!(
            meta_data(&i),
            "instance-id: \"i-x7k2pq-3\"\nlocal-hostname: \"node: 1\"\n\
             public-keys:\n  - \"ssh-ed25519 AAAAC3 alice@laptop\"\n"
        );
    }

    #[test]
    fn meta_data_carries_the_report_address() {
        let mut i = input("");
        i.report_url = "http://192.0.2.1:5240/api/agent/v1/deployed".into();
        i.report_token = "rbt_abc123_x\"y".into();
        assert_eq!(
            meta_data(&i),
            "instance-id: \"i-x7k2pq-3\"\nlocal-hostname: \"node1\"\n\
             rackbox-report-url: \"http://192.0.2.1:5240/api/agent/v1/deployed\"\n\
             rackbox-report-token: \"rbt_abc123_x\\\"y\"\n\
             public-keys:\n  - \"ssh-ed25519 AAAAC3 alice@laptop\"\n"
        );
        // Without them (an older appliance), no keys at all.
        assert!(!meta_data(&input("")).contains("rackbox-report"));
    }

    #[test]
    fn absent_user_data_becomes_cloud_config_with_keys() {
        assert_eq!(
            user_data(&input("")),
            "#cloud-config\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAAC3 alice@laptop\"\n"
        );
    }

    #[test]
    fn cloud_config_without_keys_gets_them_appended() {
        let ud = "#cloud-config\npackages:\n  - nginx\nwrite_files:\n  - path: /x\n    content: |\n      hi";
        let out = user_data(&input(ud));
        assert!(out.starts_with(ud));
        assert!(
            out.ends_with("hi\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAAC3 alice@laptop\"\n")
        );
    }

    #[test]
    fn cloud_config_with_keys_gets_ours_first_with_its_indentation() {
        let ud = "#cloud-config\nssh_authorized_keys:\n- ssh-rsa AAAA bob\nruncmd: [ls]\n";
        assert_eq!(
            user_data(&input(ud)),
            "#cloud-config\nssh_authorized_keys:\n- \"ssh-ed25519 AAAAC3 alice@laptop\"\n\
             - ssh-rsa AAAA bob\nruncmd: [ls]\n"
        );
        let flow = "#cloud-config\nssh_authorized_keys: [ssh-rsa AAAA bob]\n";
        assert_eq!(user_data(&input(flow)), flow);
    }

    #[test]
    fn other_user_data_is_verbatim() {
        let script = "#!/bin/sh\necho hi\n";
        assert_eq!(user_data(&input(script)), script);
        let mut no_keys = input("#cloud-config\n{}");
        no_keys.ssh_keys.clear();
        assert_eq!(user_data(&no_keys), "#cloud-config\n{}");
    }

    #[test]
    fn fat_image_has_label_and_files() {
        let image = build_fat(&input("#!/bin/sh\ntrue\n"), 512).expect("fits");
        assert_eq!(image.len() as u64, SEED_BYTES);
        let mut cur = Cursor::new(image);
        let fs = fatfs::FileSystem::new(&mut cur, fatfs::FsOptions::new()).expect("mounts");
        assert_eq!(
            fs.read_volume_label_from_root_dir()
                .expect("label")
                .as_deref(),
            Some("CIDATA")
        );
        let mut text = String::new();
        fs.root_dir()
            .open_file("user-data")
            .expect("user-data")
            .read_to_string(&mut text)
            .expect("read");
        assert_eq!(text, "#!/bin/sh\ntrue\n");
        let mut meta = String::new();
        fs.root_dir()
            .open_file("meta-data")
            .expect("meta-data")
            .read_to_string(&mut meta)
            .expect("read");
        assert!(meta.contains("local-hostname: \"node1\""));
        assert!(
            fs.root_dir().open_file("network-config").is_err(),
            "no links: no network-config, cloud-init brings up its fallback"
        );
    }

    #[test]
    fn the_network_config_is_written_as_given() {
        let mut i = input("");
        i.network_config = r#"{"version":2,"ethernets":{"eno1":{"dhcp4":true}}}"#.into();
        let image = build_fat(&i, 4096).expect("fits");
        let mut cur = Cursor::new(image);
        let fs = fatfs::FileSystem::new(&mut cur, fatfs::FsOptions::new()).expect("mounts");
        let mut text = String::new();
        fs.root_dir()
            .open_file("network-config")
            .expect("network-config")
            .read_to_string(&mut text)
            .expect("read");
        assert_eq!(text, i.network_config);
    }

    #[test]
    fn oversized_user_data_is_refused() {
        let big = "x".repeat(SEED_BYTES as usize);
        assert!(matches!(
            build_fat(&input(&big), 512),
            Err(SeedError::TooBig(_))
        ));
    }
}
