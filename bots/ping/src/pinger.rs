//! The ICMP engine: one socket per address family, shared by every job of the process, with strict
//! matching of replies to requests.
//!
//! Sockets: an unprivileged ICMP datagram socket where `net.ipv4.ping_group_range` admits the
//! process's group, else a raw socket (root or CAP_NET_RAW); surge-ping makes that choice. On top
//! of surge-ping this module raises the receive buffer (a burst of thousands of replies otherwise
//! overflows the default and looks like loss), installs the kernel's ICMP type filter on raw
//! sockets (so they are not woken by every echo request and neighbour discovery packet the host
//! sees), and hands out sequence numbers that are unique per host among requests in flight:
//! datagram sockets replace our ICMP identifier with their own, so the sequence number is all that
//! tells two requests to the same host apart.
//!
//! A reply counts only when it is an echo reply from the address the request went to, with the
//! request's sequence number and, on raw sockets, its identifier.

use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use surge_ping::{Client, Config, IcmpPacket, PingIdentifier, PingSequence, SurgeError, ICMP};

use crate::target::Destination;

/// Bytes after the ICMP header, as `ping` and `fping` send by default.
pub const ECHO_PAYLOAD_LEN: usize = 56;
/// The default socket receive buffer: room for a burst of ~50,000 replies (measured with
/// `pingbench` on loopback, one core). The kernel uses the memory only while replies wait.
pub const DEFAULT_RECEIVE_BUFFER: usize = 32 << 20;

/// A host's sequence counter is forgotten once it has gone unused for a whole sweep period
/// (between one and two periods after its last request). A reply that late is not expected;
/// forgetting only bounds memory for targets that come and go.
const SEQUENCE_SWEEP_PERIOD: Duration = Duration::from_secs(600);
/// How often (in allocations) the clock is read to see whether a sweep is due.
const SEQUENCE_CLOCK_EVERY: u64 = 4096;
/// How many times a send that the kernel refuses for lack of buffer space is retried.
const SEND_RETRIES: u32 = 20;
const SEND_RETRY_PAUSE: Duration = Duration::from_millis(1);
/// How many taken sequence numbers an echo request skips before giving up.
const MAX_COLLISIONS: u32 = 64;

/// Which kind of ICMP socket a family uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// `SOCK_DGRAM`/`IPPROTO_ICMP`: unprivileged; the kernel sets the identifier and checksum
    /// and delivers only replies to this socket's requests.
    Datagram,
    /// `SOCK_RAW`: needs CAP_NET_RAW; receives every ICMP packet the host gets.
    Raw,
}

impl fmt::Display for SocketKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SocketKind::Datagram => "unprivileged datagram",
            SocketKind::Raw => "raw",
        })
    }
}

/// Settings of the engine that a deployment may need to change.
#[derive(Debug, Clone, PartialEq)]
pub struct PingerConfig {
    /// Requested socket receive buffer in bytes, per family.
    pub receive_buffer: usize,
}

impl Default for PingerConfig {
    fn default() -> Self {
        PingerConfig {
            receive_buffer: DEFAULT_RECEIVE_BUFFER,
        }
    }
}

/// The engine's counters, registered in the bot's `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct PingCounters {
    /// Echo requests handed to the kernel.
    pub sent: Counter,
    /// Echo replies matched to a request in flight.
    pub replies: Counter,
    /// Packets (all attempts included) that got no reply within their timeout.
    pub timeouts: Counter,
    /// Sends the kernel refused and ICMP error messages (unreachable, time exceeded) received.
    pub errors: Counter,
}

/// The outcome of one echo request.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// A matching echo reply after this round trip.
    Reply(Duration),
    /// Nothing matching arrived within the wait.
    NoReply,
    /// An ICMP error about this request arrived (e.g. host unreachable), from `from`.
    IcmpError { from: IpAddr, kind: String },
    /// The request could not be sent.
    SendFailed(String),
}

/// Why the engine cannot start: no ICMP socket of either family could be opened.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenError(pub String);

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpenError {}

/// One address family's socket.
struct Family {
    client: Client,
    kind: SocketKind,
    receive_buffer: usize,
}

/// What [`Pinger::open`] found out about one family, for the startup log.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyStatus {
    pub family: &'static str,
    /// The socket kind and effective receive buffer, or why the family is unavailable.
    pub socket: Result<(SocketKind, usize), String>,
}

/// Per-host sequence counters. A counter starts at a random value and only moves forward, so a
/// reply that arrives after its request was given up cannot match a later request to the same
/// host unless 65,536 requests to that host were sent in between.
struct SequenceBook {
    hosts: HashMap<IpAddr, HostSequence>,
    allocations: u64,
    /// Incremented at every sweep; entries remember the generation of their last use.
    generation: u64,
    last_sweep: Instant,
}

struct HostSequence {
    next: u16,
    generation: u64,
}

impl Default for SequenceBook {
    fn default() -> Self {
        SequenceBook {
            hosts: HashMap::new(),
            allocations: 0,
            generation: 0,
            last_sweep: Instant::now(),
        }
    }
}

impl SequenceBook {
    fn allocate(&mut self, host: IpAddr) -> u16 {
        self.allocations += 1;
        if self.allocations % SEQUENCE_CLOCK_EVERY == 0
            && self.last_sweep.elapsed() >= SEQUENCE_SWEEP_PERIOD
        {
            self.sweep();
        }
        let generation = self.generation;
        let entry = self.hosts.entry(host).or_insert_with(|| HostSequence {
            next: rand::random(),
            generation,
        });
        let seq = entry.next;
        entry.next = entry.next.wrapping_add(1);
        entry.generation = generation;
        seq
    }

    /// Forgets the hosts not used since the previous sweep.
    fn sweep(&mut self) {
        let previous = self.generation;
        self.hosts.retain(|_, host| host.generation >= previous);
        self.generation += 1;
        self.last_sweep = Instant::now();
    }
}

/// The shared ICMP engine. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Pinger {
    v4: Result<Family, String>,
    v6: Result<Family, String>,
    /// Our ICMP identifier on raw sockets (datagram sockets use their own).
    identifier: u16,
    sequences: Mutex<SequenceBook>,
    counters: PingCounters,
}

impl Pinger {
    /// Opens the IPv4 and IPv6 sockets. Must run inside a Tokio runtime (the receive loops are
    /// tasks). A family that cannot be opened is unavailable, and pinging its addresses is an
    /// error for those entities; if neither opens, the error says what the process must be granted.
    pub fn open(config: &PingerConfig, counters: PingCounters) -> Result<Pinger, OpenError> {
        let v4 = Family::open(ICMP::V4, config);
        let v6 = Family::open(ICMP::V6, config);
        if let (Err(v4_err), Err(v6_err)) = (&v4, &v6) {
            return Err(OpenError(permission_advice(v4_err, v6_err)));
        }
        Ok(Pinger {
            v4,
            v6,
            identifier: rand::random(),
            sequences: Mutex::new(SequenceBook::default()),
            counters,
        })
    }

    /// The socket of each family, for the startup log.
    pub fn status(&self) -> [FamilyStatus; 2] {
        let status = |family: &'static str, f: &Result<Family, String>| FamilyStatus {
            family,
            socket: f
                .as_ref()
                .map(|f| (f.kind, f.receive_buffer))
                .map_err(Clone::clone),
        };
        [status("IPv4", &self.v4), status("IPv6", &self.v6)]
    }

    /// The counters this engine updates.
    pub fn counters(&self) -> &PingCounters {
        &self.counters
    }

    /// Makes IPv6 unavailable, as on a kernel without IPv6 (tests).
    #[cfg(test)]
    pub(crate) fn without_ipv6(mut self, reason: &str) -> Pinger {
        self.v6 = Err(reason.to_string());
        self
    }

    /// Whether requests to `ip` can be sent at all: `Err` says why its family has no socket.
    pub fn check_family(&self, ip: IpAddr) -> Result<(), String> {
        self.family(ip).map(|_| ())
    }

    fn family(&self, ip: IpAddr) -> Result<&Family, String> {
        match ip {
            IpAddr::V4(_) => self
                .v4
                .as_ref()
                .map_err(|e| format!("IPv4 is unavailable: {e}")),
            IpAddr::V6(_) => self
                .v6
                .as_ref()
                .map_err(|e| format!("IPv6 is unavailable: {e}")),
        }
    }

    fn next_sequence(&self, host: IpAddr) -> u16 {
        // A poisoned lock only means another thread panicked mid-allocation; the book is still
        // a valid map of counters.
        let mut book = self
            .sequences
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        book.allocate(host)
    }

    /// Sends one echo request to `destination` and waits up to `wait` for its reply.
    pub async fn echo(&self, destination: Destination, wait: Duration) -> Attempt {
        let family = match self.family(destination.ip) {
            Ok(family) => family,
            Err(message) => {
                self.counters.errors.inc();
                return Attempt::SendFailed(message);
            }
        };
        let mut pinger = family
            .client
            .pinger(destination.ip, PingIdentifier(self.identifier))
            .await;
        pinger.timeout(wait);
        if destination.scope_id != 0 {
            pinger.scope_id(destination.scope_id);
        }
        let payload = [0u8; ECHO_PAYLOAD_LEN];
        let started = Instant::now();
        let mut send_retries = 0;
        let mut collisions = 0;
        loop {
            let seq = PingSequence(self.next_sequence(destination.ip));
            let result = pinger.ping(seq, &payload).await;
            match result {
                Ok((packet, rtt)) => {
                    self.counters.sent.inc();
                    return self.classify(destination, packet, rtt);
                }
                Err(SurgeError::Timeout { .. }) => {
                    self.counters.sent.inc();
                    return Attempt::NoReply;
                }
                // Another request to this host holds this sequence number (a wrapped counter
                // with that many requests in flight); take the next one, a bounded number of times.
                Err(SurgeError::IdenticalRequests { .. }) if collisions < MAX_COLLISIONS => {
                    collisions += 1;
                }
                Err(SurgeError::IOError(err))
                    if is_transient_send_error(&err)
                        && send_retries < SEND_RETRIES
                        && started.elapsed() + SEND_RETRY_PAUSE < wait =>
                {
                    send_retries += 1;
                    tokio::time::sleep(SEND_RETRY_PAUSE).await;
                    pinger.timeout(wait.saturating_sub(started.elapsed()));
                }
                Err(SurgeError::IOError(err)) => {
                    self.counters.errors.inc();
                    return Attempt::SendFailed(err.to_string());
                }
                Err(other) => {
                    self.counters.errors.inc();
                    return Attempt::SendFailed(other.to_string());
                }
            }
        }
    }

    /// Accepts only an echo reply from the host the request went to; anything else that
    /// surge-ping matched by (address, identifier, sequence) is an ICMP error about our request.
    fn classify(&self, destination: Destination, packet: IcmpPacket, rtt: Duration) -> Attempt {
        let (family_v4, icmp_type, code, from) = match &packet {
            IcmpPacket::V4(p) => (
                true,
                p.get_icmp_type().0,
                p.get_icmp_code().0,
                IpAddr::V4(p.get_source()),
            ),
            IcmpPacket::V6(p) => (
                false,
                p.get_icmpv6_type().0,
                p.get_icmpv6_code().0,
                IpAddr::V6(p.get_source()),
            ),
        };
        let echo_reply = if family_v4 { 0 } else { 129 };
        if icmp_type == echo_reply && from == destination.ip {
            self.counters.replies.inc();
            return Attempt::Reply(rtt);
        }
        self.counters.errors.inc();
        let kind = if family_v4 {
            icmpv4_kind(icmp_type, code)
        } else {
            icmpv6_kind(icmp_type, code)
        };
        Attempt::IcmpError { from, kind }
    }
}

impl Family {
    fn open(kind: ICMP, config: &PingerConfig) -> Result<Family, String> {
        // surge-ping tries a datagram socket first and falls back to a raw one.
        let surge_config = Config::builder().kind(kind).build();
        let client = Client::new(&surge_config).map_err(|err| {
            if err.kind() == io::ErrorKind::PermissionDenied {
                "permission denied".to_string()
            } else if err.raw_os_error() == Some(libc::EAFNOSUPPORT) {
                "the kernel does not support this address family".to_string()
            } else {
                first_line(&err.to_string())
            }
        })?;
        let fd = client.get_socket().get_native_sock();
        let kind_opened = match getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) {
            Ok(libc::SOCK_RAW) => SocketKind::Raw,
            _ => SocketKind::Datagram,
        };
        let receive_buffer = raise_receive_buffer(fd, config.receive_buffer);
        if kind_opened == SocketKind::Raw {
            let filtered = match kind {
                ICMP::V4 => install_icmpv4_filter(fd),
                ICMP::V6 => install_icmpv6_filter(fd),
            };
            if let Err(err) = filtered {
                tracing::warn!(
                    error = %err,
                    "could not install the ICMP type filter on the raw socket; every ICMP packet \
                     the host receives will be read and discarded"
                );
            }
        }
        Ok(Family {
            client,
            kind: kind_opened,
            receive_buffer,
        })
    }
}

/// The message for a process that may open neither socket kind: what exactly to grant.
fn permission_advice(v4_err: &str, v6_err: &str) -> String {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unreadable".into());
    // SAFETY: getgid has no preconditions and cannot fail.
    let gid = unsafe { libc::getgid() };
    format!(
        "cannot open an ICMP socket (IPv4: {v4_err}; IPv6: {v6_err}). Grant pingbot one of: \
         the capability CAP_NET_RAW (raw sockets; e.g. `setcap cap_net_raw+ep <path to pingbot>`, \
         or `--cap-add NET_RAW` for a container), or unprivileged ICMP sockets for its group \
         {gid}: `sysctl -w net.ipv4.ping_group_range=\"{gid} {gid}\"` (currently \"{range}\"; \
         for a container `--sysctl net.ipv4.ping_group_range=\"0 2147483647\"`)"
    )
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or(text).to_string()
}

fn is_transient_send_error(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::EAGAIN))
}

/// Asks for `wanted` bytes of receive buffer: first past `net.core.rmem_max` (needs
/// CAP_NET_ADMIN), else up to it. Returns what the kernel granted for payload, which is half of
/// what it reports (the kernel doubles the request to account for its bookkeeping).
fn raise_receive_buffer(fd: RawFd, wanted: usize) -> usize {
    let request = libc::c_int::try_from(wanted).unwrap_or(libc::c_int::MAX);
    if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, request).is_err() {
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, request);
    }
    let granted = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)
        .map(|reported| usize::try_from(reported / 2).unwrap_or(0))
        .unwrap_or(0);
    if granted < wanted {
        tracing::warn!(
            wanted,
            granted,
            "the ICMP socket receive buffer is smaller than asked; bursts of replies may be \
             dropped. Raise `net.core.rmem_max` or grant CAP_NET_ADMIN"
        );
    }
    granted
}

/// Linux `ICMP_FILTER` (level `SOL_RAW`): a bit set for each ICMPv4 type the socket must not get.
const ICMP_FILTER: libc::c_int = 1;
/// Linux `ICMP6_FILTER` (level `IPPROTO_ICMPV6`): 256 bits, a set bit blocks that type.
const ICMP6_FILTER: libc::c_int = 1;

/// Lets through echo replies and the errors that can quote our requests.
fn install_icmpv4_filter(fd: RawFd) -> io::Result<()> {
    let pass: u32 = [0u32, 3, 11, 12].iter().map(|t| 1u32 << t).sum();
    let blocked: u32 = !pass;
    setsockopt_raw(fd, libc::SOL_RAW, ICMP_FILTER, &blocked)
}

fn install_icmpv6_filter(fd: RawFd) -> io::Result<()> {
    let mut blocked = [u32::MAX; 8];
    for t in [1u8, 2, 3, 4, 129] {
        blocked[usize::from(t >> 5)] &= !(1u32 << (t & 31));
    }
    setsockopt_raw(fd, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &blocked)
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    setsockopt_raw(fd, level, name, &value)
}

fn setsockopt_raw<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<T>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` points to `len` readable bytes for the duration of the call, and `fd` is
    // an open socket owned by the surge-ping client that outlives this call.
    let rc = unsafe { libc::setsockopt(fd, level, name, (value as *const T).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes and describe an int-sized buffer.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn icmpv4_kind(t: u8, code: u8) -> String {
    match (t, code) {
        (3, 0) => "network unreachable".into(),
        (3, 1) => "host unreachable".into(),
        (3, 3) => "port unreachable".into(),
        (3, 9 | 10 | 13) => "administratively prohibited".into(),
        (3, c) => format!("destination unreachable (code {c})"),
        (11, _) => "time exceeded".into(),
        (12, _) => "parameter problem".into(),
        (0, _) => "echo reply from another address".into(),
        (t, c) => format!("ICMP type {t} code {c}"),
    }
}

fn icmpv6_kind(t: u8, code: u8) -> String {
    match (t, code) {
        (1, 0) => "no route to destination".into(),
        (1, 1) => "administratively prohibited".into(),
        (1, 3) => "address unreachable".into(),
        (1, c) => format!("destination unreachable (code {c})"),
        (2, _) => "packet too big".into(),
        (3, _) => "time exceeded".into(),
        (4, _) => "parameter problem".into(),
        (129, _) => "echo reply from another address".into(),
        (t, c) => format!("ICMPv6 type {t} code {c}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_netns::{
        drop_cap_net_raw, in_private_netns, net_sysctl, run, runtime, silence_kernel_echo,
        Behaviour, Responder,
    };
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    fn open() -> Pinger {
        Pinger::open(&PingerConfig::default(), PingCounters::default()).expect("open pinger")
    }

    fn dest(ip: &str) -> Destination {
        Destination::from(ip.parse::<IpAddr>().unwrap())
    }

    const WAIT: Duration = Duration::from_secs(2);

    #[test]
    fn without_ping_group_range_root_gets_raw_sockets_with_a_large_buffer() {
        in_private_netns(|| {
            net_sysctl("ipv4/ping_group_range", "1 0");
            runtime().block_on(async {
                let pinger = open();
                for status in pinger.status() {
                    let (kind, buffer) = status.socket.expect(status.family);
                    assert_eq!(kind, SocketKind::Raw, "{}", status.family);
                    assert!(
                        buffer >= DEFAULT_RECEIVE_BUFFER,
                        "{}: {buffer}",
                        status.family
                    );
                }
                for ip in ["127.0.0.1", "::1"] {
                    assert!(
                        matches!(pinger.echo(dest(ip), WAIT).await, Attempt::Reply(_)),
                        "{ip}"
                    );
                }
            })
        });
    }

    #[test]
    fn where_ping_group_range_allows_unprivileged_datagram_sockets_are_used() {
        in_private_netns(|| {
            net_sysctl("ipv4/ping_group_range", "0 2147483647");
            runtime().block_on(async {
                let pinger = open();
                for status in pinger.status() {
                    assert_eq!(status.socket.expect(status.family).0, SocketKind::Datagram);
                }
                for ip in ["127.0.0.1", "::1", "127.0.0.77"] {
                    match pinger.echo(dest(ip), WAIT).await {
                        Attempt::Reply(rtt) => assert!(rtt < WAIT),
                        other => panic!("{ip}: {other:?}"),
                    }
                }
                assert_eq!(pinger.counters().sent.get(), 3);
                assert_eq!(pinger.counters().replies.get(), 3);
            })
        });
    }

    #[test]
    fn without_cap_net_raw_nor_ping_group_range_the_error_says_what_to_grant() {
        let err = in_private_netns(|| {
            net_sysctl("ipv4/ping_group_range", "1 0");
            drop_cap_net_raw();
            runtime().block_on(async {
                Pinger::open(&PingerConfig::default(), PingCounters::default())
                    .err()
                    .expect("opening must fail without any ICMP permission")
            })
        });
        let message = err.to_string();
        for needed in [
            "CAP_NET_RAW",
            "net.ipv4.ping_group_range=\"0 0\"",
            "currently \"1 0\"",
            "(IPv4: permission denied; IPv6: permission denied)",
        ] {
            assert!(message.contains(needed), "{message}\nlacks {needed}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loopback_answers_on_both_families() {
        let pinger = open();
        for ip in ["127.0.0.1", "::1"] {
            match pinger.echo(dest(ip), WAIT).await {
                Attempt::Reply(rtt) => assert!(rtt < Duration::from_millis(500), "{ip}: {rtt:?}"),
                other => panic!("{ip}: {other:?}"),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousands_of_loopback_addresses_at_once_all_get_their_own_reply() {
        let pinger = Arc::new(open());
        let targets: Vec<Destination> = (0..3000u32)
            .map(|i| {
                let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 42, 0, 1)) + i);
                Destination::from(IpAddr::V4(ip))
            })
            .collect();
        let tasks: Vec<_> = targets
            .iter()
            .map(|&target| {
                let pinger = pinger.clone();
                tokio::spawn(async move { (target, pinger.echo(target, WAIT).await) })
            })
            .collect();
        for task in tasks {
            let (target, attempt) = task.await.unwrap();
            assert!(
                matches!(attempt, Attempt::Reply(_)),
                "{target}: {attempt:?}"
            );
        }
        assert_eq!(pinger.counters().sent.get(), 3000);
        assert_eq!(pinger.counters().replies.get(), 3000);
        assert_eq!(pinger.counters().errors.get(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_requests_in_flight_to_one_host_each_match_their_own_reply() {
        let pinger = Arc::new(open());
        let tasks: Vec<_> = (0..500)
            .map(|_| {
                let pinger = pinger.clone();
                tokio::spawn(async move { pinger.echo(dest("127.0.0.1"), WAIT).await })
            })
            .collect();
        for task in tasks {
            assert!(matches!(task.await.unwrap(), Attempt::Reply(_)));
        }
        assert_eq!(pinger.counters().replies.get(), 500);
    }

    #[test]
    fn a_silent_host_gives_no_reply_after_the_wait() {
        in_private_netns(|| {
            silence_kernel_echo();
            runtime().block_on(async {
                let pinger = open();
                for ip in ["127.0.0.1", "::1"] {
                    let started = Instant::now();
                    let wait = Duration::from_millis(300);
                    assert_eq!(pinger.echo(dest(ip), wait).await, Attempt::NoReply, "{ip}");
                    let waited = started.elapsed();
                    assert!(waited >= wait && waited < wait * 2, "{ip}: {waited:?}");
                }
                assert_eq!(pinger.counters().sent.get(), 2);
                assert_eq!(pinger.counters().replies.get(), 0);
            })
        });
    }

    #[test]
    fn replies_from_another_address_or_with_another_sequence_do_not_count() {
        in_private_netns(|| {
            silence_kernel_echo();
            runtime().block_on(async {
                let pinger = open();
                let wrong_source = Responder::start(
                    "127.0.0.5".parse().unwrap(),
                    Behaviour::FromAddress("127.0.0.6".parse().unwrap()),
                );
                let wrong_sequence =
                    Responder::start("127.0.0.7".parse().unwrap(), Behaviour::WrongSequence);
                let wrong_sequence_v6 =
                    Responder::start("::1".parse().unwrap(), Behaviour::WrongSequence);
                let wait = Duration::from_millis(300);
                for ip in ["127.0.0.5", "127.0.0.7", "::1"] {
                    assert_eq!(pinger.echo(dest(ip), wait).await, Attempt::NoReply, "{ip}");
                }
                assert_eq!(wrong_source.requests(), 1);
                assert_eq!(wrong_sequence.requests(), 1);
                assert_eq!(wrong_sequence_v6.requests(), 1);
                assert_eq!(pinger.counters().replies.get(), 0);
            })
        });
    }

    #[test]
    fn an_icmp_error_about_the_request_is_not_a_reply() {
        in_private_netns(|| {
            silence_kernel_echo();
            runtime().block_on(async {
                let pinger = open();
                let _v4 = Responder::start("127.0.0.9".parse().unwrap(), Behaviour::Unreachable);
                let _v6 = Responder::start("::1".parse().unwrap(), Behaviour::Unreachable);
                match pinger.echo(dest("127.0.0.9"), WAIT).await {
                    Attempt::IcmpError { from, kind } => {
                        assert_eq!(from, "127.0.0.9".parse::<IpAddr>().unwrap());
                        assert_eq!(kind, "host unreachable");
                    }
                    other => panic!("{other:?}"),
                }
                match pinger.echo(dest("::1"), WAIT).await {
                    Attempt::IcmpError { kind, .. } => assert_eq!(kind, "address unreachable"),
                    other => panic!("{other:?}"),
                }
                assert_eq!(pinger.counters().errors.get(), 2);
            })
        });
    }

    #[test]
    fn an_address_without_a_route_fails_to_send() {
        in_private_netns(|| {
            run("ip", &["route", "add", "unreachable", "198.51.100.0/24"]);
            runtime().block_on(async {
                let pinger = open();
                match pinger.echo(dest("198.51.100.1"), WAIT).await {
                    Attempt::SendFailed(message) => {
                        assert!(message.contains("No route to host"), "{message}")
                    }
                    other => panic!("{other:?}"),
                }
                assert_eq!(pinger.counters().errors.get(), 1);
            })
        });
    }

    #[test]
    fn sequence_numbers_per_host_never_repeat_among_recent_requests() {
        let mut book = SequenceBook::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first_a = book.allocate(a);
        let _ = book.allocate(b);
        let mut seen = std::collections::HashSet::new();
        seen.insert(first_a);
        for _ in 1..65536 {
            assert!(
                seen.insert(book.allocate(a)),
                "a sequence number repeated early"
            );
        }
        assert_eq!(book.allocate(a), first_a, "the counter wraps after 65,536");
    }

    #[test]
    fn hosts_unused_for_a_sweep_period_are_forgotten() {
        let mut book = SequenceBook::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        book.allocate(a);
        book.allocate(b);
        book.sweep();
        book.allocate(a);
        book.sweep();
        assert!(book.hosts.contains_key(&a), "used since the previous sweep");
        assert!(!book.hosts.contains_key(&b), "unused for a whole period");
    }
}
