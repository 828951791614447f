//! IPv4 prefixes as written in the configuration (`192.0.2.0/24`) and inclusive address ranges.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: an address with its host bits cleared and a prefix length.
///
/// Deserialized from `"a.b.c.d/n"`; an address with host bits set (`192.0.2.7/24`) is refused,
/// because it usually means the operator typed the server's address where the network was meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl Cidr {
    /// Builds a network, refusing prefixes over 32 and addresses with host bits set.
    pub fn new(network: Ipv4Addr, prefix: u8) -> Result<Cidr, String> {
        if prefix > 32 {
            return Err(format!("prefix /{prefix} is longer than 32"));
        }
        let cidr = Cidr { network, prefix };
        if u32::from(network) & !cidr.mask_bits() != 0 {
            return Err(format!(
                "{network}/{prefix} has host bits set (the network is {}/{prefix})",
                Ipv4Addr::from(u32::from(network) & cidr.mask_bits())
            ));
        }
        Ok(cidr)
    }

    fn mask_bits(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    pub(crate) fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub(crate) fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The subnet mask (option 1).
    pub(crate) fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask_bits())
    }

    /// The directed broadcast address (option 28).
    pub(crate) fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !self.mask_bits())
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask_bits() == u32::from(self.network)
    }

    /// Whether two networks share any address.
    pub(crate) fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a network like 192.0.2.0/24"))?;
        let network: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("{prefix:?} is not a prefix length"))?;
        Cidr::new(network, prefix)
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;

    fn try_from(text: String) -> Result<Cidr, String> {
        text.parse()
    }
}

/// An inclusive range of IPv4 addresses, `start..=end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ipv4Range {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
}

impl Ipv4Range {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.start <= ip && ip <= self.end
    }

    pub(crate) fn overlaps(&self, other: &Ipv4Range) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// Number of addresses in the range (0 when `start > end`).
    pub fn len(&self) -> u64 {
        let (s, e) = (u32::from(self.start), u32::from(self.end));
        if s > e { 0 } else { u64::from(e - s) + 1 }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every address of the range, in order.
    pub fn iter(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        (u32::from(self.start)..=u32::from(self.end)).map(Ipv4Addr::from)
    }
}

impl fmt::Display for Ipv4Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let c: Cidr = "192.0.2.0/24".parse().unwrap();
        assert_eq!(c.mask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.broadcast(), Ipv4Addr::new(192, 0, 2, 255));
        assert!(c.contains(Ipv4Addr::new(192, 0, 2, 77)));
        assert!(!c.contains(Ipv4Addr::new(192, 0, 3, 1)));
        assert!("192.0.2.7/24".parse::<Cidr>().is_err());
        assert!("192.0.2.0/33".parse::<Cidr>().is_err());
        assert!("192.0.2.0".parse::<Cidr>().is_err());
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(8, 8, 8, 8)));
        let host: Cidr = "192.0.2.9/32".parse().unwrap();
        assert_eq!(host.broadcast(), Ipv4Addr::new(192, 0, 2, 9));
    }

    #[test]
    fn ranges() {
        let a = Ipv4Range {
            start: Ipv4Addr::new(192, 0, 2, 10),
            end: Ipv4Addr::new(192, 0, 2, 20),
        };
        let b = Ipv4Range {
            start: Ipv4Addr::new(192, 0, 2, 20),
            end: Ipv4Addr::new(192, 0, 2, 30),
        };
        assert!(a.overlaps(&b));
        assert_eq!(a.len(), 11);
        assert_eq!(a.iter().count(), 11);
    }
}
