//! The UDP listener: sockets on NETFLOW_PORT for IPv4 and IPv6, receive threads that take
//! datagrams in batches (`recvmmsg`), decode them and add the flows to their live aggregate
//! (exporters that are entities) or to their holding area (the others, until the next job
//! refresh attributes or discards them).
//!
//! - The exporter is the datagram's source address (IPv4-mapped addresses unmapped).
//! - Each thread owns a socket per address family; with more than one thread the sockets share
//!   the port through SO_REUSEPORT, and the kernel keeps each exporter on one socket (it hashes
//!   the source address and port), so each exporter's templates stay with one decoder.
//! - The receive buffer is raised (SO_RCVBUFFORCE as root, else SO_RCVBUF up to
//!   net.core.rmem_max); each socket's kernel drop counter (the one /proc/net/udp shows, read
//!   with SO_MEMINFO) is added to `netflow_kernel_drops`.

use crate::decode::{Decoder, DecoderLimits};
use crate::flow::{canonical_ip, Flow, FlowSink};
use crate::intake::{Intake, HELD_MAX_EXPORTERS};
use crate::templates::{self, TemplatePersister};
use collector::socket::ReceiveBatch;
use collector::Store;
use rustc_hash::{FxHashMap, FxHashSet};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::mem::size_of_val;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Datagrams taken per `recvmmsg` call.
const BATCH: usize = 32;
/// Room for one datagram: the largest UDP payload.
const SLOT: usize = 65_536;
/// How long a receive thread waits for datagrams before looking at the stop flag.
const POLL_MS: i32 = 100;
/// Template writes happen at most this often per thread.
const TEMPLATE_WRITE_EVERY: Duration = Duration::from_secs(1);
/// A decode problem of one exporter is logged at most this often.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// How to listen.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// UDP port (0: any free port, for tests).
    pub port: u16,
    /// Receive threads (each with its own sockets).
    pub threads: usize,
    /// Socket receive buffer in bytes.
    pub receive_buffer: usize,
    /// Listen on IPv6 too (skipped with a warning where the host has no IPv6).
    pub ipv6: bool,
    /// Decoder bounds.
    pub limits: DecoderLimits,
}

/// Sockets bound and ready; nothing received yet.
pub struct BoundListener {
    sockets: Vec<Vec<Socket>>,
    port: u16,
    limits: DecoderLimits,
}

/// Receive threads running.
pub struct RunningListener {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

fn udp_socket(domain: Domain, reuse_port: bool, receive_buffer: usize) -> std::io::Result<Socket> {
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if domain == Domain::IPV6 {
        socket.set_only_v6(true)?;
    }
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    collector::socket::raise_receive_buffer(&socket, receive_buffer, "NetFlow UDP socket");
    if kernel_drops(socket.as_raw_fd()).is_none() {
        tracing::warn!(
            "SO_MEMINFO unavailable ({}); kernel drops will not be counted",
            std::io::Error::last_os_error()
        );
    }
    Ok(socket)
}

/// `SO_MEMINFO` from asm-generic/socket.h (the libc crate lacks it).
const SO_MEMINFO: libc::c_int = 55;

/// Datagrams the kernel dropped on this socket so far (its receive buffer was full).
fn kernel_drops(fd: libc::c_int) -> Option<u32> {
    let mut info = [0u32; libc::SK_MEMINFO_DROPS as usize + 1];
    let mut len = size_of_val(&info) as libc::socklen_t;
    // SAFETY: getsockopt with a valid fd, a buffer of `len` bytes and its length.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    (rc == 0 && len as usize >= size_of_val(&info)).then(|| info[libc::SK_MEMINFO_DROPS as usize])
}

/// Fails, naming the port, when another process already receives on it. The bot's own threads
/// share the port through SO_REUSEPORT, which would also let a second netflowbot (or any program
/// setting it) join silently and take part of the traffic; a socket bound without the option
/// finds any holder.
pub fn ensure_port_free(port: u16, ipv6: bool) -> Result<(), String> {
    if port == 0 {
        return Ok(());
    }
    let mut families = vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)];
    if ipv6 {
        families.push(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
    }
    for address in families {
        let domain = Domain::for_address(address);
        let Ok(probe) = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)) else {
            continue;
        };
        if domain == Domain::IPV6 && probe.set_only_v6(true).is_err() {
            continue;
        }
        if let Err(e) = probe.bind(&SockAddr::from(address)) {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                return Err(format!(
                    "UDP port {port} is already in use by another process (another netflowbot?); \
                     two receivers on one port would each get part of the flows: stop the other \
                     one or set NETFLOW_PORT"
                ));
            }
        }
    }
    Ok(())
}

/// Binds the sockets: one IPv4 (and, if wanted and possible, one IPv6) socket per thread.
pub fn bind(config: &ListenerConfig) -> Result<BoundListener, String> {
    let threads = config.threads.max(1);
    let reuse_port = threads > 1;
    let mut sockets: Vec<Vec<Socket>> = Vec::with_capacity(threads);
    let mut port = config.port;
    for _ in 0..threads {
        let v4 = udp_socket(Domain::IPV4, reuse_port, config.receive_buffer)
            .map_err(|e| format!("cannot create a UDP socket: {e}"))?;
        let address = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        v4.bind(&SockAddr::from(address))
            .map_err(|e| format!("cannot listen on UDP port {port}: {e}"))?;
        if port == 0 {
            port = v4
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .map(|a| a.port())
                .ok_or("cannot read the port the socket was given")?;
        }
        sockets.push(vec![v4]);
    }
    if config.ipv6 {
        let mut v6_sockets = Vec::with_capacity(threads);
        for _ in 0..threads {
            let bound = udp_socket(Domain::IPV6, reuse_port, config.receive_buffer).and_then(|s| {
                let address = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
                s.bind(&SockAddr::from(address)).map(|_| s)
            });
            match bound {
                Ok(s) => v6_sockets.push(s),
                Err(e) => {
                    tracing::warn!("not listening on IPv6 (UDP port {port}): {e}");
                    v6_sockets.clear();
                    break;
                }
            }
        }
        for (thread, s) in v6_sockets.into_iter().enumerate() {
            sockets[thread].push(s);
        }
    }
    for thread in &sockets {
        for s in thread {
            s.set_nonblocking(true)
                .map_err(|e| format!("cannot make the socket non-blocking: {e}"))?;
        }
    }
    Ok(BoundListener {
        sockets,
        port,
        limits: config.limits.clone(),
    })
}

impl BoundListener {
    /// The UDP port the sockets listen on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts one receive thread per socket group. Templates stored by an earlier run are
    /// loaded into every thread's decoder first; new ones are written back to `store`.
    pub fn start(
        self,
        intake: Arc<Intake>,
        store: Option<Store>,
    ) -> Result<RunningListener, String> {
        let stored = match &store {
            Some(db) => match templates::load(db.database()) {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::warn!("cannot read stored NetFlow templates, starting without: {e}");
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        if !stored.is_empty() {
            tracing::info!(
                "{} NetFlow templates loaded from the data directory",
                stored.len()
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (index, sockets) in self.sockets.into_iter().enumerate() {
            let mut decoder = Decoder::new(self.limits.clone());
            for (key, def) in &stored {
                decoder.install_template(*key, def.clone());
            }
            let receiver = Receiver {
                index,
                sockets: sockets.into_iter().map(|s| (s, 0)).collect(),
                decoder,
                persister: TemplatePersister::new(TEMPLATE_WRITE_EVERY),
                intake: intake.clone(),
                store: store.clone(),
                aggregated: (u64::MAX, Arc::default()),
                seen: FxHashSet::default(),
                errors: FxHashMap::default(),
            };
            let stop = stop.clone();
            let handle = std::thread::Builder::new()
                .name(format!("netflow-rx-{index}"))
                .spawn(move || receiver.run(&stop))
                .map_err(|e| format!("cannot start a receive thread: {e}"))?;
            threads.push(handle);
        }
        Ok(RunningListener { stop, threads })
    }
}

impl RunningListener {
    /// Stops the receive threads (within about 100 ms) and waits for them; pending templates
    /// are written first.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Counts the records of exporters that are not aggregated and cannot be held.
struct Discard(u64);

impl FlowSink for Discard {
    fn flow(&mut self, _flow: &Flow) {
        self.0 += 1;
    }
}

/// Passes flows on to another sink, counting them.
struct Counted<S>(S, u64);

impl<S: FlowSink> FlowSink for Counted<S> {
    fn flow(&mut self, flow: &Flow) {
        self.1 += 1;
        self.0.flow(flow);
    }
}

/// One receive thread.
struct Receiver {
    index: usize,
    /// Sockets with the last value of their kernel drop counter.
    sockets: Vec<(Socket, u32)>,
    decoder: Decoder,
    persister: TemplatePersister,
    intake: Arc<Intake>,
    store: Option<Store>,
    /// The aggregated exporters, with the generation they were read at.
    aggregated: (u64, Arc<FxHashSet<IpAddr>>),
    /// Exporters already reported to the intake.
    seen: FxHashSet<IpAddr>,
    /// Per exporter: when a decode problem was last logged, and how many since.
    errors: FxHashMap<IpAddr, (Instant, u64)>,
}

impl Receiver {
    fn run(mut self, stop: &AtomicBool) {
        let mut batch = ReceiveBatch::new(BATCH, SLOT, 0);
        let mut fds: Vec<libc::pollfd> = self
            .sockets
            .iter()
            .map(|(s, _)| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        while !stop.load(Ordering::Acquire) {
            // SAFETY: fds is a valid array of pollfd of the given length.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, POLL_MS) };
            if ready < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!("poll on the NetFlow sockets failed: {e}");
                    std::thread::sleep(Duration::from_millis(POLL_MS as u64));
                }
                continue;
            }
            for pollfd in &fds {
                if pollfd.revents == 0 {
                    continue;
                }
                // Drain the socket, but let the other one have its turn after a while.
                for _ in 0..64 {
                    match batch.receive(pollfd.fd) {
                        Ok(0) => break,
                        Ok(n) => {
                            self.process(&batch, n);
                            if n < BATCH {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::error!("receiving NetFlow datagrams failed: {e}");
                            break;
                        }
                    }
                }
            }
            self.housekeeping(false);
        }
        self.housekeeping(true);
    }

    fn refresh_aggregated(&mut self) {
        let generation = self.intake.aggregated_generation();
        if generation != self.aggregated.0 {
            self.aggregated = (generation, self.intake.aggregated());
        }
    }

    fn process(&mut self, batch: &ReceiveBatch, n: usize) {
        self.refresh_aggregated();
        let now = Instant::now();
        let intake = self.intake.clone();
        let mut live = intake.live(self.index);
        let mut unattributed = 0u64;
        let mut held_records = 0u64;
        let mut held_folded = 0u64;
        for i in 0..n {
            let Some(exporter) = batch.source(i).map(canonical_ip) else {
                continue;
            };
            if batch.truncated(i) {
                intake.counters.truncated_datagrams.inc();
                self.log_error(exporter, now, "datagram larger than 64 KiB, dropped");
                continue;
            }
            let datagram = batch.data(i);
            let result = if self.aggregated.1.contains(&exporter) {
                let mut sink = live.exporter_sink(exporter);
                self.decoder.decode(exporter, datagram, now, &mut sink)
            } else {
                let mut held = intake.held(self.index);
                if held.exporter(&exporter).is_some() || held.exporter_count() < HELD_MAX_EXPORTERS
                {
                    let mut sink = Counted(held.exporter_sink(exporter), 0);
                    let result = self.decoder.decode(exporter, datagram, now, &mut sink);
                    held_records += sink.1;
                    drop(sink);
                    held_folded += held.enforce_limit();
                    result
                } else {
                    let mut sink = Discard(0);
                    let result = self.decoder.decode(exporter, datagram, now, &mut sink);
                    unattributed += sink.0;
                    result
                }
            };
            match result {
                Ok(()) => {
                    if !self.seen.contains(&exporter)
                        && self.seen.len() < crate::intake::MAX_EXPORTERS
                    {
                        self.seen.insert(exporter);
                        intake.note_exporter(exporter);
                    }
                }
                Err(e) => {
                    self.log_error(exporter, now, &format!("{e}; rest of the datagram dropped"))
                }
            }
        }
        let folded = live.enforce_limit();
        drop(live);
        intake.counters.keys_folded.inc_by(folded + held_folded);
        intake.counters.records_unattributed.inc_by(unattributed);
        intake.counters.records_held.inc_by(held_records);
        let stats = self.decoder.take_stats();
        intake.add_records(stats.records);
        intake.counters.add_decode(&stats);
    }

    fn log_error(&mut self, exporter: IpAddr, now: Instant, message: &str) {
        if self.errors.len() > 4096 {
            self.errors.clear();
        }
        let entry = self.errors.entry(exporter).or_insert((now, 0));
        if entry.1 == 0 || now.duration_since(entry.0) >= ERROR_LOG_EVERY {
            let suppressed = entry.1.saturating_sub(1);
            tracing::warn!(
                %exporter,
                "bad NetFlow datagram: {message} ({suppressed} more since the last report)"
            );
            *entry = (now, 1);
        } else {
            entry.1 += 1;
        }
    }

    /// Publishes counts and writes learnt templates (at most once a second unless `last`).
    fn housekeeping(&mut self, last: bool) {
        for (socket, seen) in &mut self.sockets {
            if let Some(drops) = kernel_drops(socket.as_raw_fd()) {
                let new = drops.wrapping_sub(*seen);
                if new > 0 && new < 1 << 31 {
                    self.intake.counters.kernel_drops.inc_by(u64::from(new));
                }
                *seen = drops;
            }
        }
        let stats = self.decoder.take_stats();
        if stats != Default::default() {
            self.intake.add_records(stats.records);
            self.intake.counters.add_decode(&stats);
        }
        let changes = self.decoder.take_template_changes();
        if !changes.is_empty() {
            self.persister.record(changes);
        }
        if let Some(store) = &self.store {
            if self.persister.has_pending() {
                match self.persister.flush(store.database(), Instant::now(), last) {
                    Ok(0) => {}
                    Ok(written) => tracing::debug!("{written} NetFlow templates stored"),
                    Err(e) => {
                        self.intake.counters.template_store_errors.inc();
                        tracing::warn!("cannot store NetFlow templates (kept for later): {e}");
                    }
                }
            }
        }
    }
}
