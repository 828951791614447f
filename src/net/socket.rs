//! The raw `AF_PACKET` socket a boot interface's DHCP server reads and writes frames on, and the
//! kernel UDP socket it uses to reach relays.
//!
//! Only frames that a classic BPF filter lets through reach user space: IPv4, UDP, not a
//! fragment, destination port 67 (DHCP) or 4011 (PXE boot server), and not sent by this host.
//! Opening needs CAP_NET_RAW (not full root).

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, SockFilter, Socket, Type};
use tokio::io::unix::AsyncFd;

/// Port DHCP servers listen on.
pub(crate) const DHCP_SERVER_PORT: u16 = 67;
/// Port DHCP clients listen on.
pub(crate) const DHCP_CLIENT_PORT: u16 = 68;
/// Port of the PXE boot server (proxyDHCP's second exchange).
pub(crate) const PXE_PORT: u16 = 4011;

// Classic BPF opcodes (linux/filter.h).
const LD_W_ABS: u16 = 0x20;
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LDX_B_MSH: u16 = 0xb1;
const LD_H_IND: u16 = 0x48;
const JEQ_K: u16 = 0x15;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
/// SKF_AD_OFF + SKF_AD_PKTTYPE: the ancillary "packet type" word.
const AD_PKTTYPE: u32 = 0xffff_f000 + 4;

/// Which datagrams a packet socket takes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listen {
    /// A DHCP server's: requests to port 67 and PXE boot-server requests to 4011.
    Server,
    /// A DHCP client's: replies to port 68 (the foreign-DHCP probe).
    Client,
}

impl Listen {
    fn ports(self) -> (u16, u16) {
        match self {
            Listen::Server => (DHCP_SERVER_PORT, PXE_PORT),
            Listen::Client => (DHCP_CLIENT_PORT, DHCP_CLIENT_PORT),
        }
    }
}

/// The filter: accept IPv4/UDP to either of `ports` that is not our own outgoing traffic and
/// not a fragment; drop everything else in the kernel.
fn udp_filter((first, second): (u16, u16)) -> [SockFilter; 14] {
    [
        SockFilter::new(LD_W_ABS, 0, 0, AD_PKTTYPE),
        SockFilter::new(JEQ_K, 11, 0, libc::PACKET_OUTGOING as u32),
        SockFilter::new(LD_H_ABS, 0, 0, 12),
        SockFilter::new(JEQ_K, 0, 9, libc::ETH_P_IP as u32),
        SockFilter::new(LD_B_ABS, 0, 0, 14 + 9),
        SockFilter::new(JEQ_K, 0, 7, libc::IPPROTO_UDP as u32),
        SockFilter::new(LD_H_ABS, 0, 0, 14 + 6),
        SockFilter::new(JSET_K, 5, 0, 0x1fff),
        SockFilter::new(LDX_B_MSH, 0, 0, 14),
        SockFilter::new(LD_H_IND, 0, 0, 14 + 2),
        SockFilter::new(JEQ_K, 1, 0, u32::from(first)),
        SockFilter::new(JEQ_K, 0, 1, u32::from(second)),
        SockFilter::new(RET_K, 0, 0, 0x0004_0000),
        SockFilter::new(RET_K, 0, 0, 0),
    ]
}

/// A filter that drops everything: for sockets we only send from.
fn drop_all_filter() -> [SockFilter; 1] {
    [SockFilter::new(RET_K, 0, 0, 0)]
}

fn link_addr(ifindex: u32, protocol: u16, mac: Option<[u8; 6]>) -> io::Result<SockAddr> {
    let mut storage = SockAddrStorage::zeroed();
    let ifindex = i32::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index too large"))?;
    // SAFETY: sockaddr_ll fits in sockaddr_storage (view_as asserts it), and all-zero bytes are a
    // valid sockaddr_ll that we then fill in field by field.
    let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = protocol.to_be();
    ll.sll_ifindex = ifindex;
    if let Some(mac) = mac {
        ll.sll_halen = 6;
        ll.sll_addr[..6].copy_from_slice(&mac);
    }
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the first `len` bytes of the storage are the initialised sockaddr_ll above.
    Ok(unsafe { SockAddr::new(storage, len) })
}

/// An `AF_PACKET` socket bound to one interface, filtered to DHCP/PXE requests (or, for the
/// probe, replies).
pub(crate) struct PacketSocket {
    fd: AsyncFd<Socket>,
}

impl PacketSocket {
    /// Opens the socket on interface `ifindex`.
    ///
    /// The socket is created listening to no protocol, gets its filter, and only then is bound
    /// to IPv4 on the interface, so no unfiltered frame is ever queued on it.
    pub(crate) fn open(ifindex: u32, listen: Listen) -> io::Result<PacketSocket> {
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))?;
        socket.attach_filter(&udp_filter(listen.ports()))?;
        socket.bind(&link_addr(ifindex, libc::ETH_P_IP as u16, None)?)?;
        socket.set_nonblocking(true)?;
        // Room for a burst of clients booting at once (a rack powering on).
        let _ = socket.set_recv_buffer_size(4 << 20);
        // SAFETY: `socket` owns its descriptor and moves into the AsyncFd, which keeps it open
        // and unchanged until the AsyncFd is dropped; nothing else can close or replace it.
        let fd = unsafe { AsyncFd::register(socket) }?;
        Ok(PacketSocket { fd })
    }

    /// Receives one frame into `buf`, returning its length (a frame longer than `buf` is cut).
    pub(crate) async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            // SAFETY: recv only writes initialised bytes into the buffer, and u8 has no invalid
            // bit patterns, so viewing the initialised &mut [u8] as MaybeUninit<u8> is sound.
            let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
            match guard.try_io(|fd| fd.get_ref().recv(uninit)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends one complete Ethernet frame out of the bound interface.
    pub(crate) async fn send(&self, frame: &[u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| fd.get_ref().send(frame)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

/// A kernel UDP socket bound to a server port on one interface, used only to send.
///
/// It has two jobs. Replies to a relay agent (giaddr) may need routing, which the kernel does and
/// a packet socket does not. And while it holds the port, unicast requests to the port (renewals,
/// PXE boot-server requests on 4011) are not answered by the kernel with ICMP "port unreachable";
/// the packet socket reads them. Its own receive queue stays empty: a filter drops everything.
pub(crate) struct PortHolder {
    socket: tokio::net::UdpSocket,
}

impl PortHolder {
    /// Binds `0.0.0.0:port` on the interface `ifname`, with SO_REUSEADDR so that another DHCP
    /// server on the same host but another interface can bind the port too.
    pub(crate) fn bind(ifname: &str, port: u16) -> io::Result<PortHolder> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.attach_filter(&drop_all_filter())?;
        socket.set_reuse_address(true)?;
        socket.set_broadcast(true)?;
        socket.bind_device(Some(ifname.as_bytes()))?;
        socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())?;
        socket.set_nonblocking(true)?;
        Ok(PortHolder {
            socket: tokio::net::UdpSocket::from_std(socket.into())?,
        })
    }

    pub(crate) async fn send_to(&self, payload: &[u8], to: SocketAddrV4) -> io::Result<usize> {
        self.socket.send_to(payload, to).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_jumps_land_inside_the_program() {
        let prog = udp_filter(Listen::Server.ports());
        // SockFilter hides its fields; read them back through the libc layout it wraps.
        for (i, f) in prog.iter().enumerate() {
            // SAFETY: SockFilter is repr(transparent) over libc::sock_filter.
            let raw: &libc::sock_filter =
                unsafe { &*(f as *const SockFilter as *const libc::sock_filter) };
            if raw.code == JEQ_K || raw.code == JSET_K {
                assert!(i + 1 + (raw.jt as usize) < prog.len());
                assert!(i + 1 + (raw.jf as usize) < prog.len());
            }
        }
    }
}
