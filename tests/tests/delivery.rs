//! End-to-end tests of coalesced delivery: the example `tcpcheck` bot with many devices due in
//! the same second against the test backend: one POST for many firings, a refused value that
//! costs only itself (and shows on the status page), and SIGTERM delivering what was coalescing.

use e2e::alertmanager::free_port;
use e2e::process::{build, BotProcess};
use e2e::{Fault, Fixture, Id, StoredValue, TestBackend, WriteMethod};
use serde_json::{json, Value as Json};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;

const BOT: Id = 1_620_000_011;
const ACCOUNT: Id = 1_409_012_345;
const WAIT: Duration = Duration::from_secs(30);
/// Devices checked every second, all due in the same second.
const DEVICES: Id = 40;
const FIRST_DEVICE: Id = 1000;
/// The device whose values the backend refuses in the refusal test.
const REFUSED: Id = FIRST_DEVICE + 7;

fn fixture(port: u16) -> Fixture {
    let mut f = Fixture::new();
    f.account(ACCOUNT, "Acme");
    f.systemwide_bot(BOT, "tcpcheck");
    f.credential(ACCOUNT, 101, "tcpcheck", json!({"timeout": "1.0"}));
    f.sensor(ACCOUNT, 102, "tcpcheck", Some(1), json!({"port": port}));
    for device in FIRST_DEVICE..FIRST_DEVICE + DEVICES {
        f.device(ACCOUNT, device, &format!("d{device}"), "127.0.0.1");
        f.bind(device, "tcpcheck", 101, &[(102, None)], BOT);
    }
    f
}

async fn setup() -> (TcpListener, TestBackend, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (listener, TestBackend::start(fixture(port)).await, port)
}

fn start_bot(backend: &TestBackend, extra: &[(&str, &str)]) -> BotProcess {
    let (url, token) = (backend.url(), backend.token(BOT));
    let mut env = vec![
        ("BACKEND_URL", url.as_str()),
        ("BOT_TOKEN", token.as_str()),
        ("JOBS_REFRESH_INTERVAL", "60"),
    ];
    env.extend_from_slice(extra);
    BotProcess::start(&build("collector", "--example", "tcpcheck"), &[], &env)
}

/// The devices that have an `ok` value.
fn devices_with_values(values: &[StoredValue]) -> BTreeSet<Id> {
    values
        .iter()
        .filter(|v| v.path.ends_with(".ok"))
        .filter_map(|v| v.path.split('.').nth(1)?.parse().ok())
        .collect()
}

/// How many `ok` values of `device` the backend holds.
fn ok_values(values: &[StoredValue], device: Id) -> usize {
    let prefix = format!("entity.{device}.");
    values
        .iter()
        .filter(|v| v.path.starts_with(&prefix) && v.path.ends_with(".ok"))
        .count()
}

fn values_posts(backend: &TestBackend) -> Vec<SystemTime> {
    let path = format!("/api/accounts/{ACCOUNT}/values/");
    backend
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == path)
        .map(|r| r.at)
        .collect()
}

#[tokio::test]
async fn firings_due_together_go_in_one_post() {
    let (_listener, backend, _) = setup().await;
    let mut bot = start_bot(&backend, &[]);
    let all: BTreeSet<Id> = (FIRST_DEVICE..FIRST_DEVICE + DEVICES).collect();
    backend
        .wait_for_values(ACCOUNT, |v| devices_with_values(v) == all, WAIT)
        .await;
    let first = values_posts(&backend).len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let posts = values_posts(&backend).len() - first;
    // 40 firings a second for 4 s: 160 POSTs without coalescing, about 4 with it (a second
    // whose firings straddle the bound or pause for 5 ms on a busy machine may take more).
    assert!(
        (3..=12).contains(&posts),
        "{posts} POSTs in 4 s for {DEVICES} jobs a second"
    );
    // A value every second: the first and four more of every device. Waited for rather than
    // counted at once, so that a firing that a loaded machine delays by a second is not taken
    // for a lost one; a lost value keeps the count short until the timeout.
    let every_second = backend
        .wait_until(
            |backend| {
                let values = backend.values(ACCOUNT);
                (FIRST_DEVICE..FIRST_DEVICE + DEVICES)
                    .all(|device| ok_values(&values, device) >= 5)
                    .then_some(())
            },
            WAIT,
        )
        .await;
    bot.terminate(WAIT).await;
    let values = backend.values(ACCOUNT);
    assert!(
        every_second.is_some(),
        "not a value every second: {:?}; the bot said: {}",
        (FIRST_DEVICE..FIRST_DEVICE + DEVICES)
            .map(|device| (device, ok_values(&values, device)))
            .collect::<Vec<_>>(),
        bot.stderr()
    );
    assert!(values.iter().all(|v| v.method == WriteMethod::Post));
    eprintln!("{posts} POSTs in 4 s for {DEVICES} jobs a second");
}

#[tokio::test]
async fn a_refused_value_costs_only_itself_and_the_status_page_says_so() {
    let (_listener, backend, port) = setup().await;
    let refused_path = format!("entity.{REFUSED}.tcpcheck.{port}.ok");
    let marker = format!("\"{refused_path}\"");
    let fault = backend.inject(
        Fault::when(move |r| {
            r.method == "POST" && String::from_utf8_lossy(r.body).contains(&marker)
        })
        .status(400),
    );
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut bot = start_bot(&backend, &[("METRICS_ADDRESS", metrics.as_str())]);
    let others: BTreeSet<Id> = (FIRST_DEVICE..FIRST_DEVICE + DEVICES)
        .filter(|d| *d != REFUSED)
        .collect();
    let values = backend
        .wait_for_values(
            ACCOUNT,
            |v| {
                devices_with_values(v) == others
                    && v.iter()
                        .any(|v| v.path == format!("entity.{REFUSED}.tcpcheck.{port}.seconds"))
            },
            WAIT,
        )
        .await;
    assert!(backend.fault_hits(fault) >= 1);
    assert!(
        values.iter().all(|v| v.path != refused_path),
        "the refused value is not stored"
    );
    bot.wait_for_log("value refused by the backend", WAIT).await;
    let log = bot.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("value refused by the backend"))
        .unwrap_or_default();
    assert!(
        line.contains(&format!("job={REFUSED}"))
            && line.contains(&format!("entity={REFUSED}"))
            && line.contains(&refused_path),
        "the log line names job, entity and path: {line}"
    );

    // The status page shows what the backend accepted, not what the run returned.
    let view = wait_for_jobs(&metrics, |view| {
        let refused = job(view, REFUSED);
        let other = job(view, FIRST_DEVICE);
        refused["delivered"]["dropped"] == 1 && other["delivered"]["accepted"] == 2
    })
    .await;
    let refused = job(&view, REFUSED);
    assert_eq!(refused["state"], "success", "{refused:#}");
    assert_eq!(refused["values"], 2);
    assert_eq!(
        refused["delivered"],
        json!({"accepted": 1, "spooled": 0, "dropped": 1})
    );
    let metrics_text = e2e::metrics::page(&metrics).await;
    assert!(
        e2e::metrics::sample(
            &metrics_text,
            "collector_values_dropped_total{reason=\"rejected\"}"
        )
        .is_some(),
        "{metrics_text}"
    );
    bot.terminate(WAIT).await;
}

/// The job of an entity on `/jobs.json` (tcpcheck: one job per entity).
fn job(view: &Json, entity: Id) -> Json {
    view["entities"]
        .as_array()
        .and_then(|l| l.iter().find(|e| e["entity_id"] == json!(entity)))
        .map(|e| e["jobs"][0].clone())
        .unwrap_or(Json::Null)
}

async fn wait_for_jobs(metrics: &str, ready: impl Fn(&Json) -> bool) -> Json {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answer = reqwest::get(format!("http://{metrics}/jobs.json")).await;
        if let Ok(view) = match answer {
            Ok(answer) => answer.json::<Json>().await.map_err(|_| ()),
            Err(_) => Err(()),
        } {
            if ready(&view) {
                return view;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "page never got ready: {view:#}"
            );
        }
        assert!(tokio::time::Instant::now() < deadline, "no status page");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn sigterm_delivers_what_is_still_coalescing() {
    let (_listener, backend, _) = setup().await;
    // A group closes only when the next second's firings repeat its paths, or at shutdown: the
    // last second's values are always still coalescing.
    let mut bot = start_bot(
        &backend,
        &[
            ("DELIVERY_BATCH_MAX_DELAY_MS", "60000"),
            ("DELIVERY_BATCH_MAX_VALUES", "1000000"),
        ],
    );
    let all: BTreeSet<Id> = (FIRST_DEVICE..FIRST_DEVICE + DEVICES).collect();
    backend
        .wait_for_values(ACCOUNT, |v| devices_with_values(v) == all, WAIT)
        .await;
    let sigterm = unix_now();
    let status = bot.terminate(WAIT).await;
    assert!(status.success(), "{status:?}");
    let values = backend.values(ACCOUNT);
    let flushed: Vec<&StoredValue> = values.iter().filter(|v| v.t >= sigterm).collect();
    let flushed_devices: BTreeSet<Id> = flushed
        .iter()
        .filter(|v| v.path.ends_with(".ok"))
        .filter_map(|v| v.path.split('.').nth(1)?.parse().ok())
        .collect();
    assert_eq!(
        flushed_devices, all,
        "the last firings, still coalescing at SIGTERM, are delivered on the way out"
    );
    for device in &all {
        let firings = values
            .iter()
            .filter(|v| v.path.starts_with(&format!("entity.{device}.")) && v.path.ends_with(".ok"))
            .count();
        let first = format!("entity.{FIRST_DEVICE}.");
        let expected = values
            .iter()
            .filter(|v| v.path.starts_with(&first) && v.path.ends_with(".ok"))
            .count();
        assert_eq!(firings, expected, "device {device}: no firing lost");
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
