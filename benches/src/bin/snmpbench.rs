//! Benchmark of snmpbot's polling code against net-snmp's `snmpbulkwalk`.
//!
//! A fast fake agent (this binary with `--agent`, a separate process so that its CPU is not
//! counted) simulates many devices, one UDP port on 127.0.0.1 each, every one serving ifTable and
//! ifXTable of 48 ports (1,968 OIDs). The bot's code (`session` + `walk`, GETBULK on one shared
//! socket) walks both tables of every device; then `snmpbulkwalk` walks the same tables of the
//! same devices. Printed: CPU seconds per 1000 devices, devices per second, peak RSS and the CPU
//! ratio. A second measurement runs whole firings as the bot does (two traffic sensors per
//! device: walks joined by index, expressions, paths, counters to rates in the redb store).
//!
//! `cargo run --release -p benches --bin snmpbench -- --devices 1000`
//!
//! With `--snmpsim`, instead: the real release `snmpbot` in Grafolean mode against the e2e test
//! backend, on Debian's snmpsim devices, beside Debian's `prometheus-snmp-exporter` on the same
//! devices and core in the same run (`benches::snmpsim`):
//! `cargo build --release -p snmpbot && cargo run --release -p benches --bin snmpbench --
//! --snmpsim --devices 50 --ports 50`

use benches::measure::{own_usage, raise_fd_limit, Who};
use clap::Parser;
use collector::SensorConfig;
use futures::StreamExt;
use snmpbot::counters::CounterStore;
use snmpbot::sensor::{parse_sensor, EntityPoll, Poller, SensorCounters};
use snmpbot::session::{Credential, SnmpCounters, SnmpEngine, SnmpSettings};
use snmpbot::walk::{parse_oid, walk};
use std::io::{BufRead, BufReader};
use std::net::UdpSocket as StdUdpSocket;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const IF_TABLE: &str = "1.3.6.1.2.1.2.2";
const IF_X_TABLE: &str = "1.3.6.1.2.1.31.1.1";
const COMMUNITY: &[u8] = b"public";

#[derive(Parser)]
#[command(about = "snmpbot polling benchmark against snmpbulkwalk, on a fake agent")]
struct Cli {
    /// Simulated devices (one UDP port each).
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Interfaces per device (41 OIDs each: 22 ifTable + 19 ifXTable columns).
    #[arg(long, default_value_t = 48)]
    ports: u32,
    /// Devices polled at once by snmpbot.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// GETBULK max-repetitions, for snmpbot and snmpbulkwalk alike.
    #[arg(long, default_value_t = 25)]
    max_repetitions: u32,
    /// snmpbulkwalk processes at once.
    #[arg(long, default_value_t = 4)]
    processes: usize,
    /// Devices walked by snmpbulkwalk (it is slow; the figures are scaled per 1000 devices).
    #[arg(long, default_value_t = 200)]
    net_snmp_devices: usize,
    /// Run as the fake agent on ports [base, base + devices).
    #[arg(long, hide = true)]
    agent: Option<u16>,
    /// Instead: the real release snmpbot in Grafolean mode (test backend, 36 sensors walking the
    /// 41 columns of ifTable and ifXTable) beside prometheus-snmp-exporter (if_mib), both on
    /// `--core`, polling the same snmpsim devices (`--devices`, `--ports` interfaces).
    #[arg(long)]
    snmpsim: bool,
    /// Side by side: measured rounds after one round of warm-up.
    #[arg(long, default_value_t = 2)]
    rounds: u64,
    /// Side by side: seconds between two polls of a device.
    #[arg(long, default_value_t = 60)]
    interval: u64,
    /// Side by side: the core of snmpbot and snmp_exporter (the simulators get the other).
    #[arg(long, default_value_t = 1)]
    core: usize,
    /// Side by side: devices per snmpsimd process.
    #[arg(long, default_value_t = 50)]
    devices_per_simulator: usize,
    /// Side by side: varbinds a simulator answer holds at most (snmpsim's default: 64).
    #[arg(long, default_value_t = 64)]
    agent_max_varbinds: usize,
    /// Side by side: the snmpbot binary (build it with `cargo build --release -p snmpbot`).
    #[arg(long, default_value = "target/release/snmpbot")]
    snmpbot: std::path::PathBuf,
    /// Side by side: run snmpbot under this program, e.g. `heaptrack` (CPU figures then void).
    #[arg(long)]
    wrap: Option<String>,
    /// Side by side: leave snmp_exporter out.
    #[arg(long)]
    no_exporter: bool,
    /// Side by side: extra environment of snmpbot, `NAME=value` (repeatable).
    #[arg(long = "bot-env", value_parser = parse_env)]
    bot_env: Vec<(String, String)>,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .ok_or_else(|| format!("'{text}' is not NAME=value"))
}

/// The side-by-side run of `--snmpsim`.
fn side_by_side(cli: Cli) {
    raise_fd_limit();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    benches::snmpsim::SideBySide {
        devices: cli.devices,
        interfaces: cli.ports,
        rounds: cli.rounds,
        interval: cli.interval,
        core: cli.core,
        devices_per_simulator: cli.devices_per_simulator,
        agent_max_varbinds: cli.agent_max_varbinds,
        snmpbot: cli.snmpbot,
        wrap: cli.wrap,
        exporter: !cli.no_exporter,
        bot_env: cli.bot_env,
    }
    .run(&runtime);
}

fn main() {
    let cli = Cli::parse();
    if let Some(base) = cli.agent {
        agent::run(base, cli.devices, cli.ports);
        return;
    }
    if cli.snmpsim {
        return side_by_side(cli);
    }
    raise_fd_limit();
    let (agent, base) = start_agent(&cli);
    let agent = AgentProcess(agent);
    let oids_per_device = 41 * cli.ports as usize;
    println!(
        "{} devices on 127.0.0.1:{}-{}, {} OIDs each (ifTable + ifXTable, {} ports)",
        cli.devices,
        base,
        base as usize + cli.devices - 1,
        oids_per_device,
        cli.ports
    );

    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let engine = runtime.block_on(async {
        let settings = SnmpSettings {
            timeout: Duration::from_secs(2),
            retries: 2,
            max_in_flight: 512,
            max_devices: cli.concurrency,
            max_repetitions: cli.max_repetitions,
            max_walk_rows: 100_000,
            ..SnmpSettings::default()
        };
        Arc::new(
            SnmpEngine::new(settings, None, SnmpCounters::default())
                .await
                .expect("engine"),
        )
    });
    let mut bot_round = Round::default();
    for round in 1..=2 {
        let started = Measure::start();
        let (rows, failures) = runtime.block_on(poll_all(&engine, base, &cli));
        let result = started.finish(cli.devices);
        let label = if round == 1 {
            "first round (sessions created)"
        } else {
            "steady state (sessions cached)"
        };
        println!(
            "snmpbot  {label}: {} rows, {} failed devices, {:.2} s wall, {:.2} CPU s => {:.2} CPU s per 1000 devices, {:.0} devices/s",
            rows, failures, result.wall, result.cpu, result.cpu_per_1000, result.devices_per_second
        );
        assert_eq!(failures, 0, "every device must answer");
        assert_eq!(rows, cli.devices * oids_per_device, "every row must arrive");
        bot_round = result;
    }
    println!(
        "snmpbot  peak RSS after the walk rounds: {:.1} MB (whole benchmark process)",
        own_usage(Who::Myself).1 as f64 / 1024.0
    );

    // The whole firing as the bot runs it: two traffic sensors per device (ifDescr joined with
    // ifHCInOctets / ifHCOutOctets), counters to rates through the redb counter store.
    let state = std::env::temp_dir().join(format!("snmpbench-{}.redb", std::process::id()));
    let database = redb::Database::create(&state).expect("counter store");
    let poller = Poller {
        engine: engine.clone(),
        counters: CounterStore::new(Arc::new(database), Duration::from_secs(30)),
        metrics: SensorCounters::default(),
    };
    for round in 1..=2 {
        let started = Measure::start();
        let values = runtime.block_on(poll_sensors(&poller, base, &cli));
        let result = started.finish(cli.devices);
        println!(
            "snmpbot  sensors round {round} ({}): {} values, {:.2} s wall, {:.2} CPU s => {:.2} CPU s per 1000 devices",
            if round == 1 { "first counter samples" } else { "rates" },
            values, result.wall, result.cpu, result.cpu_per_1000
        );
    }
    drop(poller);
    let _ = std::fs::remove_file(&state);
    let peak_rss_mb = own_usage(Who::Myself).1 as f64 / 1024.0;
    println!(
        "snmpbot  peak RSS after the sensor rounds: {peak_rss_mb:.1} MB (with the redb counter store of 96,000 counters)"
    );
    drop(engine);
    drop(runtime);

    let net_snmp = net_snmp_round(base, &cli);
    drop(agent);
    match net_snmp {
        Some(net) => {
            println!(
                "snmpbulkwalk: {} devices, {:.2} s wall, {:.2} CPU s => {:.2} CPU s per 1000 devices, {:.0} devices/s",
                cli.net_snmp_devices, net.wall, net.cpu, net.cpu_per_1000, net.devices_per_second
            );
            println!(
                "ratio: snmpbulkwalk needs {:.1}x the CPU of snmpbot per device; snmpbot polls {:.1}x as many devices per second",
                net.cpu_per_1000 / bot_round.cpu_per_1000,
                bot_round.devices_per_second / net.devices_per_second
            );
        }
        None => println!("snmpbulkwalk not found (apt-get install snmp): no comparison"),
    }
    println!(
        "goal: at most 4 CPU s per 1000 devices ({}), at most 40 MB RSS at 1000 devices ({})",
        if bot_round.cpu_per_1000 <= 4.0 {
            "met"
        } else {
            "NOT met"
        },
        if peak_rss_mb <= 40.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}

async fn poll_all(engine: &Arc<SnmpEngine>, base: u16, cli: &Cli) -> (usize, usize) {
    let credential = Credential::from_details(
        &serde_json::json!({"version": "snmpv2c", "snmpv12_community": "public"}),
    )
    .expect("credential");
    let tables = [
        parse_oid(IF_TABLE).expect("oid"),
        parse_oid(IF_X_TABLE).expect("oid"),
    ];
    let results: Vec<Result<usize, String>> = futures::stream::iter(0..cli.devices)
        .map(|i| {
            let engine = engine.clone();
            let credential = credential.clone();
            let tables = tables.clone();
            async move {
                let address = format!("127.0.0.1:{}", base as usize + i);
                let session = engine
                    .session(&address, &credential)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut rows = 0;
                for table in &tables {
                    rows += walk(&session, table)
                        .await
                        .map_err(|e| e.to_string())?
                        .len();
                }
                Ok(rows)
            }
        })
        .buffer_unordered(cli.concurrency)
        .collect()
        .await;
    let mut rows = 0;
    let mut failures = 0;
    for result in results {
        match result {
            Ok(n) => rows += n,
            Err(error) => {
                if failures == 0 {
                    eprintln!("first failure: {error}");
                }
                failures += 1;
            }
        }
    }
    (rows, failures)
}

async fn poll_sensors(poller: &Poller, base: u16, cli: &Cli) -> usize {
    let credential = Credential::from_details(
        &serde_json::json!({"version": "snmpv2c", "snmpv12_community": "public"}),
    );
    let traffic = |id: u64, column: u32, name: &str| {
        parse_sensor(&SensorConfig {
            sensor_id: id,
            interval: Some(60),
            details: serde_json::json!({
                "oids": [{"oid": "1.3.6.1.2.1.2.2.1.2", "fetch_method": "walk"},
                         {"oid": format!("1.3.6.1.2.1.31.1.1.1.{column}"), "fetch_method": "walk"}],
                "expression": "$2 * 8",
                "output_path": format!("if.{name}.{{$index}}.{{$1}}"),
            })
            .into(),
        })
        .map(std::sync::Arc::new)
    };
    let sensors = vec![traffic(1, 6, "in-bps"), traffic(2, 10, "out-bps")];
    let values: Vec<usize> = futures::stream::iter(0..cli.devices)
        .map(|i| {
            let entity = EntityPoll {
                entity_id: 1_000_000 + i as u64,
                address: Some(format!("127.0.0.1:{}", base as usize + i)),
                credential: credential.clone(),
                sensors: sensors.clone(),
            };
            async move {
                poller
                    .poll(&entity, |_| true)
                    .await
                    .map(|v| v.len())
                    .unwrap_or(0)
            }
        })
        .buffer_unordered(cli.concurrency)
        .collect()
        .await;
    values.into_iter().sum()
}

fn net_snmp_round(base: u16, cli: &Cli) -> Option<Round> {
    let program = ["/usr/bin/snmpbulkwalk", "/usr/local/bin/snmpbulkwalk"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let devices = cli.net_snmp_devices.min(cli.devices);
    let measure = Measure::start();
    let mut running: Vec<std::process::Child> = Vec::new();
    let mut jobs = (0..devices).flat_map(|i| [(i, IF_TABLE), (i, IF_X_TABLE)]);
    loop {
        while running.len() < cli.processes {
            let Some((i, table)) = jobs.next() else { break };
            let child = Command::new(program)
                .args(["-v2c", "-c", "public", "-On", "-Oq"])
                .arg(format!("-Cr{}", cli.max_repetitions))
                .arg(format!("127.0.0.1:{}", base as usize + i))
                .arg(table)
                // No MIB parsing: net-snmp's best case.
                .env("MIBS", "")
                .env("MIBDIRS", "/nonexistent-snmpbench-mibs")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            running.push(child);
        }
        if running.is_empty() {
            break;
        }
        let mut child = running.remove(0);
        let _ = child.wait();
    }
    Some(measure.finish_children(devices))
}

#[derive(Default, Clone, Copy)]
struct Round {
    wall: f64,
    cpu: f64,
    cpu_per_1000: f64,
    devices_per_second: f64,
}

struct Measure {
    wall: Instant,
    own: f64,
    children: f64,
}

fn cpu_seconds(who: Who) -> f64 {
    own_usage(who).0.total.as_secs_f64()
}

impl Measure {
    fn start() -> Measure {
        Measure {
            wall: Instant::now(),
            own: cpu_seconds(Who::Myself),
            children: cpu_seconds(Who::Children),
        }
    }

    fn round(&self, cpu: f64, devices: usize) -> Round {
        let wall = self.wall.elapsed().as_secs_f64();
        Round {
            wall,
            cpu,
            cpu_per_1000: cpu * 1000.0 / devices as f64,
            devices_per_second: devices as f64 / wall,
        }
    }

    fn finish(&self, devices: usize) -> Round {
        self.round(cpu_seconds(Who::Myself) - self.own, devices)
    }

    /// CPU of the children reaped since the start (the agent is still running, so not counted).
    fn finish_children(&self, devices: usize) -> Round {
        self.round(cpu_seconds(Who::Children) - self.children, devices)
    }
}

/// The fake agent's process, stopped when the benchmark ends (also on a panic).
struct AgentProcess(std::process::Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Finds `devices` free consecutive UDP ports and starts the agent process on them.
fn start_agent(cli: &Cli) -> (std::process::Child, u16) {
    let exe = std::env::current_exe().expect("own executable");
    for attempt in 0..20u32 {
        let base = 20_000 + ((std::process::id() + attempt * 2_000) % 40_000) as u16;
        if base as usize + cli.devices > 65_000 {
            continue;
        }
        let free =
            (0..cli.devices).all(|i| StdUdpSocket::bind(("127.0.0.1", base + i as u16)).is_ok());
        if !free {
            continue;
        }
        let mut child = Command::new(&exe)
            .args(["--agent", &base.to_string()])
            .args([
                "--devices",
                &cli.devices.to_string(),
                "--ports",
                &cli.ports.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the fake agent");
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        if line.trim() == "ready" {
            return (child, base);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("no {} free consecutive UDP ports found", cli.devices);
}

/// The fake agent: SNMPv2c GET, GETNEXT and GETBULK over a precomputed, sorted ifTable and
/// ifXTable, answered by concatenating pre-encoded varbinds.
mod agent {
    use std::io::Write;

    struct Entry {
        arcs: Vec<u32>,
        /// The whole encoded varbind (SEQUENCE of OID and value).
        varbind: Vec<u8>,
    }

    pub fn run(base: u16, devices: usize, ports: u32) {
        benches::measure::raise_fd_limit();
        let table = build_table(ports);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("agent runtime");
        runtime.block_on(async move {
            let table = std::sync::Arc::new(table);
            let mut sockets = Vec::with_capacity(devices);
            for i in 0..devices {
                let socket = tokio::net::UdpSocket::bind(("127.0.0.1", base + i as u16))
                    .await
                    .expect("agent port");
                sockets.push(socket);
            }
            println!("ready");
            let _ = std::io::stdout().flush();
            let mut tasks = Vec::with_capacity(devices);
            for socket in sockets {
                let table = table.clone();
                tasks.push(tokio::spawn(async move {
                    let mut buffer = vec![0u8; 65_536];
                    loop {
                        let Ok((len, from)) = socket.recv_from(&mut buffer).await else {
                            continue;
                        };
                        if let Some(answer) = respond(&table, &buffer[..len]) {
                            let _ = socket.send_to(&answer, from).await;
                        }
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
        });
    }

    fn build_table(ports: u32) -> Vec<Entry> {
        let mut entries = Vec::new();
        let if_table = [1, 3, 6, 1, 2, 1, 2, 2, 1];
        let if_x_table = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1];
        for column in 1..=22u32 {
            for port in 1..=ports {
                let value = match column {
                    1 => integer(port as i64),
                    2 => octets(format!("GigabitEthernet0/{port}").as_bytes()),
                    3 => integer(6),
                    4 => integer(1500),
                    5 => tagged(0x42, &unsigned(1_000_000_000)),
                    6 => octets(&[0x00, 0x1b, 0x21, 0x3c, 0x4d, port as u8]),
                    7 | 8 => integer(1),
                    9 => tagged(0x43, &unsigned(12_345)),
                    21 => tagged(0x42, &unsigned(0)),
                    22 => tagged(0x06, &[0x00]),
                    _ => tagged(
                        0x41,
                        &unsigned(u64::from(port) * 1_000_003 + u64::from(column) * 7_919),
                    ),
                };
                entries.push(entry(&if_table, column, port, value));
            }
        }
        for column in 1..=19u32 {
            for port in 1..=ports {
                let value = match column {
                    1 => octets(format!("Gi0/{port}").as_bytes()),
                    2..=5 => tagged(0x41, &unsigned(u64::from(port) * 31 + u64::from(column))),
                    6..=13 => tagged(
                        0x46,
                        &unsigned((u64::from(port) << 40) + u64::from(column) * 1_000_000_007),
                    ),
                    14 | 16 | 17 => integer(1),
                    15 => tagged(0x42, &unsigned(1000)),
                    18 => octets(format!("uplink {port}").as_bytes()),
                    _ => tagged(0x43, &unsigned(0)),
                };
                entries.push(entry(&if_x_table, column, port, value));
            }
        }
        entries.sort_by(|a, b| a.arcs.cmp(&b.arcs));
        entries
    }

    fn entry(table: &[u32], column: u32, port: u32, value: Vec<u8>) -> Entry {
        let mut arcs = table.to_vec();
        arcs.extend([column, port]);
        let mut body = tagged(0x06, &encode_oid(&arcs));
        body.extend(value);
        Entry {
            varbind: tagged(0x30, &body),
            arcs,
        }
    }

    fn length(len: usize, out: &mut Vec<u8>) {
        if len < 0x80 {
            out.push(len as u8);
        } else if len < 0x100 {
            out.extend([0x81, len as u8]);
        } else {
            out.extend([0x82, (len >> 8) as u8, len as u8]);
        }
    }

    fn tagged(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(content.len() + 4);
        out.push(tag);
        length(content.len(), &mut out);
        out.extend_from_slice(content);
        out
    }

    fn integer(value: i64) -> Vec<u8> {
        let bytes = value.to_be_bytes();
        let mut start = 0;
        while start < 7
            && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
                || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
        {
            start += 1;
        }
        tagged(0x02, &bytes[start..])
    }

    fn unsigned(value: u64) -> Vec<u8> {
        let bytes = value.to_be_bytes();
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(7);
        let mut out = Vec::with_capacity(9);
        if bytes[start] & 0x80 != 0 {
            out.push(0);
        }
        out.extend_from_slice(&bytes[start..]);
        out
    }

    fn octets(bytes: &[u8]) -> Vec<u8> {
        tagged(0x04, bytes)
    }

    fn encode_oid(arcs: &[u32]) -> Vec<u8> {
        let mut out = vec![(arcs[0] * 40 + arcs[1]) as u8];
        for &arc in &arcs[2..] {
            let mut chunk = [0u8; 5];
            let mut n = 0;
            let mut value = arc;
            loop {
                chunk[n] = (value & 0x7f) as u8;
                value >>= 7;
                n += 1;
                if value == 0 {
                    break;
                }
            }
            for i in (0..n).rev() {
                out.push(chunk[i] | if i > 0 { 0x80 } else { 0 });
            }
        }
        out
    }

    fn decode_oid(bytes: &[u8]) -> Option<Vec<u32>> {
        let (&first, rest) = bytes.split_first()?;
        let mut arcs = vec![
            u32::from(first / 40).min(2),
            u32::from(first) - 40 * u32::from(first / 40).min(2),
        ];
        let mut value: u32 = 0;
        for &b in rest {
            value = value.checked_mul(128)? | u32::from(b & 0x7f);
            if b & 0x80 == 0 {
                arcs.push(value);
                value = 0;
            }
        }
        Some(arcs)
    }

    /// Reads one TLV: (tag, content, rest).
    fn read(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = bytes.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 3 || rest.len() < n {
                return None;
            }
            (
                rest[..n]
                    .iter()
                    .fold(0usize, |acc, &b| acc << 8 | b as usize),
                &rest[n..],
            )
        };
        if rest.len() < len {
            return None;
        }
        Some((tag, &rest[..len], &rest[len..]))
    }

    fn read_int(bytes: &[u8]) -> Option<(i64, &[u8], &[u8])> {
        let (tag, content, rest) = read(bytes)?;
        if tag != 0x02 || content.is_empty() || content.len() > 8 {
            return None;
        }
        let mut value: i64 = if content[0] & 0x80 != 0 { -1 } else { 0 };
        for &b in content {
            value = value << 8 | i64::from(b);
        }
        Some((value, &bytes[..bytes.len() - rest.len()], rest))
    }

    fn respond(table: &[Entry], packet: &[u8]) -> Option<Vec<u8>> {
        let (0x30, message, _) = read(packet)? else {
            return None;
        };
        let (version, _, rest) = read_int(message)?;
        let (0x04, community, rest) = read(rest)? else {
            return None;
        };
        if version != 1 || community != super::COMMUNITY {
            return None;
        }
        let (pdu_type, pdu, _) = read(rest)?;
        let (_, request_id, rest) = read_int(pdu)?;
        let (a, _, rest) = read_int(rest)?;
        let (b, _, rest) = read_int(rest)?;
        let (0x30, mut list, _) = read(rest)? else {
            return None;
        };
        let mut requested = Vec::new();
        while !list.is_empty() {
            let (0x30, varbind, next) = read(list)? else {
                return None;
            };
            let (0x06, oid, _) = read(varbind)? else {
                return None;
            };
            requested.push(decode_oid(oid)?);
            list = next;
        }
        let mut varbinds = Vec::with_capacity(2048);
        let successor = |arcs: &[u32]| table.partition_point(|e| e.arcs.as_slice() <= arcs);
        let end_of_mib = |arcs: &[u32]| {
            let mut body = tagged(0x06, &encode_oid(arcs));
            body.extend([0x82, 0x00]);
            tagged(0x30, &body)
        };
        match pdu_type {
            0xa0 => {
                for arcs in &requested {
                    match table.binary_search_by(|e| e.arcs.as_slice().cmp(arcs)) {
                        Ok(i) => varbinds.extend_from_slice(&table[i].varbind),
                        Err(_) => {
                            let mut body = tagged(0x06, &encode_oid(arcs));
                            body.extend([0x80, 0x00]);
                            varbinds.extend(tagged(0x30, &body));
                        }
                    }
                }
            }
            0xa1 => {
                for arcs in &requested {
                    match table.get(successor(arcs)) {
                        Some(e) => varbinds.extend_from_slice(&e.varbind),
                        None => varbinds.extend(end_of_mib(arcs)),
                    }
                }
            }
            0xa5 => {
                let non_repeaters = (a.max(0) as usize).min(requested.len());
                let repetitions = b.clamp(0, 1000) as usize;
                for arcs in &requested[..non_repeaters] {
                    match table.get(successor(arcs)) {
                        Some(e) => varbinds.extend_from_slice(&e.varbind),
                        None => varbinds.extend(end_of_mib(arcs)),
                    }
                }
                let starts: Vec<usize> = requested[non_repeaters..]
                    .iter()
                    .map(|a| successor(a))
                    .collect();
                let mut cursors = starts.clone();
                'rounds: for _ in 0..repetitions {
                    for (k, cursor) in cursors.iter_mut().enumerate() {
                        match table.get(*cursor) {
                            Some(e) => varbinds.extend_from_slice(&e.varbind),
                            None => {
                                // endOfMibView carries the name of the previous repetition.
                                let name = if *cursor > starts[k] {
                                    &table[*cursor - 1].arcs
                                } else {
                                    &requested[non_repeaters + k]
                                };
                                varbinds.extend(end_of_mib(name));
                                break 'rounds;
                            }
                        }
                        *cursor += 1;
                        if varbinds.len() > 60_000 {
                            break 'rounds;
                        }
                    }
                }
            }
            _ => return None,
        }
        let mut pdu = request_id.to_vec();
        pdu.extend([0x02, 0x01, 0x00, 0x02, 0x01, 0x00]);
        pdu.extend(tagged(0x30, &varbinds));
        let mut message = vec![0x02, 0x01, 0x01];
        message.extend(octets(super::COMMUNITY));
        message.extend(tagged(0xa2, &pdu));
        Some(tagged(0x30, &message))
    }
}
