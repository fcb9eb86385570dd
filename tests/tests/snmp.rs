//! End-to-end tests of `snmpbot`: the real binary (built with `cargo build -p snmpbot` by
//! `e2e::process::build`, into the same target directory as the tests) against the test backend
//! and a real net-snmp snmpd on a loopback port (`bots/snmp/tests/support/snmpd.rs`).
//!
//! Needs the Debian packages `snmpd` (the agent) and `snmp` (`snmpwalk`, the reference for the
//! interface list).

#[path = "../../bots/snmp/tests/support/snmpd.rs"]
mod snmpd;

use e2e::process::{build, BotProcess};
use e2e::{Bot, Entity, Fixture, Id, StoredValue, TestBackend};
use serde_json::{json, Value as Json};
use snmpd::{PassObject, Snmpd, COMMUNITY, PASS_BASE, V3_AUTH_KEY, V3_PRIV_KEY, V3_USER};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const BOT: Id = 1_620_000_021;
const ACCOUNT: Id = 1_409_012_345;
const DEVICE: Id = 1_348_300_224;
const OTHER_DEVICE: Id = 1_348_300_225;
const V2C: Id = 731_002_101;
const V3_GOOD: Id = 731_002_102;
const V3_WRONG: Id = 731_002_103;
const UPTIME_SENSOR: Id = 842_003_201;
const GAUGE_SENSOR: Id = 842_003_202;
const RATE_SENSOR: Id = 842_003_203;
const WAIT: Duration = Duration::from_secs(30);

fn snmpbot() -> PathBuf {
    build("snmpbot", "--bin", "snmpbot")
}

fn oid(suffix: &str) -> String {
    format!("{}.{suffix}", PASS_BASE.trim_start_matches('.'))
}

fn sensor_details(oids: &[(&str, &str)], expression: &str, output_path: &str) -> Json {
    let oids: Vec<Json> = oids
        .iter()
        .map(|(oid, method)| json!({"oid": oid, "fetch_method": method}))
        .collect();
    json!({"oids": oids, "expression": expression, "output_path": output_path})
}

fn agent_objects() -> Vec<PassObject> {
    vec![
        PassObject::fixed(&oid("1.1"), "string", "eth0"),
        PassObject::fixed(&oid("1.2"), "string", "Core 6"),
        PassObject::fixed(&oid("2.1"), "gauge", "100"),
        PassObject::fixed(&oid("2.2"), "gauge", "200"),
        PassObject::rate(&oid("3.1"), "counter", 1000, 0, 1 << 32),
        PassObject::rate(&oid("3.2"), "counter", 2000, 5, 1 << 32),
    ]
}

/// One account with a systemwide SNMP bot, the credentials and the three sensors.
fn base_fixture() -> Fixture {
    let mut f = Fixture::new();
    f.account(ACCOUNT, "Acme").systemwide_bot(BOT, "snmp");
    f.credential(
        ACCOUNT,
        V2C,
        "snmp",
        json!({"version": "snmpv2c", "snmpv12_community": COMMUNITY}),
    );
    let v3 = |auth: &str| {
        json!({"version": "snmpv3", "snmpv3_securityName": V3_USER, "snmpv3_securityLevel": "authPriv",
            "snmpv3_authProtocol": "SHA", "snmpv3_authKey": auth,
            "snmpv3_privProtocol": "AES", "snmpv3_privKey": V3_PRIV_KEY})
    };
    f.credential(ACCOUNT, V3_GOOD, "snmp", v3(V3_AUTH_KEY));
    f.credential(ACCOUNT, V3_WRONG, "snmp", v3("notthepassword"));
    f.sensor(
        ACCOUNT,
        UPTIME_SENSOR,
        "snmp",
        Some(60),
        sensor_details(&[("1.3.6.1.2.1.1.3.0", "get")], "$1 / 100", "sysuptime"),
    );
    f.sensor(
        ACCOUNT,
        GAUGE_SENSOR,
        "snmp",
        Some(60),
        sensor_details(
            &[(&oid("1"), "walk"), (&oid("2"), "walk")],
            "$2 * 8",
            "gauge.{$index}.{$1}",
        ),
    );
    f.sensor(
        ACCOUNT,
        RATE_SENSOR,
        "snmp",
        Some(60),
        sensor_details(
            &[(&oid("1"), "walk"), (&oid("3"), "walk")],
            "$2",
            "rate.{$index}.{$1}",
        ),
    );
    f
}

/// The bot's settings against `backend`, then `extra`.
fn bot_env(backend: &TestBackend, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("BACKEND_URL", backend.url()),
        ("BOT_TOKEN", backend.token(BOT)),
        ("JOBS_REFRESH_INTERVAL", "60".into()),
        ("SNMP_TIMEOUT", "0.3".into()),
        ("SNMP_RETRIES", "1".into()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .into();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn start_bot(backend: &TestBackend, extra: &[(&str, &str)]) -> BotProcess {
    restart_bot(backend, extra, tempfile::tempdir().expect("temp dir"))
}

/// Starts the bot on an existing data directory (after a `kill -9`).
fn restart_bot(
    backend: &TestBackend,
    extra: &[(&str, &str)],
    data_dir: tempfile::TempDir,
) -> BotProcess {
    let env = bot_env(backend, extra);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    BotProcess::start_in(&snmpbot(), &[], &env, data_dir)
}

fn latest(values: &[StoredValue], path: &str) -> Option<f64> {
    values
        .iter()
        .rev()
        .find(|v| v.path == path)
        .map(|v| v.value)
}

fn path(suffix: &str) -> String {
    format!("entity.{DEVICE}.snmp.{suffix}")
}

fn assert_near(values: &[StoredValue], suffix: &str, expected: f64) {
    let got = latest(values, &path(suffix)).unwrap_or_else(|| panic!("no {suffix} in {values:?}"));
    assert!(
        (got - expected).abs() <= expected * 0.1,
        "{suffix}: {got}, expected about {expected}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_paths_and_rates_arrive_and_a_dead_agent_costs_only_its_entity() {
    let agent = Snmpd::start(&agent_objects());
    let (_silent, silent_port) = snmpd::silent_udp_port();
    let mut fixture = base_fixture();
    fixture.device(ACCOUNT, DEVICE, "router", &agent.address());
    fixture.bind(
        DEVICE,
        "snmp",
        V2C,
        &[
            (UPTIME_SENSOR, Some(1)),
            (GAUGE_SENSOR, Some(1)),
            (RATE_SENSOR, Some(1)),
        ],
        BOT,
    );
    fixture.device(
        ACCOUNT,
        OTHER_DEVICE,
        "dead",
        &format!("127.0.0.1:{silent_port}"),
    );
    fixture.bind(OTHER_DEVICE, "snmp", V2C, &[(UPTIME_SENSOR, Some(1))], BOT);
    let backend = TestBackend::start(fixture).await;
    let metrics_address = format!("127.0.0.1:{}", e2e::alertmanager::free_port());
    let mut bot = start_bot(&backend, &[("METRICS_ADDRESS", metrics_address.as_str())]);

    let values = backend
        .wait_for_values(
            ACCOUNT,
            |v| latest(v, &path("rate.2.Core-6")).is_some(),
            WAIT,
        )
        .await;
    // The router's three sensors (a GET and three walked columns) take two requests a poll:
    // one GET with sysUpTime, one GETBULK advancing the columns side by side.
    let metrics = e2e::metrics::page(&metrics_address).await;
    let number = |series: &str| e2e::metrics::sample(&metrics, series);
    let polls = number("collector_snmp_requests_per_poll_count");
    let within_two = number("collector_snmp_requests_per_poll_bucket{le=\"2.0\"}");
    assert!(
        polls.is_some_and(|n| n >= 2.0) && within_two == polls,
        "every device-poll within 2 requests: {within_two:?} of {polls:?} in\n{metrics}"
    );
    assert!(
        latest(&values, &path("sysuptime")).is_some_and(|s| s > 0.0),
        "{values:?}"
    );
    assert_eq!(latest(&values, &path("gauge.1.eth0")), Some(800.0));
    assert_eq!(latest(&values, &path("gauge.2.Core-6")), Some(1600.0));
    assert_near(&values, "rate.1.eth0", 1000.0);
    assert_near(&values, "rate.2.Core-6", 2000.0);
    assert!(
        values
            .iter()
            .all(|v| v.path.starts_with(&format!("entity.{DEVICE}."))),
        "{values:?}"
    );

    bot.wait_for_log(&format!("no answer from 127.0.0.1:{silent_port}"), WAIT)
        .await;
    let log = bot.stderr();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("no answer from 127.0.0.1:{silent_port}")))
        .unwrap_or_default();
    assert!(
        line.contains(&OTHER_DEVICE.to_string()),
        "the line names the entity: {line}"
    );
    bot.terminate(Duration::from_secs(10)).await;
    backend.assert_no_authorization_header();
}

/// An agent that never answers: each failed firing is one log line, naming the job, the entity
/// and the address as the entity gives it (not the library's IPv4-mapped socket address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_logged_once_naming_job_entity_and_address() {
    let (_silent, silent_port) = snmpd::silent_udp_port();
    let address = format!("127.0.0.1:{silent_port}");
    let mut fixture = base_fixture();
    fixture.device(ACCOUNT, OTHER_DEVICE, "dead", &address);
    fixture.bind(OTHER_DEVICE, "snmp", V2C, &[(UPTIME_SENSOR, Some(1))], BOT);
    let backend = TestBackend::start(fixture).await;
    let mut bot = start_bot(&backend, &[]);
    let failure = format!("no answer from {address}");
    bot.wait_for(
        "two failed firings",
        |_, err| err.matches(&failure).count() >= 2,
        WAIT,
    )
    .await;
    bot.terminate(Duration::from_secs(10)).await;

    let log = bot.stderr();
    // Alert notices (`collector::notify`, "alert firing: ...") quote the failure by design; the
    // failure itself is logged once per firing.
    let about_it: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&silent_port.to_string()) || l.to_lowercase().contains("timeout"))
        .filter(|l| !l.contains("collector::notify"))
        .collect();
    for line in &about_it {
        assert!(
            line.contains(&failure)
                && line.contains(&format!("job={OTHER_DEVICE}"))
                && line.contains(&OTHER_DEVICE.to_string()),
            "every line about the dead agent is the one failure line with job, entity and address: \
             {line}\n{log}"
        );
    }
    assert!(!log.contains("::ffff:"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_polls_and_a_wrong_v3_password_is_reported_clearly() {
    let agent = Snmpd::start(&agent_objects());
    let mut fixture = base_fixture();
    fixture.device(ACCOUNT, DEVICE, "v3 router", &agent.address());
    fixture.bind(DEVICE, "snmp", V3_GOOD, &[(GAUGE_SENSOR, Some(1))], BOT);
    fixture.device(ACCOUNT, OTHER_DEVICE, "wrong password", &agent.address());
    fixture.bind(
        OTHER_DEVICE,
        "snmp",
        V3_WRONG,
        &[(UPTIME_SENSOR, Some(1))],
        BOT,
    );
    let backend = TestBackend::start(fixture).await;
    let mut bot = start_bot(&backend, &[]);

    let values = backend
        .wait_for_values(
            ACCOUNT,
            |v| latest(v, &path("gauge.2.Core-6")).is_some(),
            WAIT,
        )
        .await;
    assert_eq!(latest(&values, &path("gauge.1.eth0")), Some(800.0));
    let expected = format!(
        "SNMPv3 authentication with {} failed for user '{V3_USER}'",
        agent.address()
    );
    bot.wait_for_log(&expected, WAIT).await;
    let log = bot.stderr();
    let line = log
        .lines()
        .find(|l| l.contains(&expected))
        .unwrap_or_default();
    assert!(line.contains(&OTHER_DEVICE.to_string()), "{line}");
    assert!(line.contains("wrong authentication password"), "{line}");
    for secret in ["notthepassword", V3_AUTH_KEY, V3_PRIV_KEY] {
        assert!(!log.contains(secret), "the log shows a secret: {log}");
    }
    assert!(
        !backend
            .values(ACCOUNT)
            .iter()
            .any(|v| v.path.contains(&OTHER_DEVICE.to_string())),
        "nothing from the entity with the wrong password"
    );
    bot.terminate(Duration::from_secs(10)).await;
}

/// ifDescr and ifSpeed as net-snmp's own snmpwalk reports them: (index, name, speed).
fn interfaces_by_snmpwalk(address: &str) -> BTreeSet<(String, String, String)> {
    let walk = |column: &str| -> Vec<(String, String)> {
        let output = std::process::Command::new("snmpwalk")
            .args(["-v2c", "-c", COMMUNITY, "-On", "-Oq", "-Oe", "-Ov", address])
            .arg(format!("1.3.6.1.2.1.2.2.1.{column}"))
            .output()
            .expect("run snmpwalk (apt-get install snmp)");
        let values: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| l.trim().trim_matches('"').to_string())
            .collect();
        let indexes = std::process::Command::new("snmpwalk")
            .args(["-v2c", "-c", COMMUNITY, "-On", "-Oq", address])
            .arg(format!("1.3.6.1.2.1.2.2.1.{column}"))
            .output()
            .expect("run snmpwalk");
        String::from_utf8_lossy(&indexes.stdout)
            .lines()
            .map(|l| {
                l.split_whitespace()
                    .next()
                    .unwrap_or("")
                    .rsplit('.')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .zip(values)
            .collect()
    };
    // ifSpeed saturates at 4294967295 (and some agents say 0): then ifHighSpeed x 10^6.
    let high: Vec<(String, String)> = walk_columns(address, "1.3.6.1.2.1.31.1.1.1.15");
    let speed_of = |index: &str, speed: String| match speed.as_str() {
        "0" | "4294967295" => high
            .iter()
            .find(|(i, mbps)| i == index && mbps != "0")
            .map_or(speed, |(_, mbps)| format!("{mbps}000000")),
        _ => speed,
    };
    walk("2")
        .into_iter()
        .zip(walk("5"))
        .map(|((index, name), (_, speed))| {
            let speed = speed_of(&index, speed);
            (index, name, speed)
        })
        .collect()
}

/// (index, value) of one column, by snmpwalk.
fn walk_columns(address: &str, column: &str) -> Vec<(String, String)> {
    let output = std::process::Command::new("snmpwalk")
        .args(["-v2c", "-c", COMMUNITY, "-On", "-Oq", address, column])
        .output()
        .expect("run snmpwalk (apt-get install snmp)");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| {
            let (oid, value) = l.split_once(' ')?;
            let index = oid.rsplit('.').next()?;
            Some((index.to_string(), value.trim().to_string()))
        })
        .collect()
}

fn interfaces_in_backend(backend: &TestBackend) -> BTreeSet<(String, String, String)> {
    interfaces_of(backend, DEVICE).into_iter().collect()
}

/// The interface entities of `parent` as (index, name, speed), duplicates kept.
fn interfaces_of(backend: &TestBackend, parent: Id) -> Vec<(String, String, String)> {
    backend
        .fixture()
        .entities
        .values()
        .filter(|e| e.entity_type == "interface" && e.parent == Some(parent))
        .map(|e| {
            let text = |key: &str| match &e.details[key] {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            (text("snmp_index"), e.name.clone(), text("speed_bps"))
        })
        .collect()
}

fn entity_writes(backend: &TestBackend) -> usize {
    let prefix = format!("/api/accounts/{ACCOUNT}/entities");
    backend.count("POST", &prefix)
        + backend.count("PUT", &prefix)
        + backend.count("DELETE", &prefix)
}

/// Interface syncs that fall due in the same second share one listing of the account's
/// entities (the backend cannot filter it: at 1,000 devices each sync listed 51,000 entities),
/// and a device whose sync just changed its interfaces is not synced from a stale listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interface_syncs_of_one_second_list_the_entities_once() {
    let agent = Snmpd::start(&agent_objects());
    let expected = interfaces_by_snmpwalk(&agent.address());
    let devices: Vec<Id> = (0..4).map(|i| DEVICE + 10 + i).collect();
    let mut fixture = base_fixture();
    for &device in &devices {
        fixture.device(
            ACCOUNT,
            device,
            &format!("router {device}"),
            &agent.address(),
        );
        fixture.bind(device, "snmp", V2C, &[(UPTIME_SENSOR, Some(60))], BOT);
    }
    let backend = TestBackend::start(fixture).await;
    let mut bot = start_bot(&backend, &[("SNMP_INTERFACE_INTERVAL", "1")]);
    let in_sync = |b: &TestBackend| {
        devices
            .iter()
            .all(|&d| interfaces_of(b, d).len() == expected.len())
            .then_some(())
    };
    assert!(
        backend.wait_until(in_sync, WAIT).await.is_some(),
        "interfaces: {:?}",
        devices
            .iter()
            .map(|&d| interfaces_of(&backend, d))
            .collect::<Vec<_>>()
    );
    let lists = format!("/api/accounts/{ACCOUNT}/entities/");
    let (listed, written) = (backend.count("GET", &lists), entity_writes(&backend));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let listed = backend.count("GET", &lists) - listed;
    bot.terminate(Duration::from_secs(10)).await;
    // 4 devices synced every second for 4 s: 16 syncs, one listing a second (and maybe the
    // job refresh's). Listing per sync would have made about 16.
    assert!((2..=7).contains(&listed), "{listed} listings in 4 s");
    assert_eq!(entity_writes(&backend), written, "in sync: nothing written");
    for &device in &devices {
        let mut found = interfaces_of(&backend, device);
        found.sort();
        assert_eq!(
            found,
            expected.iter().cloned().collect::<Vec<_>>(),
            "device {device}"
        );
    }
}

/// A 10G link: ifSpeed is stuck at 4294967295, ifHighSpeed says 10000 Mb/s; the interface
/// entity's `speed_bps` is 10^10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interface_speed_beyond_ifspeed_comes_from_ifhighspeed() {
    let agent = Snmpd::start_with_config(
        &agent_objects(),
        "override .1.3.6.1.2.1.2.2.1.5.1 unsigned 4294967295\n\
         override .1.3.6.1.2.1.31.1.1.1.15.1 unsigned 10000",
    );
    let mut fixture = base_fixture();
    fixture.device(ACCOUNT, DEVICE, "router", &agent.address());
    fixture.bind(DEVICE, "snmp", V2C, &[(UPTIME_SENSOR, Some(60))], BOT);
    let backend = TestBackend::start(fixture).await;
    let expected = interfaces_by_snmpwalk(&agent.address());
    let ten_gigabit = ("1".to_string(), "lo".to_string(), "10000000000".to_string());
    assert!(expected.contains(&ten_gigabit), "{expected:?}");
    let mut bot = start_bot(&backend, &[("SNMP_INTERFACE_INTERVAL", "1")]);
    let synced = backend
        .wait_until(
            |b| (interfaces_in_backend(b) == expected).then_some(()),
            WAIT,
        )
        .await;
    assert!(
        synced.is_some(),
        "backend has {:?}, agent lists {expected:?}",
        interfaces_in_backend(&backend)
    );
    bot.terminate(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interface_sync_creates_updates_and_deletes_interface_entities() {
    let agent = Snmpd::start(&agent_objects());
    let expected = interfaces_by_snmpwalk(&agent.address());
    assert!(
        expected
            .iter()
            .any(|(index, name, _)| index == "1" && name == "lo"),
        "{expected:?}"
    );
    let mut fixture = base_fixture();
    fixture.device(ACCOUNT, DEVICE, "router", &agent.address());
    fixture.bind(DEVICE, "snmp", V2C, &[(UPTIME_SENSOR, Some(60))], BOT);
    fixture.interface(ACCOUNT, 501, DEVICE, "old name", "1", "0");
    fixture.entity(
        Entity::new(ACCOUNT, 502, "gone", "interface")
            .parent(DEVICE)
            .details(json!({"snmp_index": "9999", "speed_bps": "0"})),
    );
    // Another device's interface is none of this sync's business.
    fixture.device(ACCOUNT, OTHER_DEVICE, "other", "192.0.2.1");
    fixture.interface(ACCOUNT, 503, OTHER_DEVICE, "theirs", "9999", "0");
    let backend = TestBackend::start(fixture).await;
    let receiver = e2e::receiver::Receiver::start().await;
    let webhook = format!("{}/webhook", receiver.url);
    let env = [
        ("SNMP_INTERFACE_INTERVAL", "1"),
        ("EVENTS_WEBHOOK_URL", webhook.as_str()),
    ];
    let mut bot = start_bot(&backend, &env);

    let synced = backend
        .wait_until(
            |b| (interfaces_in_backend(b) == expected).then_some(()),
            WAIT,
        )
        .await;
    assert!(
        synced.is_some(),
        "backend has {:?}, agent lists {expected:?}",
        interfaces_in_backend(&backend)
    );
    let entities = backend.fixture().entities;
    assert_eq!(
        entities.get(&501).map(|e| e.name.as_str()),
        Some("lo"),
        "updated in place"
    );
    assert!(
        !entities.contains_key(&502),
        "the interface the agent no longer lists is deleted"
    );
    assert!(entities.contains_key(&503));

    // Once in sync, further syncs change nothing.
    let writes = entity_writes(&backend);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(entity_writes(&backend), writes);
    assert!(bot.stderr().contains("interface entities synced"));
    bot.terminate(Duration::from_secs(10)).await;

    // One event per interface that appeared or disappeared, none for the renamed one.
    let events: Vec<(String, String)> = receiver
        .received("/webhook")
        .iter()
        .filter_map(|r| serde_json::from_str::<Json>(&r.body).ok())
        .map(|n| {
            let text = |v: &Json| v.as_str().unwrap_or_default().to_string();
            (
                text(&n["event"]["title"]),
                text(&n["event"]["tags"]["interface"]),
            )
        })
        .collect();
    let mut appeared: Vec<String> = expected
        .iter()
        .filter(|(index, _, _)| index != "1")
        .map(|(_, name, _)| name.clone())
        .collect();
    appeared.sort();
    let mut seen: Vec<String> = events
        .iter()
        .filter(|(title, _)| title == "interface appeared")
        .map(|(_, name)| name.clone())
        .collect();
    seen.sort();
    assert_eq!(seen, appeared, "{events:?}");
    let gone: Vec<&(String, String)> = events
        .iter()
        .filter(|(title, _)| title == "interface disappeared")
        .collect();
    assert_eq!(
        gone,
        [&("interface disappeared".to_string(), "gone".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interface_sync_forbidden_for_an_account_bot_is_logged_once() {
    let agent = Snmpd::start(&agent_objects());
    let mut fixture = base_fixture();
    fixture.bot(Bot::account_bot(BOT, ACCOUNT, "snmp"));
    fixture.device(ACCOUNT, DEVICE, "router", &agent.address());
    fixture.bind(DEVICE, "snmp", V2C, &[(UPTIME_SENSOR, Some(1))], BOT);
    let backend = TestBackend::start(fixture).await;
    let mut bot = start_bot(&backend, &[("SNMP_INTERFACE_INTERVAL", "1")]);

    let creates = format!("/api/accounts/{ACCOUNT}/entities");
    backend.wait_for_requests("POST", &creates, 3, WAIT).await;
    // Polling goes on regardless.
    backend
        .wait_for_values(ACCOUNT, |v| latest(v, &path("sysuptime")).is_some(), WAIT)
        .await;
    let log = bot.stderr();
    assert_eq!(
        log.matches("interface sync is not allowed").count(),
        1,
        "{log}"
    );
    let interface_job = format!("job={DEVICE}-interfaces");
    assert!(
        !log.lines()
            .any(|l| l.contains(&interface_job) && l.contains("ERROR")),
        "a refused sync is not a failing job: {log}"
    );
    bot.terminate(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rates_go_on_across_a_restart_of_the_bot() {
    let agent = Snmpd::start(&agent_objects());
    let mut fixture = base_fixture();
    fixture.device(ACCOUNT, DEVICE, "router", &agent.address());
    fixture.bind(
        DEVICE,
        "snmp",
        V2C,
        &[(UPTIME_SENSOR, Some(1)), (RATE_SENSOR, Some(1))],
        BOT,
    );
    let backend = TestBackend::start(fixture).await;
    let mut bot = start_bot(&backend, &[]);
    backend
        .wait_for_values(ACCOUNT, |v| latest(v, &path("rate.1.eth0")).is_some(), WAIT)
        .await;
    bot.terminate(Duration::from_secs(10)).await;

    let restarted_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let url = backend.url();
    let token = backend.token(BOT);
    let env = [
        ("BACKEND_URL", url.as_str()),
        ("BOT_TOKEN", token.as_str()),
        ("JOBS_REFRESH_INTERVAL", "60"),
    ];
    let data_dir = std::mem::replace(&mut bot.data_dir, tempfile::tempdir().unwrap());
    let mut bot = BotProcess::start_in(&snmpbot(), &[], &env, data_dir);
    let values = backend
        .wait_for_values(
            ACCOUNT,
            |v| {
                v.iter()
                    .any(|v| v.t > restarted_at && v.path == path("sysuptime"))
            },
            WAIT,
        )
        .await;
    // The first firing after the restart already has a rate: the previous samples were kept.
    let first_firing = values
        .iter()
        .find(|v| v.t > restarted_at && v.path == path("sysuptime"))
        .map(|v| v.t)
        .unwrap();
    let rate = values
        .iter()
        .find(|v| v.t == first_firing && v.path == path("rate.1.eth0"))
        .map(|v| v.value);
    assert!(
        rate.is_some_and(|r| (r - 1000.0).abs() < 100.0),
        "first firing after restart: {rate:?}"
    );
    bot.terminate(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_mode_prints_values_from_a_jobs_file() {
    let agent = Snmpd::start(&agent_objects());
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs.toml");
    let gauge = format!(
        "{{ oids = [{{ oid = \"{}\", fetch_method = \"walk\" }}, {{ oid = \"{}\", fetch_method = \"walk\" }}], \
         expression = \"$2\", output_path = \"gauge.{{$index}}.{{$1}}\" }}",
        oid("1"),
        oid("2")
    );
    std::fs::write(
        &jobs,
        format!(
            "[[credentials]]\nid = 1\nprotocol = \"snmp\"\ndetails = {{ version = \"snmpv2c\", snmpv12_community = \"{COMMUNITY}\" }}\n\n\
             [[sensors]]\nid = 2\nprotocol = \"snmp\"\ndefault_interval = 1\ndetails = {gauge}\n\n\
             [[entities]]\nid = 3\nname = \"agent\"\ndetails = {{ ipv4 = \"{}\" }}\n\
             protocols.snmp = {{ credential = 1, sensors = [{{ sensor = 2 }}] }}\n",
            agent.address()
        ),
    )
    .unwrap();
    let jobs_arg = jobs.display().to_string();
    let mut bot = BotProcess::start(&snmpbot(), &["--jobs", &jobs_arg], &[]);
    bot.wait_for(
        "the gauge values on stdout",
        |out, _| {
            out.iter()
                .any(|l| l.contains("\"entity.3.snmp.gauge.1.eth0\"") && l.contains("\"v\":100"))
                && out
                    .iter()
                    .any(|l| l.contains("\"entity.3.snmp.gauge.2.Core-6\""))
        },
        WAIT,
    )
    .await;
    bot.terminate(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_stops_and_starts_and_a_bad_v3_password_fire_and_resolve_once_at_every_sink()
{
    let mut agent = Snmpd::start(&agent_objects());
    let sinks = e2e::alert_sinks::AlertSinks::start().await;
    let mut fixture = base_fixture();
    fixture.device(ACCOUNT, DEVICE, "router", &agent.address());
    let sensors = [(UPTIME_SENSOR, Some(1)), (RATE_SENSOR, Some(1))];
    fixture.bind(DEVICE, "snmp", V2C, &sensors, BOT);
    fixture.device(ACCOUNT, OTHER_DEVICE, "wrong password", &agent.address());
    fixture.bind(
        OTHER_DEVICE,
        "snmp",
        V3_WRONG,
        &[(UPTIME_SENSOR, Some(1))],
        BOT,
    );
    let backend = TestBackend::start(fixture).await;
    let mut env = sinks.env();
    env.push(("JOBS_REFRESH_INTERVAL", "1".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let bot = start_bot(&backend, &env);
    let (device, other) = (DEVICE.to_string(), OTHER_DEVICE.to_string());
    let account = ACCOUNT.to_string();
    let address = agent.address();

    sinks
        .wait_for("SnmpAuthFailed", &other, &["firing"], WAIT)
        .await;
    let labels = [
        ("bot", "snmp"),
        ("entity_name", "wrong password"),
        ("account", account.as_str()),
        ("address", address.as_str()),
    ];
    sinks.assert_labels("SnmpAuthFailed", &other, &labels);
    let webhook = sinks.receiver.received("/webhook");
    assert!(
        webhook.iter().all(|r| !r.body.contains("notthepassword")),
        "no secret in alerts"
    );

    agent.stop();
    sinks
        .wait_for("SnmpAgentUnreachable", &device, &["firing"], WAIT)
        .await;
    let labels = [("entity_name", "router"), ("address", address.as_str())];
    sinks.assert_labels("SnmpAgentUnreachable", &device, &labels);

    // kill -9 while the agent is down: both alerts stay firing and are not announced again.
    let data_dir = bot.kill().await;
    let bot = restart_bot(&backend, &env, data_dir);
    bot.wait_for_log("jobs refreshed", WAIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    agent.restart();
    sinks
        .wait_for(
            "SnmpAgentUnreachable",
            &device,
            &["firing", "resolved"],
            WAIT,
        )
        .await;
    // The right password: the authentication alert resolves.
    backend.update(|f| f.binding_mut(OTHER_DEVICE, "snmp").credential = Some(V3_GOOD));
    sinks
        .wait_for("SnmpAuthFailed", &other, &["firing", "resolved"], WAIT)
        .await;
    // Both polls failed while their checks were bad: `JobFailing` fired and resolved with them.
    let alerts = [
        ("SnmpAgentUnreachable", &device),
        ("SnmpAuthFailed", &other),
        ("JobFailing", &device),
        ("JobFailing", &other),
    ];
    for (alert, entity) in alerts {
        sinks
            .wait_for(alert, entity, &["firing", "resolved"], WAIT)
            .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let once = ["firing", "resolved"].map(String::from).to_vec();
    for (alert, entity) in alerts {
        assert_eq!(
            sinks.states(alert, entity),
            [once.clone(), once.clone(), once.clone()],
            "{alert}: exactly one of each at Alertmanager, the webhook and DataKit"
        );
    }
    assert!(sinks.webhook_states("SnmpAuthFailed", &device).is_empty());
    // The restarted agent's sysUpTime went back: one event, tagged with the device.
    let restarts = || -> Vec<Json> {
        sinks
            .receiver
            .received("/webhook")
            .iter()
            .filter_map(|r| serde_json::from_str::<Json>(&r.body).ok())
            .filter(|n| n["event"]["title"] == "SNMP agent restarted")
            .collect()
    };
    sinks
        .receiver
        .wait_for(
            "/webhook",
            "the restart event",
            |_| !restarts().is_empty(),
            WAIT,
        )
        .await;
    let restart = &restarts()[0]["event"];
    assert_eq!(restart["status"], "warning");
    assert_eq!(restart["tags"]["entity"], DEVICE.to_string());
    assert_eq!(restart["tags"]["address"], agent.address());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(restarts().len(), 1, "one restart, one event");
}
