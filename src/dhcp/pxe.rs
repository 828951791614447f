//! Which boot loader a network-booting client gets, from what it says about itself.
//!
//! Firmware announces its architecture in option 93 (and in the `PXEClient:Arch:xxxxx` vendor
//! class); a client that already runs iPXE says so in option 77 or 175 and must get an HTTP script
//! URL, or it would download iPXE again and loop forever.

use crate::net::Mac;

use super::message::Request;

/// What kind of boot client this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BootClient {
    /// No sign of network boot (an OS's DHCP client): address only.
    Plain,
    /// iPXE is already running: give it its per-machine script over HTTP.
    Ipxe,
    /// Legacy BIOS PXE (arch 0): TFTP loader.
    BiosPxe,
    /// UEFI PXE on x86 or x64 (6, 7, 9): TFTP loader.
    UefiPxe,
    /// UEFI PXE on ARM64 (11).
    Arm64Pxe,
    /// UEFI HTTP boot on x86/x64 (15, 16): full URL, option 60 `HTTPClient`.
    UefiHttp,
    /// UEFI HTTP boot on ARM64 (19).
    Arm64Http,
    /// A PXE client of an architecture we have no loader for (ARM32, BIOS HTTP, RISC-V...).
    Unsupported(u16),
}

impl BootClient {
    /// Classifies a request.
    pub(crate) fn of(request: &Request) -> BootClient {
        if request.is_ipxe {
            return BootClient::Ipxe;
        }
        let says_pxe = request
            .vendor_class
            .as_deref()
            .is_some_and(|c| c.starts_with(b"PXEClient") || c.starts_with(b"HTTPClient"));
        match request.arch {
            Some(0) => BootClient::BiosPxe,
            Some(6 | 7 | 9) => BootClient::UefiPxe,
            Some(11) => BootClient::Arm64Pxe,
            Some(15 | 16) => BootClient::UefiHttp,
            Some(19) => BootClient::Arm64Http,
            Some(other) => BootClient::Unsupported(other),
            // A PXEClient without option 93 is a BIOS ROM from before RFC 4578.
            None if says_pxe => BootClient::BiosPxe,
            None => BootClient::Plain,
        }
    }

    /// Whether this client is network booting at all (what proxy mode answers).
    pub(crate) fn is_boot_client(self) -> bool {
        self != BootClient::Plain
    }

    /// Whether it speaks HTTP boot (needs option 60 `HTTPClient`).
    pub(crate) fn is_http(self) -> bool {
        matches!(self, BootClient::UefiHttp | BootClient::Arm64Http)
    }
}

/// Where loaders and scripts live; from the `boot` config and `http.public_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    pub bios_loader: String,
    pub uefi_loader: String,
    pub arm64_loader: Option<String>,
    /// `{public_url}/{http_loader_dir}` without a trailing slash.
    pub http_loader_base: String,
    /// `http.public_url` without a trailing slash.
    pub public_url: String,
}

/// What to put in siaddr/file and options 66/67.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BootFile {
    /// A file name on the TFTP server (siaddr / option 66).
    Tftp(String),
    /// A full http:// URL.
    Url(String),
}

impl BootFile {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            BootFile::Tftp(s) | BootFile::Url(s) => s,
        }
    }
}

impl BootFiles {
    /// The boot file for a client, or None when there is nothing to boot it with.
    pub(crate) fn choose(&self, client: BootClient, mac: Mac) -> Option<BootFile> {
        match client {
            BootClient::Plain | BootClient::Unsupported(_) => None,
            BootClient::Ipxe => Some(BootFile::Url(format!(
                "{}/boot/{mac}.ipxe",
                self.public_url
            ))),
            BootClient::BiosPxe => Some(BootFile::Tftp(self.bios_loader.clone())),
            BootClient::UefiPxe => Some(BootFile::Tftp(self.uefi_loader.clone())),
            BootClient::Arm64Pxe => self.arm64_loader.clone().map(BootFile::Tftp),
            BootClient::UefiHttp => Some(BootFile::Url(format!(
                "{}/{}",
                self.http_loader_base, self.uefi_loader
            ))),
            BootClient::Arm64Http => self
                .arm64_loader
                .as_ref()
                .map(|l| BootFile::Url(format!("{}/{l}", self.http_loader_base))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::message::{decode, tests::request};
    use dhcproto::v4::{Architecture, DhcpOption, MessageType};

    fn files(arm: bool) -> BootFiles {
        BootFiles {
            bios_loader: "undionly.kpxe".into(),
            uefi_loader: "snponly.efi".into(),
            arm64_loader: arm.then(|| "grubaa64.efi".into()),
            http_loader_base: "http://192.0.2.1:5240/boot".into(),
            public_url: "http://192.0.2.1:5240".into(),
        }
    }

    fn classify(opts: Vec<DhcpOption>) -> BootClient {
        BootClient::of(&decode(&request(MessageType::Discover, [2, 0, 0, 0, 0, 1], opts)).unwrap())
    }

    #[test]
    fn architectures() {
        let arch = |a| classify(vec![DhcpOption::ClientSystemArchitecture(Architecture(a))]);
        assert_eq!(arch(0), BootClient::BiosPxe);
        for a in [6, 7, 9] {
            assert_eq!(arch(a), BootClient::UefiPxe);
        }
        assert_eq!(arch(11), BootClient::Arm64Pxe);
        assert_eq!(arch(16), BootClient::UefiHttp);
        assert_eq!(arch(19), BootClient::Arm64Http);
        assert_eq!(arch(10), BootClient::Unsupported(10));
        assert_eq!(classify(vec![]), BootClient::Plain);
        assert_eq!(
            classify(vec![DhcpOption::ClassIdentifier(
                b"PXEClient:Arch:00000:UNDI:002001".to_vec()
            )]),
            BootClient::BiosPxe
        );
        assert_eq!(
            classify(vec![
                DhcpOption::ClientSystemArchitecture(Architecture(7)),
                DhcpOption::UserClass(b"iPXE".to_vec()),
            ]),
            BootClient::Ipxe
        );
    }

    #[test]
    fn files_per_client() {
        let mac = Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        let f = files(false);
        assert_eq!(
            f.choose(BootClient::BiosPxe, mac),
            Some(BootFile::Tftp("undionly.kpxe".into()))
        );
        assert_eq!(
            f.choose(BootClient::UefiPxe, mac),
            Some(BootFile::Tftp("snponly.efi".into()))
        );
        assert_eq!(f.choose(BootClient::Arm64Pxe, mac), None);
        assert_eq!(f.choose(BootClient::Arm64Http, mac), None);
        assert_eq!(
            f.choose(BootClient::UefiHttp, mac),
            Some(BootFile::Url(
                "http://192.0.2.1:5240/boot/snponly.efi".into()
            ))
        );
        assert_eq!(
            f.choose(BootClient::Ipxe, mac),
            Some(BootFile::Url(
                "http://192.0.2.1:5240/boot/52:54:00:12:34:56.ipxe".into()
            ))
        );
        let f = files(true);
        assert_eq!(
            f.choose(BootClient::Arm64Pxe, mac),
            Some(BootFile::Tftp("grubaa64.efi".into()))
        );
        assert_eq!(f.choose(BootClient::Plain, mac), None);
    }
}
