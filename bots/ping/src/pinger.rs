//! The ICMP echo engine: one socket per address family, shared by every job of the process,
//! with strict matching of replies to requests and round trips measured by the kernel's clock.
//!
//! Sockets: an unprivileged ICMP datagram socket where `net.ipv4.ping_group_range` admits the
//! process's group, else a raw socket (root or CAP_NET_RAW) with the kernel's ICMP type filter,
//! so that only echo replies and the errors that can quote a request wake the receive task.
//! Datagram sockets replace our identifier with their own: a reply is matched by (source
//! address, sequence number) and the request's own token in the payload, plus our identifier on
//! raw sockets; an ICMP error by the target and sequence of the request it quotes, and its token
//! when the quote holds it. Sequence numbers come from one counter of the engine; the token, which
//! no other request carries, is what keeps a late reply from answering a later request.
//!
//! Round trip: the kernel's receive timestamp of the reply (`SO_TIMESTAMPNS`, `CLOCK_REALTIME`)
//! minus `CLOCK_REALTIME` read immediately before `sendto`. Neither the waiter's nor the
//! receive task's scheduling delay enters it. A round trip that is not positive (a clock step,
//! a missing timestamp) is counted and logged, and the reply counts without an rtt.

use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use socket2::SockAddr;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};
use tokio::task::JoinHandle;

use crate::icmp::inflight::{Arrival, Identified, InFlight};
use crate::icmp::packet::{self, Incoming, ECHO_REQUEST_LEN};
pub use crate::icmp::socket::SocketKind;
use crate::icmp::socket::{receive_queued_error, socket_address, Batch, IcmpSocket, BATCH};
use crate::target::Destination;
use collector::deadlines::{Deadlines, Expiry};
use collector::pacing::Pacer;

pub use crate::icmp::packet::ECHO_PAYLOAD_LEN;
/// The default socket receive buffer: room for a burst of ~50,000 replies (measured with
/// `pingbench` on loopback, one core). The kernel uses the memory only while replies wait.
pub const DEFAULT_RECEIVE_BUFFER: usize = 32 << 20;
/// The default of `PING_MAX_RATE`: 10,000 targets at 1 s go out within the first 100 ms.
pub const DEFAULT_MAX_RATE: u32 = 100_000;

/// How many times a send that the kernel refuses for lack of buffer space is retried.
const SEND_RETRIES: u32 = 20;
const SEND_RETRY_PAUSE: Duration = Duration::from_millis(1);
/// How many taken sequence numbers an echo request skips before giving up.
const MAX_COLLISIONS: u32 = 64;
/// Socket errors left by ICMP error messages that one wake-up of a receive task reads past.
const MAX_ABSORBED_ERRORS: u32 = 64;
/// Pause of a receive task after a receive error, so a persistent one cannot spin.
const RECEIVE_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Settings of the engine that a deployment may need to change.
#[derive(Debug, Clone, PartialEq)]
pub struct PingerConfig {
    /// Requested socket receive buffer in bytes, per family.
    pub receive_buffer: usize,
    /// Echo requests per second at most, both families together.
    pub max_rate: u32,
}

impl Default for PingerConfig {
    fn default() -> Self {
        PingerConfig {
            receive_buffer: DEFAULT_RECEIVE_BUFFER,
            max_rate: DEFAULT_MAX_RATE,
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
    /// Replies whose kernel receive time was missing or not after the send time: counted as
    /// answered, their rtt not reported.
    pub invalid_rtts: Counter,
    /// Packets read that matched no request in flight: late or duplicate replies, other
    /// programs' ICMP, malformed or truncated packets.
    pub unmatched: Counter,
}

impl PingCounters {
    /// Registers every counter in the bot's `/metrics` (prefix `collector_`).
    pub fn register(&self, metrics: &collector::metrics::Metrics) {
        let counters: [(&str, &str, &Counter); 6] = [
            ("ping_echo_requests_sent", "ICMP echo requests sent", &self.sent),
            ("ping_echo_replies", "ICMP echo replies matched to a request", &self.replies),
            (
                "ping_timeouts",
                "Packets without a reply within their timeout, all attempts included",
                &self.timeouts,
            ),
            (
                "ping_errors",
                "Echo requests the kernel refused and ICMP errors received",
                &self.errors,
            ),
            (
                "ping_invalid_rtts",
                "Echo replies without a positive kernel-measured round trip (answered, rtt not reported)",
                &self.invalid_rtts,
            ),
            (
                "ping_unmatched_packets",
                "ICMP packets read that matched no request in flight (late, duplicate, foreign, malformed)",
                &self.unmatched,
            ),
        ];
        for (name, help, counter) in counters {
            metrics.register(name, help, counter.clone());
        }
    }
}

/// The outcome of one echo request.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// A matching echo reply after this round trip.
    Reply(Duration),
    /// A matching echo reply whose round trip could not be measured (counted in
    /// `invalid_rtts`, logged).
    ReplyWithoutRtt,
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

/// What [`Pinger::open`] found out about one family, for the startup log.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyStatus {
    pub family: &'static str,
    /// The socket kind and effective receive buffer, or why the family is unavailable.
    pub socket: Result<(SocketKind, usize), String>,
}

/// State shared by the senders and the receive tasks.
struct Shared {
    in_flight: InFlight,
    /// Our ICMP identifier on raw sockets (datagram sockets use their own).
    identifier: u16,
    /// Where the requests' tokens start, different in every process: a request's token is
    /// `token_base + n` for the engine's n-th request.
    token_base: u64,
    /// Requests made so far; the low 16 bits of the count are a request's sequence number.
    requests: AtomicU64,
    counters: PingCounters,
}

/// One address family's socket and its receive task.
struct Family {
    socket: Arc<AsyncFd<IcmpSocket>>,
    receiver: JoinHandle<()>,
}

impl AsRawFd for IcmpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// The shared ICMP engine. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Pinger {
    v4: Result<Family, String>,
    v6: Result<Family, String>,
    shared: Arc<Shared>,
    pacer: Pacer,
    /// How long each request waits for its reply, kept by one task rather than a tokio timer
    /// per request; the task ends with the engine.
    deadlines: Arc<Deadlines>,
    _expiry: Expiry,
}

impl Pinger {
    /// Opens the IPv4 and IPv6 sockets and starts their receive tasks; must run inside a Tokio
    /// runtime. A family that cannot be opened is unavailable, and pinging its addresses is an
    /// error for those entities; if neither opens, the error says what the process must be granted.
    pub fn open(config: &PingerConfig, counters: PingCounters) -> Result<Pinger, OpenError> {
        let shared = Arc::new(Shared {
            in_flight: InFlight::default(),
            identifier: rand::random(),
            token_base: rand::random(),
            requests: AtomicU64::new(rand::random::<u16>().into()),
            counters,
        });
        let v4 = Family::open(false, config, &shared);
        let v6 = Family::open(true, config, &shared);
        if let (Err(v4_err), Err(v6_err)) = (&v4, &v6) {
            return Err(OpenError(permission_advice(v4_err, v6_err)));
        }
        let (deadlines, expiry) = Deadlines::start_keeping();
        Ok(Pinger {
            v4,
            v6,
            shared,
            pacer: Pacer::new(config.max_rate),
            deadlines,
            _expiry: expiry,
        })
    }

    /// Echo requests sent per second at most (`PING_MAX_RATE`).
    pub fn max_rate(&self) -> u32 {
        self.pacer.per_second()
    }

    /// The socket of each family, for the startup log.
    pub fn status(&self) -> [FamilyStatus; 2] {
        let status = |family: &'static str, f: &Result<Family, String>| FamilyStatus {
            family,
            socket: f
                .as_ref()
                .map(|f| (f.socket.get_ref().kind, f.socket.get_ref().receive_buffer))
                .map_err(Clone::clone),
        };
        [status("IPv4", &self.v4), status("IPv6", &self.v6)]
    }

    /// The counters this engine updates.
    pub fn counters(&self) -> &PingCounters {
        &self.shared.counters
    }

    /// Requests waiting for their reply now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.len()
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

    /// Sends one echo request to `destination` when the pacer allows, and waits up to `wait`
    /// from its own send for its reply.
    pub async fn echo(&self, destination: Destination, wait: Duration) -> Attempt {
        let family = match self.family(destination.ip) {
            Ok(family) => family,
            Err(message) => {
                self.counters().errors.inc();
                return Attempt::SendFailed(message);
            }
        };
        self.pacer.wait().await;
        // Registered with this task's waker, which the reply wakes.
        let registration = poll_fn(|cx| {
            Poll::Ready(self.shared.in_flight.register(
                MAX_COLLISIONS,
                || {
                    let n = self.shared.requests.fetch_add(1, Ordering::Relaxed);
                    (
                        (destination.ip, n as u16),
                        self.shared.token_base.wrapping_add(n),
                    )
                },
                cx.waker(),
            ))
        })
        .await;
        let Some(registration) = registration else {
            self.counters().errors.inc();
            return Attempt::SendFailed(format!(
                "{MAX_COLLISIONS} sequence numbers in a row are in flight to {destination}"
            ));
        };
        let (_, sequence) = registration.key;
        let sent = match self.send_now(family, destination, sequence, registration.token, wait) {
            Ok(sent) => sent,
            Err(retrying) => retrying.await,
        };
        let sent_ns = match sent {
            Ok(sent_ns) => sent_ns,
            Err(err) => {
                self.counters().errors.inc();
                return Attempt::SendFailed(err.to_string());
            }
        };
        self.counters().sent.inc();
        match self.deadlines.limit(wait, registration.arrival()).await {
            Err(_) => Attempt::NoReply,
            Ok(arrival) => self.outcome(destination, sequence, sent_ns, arrival),
        }
    }

    /// Sends the echo request at once: `Ok` with the result (the `CLOCK_REALTIME` read just
    /// before the `sendto`), or, when the kernel was out of buffer space, `Err` with the boxed
    /// retries to await. Not async itself, so the request, its address and the retries' timer
    /// are no part of the future of every ping: 10,000 of those are alive at once at the top
    /// of a second.
    fn send_now<'a>(
        &'a self,
        family: &'a Family,
        destination: Destination,
        sequence: u16,
        token: u64,
        wait: Duration,
    ) -> Result<io::Result<i64>, BoxFuture<'a, io::Result<i64>>> {
        let mut request = [0u8; ECHO_REQUEST_LEN];
        packet::write_echo_request(
            &mut request,
            destination.ip.is_ipv6(),
            self.shared.identifier,
            sequence,
            token,
        );
        let to = socket_address(destination.ip, destination.scope_id);
        match family.socket.get_ref().timed_send(&request, &to) {
            (sent_ns, Ok(_)) => Ok(Ok(sent_ns)),
            (_, Err(err)) if is_transient_send_error(&err) => Err(Box::pin(async move {
                self.send_again(family, &request, &to, wait, err).await
            })),
            (_, Err(err)) => Ok(Err(err)),
        }
    }

    /// Sends the request again after a first send failed because the kernel was out of buffer
    /// space, pausing briefly before each try. Returns the `CLOCK_REALTIME` read immediately
    /// before the `sendto` that succeeded.
    async fn send_again(
        &self,
        family: &Family,
        request: &[u8],
        to: &SockAddr,
        wait: Duration,
        first_error: io::Error,
    ) -> io::Result<i64> {
        let socket = family.socket.get_ref();
        let started = Instant::now();
        let mut error = first_error;
        for _ in 0..SEND_RETRIES {
            if !is_transient_send_error(&error) || started.elapsed() + SEND_RETRY_PAUSE >= wait {
                break;
            }
            tokio::time::sleep(SEND_RETRY_PAUSE).await;
            match socket.timed_send(request, to) {
                (sent_ns, Ok(_)) => return Ok(sent_ns),
                (_, Err(err)) => error = err,
            }
        }
        Err(error)
    }

    fn outcome(
        &self,
        destination: Destination,
        sequence: u16,
        sent_ns: i64,
        arrival: Arrival,
    ) -> Attempt {
        match arrival {
            Arrival::Reply { kernel_time_ns } => {
                self.counters().replies.inc();
                match kernel_time_ns.map(|received| received - sent_ns) {
                    Some(rtt_ns) if rtt_ns > 0 => {
                        Attempt::Reply(Duration::from_nanos(rtt_ns as u64))
                    }
                    rtt_ns => {
                        self.counters().invalid_rtts.inc();
                        tracing::warn!(
                            target = %destination,
                            sequence,
                            rtt_ns,
                            "echo reply without a positive round trip (no kernel receive \
                             timestamp, or the clock was stepped): it counts as answered, its \
                             rtt is not reported"
                        );
                        Attempt::ReplyWithoutRtt
                    }
                }
            }
            Arrival::Error {
                from,
                icmp_type,
                code,
            } => {
                self.counters().errors.inc();
                let kind = packet::error_kind(destination.ip.is_ipv6(), icmp_type, code);
                Attempt::IcmpError { from, kind }
            }
        }
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        for family in [&self.v4, &self.v6].into_iter().flatten() {
            family.receiver.abort();
        }
    }
}

impl Family {
    fn open(v6: bool, config: &PingerConfig, shared: &Arc<Shared>) -> Result<Family, String> {
        let socket = IcmpSocket::open(v6, config.receive_buffer)?;
        // SAFETY: the descriptor is the socket2 `Socket` owned by the `IcmpSocket`, which the
        // `AsyncFd` owns in turn; it stays open and is never replaced while registered.
        let registered = unsafe {
            AsyncFd::register_with_interest(socket, Interest::READABLE | Interest::ERROR)
        };
        let socket = Arc::new(registered.map_err(|e| e.to_string())?);
        let receiver = tokio::spawn(receive_loop(socket.clone(), shared.clone()));
        Ok(Family { socket, receiver })
    }
}

/// Reads the socket in batches whenever it is readable, and its error queue whenever the
/// kernel queued an ICMP error there, and hands each packet to its waiter.
async fn receive_loop(socket: Arc<AsyncFd<IcmpSocket>>, shared: Arc<Shared>) {
    let mut batch = Batch::default();
    let family = if socket.get_ref().v6 { "IPv6" } else { "IPv4" };
    let fd = socket.get_ref().as_raw_fd();
    loop {
        let mut ready = match socket.ready(Interest::READABLE | Interest::ERROR).await {
            Ok(ready) => ready,
            Err(err) => {
                tracing::error!(
                    family,
                    "ICMP socket cannot be polled, no more replies: {err}"
                );
                return;
            }
        };
        if ready.ready().is_error() {
            shared.take_queued_errors(fd);
            ready.clear_ready_matching(Ready::ERROR);
        }
        let mut absorbed = 0;
        loop {
            match batch.receive(fd) {
                Ok(0) => {
                    ready.clear_ready_matching(Ready::READABLE);
                    break;
                }
                Ok(count) => shared.take(socket.get_ref(), &batch, count),
                // An ICMP error also sets the socket's pending error, which the next read
                // returns once; the error message itself is matched separately.
                // (Bounded, in case such an error ever came back at every read.)
                Err(err) if is_reported_icmp_error(&err) && absorbed < MAX_ABSORBED_ERRORS => {
                    absorbed += 1;
                    tracing::debug!(family, "socket error from an ICMP error message: {err}");
                }
                Err(err) => {
                    tracing::warn!(family, "ICMP receive failed: {err}");
                    ready.clear_ready_matching(Ready::READABLE);
                    tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                    break;
                }
            }
        }
    }
}

/// The errors an ICMP error message leaves pending on the socket.
fn is_reported_icmp_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::ECONNREFUSED
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EPROTO
                | libc::EMSGSIZE
                | libc::EACCES
                | libc::EPERM
                | libc::ETIMEDOUT
                | libc::EOPNOTSUPP
        )
    )
}

impl Shared {
    /// Drains a datagram socket's error queue into the waiters of the requests it names.
    fn take_queued_errors(&self, fd: RawFd) {
        loop {
            match receive_queued_error(fd) {
                Ok(None) => return,
                Ok(Some(Some(queued))) => {
                    let arrival = Arrival::Error {
                        from: queued.from.unwrap_or(queued.target),
                        icmp_type: queued.icmp_type,
                        code: queued.code,
                    };
                    let (_, unmatched) = self.in_flight.deliver([(
                        (queued.target, queued.sequence),
                        queued.token,
                        arrival,
                    )]);
                    self.counters.unmatched.inc_by(unmatched);
                }
                Ok(Some(None)) => {
                    self.counters.unmatched.inc();
                    tracing::debug!("error queue entry that is not an ICMP error ignored");
                }
                Err(err) => {
                    tracing::warn!("reading the ICMP socket's error queue failed: {err}");
                    return;
                }
            }
        }
    }

    /// Matches the packets of a batch to requests in flight, under one lock.
    fn take(&self, socket: &IcmpSocket, batch: &Batch, count: usize) {
        let mut arrivals: [Option<Identified>; BATCH] = [None; BATCH];
        for (i, arrival) in arrivals.iter_mut().enumerate().take(count) {
            *arrival = self.identify(socket, batch, i);
        }
        let identified = arrivals.iter().flatten().count() as u64;
        let (_, unmatched) = self.in_flight.deliver(arrivals.into_iter().flatten());
        let not_ours = count as u64 - identified;
        self.counters.unmatched.inc_by(unmatched + not_ours);
        if unmatched > 0 {
            tracing::debug!(
                unmatched,
                "ICMP replies or errors for no request in flight (late or duplicate)"
            );
        }
    }

    /// The request a received packet is about, if it is one of ours.
    fn identify(&self, socket: &IcmpSocket, batch: &Batch, i: usize) -> Option<Identified> {
        let packet = batch.packet(i);
        let from = packet.from?;
        if packet.truncated {
            tracing::debug!(%from, len = packet.data.len(), "truncated ICMP packet ignored");
            return None;
        }
        let raw = socket.kind == SocketKind::Raw;
        let with_ip_header = raw && !socket.v6;
        let ours = |identifier: u16| !raw || identifier == self.identifier;
        match packet::parse(packet.data, socket.v6, with_ip_header) {
            Some(Incoming::Reply {
                identifier,
                sequence,
                token,
            }) if ours(identifier) => Some((
                (from, sequence),
                Some(token),
                Arrival::Reply {
                    kernel_time_ns: packet.kernel_time_ns,
                },
            )),
            Some(Incoming::Error {
                icmp_type,
                code,
                target,
                identifier,
                sequence,
                token,
            }) if ours(identifier) => Some((
                (target, sequence),
                token,
                Arrival::Error {
                    from,
                    icmp_type,
                    code,
                },
            )),
            other => {
                tracing::debug!(%from, ?other, "ICMP packet that is not about one of our requests ignored");
                None
            }
        }
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

fn is_transient_send_error(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::EAGAIN))
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
                assert_eq!(pinger.counters().invalid_rtts.get(), 0, "kernel timestamps");
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
        assert_eq!(
            pinger.in_flight(),
            0,
            "every answered request left the table"
        );
    }

    #[tokio::test]
    async fn a_reply_stamped_at_or_before_its_send_or_without_timestamp_has_no_rtt() {
        let pinger = open();
        let sent_ns = 1_000_000_000;
        let reply = |kernel_time_ns| Arrival::Reply { kernel_time_ns };
        let at = |arrival| pinger.outcome(dest("127.0.0.1"), 1, sent_ns, arrival);
        assert_eq!(
            at(reply(Some(sent_ns + 2_500))),
            Attempt::Reply(Duration::from_nanos(2_500))
        );
        for bad in [Some(sent_ns), Some(sent_ns - 1), None] {
            assert_eq!(at(reply(bad)), Attempt::ReplyWithoutRtt, "{bad:?}");
        }
        assert_eq!(pinger.counters().invalid_rtts.get(), 3);
        assert_eq!(pinger.counters().replies.get(), 4);
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
    fn ipv4_requests_go_out_with_ip_id_0_not_a_drawn_one() {
        in_private_netns(|| {
            silence_kernel_echo();
            runtime().block_on(async {
                let pinger = open();
                let responder = Responder::start(
                    "127.0.0.3".parse().unwrap(),
                    Behaviour::Delay(Duration::ZERO),
                );
                for _ in 0..3 {
                    let attempt = pinger.echo(dest("127.0.0.3"), WAIT).await;
                    assert!(matches!(attempt, Attempt::Reply(_)), "{attempt:?}");
                }
                assert_eq!(responder.requests(), 3);
                assert_eq!(responder.zero_ip_id_requests(), 3);
            })
        });
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
                assert_eq!(pinger.in_flight(), 0, "a timed-out request left the table");
            })
        });
    }

    #[test]
    fn replies_from_another_address_or_with_another_sequence_or_token_do_not_count() {
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
                let wrong_token =
                    Responder::start("127.0.0.8".parse().unwrap(), Behaviour::WrongToken);
                let wait = Duration::from_millis(300);
                for ip in ["127.0.0.5", "127.0.0.7", "::1", "127.0.0.8"] {
                    assert_eq!(pinger.echo(dest(ip), wait).await, Attempt::NoReply, "{ip}");
                }
                assert_eq!(wrong_source.requests(), 1);
                assert_eq!(wrong_sequence.requests(), 1);
                assert_eq!(wrong_sequence_v6.requests(), 1);
                assert_eq!(wrong_token.requests(), 1);
                assert_eq!(pinger.counters().replies.get(), 0);
            })
        });
    }

    /// The unreachable-host check on the socket kind that `ping_group_range` selects.
    fn icmp_errors_are_matched_to_their_request(ping_group_range: &'static str, kind: SocketKind) {
        in_private_netns(move || {
            silence_kernel_echo();
            net_sysctl("ipv4/ping_group_range", ping_group_range);
            runtime().block_on(async {
                let pinger = open();
                for status in pinger.status() {
                    assert_eq!(status.socket.expect(status.family).0, kind);
                }
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
                // Both still work afterwards (the socket's pending error was absorbed).
                drop((_v4, _v6));
                let _answering = Responder::start(
                    "127.0.0.9".parse().unwrap(),
                    Behaviour::Delay(Duration::ZERO),
                );
                assert!(matches!(
                    pinger.echo(dest("127.0.0.9"), WAIT).await,
                    Attempt::Reply(_)
                ));
            })
        });
    }

    #[test]
    fn an_icmp_error_about_the_request_is_not_a_reply_on_raw_sockets() {
        icmp_errors_are_matched_to_their_request("1 0", SocketKind::Raw);
    }

    #[test]
    fn an_icmp_error_about_the_request_is_not_a_reply_on_datagram_sockets() {
        icmp_errors_are_matched_to_their_request("0 2147483647", SocketKind::Datagram);
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
}
