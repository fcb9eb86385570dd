//! End-to-end tests of the NetFlow bot: the real `netflowbot` binary against the test backend,
//! fed by softflowd captures replayed over UDP (IPv4 and IPv6) and by a live softflowd (Debian
//! package `softflowd`) reading a pcap the test writes.
//!
//! The binary is found with `e2e::process::build("netflowbot", "--bin", "netflowbot")`: it runs
//! `cargo build -p netflowbot --bin netflowbot` once per test process, into the target directory
//! and profile the tests themselves were built with, and returns that path (so a stale binary
//! from another profile or checkout is never picked up).
//!
//! Timing follows the contract: the `aggr/1min/{account}` job first runs 60 s after it is created
//! (that run only starts the window) and then every 60 s, reporting exactly what arrived since
//! its previous run. So each test sends its traffic between the first and the second run and
//! checks the second run's values: about two minutes per test, run in parallel.

use e2e::captures::{replay, softflowd};
use e2e::process::{build, BotProcess};
use e2e::{Fixture, Id, StoredValue, TestBackend};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::time::Instant;

const BOT: Id = 1_620_000_031;
const ACCOUNT: Id = 1_409_000_001;
const OTHER_ACCOUNT: Id = 1_409_000_002;
const CREDENTIAL: Id = 501;
const SENSOR: Id = 502;

/// Seconds in the bot's minute (`NETFLOW_MINUTE`) where a test waits for the 1-minute window:
/// it starts 20 s after the jobs are created and reports 20 s later, enough for a replay.
const MINUTE: u64 = 20;
const FIRST_WINDOW_STARTED: Duration = Duration::from_secs(MINUTE + 1);
const REPORT_WAIT: Duration = Duration::from_secs(100);

fn netflowbot() -> PathBuf {
    build("netflowbot", "--bin", "netflowbot")
}

/// A UDP port free on both IPv4 and IPv6 right now (a dual-stack socket reserves both while
/// the kernel picks it).
fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("[::]:0")
        .or_else(|_| UdpSocket::bind("0.0.0.0:0"))
        .expect("bind a UDP socket");
    socket.local_addr().expect("local address").port()
}

/// One account with NetFlow devices bound to our bot, and another account without any.
fn fixture(devices: &[(Id, &str)]) -> Fixture {
    let mut f = Fixture::new();
    f.account(ACCOUNT, "Acme").account(OTHER_ACCOUNT, "Beta");
    f.systemwide_bot(BOT, "netflow");
    f.credential(ACCOUNT, CREDENTIAL, "netflow", json!({}));
    f.sensor(ACCOUNT, SENSOR, "netflow", None, json!({}));
    for &(id, address) in devices {
        f.device(
            ACCOUNT,
            id,
            &format!("{address} (NetFlow exporter)"),
            address,
        );
        f.bind(id, "netflow", CREDENTIAL, &[(SENSOR, None)], BOT);
    }
    f
}

/// Starts the bot with minutes of [`MINUTE`] seconds and returns it with the moment its jobs
/// were created.
async fn start_bot(backend: &TestBackend, port: u16) -> (BotProcess, Instant) {
    start_bot_with(backend, port, 1, MINUTE).await
}

/// Starts the bot with `JOBS_REFRESH_INTERVAL` = `refresh` seconds and real minutes.
async fn start_bot_refreshing(
    backend: &TestBackend,
    port: u16,
    refresh: u64,
) -> (BotProcess, Instant) {
    start_bot_with(backend, port, refresh, 60).await
}

async fn start_bot_with(
    backend: &TestBackend,
    port: u16,
    refresh: u64,
    minute: u64,
) -> (BotProcess, Instant) {
    let url = backend.url();
    let token = backend.token(BOT);
    let port = port.to_string();
    let refresh = refresh.to_string();
    let minute = minute.to_string();
    let env = [
        ("BACKEND_URL", url.as_str()),
        ("BOT_TOKEN", token.as_str()),
        ("JOBS_REFRESH_INTERVAL", refresh.as_str()),
        ("NETFLOW_PORT", port.as_str()),
        ("NETFLOW_THREADS", "2"),
        ("NETFLOW_MINUTE", minute.as_str()),
    ];
    let bot = BotProcess::start(&netflowbot(), &[], &env);
    bot.wait_for_log("jobs refreshed", Duration::from_secs(60))
        .await;
    (bot, Instant::now())
}

/// The values of the first POST that holds `path`.
async fn report_with(backend: &TestBackend, path: &str) -> BTreeMap<String, f64> {
    let values = backend
        .wait_for_values(ACCOUNT, |v| v.iter().any(|v| v.path == path), REPORT_WAIT)
        .await;
    let t = values
        .iter()
        .find(|v| v.path == path)
        .map(|v| v.t)
        .unwrap_or_default();
    values
        .iter()
        .filter(|v: &&StoredValue| v.t == t)
        .map(|v| (v.path.clone(), v.value))
        .collect()
}

fn under<'a>(report: &'a BTreeMap<String, f64>, prefix: &str) -> BTreeMap<&'a str, f64> {
    report
        .iter()
        .filter_map(|(p, v)| p.strip_prefix(prefix).map(|rest| (rest, *v)))
        .filter(|(rest, _)| !rest.contains('.') || prefix.ends_with("topconn."))
        .collect()
}

/// Bytes of one flow as the captures' truth file sums them (IPv4 plus IPv6).
const CAPTURE_BYTES: f64 = 13_239_795.0 + 3_365_061.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_captures_are_reported_per_entity_and_unknown_exporters_suggested() {
    let port = free_udp_port();
    // Addresses with a port (users add one for SNMP on the same device) still name the exporter.
    let devices = [(120, "127.0.0.2:2055"), (121, "[::1]:9995")];
    let backend = TestBackend::start(fixture(&devices)).await;
    let (mut bot, created) = start_bot(&backend, port).await;
    tokio::time::sleep_until(created + FIRST_WINDOW_STARTED).await;

    let v9 = softflowd("v9");
    let ipfix = softflowd("ipfix");
    let v5 = softflowd("v5");
    tokio::task::spawn_blocking(move || {
        replay("127.0.0.2:0", &format!("127.0.0.1:{port}"), &v9);
        replay("[::1]:0", &format!("[::1]:{port}"), &ipfix);
        // An exporter that is no entity: suggested, never counted.
        replay("127.0.0.3:0", &format!("127.0.0.1:{port}"), &v5);
    })
    .await
    .expect("replay");

    let report = report_with(&backend, "netflow.1min.ingress.entity.120").await;
    let get = |p: &str| report.get(p).copied();
    assert_eq!(get("netflow.1min.ingress.entity.120"), Some(CAPTURE_BYTES));
    assert_eq!(get("netflow.1min.ingress.entity.121"), Some(CAPTURE_BYTES));
    assert_eq!(get("netflow.1min.ingress"), Some(2.0 * CAPTURE_BYTES));
    assert_eq!(get("netflow.1min.egress"), Some(0.0));
    assert_eq!(get("netflow.1min.egress.entity.120"), Some(0.0));
    for entity in [120, 121] {
        let prefix = format!("netflow.1min.ingress.entity.{entity}.");
        let interfaces: f64 = under(&report, &format!("{prefix}if.")).values().sum();
        assert_eq!(interfaces, CAPTURE_BYTES, "entity {entity} interfaces");
        let top = under(&report, &format!("{prefix}topip."));
        assert_eq!(top.len(), 10, "entity {entity} top IPs: {top:?}");
        let protocols = under(&report, &format!("{prefix}topprotocol."));
        assert!(
            protocols.contains_key("TCP") && protocols.contains_key("UDP"),
            "{protocols:?}"
        );
        assert!(protocols.values().sum::<f64>() <= CAPTURE_BYTES);
        assert_eq!(under(&report, &format!("{prefix}topdstports.")).len(), 10);
        assert_eq!(under(&report, &format!("{prefix}topconn.")).len(), 10);
    }

    // maint/suggest_entities runs every 2 minutes (of MINUTE seconds here): every account gets
    // the exporters it has no device for.
    let suggested = |account: Id| {
        let fixture = backend.fixture();
        let mut found: Vec<(String, String)> = fixture
            .entities_of(account)
            .filter_map(|e| {
                let ip = e.details.get("ipv4")?.as_str()?.to_string();
                e.name
                    .ends_with("(NetFlow exporter)")
                    .then(|| (ip, e.name.clone()))
            })
            .collect();
        found.sort();
        found
    };
    let done = backend
        .wait_until(
            |_| (suggested(OTHER_ACCOUNT).len() == 3).then_some(()),
            Duration::from_secs(150),
        )
        .await;
    assert!(
        done.is_some(),
        "suggestions: {:?}",
        suggested(OTHER_ACCOUNT)
    );
    assert_eq!(
        suggested(OTHER_ACCOUNT),
        vec![
            ("127.0.0.2".into(), "127.0.0.2 (NetFlow exporter)".into()),
            ("127.0.0.3".into(), "127.0.0.3 (NetFlow exporter)".into()),
            ("::1".into(), "::1 (NetFlow exporter)".into()),
        ]
    );
    let in_account: Vec<String> = suggested(ACCOUNT).into_iter().map(|(ip, _)| ip).collect();
    assert_eq!(
        in_account,
        vec!["127.0.0.2:2055", "127.0.0.3", "[::1]:9995"],
        "an exporter whose entity's address carries a port is not suggested again"
    );
    assert_eq!(
        backend
            .fixture()
            .entities_of(ACCOUNT)
            .filter(|e| e.details.get("ipv4") == Some(&json!("127.0.0.3")))
            .count(),
        1,
        "one suggestion per exporter"
    );
    backend.assert_no_authorization_header();
    bot.terminate(Duration::from_secs(15)).await;
}

/// Waits for the bot's next job refresh after the `seen` ones, and returns how many it has had.
async fn next_refresh(bot: &BotProcess, seen: usize) -> usize {
    bot.wait_for(
        "the next job refresh",
        |_, err| err.matches("jobs refreshed").count() > seen,
        Duration::from_secs(30),
    )
    .await;
    bot.stderr().matches("jobs refreshed").count()
}

/// The field case: NetFlow is enabled on a device while the bot runs. What the exporter sends
/// before the next job refresh (the bot cannot know yet) and right after it (before any window
/// job ran with the new entity) is all reported. The 15-minute window runs 15 s after its job is
/// (re)created, so this takes about 40 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exporter_enabled_between_two_refreshes_loses_no_flows() {
    const ENABLED: Id = 131;
    let port = free_udp_port();
    let mut fixture = fixture(&[(130, "127.0.0.4")]);
    fixture.device(ACCOUNT, ENABLED, "edge router", "127.0.0.5");
    let backend = TestBackend::start(fixture).await;
    let (mut bot, created) = start_bot_refreshing(&backend, port, 4).await;
    // The account's 15-minute window starts (its first run reports nothing).
    tokio::time::sleep_until(created + Duration::from_secs(17)).await;

    let to = format!("127.0.0.1:{port}");
    let v5 = softflowd("v5");
    let seen = bot.stderr().matches("jobs refreshed").count();
    let refreshes = next_refresh(&bot, seen).await;
    backend.update(|f| {
        f.bind(ENABLED, "netflow", CREDENTIAL, &[(SENSOR, None)], BOT);
    });
    let (sent_to, datagrams) = (to.clone(), v5.clone());
    tokio::task::spawn_blocking(move || {
        replay("127.0.0.5:0", &sent_to, &datagrams);
        // Never an entity: held, then left out.
        replay("127.0.0.6:0", &sent_to, &datagrams);
    })
    .await
    .expect("replay before the refresh");
    assert_eq!(
        bot.stderr().matches("jobs refreshed").count(),
        refreshes,
        "the replay must end before the next refresh"
    );

    next_refresh(&bot, refreshes).await;
    tokio::task::spawn_blocking(move || replay("127.0.0.5:0", &to, &v5))
        .await
        .expect("replay after the refresh");

    let enabled = format!("netflow.15min.ingress.entity.{ENABLED}");
    let report = report_with(&backend, &enabled).await;
    let v5_bytes = 13_239_795.0;
    assert_eq!(report.get(&enabled), Some(&(2.0 * v5_bytes)), "{report:?}");
    assert_eq!(report.get("netflow.15min.ingress.entity.130"), Some(&0.0));
    assert_eq!(report.get("netflow.15min.ingress"), Some(&(2.0 * v5_bytes)));
    bot.wait_for_log("NetFlow records left out", Duration::from_secs(10))
        .await;
    let stderr = bot.stderr();
    assert!(stderr.contains("127.0.0.6"), "{stderr}");
    bot.terminate(Duration::from_secs(15)).await;
}

/// One packet of the test pcap.
struct Packet {
    src: &'static str,
    dst: &'static str,
    protocol: u8,
    src_port: u16,
    dst_port: u16,
    /// IP packet length (header included): what NetFlow counts as octets.
    ip_length: usize,
}

fn ones_complement_sum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame holding `p` (IPv4 or IPv6 by its addresses; TCP or UDP by protocol).
fn frame(p: &Packet) -> Vec<u8> {
    let v6 = p.src.contains(':');
    let ip_header = if v6 { 40 } else { 20 };
    let l4_header = if p.protocol == 6 { 20 } else { 8 };
    let payload = p.ip_length - ip_header - l4_header;
    let mut l4 = Vec::new();
    l4.extend_from_slice(&p.src_port.to_be_bytes());
    l4.extend_from_slice(&p.dst_port.to_be_bytes());
    if p.protocol == 6 {
        l4.extend_from_slice(&1u32.to_be_bytes());
        l4.extend_from_slice(&1u32.to_be_bytes());
        l4.extend_from_slice(&[5 << 4, 0x18]); // ACK|PSH
        l4.extend_from_slice(&65535u16.to_be_bytes());
        l4.extend_from_slice(&[0, 0, 0, 0]);
    } else {
        l4.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
    }
    l4.extend(std::iter::repeat_n(b'x', payload));
    let mut out = vec![
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
    ];
    if v6 {
        out.extend_from_slice(&[0x86, 0xdd]);
        out.extend_from_slice(&[0x60, 0, 0, 0]);
        out.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        out.extend_from_slice(&[p.protocol, 64]);
        out.extend_from_slice(&p.src.parse::<Ipv6Addr>().unwrap().octets());
        out.extend_from_slice(&p.dst.parse::<Ipv6Addr>().unwrap().octets());
    } else {
        out.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(p.ip_length as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 1, 0, 0, 64, p.protocol, 0, 0]);
        ip.extend_from_slice(&p.src.parse::<Ipv4Addr>().unwrap().octets());
        ip.extend_from_slice(&p.dst.parse::<Ipv4Addr>().unwrap().octets());
        let checksum = ones_complement_sum(&ip);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        out.extend_from_slice(&ip);
    }
    out.extend_from_slice(&l4);
    out
}

fn write_pcap(path: &Path, packets: &[Packet]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
    for (i, p) in packets.iter().enumerate() {
        let f = frame(p);
        out.extend_from_slice(&(1_700_000_000u32 + i as u32 / 10).to_le_bytes());
        out.extend_from_slice(&((i as u32 % 10) * 100_000).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&f);
    }
    std::fs::write(path, out).expect("write pcap");
}

/// The traffic of the live softflowd test: a few large flows, twelve small ones (so top lists
/// are cut at 10), IPv6, TCP and UDP. Sizes are distinct so no tie decides a top list.
fn traffic() -> Vec<Packet> {
    let mut packets = Vec::new();
    let mut add = |src, dst, protocol, dst_port, sizes: &[usize]| {
        for &ip_length in sizes {
            packets.push(Packet {
                src,
                dst,
                protocol,
                src_port: 40000,
                dst_port,
                ip_length,
            });
        }
    };
    add(
        "10.0.0.1",
        "10.0.0.2",
        6,
        443,
        &[1500, 1500, 1500, 1400, 1300, 52, 52, 52],
    );
    add("10.0.0.3", "10.0.0.4", 17, 53, &[78, 90, 102]);
    add("192.0.2.50", "10.0.0.2", 6, 22, &[600, 700, 800]);
    add("2001:db8::5", "2001:db8::6", 17, 123, &[200, 220, 240, 260]);
    const SMALL: [&str; 12] = [
        "10.1.0.1",
        "10.1.0.2",
        "10.1.0.3",
        "10.1.0.4",
        "10.1.0.5",
        "10.1.0.6",
        "10.1.0.7",
        "10.1.0.8",
        "10.1.0.9",
        "10.1.0.10",
        "10.1.0.11",
        "10.1.0.12",
    ];
    for (i, src) in SMALL.iter().enumerate() {
        // Source above destination: softflowd reports these as egress (see `direction`).
        add(src, "10.0.0.9", 17, 9000 + i as u16, &[100 + i * 3]);
    }
    const LOW: [&str; 12] = [
        "10.0.1.1",
        "10.0.1.2",
        "10.0.1.3",
        "10.0.1.4",
        "10.0.1.5",
        "10.0.1.6",
        "10.0.1.7",
        "10.0.1.8",
        "10.0.1.9",
        "10.0.1.10",
        "10.0.1.11",
        "10.0.1.12",
    ];
    for (i, src) in LOW.iter().enumerate() {
        add(src, "10.3.0.1", 6, 8000 + i as u16, &[150 + i * 3]);
    }
    packets
}

/// softflowd tracks each conversation as one bidirectional flow keyed by its two addresses in
/// ascending byte order, and exports each half with DIRECTION 0 (ingress) when its source is the
/// lower address, 1 (egress) otherwise.
fn egress(p: &Packet) -> bool {
    let octets = |a: &str| -> Vec<u8> {
        match a.parse::<std::net::IpAddr>().unwrap() {
            std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
            std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
        }
    };
    octets(p.src) > octets(p.dst)
}

/// Expected sums of one direction, as contract §5.11 defines them.
#[derive(Default)]
struct Expected {
    total: f64,
    hosts: BTreeMap<String, f64>,
    protocols: BTreeMap<String, f64>,
    ports: BTreeMap<String, f64>,
    connections: BTreeMap<String, f64>,
}

/// The top `n` of `sums` by value (distinct values: no ties).
fn top_n(sums: &BTreeMap<String, f64>, n: usize) -> BTreeMap<String, f64> {
    let mut all: Vec<(&String, &f64)> = sums.iter().collect();
    all.sort_by(|a, b| b.1.total_cmp(a.1));
    all.into_iter()
        .take(n)
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn segment(ip: &str) -> String {
    ip.replace('.', "%2e").replace(':', "%3a")
}

/// Runs softflowd on `pcap`, exporting NetFlow v9 to the bot. Debian's softflowd 1.1.0 in `-r`
/// mode waits on its control socket before reading the file, so the test nudges it with
/// `softflowctl statistics` until it reaches the end of the file, exports and exits.
fn run_softflowd(dir: &Path, pcap: &Path, port: u16) {
    let control = dir.join("softflowd.ctl");
    let mut softflowd = Command::new("softflowd")
        .arg("-r")
        .arg(pcap)
        .args(["-n", &format!("127.0.0.1:{port}"), "-v", "9", "-d"])
        .arg("-c")
        .arg(&control)
        .arg("-p")
        .arg(dir.join("softflowd.pid"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("softflowd (apt package softflowd) runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = softflowd.try_wait().expect("softflowd status") {
            assert!(status.success(), "softflowd failed: {status}");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "softflowd did not finish"
        );
        if control.exists() {
            let _ = Command::new("softflowctl")
                .arg("-c")
                .arg(&control)
                .arg("statistics")
                .output();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_softflowd_export_is_reported_exactly() {
    let port = free_udp_port();
    let backend = TestBackend::start(fixture(&[(130, "127.0.0.1")])).await;
    let (mut bot, created) = start_bot(&backend, port).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join("traffic.pcap");
    let packets = traffic();
    write_pcap(&pcap, &packets);

    // What the values must be, computed from the packets: ingress counts the source address,
    // egress the destination.
    let mut expected: [Expected; 2] = Default::default();
    for p in &packets {
        let out = egress(p);
        let e = &mut expected[usize::from(out)];
        let bytes = p.ip_length as f64;
        e.total += bytes;
        let host = if out { p.dst } else { p.src };
        *e.hosts.entry(segment(host)).or_insert(0.0) += bytes;
        let name = if p.protocol == 6 { "TCP" } else { "UDP" };
        *e.protocols.entry(name.to_string()).or_insert(0.0) += bytes;
        *e.ports.entry(p.dst_port.to_string()).or_insert(0.0) += bytes;
        let conn = format!("{}.{}", segment(p.src), segment(p.dst));
        *e.connections.entry(conn).or_insert(0.0) += bytes;
    }

    tokio::time::sleep_until(created + FIRST_WINDOW_STARTED).await;
    let dir_path = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || run_softflowd(&dir_path, &pcap, port))
        .await
        .expect("softflowd");

    let report = report_with(&backend, "netflow.1min.ingress.entity.130").await;
    let as_map = |m: BTreeMap<&str, f64>| -> BTreeMap<String, f64> {
        m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    };
    for (direction, e) in ["ingress", "egress"].iter().zip(&expected) {
        let p = format!("netflow.1min.{direction}.entity.130");
        assert_eq!(report.get(&p), Some(&e.total), "{p}");
        assert_eq!(
            report.get(&format!("netflow.1min.{direction}")),
            Some(&e.total)
        );
        // softflowd reading a file knows no interfaces: everything is on interface 0.
        assert_eq!(report.get(&format!("{p}.if.0")), Some(&e.total));
        let top_hosts = top_n(&e.hosts, 10);
        assert_eq!(
            as_map(under(&report, &format!("{p}.topip."))),
            top_hosts,
            "{p}"
        );
        assert_eq!(
            as_map(under(&report, &format!("{p}.if.0.topip."))),
            top_hosts,
            "{p}"
        );
        assert_eq!(
            as_map(under(&report, &format!("{p}.topprotocol."))),
            e.protocols
        );
        assert_eq!(
            as_map(under(&report, &format!("{p}.if.0.topprotocol."))),
            e.protocols
        );
        assert_eq!(
            as_map(under(&report, &format!("{p}.topdstports."))),
            top_n(&e.ports, 10),
            "{p}"
        );
        assert_eq!(
            as_map(under(&report, &format!("{p}.topconn."))),
            top_n(&e.connections, 10),
            "{p}"
        );
    }
    // Both directions hold more than ten hosts, ports and connections: the lists were cut.
    assert!(expected
        .iter()
        .all(|e| e.hosts.len() > 10 || e.connections.len() > 10));
    assert!(
        report.keys().any(|k| k.contains("2001%3adb8%3a%3a5")),
        "the IPv6 flow is among the top lists"
    );
    bot.terminate(Duration::from_secs(15)).await;
}
