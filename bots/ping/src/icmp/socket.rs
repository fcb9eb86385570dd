//! The ICMP sockets: opening (datagram first, raw as the fallback), the options the engine
//! relies on (kernel receive timestamps, the raw sockets' type filter, the receive buffer), the
//! send time, and batched receive with each packet's kernel timestamp.

use collector::socket::{source_address, ReceiveBatch};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::mem::{size_of, size_of_val, zeroed};
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;

/// Which kind of ICMP socket a family uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// `SOCK_DGRAM`/`IPPROTO_ICMP`: unprivileged; the kernel sets the identifier and checksum
    /// and delivers only replies to this socket's requests.
    Datagram,
    /// `SOCK_RAW`: needs CAP_NET_RAW; receives every ICMP packet the host gets (filtered by type).
    Raw,
}

impl std::fmt::Display for SocketKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SocketKind::Datagram => "unprivileged datagram",
            SocketKind::Raw => "raw",
        })
    }
}

/// An open ICMP socket of one family, non-blocking, with kernel receive timestamps on.
pub struct IcmpSocket {
    pub socket: Socket,
    pub kind: SocketKind,
    pub v6: bool,
    /// Receive buffer the kernel granted, in bytes of payload.
    pub receive_buffer: usize,
    /// Taken before the send time is read. The kernel serialises sends on one socket (the
    /// socket lock, held while the packet goes out, and on loopback while the reply is made);
    /// a thread waiting there after reading its clock would count the wait in its round trip.
    send_turn: Mutex<()>,
}

impl IcmpSocket {
    /// Opens a datagram socket, else a raw one. The error is the raw socket's, in words.
    pub fn open(v6: bool, receive_buffer: usize) -> Result<IcmpSocket, String> {
        let (domain, protocol) = if v6 {
            (Domain::IPV6, Protocol::ICMPV6)
        } else {
            (Domain::IPV4, Protocol::ICMPV4)
        };
        let (socket, kind) = match Socket::new(domain, Type::DGRAM, Some(protocol)) {
            Ok(socket) => (socket, SocketKind::Datagram),
            Err(_) => match Socket::new(domain, Type::RAW, Some(protocol)) {
                Ok(socket) => (socket, SocketKind::Raw),
                Err(err) => return Err(describe_open_error(&err)),
            },
        };
        let fd = socket.as_raw_fd();
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &1 as &libc::c_int,
        )
        .map_err(|e| format!("kernel receive timestamps (SO_TIMESTAMPNS): {e}"))?;
        if !v6 {
            dont_fragment(fd);
        }
        if kind == SocketKind::Raw {
            let filtered = if v6 {
                install_icmpv6_filter(fd)
            } else {
                install_icmpv4_filter(fd)
            };
            if let Err(err) = filtered {
                tracing::warn!(
                    error = %err,
                    "could not install the ICMP type filter on the raw socket; every ICMP packet \
                     the host receives will be read and discarded"
                );
            }
        }
        if kind == SocketKind::Datagram {
            // Datagram sockets hear of ICMP errors only through the error queue.
            let (level, name) = if v6 {
                (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
            } else {
                (libc::IPPROTO_IP, libc::IP_RECVERR)
            };
            if let Err(err) = setsockopt(fd, level, name, &(1 as libc::c_int)) {
                tracing::warn!(
                    error = %err,
                    "could not ask for ICMP errors on the datagram socket; an unreachable host \
                     will look silent"
                );
            }
        }
        let receive_buffer =
            collector::socket::raise_receive_buffer(&socket, receive_buffer, "ICMP socket");
        Ok(IcmpSocket {
            socket,
            kind,
            v6,
            receive_buffer,
            send_turn: Mutex::new(()),
        })
    }

    /// Sends `request` to `to` (see [`socket_address`]); returns `CLOCK_REALTIME` read
    /// immediately before the `sendto`, with the socket to ourselves.
    pub fn timed_send(&self, request: &[u8], to: &SockAddr) -> (i64, io::Result<usize>) {
        // A poisoned lock guards nothing but the turn itself.
        let _turn = self.send_turn.lock().unwrap_or_else(|p| p.into_inner());
        let sent_ns = realtime_ns();
        (sent_ns, self.socket.send_to(request, to))
    }
}

/// The socket address of `ip` (with `scope_id` for IPv6 link-local addresses).
pub fn socket_address(ip: IpAddr, scope_id: u32) -> SockAddr {
    let address = match ip {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V4(v4), 0),
        IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, 0, 0, scope_id)),
    };
    SockAddr::from(address)
}

fn describe_open_error(err: &io::Error) -> String {
    if err.kind() == io::ErrorKind::PermissionDenied {
        "permission denied".to_string()
    } else if err.raw_os_error() == Some(libc::EAFNOSUPPORT) {
        "the kernel does not support this address family".to_string()
    } else {
        err.to_string()
    }
}

/// A `CLOCK_REALTIME` reading in nanoseconds, the clock of `SO_TIMESTAMPNS`.
pub fn realtime_ns() -> i64 {
    // SAFETY: timespec is plain data; clock_gettime writes it and cannot fail for this clock.
    let mut now: libc::timespec = unsafe { zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    timespec_ns(&now)
}

fn timespec_ns(t: &libc::timespec) -> i64 {
    t.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec)
}

/// Packets taken per `recvmmsg` call.
pub const BATCH: usize = 64;
/// Room per packet: an echo reply with IP header is 84 bytes; an error quotes at most 576.
const SLOT: usize = 1024;
/// Room for the control messages of one packet (a timespec's needs 32 bytes).
const CONTROL: usize = 64;

/// One received packet of a batch.
pub struct Received<'a> {
    pub data: &'a [u8],
    pub from: Option<IpAddr>,
    /// The kernel's receive time (`CLOCK_REALTIME`, ns), if it came with the packet.
    pub kernel_time_ns: Option<i64>,
    /// The packet or its control data did not fit the buffers.
    pub truncated: bool,
}

/// Buffers for `recvmmsg`, allocated once, with room for the kernel's receive timestamp.
pub struct Batch(ReceiveBatch);

impl Default for Batch {
    fn default() -> Self {
        Batch(ReceiveBatch::new(BATCH, SLOT, CONTROL))
    }
}

impl Batch {
    /// Receives up to [`BATCH`] packets without blocking; `Ok(0)` when none is waiting.
    pub fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        self.0.receive(fd)
    }

    /// Packet `i` of the last [`Batch::receive`].
    pub fn packet(&self, i: usize) -> Received<'_> {
        Received {
            data: self.0.data(i),
            from: self.0.source(i),
            kernel_time_ns: kernel_timestamp(self.0.header(i)),
            truncated: self.0.truncated(i),
        }
    }
}

/// An ICMP error the kernel queued on a datagram socket about one of its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedError {
    /// Where the request went.
    pub target: IpAddr,
    /// The request's sequence number.
    pub sequence: u16,
    /// The request's token (the first payload bytes), when the kernel returned that much of it.
    pub token: Option<u64>,
    /// Who sent the error, when the kernel says.
    pub from: Option<IpAddr>,
    pub icmp_type: u8,
    pub code: u8,
}

/// Takes one entry from the socket's error queue (`MSG_ERRQUEUE`), without blocking:
/// `Ok(None)` when it is empty, `Ok(Some(None))` for an entry that is not an ICMP error about
/// an echo request (e.g. a local error).
pub fn receive_queued_error(fd: RawFd) -> io::Result<Option<Option<QueuedError>>> {
    let mut data = [0u8; 64];
    let mut control = [0u64; 32];
    // SAFETY: sockaddr_storage and msghdr are plain data; all-zero is a valid value.
    let mut name: libc::sockaddr_storage = unsafe { zeroed() };
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: as above.
    let mut header: libc::msghdr = unsafe { zeroed() };
    header.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = size_of_val(&control) as _;
    // SAFETY: the header points at the stack buffers above, with their lengths.
    let n = unsafe { libc::recvmsg(fd, &mut header, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::WouldBlock => Ok(None),
            _ => Err(err),
        };
    }
    let request = &data[..(n as usize).min(data.len())];
    let sequence = request
        .get(6..8)
        .map(|bytes| u16::from_be_bytes([bytes[0], bytes[1]]));
    let token = super::packet::token_of(request);
    let queued = match (source_address(&name), sequence, extended_error(&header)) {
        (Some(target), Some(sequence), Some((icmp_type, code, from))) => Some(QueuedError {
            target,
            sequence,
            token,
            from,
            icmp_type,
            code,
        }),
        _ => None,
    };
    Ok(Some(queued))
}

/// The ICMP type, code and sender in an `IP_RECVERR`/`IPV6_RECVERR` control message.
fn extended_error(header: &libc::msghdr) -> Option<(u8, u8, Option<IpAddr>)> {
    // SAFETY: the header describes a control buffer the kernel filled (msg_controllen bytes);
    // the CMSG macros stay within it, and the reads below are checked against cmsg_len.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            let level = (*cmsg).cmsg_level;
            let kind = (*cmsg).cmsg_type;
            let is_error = (level == libc::IPPROTO_IP && kind == libc::IP_RECVERR)
                || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_RECVERR);
            let room = size_of::<libc::sock_extended_err>() + size_of::<libc::sockaddr_in>();
            if is_error && (*cmsg).cmsg_len as usize >= libc::CMSG_LEN(room as u32) as usize {
                let ee_ptr = libc::CMSG_DATA(cmsg) as *const libc::sock_extended_err;
                let ee: libc::sock_extended_err = std::ptr::read_unaligned(ee_ptr);
                let origin_icmp = ee.ee_origin == libc::SO_EE_ORIGIN_ICMP
                    || ee.ee_origin == libc::SO_EE_ORIGIN_ICMP6;
                if !origin_icmp {
                    return None;
                }
                let offender = libc::SO_EE_OFFENDER(ee_ptr) as *const u8;
                let available = (*cmsg).cmsg_len as usize - (offender as usize - cmsg as usize);
                let mut storage: libc::sockaddr_storage = zeroed();
                let copy = available.min(size_of::<libc::sockaddr_in6>());
                std::ptr::copy_nonoverlapping(
                    offender,
                    (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
                    copy,
                );
                return Some((ee.ee_type, ee.ee_code, source_address(&storage)));
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    None
}

/// The `SCM_TIMESTAMPNS` control message of a received packet.
fn kernel_timestamp(header: &libc::msghdr) -> Option<i64> {
    // SAFETY: the header describes a control buffer the kernel filled (msg_controllen bytes);
    // the CMSG macros stay within it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let time: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                return Some(timespec_ns(&time));
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    None
}

/// Linux `ICMP_FILTER` (level `SOL_RAW`): a bit set for each ICMPv4 type the socket must not get.
const ICMP_FILTER: libc::c_int = 1;
/// Linux `ICMP6_FILTER` (level `IPPROTO_ICMPV6`): 256 bits, a set bit blocks that type.
const ICMP6_FILTER: libc::c_int = 1;

/// Lets through echo replies and the errors that can quote our requests.
fn install_icmpv4_filter(fd: RawFd) -> io::Result<()> {
    let pass: u32 = [0u32, 3, 11, 12].iter().map(|t| 1u32 << t).sum();
    setsockopt(fd, libc::SOL_RAW, ICMP_FILTER, &!pass)
}

fn install_icmpv6_filter(fd: RawFd) -> io::Result<()> {
    let mut blocked = [u32::MAX; 8];
    for t in [1u8, 2, 3, 4, 129] {
        blocked[usize::from(t >> 5)] &= !(1u32 << (t & 31));
    }
    setsockopt(fd, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &blocked)
}

/// Sends IPv4 echo requests with Don't Fragment enforced (`IP_PMTUDISC_DO`). Raw sockets already
/// set DF by default (`IP_PMTUDISC_WANT`) but let the kernel fragment anyway, so it draws each
/// datagram an ID from its hashed ID generator (a few percent of the bot's CPU). Enforced, a
/// request is an atomic datagram with ID 0 (RFC 6864); at 84 bytes no link has to fragment it.
/// Without it the requests go out as before, so a refusal is only logged.
fn dont_fragment(fd: RawFd) {
    if let Err(err) = setsockopt(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        &libc::IP_PMTUDISC_DO,
    ) {
        tracing::debug!(error = %err, "could not set Don't Fragment on the ICMP socket");
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` points to `len` readable bytes for the duration of the call.
    let rc = unsafe { libc::setsockopt(fd, level, name, (value as *const T).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
