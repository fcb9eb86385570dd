//! End-to-end tests of the collector framework: the example `tcpcheck` bot (built from
//! `collector/examples/tcpcheck.rs`) against the test backend and real TCP listeners.

use e2e::process::{build, BotProcess};
use e2e::{Entity, Fault, Fixture, Id, StoredValue, TestBackend, WriteMethod};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;

const BOT: Id = 1_620_000_011;
const OTHER_BOT: Id = 1_620_000_099;
const ACCOUNT_A: Id = 1_409_012_345;
const ACCOUNT_B: Id = 1_409_054_321;
const WAIT: Duration = Duration::from_secs(20);

fn tcpcheck() -> PathBuf {
    build("collector", "--example", "tcpcheck")
}

/// A TCP port that accepts connections for the whole test.
async fn open_port() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}

/// Two accounts; in each a device checked by our bot every second, plus entities the skip rules
/// must leave out.
fn fixture(port: u16) -> Fixture {
    let mut f = Fixture::new();
    f.account(ACCOUNT_A, "Acme").account(ACCOUNT_B, "Beta");
    f.systemwide_bot(BOT, "tcpcheck");
    f.systemwide_bot(OTHER_BOT, "tcpcheck");
    for (account, base) in [(ACCOUNT_A, 100), (ACCOUNT_B, 200)] {
        let credential = base + 1;
        let sensor = base + 2;
        f.credential(account, credential, "tcpcheck", json!({"timeout": "1.0"}));
        f.sensor(account, sensor, "tcpcheck", Some(60), json!({"port": port}));
        // Ours, with a 1 s entity interval.
        f.device(account, base + 10, "ours", "127.0.0.1");
        f.bind(base + 10, "tcpcheck", credential, &[(sensor, Some(1))], BOT);
        // Another bot's device, an interface, a device without sensors: all skipped.
        f.device(account, base + 11, "other bot", "127.0.0.1");
        f.bind(
            base + 11,
            "tcpcheck",
            credential,
            &[(sensor, Some(1))],
            OTHER_BOT,
        );
        f.entity(
            Entity::new(account, base + 12, "eth0", "interface")
                .parent(base + 10)
                .details(json!({"ipv4": "127.0.0.1"})),
        );
        f.bind(base + 12, "tcpcheck", credential, &[(sensor, Some(1))], BOT);
        f.device(account, base + 13, "no sensors", "127.0.0.1");
        f.bind(base + 13, "tcpcheck", credential, &[], BOT);
    }
    f
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
    BotProcess::start(&tcpcheck(), &[], &env)
}

fn paths(values: &[StoredValue]) -> Vec<String> {
    let mut paths: Vec<String> = values.iter().map(|v| v.path.clone()).collect();
    paths.sort();
    paths.dedup();
    paths
}

fn has(values: &[StoredValue], path: &str, value: f64) -> bool {
    values.iter().any(|v| v.path == path && v.value == value)
}

fn count_of(values: &[StoredValue], path: &str) -> usize {
    values.iter().filter(|v| v.path == path).count()
}

#[tokio::test]
async fn refresh_uses_list_endpoints_skip_rules_and_posts_per_account() {
    let (_listener, port) = open_port().await;
    let backend = TestBackend::start(fixture(port)).await;
    let mut bot = start_bot(&backend, &[]);
    let ok_a = format!("entity.110.tcpcheck.{port}.ok");
    let ok_b = format!("entity.210.tcpcheck.{port}.ok");
    let a = backend
        .wait_for_values(ACCOUNT_A, |v| has(v, &ok_a, 1.0), WAIT)
        .await;
    let b = backend
        .wait_for_values(ACCOUNT_B, |v| has(v, &ok_b, 1.0), WAIT)
        .await;
    let expected_a = vec![ok_a.clone(), format!("entity.110.tcpcheck.{port}.seconds")];
    assert_eq!(paths(&a), expected_a, "only our device of account A");
    assert_eq!(paths(&b).len(), 2, "only our device of account B");
    assert!(a.iter().all(|v| v.method == WriteMethod::Post));

    // 1 + 3 requests per account and refresh; never one per entity, credential or sensor.
    let requests = backend.requests();
    let gets: Vec<&str> = requests
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.path.as_str())
        .collect();
    assert!(gets.contains(&"/api/status/info"));
    assert!(gets.contains(&"/api/profile/"));
    for g in &gets {
        let single =
            g.contains("/entities/1") || g.contains("/sensors/1") || g.contains("/credentials/1");
        assert!(!single, "no per-item GETs, got {g}");
    }
    let lists = backend.count("GET", "/api/accounts/");
    let listings = gets.iter().filter(|g| **g == "/api/accounts/").count();
    assert_eq!(
        lists,
        listings * 7,
        "account list + 3 lists for each of 2 accounts"
    );
    backend.assert_no_authorization_header();
    assert!(requests.iter().all(|r| r.status < 400), "{requests:?}");
    let status = bot.terminate(WAIT).await;
    assert!(status.success(), "SIGTERM gives exit 0: {status:?}");
}

#[tokio::test]
async fn an_unreadable_account_keeps_its_jobs_while_others_refresh() {
    let (_listener, port) = open_port().await;
    let backend = TestBackend::start(fixture(port)).await;
    let bot = start_bot(&backend, &[]);
    let ok_b = format!("entity.210.tcpcheck.{port}.ok");
    backend
        .wait_for_values(ACCOUNT_B, |v| has(v, &ok_b, 1.0), WAIT)
        .await;

    // Account B now answers 403 on its entity list.
    backend.inject(Fault::on("GET", &format!("/api/accounts/{ACCOUNT_B}/entities")).status(403));
    bot.wait_for_log(&format!("account={ACCOUNT_B}"), WAIT)
        .await;
    // Account A still refreshes: a device added there gets checked.
    backend.update(|f| {
        f.device(ACCOUNT_A, 120, "new", "127.0.0.1");
        f.bind(120, "tcpcheck", 101, &[(102, Some(1))], BOT);
    });
    let ok_new = format!("entity.120.tcpcheck.{port}.ok");
    backend
        .wait_for_values(ACCOUNT_A, |v| has(v, &ok_new, 1.0), WAIT)
        .await;
    // Account B's job was kept: its values keep coming.
    let before = count_of(&backend.values(ACCOUNT_B), &ok_b);
    backend
        .wait_for_values(ACCOUNT_B, |v| count_of(v, &ok_b) >= before + 2, WAIT)
        .await;
    assert!(
        bot.stderr().contains("403"),
        "the log says why: {}",
        bot.stderr()
    );

    // Bad JSON on a list is the same: logged, account skipped, its jobs kept.
    backend.clear_faults();
    backend.inject(Fault::on("GET", &format!("/api/accounts/{ACCOUNT_B}/sensors")).invalid_json());
    let mark = bot.stderr().len();
    bot.wait_for(
        "bad JSON logged",
        |_, err| err[mark.min(err.len())..].contains("unexpected answer"),
        WAIT,
    )
    .await;
    let before = count_of(&backend.values(ACCOUNT_B), &ok_b);
    backend
        .wait_for_values(ACCOUNT_B, |v| count_of(v, &ok_b) >= before + 2, WAIT)
        .await;
}

#[tokio::test]
async fn removed_and_changed_entities_are_rescheduled() {
    let (_listener, port) = open_port().await;
    let backend = TestBackend::start(fixture(port)).await;
    let bot = start_bot(&backend, &[]);
    let ok_a = format!("entity.110.tcpcheck.{port}.ok");
    backend
        .wait_for_values(ACCOUNT_A, |v| has(v, &ok_a, 1.0), WAIT)
        .await;

    // A changed interval re-creates the job; a removed binding cancels it.
    backend.update(|f| {
        f.set_interval(110, "tcpcheck", 102, Some(2));
        f.unbind(210, "tcpcheck");
    });
    bot.wait_for_log("changed=1", WAIT).await;
    bot.wait_for_log("removed=1", WAIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ok_b = format!("entity.210.tcpcheck.{port}.ok");
    let settled = count_of(&backend.values(ACCOUNT_B), &ok_b);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        count_of(&backend.values(ACCOUNT_B), &ok_b),
        settled,
        "a removed job stops"
    );
    let a: Vec<f64> = backend
        .values(ACCOUNT_A)
        .iter()
        .filter(|v| v.path == ok_a)
        .map(|v| v.t)
        .collect();
    let recent: Vec<f64> = a.iter().rev().take(3).copied().collect();
    assert!(
        recent.windows(2).all(|w| w[0] - w[1] > 1.5),
        "every 2 s now: {recent:?}"
    );
}

#[tokio::test]
async fn delivery_retries_5xx_and_never_logs_the_token() {
    let (_listener, port) = open_port().await;
    let backend = TestBackend::start(fixture(port)).await;
    let token = backend.token(BOT);
    // The token comes from a file with a trailing newline, as Docker secrets have it.
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).expect("write token");
    let values_path = format!("/api/accounts/{ACCOUNT_A}/values");
    let fault = backend.inject(Fault::on("POST", &values_path).status(503).times(2));
    let closed = backend.inject(
        Fault::on("POST", &format!("/api/accounts/{ACCOUNT_B}/values"))
            .close_connection()
            .times(1),
    );
    let url = backend.url();
    let mut bot = BotProcess::start(
        &tcpcheck(),
        &[],
        &[
            ("BACKEND_URL", url.as_str()),
            (
                "BOT_TOKEN_FROM_FILE",
                token_file.to_str().expect("utf-8 path"),
            ),
            ("JOBS_REFRESH_INTERVAL", "1"),
            ("RUST_LOG", "debug"),
        ],
    );
    let ok_a = format!("entity.110.tcpcheck.{port}.ok");
    backend
        .wait_for_values(ACCOUNT_A, |v| has(v, &ok_a, 1.0), WAIT)
        .await;
    assert_eq!(backend.fault_hits(fault), 2, "two 503s, then delivered");
    backend
        .wait_until(|b| (b.fault_hits(closed) == 1).then_some(()), WAIT)
        .await;
    let ok_b = format!("entity.210.tcpcheck.{port}.ok");
    backend
        .wait_for_values(ACCOUNT_B, |v| has(v, &ok_b, 1.0), WAIT)
        .await;
    bot.wait_for_log("retrying", WAIT).await;

    // A 4xx is not retried: the batch is dropped with a reason, the next firings go on. (A 400
    // is split to find the refused values: see tests/delivery.rs.)
    let rejected = backend.inject(Fault::on("POST", &values_path).status(403).times(1));
    bot.wait_for_log("not retried", WAIT).await;
    assert_eq!(backend.fault_hits(rejected), 1);
    bot.terminate(WAIT).await;
    let log = bot.stderr();
    assert!(
        !log.to_lowercase().contains(&token.to_lowercase()),
        "the token leaked into the log"
    );
    backend.assert_no_authorization_header();
}

#[tokio::test]
async fn waits_for_the_backend_to_be_ready() {
    let (_listener, port) = open_port().await;
    let mut f = fixture(port);
    f.status = e2e::StatusInfo::migration_needed();
    let backend = TestBackend::start(f).await;
    let bot = start_bot(
        &backend,
        &[("BACKEND_WAIT_INTERVAL", "1"), ("LOG_FORMAT", "json")],
    );
    backend
        .wait_for_requests("GET", "/api/status/info", 2, WAIT)
        .await;
    assert_eq!(
        backend.count("GET", "/api/profile"),
        0,
        "nothing else before the backend is ready"
    );
    backend.update(|f| f.status = e2e::StatusInfo::ready());
    let ok_a = format!("entity.110.tcpcheck.{port}.ok");
    backend
        .wait_for_values(ACCOUNT_A, |v| has(v, &ok_a, 1.0), WAIT)
        .await;
    // --log-format json: every log line is a JSON object with a level and a message.
    let log = bot.stderr();
    assert!(log.lines().count() >= 2);
    for line in log.lines() {
        let record: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        assert!(
            record["level"].is_string() && record["fields"]["message"].is_string(),
            "{line}"
        );
    }
}

#[tokio::test]
async fn standalone_mode_prints_json_lines() {
    let (_listener, port) = open_port().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = dir.path().join("jobs.toml");
    std::fs::write(
        &jobs,
        format!(
            r#"
[[credentials]]
id = 1
protocol = "tcpcheck"

[[sensors]]
id = 2
protocol = "tcpcheck"
default_interval = 1
details = {{ port = {port} }}

[[entities]]
id = 3
name = "local"
details = {{ ipv4 = "127.0.0.1" }}
protocols.tcpcheck = {{ credential = 1, sensors = [{{ sensor = 2 }}] }}
"#
        ),
    )
    .expect("write jobs");
    let mut bot = BotProcess::start(
        &tcpcheck(),
        &["--jobs", jobs.to_str().expect("utf-8"), "--task-records"],
        &[("TASK_RECORDS_PREFIX", "bot.tcpcheck")],
    );
    let path = format!("entity.3.tcpcheck.{port}.ok");
    bot.wait_for(
        "a value line",
        |out, _| out.iter().any(|l| l.contains(&path)),
        WAIT,
    )
    .await;
    let line = bot
        .stdout_lines()
        .into_iter()
        .find(|l| l.contains(&path))
        .expect("line");
    let value: serde_json::Value = serde_json::from_str(&line).expect("stdout is JSON lines");
    assert_eq!(value["p"], path.as_str());
    assert_eq!(value["v"], 1.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!((now - value["t"].as_f64().expect("t")).abs() < 30.0);
    // Task records: a log line per firing and values under the chosen prefix.
    bot.wait_for(
        "task record values",
        |out, _| {
            out.iter()
                .any(|l| l.contains("\"bot.tcpcheck.job.3.run_cost\""))
        },
        WAIT,
    )
    .await;
    let log = bot.stderr();
    assert!(
        log.contains("task record") && log.contains("wait_cost"),
        "{log}"
    );
    assert!(bot
        .stdout_lines()
        .iter()
        .any(|l| l.contains("\"p\":\"bot.tcpcheck.job.3.success\",\"v\":1.0")));
    assert!(bot.terminate(WAIT).await.success());
}

#[tokio::test]
async fn bad_settings_exit_2_naming_the_setting() {
    let mut bot = BotProcess::start(&tcpcheck(), &[], &[]);
    let status = bot.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(2));
    assert!(bot.stderr().contains("BACKEND_URL"), "{}", bot.stderr());

    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = dir.path().join("bad.toml");
    std::fs::write(&jobs, "[[entities]]\nid = \"not a number\"\n").expect("write");
    let mut bot = BotProcess::start(&tcpcheck(), &["--jobs", jobs.to_str().expect("utf-8")], &[]);
    assert_eq!(bot.wait_exit(WAIT).await.code(), Some(2));
    assert!(bot.stderr().contains("bad.toml"), "{}", bot.stderr());

    let mut bot = BotProcess::start(&tcpcheck(), &["--job-concurrency", "lots"], &[]);
    assert_eq!(bot.wait_exit(WAIT).await.code(), Some(2));
    assert!(bot.stderr().contains("job-concurrency"), "{}", bot.stderr());
}

/// A loopback port free at the time of asking.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

#[tokio::test]
async fn health_ready_and_metrics_endpoints() {
    let (_listener, port) = open_port().await;
    let mut f = fixture(port);
    f.status = e2e::StatusInfo::migration_needed();
    let backend = TestBackend::start(f).await;
    let address = format!("127.0.0.1:{}", free_port());
    let _bot = start_bot(
        &backend,
        &[
            ("BACKEND_WAIT_INTERVAL", "1"),
            ("METRICS_ADDRESS", address.as_str()),
        ],
    );
    let base = format!("http://{address}");
    backend
        .wait_for_requests("GET", "/api/status/info", 1, WAIT)
        .await;
    let mut health = None;
    for _ in 0..50 {
        health = get(&format!("{base}/health")).await;
        if health.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        health.map(|h| h.0),
        Some(200),
        "/health answers while the process runs"
    );
    let ready = get(&format!("{base}/ready")).await.expect("ready answers");
    assert_eq!(ready.0, 503, "not ready while the backend is not");

    backend.update(|f| f.status = e2e::StatusInfo::ready());
    let ok_a = format!("entity.110.tcpcheck.{port}.ok");
    backend
        .wait_for_values(ACCOUNT_A, |v| has(v, &ok_a, 1.0), WAIT)
        .await;
    assert_eq!(get(&format!("{base}/ready")).await.map(|r| r.0), Some(200));
    let (status, text) = get(&format!("{base}/metrics")).await.expect("metrics");
    assert_eq!(status, 200);
    for needle in [
        "collector_runs_total{outcome=\"success\"}",
        "collector_firings_total",
        "collector_values_delivered_total",
        "collector_refreshes_total{outcome=\"ok\"}",
        "collector_jobs_scheduled 2",
        "collector_total_seconds_bucket",
        "collector_wait_seconds_bucket",
        "collector_backend_request_seconds_count",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}:\n{text}");
    }
}
