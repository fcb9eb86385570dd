//! Sensors end to end against a real snmpd: joins, expressions, paths, counters to rates over
//! two firings, per-sensor isolation, agent restarts and unreachable agents.

#[path = "support/snmpd.rs"]
mod snmpd;

use collector::{SensorConfig, Value};
use serde_json::{json, Value as Json};
use snmpbot::counters::CounterStore;
use snmpbot::sensor::{parse_sensor, EntityPoll, Poller, SensorCounters};
use snmpbot::session::{Credential, SnmpCounters, SnmpEngine, SnmpSettings};
use snmpd::{PassObject, Snmpd, COMMUNITY, PASS_BASE};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ENTITY: u64 = 1348300224;

fn oid(suffix: &str) -> String {
    format!("{}.{suffix}", PASS_BASE.trim_start_matches('.'))
}

fn sensor(
    id: u64,
    interval: u64,
    oids: &[(&str, &str)],
    expression: &str,
    output_path: &str,
) -> SensorConfig {
    let oids: Vec<Json> = oids
        .iter()
        .map(|(oid, method)| json!({"oid": oid, "fetch_method": method}))
        .collect();
    SensorConfig {
        sensor_id: id,
        interval: Some(interval),
        details: json!({"oids": oids, "expression": expression, "output_path": output_path}).into(),
    }
}

fn entity(address: &str, sensors: &[SensorConfig]) -> EntityPoll {
    EntityPoll {
        entity_id: ENTITY,
        address: Some(address.to_string()),
        credential: Credential::from_details(
            &json!({"version": "snmpv2c", "snmpv12_community": COMMUNITY}),
        ),
        sensors: sensors
            .iter()
            .map(|s| parse_sensor(s).map(std::sync::Arc::new))
            .collect(),
    }
}

struct Bot {
    poller: Poller,
    _dir: Option<tempfile::TempDir>,
}

async fn poller_in(path: &std::path::Path, settings: SnmpSettings) -> Poller {
    let engine = SnmpEngine::new(settings, None, SnmpCounters::default())
        .await
        .unwrap();
    let database = redb::Database::create(path.join("state.redb")).unwrap();
    Poller {
        engine: Arc::new(engine),
        counters: CounterStore::new(Arc::new(database), Duration::from_secs(30)),
        metrics: SensorCounters::default(),
    }
}

async fn bot() -> Bot {
    let dir = tempfile::tempdir().unwrap();
    let poller = poller_in(dir.path(), SnmpSettings::default()).await;
    Bot {
        poller,
        _dir: Some(dir),
    }
}

fn value_of(values: &[Value], path: &str) -> Option<f64> {
    values.iter().find(|v| v.path == path).map(|v| v.value)
}

/// Log lines written while `f` runs on this thread.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn walks_are_joined_by_index_into_values_and_paths() {
    let agent = Snmpd::start(&[
        PassObject::fixed(&oid("1.1"), "string", "GigabitEthernet0/0.100"),
        PassObject::fixed(&oid("1.2"), "string", "Core 6"),
        PassObject::fixed(&oid("1.3"), "string", "no speed"),
        PassObject::fixed(&oid("2.1"), "gauge", "1000"),
        PassObject::fixed(&oid("2.2"), "gauge", "250"),
        PassObject::fixed(&oid("3.0"), "integer", "4"),
    ]);
    let bot = bot().await;
    let sensors = [
        sensor(
            1,
            60,
            &[(&oid("1"), "walk"), (&oid("2"), "walk")],
            "$2 * 8",
            "speed.{$index}.{$1}",
        ),
        sensor(2, 60, &[(&oid("3.0"), "get")], "$1 / 2", "half"),
        sensor(
            3,
            60,
            &[(&oid("3.0"), "get"), (&oid("2"), "walk")],
            "$2 / $1",
            "share.{$index}",
        ),
        sensor(4, 60, &[(&oid("1"), "walk")], "$1", "names.{$index}"),
    ];
    let values = bot
        .poller
        .poll(&entity(&agent.address(), &sensors), |_| true)
        .await
        .unwrap();
    let prefix = format!("entity.{ENTITY}.snmp");
    assert_eq!(
        value_of(&values, &format!("{prefix}.speed.1.GigabitEthernet0-0-100")),
        Some(8000.0)
    );
    assert_eq!(
        value_of(&values, &format!("{prefix}.speed.2.Core-6")),
        Some(2000.0)
    );
    assert!(
        !values.iter().any(|v| v.path.contains("no-speed")),
        "index 3 lacks OID 2: {values:?}"
    );
    assert_eq!(value_of(&values, &format!("{prefix}.half")), Some(2.0));
    assert_eq!(value_of(&values, &format!("{prefix}.share.1")), Some(250.0));
    assert_eq!(value_of(&values, &format!("{prefix}.share.2")), Some(62.5));
    // Text values referenced by the expression cannot be numbers: those rows are left out.
    assert!(
        !values.iter().any(|v| v.path.contains(".names.")),
        "{values:?}"
    );
    assert_eq!(values.len(), 5, "{values:?}");
}

#[tokio::test]
async fn counters_become_rates_over_two_firings() {
    let agent = Snmpd::start(&[
        PassObject::rate(&oid("1.1"), "counter", 1000, 0, 1 << 32),
        PassObject::rate(&oid("1.2"), "counter", 5000, 1_000_000, 1 << 32),
        // Wraps 0.6 s after start: the Counter32 wrap is corrected, not dropped.
        PassObject::rate(&oid("2.1"), "counter", 1000, (1 << 32) - 600, 1 << 32),
        PassObject::rate(&oid("3.0"), "counter64", 2000, 1 << 40, 1 << 52),
    ]);
    let bot = bot().await;
    let sensors = [
        sensor(1, 60, &[(&oid("1"), "walk")], "$1 * 8", "bits.{$index}"),
        sensor(2, 60, &[(&oid("2.1"), "get")], "$1", "wrapping"),
        sensor(3, 60, &[(&oid("3.0"), "get")], "$1", "big"),
    ];
    let job = entity(&agent.address(), &sensors);
    let first = bot.poller.poll(&job, |_| true).await.unwrap();
    assert!(
        first.is_empty(),
        "the first sample gives nothing: {first:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = bot.poller.poll(&job, |_| true).await.unwrap();
    let prefix = format!("entity.{ENTITY}.snmp");
    let close = |path: &str, expected: f64| {
        let got = value_of(&second, &format!("{prefix}.{path}"))
            .unwrap_or_else(|| panic!("no {path} in {second:?}"));
        assert!(
            (got - expected).abs() <= expected * 0.05,
            "{path}: {got}, expected ~{expected}"
        );
    };
    close("bits.1", 8000.0);
    close("bits.2", 40_000.0);
    close("wrapping", 1000.0);
    close("big", 2000.0);
}

#[tokio::test]
async fn an_agent_restart_gives_no_rate_once() {
    let mut agent = Snmpd::start(&[PassObject::rate(&oid("1.0"), "counter", 1000, 0, 1 << 32)]);
    let bot = bot().await;
    let job = entity(
        &agent.address(),
        &[sensor(1, 60, &[(&oid("1.0"), "get")], "$1", "rate")],
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(bot.poller.poll(&job, |_| true).await.unwrap().is_empty());
    agent.restart();
    let log = CapturedLog::default();
    let after_restart = {
        let _guard = log.install();
        bot.poller.poll(&job, |_| true).await.unwrap()
    };
    assert!(
        after_restart.is_empty(),
        "sysUpTime went back: {after_restart:?}"
    );
    assert!(log.text().contains("agent restarted"), "{}", log.text());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let next = bot.poller.poll(&job, |_| true).await.unwrap();
    assert_eq!(next.len(), 1, "{next:?}");
}

#[tokio::test]
async fn rates_go_on_across_a_restart_of_the_bot() {
    let agent = Snmpd::start(&[PassObject::rate(&oid("1.0"), "counter", 1000, 0, 1 << 32)]);
    let dir = tempfile::tempdir().unwrap();
    let job = entity(
        &agent.address(),
        &[sensor(1, 60, &[(&oid("1.0"), "get")], "$1", "rate")],
    );
    {
        let poller = poller_in(dir.path(), SnmpSettings::default()).await;
        assert!(poller.poll(&job, |_| true).await.unwrap().is_empty());
        poller.counters.flush().unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let poller = poller_in(dir.path(), SnmpSettings::default()).await;
    let values = poller.poll(&job, |_| true).await.unwrap();
    assert_eq!(values.len(), 1, "{values:?}");
    assert!((values[0].value - 1000.0).abs() < 50.0, "{values:?}");
}

#[tokio::test]
async fn a_broken_sensor_costs_only_its_own_values() {
    let agent = Snmpd::start(&[
        PassObject::fixed(&oid("1.1"), "string", "eth0"),
        PassObject::fixed(&oid("2.1"), "gauge", "7"),
    ]);
    let bot = bot().await;
    let sensors = [
        sensor(11, 60, &[(&oid("9.9"), "get")], "$1", "missing"),
        sensor(12, 60, &[(&oid("1"), "walk")], "$1 +* 2", "bad.{$index}"),
        sensor(13, 60, &[(&oid("2"), "walk")], "$1", "bad.{$x}"),
        sensor(
            14,
            60,
            &[(&oid("1"), "walk"), (&oid("2"), "walk")],
            "$2",
            "good.{$index}.{$1}",
        ),
        sensor(
            15,
            60,
            &[(&oid("1"), "walk"), (&oid("2"), "walk")],
            "$1",
            "text.{$index}",
        ),
    ];
    let log = CapturedLog::default();
    let values = {
        let _guard = log.install();
        bot.poller
            .poll(&entity(&agent.address(), &sensors), |_| true)
            .await
            .unwrap()
    };
    assert_eq!(
        values,
        vec![Value::new(format!("entity.{ENTITY}.snmp.good.1.eth0"), 7.0)]
    );
    let log = log.text();
    let line = |sensor: &str| {
        log.lines()
            .find(|l| l.contains(&format!("sensor={sensor}")))
            .unwrap_or_else(|| panic!("no log line for sensor {sensor}:\n{log}"))
            .to_string()
    };
    let missing = line("11");
    assert!(
        missing.contains(&format!("entity={ENTITY}")) && missing.contains(&oid("9.9")),
        "{missing}"
    );
    assert!(line("12").contains("$1 +* 2"), "{}", line("12"));
    assert!(line("13").contains("{$x}"), "{}", line("13"));
    assert!(line("15").contains("is not a number"), "{}", line("15"));
    assert_eq!(bot.poller.metrics.sensor_failures.get(), 3);
}

#[tokio::test]
async fn only_sensors_with_an_affecting_interval_run() {
    let agent = Snmpd::start(&[PassObject::fixed(&oid("1.0"), "integer", "5")]);
    let bot = bot().await;
    let sensors = [
        sensor(1, 10, &[(&oid("1.0"), "get")], "$1", "every-10"),
        sensor(2, 20, &[(&oid("1.0"), "get")], "$1 * 2", "every-20"),
    ];
    let job = entity(&agent.address(), &sensors);
    assert_eq!(job.intervals(), vec![10, 20]);
    let values = bot.poller.poll(&job, |i| i == Some(10)).await.unwrap();
    assert_eq!(values.len(), 1);
    assert!(values[0].path.ends_with("every-10"));
    let values = bot
        .poller
        .poll(&job, |i| i == Some(10) || i == Some(20))
        .await
        .unwrap();
    assert_eq!(values.len(), 2);
}

#[tokio::test]
async fn an_unreachable_agent_fails_the_firing_quickly() {
    let (_silent, port) = snmpd::silent_udp_port();
    let dir = tempfile::tempdir().unwrap();
    let settings = SnmpSettings {
        timeout: Duration::from_millis(200),
        retries: 1,
        ..SnmpSettings::default()
    };
    let poller = poller_in(dir.path(), settings).await;
    let sensors = [
        sensor(
            1,
            60,
            &[
                ("1.3.6.1.2.1.2.2.1.2", "walk"),
                ("1.3.6.1.2.1.2.2.1.10", "walk"),
            ],
            "$2",
            "in.{$index}",
        ),
        sensor(
            2,
            60,
            &[("1.3.6.1.2.1.2.2.1.16", "walk")],
            "$1",
            "out.{$index}",
        ),
    ];
    let started = Instant::now();
    let error = poller
        .poll(&entity(&format!("127.0.0.1:{port}"), &sensors), |_| true)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no answer from 127.0.0.1"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "one timeout cycle, not one per OID: {:?}",
        started.elapsed()
    );
}

/// A sensor whose walk finds nothing (like the default lm-sensors sensor on an agent without
/// that table) is logged at INFO once per sensor and device, naming both; not at every firing.
#[tokio::test]
async fn an_empty_walk_is_logged_once_per_sensor_and_device() {
    let agent = Snmpd::start(&[PassObject::fixed(&oid("1.1"), "string", "eth0")]);
    let bot = bot().await;
    let sensors = [
        sensor(41, 60, &[(&oid("9"), "walk")], "$1", "temp.{$index}"),
        sensor(42, 60, &[(&oid("1"), "walk")], "1", "name.{$index}.{$1}"),
    ];
    let first = entity(&agent.address(), &sensors);
    let second = EntityPoll {
        entity_id: ENTITY + 1,
        ..first.clone()
    };
    let log = CapturedLog::default();
    {
        let _guard = log.install();
        for _ in 0..3 {
            for job in [&first, &second] {
                let values = bot.poller.poll(job, |_| true).await.unwrap();
                assert_eq!(values.len(), 1, "{values:?}");
            }
        }
    }
    let log = log.text();
    let empty: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("came back empty"))
        .collect();
    assert_eq!(empty.len(), 2, "{log}");
    for (line, entity_id) in empty.iter().zip([ENTITY, ENTITY + 1]) {
        assert!(line.contains("INFO"), "{line}");
        assert!(line.contains(&format!("entity={entity_id}")), "{line}");
        assert!(line.contains("sensor=41"), "{line}");
        assert!(line.contains(&oid("9")), "{line}");
    }
}
