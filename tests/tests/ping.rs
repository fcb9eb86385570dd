//! End-to-end tests of the ping bot: the real `pingbot` binary against the test backend (or in
//! standalone mode), with real ICMP.
//!
//! The binary is built by `e2e::process::build("pingbot", "--bin", "pingbot")`, which runs
//! `cargo build -p pingbot --bin pingbot` once per test process into the tests' own target
//! directory (`CARGO_BIN_EXE_*` exists only for binaries of the test's own package).
//!
//! Peers: loopback addresses answer (127.0.0.0/8, ::1). A host that never answers is built for
//! each test: a network namespace the test creates and deletes, joined to this namespace by a
//! veth pair, whose kernel is told to ignore echo requests (its ICMP counters show how many
//! arrived); an address of that link that nobody holds stands for a host that is gone. The tests
//! need root and iproute2 (`ip`), util-linux (`unshare`, `setpriv`); they fail, never skip,
//! without them.

use e2e::process::{build, BotProcess};
use e2e::{Fixture, Id, StoredValue, TestBackend, WriteMethod};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const BOT: Id = 1_620_000_012;
const OTHER_BOT: Id = 1_620_000_099;
const ACCOUNT: Id = 1_409_012_345;
const WAIT: Duration = Duration::from_secs(40);

fn pingbot() -> PathBuf {
    build("pingbot", "--bin", "pingbot")
}

fn start_bot(backend: &TestBackend, extra: &[(&str, &str)]) -> BotProcess {
    let url = backend.url();
    let token = backend.token(BOT);
    let mut env = vec![
        ("BACKEND_URL", url.as_str()),
        ("BOT_TOKEN", token.as_str()),
        ("JOBS_REFRESH_INTERVAL", "1"),
    ];
    env.extend_from_slice(extra);
    BotProcess::start(&pingbot(), &[], &env)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn value_of(values: &[StoredValue], path: &str) -> Option<f64> {
    values.iter().find(|v| v.path == path).map(|v| v.value)
}

fn paths_of(values: &[StoredValue], entity: Id) -> BTreeSet<String> {
    let prefix = format!("entity.{entity}.");
    values
        .iter()
        .filter(|v| v.path.starts_with(&prefix))
        .map(|v| v.path.clone())
        .collect()
}

fn has_success(values: &[StoredValue], entity: Id) -> bool {
    value_of(values, &format!("entity.{entity}.ping.success")).is_some()
}

/// Paths of one run of `n` packets, all answered.
fn answered_paths(entity: Id, n: usize) -> BTreeSet<String> {
    let mut paths: BTreeSet<String> = (0..n)
        .flat_map(|i| {
            [
                format!("entity.{entity}.ping.p{i}.ok"),
                format!("entity.{entity}.ping.p{i}.rtt"),
            ]
        })
        .collect();
    for tail in [
        "success",
        "loss",
        "rtt.min",
        "rtt.avg",
        "rtt.max",
        "rtt.stddev",
    ] {
        paths.insert(format!("entity.{entity}.ping.{tail}"));
    }
    paths
}

/// Paths of one run of `n` packets, none answered: no rtt of any kind.
fn unanswered_paths(entity: Id, n: usize) -> BTreeSet<String> {
    let mut paths: BTreeSet<String> = (0..n)
        .map(|i| format!("entity.{entity}.ping.p{i}.ok"))
        .collect();
    paths.insert(format!("entity.{entity}.ping.success"));
    paths.insert(format!("entity.{entity}.ping.loss"));
    paths
}

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (is it installed?): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn output_of(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        output.status
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A host that receives echo requests and never answers: the far end of a veth pair in a
/// network namespace of its own, with `icmp_echo_ignore_all` set there. Deleted on drop.
struct SilentPeer {
    namespace: String,
    /// Our end of the link.
    link: String,
    /// The silent host's IPv4 and IPv6 addresses.
    v4: String,
    v6: String,
    /// An address on the same link that no host holds.
    nobody_v4: String,
}

impl SilentPeer {
    fn create() -> SilentPeer {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        // A /29 and a /64 per peer, from the benchmarking range 198.18.0.0/15 and a ULA prefix.
        let third = 10 + pid % 200;
        let fourth = (n % 32) * 8;
        let v4 = |host: u32| format!("198.18.{third}.{}", fourth + host);
        let v6 = |host: u32| format!("fd00:5062:{:x}:{n:x}::{host}", pid % 0xffff);
        let peer = SilentPeer {
            namespace: format!("pingbot-e2e-{pid}-{n}"),
            link: format!("pbe{}{n}", pid % 100_000),
            v4: v4(2),
            v6: v6(2),
            nobody_v4: v4(3),
        };
        let far_end = format!("{}p", peer.link);
        let ns = peer.namespace.as_str();
        run("ip", &["netns", "add", ns]);
        run(
            "ip",
            &[
                "link", "add", &peer.link, "type", "veth", "peer", "name", &far_end, "netns", ns,
            ],
        );
        run(
            "ip",
            &["addr", "add", &format!("{}/29", v4(1)), "dev", &peer.link],
        );
        run(
            "ip",
            &[
                "-6",
                "addr",
                "add",
                &format!("{}/64", v6(1)),
                "dev",
                &peer.link,
                "nodad",
            ],
        );
        run("ip", &["link", "set", &peer.link, "up"]);
        let inside = format!(
            "ip addr add {v4}/29 dev {far_end} && \
             ip -6 addr add {v6}/64 dev {far_end} nodad && \
             ip link set {far_end} up && ip link set lo up && \
             echo 1 > /proc/sys/net/ipv4/icmp_echo_ignore_all && \
             echo 1 > /proc/sys/net/ipv6/icmp/echo_ignore_all",
            v4 = peer.v4,
            v6 = peer.v6,
        );
        run("ip", &["netns", "exec", ns, "sh", "-c", &inside]);
        peer
    }

    /// Makes the host answer echo requests from now on.
    fn start_answering(&self) {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.namespace,
                "sh",
                "-c",
                "echo 0 > /proc/sys/net/ipv4/icmp_echo_ignore_all",
            ],
        );
    }

    /// Echo requests that reached the silent host: (IPv4, IPv6).
    fn echo_requests(&self) -> (u64, u64) {
        let ns = self.namespace.as_str();
        let snmp = output_of("ip", &["netns", "exec", ns, "cat", "/proc/net/snmp"]);
        let lines: Vec<&str> = snmp.lines().filter(|l| l.starts_with("IcmpMsg:")).collect();
        let v4 = match lines.as_slice() {
            [names, counts] => names
                .split_whitespace()
                .zip(counts.split_whitespace())
                .find(|(name, _)| *name == "InType8")
                .and_then(|(_, count)| count.parse().ok())
                .unwrap_or(0),
            _ => 0,
        };
        let snmp6 = output_of("ip", &["netns", "exec", ns, "cat", "/proc/net/snmp6"]);
        let v6 = snmp6
            .lines()
            .find_map(|l| l.strip_prefix("Icmp6InEchos"))
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or(0);
        (v4, v6)
    }
}

impl Drop for SilentPeer {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, and with it ours.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[tokio::test]
async fn loopback_hosts_get_the_original_values_and_the_extras() {
    let mut f = Fixture::new();
    f.account(ACCOUNT, "Acme");
    f.systemwide_bot(BOT, "ping");
    f.systemwide_bot(OTHER_BOT, "ping");
    // As the UI stores it: strings.
    f.credential(
        ACCOUNT,
        11,
        "ping",
        json!({"n_packets": "2", "sleep_packets": "0.2", "timeout": "1.0", "retry": "0"}),
    );
    f.credential(ACCOUNT, 12, "ping", json!({"timeout": "soon"}));
    f.sensor(ACCOUNT, 21, "ping", Some(60), json!({}));
    f.sensor(ACCOUNT, 22, "ping", None, json!({}));
    let mut answering: Vec<(Id, String)> = vec![
        (1001, "127.0.0.1".into()),
        (1002, "::1".into()),
        (1003, "localhost".into()),
    ];
    for i in 1..=20 {
        answering.push((1010 + i, format!("127.0.3.{i}")));
    }
    for (id, address) in &answering {
        f.device(ACCOUNT, *id, &format!("device {id}"), address);
        f.bind(*id, "ping", 11, &[(21, Some(1))], BOT);
    }
    // No interval anywhere: no job. Bad credential, bad address: a failing job each.
    // Another bot's device: not ours.
    f.device(ACCOUNT, 1100, "no interval", "127.0.0.1");
    f.bind(1100, "ping", 11, &[(22, None)], BOT);
    f.device(ACCOUNT, 1101, "bad credential", "127.0.0.1");
    f.bind(1101, "ping", 12, &[(21, Some(1))], BOT);
    f.device(ACCOUNT, 1102, "bad address", "not an address!");
    f.bind(1102, "ping", 11, &[(21, Some(1))], BOT);
    f.device(ACCOUNT, 1103, "other bot", "127.0.0.1");
    f.bind(1103, "ping", 11, &[(21, Some(1))], OTHER_BOT);

    let backend = TestBackend::start(f).await;
    let mut bot = start_bot(&backend, &[]);
    let values = backend
        .wait_for_values(
            ACCOUNT,
            |v| answering.iter().all(|(id, _)| has_success(v, *id)),
            WAIT,
        )
        .await;
    for (id, address) in &answering {
        assert_eq!(paths_of(&values, *id), answered_paths(*id, 2), "{address}");
        let at = |tail: &str| value_of(&values, &format!("entity.{id}.ping.{tail}"));
        assert_eq!(at("p0.ok"), Some(1.0), "{address}");
        assert_eq!(at("p1.ok"), Some(1.0), "{address}");
        assert_eq!(at("success"), Some(1.0), "{address}");
        assert_eq!(at("loss"), Some(0.0), "{address}");
        for tail in ["p0.rtt", "p1.rtt", "rtt.min", "rtt.avg", "rtt.max"] {
            let rtt = at(tail).unwrap();
            // Measured by the kernel's clock: never 0, and on loopback far below 0.2 s.
            assert!(rtt > 0.0 && rtt < 0.2, "{address} {tail}: {rtt} s");
        }
        assert!(at("rtt.min") <= at("rtt.avg") && at("rtt.avg") <= at("rtt.max"));
    }
    assert!(values.iter().all(|v| v.method == WriteMethod::Post));

    bot.wait_for(
        "the failing entities' errors",
        |_, log| {
            log.lines()
                .any(|l| l.contains("job failed") && l.contains("1101") && l.contains("`timeout`"))
                && log.lines().any(|l| {
                    l.contains("job failed") && l.contains("1102") && l.contains("not an address!")
                })
        },
        WAIT,
    )
    .await;
    let values = backend.values(ACCOUNT);
    for id in [1100, 1101, 1102, 1103] {
        assert!(paths_of(&values, id).is_empty(), "entity {id} has values");
    }
    let log = bot.stderr();
    assert!(log.contains("ICMP raw socket open"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("1100") && l.contains("without an interval")),
        "{log}"
    );
    let status = bot.terminate(WAIT).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_host_that_never_answers_gets_ok_0_no_rtt_success_0_after_all_attempts() {
    let peer = SilentPeer::create();
    let mut f = Fixture::new();
    f.account(ACCOUNT, "Acme");
    f.systemwide_bot(BOT, "ping");
    // Numbers this time. Each packet: 3 attempts 0.3 s apart, 0.9 s in all.
    f.credential(
        ACCOUNT,
        11,
        "ping",
        json!({"n_packets": 2, "sleep_packets": 0.3, "timeout": 0.9, "retry": 2}),
    );
    f.sensor(ACCOUNT, 21, "ping", Some(60), json!({}));
    let silent_v4 = 2001;
    let silent_v6 = 2002;
    let nobody = 2003;
    let loopback = 2004;
    for (id, address) in [
        (silent_v4, peer.v4.as_str()),
        (silent_v6, peer.v6.as_str()),
        (nobody, peer.nobody_v4.as_str()),
        (loopback, "127.0.0.1"),
    ] {
        f.device(ACCOUNT, id, &format!("device {id}"), address);
        f.bind(id, "ping", 11, &[(21, Some(6))], BOT);
    }
    let backend = TestBackend::start(f).await;
    let metrics_address = format!("127.0.0.1:{}", free_port());
    let mut bot = start_bot(&backend, &[("METRICS_ADDRESS", metrics_address.as_str())]);
    let values = backend
        .wait_for_values(
            ACCOUNT,
            |v| {
                [silent_v4, silent_v6, nobody, loopback]
                    .iter()
                    .all(|&id| has_success(v, id))
            },
            WAIT,
        )
        .await;
    // Read at once: the next firing is 6 s after the first, which took 2.1 s.
    let (requests_v4, requests_v6) = peer.echo_requests();
    assert_eq!(
        requests_v4,
        2 * 3,
        "2 packets x (1 + 2 retries) reached the silent IPv4 host"
    );
    assert_eq!(requests_v6, 2 * 3, "the same for IPv6");

    for id in [silent_v4, silent_v6, nobody] {
        assert_eq!(
            paths_of(&values, id),
            unanswered_paths(id, 2),
            "entity {id}"
        );
        let at = |tail: &str| value_of(&values, &format!("entity.{id}.ping.{tail}"));
        assert_eq!(at("p0.ok"), Some(0.0));
        assert_eq!(at("p1.ok"), Some(0.0));
        assert_eq!(at("success"), Some(0.0));
        assert_eq!(at("loss"), Some(1.0));
    }
    assert_eq!(paths_of(&values, loopback), answered_paths(loopback, 2));

    // The firing started all four at once; the silent hosts' runs took the whole timeout of
    // both packets plus the pause (2.1 s), the loopback's only the pause (0.3 s).
    let posted_at = |id: Id| {
        values
            .iter()
            .find(|v| v.path == format!("entity.{id}.ping.success"))
            .map(|v| v.t)
            .unwrap()
    };
    let extra = posted_at(silent_v4) - posted_at(loopback);
    assert!(
        (1.6..2.6).contains(&extra),
        "a silent host's run lasts 2 x timeout longer: {extra:.3} s"
    );

    // The engine's counters after the first firing: 3 hosts x 2 packets x 3 attempts unanswered,
    // the loopback's 2 packets answered at the first attempt.
    let page = e2e::metrics::page(&metrics_address).await;
    let counter = |name: &str| {
        e2e::metrics::sample(&page, name)
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{page}"))
    };
    assert_eq!(counter("collector_ping_echo_requests_sent_total"), 20.0);
    assert_eq!(counter("collector_ping_echo_replies_total"), 2.0);
    assert_eq!(counter("collector_ping_timeouts_total"), 6.0);
    assert_eq!(counter("collector_ping_invalid_rtts_total"), 0.0);
    let status = bot.terminate(WAIT).await;
    assert!(status.success(), "{status:?}");
}

/// A jobs file pinging loopback addresses every second.
fn jobs_file(dir: &std::path::Path) -> PathBuf {
    let mut text = String::from(
        r#"
[[credentials]]
id = 1
protocol = "ping"
details = { n_packets = 1, timeout = "1.0" }

[[sensors]]
id = 10
protocol = "ping"
default_interval = 1
"#,
    );
    let addresses = ["127.0.0.1", "::1", "127.0.4.1", "127.0.4.2", "127.0.4.3"];
    for (i, address) in addresses.iter().enumerate() {
        text.push_str(&format!(
            "\n[[entities]]\nid = {}\nname = \"{address}\"\ndetails = {{ ipv4 = \"{address}\" }}\n\
             protocols.ping = {{ credential = 1, sensors = [{{ sensor = 10 }}] }}\n",
            i + 1
        ));
    }
    let path = dir.join("jobs.toml");
    std::fs::write(&path, text).expect("write jobs file");
    path
}

/// The JSON lines a standalone bot printed, each checked to be exactly `{"p", "v", "t"}`.
fn json_lines(lines: &[String]) -> Vec<(String, f64, f64)> {
    lines
        .iter()
        .map(|line| {
            let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON object: {line}: {e}"));
            let keys: Vec<&str> = object.keys().map(String::as_str).collect();
            assert_eq!(keys.len(), 3, "{line}");
            let p = object["p"].as_str().expect("p is text").to_string();
            let v = object["v"].as_f64().expect("v is a number");
            let t = object["t"].as_f64().expect("t is a number");
            (p, v, t)
        })
        .collect()
}

fn printed_success(lines: &[String], entity: u32) -> bool {
    let needle = format!("\"entity.{entity}.ping.success\"");
    lines.iter().any(|l| l.contains(&needle))
}

#[tokio::test]
async fn standalone_with_a_jobs_file_prints_json_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = jobs_file(dir.path());
    let jobs = jobs.to_str().unwrap();
    let mut bot = BotProcess::start(&pingbot(), &["--jobs", jobs], &[]);
    bot.wait_for(
        "a run of each entity",
        |out, _| (1..=5).all(|id| printed_success(out, id)),
        WAIT,
    )
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let printed = json_lines(&bot.stdout_lines());
    for id in 1..=5 {
        let of = |tail: &str| {
            printed
                .iter()
                .find(|(p, _, _)| *p == format!("entity.{id}.ping.{tail}"))
                .map(|(_, v, t)| (*v, *t))
        };
        assert_eq!(of("p0.ok").map(|x| x.0), Some(1.0), "entity {id}");
        assert_eq!(of("success").map(|x| x.0), Some(1.0), "entity {id}");
        let (rtt, t) = of("p0.rtt").expect("rtt printed");
        assert!(rtt > 0.0 && rtt < 0.2, "entity {id}: rtt {rtt} s");
        assert!(
            (now - 30.0..=now + 1.0).contains(&t),
            "t is the Unix time: {t}"
        );
    }
    let status = bot.terminate(WAIT).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn standalone_without_a_file_pings_both_loopbacks() {
    // The embedded jobs are bots/ping/example-jobs.toml: 127.0.0.1 every 10 s, ::1 every 15 s.
    let mut bot = BotProcess::start(&pingbot(), &["--standalone"], &[]);
    bot.wait_for(
        "the embedded jobs' first runs (10 s and 15 s intervals)",
        |out, _| printed_success(out, 1001) && printed_success(out, 1002),
        WAIT,
    )
    .await;
    let printed = json_lines(&bot.stdout_lines());
    for id in [1001, 1002] {
        for i in 0..3 {
            let ok = format!("entity.{id}.ping.p{i}.ok");
            assert!(
                printed.iter().any(|(p, v, _)| *p == ok && *v == 1.0),
                "{ok} = 1 in {printed:?}"
            );
        }
    }
    let status = bot.terminate(WAIT).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn without_any_icmp_permission_the_bot_says_what_to_grant() {
    // A fresh network namespace has net.ipv4.ping_group_range "1 0"; setpriv removes CAP_NET_RAW.
    let bot_path = pingbot();
    let mut bot = BotProcess::start(
        std::path::Path::new("unshare"),
        &[
            "--net",
            "setpriv",
            "--bounding-set",
            "-net_raw",
            bot_path.to_str().unwrap(),
            "--standalone",
        ],
        &[],
    );
    let status = bot.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(1), "{}", bot.stderr());
    let log = bot.stderr();
    for needed in [
        "cannot open an ICMP socket (IPv4: permission denied; IPv6: permission denied)",
        "CAP_NET_RAW",
        "net.ipv4.ping_group_range=\"0 0\"",
        "currently \"1 0\"",
    ] {
        assert!(log.contains(needed), "{needed} missing from:\n{log}");
    }
}

#[tokio::test]
async fn where_ping_group_range_allows_it_the_bot_pings_without_privileges() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = jobs_file(dir.path());
    let script = format!(
        "ip link set lo up && echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range && \
         exec setpriv --bounding-set -net_raw {} --jobs {}",
        pingbot().display(),
        jobs.display()
    );
    let mut bot = BotProcess::start(
        std::path::Path::new("unshare"),
        &["--net", "sh", "-c", &script],
        &[],
    );
    bot.wait_for(
        "a run of each entity",
        |out, _| (1..=5).all(|id| printed_success(out, id)),
        WAIT,
    )
    .await;
    let printed = json_lines(&bot.stdout_lines());
    for id in 1..=5 {
        let success = format!("entity.{id}.ping.success");
        assert!(printed.iter().any(|(p, v, _)| *p == success && *v == 1.0));
    }
    let log = bot.stderr();
    assert!(
        log.contains("ICMP unprivileged datagram socket open family=\"IPv4\"")
            && log.contains("ICMP unprivileged datagram socket open family=\"IPv6\""),
        "{log}"
    );
    let status = bot.terminate(WAIT).await;
    assert!(status.success(), "{status:?}");
}

/// `PingHostDown` states in notices (JSON lines on stdout or webhook bodies).
fn host_down_states<'a>(notices: impl Iterator<Item = &'a str>) -> Vec<String> {
    notices
        .filter_map(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .filter(|json| json["alert"]["name"] == "PingHostDown")
        .map(|json| json["alert"]["state"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn a_silent_host_that_starts_answering_fires_and_resolves_ping_host_down_once_at_every_sink()
{
    let peer = SilentPeer::create();
    let sinks = e2e::alert_sinks::AlertSinks::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = dir.path().join("jobs.toml");
    let text = format!(
        "[[credentials]]\nid = 1\nprotocol = \"ping\"\n\
         details = {{ n_packets = 1, timeout = \"0.5\" }}\n\n\
         [[sensors]]\nid = 10\nprotocol = \"ping\"\ndefault_interval = 1\n\n\
         [[entities]]\nid = 7\nname = \"silent\"\ndetails = {{ ipv4 = \"{}\" }}\n\
         protocols.ping = {{ credential = 1, sensors = [{{ sensor = 10 }}] }}\n",
        peer.v4
    );
    std::fs::write(&jobs, text).expect("write jobs file");
    let env = sinks.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args = ["--jobs", jobs.to_str().expect("utf-8")];
    let bot = BotProcess::start(&pingbot(), &args, &env);
    bot.wait_for(
        "PingHostDown firing on stdout",
        |out, _| host_down_states(out.iter().map(String::as_str)) == ["firing"],
        WAIT,
    )
    .await;
    sinks.wait_for("PingHostDown", "7", &["firing"], WAIT).await;
    sinks.assert_labels(
        "PingHostDown",
        "7",
        &[
            ("bot", "ping"),
            ("entity_name", "silent"),
            ("account", "1"),
            ("address", peer.v4.as_str()),
        ],
    );

    // kill -9 while the host is silent: the alert stays firing and is not announced again.
    let data_dir = bot.kill().await;
    let bot = BotProcess::start_in(&pingbot(), &args, &env, data_dir);
    let runs = |out: &[String]| {
        out.iter()
            .filter(|l| l.contains("\"entity.7.ping.success\""))
            .count()
    };
    bot.wait_for(
        "two bad runs after the restart",
        |out, _| runs(out) >= 2,
        WAIT,
    )
    .await;
    assert!(host_down_states(bot.stdout_lines().iter().map(String::as_str)).is_empty());

    peer.start_answering();
    bot.wait_for(
        "PingHostDown resolved on stdout",
        |out, _| host_down_states(out.iter().map(String::as_str)) == ["resolved"],
        WAIT,
    )
    .await;
    sinks
        .wait_for("PingHostDown", "7", &["firing", "resolved"], WAIT)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let once = ["firing", "resolved"].map(String::from).to_vec();
    assert_eq!(
        sinks.states("PingHostDown", "7"),
        [once.clone(), once.clone(), once],
        "exactly one of each at Alertmanager, the webhook and DataKit"
    );
}
