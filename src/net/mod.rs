//! The network room: interfaces, Ethernet/IPv4/UDP frames, and the raw packet socket the DHCP
//! server speaks through.
//!
//! A DHCP server must answer clients that have no address yet, so it cannot rely on the kernel's
//! UDP stack: it reads and writes whole Ethernet frames on an `AF_PACKET` socket
//! ([`socket::PacketSocket`]). Frames are parsed and built by [`frame`], which is pure (smoltcp's
//! `wire` types), so everything but the socket itself is tested without a network.

pub(crate) mod cidr;
pub mod frame;
pub(crate) mod socket;

use std::net::Ipv4Addr;

pub use cidr::{Cidr, Ipv4Range};

/// A MAC address, printed lower-case with colons like the store keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// The first six bytes of `bytes`, if there are six.
    pub fn from_slice(bytes: &[u8]) -> Option<Mac> {
        bytes.get(..6)?.try_into().ok().map(Mac)
    }
}

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// What went wrong looking at an interface.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    #[error("interface {name:?} does not exist: {source}")]
    NotFound {
        name: String,
        #[source]
        source: nix::Error,
    },
    #[error("cannot list the addresses of the interfaces: {0}")]
    List(#[source] nix::Error),
    #[error("interface {name:?} has no Ethernet (MAC) address; a boot interface must be Ethernet")]
    NoMac { name: String },
}

/// An interface's index (for binding a packet socket).
pub(crate) fn interface_index(name: &str) -> Result<u32, InterfaceError> {
    nix::net::if_::if_nametoindex(name).map_err(|source| InterfaceError::NotFound {
        name: name.to_string(),
        source,
    })
}

/// What the DHCP server needs to know about its interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InterfaceInfo {
    pub name: String,
    pub(crate) index: u32,
    pub mac: Mac,
    /// IPv4 addresses with their prefix length, in the order the kernel lists them.
    pub(crate) addresses: Vec<(Ipv4Addr, u8)>,
}

/// Reads an interface's index, MAC and IPv4 addresses (getifaddrs).
pub(crate) fn interface_info(name: &str) -> Result<InterfaceInfo, InterfaceError> {
    let index = interface_index(name)?;
    let mut mac = None;
    let mut addresses = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(InterfaceError::List)? {
        if ifa.interface_name != name {
            continue;
        }
        let Some(address) = ifa.address else { continue };
        if let Some(link) = address.as_link_addr() {
            if let Some(bytes) = link.addr() {
                mac = Some(Mac(bytes));
            }
        } else if let Some(inet) = address.as_sockaddr_in() {
            let prefix = ifa
                .netmask
                .as_ref()
                .and_then(|m| m.as_sockaddr_in())
                .map(|m| u32::from(m.ip()).count_ones() as u8)
                .unwrap_or(32);
            addresses.push((inet.ip(), prefix));
        }
    }
    let mac = mac.ok_or_else(|| InterfaceError::NoMac {
        name: name.to_string(),
    })?;
    Ok(InterfaceInfo {
        name: name.to_string(),
        index,
        mac,
        addresses,
    })
}

/// Every interface with a MAC and an IPv4 address, loopback left out, by name: the ones a boot
/// network could use (the first-boot setup offers them).
pub(crate) fn ipv4_interfaces() -> Result<Vec<InterfaceInfo>, InterfaceError> {
    let mut names: Vec<String> = nix::ifaddrs::getifaddrs()
        .map_err(InterfaceError::List)?
        .filter(|ifa| {
            !ifa.flags
                .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
        })
        .map(|ifa| ifa.interface_name)
        .collect();
    names.sort();
    names.dedup();
    Ok(names
        .iter()
        .filter_map(|name| interface_info(name).ok())
        .filter(|info| !info.addresses.is_empty())
        .collect())
}
