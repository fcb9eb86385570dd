//! NetFlow benchmark: for v5, v9 and IPFIX,
//! 1. decode + aggregate from memory on one pinned core (records/s), with `netflow_parser`'s
//!    decode-only rate for reference;
//! 2. the highest UDP rate over loopback that the real `netflowbot` binary, pinned to one core,
//!    takes with zero kernel drops and zero decode loss (records counted on its /metrics page),
//!    with its CPU seconds per million records and its RSS;
//! 3. the same search for `nfcapd` (Debian package nfdump) on the same packets, and the ratio.
//!
//! Run: `cargo build --release -p netflowbot -p benches && target/release/netflowbench`
//! (`--help` for options). The bot binary is looked up next to this one.

use benches::counting_backend::{AccountConfigs, CountingBackend, BOT_ID, TOKEN};
use benches::measure::{
    free_tcp_port, free_udp_port, http_get, pin_to, process_cpu, process_memory_kib,
    prometheus_value, spawn_pinned, thread_cpu, ScratchDir,
};
use netflowbot::aggregate::Aggregate;
use netflowbot::decode::Decoder;
use netflowbot::reference::ReferenceDecoder;
use serde_json::json;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Core the receiver (bot or nfcapd) is pinned to; the sender uses the other one.
const RECEIVER_CPU: usize = 0;
const SENDER_CPU: usize = 1;
/// Distinct data datagrams cycled through (about 135,000 records), so keys vary like real
/// traffic.
const POOL: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Version {
    V5,
    V9,
    Ipfix,
}

impl Version {
    fn name(self) -> &'static str {
        match self {
            Version::V5 => "v5",
            Version::V9 => "v9",
            Version::Ipfix => "IPFIX",
        }
    }

    fn records_per_datagram(self) -> usize {
        match self {
            Version::V5 => 30,
            _ => 33,
        }
    }
}

struct Options {
    versions: Vec<Version>,
    step_seconds: f64,
    udp: bool,
    nfcapd: bool,
    memory_seconds: f64,
    /// Socket receive buffer asked for by both receivers.
    buffer: usize,
    bot: bool,
    mix: Mix,
    /// The bot in Grafolean mode against a counting backend instead of standalone.
    grafolean: bool,
}

fn parse_options() -> Options {
    let mut o = Options {
        versions: vec![Version::V5, Version::V9, Version::Ipfix],
        step_seconds: 2.0,
        udp: true,
        nfcapd: true,
        memory_seconds: 2.0,
        buffer: rmem_max(),
        bot: true,
        mix: Mix::Zipf,
        grafolean: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--versions" => {
                o.versions = args
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|v| match v {
                        "v5" => Some(Version::V5),
                        "v9" => Some(Version::V9),
                        "ipfix" => Some(Version::Ipfix),
                        _ => None,
                    })
                    .collect()
            }
            "--step-seconds" => {
                o.step_seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(2.0)
            }
            "--memory-seconds" => {
                o.memory_seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(2.0)
            }
            "--buffer" => o.buffer = args.next().and_then(|s| s.parse().ok()).unwrap_or(o.buffer),
            "--memory-only" => o.udp = false,
            "--no-bot" => o.bot = false,
            "--uniform" => o.mix = Mix::Uniform,
            "--no-nfcapd" => o.nfcapd = false,
            "--grafolean" => o.grafolean = true,
            _ => {
                println!(
                    "usage: netflowbench [--versions v5,v9,ipfix] [--step-seconds S] \
                     [--memory-seconds S] [--buffer BYTES] [--memory-only] [--no-bot] [--no-nfcapd] [--uniform] [--grafolean]"
                );
                std::process::exit(2);
            }
        }
    }
    o
}

/// net.core.rmem_max: the largest buffer nfcapd can get (it asks with SO_RCVBUF), so by default
/// both receivers get this same buffer (the bot could force a larger one as root).
fn rmem_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(212_992)
}

/// A small deterministic generator (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Samples ranks 0..n with probability proportional to 1/(rank+1): the heavy-tailed popularity
/// of hosts and ports in real traffic.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Zipf {
        let mut total = 0.0;
        let cdf = (0..n)
            .map(|rank| {
                total += 1.0 / (rank as f64 + 1.0);
                total
            })
            .collect();
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let total = self.cdf.last().copied().unwrap_or(1.0);
        let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// The traffic mix.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mix {
    /// Hosts and ports drawn from Zipf distributions (50,000 sources, 50,000 destinations,
    /// 1,000 ports): a few talk a lot, most little, as in real networks.
    Zipf,
    /// Every host and port equally likely (20,000 x 20,000 hosts): a stress case for the
    /// aggregation's memory bound, with no locality at all.
    Uniform,
}

/// One synthetic flow: mostly TCP, 8 interfaces, both directions.
struct Synthetic {
    src: [u8; 4],
    dst: [u8; 4],
    in_if: u32,
    out_if: u32,
    packets: u32,
    bytes: u32,
    src_port: u16,
    dst_port: u16,
    protocol: u8,
    direction: u8,
}

struct Generator {
    rng: Rng,
    mix: Mix,
    hosts: Zipf,
    ports: Zipf,
}

impl Generator {
    fn new(mix: Mix) -> Generator {
        Generator {
            rng: Rng(0x9e37_79b9_7f4a_7c15),
            mix,
            hosts: Zipf::new(50_000),
            ports: Zipf::new(1_000),
        }
    }

    fn host(&mut self, net: u8) -> [u8; 4] {
        let h = match self.mix {
            Mix::Zipf => self.hosts.sample(&mut self.rng) as u32,
            Mix::Uniform => self.rng.below(20_000) as u32,
        };
        [net, (h >> 16) as u8, (h >> 8) as u8, h as u8]
    }

    fn flow(&mut self) -> Synthetic {
        let src = self.host(10);
        let dst = self.host(172);
        let rng = &mut self.rng;
        let dst_port = match self.mix {
            Mix::Zipf => self.ports.sample(rng) as u16 + 1,
            Mix::Uniform => rng.below(1000) as u16 + 1,
        };
        let protocol = match rng.below(20) {
            0 => 1,
            1..=5 => 17,
            _ => 6,
        };
        let packets = 1 + rng.below(100) as u32;
        Synthetic {
            src,
            dst,
            in_if: 1 + rng.below(8) as u32,
            out_if: 1 + rng.below(8) as u32,
            packets,
            bytes: packets * (40 + rng.below(1460) as u32),
            src_port: 1024 + rng.below(60000) as u16,
            dst_port,
            protocol,
            direction: rng.below(2) as u8,
        }
    }
}

/// softflowd's IPv4 template (so the layout is a real exporter's).
const TEMPLATE: [(u16, u16); 16] = [
    (8, 4),
    (12, 4),
    (22, 4),
    (21, 4),
    (1, 4),
    (2, 4),
    (10, 4),
    (14, 4),
    (61, 1),
    (136, 1),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 1),
    (60, 1),
    (5, 1),
];
const TEMPLATE_ID: u16 = 1024;
const DOMAIN: u32 = 1;

fn template_record() -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&TEMPLATE_ID.to_be_bytes());
    r.extend_from_slice(&(TEMPLATE.len() as u16).to_be_bytes());
    for (id, len) in TEMPLATE {
        r.extend_from_slice(&id.to_be_bytes());
        r.extend_from_slice(&len.to_be_bytes());
    }
    r
}

fn data_record(f: &Synthetic) -> Vec<u8> {
    let mut r = Vec::with_capacity(42);
    r.extend_from_slice(&f.src);
    r.extend_from_slice(&f.dst);
    r.extend_from_slice(&1000u32.to_be_bytes());
    r.extend_from_slice(&2000u32.to_be_bytes());
    r.extend_from_slice(&f.bytes.to_be_bytes());
    r.extend_from_slice(&f.packets.to_be_bytes());
    r.extend_from_slice(&f.in_if.to_be_bytes());
    r.extend_from_slice(&f.out_if.to_be_bytes());
    r.push(f.direction);
    r.push(2);
    r.extend_from_slice(&f.src_port.to_be_bytes());
    r.extend_from_slice(&f.dst_port.to_be_bytes());
    r.push(f.protocol);
    r.push(0x18);
    r.push(4);
    r.push(0);
    r
}

fn set(id: u16, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 4);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&((content.len() + 4) as u16).to_be_bytes());
    out.extend_from_slice(content);
    out
}

fn header(version: Version, body_len: usize, records: usize) -> Vec<u8> {
    let mut h = Vec::new();
    match version {
        Version::V5 => {
            h.extend_from_slice(&5u16.to_be_bytes());
            h.extend_from_slice(&(records as u16).to_be_bytes());
            h.extend_from_slice(&[0; 20]);
        }
        Version::V9 => {
            h.extend_from_slice(&9u16.to_be_bytes());
            h.extend_from_slice(&(records as u16).to_be_bytes());
            h.extend_from_slice(&[0; 12]);
            h.extend_from_slice(&DOMAIN.to_be_bytes());
        }
        Version::Ipfix => {
            h.extend_from_slice(&10u16.to_be_bytes());
            h.extend_from_slice(&((16 + body_len) as u16).to_be_bytes());
            h.extend_from_slice(&[0; 8]);
            h.extend_from_slice(&DOMAIN.to_be_bytes());
        }
    }
    h
}

/// The export of one version: an optional template datagram and the pool of data datagrams.
struct Export {
    version: Version,
    template: Option<Vec<u8>>,
    data: Vec<Vec<u8>>,
}

fn export(version: Version, mix: Mix) -> Export {
    let mut generator = Generator::new(mix);
    let n = version.records_per_datagram();
    let data = (0..POOL)
        .map(|_| {
            let flows: Vec<Synthetic> = (0..n).map(|_| generator.flow()).collect();
            match version {
                Version::V5 => {
                    let mut d = header(version, n * 48, n);
                    for f in &flows {
                        d.extend_from_slice(&f.src);
                        d.extend_from_slice(&f.dst);
                        d.extend_from_slice(&[0; 4]);
                        d.extend_from_slice(&(f.in_if as u16).to_be_bytes());
                        d.extend_from_slice(&(f.out_if as u16).to_be_bytes());
                        d.extend_from_slice(&f.packets.to_be_bytes());
                        d.extend_from_slice(&f.bytes.to_be_bytes());
                        d.extend_from_slice(&1000u32.to_be_bytes());
                        d.extend_from_slice(&2000u32.to_be_bytes());
                        d.extend_from_slice(&f.src_port.to_be_bytes());
                        d.extend_from_slice(&f.dst_port.to_be_bytes());
                        d.extend_from_slice(&[0, 0x18, f.protocol, 0, 0, 0, 0, 0, 24, 24, 0, 0]);
                    }
                    d
                }
                _ => {
                    let records: Vec<u8> = flows.iter().flat_map(data_record).collect();
                    let body = set(TEMPLATE_ID, &records);
                    let mut d = header(version, body.len(), n);
                    d.extend_from_slice(&body);
                    d
                }
            }
        })
        .collect();
    let template = match version {
        Version::V5 => None,
        Version::V9 => {
            let body = set(0, &template_record());
            let mut d = header(version, body.len(), 1);
            d.extend_from_slice(&body);
            Some(d)
        }
        Version::Ipfix => {
            let body = set(2, &template_record());
            let mut d = header(version, body.len(), 1);
            d.extend_from_slice(&body);
            Some(d)
        }
    };
    Export {
        version,
        template,
        data,
    }
}

/// Writes the sequence number of the `index`-th data datagram into `d`.
fn stamp(version: Version, d: &mut [u8], index: u64) {
    let n = version.records_per_datagram() as u64;
    match version {
        Version::V5 => d[16..20].copy_from_slice(&((index * n) as u32).to_be_bytes()),
        Version::V9 => d[12..16].copy_from_slice(&((index + 1) as u32).to_be_bytes()),
        Version::Ipfix => d[8..12].copy_from_slice(&((index * n) as u32).to_be_bytes()),
    }
}

/// Decode + aggregate from memory on one core: records per second.
fn in_memory(export: &Export, seconds: f64) -> (f64, f64) {
    pin_to(RECEIVER_CPU);
    let exporter: IpAddr = "127.0.0.1".parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let mut decoder = Decoder::default();
    let mut aggregate = Aggregate::new(200_000);
    let now = Instant::now();
    if let Some(t) = &export.template {
        let _ = decoder.decode(exporter, t, now, &mut aggregate.exporter_sink(exporter));
    }
    let mut datagrams = export.data.clone();
    let started = Instant::now();
    let mut index = 0u64;
    let mut records = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        for d in datagrams.iter_mut() {
            stamp(export.version, d, index);
            index += 1;
            let mut sink = aggregate.exporter_sink(exporter);
            let _ = decoder.decode(exporter, d, now, &mut sink);
        }
        aggregate.enforce_limit();
        records += decoder.take_stats().records;
    }
    let ours = records as f64 / started.elapsed().as_secs_f64();

    // netflow_parser, decode only, for reference.
    let mut reference = ReferenceDecoder::new();
    let source = SocketAddr::new(exporter, 9995);
    let mut flows = Vec::new();
    if let Some(t) = &export.template {
        let _ = reference.decode(source, t, &mut flows);
    }
    let started = Instant::now();
    let mut records = 0usize;
    while started.elapsed().as_secs_f64() < seconds / 2.0 {
        for d in &export.data {
            flows.clear();
            let _ = reference.decode(source, d, &mut flows);
            records += flows.len();
        }
    }
    (ours, records as f64 / started.elapsed().as_secs_f64())
}

/// Sends `datagrams` data datagrams (cycling through the pool, sequence numbers stamped) at
/// `rate` datagrams per second from the sender core. Returns the achieved rate.
fn send(socket: &UdpSocket, export: &Export, first_index: u64, datagrams: u64, rate: f64) -> f64 {
    const BATCH: usize = 32;
    let mut buffers: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; 1500]).collect();
    let fd = socket.as_raw_fd();
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < datagrams {
        let batch = ((datagrams - sent) as usize).min(BATCH);
        let mut iovecs: Vec<libc::iovec> = Vec::with_capacity(batch);
        for (i, buffer) in buffers.iter_mut().take(batch).enumerate() {
            let index = first_index + sent + i as u64;
            let source = &export.data[(index % POOL as u64) as usize];
            buffer.resize(source.len(), 0);
            buffer.copy_from_slice(source);
            stamp(export.version, buffer, index);
            iovecs.push(libc::iovec {
                iov_base: buffer.as_mut_ptr().cast(),
                iov_len: buffer.len(),
            });
        }
        // SAFETY: mmsghdr is plain data; each points at one iovec that lives until the call ends.
        let mut headers: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iov| {
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // Pace: wait until this batch is due.
        let due = started + Duration::from_secs_f64(sent as f64 / rate);
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        let mut done = 0usize;
        while done < batch {
            // SAFETY: headers[done..] are valid mmsghdr for a connected socket.
            let n = unsafe {
                libc::sendmmsg(fd, headers[done..].as_mut_ptr(), (batch - done) as u32, 0)
            };
            if n <= 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted
                    || e.raw_os_error() == Some(libc::ENOBUFS)
                {
                    continue;
                }
                eprintln!("sendmmsg failed: {e}");
                return sent as f64 / started.elapsed().as_secs_f64();
            }
            done += n as usize;
        }
        sent += batch as u64;
    }
    sent as f64 / started.elapsed().as_secs_f64()
}

/// Kernel drops of the UDP socket bound to `port` (IPv4), from /proc/net/udp.
fn proc_udp_drops(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let needle = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|local| local.ends_with(&needle))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

/// Starts a receiver (the bot or nfcapd, alike) pinned to [`RECEIVER_CPU`].
fn spawn_pinned_receiver(command: &mut Command) -> std::io::Result<Child> {
    spawn_pinned(command, RECEIVER_CPU)
}

/// What one receiver took in one step.
struct Step {
    received_records: u64,
    kernel_drops: u64,
    decode_errors: u64,
    cpu_seconds: f64,
}

/// A receiver under test: the bot or nfcapd.
trait Receiver {
    fn name(&self) -> &'static str;
    fn port(&self) -> u16;
    /// Prepares for a step (nfcapd: a fresh process).
    fn begin(&mut self) -> Result<(), String>;
    /// Waits for the receiver to settle and returns what it took since `begin`.
    fn end(&mut self) -> Result<Step, String>;
    fn rss(&self) -> (f64, f64);
}

/// The bot's minute in Grafolean mode (`NETFLOW_MINUTE`), in seconds.
const GRAFOLEAN_MINUTE: u64 = 10;

/// The job configs of the counting backend for `--grafolean`: the entity the standalone jobs
/// file names, served by our bot.
fn grafolean_configs() -> AccountConfigs {
    AccountConfigs {
        entities: vec![
            json!({"id": 100, "name": "local", "entity_type": "device", "parent": null,
            "details": {"ipv4": "127.0.0.1"},
            "protocols": {"netflow": {"credential": 1, "bot": BOT_ID,
                "sensors": [{"sensor": 10, "interval": null}]}}}),
        ],
        credentials: vec![json!({"id": 1, "name": "bench", "protocol": "netflow", "details": {}})],
        sensors: vec![json!({"id": 10, "name": "netflow", "protocol": "netflow",
            "default_interval": null, "details": {}})],
    }
}

/// The real netflowbot with an entity for 127.0.0.1 so flows are aggregated: standalone, or in
/// Grafolean mode against a counting backend.
struct Bot {
    child: Child,
    port: u16,
    metrics: SocketAddr,
    _dir: ScratchDir,
    before: (u64, u64, u64, f64),
}

impl Bot {
    fn start(
        binary: &Path,
        buffer: usize,
        backend: Option<&CountingBackend>,
    ) -> Result<Bot, String> {
        let dir = ScratchDir::new("netflowbench-bot").map_err(|e| e.to_string())?;
        let jobs = dir.path().join("jobs.toml");
        std::fs::write(
            &jobs,
            "[[credentials]]\nid = 1\nprotocol = \"netflow\"\ndetails = {}\n\n[[sensors]]\nid = 10\n\
             protocol = \"netflow\"\ndetails = {}\n\n[[entities]]\nid = 100\nname = \"local\"\n\
             details = { ipv4 = \"127.0.0.1\" }\n\
             protocols.netflow = { credential = 1, sensors = [{ sensor = 10 }] }\n",
        )
        .map_err(|e| e.to_string())?;
        let port = free_udp_port().map_err(|e| e.to_string())?;
        let metrics: SocketAddr =
            SocketAddr::from(([127, 0, 0, 1], free_tcp_port().map_err(|e| e.to_string())?));
        let mut command = Command::new(binary);
        // In Grafolean mode the bot's minute is shortened, so that windows close and reach the
        // backend while a rate step runs (a step is shorter than a real minute).
        let minute = if backend.is_some() {
            GRAFOLEAN_MINUTE
        } else {
            60
        };
        match backend {
            Some(backend) => command
                .env("BACKEND_URL", backend.url())
                .env("BOT_TOKEN", TOKEN)
                .env("NETFLOW_MINUTE", minute.to_string()),
            None => command.arg("--jobs").arg(&jobs),
        };
        let child = spawn_pinned_receiver(
            command
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .args(["--metrics-address", &metrics.to_string()])
                .args(["--netflow-port", &port.to_string()])
                .args(["--netflow-threads", "1"])
                .args(["--netflow-receive-buffer", &buffer.to_string()])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut bot = Bot {
            child,
            port,
            metrics,
            _dir: dir,
            before: (0, 0, 0, 0.0),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while http_get(metrics, "/metrics").is_none() {
            if Instant::now() > deadline {
                return Err("the bot's /metrics page did not come up".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The entity is registered for aggregation by the first window job (a quarter of the
        // minute after start).
        std::thread::sleep(Duration::from_secs(minute / 4 + 2));
        bot.before = bot.counters()?;
        Ok(bot)
    }

    fn counters(&self) -> Result<(u64, u64, u64, f64), String> {
        let page = http_get(self.metrics, "/metrics").ok_or("cannot read /metrics")?;
        let unattributed = prometheus_value(&page, "netflow_records_unattributed_total") as u64;
        if unattributed > 0 {
            return Err(format!("{unattributed} records were not aggregated"));
        }
        Ok((
            prometheus_value(&page, "netflow_records_total") as u64,
            prometheus_value(&page, "netflow_kernel_drops_total") as u64,
            prometheus_value(&page, "netflow_decode_errors_total") as u64,
            process_cpu(self.child.id()).total.as_secs_f64(),
        ))
    }
}

impl Receiver for Bot {
    fn name(&self) -> &'static str {
        "netflowbot"
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn begin(&mut self) -> Result<(), String> {
        self.before = self.counters()?;
        Ok(())
    }

    fn end(&mut self) -> Result<Step, String> {
        let mut last = self.counters()?;
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.counters()?;
            if now.0 == last.0 {
                break;
            }
            last = now;
        }
        Ok(Step {
            received_records: last.0 - self.before.0,
            kernel_drops: last.1 - self.before.1,
            decode_errors: last.2 - self.before.2,
            cpu_seconds: last.3 - self.before.3,
        })
    }

    fn rss(&self) -> (f64, f64) {
        (
            process_memory_kib(self.child.id(), "VmRSS:") as f64 / 1024.0,
            process_memory_kib(self.child.id(), "VmHWM:") as f64 / 1024.0,
        )
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        // SAFETY: kill on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// nfcapd, a fresh process per step (its counts come with its exit).
struct Nfcapd {
    port: u16,
    buffer: usize,
    child: Option<Child>,
    dir: ScratchDir,
    rss: (f64, f64),
}

impl Nfcapd {
    fn new(buffer: usize) -> Result<Nfcapd, String> {
        Ok(Nfcapd {
            port: free_udp_port().map_err(|e| e.to_string())?,
            buffer,
            child: None,
            dir: ScratchDir::new("netflowbench-nfcapd").map_err(|e| e.to_string())?,
            rss: (0.0, 0.0),
        })
    }
}

impl Receiver for Nfcapd {
    fn name(&self) -> &'static str {
        "nfcapd"
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn begin(&mut self) -> Result<(), String> {
        let _ = std::fs::remove_dir_all(self.dir.path());
        std::fs::create_dir_all(self.dir.path()).map_err(|e| e.to_string())?;
        let flows = self.dir.path().join("flows");
        std::fs::create_dir_all(&flows).map_err(|e| e.to_string())?;
        let log =
            std::fs::File::create(self.dir.path().join("nfcapd.log")).map_err(|e| e.to_string())?;
        let child = spawn_pinned_receiver(
            Command::new("nfcapd")
                .arg("-w")
                .arg(&flows)
                .args(["-p", &self.port.to_string(), "-b", "127.0.0.1"])
                .args(["-B", &self.buffer.to_string()])
                .stdout(Stdio::null())
                .stderr(log),
        )
        .map_err(|e| format!("cannot start nfcapd (apt package nfdump): {e}"))?;
        self.child = Some(child);
        // nfcapd logs "Startup nfcapd." once its socket is bound and it is receiving.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(self.dir.path().join("nfcapd.log"))
            .unwrap_or_default()
            .contains("Startup nfcapd.")
        {
            if Instant::now() > deadline {
                return Err("nfcapd did not bind its port".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn end(&mut self) -> Result<Step, String> {
        let mut child = self.child.take().ok_or("nfcapd not running")?;
        let pid = child.id();
        // Let it drain its socket.
        let mut last_cpu = process_cpu(pid).total.as_secs_f64();
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let cpu = process_cpu(pid).total.as_secs_f64();
            if cpu - last_cpu < 0.02 {
                break;
            }
            last_cpu = cpu;
        }
        let drops = proc_udp_drops(self.port);
        let cpu = process_cpu(pid).total.as_secs_f64();
        self.rss = (
            process_memory_kib(pid, "VmRSS:") as f64 / 1024.0,
            process_memory_kib(pid, "VmHWM:") as f64 / 1024.0,
        );
        // SAFETY: kill on our own child's pid.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
        let _ = child.wait();
        // nfcapd prints its totals on stderr when it stops.
        let out = std::fs::read_to_string(self.dir.path().join("nfcapd.log")).unwrap_or_default();
        // "Ident: 'none' Flows: 3967, Packets: ..., Bad Packets: 0"
        let flows = out
            .split("Flows: ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|n| n.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("nfcapd printed no statistics: {out:?}"))?;
        let bad = out
            .split("Bad Packets: ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0);
        Ok(Step {
            received_records: flows,
            kernel_drops: drops,
            decode_errors: bad,
            cpu_seconds: cpu,
        })
    }

    fn rss(&self) -> (f64, f64) {
        self.rss
    }
}

/// The result of a rate search.
struct Search {
    /// Highest lossless rate found, records/s.
    lossless: f64,
    cpu_per_million: f64,
    /// First rate with loss, if the search reached one.
    lossy: Option<f64>,
    sender_limited: bool,
}

/// Sends one step at `rate` records/s; returns whether it was lossless, with its CPU cost.
fn step(
    receiver: &mut dyn Receiver,
    export: &Export,
    rate: f64,
    seconds: f64,
    index: &mut u64,
) -> Result<(bool, f64, f64), String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket
        .connect(("127.0.0.1", receiver.port()))
        .map_err(|e| e.to_string())?;
    receiver.begin()?;
    if let Some(t) = &export.template {
        socket.send(t).map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(20));
    }
    let per = export.version.records_per_datagram() as f64;
    let datagrams = (rate * seconds / per).ceil() as u64;
    let achieved = send(&socket, export, *index, datagrams, rate / per) * per;
    *index += datagrams;
    let result = receiver.end()?;
    let sent_records = datagrams * export.version.records_per_datagram() as u64;
    let lossless = result.received_records == sent_records
        && result.kernel_drops == 0
        && result.decode_errors == 0;
    let cpu_per_million = result.cpu_seconds / (result.received_records.max(1) as f64 / 1e6);
    println!(
        "    {:<10} {:>6.2} M rec/s asked, {:>6.2} sent: {:>9} of {:>9} records, {} kernel drops, {} bad -> {}",
        receiver.name(),
        rate / 1e6,
        achieved / 1e6,
        result.received_records,
        sent_records,
        result.kernel_drops,
        result.decode_errors,
        if lossless { "lossless" } else { "LOSS" }
    );
    Ok((lossless, cpu_per_million, achieved))
}

/// Doubles the rate until loss, then bisects.
fn search(receiver: &mut dyn Receiver, export: &Export, seconds: f64) -> Result<Search, String> {
    pin_to(SENDER_CPU);
    let mut index = 0u64;
    let mut good = 0.0f64;
    let mut good_cpu = 0.0;
    let mut bad: Option<f64> = None;
    let mut sender_limited = false;
    let mut rate = 500_000.0;
    while bad.is_none() && rate <= 64e6 {
        let (ok, cpu, achieved) = step(receiver, export, rate, seconds, &mut index)?;
        if ok {
            good = achieved.min(rate);
            good_cpu = cpu;
            // The sender cannot go faster: the receiver's limit lies beyond.
            if achieved < rate * 0.8 {
                sender_limited = true;
                break;
            }
            rate *= 2.0;
        } else {
            bad = Some(rate);
        }
    }
    if let Some(mut high) = bad {
        let mut low = good;
        for _ in 0..5 {
            let mid = if low > 0.0 {
                (low + high) / 2.0
            } else {
                high / 2.0
            };
            let (ok, cpu, achieved) = step(receiver, export, mid, seconds, &mut index)?;
            if ok {
                low = mid;
                good = achieved.min(mid);
                good_cpu = cpu;
            } else {
                high = mid;
            }
        }
        bad = Some(high);
    }
    Ok(Search {
        lossless: good,
        cpu_per_million: good_cpu,
        lossy: bad,
        sender_limited,
    })
}

/// `netflowbench --send PORT RATE SECONDS VERSION [uniform]`: only send (to profile a
/// receiver).
fn send_only(args: &[String]) {
    let port: u16 = args.first().and_then(|a| a.parse().ok()).unwrap_or(2055);
    let rate: f64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1e6);
    let seconds: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10.0);
    let version = match args.get(3).map(String::as_str) {
        Some("v5") => Version::V5,
        Some("ipfix") => Version::Ipfix,
        _ => Version::V9,
    };
    let mix = if args.get(4).map(String::as_str) == Some("uniform") {
        Mix::Uniform
    } else {
        Mix::Zipf
    };
    let e = export(version, mix);
    pin_to(SENDER_CPU);
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else {
        return;
    };
    if socket.connect(("127.0.0.1", port)).is_err() {
        return;
    }
    if let Some(t) = &e.template {
        let _ = socket.send(t);
    }
    let per = version.records_per_datagram() as f64;
    let datagrams = (rate * seconds / per) as u64;
    let achieved = send(&socket, &e, 0, datagrams, rate / per) * per;
    println!(
        "sent {} records at {:.2} M/s",
        datagrams * per as u64,
        achieved / 1e6
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--send") {
        send_only(&args[2..]);
        return;
    }
    let options = parse_options();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "netflowbench: {cpus} CPUs; receiver on CPU {RECEIVER_CPU}, sender on CPU {SENDER_CPU}; \
         socket receive buffer {} bytes asked for by both receivers",
        options.buffer
    );
    println!(
        "traffic: {}; 8 interfaces, both directions, {} distinct datagrams; v5 30 and v9/IPFIX \
         33 records per datagram (softflowd's template)\n",
        match options.mix {
            Mix::Zipf => "Zipf-distributed 50,000 sources, 50,000 destinations, 1,000 ports",
            Mix::Uniform => "uniform 20,000 sources x 20,000 destinations, 1,000 ports (stress)",
        },
        POOL
    );

    let exports: Vec<Export> = options
        .versions
        .iter()
        .map(|&v| export(v, options.mix))
        .collect();
    let mut memory = Vec::new();
    println!("1. decode + aggregate from memory, one core:");
    for e in &exports {
        let (ours, reference) = in_memory(e, options.memory_seconds);
        println!(
            "    {:<6} {:>6.2} M records/s (netflow_parser decode only: {:.2} M/s)",
            e.version.name(),
            ours / 1e6,
            reference / 1e6
        );
        memory.push((ours, reference));
    }
    if !options.udp {
        return;
    }

    let bot_binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("netflowbot")))
        .unwrap_or_else(|| PathBuf::from("netflowbot"));
    // The counting backend shares the sender's CPU: it only answers a refresh and a few POSTs.
    let backend = if options.grafolean {
        match CountingBackend::start(grafolean_configs(), ".", SENDER_CPU) {
            Ok(backend) => Some(backend),
            Err(e) => {
                println!("cannot start the counting backend: {e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    let backend_cpu_before = backend
        .as_ref()
        .map(|b| thread_cpu(b.thread_id).total.as_secs_f64());
    let started = Instant::now();
    let mut results = Vec::new();
    for e in &exports {
        println!(
            "\n2. {} over UDP on loopback, receiver pinned to one core:",
            e.version.name()
        );
        let bot = if options.bot {
            Bot::start(&bot_binary, options.buffer, backend.as_ref()).and_then(|mut bot| {
                let found = search(&mut bot, e, options.step_seconds)?;
                Ok((found, bot.rss()))
            })
        } else {
            Err("not run (--no-bot)".to_string())
        };
        let nfcapd = if options.nfcapd {
            Some(Nfcapd::new(options.buffer).and_then(|mut n| {
                let found = search(&mut n, e, options.step_seconds)?;
                Ok((found, n.rss()))
            }))
        } else {
            None
        };
        results.push((e.version, bot, nfcapd));
    }

    if let (Some(backend), Some(cpu_before)) = (&backend, backend_cpu_before) {
        let counts = backend.counts();
        let wall = started.elapsed().as_secs_f64();
        let cpu = thread_cpu(backend.thread_id).total.as_secs_f64() - cpu_before;
        println!(
            "\nGrafolean mode (the bot's minute shortened to {GRAFOLEAN_MINUTE} s): the bot's values \
             reached the counting backend in {} POSTs ({} values, {} refused POSTs) over \
             {wall:.0} s; the backend used {:.2}% of one core",
            counts.posts,
            counts.values,
            counts.refused,
            100.0 * cpu / wall
        );
    }
    println!(
        "\nsummary (records/s = flow records; lossless = zero kernel drops, zero decode loss)"
    );
    println!(
        "{:<6} {:>14} {:>16} {:>12} {:>14} {:>16} {:>12} {:>8}",
        "",
        "memory M/s",
        "bot lossless M/s",
        "bot CPU s/M",
        "bot RSS MiB",
        "nfcapd lossless",
        "nfcapd CPU s/M",
        "ratio"
    );
    for ((version, bot, nfcapd), (ours, _)) in results.iter().zip(&memory) {
        let (bot_rate, bot_cpu, bot_rss, bot_note) = match bot {
            Ok((s, (rss, hwm))) => (
                s.lossless,
                s.cpu_per_million,
                format!("{rss:.0} ({hwm:.0} peak)"),
                if s.sender_limited {
                    " (sender-limited)"
                } else {
                    ""
                },
            ),
            Err(e) => {
                println!("{}: bot run failed: {e}", version.name());
                continue;
            }
        };
        let (nf_rate, nf_cpu) = match nfcapd {
            Some(Ok((s, _))) => (s.lossless, s.cpu_per_million),
            Some(Err(e)) => {
                println!("{}: nfcapd run failed: {e}", version.name());
                (0.0, 0.0)
            }
            None => (0.0, 0.0),
        };
        let ratio = if nf_rate > 0.0 {
            bot_rate / nf_rate
        } else {
            f64::NAN
        };
        println!(
            "{:<6} {:>14.2} {:>16.2} {:>12.3} {:>14} {:>16.2} {:>12.3} {:>8.2}{}",
            version.name(),
            ours / 1e6,
            bot_rate / 1e6,
            bot_cpu,
            bot_rss,
            nf_rate / 1e6,
            nf_cpu,
            ratio,
            bot_note
        );
        if let Ok((s, _)) = bot {
            if let Some(l) = s.lossy {
                println!("       bot: first loss at {:.2} M rec/s", l / 1e6);
            }
        }
        if let Some(Ok((s, _))) = nfcapd {
            if let Some(l) = s.lossy {
                println!("       nfcapd: first loss at {:.2} M rec/s", l / 1e6);
            }
        }
    }
}
