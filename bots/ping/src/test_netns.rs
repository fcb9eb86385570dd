//! Test support: a private network namespace for one test thread, and an ICMP echo responder
//! whose misbehaviour the test chooses (late, lossy, wrong sequence or token, wrong source, unreachable).
//!
//! Network namespaces and capabilities belong to a thread on Linux, and threads and processes
//! started from it inherit them; so a test runs its body on a fresh thread that first moves into
//! a new namespace, and builds its Tokio runtime there. Nothing outside that namespace changes,
//! and the namespace disappears with the thread. The tests run as root (CI does too).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs `body` on a new thread inside a new network namespace whose loopback is up.
pub fn in_private_netns<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare has no memory-safety preconditions; it affects only this thread.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {}",
            io::Error::last_os_error()
        );
        run("ip", &["link", "set", "lo", "up"]);
        body()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Runs a command (inheriting the calling thread's namespace) and fails the test if it fails.
pub fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
    assert!(status.success(), "{program} {args:?}: {status}");
}

/// Writes a sysctl of the calling thread's network namespace, e.g. `ipv4/icmp_echo_ignore_all`.
pub fn net_sysctl(name: &str, value: &str) {
    let path = format!("/proc/sys/net/{name}");
    std::fs::write(&path, value).unwrap_or_else(|e| panic!("write {path}: {e}"));
}

/// Makes the namespace's kernel stop answering echo requests, so only a [`Responder`] answers.
pub fn silence_kernel_echo() {
    net_sysctl("ipv4/icmp_echo_ignore_all", "1");
    net_sysctl("ipv6/icmp/echo_ignore_all", "1");
}

/// A Tokio runtime whose worker threads live in the calling thread's namespace.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Removes CAP_NET_RAW from the calling thread (and the threads it starts).
pub fn drop_cap_net_raw() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_RAW: u32 = 13;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: header and data are the layouts the capget/capset syscalls expect (version 3).
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
            0
        );
        data[0].effective &= !(1 << CAP_NET_RAW);
        data[0].permitted &= !(1 << CAP_NET_RAW);
        assert_eq!(
            libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()),
            0,
            "capset: {}",
            io::Error::last_os_error()
        );
    }
}

/// How a [`Responder`] answers the echo requests addressed to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behaviour {
    /// Answers every request correctly after this delay.
    Delay(Duration),
    /// Answers only every `n`-th request (the n-th, 2n-th, ...), at once.
    AnswerEvery(u32),
    /// Never answers; only counts.
    Silent,
    /// Answers with the sequence number plus one.
    WrongSequence,
    /// Answers with the request's token (the first payload bytes) changed.
    WrongToken,
    /// Answers correctly, but from this other local address.
    FromAddress(IpAddr),
    /// Answers with ICMP "host unreachable" quoting the request.
    Unreachable,
}

/// A user-space ICMP echo peer on one local address of the namespace. Stops when dropped.
pub struct Responder {
    requests: Arc<AtomicU32>,
    /// IPv4 requests with IP ID 0 (what the kernel gives a datagram sent with `IP_PMTUDISC_DO`).
    zero_ip_id: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Responder {
    /// Starts answering requests to `address` (which must be local to the namespace).
    pub fn start(address: IpAddr, behaviour: Behaviour) -> Responder {
        let listener = raw_icmp_socket(address);
        let sender = match behaviour {
            Behaviour::FromAddress(other) => raw_icmp_socket(other),
            _ => raw_icmp_socket(address),
        };
        set_receive_timeout(&listener, Duration::from_millis(20));
        let requests = Arc::new(AtomicU32::new(0));
        let zero_ip_id = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (to_sender, replies) = mpsc::channel::<(Instant, Vec<u8>, IpAddr)>();

        let listen = {
            let requests = requests.clone();
            let zero_ip_id = zero_ip_id.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Some((len, from)) = recv_from(&listener, &mut buf) else {
                        continue;
                    };
                    let Some(request) = echo_request(&buf[..len], address) else {
                        continue;
                    };
                    if address.is_ipv4() && buf[4..6] == [0, 0] {
                        zero_ip_id.fetch_add(1, Ordering::SeqCst);
                    }
                    let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
                    let reply = match behaviour {
                        Behaviour::Silent => continue,
                        Behaviour::AnswerEvery(k) if n % k != 0 => continue,
                        Behaviour::Unreachable => unreachable_for(&buf[..len], address),
                        Behaviour::WrongSequence => echo_reply(request, address, 1, 0),
                        Behaviour::WrongToken => echo_reply(request, address, 0, 0xff),
                        _ => echo_reply(request, address, 0, 0),
                    };
                    let due = match behaviour {
                        Behaviour::Delay(delay) => Instant::now() + delay,
                        _ => Instant::now(),
                    };
                    if to_sender.send((due, reply, from)).is_err() {
                        return;
                    }
                }
            })
        };
        let send = std::thread::spawn(move || {
            for (due, reply, to) in replies {
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                send_to(&sender, &reply, to);
            }
        });
        Responder {
            requests,
            zero_ip_id,
            stop,
            threads: vec![listen, send],
        }
    }

    /// Echo requests that reached this responder so far.
    pub fn requests(&self) -> u32 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Of those, IPv4 requests with IP ID 0.
    pub fn zero_ip_id_requests(&self) -> u32 {
        self.zero_ip_id.load(Ordering::SeqCst)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The ICMP part of an echo request to `address` in what a raw socket read (IPv4 includes the
/// IP header, IPv6 does not).
fn echo_request(packet: &[u8], address: IpAddr) -> Option<&[u8]> {
    match address {
        IpAddr::V4(v4) => {
            let ihl = usize::from(packet.first()? & 0x0f) * 4;
            let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            let dst = Ipv4Addr::from(dst);
            let icmp = packet.get(ihl..)?;
            (dst == v4 && icmp.first() == Some(&8) && icmp.len() >= 8).then_some(icmp)
        }
        IpAddr::V6(_) => (packet.first() == Some(&128) && packet.len() >= 8).then_some(packet),
    }
}

/// The echo reply to `request`, its sequence number moved by `sequence_offset` and its first
/// payload byte xor-ed with `token_change`.
fn echo_reply(request: &[u8], address: IpAddr, sequence_offset: u16, token_change: u8) -> Vec<u8> {
    let mut reply = request.to_vec();
    reply[0] = if address.is_ipv4() { 0 } else { 129 };
    let seq = u16::from_be_bytes([reply[6], reply[7]]).wrapping_add(sequence_offset);
    reply[6..8].copy_from_slice(&seq.to_be_bytes());
    if let Some(first) = reply.get_mut(8) {
        *first ^= token_change;
    }
    finish_checksum(&mut reply, address);
    reply
}

/// ICMP destination unreachable / host unreachable quoting the request, as a router would send.
fn unreachable_for(packet: &[u8], address: IpAddr) -> Vec<u8> {
    let mut message = match address {
        IpAddr::V4(_) => vec![3, 1, 0, 0, 0, 0, 0, 0],
        IpAddr::V6(_) => vec![1, 3, 0, 0, 0, 0, 0, 0],
    };
    match address {
        IpAddr::V4(_) => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            message.extend_from_slice(&packet[..(ihl + 8).min(packet.len())]);
        }
        IpAddr::V6(v6) => {
            // The raw IPv6 socket gave us no IP header: quote a rebuilt one.
            let mut header = vec![0x60, 0, 0, 0];
            header.extend_from_slice(&(packet.len() as u16).to_be_bytes());
            header.extend_from_slice(&[58, 64]);
            header.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
            header.extend_from_slice(&v6.octets());
            message.extend_from_slice(&header);
            message.extend_from_slice(&packet[..8]);
        }
    }
    finish_checksum(&mut message, address);
    message
}

/// IPv4 ICMP carries its own checksum; the kernel fills in the ICMPv6 one.
fn finish_checksum(message: &mut [u8], address: IpAddr) {
    message[2] = 0;
    message[3] = 0;
    if address.is_ipv4() {
        let mut sum: u32 = message
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        message[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
}

fn raw_icmp_socket(address: IpAddr) -> OwnedFd {
    let (domain, protocol) = match address {
        IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP),
        IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6),
    };
    // SAFETY: plain socket creation; the descriptor is owned by the returned OwnedFd.
    let fd = unsafe { libc::socket(domain, libc::SOCK_RAW, protocol) };
    assert!(fd >= 0, "raw socket: {}", io::Error::last_os_error());
    // SAFETY: fd is a freshly created descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let (storage, len) = sockaddr(address);
    // SAFETY: storage holds a valid sockaddr of `len` bytes for the address family.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    assert_eq!(rc, 0, "bind {address}: {}", io::Error::last_os_error());
    socket
}

fn set_receive_timeout(socket: &OwnedFd, timeout: Duration) {
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: timeout.as_micros() as libc::suseconds_t,
    };
    // SAFETY: tv is a valid timeval for SO_RCVTIMEO.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
}

fn sockaddr(address: IpAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data for which all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match address {
        IpAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        IpAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = v6.octets();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn recv_from(socket: &OwnedFd, buf: &mut [u8]) -> Option<(usize, IpAddr)> {
    // SAFETY: as in `sockaddr`.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: buf and storage are valid for writes of the lengths passed.
    let n = unsafe {
        libc::recvfrom(
            socket.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if n < 0 {
        return None;
    }
    let from = match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for an AF_INET socket.
            let sin = unsafe { &*(&storage as *const _ as *const libc::sockaddr_in) };
            IpAddr::V4(Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()))
        }
        _ => {
            // SAFETY: the kernel wrote a sockaddr_in6 for an AF_INET6 socket.
            let sin6 = unsafe { &*(&storage as *const _ as *const libc::sockaddr_in6) };
            IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
        }
    };
    Some((n as usize, from))
}

fn send_to(socket: &OwnedFd, message: &[u8], to: IpAddr) {
    let (storage, len) = sockaddr(to);
    // SAFETY: message and storage are valid for reads of the lengths passed.
    let n = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            0,
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    assert!(
        n >= 0,
        "responder sendto {to}: {}",
        io::Error::last_os_error()
    );
}
