//! The SNMP side-by-side run: the real `snmpbot` in Grafolean mode against a local test backend,
//! and Debian's `prometheus-snmp-exporter`, polling the same snmpsim devices (ifTable and
//! ifXTable of 50 interfaces each) on the same core in the same run.

use crate::measure::spawn_pinned;
use e2e::{Fixture, Id};
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BOT: Id = 1_620_000_031;
const ACCOUNT: Id = 1_409_000_031;
const CREDENTIAL: Id = 731_000_031;
const FIRST_SENSOR: Id = 842_000_100;
const FIRST_DEVICE: Id = 1_348_000_000;
/// GETBULK max-repetitions of the exporter's module, and of the baseline of request counts.
const EXPORTER_MAX_REPETITIONS: u32 = 25;

/// The GETBULKs that walking each column of the devices alone takes: a walk of `rows` rows
/// with `EXPORTER_MAX_REPETITIONS` a request asks until an answer leaves the column.
pub fn requests_walking_each_column_alone(rows: u32) -> u32 {
    columns().len() as u32 * (rows / EXPORTER_MAX_REPETITIONS + 1)
}

/// The community of every simulated device (snmpsim serves `public.snmprec` under it).
pub const COMMUNITY: &str = "public";
const IF_TABLE: &str = "1.3.6.1.2.1.2.2.1";
const IF_X_TABLE: &str = "1.3.6.1.2.1.31.1.1.1";

/// The bot's id in [`fixture`], for its token.
pub const BOT_ID: Id = BOT;

/// A child process killed (and reaped) when dropped, also on a panic.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One column of ifTable or ifXTable: table, column number, snmprec type, and whether its
/// values are text (labels) rather than numbers.
pub struct Column {
    table: &'static str,
    number: u32,
    kind: &'static str,
    text: bool,
}

/// The 41 columns of ifTable (22) and ifXTable (19), typed as snmpsim's `.snmprec` writes them.
pub fn columns() -> Vec<Column> {
    let mut columns = Vec::new();
    let if_kinds: [(u32, &str, bool); 22] = [
        (1, "2", false),
        (2, "4", true),
        (3, "2", false),
        (4, "2", false),
        (5, "66", false),
        (6, "4x", true),
        (7, "2", false),
        (8, "2", false),
        (9, "67", false),
        (10, "65", false),
        (11, "65", false),
        (12, "65", false),
        (13, "65", false),
        (14, "65", false),
        (15, "65", false),
        (16, "65", false),
        (17, "65", false),
        (18, "65", false),
        (19, "65", false),
        (20, "65", false),
        (21, "66", false),
        (22, "6", true),
    ];
    for (number, kind, text) in if_kinds {
        columns.push(Column {
            table: IF_TABLE,
            number,
            kind,
            text,
        });
    }
    for number in 1..=19 {
        let (kind, text) = match number {
            1 | 18 => ("4", true),
            2..=5 => ("65", false),
            6..=13 => ("70", false),
            15 => ("66", false),
            19 => ("67", false),
            _ => ("2", false),
        };
        columns.push(Column {
            table: IF_X_TABLE,
            number,
            kind,
            text,
        });
    }
    columns
}

fn snmprec_value(column: &Column, row: u32) -> String {
    match (column.table, column.number, column.kind) {
        (_, _, "4x") => format!("00163e{row:06x}"),
        (_, _, "6") => "0.0".to_string(),
        (IF_TABLE, 2, _) => format!("GigabitEthernet0/{row}"),
        (_, 1, "4") => format!("Gi0/{row}"),
        (_, 18, _) => format!("uplink to rack {row}"),
        (_, _, "65" | "70") => (u64::from(row) * 1_000_003 + u64::from(column.number)).to_string(),
        (IF_TABLE, 5, _) => "1000000000".to_string(),
        _ => (row % 7 + 1).to_string(),
    }
}

/// Writes the device every simulator serves: sysUpTime and both tables with `interfaces` rows.
pub fn write_snmprec(dir: &Path, interfaces: u32) {
    let mut text = String::from("1.3.6.1.2.1.1.1.0|4|bench device\n1.3.6.1.2.1.1.3.0|67|123456\n");
    for column in columns() {
        for row in 1..=interfaces {
            text.push_str(&format!(
                "{}.{}.{row}|{}|{}\n",
                column.table,
                column.number,
                column.kind,
                snmprec_value(&column, row)
            ));
        }
    }
    std::fs::write(dir.join(format!("{COMMUNITY}.snmprec")), text).expect("write snmprec");
}

/// 36 sensors that walk each of the 41 columns once: five label-and-value sensors, one
/// sensor for each other numeric column.
pub fn sensors() -> Vec<serde_json::Value> {
    let columns = columns();
    let oid = |c: &Column| format!("{}.{}", c.table, c.number);
    let find = |table: &str, number: u32| {
        columns
            .iter()
            .find(|c| c.table == table && c.number == number)
            .map(oid)
            .unwrap_or_default()
    };
    let pairs = [
        ((IF_TABLE, 2), (IF_X_TABLE, 6)),
        ((IF_X_TABLE, 1), (IF_X_TABLE, 10)),
        ((IF_X_TABLE, 18), (IF_TABLE, 10)),
        ((IF_TABLE, 6), (IF_TABLE, 16)),
        ((IF_TABLE, 22), (IF_TABLE, 5)),
    ];
    let mut paired = Vec::new();
    let mut sensors = Vec::new();
    for (label, value) in pairs {
        paired.push(label);
        paired.push(value);
        sensors.push(json!({"oids": [{"oid": find(label.0, label.1), "fetch_method": "walk"}, {"oid": find(value.0, value.1), "fetch_method": "walk"}],
            "expression": "$2", "output_path": format!("if.{{$index}}.{{$1}}.c{}", value.1)}));
    }
    for column in &columns {
        if column.text || paired.contains(&(column.table, column.number)) {
            continue;
        }
        let short = if column.table == IF_TABLE {
            "if"
        } else {
            "ifx"
        };
        sensors.push(
            json!({"oids": [{"oid": oid(column), "fetch_method": "walk"}], "expression": "$1",
            "output_path": format!("{short}.{{$index}}.c{}", column.number)}),
        );
    }
    sensors
}

/// One account, the bot, a v2c credential and the 36 sensors on every device (one port each).
pub fn fixture(ports: &[u16], interval: u64) -> Fixture {
    let mut fixture = Fixture::new();
    fixture
        .account(ACCOUNT, "Bench")
        .systemwide_bot(BOT, "snmp");
    fixture.credential(
        ACCOUNT,
        CREDENTIAL,
        "snmp",
        json!({"version": "snmpv2c", "snmpv12_community": COMMUNITY}),
    );
    let sensors = sensors();
    let mut bound = Vec::new();
    for (i, details) in sensors.into_iter().enumerate() {
        let id = FIRST_SENSOR + i as e2e::Id;
        fixture.sensor(ACCOUNT, id, "snmp", Some(interval as i64), details);
        bound.push((id, Some(interval as i64)));
    }
    for (i, port) in ports.iter().enumerate() {
        let id = FIRST_DEVICE + i as e2e::Id;
        fixture.device(
            ACCOUNT,
            id,
            &format!("device-{i}"),
            &format!("127.0.0.1:{port}"),
        );
        fixture.bind(id, "snmp", CREDENTIAL, &bound, BOT);
    }
    fixture
}

/// snmpsimd processes serving `dir/data` on `ports`, `per_process` ports each, on `core`.
///
/// Each process gets its own index cache under `dir`: by default they all index the same
/// `.snmprec` into one shared directory at once, and with many processes some never came up.
/// What each process says goes to [`simulator_log`].
pub fn start_simulators(
    dir: &Path,
    ports: &[u16],
    per_process: usize,
    max_varbinds: usize,
    core: usize,
) -> Vec<Killed> {
    ports
        .chunks(per_process.max(1))
        .enumerate()
        .map(|(i, chunk)| {
            let cache = dir.join(format!("cache-{i}"));
            std::fs::create_dir_all(&cache).expect("snmpsim cache directory");
            open_to_everyone(&cache);
            let mut command = Command::new("snmpsimd");
            command
                .arg(format!("--data-dir={}", dir.join("data").display()))
                .arg(format!("--cache-dir={}", cache.display()))
                .args(["--process-user=nobody", "--process-group=nogroup"])
                .arg(format!("--max-varbinds={max_varbinds}"));
            for port in chunk {
                command.arg(format!("--agent-udpv4-endpoint=127.0.0.1:{port}"));
            }
            let log = std::fs::File::create(simulator_log(dir, i)).expect("snmpsim log file");
            let log_copy = log.try_clone().expect("snmpsim log file");
            command.stdout(log).stderr(log_copy);
            Killed(
                spawn_pinned(&mut command, core).expect("start snmpsimd (apt-get install snmpsim)"),
            )
        })
        .collect()
}

/// Where the `index`th snmpsimd process writes what it says.
pub fn simulator_log(dir: &Path, index: usize) -> std::path::PathBuf {
    dir.join(format!("simulator-{index}.log"))
}

/// snmpsimd drops to `nobody` before it writes its index.
fn open_to_everyone(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
        .expect("open the snmpsim cache directory to nobody");
}

/// Waits until the simulator on `port` answers a GET (snmpsimd indexes its data first). If it
/// never does, the panic shows the end of the simulator's log (`log`).
pub fn wait_for_agent(port: u16, log: &Path) {
    for _ in 0..120 {
        let ok = Command::new("snmpget")
            .args([
                "-v2c",
                "-c",
                COMMUNITY,
                "-t",
                "1",
                "-r",
                "0",
                &format!("127.0.0.1:{port}"),
                "1.3.6.1.2.1.1.3.0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let said = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = said.lines().rev().take(20).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    panic!(
        "snmpsimd on port {port} never answered; the end of its log ({}):\n{}",
        log.display(),
        tail.join("\n")
    );
}

/// snmp_exporter's `if_mib` module over the same columns (Debian ships no generated
/// snmp.yml): both tables walked with max_repetitions 25, every column a metric with the
/// ifAlias, ifDescr and ifName lookups of the upstream module.
pub fn exporter_config() -> String {
    let mut text =
        String::from("if_mib:\n  walk:\n  - 1.3.6.1.2.1.2.2\n  - 1.3.6.1.2.1.31.1.1\n  metrics:\n");
    let lookups = "    lookups:\n    - labels: [ifIndex]\n      labelname: ifAlias\n      oid: 1.3.6.1.2.1.31.1.1.1.18\n      type: DisplayString\n    - labels: [ifIndex]\n      labelname: ifDescr\n      oid: 1.3.6.1.2.1.2.2.1.2\n      type: DisplayString\n    - labels: [ifIndex]\n      labelname: ifName\n      oid: 1.3.6.1.2.1.31.1.1.1.1\n      type: DisplayString\n";
    for column in columns() {
        let kind = match column.kind {
            "65" | "70" => "counter",
            "4" => "DisplayString",
            "4x" => "PhysAddress48",
            "6" => continue,
            _ => "gauge",
        };
        let name = format!(
            "{}_{}",
            if column.table == IF_TABLE {
                "if"
            } else {
                "ifx"
            },
            column.number
        );
        text.push_str(&format!("  - name: {name}\n    oid: {}.{}\n    type: {kind}\n    indexes:\n    - labelname: ifIndex\n      type: gauge\n{lookups}", column.table, column.number));
    }
    text.push_str(&format!("  version: 2\n  max_repetitions: {EXPORTER_MAX_REPETITIONS}\n  retries: 3\n  timeout: 5s\n  auth:\n    community: public\n"));
    text
}

/// What one side-by-side run measures and how.
pub struct SideBySide {
    pub devices: usize,
    pub interfaces: u32,
    /// Measured rounds, after one round of warm-up (start-up, interface sync, first samples).
    pub rounds: u64,
    /// Seconds between polls of a device, for both.
    pub interval: u64,
    /// The core of the bot and the exporter; the simulators get the other one.
    pub core: usize,
    pub devices_per_simulator: usize,
    /// Variable bindings a simulator answer holds at most (snmpsim's default: 64).
    pub agent_max_varbinds: usize,
    pub snmpbot: std::path::PathBuf,
    /// Runs the bot under this program (e.g. `heaptrack`); its CPU figure then means nothing.
    pub wrap: Option<String>,
    pub exporter: bool,
    /// Extra environment of the bot (e.g. `SNMP_MAX_VARBINDS`, `MALLOC_ARENA_MAX`).
    pub bot_env: Vec<(String, String)>,
}

/// The bot's CPU seconds, device-polls and deliveries at one moment.
struct Snapshot {
    bot_cpu: f64,
    own_cpu: f64,
    polls: f64,
    requests: f64,
    values: u64,
    /// Runs (polls and interface syncs) by unsuccessful outcome: failure, timeout, skip.
    unsuccessful: [f64; 3],
}

/// What one side measured over its rounds.
struct Figures {
    polls: f64,
    cpu: f64,
    peak_rss_mb: f64,
}

impl Figures {
    fn cpu_per_poll(&self) -> f64 {
        self.cpu / self.polls.max(1.0)
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn sleep_until(t: f64) {
    let wait = t - now();
    if wait > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(wait));
    }
}

/// The bot's side of a run: its backend, the bot, and where it serves its metrics.
struct RunningBot {
    backend: e2e::TestBackend,
    bot: Killed,
    metrics: std::net::SocketAddr,
}

impl RunningBot {
    fn snapshot(&self) -> Snapshot {
        use crate::measure::{own_usage, process_cpu, prometheus_value, Who};
        let page = crate::measure::http_get(self.metrics, "/metrics").unwrap_or_default();
        Snapshot {
            bot_cpu: process_cpu(self.bot.0.id()).total.as_secs_f64(),
            own_cpu: own_usage(Who::Myself).0.total.as_secs_f64(),
            polls: prometheus_value(&page, "snmp_requests_per_poll_count"),
            requests: prometheus_value(&page, "snmp_requests_per_poll_sum"),
            values: self.backend.values_written(),
            unsuccessful: ["failure", "timeout", "skip"].map(|outcome| {
                prometheus_value(
                    &page,
                    &format!("collector_runs_total{{outcome=\"{outcome}\"}}"),
                )
            }),
        }
    }
}

impl SideBySide {
    /// Starts the simulators, then measures snmpbot and snmp_exporter on them in turn, each
    /// after one round of warm-up, and prints both and their ratio.
    ///
    /// In turn, not at once: on a 2-core machine the simulators (Python, one core for all) cannot
    /// answer both at once, and each would then be measured on failing polls.
    pub fn run(&self, runtime: &tokio::runtime::Runtime) {
        let scratch = crate::measure::ScratchDir::new("snmpbench").expect("scratch directory");
        let data = scratch.path().join("data");
        std::fs::create_dir_all(&data).expect("data directory");
        write_snmprec(&data, self.interfaces);
        let ports: Vec<u16> = (0..self.devices)
            .map(|_| crate::measure::free_udp_port().expect("free UDP port"))
            .collect();
        let agent_core = usize::from(self.core == 0);
        let _simulators = start_simulators(
            scratch.path(),
            &ports,
            self.devices_per_simulator,
            self.agent_max_varbinds,
            agent_core,
        );
        for (n, &port) in ports.iter().enumerate() {
            let simulator = n / self.devices_per_simulator.max(1);
            wait_for_agent(port, &simulator_log(scratch.path(), simulator));
        }
        println!(
            "{} snmpsim devices (ifTable + ifXTable, {} interfaces, answers of at most {} varbinds) on core {agent_core}",
            self.devices, self.interfaces, self.agent_max_varbinds
        );
        println!(
            "{} rounds of {} s each, snmpbot then snmp_exporter, on core {}",
            self.rounds, self.interval, self.core
        );
        let bot = self.measure_bot(runtime, &ports, scratch.path());
        if self.exporter {
            let exporter = self.measure_exporter(&ports, scratch.path());
            println!(
                "CPU per device-poll, snmpbot / snmp_exporter: {:.2}",
                bot.cpu_per_poll() / exporter.cpu_per_poll().max(f64::MIN_POSITIVE)
            );
        }
    }

    /// The bot's rounds: warm-up, measured rounds, its line; the bot is stopped on return.
    fn measure_bot(&self, runtime: &tokio::runtime::Runtime, ports: &[u16], dir: &Path) -> Figures {
        let running = self.start_bot(runtime, ports, dir);
        let (start, begin) = self.warm_up(&running);
        sleep_until(start + (self.rounds * self.interval) as f64 - 2.0);
        let end = self.wait_for_polls(&running, &begin);
        let figures = Figures {
            polls: end.polls - begin.polls,
            cpu: end.bot_cpu - begin.bot_cpu,
            peak_rss_mb: crate::measure::process_memory_kib(running.bot.0.id(), "VmHWM:") as f64
                / 1024.0,
        };
        println!(
            "snmpbot       {:>6} device-polls  {:>6.1} requests each  {:>8.2} CPU s per 1000 device-polls  peak RSS {:>6.1} MB  ({} values delivered)",
            figures.polls,
            (end.requests - begin.requests) / figures.polls.max(1.0),
            figures.cpu_per_poll() * 1000.0,
            figures.peak_rss_mb,
            end.values - begin.values,
        );
        let requests = (end.requests - begin.requests) / figures.polls.max(1.0);
        let alone = requests_walking_each_column_alone(self.interfaces);
        println!(
            "SNMP requests per device-poll, snmpbot / walking each of the {} columns alone with max-repetitions {EXPORTER_MAX_REPETITIONS} ({alone}): {:.2}",
            columns().len(),
            requests / f64::from(alone),
        );
        let [failed, timed_out, skipped] =
            std::array::from_fn(|i| end.unsuccessful[i] - begin.unsuccessful[i]);
        println!(
            "snmpbot runs (polls and interface syncs) while measured: {failed} failed, {timed_out} timed out, {skipped} skipped{}",
            if failed + timed_out + skipped > 0.0 {
                " (the figures above include them: busy simulators? see the bot's log)"
            } else {
                ""
            }
        );
        println!(
            "test backend (this process) while snmpbot ran: {:.2} CPU s",
            end.own_cpu - begin.own_cpu
        );
        figures
    }

    /// The exporter's rounds: one unmeasured round of scrapes, then `rounds` rounds of one
    /// scrape of every device, spread over half the interval as Prometheus spreads them.
    fn measure_exporter(&self, ports: &[u16], dir: &Path) -> Figures {
        let (exporter, address) = self.start_exporter(dir);
        let spread = self.interval as f64 * 0.5;
        scrape_round(address, ports, spread);
        let cpu = || {
            crate::measure::process_cpu(exporter.0.id())
                .total
                .as_secs_f64()
        };
        let begin = cpu();
        let start = now();
        let mut scrapes = 0;
        for round in 0..self.rounds {
            sleep_until(start + (round * self.interval) as f64);
            scrapes += scrape_round(address, ports, spread);
        }
        let figures = Figures {
            polls: scrapes as f64,
            cpu: cpu() - begin,
            peak_rss_mb: crate::measure::process_memory_kib(exporter.0.id(), "VmHWM:") as f64
                / 1024.0,
        };
        println!(
            "snmp_exporter {:>6} device-polls  {:>6}               {:>8.2} CPU s per 1000 device-polls  peak RSS {:>6.1} MB",
            figures.polls,
            "",
            figures.cpu_per_poll() * 1000.0,
            figures.peak_rss_mb,
        );
        figures
    }

    fn start_bot(
        &self,
        runtime: &tokio::runtime::Runtime,
        ports: &[u16],
        dir: &Path,
    ) -> RunningBot {
        use crate::measure::free_tcp_port;
        let fixture = fixture(ports, self.interval);
        let backend = runtime
            .block_on(e2e::TestBackend::bind(
                "127.0.0.1:0".parse().expect("address"),
                fixture,
            ))
            .expect("start the test backend");
        let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_tcp_port().expect("port"))
            .parse()
            .expect("address");
        let mut bot = match &self.wrap {
            Some(wrapper) => {
                let mut command = Command::new(wrapper);
                command.arg(&self.snmpbot);
                command
            }
            None => Command::new(&self.snmpbot),
        };
        bot.env("BACKEND_URL", backend.url())
            .env("BOT_TOKEN", backend.token(BOT))
            .env("DATA_DIR", dir.join("state"))
            .env("METRICS_ADDRESS", metrics.to_string())
            .env("JOBS_REFRESH_INTERVAL", "600")
            .env("RUST_LOG", "warn")
            .envs(self.bot_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("snmpbot.log")).expect("bot log"));
        let bot = Killed(spawn_pinned(&mut bot, self.core).expect("start snmpbot"));
        RunningBot {
            backend,
            bot,
            metrics,
        }
    }

    fn start_exporter(&self, dir: &Path) -> (Killed, std::net::SocketAddr) {
        let config = dir.join("snmp.yml");
        std::fs::write(&config, exporter_config()).expect("write snmp.yml");
        let address: std::net::SocketAddr = format!(
            "127.0.0.1:{}",
            crate::measure::free_tcp_port().expect("port")
        )
        .parse()
        .expect("address");
        let mut command = Command::new("prometheus-snmp-exporter");
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={address}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_pinned(&mut command, self.core)
            .expect("start prometheus-snmp-exporter (apt-get install prometheus-snmp-exporter)");
        (Killed(child), address)
    }

    /// Waits until every device was polled once, then until just before the next round: the
    /// first measured round starts at the returned time, the snapshot is taken before it.
    fn warm_up(&self, running: &RunningBot) -> (f64, Snapshot) {
        let give_up = now() + 10.0 * self.interval as f64;
        while running.snapshot().polls < self.devices as f64 && now() < give_up {
            std::thread::sleep(Duration::from_secs(1));
        }
        let interval = self.interval as f64;
        let start = (now() / interval).floor() * interval + interval;
        sleep_until(start - 2.0);
        (start, running.snapshot())
    }

    /// The snapshot once the measured rounds' polls have ended and their values arrived: the
    /// bot's firings keep their own phase, so a firing late in the last round may still be
    /// running when the round's time is up (on a loaded machine, seconds later).
    fn wait_for_polls(&self, running: &RunningBot, begin: &Snapshot) -> Snapshot {
        let wanted = begin.polls + (self.devices as u64 * self.rounds) as f64;
        let give_up = now() + self.interval as f64;
        while running.snapshot().polls < wanted && now() < give_up {
            std::thread::sleep(Duration::from_millis(200));
        }
        // Coalesced delivery holds values for up to 50 ms before the POST.
        std::thread::sleep(Duration::from_millis(500));
        running.snapshot()
    }
}

/// Asks the exporter for every device once, spread over `spread` seconds as Prometheus spreads
/// its scrapes; returns how many answered with the interface metrics.
fn scrape_round(exporter: std::net::SocketAddr, ports: &[u16], spread: f64) -> usize {
    let gap = Duration::from_secs_f64(spread / ports.len().max(1) as f64);
    let scrapes: Vec<_> = ports
        .iter()
        .map(|&port| {
            std::thread::sleep(gap);
            std::thread::spawn(move || {
                let path = format!("/snmp?module=if_mib&target=127.0.0.1:{port}");
                let answer =
                    crate::measure::http_get_within(exporter, &path, Duration::from_secs(60));
                answer.is_some_and(|page| page.contains("if_10{"))
            })
        })
        .collect();
    scrapes
        .into_iter()
        .map(|scrape| scrape.join())
        .filter(|answered| matches!(answered, Ok(true)))
        .count()
}
