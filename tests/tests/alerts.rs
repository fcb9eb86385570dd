//! End-to-end tests of alerts and the self-observability upload, with real sinks: a real
//! Alertmanager (through its webhook), the events webhook and a DataKit stand-in that parses the
//! line protocol (`e2e::alert_sinks`).
//!
//! - the `tcpcheck` example's `TcpPortClosed` check driven from bad to good on a real port, seen
//!   exactly once firing and once resolved at every sink (the webhook down at first), with a
//!   `kill -9` and restart in the middle;
//! - `NetflowExporterSilent`: a netflowbot with 1-second window minutes, an exporter entity that
//!   sends a replayed softflowd capture, goes quiet for 3 windows, and sends again;
//! - Alertmanager down when an alert fires, then re-sent often enough that Alertmanager does
//!   not resolve it by itself; DataKit upload failures counted and logged once per change;
//! - `ALERT_RENOTIFY` repeats a firing alert; a job removed from the configs resolves it;
//! - `JOB_MAX_STARTS_PER_SECOND` in `wait_cost`.
//!
//! `PingHostDown` and the SNMP checks are driven at the three sinks in `ping.rs` and `snmp.rs`.

use e2e::alert_sinks::{AlertSinks, DATAKIT_TOKEN};
use e2e::alertmanager::Alertmanager;
use e2e::process::{build, BotProcess};
use e2e::receiver::{Received, Receiver};
use e2e::{Fixture, Id, TestBackend};
use serde_json::{json, Value as Json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn jobs_file(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("jobs.toml");
    let jobs = format!(
        r#"
[[credentials]]
id = 1
protocol = "tcpcheck"
details = {{ timeout = "1.0" }}

[[sensors]]
id = 10
protocol = "tcpcheck"
default_interval = 1
details = {{ port = {port} }}

[[entities]]
id = 100
name = "web-1"
details = {{ ipv4 = "127.0.0.1" }}
protocols.tcpcheck = {{ credential = 1, sensors = [{{ sensor = 10 }}] }}
"#
    );
    std::fs::write(&path, jobs).expect("write jobs file");
    path
}

/// Alert states (`firing`/`resolved`) of `TcpPortClosed` in JSON lines (standalone stdout).
fn states<'a>(notices: impl Iterator<Item = &'a str>) -> Vec<String> {
    notices
        .filter_map(|text| serde_json::from_str::<Json>(text).ok())
        .filter(|json| json["alert"]["name"] == "TcpPortClosed")
        .map(|json| json["alert"]["state"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Statuses of Alertmanager's webhook notifications about `TcpPortClosed`.
fn alertmanager_states(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .filter_map(|r| serde_json::from_str::<Json>(&r.body).ok())
        .filter(|json| json["commonLabels"]["alertname"] == "TcpPortClosed")
        .map(|json| json["status"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn metrics_page(port: u16) -> String {
    e2e::metrics::page(&format!("127.0.0.1:{port}")).await
}

/// The value of the sample `name{labels}` on a metrics page, 0 when absent.
fn sample(page: &str, series: &str) -> f64 {
    e2e::metrics::sample(page, series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_check_fires_once_and_resolves_once_on_every_sink_across_a_restart() {
    let sinks = AlertSinks::start().await;
    sinks.receiver.set_down("/webhook", true);
    let port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = jobs_file(dir.path(), port);
    let metrics_port = free_port();
    let metrics_address = format!("127.0.0.1:{metrics_port}");
    let mut env = sinks.env();
    env.push(("ALERT_IF_IN_A_ROW", "2".into()));
    env.push(("METRICS_ADDRESS", metrics_address));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let binary = build("collector", "--example", "tcpcheck");
    let args = ["--jobs", jobs.to_str().expect("path")];
    let bot = BotProcess::start(&binary, &args, &env);
    let alert =
        |expected: &'static [&'static str]| sinks.wait_for("TcpPortClosed", "100", expected, WAIT);

    bot.wait_for(
        "the alert firing on stdout",
        |out, _| states(out.iter().map(String::as_str)) == ["firing"],
        WAIT,
    )
    .await;
    let line = bot
        .stdout_lines()
        .into_iter()
        .find(|l| l.starts_with("{\"alert\""))
        .expect("alert line");
    let printed: Json = serde_json::from_str(&line).expect("JSON line");
    for (label, value) in [
        ("bot", "tcpcheck"),
        ("entity", "100"),
        ("entity_name", "web-1"),
        ("address", "127.0.0.1"),
    ] {
        assert_eq!(printed["alert"]["labels"][label], value, "{line}");
    }
    assert!(sinks.webhook_states("TcpPortClosed", "100").is_empty());
    bot.wait_for_log("notifications not delivered", WAIT).await;
    sinks.receiver.set_down("/webhook", false);
    alert(&["firing"]).await;
    let fired = &sinks.alertmanager_notifications("TcpPortClosed", "100")[0]["alerts"][0];
    assert_eq!(
        fired["annotations"]["summary"], "TcpPortClosed on web-1",
        "{fired}"
    );
    assert!(
        fired["annotations"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("127.0.0.1")),
        "{fired}"
    );
    sinks.assert_labels(
        "TcpPortClosed",
        "100",
        &[
            ("bot", "tcpcheck"),
            ("entity_name", "web-1"),
            ("port", &port.to_string()),
        ],
    );

    // kill -9 and start again on the same data directory: still firing, not announced again.
    let data_dir = bot.kill().await;
    let bot = BotProcess::start_in(&binary, &args, &env, data_dir);
    bot.wait_for(
        "three more bad runs",
        |out, _| out.iter().filter(|l| l.contains(".ok\",\"v\":0.0")).count() >= 3,
        WAIT,
    )
    .await;
    assert!(states(bot.stdout_lines().iter().map(String::as_str)).is_empty());

    // The port opens while the webhook is down: the resolution waits and arrives when it is back.
    sinks.receiver.set_down("/webhook", true);
    let _listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("open the port");
    bot.wait_for(
        "the resolution on stdout",
        |out, _| states(out.iter().map(String::as_str)) == ["resolved"],
        WAIT,
    )
    .await;
    bot.wait_for_log("notifications not delivered", WAIT).await;
    assert_eq!(sinks.webhook_states("TcpPortClosed", "100"), ["firing"]);
    sinks.receiver.set_down("/webhook", false);
    alert(&["firing", "resolved"]).await;
    // A few more group intervals: nothing more may arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let once = ["firing", "resolved"].map(String::from).to_vec();
    assert_eq!(
        sinks.states("TcpPortClosed", "100"),
        [once.clone(), once.clone(), once]
    );

    let keyevent = sinks
        .datakit_points("/v1/write/keyevent")
        .into_iter()
        .find(|p| p.tag("df_status") == Some("ok"))
        .expect("resolution keyevent");
    assert_eq!(keyevent.tag("df_source"), Some("monitor"));
    assert!(keyevent.tag("df_event_id").is_some());
    assert!(keyevent
        .str_field("df_title")
        .is_some_and(|t| t.contains("TcpPortClosed")));
    let dimensions: Json =
        serde_json::from_str(keyevent.str_field("df_dimension_tags").expect("tags"))
            .expect("df_dimension_tags is JSON");
    assert_eq!(dimensions["entity"], "100");
    assert!(keyevent.number("df_date_range").is_some());

    let records = sinks.datakit_points("/v1/write/logging");
    let runs = sinks.datakit_points("/v1/write/metric");
    assert!(
        records.len() >= 5 && runs.len() >= 5,
        "{} records, {} metrics",
        records.len(),
        runs.len()
    );
    for point in records.iter().chain(&runs) {
        assert_eq!(point.tag("task_status"), Some("success"), "{point:?}");
        assert_eq!(
            (point.tag("bot"), point.tag("job"), point.tag("entity")),
            (Some("tcpcheck"), Some("100"), Some("100"))
        );
        for cost in ["wait_cost", "run_cost", "total_cost"] {
            assert!(
                point
                    .number(cost)
                    .is_some_and(|ms| (0.0..5_000.0).contains(&ms)),
                "{cost} in {point:?}"
            );
        }
    }
    assert!(records
        .iter()
        .all(|p| p.tag("status") == Some("ok") && p.str_field("message").is_some()));

    let page = metrics_page(metrics_port).await;
    for expected in [
        "collector_alerts_firing 0",
        "collector_notifications_sent_total{sink=\"webhook\",kind=\"alert\"} 1",
        "collector_notifications_pending{sink=\"webhook\"} 0",
    ] {
        assert!(page.contains(expected), "{expected} missing from\n{page}");
    }
    let failed = sample(
        &page,
        "collector_notifications_failed_total{sink=\"webhook\"}",
    );
    assert!(failed >= 1.0, "the webhook's outage is counted:\n{page}");
    assert!(
        !bot.stderr().contains(DATAKIT_TOKEN),
        "the DataWay token is never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_starts_per_second_spreads_firings_due_together_and_shows_in_wait_cost() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut jobs = format!(
        "[[credentials]]\nid = 1\nprotocol = \"tcpcheck\"\n\n\
         [[sensors]]\nid = 10\nprotocol = \"tcpcheck\"\ndefault_interval = 5\ndetails = {{ port = {port} }}\n"
    );
    for id in 1..=10 {
        jobs.push_str(&format!(
            "\n[[entities]]\nid = {id}\nname = \"e{id}\"\ndetails = {{ ipv4 = \"127.0.0.1\" }}\n\
             protocols.tcpcheck = {{ credential = 1, sensors = [{{ sensor = 10 }}] }}\n"
        ));
    }
    let path = dir.path().join("jobs.toml");
    std::fs::write(&path, jobs).expect("write jobs");
    let bot = BotProcess::start(
        &build("collector", "--example", "tcpcheck"),
        &["--jobs", path.to_str().expect("utf-8")],
        &[
            ("JOB_MAX_STARTS_PER_SECOND", "4"),
            ("TASK_RECORDS_PREFIX", "bot.tcpcheck"),
        ],
    );
    let wait_costs = |out: &[String]| -> Vec<f64> {
        out.iter()
            .filter_map(|l| serde_json::from_str::<Json>(l).ok())
            .filter(|v| v["p"].as_str().is_some_and(|p| p.ends_with(".wait_cost")))
            .filter_map(|v| v["v"].as_f64())
            .collect()
    };
    bot.wait_for("ten wait costs", |out, _| wait_costs(out).len() >= 10, WAIT)
        .await;
    let mut costs = wait_costs(&bot.stdout_lines())[..10].to_vec();
    costs.sort_by(f64::total_cmp);
    // Ten jobs due in the same second at 4 starts a second: the last waits about 2.25 s.
    assert!(costs[0] < 0.5, "{costs:?}");
    assert!((2.0..4.0).contains(&costs[9]), "{costs:?}");
    for pair in costs.windows(2) {
        assert!(pair[1] - pair[0] > 0.15, "starts are spread: {costs:?}");
    }
}

/// Whether Alertmanager lists `TcpPortClosed` as active.
async fn port_alert_active(alertmanager: &Alertmanager) -> bool {
    alertmanager
        .active_alerts()
        .await
        .iter()
        .any(|a| a["labels"]["alertname"] == "TcpPortClosed")
}

/// Alertmanager's `resolve_timeout` in the re-send test, in seconds: an alert it does not hear
/// of again within this time resolves by itself.
const SHORT_RESOLVE_TIMEOUT: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_that_fires_while_alertmanager_is_down_arrives_when_it_is_back_and_is_resent() {
    let receiver = Receiver::start().await;
    let alertmanager_port = e2e::alertmanager::free_port();
    let port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = jobs_file(dir.path(), port);
    let url = format!("http://127.0.0.1:{alertmanager_port}");
    let bot = BotProcess::start(
        &build("collector", "--example", "tcpcheck"),
        &["--jobs", jobs.to_str().expect("path")],
        &[
            ("ALERTMANAGER_URL", url.as_str()),
            ("ALERTMANAGER_RESEND_INTERVAL", "1"),
        ],
    );
    bot.wait_for(
        "the alert firing on stdout",
        |out, _| states(out.iter().map(String::as_str)) == ["firing"],
        WAIT,
    )
    .await;
    bot.wait_for_log("notifications not delivered", WAIT).await;

    let alertmanager = Alertmanager::start_at_resolving_after(
        &format!("{}/am", receiver.url),
        alertmanager_port,
        SHORT_RESOLVE_TIMEOUT,
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !port_alert_active(&alertmanager).await {
        assert!(tokio::time::Instant::now() < deadline, "{}", bot.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    receiver
        .wait_for(
            "/am",
            "the firing notification",
            |r| alertmanager_states(r) == ["firing"],
            WAIT,
        )
        .await;
    assert_eq!(
        bot.stderr()
            .matches("notifications delivered again")
            .count(),
        1,
        "one line when the sink is back:\n{}",
        bot.stderr()
    );

    // Three resolve timeouts: without the re-sends Alertmanager would resolve the alert.
    let watched = tokio::time::Instant::now();
    while watched.elapsed() < Duration::from_secs(3 * SHORT_RESOLVE_TIMEOUT) {
        assert!(
            port_alert_active(&alertmanager).await,
            "Alertmanager resolved the firing alert by itself"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(alertmanager_states(&receiver.received("/am")), ["firing"]);

    let _listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("open the port");
    receiver
        .wait_for(
            "/am",
            "the resolution",
            |r| alertmanager_states(r) == ["firing", "resolved"],
            WAIT,
        )
        .await;
    assert!(!port_alert_active(&alertmanager).await);
    // Re-sends stop with the resolution: nothing re-opens the alert.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!port_alert_active(&alertmanager).await);
    assert_eq!(
        alertmanager_states(&receiver.received("/am")),
        ["firing", "resolved"]
    );
}

/// `(logging, metric)` self-observability points counted with `outcome` on a metrics page.
fn uploads(page: &str, outcome: &str) -> (f64, f64) {
    let series =
        |kind: &str| format!("collector_uploads_total{{kind=\"{kind}\",outcome=\"{outcome}\"}}");
    (
        sample(page, &series("logging")),
        sample(page, &series("metric")),
    )
}

/// A tcpcheck bot on an open port (a run a second) uploading to `datakit`, with `/metrics`.
fn uploading_bot(jobs: &std::path::Path, datakit: &str, metrics_port: u16) -> BotProcess {
    let metrics_address = format!("127.0.0.1:{metrics_port}");
    BotProcess::start(
        &build("collector", "--example", "tcpcheck"),
        &["--jobs", jobs.to_str().expect("path")],
        &[
            ("DATAKIT_URL", datakit),
            ("METRICS_ADDRESS", metrics_address.as_str()),
        ],
    )
}

/// Waits until at least `points` of each kind were counted with `outcome`.
async fn wait_for_uploads(metrics_port: u16, outcome: &str, points: f64) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // The bot may not serve /metrics yet.
        let page = match reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics")).await {
            Ok(answer) => answer.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let (logging, metric) = uploads(&page, outcome);
        if logging >= points && metric >= points {
            return page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{points} {outcome} points of each kind expected:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datakit_upload_failures_are_counted_and_logged_once_per_change() {
    let receiver = Receiver::start().await;
    let open = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = jobs_file(dir.path(), open.local_addr().expect("address").port());
    for path in ["/v1/write/logging", "/v1/write/metric"] {
        receiver.set_down(path, true);
    }
    // One DataKit answers 503, the other is not there at all (connection refused).
    let (metrics_503, metrics_refused) = (free_port(), free_port());
    let bot = uploading_bot(
        &jobs,
        &format!("{}/?token={DATAKIT_TOKEN}", receiver.url),
        metrics_503,
    );
    let nobody = format!("http://127.0.0.1:{}/?token={DATAKIT_TOKEN}", free_port());
    let bot_refused = uploading_bot(&jobs, &nobody, metrics_refused);

    let failing = "self-observability upload failing";
    for (bot, metrics_port) in [(&bot, metrics_503), (&bot_refused, metrics_refused)] {
        // Four runs' points failed (four flushes at one run a second): one line per endpoint.
        wait_for_uploads(metrics_port, "failed", 4.0).await;
        assert_eq!(bot.stderr().matches(failing).count(), 2, "{}", bot.stderr());
        assert!(!bot.stderr().contains(DATAKIT_TOKEN), "{}", bot.stderr());
    }

    for path in ["/v1/write/logging", "/v1/write/metric"] {
        receiver.set_down(path, false);
    }
    let page = wait_for_uploads(metrics_503, "sent", 2.0).await;
    let back = "self-observability upload works again";
    bot.wait_for(
        "both endpoints back",
        |_, log| log.matches(back).count() == 2,
        WAIT,
    )
    .await;
    assert!(!receiver.received("/v1/write/logging").is_empty());
    // Failed points stay counted; nothing more is logged while it works.
    let (failed_logging, failed_metric) = uploads(&page, "failed");
    assert!(failed_logging >= 4.0 && failed_metric >= 4.0, "{page}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(bot.stderr().matches(failing).count(), 2, "{}", bot.stderr());
    assert_eq!(bot.stderr().matches(back).count(), 2, "{}", bot.stderr());
}

const NETFLOW_BOT: Id = 1_620_000_041;
const NETFLOW_ACCOUNT: Id = 1_409_000_041;
const EXPORTER: Id = 141;
const EXPORTER_ADDRESS: &str = "127.0.0.41";
/// An exporter that is no entity: the bot suggests it.
const NEW_EXPORTER_ADDRESS: &str = "127.0.0.42";

/// An exporter at `from` that replays softflowd's NetFlow v5 capture in a loop while `sending`
/// is set, a datagram every 5 ms, until dropped.
struct Exporter {
    sending: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Exporter {
    fn start(from: &str, to: String) -> Exporter {
        let sending = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let datagrams = e2e::captures::softflowd("v5");
        let socket = std::net::UdpSocket::bind((from, 0)).expect("bind the exporter");
        let (flag, end) = (sending.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for datagram in datagrams.iter().cycle() {
                if end.load(Ordering::Relaxed) {
                    return;
                }
                if flag.load(Ordering::Relaxed) {
                    let _ = socket.send_to(datagram, &to);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Exporter {
            sending,
            stop,
            thread: Some(thread),
        }
    }

    fn set_sending(&self, sending: bool) {
        self.sending.store(sending, Ordering::Relaxed);
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn netflow_fixture() -> Fixture {
    let mut fixture = Fixture::new();
    fixture.account(NETFLOW_ACCOUNT, "Acme");
    fixture.systemwide_bot(NETFLOW_BOT, "netflow");
    fixture.credential(NETFLOW_ACCOUNT, 541, "netflow", json!({}));
    fixture.sensor(NETFLOW_ACCOUNT, 542, "netflow", None, json!({}));
    fixture.device(NETFLOW_ACCOUNT, EXPORTER, "edge exporter", EXPORTER_ADDRESS);
    fixture.bind(EXPORTER, "netflow", 541, &[(542, None)], NETFLOW_BOT);
    fixture
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exporter_that_goes_quiet_for_three_windows_fires_netflow_exporter_silent_once() {
    let sinks = AlertSinks::start().await;
    let backend = TestBackend::start(netflow_fixture()).await;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free UDP port")
        .port();
    let mut env = sinks.env();
    env.extend([
        ("BACKEND_URL", backend.url()),
        ("BOT_TOKEN", backend.token(NETFLOW_BOT)),
        ("NETFLOW_PORT", port.to_string()),
        ("NETFLOW_THREADS", "1".into()),
        ("NETFLOW_NO_IPV6", "true".into()),
        // Window minutes of one second: "3 silent 1-minute windows" take 3 s.
        ("NETFLOW_MINUTE", "1".into()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let binary = build("netflowbot", "--bin", "netflowbot");
    let bot = BotProcess::start(&binary, &[], &env);
    bot.wait_for_log("jobs refreshed", WAIT).await;
    let exporter = Exporter::start(EXPORTER_ADDRESS, format!("127.0.0.1:{port}"));
    let new_exporter = Exporter::start(NEW_EXPORTER_ADDRESS, format!("127.0.0.1:{port}"));
    let entity_total = format!("netflow.1min.ingress.entity.{EXPORTER}");
    backend
        .wait_for_values(
            NETFLOW_ACCOUNT,
            |values| {
                values
                    .iter()
                    .any(|v| v.path == entity_total && v.value > 0.0)
            },
            WAIT,
        )
        .await;
    // The exporter that is no entity is suggested: one event at the webhook and at DataKit.
    let suggested = |notices: &[Json]| -> usize {
        notices
            .iter()
            .filter(|n| {
                n["event"]["title"] == "new NetFlow exporter suggested"
                    && n["event"]["tags"]["address"] == NEW_EXPORTER_ADDRESS
                    && n["event"]["tags"]["bot"] == "netflow"
            })
            .count()
    };
    let webhook_notices = || -> Vec<Json> {
        let received = sinks.receiver.received("/webhook");
        received
            .iter()
            .filter_map(|r| serde_json::from_str(&r.body).ok())
            .collect()
    };
    sinks
        .receiver
        .wait_for(
            "/webhook",
            "the suggestion event",
            |_| suggested(&webhook_notices()) == 1,
            WAIT,
        )
        .await;
    drop(new_exporter);
    let suggestion_keyevents = || {
        sinks
            .datakit_points("/v1/write/keyevent")
            .into_iter()
            .filter(|p| {
                p.str_field("df_title") == Some("new NetFlow exporter suggested")
                    && p.tag("df_status") == Some("info")
                    && p.tag("address") == Some(NEW_EXPORTER_ADDRESS)
            })
            .count()
    };
    // Sending: reported every window, no alert; the suggestion is not repeated.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(suggested(&webhook_notices()), 1);
    assert_eq!(suggestion_keyevents(), 1);
    let entity = EXPORTER.to_string();
    let alert = "NetflowExporterSilent";
    assert_eq!(
        sinks.states(alert, &entity),
        [vec![], vec![], vec![]] as [Vec<String>; 3]
    );

    exporter.set_sending(false);
    let quiet = tokio::time::Instant::now();
    sinks.wait_for(alert, &entity, &["firing"], WAIT).await;
    assert!(
        quiet.elapsed() >= Duration::from_secs(2),
        "fired {:?} after the exporter went quiet: 3 windows are needed",
        quiet.elapsed()
    );
    let account = NETFLOW_ACCOUNT.to_string();
    sinks.assert_labels(
        alert,
        &entity,
        &[
            ("bot", "netflow"),
            ("entity_name", "edge exporter"),
            ("account", &account),
            ("address", EXPORTER_ADDRESS),
        ],
    );

    // kill -9 while it is silent: after the restart the alert is still firing, not announced again.
    let data_dir = bot.kill().await;
    let bot = BotProcess::start_in(&binary, &[], &env, data_dir);
    bot.wait_for_log("jobs refreshed", WAIT).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(sinks.webhook_states(alert, &entity), ["firing"]);

    exporter.set_sending(true);
    sinks
        .wait_for(alert, &entity, &["firing", "resolved"], WAIT)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let once = ["firing", "resolved"].map(String::from).to_vec();
    assert_eq!(
        sinks.states(alert, &entity),
        [once.clone(), once.clone(), once]
    );
    drop(bot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_is_renotified_and_resolves_when_its_job_is_removed() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = jobs_file(dir.path(), free_port());
    let webhook = format!("{}/webhook", receiver.url);
    let bot = BotProcess::start(
        &build("collector", "--example", "tcpcheck"),
        &["--jobs", jobs.to_str().expect("path")],
        &[
            ("EVENTS_WEBHOOK_URL", webhook.as_str()),
            ("JOBS_REFRESH_INTERVAL", "1"),
            ("ALERT_RENOTIFY", "1"),
        ],
    );
    let alerts = || -> Vec<Json> {
        receiver
            .received("/webhook")
            .iter()
            .filter_map(|r| serde_json::from_str::<Json>(&r.body).ok())
            .map(|n| n["alert"].clone())
            .filter(|a| a["name"] == "TcpPortClosed" && a["labels"]["entity"] == "100")
            .collect()
    };
    // State changes, and repeats of the firing alert.
    let states = || -> Vec<String> {
        alerts()
            .iter()
            .filter(|a| a["renotify"] == false)
            .map(|a| a["state"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let repeats = || alerts().iter().filter(|a| a["renotify"] == true).count();
    receiver
        .wait_for("/webhook", "the firing", |_| states() == ["firing"], WAIT)
        .await;
    // ALERT_RENOTIFY=1: the next bad runs, a second apart, repeat it.
    receiver
        .wait_for("/webhook", "two repeats", |_| repeats() >= 2, WAIT)
        .await;
    let first = &alerts()[0];
    let repeat = alerts().into_iter().find(|a| a["renotify"] == true);
    let repeat = repeat.expect("a repeat");
    assert_eq!(repeat["starts_at"], first["starts_at"], "{repeat}");

    // The entity leaves the jobs file (another one stays): its alert resolves at the refresh.
    let text = std::fs::read_to_string(&jobs).expect("read jobs file");
    std::fs::write(&jobs, text.replace("id = 100", "id = 101")).expect("write jobs file");
    receiver
        .wait_for(
            "/webhook",
            "the resolution",
            |_| states() == ["firing", "resolved"],
            WAIT,
        )
        .await;
    let resolved = alerts().into_iter().last().expect("the resolution");
    assert_eq!(
        resolved["description"], "the job 100 was removed",
        "{resolved}"
    );
    assert!(resolved["ends_at"].is_number(), "{resolved}");
    drop(bot);
}
