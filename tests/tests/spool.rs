//! End-to-end tests of durable delivery: the `tcpcheck` example bot through backend outages,
//! a `kill -9`, and a full spool.

use e2e::process::{build, BotProcess};
use e2e::{Fault, Fixture, Id, StoredValue, TestBackend, WriteMethod};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

const BOT: Id = 1_620_000_011;
const ACCOUNT: Id = 1_409_012_345;
const WAIT: Duration = Duration::from_secs(30);

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One device checked every second.
fn fixture(port: u16) -> Fixture {
    let mut f = Fixture::new();
    f.account(ACCOUNT, "Acme");
    f.systemwide_bot(BOT, "tcpcheck");
    f.credential(ACCOUNT, 101, "tcpcheck", json!({"timeout": "1.0"}));
    f.sensor(ACCOUNT, 102, "tcpcheck", Some(1), json!({"port": port}));
    f.device(ACCOUNT, 110, "local", "127.0.0.1");
    f.bind(110, "tcpcheck", 101, &[(102, None)], BOT);
    f
}

async fn setup() -> (TcpListener, TestBackend, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let backend = TestBackend::start(fixture(port)).await;
    (listener, backend, format!("entity.110.tcpcheck.{port}.ok"))
}

fn env<'a>(url: &'a str, token: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("BACKEND_URL", url),
        ("BOT_TOKEN", token),
        ("JOBS_REFRESH_INTERVAL", "1"),
        ("DELIVERY_ATTEMPTS", "1"),
    ];
    env.extend_from_slice(extra);
    env
}

/// Timestamps of one path, ascending.
fn times(values: &[StoredValue], path: &str) -> Vec<f64> {
    let mut t: Vec<f64> = values
        .iter()
        .filter(|v| v.path == path)
        .map(|v| v.t)
        .collect();
    t.sort_by(f64::total_cmp);
    t
}

/// The largest gap between consecutive timestamps within [from, to].
fn largest_gap(times: &[f64], from: f64, to: f64) -> f64 {
    let inside: Vec<f64> = times
        .iter()
        .copied()
        .filter(|t| *t >= from && *t <= to)
        .collect();
    inside.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
}

#[tokio::test]
async fn an_outage_loses_nothing_values_arrive_by_put_with_their_timestamps() {
    let (_listener, backend, path) = setup().await;
    let (url, token) = (backend.url(), backend.token(BOT));
    let bot = BotProcess::start(
        &build("collector", "--example", "tcpcheck"),
        &[],
        &env(&url, &token, &[]),
    );
    backend
        .wait_for_values(ACCOUNT, |v| times(v, &path).len() >= 2, WAIT)
        .await;

    // Phase 1: the backend answers 503 to values. Phase 2: it is gone (connection refused).
    let outage_start = now();
    let fault =
        backend.inject(Fault::on_path(&format!("/api/accounts/{ACCOUNT}/values")).status(503));
    tokio::time::sleep(Duration::from_secs(4)).await;
    backend.stop().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let outage_end = now();
    backend.remove_fault(fault);
    backend.restart().await.expect("restart");

    // Everything measured during the outage arrives, by PUT, with the time it was measured.
    let values = backend
        .wait_for_values(
            ACCOUNT,
            |v| times(v, &path).iter().any(|t| *t > outage_end + 1.0),
            WAIT,
        )
        .await;
    let put: Vec<&StoredValue> = values
        .iter()
        .filter(|v| v.method == WriteMethod::Put)
        .collect();
    assert!(
        put.len() >= 6,
        "about 8 s of values replayed, got {}",
        put.len()
    );
    assert!(put
        .iter()
        .all(|v| v.t >= outage_start - 1.0 && v.t <= outage_end + 5.0));
    let all = times(&values, &path);
    let gap = largest_gap(&all, outage_start - 2.0, outage_end + 1.0);
    assert!(
        gap < 1.6,
        "no firing lost across the outage (largest gap {gap:.2} s): {all:?}"
    );
    assert!(bot.stderr().contains("spool"), "{}", bot.stderr());
    // The user watching the log is told when values flow again and when the backlog is gone.
    bot.wait_for_log("the backend takes values again", WAIT)
        .await;
    bot.wait_for_log("spool replayed", WAIT).await;
}

#[tokio::test]
async fn kill_9_during_an_outage_then_restart_replays_the_spool() {
    let (_listener, backend, path) = setup().await;
    let (url, token) = (backend.url(), backend.token(BOT));
    let binary = build("collector", "--example", "tcpcheck");
    let bot = BotProcess::start(&binary, &[], &env(&url, &token, &[]));
    backend
        .wait_for_values(ACCOUNT, |v| times(v, &path).len() >= 2, WAIT)
        .await;

    backend.stop().await;
    let outage_start = now();
    bot.wait_for_log("go to the spool", WAIT).await;
    // A few more firings join the spool while the backend stays down.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed_at = now();
    let data_dir = bot.kill().await;
    backend.restart().await.expect("restart");
    let bot = BotProcess::start_in(&binary, &[], &env(&url, &token, &[]), data_dir);
    let values = backend
        .wait_for_values(
            ACCOUNT,
            |v| {
                v.iter()
                    .filter(|x| {
                        x.method == WriteMethod::Put
                            && x.t >= outage_start - 1.0
                            && x.t <= killed_at
                    })
                    .count()
                    >= 3
            },
            WAIT,
        )
        .await;
    let all = times(&values, &path);
    let gap = largest_gap(&all, outage_start - 1.0, killed_at - 1.0);
    assert!(
        gap < 1.6,
        "what the spool accepted before kill -9 arrived (gap {gap:.2} s): {all:?}"
    );
    bot.wait_for_log("earlier run", WAIT).await;
}

#[tokio::test]
async fn a_full_spool_drops_the_oldest_and_counts_them() {
    let (_listener, backend, path) = setup().await;
    let (url, token) = (backend.url(), backend.token(BOT));
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let address = format!("127.0.0.1:{metrics_port}");
    let fault =
        backend.inject(Fault::on_path(&format!("/api/accounts/{ACCOUNT}/values")).status(503));
    let bot = BotProcess::start(
        &build("collector", "--example", "tcpcheck"),
        &[],
        &env(
            &url,
            &token,
            &[
                ("SPOOL_MAX_BYTES", "4096"),
                ("METRICS_ADDRESS", address.as_str()),
            ],
        ),
    );
    bot.wait_for_log("SPOOL FULL", Duration::from_secs(90))
        .await;
    let metrics = e2e::metrics::page(&address).await;
    let dropped = e2e::metrics::sample(
        &metrics,
        "collector_values_dropped_total{reason=\"spool_full\"}",
    )
    .unwrap_or(0.0);
    assert!(dropped >= 1.0, "spool_full drops are counted:\n{metrics}");
    let bytes = e2e::metrics::sample(&metrics, "collector_spool_bytes").unwrap_or(f64::MAX);
    assert!(bytes <= 4096.0, "the spool stays within its bound: {bytes}");

    // Recovery: what is left (the newest) arrives; the dropped oldest never does.
    let recovered = now();
    backend.remove_fault(fault);
    let values = backend
        .wait_for_values(
            ACCOUNT,
            |v| times(v, &path).iter().any(|t| *t > recovered + 1.0),
            WAIT,
        )
        .await;
    let put = values
        .iter()
        .filter(|v| v.method == WriteMethod::Put)
        .count();
    assert!(put >= 1, "the spooled values were replayed");
}

#[tokio::test]
async fn a_batch_the_backend_keeps_refusing_is_set_aside_and_replay_goes_on() {
    let (_listener, backend, path) = setup().await;
    let (url, token) = (backend.url(), backend.token(BOT));
    let address = format!("127.0.0.1:{}", e2e::alertmanager::free_port());
    let values_path = format!("/api/accounts/{ACCOUNT}/values/");
    // Dropped connections on the first replays: they never count toward the limit.
    let dropped = backend.inject(Fault::on("PUT", &values_path).close_connection().times(2));
    // The first spooled batch the backend answers is poisoned: every PUT of it gets a 503.
    let first_body: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let seen = first_body.clone();
    let poison = backend.inject(
        Fault::when(move |r| {
            let Ok(mut first) = seen.lock() else {
                return false;
            };
            r.method == "PUT" && first.get_or_insert_with(|| r.body.to_vec()).as_slice() == r.body
        })
        .status(503),
    );
    backend.inject(Fault::on("POST", &values_path).status(503).times(1));
    let bot = BotProcess::start(
        &build("collector", "--example", "tcpcheck"),
        &[],
        &env(&url, &token, &[("METRICS_ADDRESS", address.as_str())]),
    );
    bot.wait_for_log("set aside", Duration::from_secs(60)).await;
    let set_aside_at = now();
    assert_eq!(backend.fault_hits(dropped), 2);
    // Refusals while no other batch was there to go through count as the backend failing. The
    // bound is the one the README gives (5 refusals).
    let limit = 5;
    assert!(backend.fault_hits(poison) >= limit as usize);
    let line = bot
        .stderr()
        .lines()
        .find(|l| l.contains("set aside"))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains("job=110")
            && line.contains("2 values")
            && line.contains(&format!("refused it {limit} times")),
        "{line}"
    );

    // The replay went on, and once the spool is empty values go straight to the backend again.
    let values = backend
        .wait_for_values(
            ACCOUNT,
            |v| {
                v.iter()
                    .any(|x| x.method == WriteMethod::Post && x.t > set_aside_at + 0.5)
            },
            WAIT,
        )
        .await;
    let replayed = values
        .iter()
        .filter(|v| v.method == WriteMethod::Put && v.path == path)
        .count();
    assert!(
        replayed >= 3,
        "the other spooled batches arrived: {replayed}"
    );
    let metrics = e2e::metrics::page(&address).await;
    assert_eq!(
        e2e::metrics::sample(&metrics, "collector_values_set_aside_total"),
        Some(2.0),
        "{metrics}"
    );
}
