//! End-to-end tests of alerts: the `tcpcheck` example's `TcpPortClosed` check driven from bad to
//! good on a real port, seen exactly once firing and once resolved at a real Alertmanager (through
//! its webhook), at the events webhook (which is down at first) and at a DataKit stand-in that
//! parses the line protocol, with a `kill -9` and restart in the middle.

use e2e::alertmanager::Alertmanager;
use e2e::line_protocol::{parse_body, Point};
use e2e::process::{build, BotProcess};
use e2e::receiver::{Received, Receiver};
use serde_json::Value as Json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const DATAKIT_TOKEN: &str = "tkn_0123456789secret";

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

/// Alert states (`firing`/`resolved`) of `TcpPortClosed` in JSON lines or bodies holding notices.
fn states<'a>(notices: impl Iterator<Item = &'a str>) -> Vec<String> {
    notices
        .filter_map(|text| serde_json::from_str::<Json>(text).ok())
        .filter(|json| json["alert"]["name"] == "TcpPortClosed")
        .map(|json| json["alert"]["state"].as_str().unwrap_or("").to_string())
        .collect()
}

fn webhook_states(received: &[Received]) -> Vec<String> {
    states(received.iter().map(|r| r.body.as_str()))
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

fn datakit_points(receiver: &Receiver, path: &str) -> Vec<Point> {
    let mut points = Vec::new();
    for request in receiver.received(path) {
        assert!(
            request.target.ends_with(&format!("?token={DATAKIT_TOKEN}")),
            "the DataWay token travels in the query: {}",
            request.target
        );
        let parsed = parse_body(&request.body).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(parsed.len() <= 100, "at most 100 points a POST");
        points.extend(parsed);
    }
    points
}

fn keyevent_statuses(receiver: &Receiver) -> Vec<String> {
    datakit_points(receiver, "/v1/write/keyevent")
        .iter()
        .filter(|p| p.tag("alertname").is_none() && p.tag("port").is_some())
        .map(|p| p.tag("df_status").unwrap_or("").to_string())
        .collect()
}

async fn metrics_page(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_check_fires_once_and_resolves_once_on_every_sink_across_a_restart() {
    let receiver = Receiver::start().await;
    let alertmanager = Alertmanager::start(&format!("{}/am", receiver.url)).await;
    receiver.set_down("/webhook", true);
    let port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = jobs_file(dir.path(), port);
    let metrics_port = free_port();
    let metrics_address = format!("127.0.0.1:{metrics_port}");
    let webhook = format!("{}/webhook", receiver.url);
    let datakit = format!("{}/?token={DATAKIT_TOKEN}", receiver.url);
    let env = [
        ("ALERTMANAGER_URL", alertmanager.url.as_str()),
        ("EVENTS_WEBHOOK_URL", webhook.as_str()),
        ("DATAKIT_URL", datakit.as_str()),
        ("ALERT_IF_IN_A_ROW", "2"),
        ("METRICS_ADDRESS", metrics_address.as_str()),
    ];
    let binary = build("collector", "--example", "tcpcheck");
    let args = ["--jobs", jobs.to_str().expect("path")];
    let bot = BotProcess::start(&binary, &args, &env);

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
    let alert: Json = serde_json::from_str(&line).expect("JSON line");
    for (label, value) in [
        ("bot", "tcpcheck"),
        ("entity", "100"),
        ("entity_name", "web-1"),
        ("address", "127.0.0.1"),
    ] {
        assert_eq!(alert["alert"]["labels"][label], value, "{line}");
    }
    assert!(webhook_states(&receiver.received("/webhook")).is_empty());
    bot.wait_for_log("notifications not delivered", WAIT).await;
    receiver.set_down("/webhook", false);
    receiver
        .wait_for(
            "/webhook",
            "the firing after the outage",
            |r| webhook_states(r) == ["firing"],
            WAIT,
        )
        .await;
    receiver
        .wait_for(
            "/am",
            "Alertmanager's firing notification",
            |r| alertmanager_states(r) == ["firing"],
            WAIT,
        )
        .await;

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

    let _listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("open the port");
    bot.wait_for(
        "the resolution on stdout",
        |out, _| states(out.iter().map(String::as_str)) == ["resolved"],
        WAIT,
    )
    .await;
    receiver
        .wait_for(
            "/webhook",
            "the resolution",
            |r| webhook_states(r) == ["firing", "resolved"],
            WAIT,
        )
        .await;
    receiver
        .wait_for(
            "/am",
            "Alertmanager's resolved notification",
            |r| alertmanager_states(r) == ["firing", "resolved"],
            WAIT,
        )
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while keyevent_statuses(&receiver) != ["critical", "ok"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "keyevents: {:?}",
            keyevent_statuses(&receiver)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A few more group intervals: nothing more may arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        webhook_states(&receiver.received("/webhook")),
        ["firing", "resolved"]
    );
    assert_eq!(
        alertmanager_states(&receiver.received("/am")),
        ["firing", "resolved"]
    );
    assert_eq!(keyevent_statuses(&receiver), ["critical", "ok"]);

    let keyevent = datakit_points(&receiver, "/v1/write/keyevent")
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

    let records = datakit_points(&receiver, "/v1/write/logging");
    let runs = datakit_points(&receiver, "/v1/write/metric");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_that_fires_while_alertmanager_is_down_arrives_when_it_is_back() {
    let receiver = Receiver::start().await;
    let alertmanager_port = e2e::alertmanager::free_port();
    let port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = jobs_file(dir.path(), port);
    let url = format!("http://127.0.0.1:{alertmanager_port}");
    let bot = BotProcess::start(
        &build("collector", "--example", "tcpcheck"),
        &["--jobs", jobs.to_str().expect("path")],
        &[("ALERTMANAGER_URL", url.as_str())],
    );
    bot.wait_for(
        "the alert firing on stdout",
        |out, _| states(out.iter().map(String::as_str)) == ["firing"],
        WAIT,
    )
    .await;
    bot.wait_for_log("notifications not delivered", WAIT).await;

    let alertmanager =
        Alertmanager::start_at(&format!("{}/am", receiver.url), alertmanager_port).await;
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
}
