//! End-to-end tests of the status page (`/jobs`, `/jobs.json`) on the metrics address: the real
//! bot binaries against the test backend, a real snmpd, and the page opened in a real headless
//! Chromium (Debian's `chromium` and `chromium-driver`).

#[path = "../../bots/snmp/tests/support/snmpd.rs"]
mod snmpd;

use e2e::process::{build, BotProcess};
use e2e::webdriver::Browser;
use e2e::{Fixture, Id, TestBackend};
use serde_json::{json, Value as Json};
use snmpd::{silent_udp_port, PassObject, Snmpd, V3_AUTH_KEY, V3_PRIV_KEY, V3_USER};
use std::path::PathBuf;
use std::time::Duration;

const ACCOUNT: Id = 1_409_012_345;
const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn get_text(url: &str) -> String {
    let answer = reqwest::get(url).await.expect("GET");
    assert!(answer.status().is_success(), "{url}: {}", answer.status());
    answer.text().await.expect("body")
}

async fn get_json(url: &str) -> Json {
    serde_json::from_str(&get_text(url).await).expect("JSON")
}

/// The entity of `/jobs.json` with this id.
fn entity(view: &Json, id: Id) -> Json {
    view["entities"]
        .as_array()
        .and_then(|list| list.iter().find(|e| e["entity_id"] == json!(id)))
        .cloned()
        .unwrap_or_else(|| panic!("entity {id} not on the page: {view:#}"))
}

/// Polls `/jobs.json` until `ready` holds.
async fn wait_for_page(url: &str, ready: impl Fn(&Json) -> bool) -> Json {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(answer) = reqwest::get(url).await {
            if let Ok(view) = answer.json::<Json>().await {
                if ready(&view) {
                    return view;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "page never got ready: {view:#}"
                );
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no page at {url}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn state_of(view: &Json, id: Id) -> String {
    view["entities"]
        .as_array()
        .and_then(|list| list.iter().find(|e| e["entity_id"] == json!(id)))
        .and_then(|e| e["state"].as_str())
        .unwrap_or("absent")
        .to_string()
}

mod snmp {
    use super::*;

    const BOT: Id = 1_620_000_021;
    const WORKING: Id = 1_348_300_224;
    const WRONG_PASSWORD: Id = 1_348_300_225;
    const SILENT: Id = 1_348_300_226;
    const DANGLING: Id = 1_348_300_227;
    const GOOD_V3: Id = 731_002_102;
    const WRONG_V3: Id = 731_002_103;
    const SECRET_V2C: Id = 731_002_104;
    const UPTIME: Id = 842_003_201;
    const MISSING_SENSOR: Id = 842_003_299;
    const WRONG_KEY: &str = "notthepassword-5d1c";
    const SECRET_COMMUNITY: &str = "c0mmunity-8f3a2e";

    fn fixture(agent: &str, silent: &str) -> Fixture {
        let mut f = Fixture::new();
        f.account(ACCOUNT, "Acme").systemwide_bot(BOT, "snmp");
        let v3 = |auth: &str| {
            json!({"version": "snmpv3", "snmpv3_securityName": V3_USER,
                "snmpv3_securityLevel": "authPriv", "snmpv3_authProtocol": "SHA",
                "snmpv3_authKey": auth, "snmpv3_privProtocol": "AES", "snmpv3_privKey": V3_PRIV_KEY})
        };
        f.credential(ACCOUNT, GOOD_V3, "snmp", v3(V3_AUTH_KEY));
        f.credential(ACCOUNT, WRONG_V3, "snmp", v3(WRONG_KEY));
        f.credential(
            ACCOUNT,
            SECRET_V2C,
            "snmp",
            json!({"version": "snmpv2c", "snmpv12_community": SECRET_COMMUNITY}),
        );
        f.sensor(
            ACCOUNT,
            UPTIME,
            "snmp",
            Some(60),
            json!({"oids": [{"oid": "1.3.6.1.2.1.1.3.0", "fetch_method": "get"}],
                "expression": "$1 / 100", "output_path": "sysuptime"}),
        );
        for (id, name, address, credential) in [
            (WORKING, "core-router", agent, GOOD_V3),
            (WRONG_PASSWORD, "edge-switch", agent, WRONG_V3),
            (SILENT, "silent-ap", silent, SECRET_V2C),
            (DANGLING, "lab-printer", agent, 999_999),
        ] {
            f.device(ACCOUNT, id, name, address);
            // 2 s: the job timeout (its interval) stays well above the 0.6 s a silent agent costs.
            f.bind(id, "snmp", credential, &[(UPTIME, Some(2))], BOT);
        }
        // A sensor the account does not have costs that sensor only; the page notes it.
        f.bind(
            WORKING,
            "snmp",
            GOOD_V3,
            &[(UPTIME, Some(2)), (MISSING_SENSOR, Some(2))],
            BOT,
        );
        f
    }

    /// A working (v3), a failing (wrong v3 password), a timing-out (v2c to a silent port) and a
    /// left-out (credential that does not exist) entity on `/jobs.json`, and no secret anywhere.
    #[tokio::test]
    async fn jobs_json_shows_each_entity_state_error_and_sensors_without_secrets() {
        let agent = Snmpd::start(&[PassObject::fixed("1.3.6.1.4.1.99999.1", "gauge", "1")]);
        let (_silent_socket, silent_port) = silent_udp_port();
        let silent = format!("127.0.0.1:{silent_port}");
        let backend = TestBackend::start(fixture(&agent.address(), &silent)).await;
        let metrics = format!("127.0.0.1:{}", free_port());
        let token = backend.token(BOT);
        let url = backend.url();
        let bot = BotProcess::start(
            &build("snmpbot", "--bin", "snmpbot"),
            &[],
            &[
                ("BACKEND_URL", url.as_str()),
                ("BOT_TOKEN", token.as_str()),
                ("METRICS_ADDRESS", metrics.as_str()),
                ("SNMP_TIMEOUT", "0.3"),
                ("SNMP_RETRIES", "1"),
            ],
        );
        let json_url = format!("http://{metrics}/jobs.json");
        let view = wait_for_page(&json_url, |v| {
            state_of(v, WORKING) == "success"
                && state_of(v, WRONG_PASSWORD) == "failure"
                && state_of(v, SILENT) == "failure"
        })
        .await;

        let working = entity(&view, WORKING);
        assert_eq!(working["name"], "core-router");
        assert_eq!(working["address"], json!(agent.address()));
        assert_eq!(
            working["notes"],
            json!(["sensor 842003299 is not among the account's sensors"])
        );
        let poll = &working["jobs"][0];
        assert_eq!(poll["id"], json!(WORKING.to_string()));
        assert_eq!(poll["intervals"], json!([2]));
        assert!(poll["values"].as_u64() >= Some(1), "{poll:#}");
        assert!(
            poll["run_cost"].as_f64().is_some_and(|c| c < 1.0),
            "{poll:#}"
        );
        let fired = poll["last_firing"].as_u64().expect("fired");
        assert!(poll["next_due"].as_u64() > Some(fired), "{poll:#}");
        let summary = poll["summary"].to_string();
        assert!(
            summary.contains("get 1.3.6.1.2.1.1.3.0 → sysuptime = $1 / 100"),
            "the sensor with its OID: {summary}"
        );
        assert!(
            summary.contains("SNMPv3 user \\\"monitor\\\", authPriv"),
            "{summary}"
        );
        assert_eq!(
            working["jobs"][1]["id"],
            json!(format!("{WORKING}-interfaces"))
        );
        assert_eq!(working["jobs"][1]["state"], "pending");

        let wrong = entity(&view, WRONG_PASSWORD);
        let error = wrong["jobs"][0]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!(
                "SNMPv3 authentication with {} failed for user '{V3_USER}'",
                agent.address()
            )),
            "{error}"
        );
        let silent_error = entity(&view, SILENT)["jobs"][0]["error"].to_string();
        assert!(
            silent_error.contains(&silent),
            "names the agent: {silent_error}"
        );

        let dangling = entity(&view, DANGLING);
        assert_eq!(dangling["state"], "left_out");
        assert_eq!(dangling["name"], "lab-printer");
        assert_eq!(
            dangling["left_out"],
            "credential 999999 is not among the account's credentials"
        );
        assert_eq!(dangling["jobs"], json!([]));
        assert_eq!(
            view["entities"][0]["state"], "failure",
            "failing entities come first"
        );

        // After two bad runs in a row (ALERT_IF_IN_A_ROW's default) the alerts show beside the
        // entities they are about, and the working device has none.
        let alert_names = |v: &Json, id: Id| -> Vec<String> {
            entity(v, id)["alerts"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x["name"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let view = wait_for_page(&json_url, |v| {
            alert_names(v, SILENT).contains(&"SnmpAgentUnreachable".to_string())
                && alert_names(v, WRONG_PASSWORD).contains(&"SnmpAuthFailed".to_string())
        })
        .await;
        assert_eq!(alert_names(&view, WORKING), Vec::<String>::new());
        let html = get_text(&format!("http://{metrics}/jobs")).await;
        assert!(
            html.contains("Alert firing: <span class=\"alert-name\">SnmpAgentUnreachable</span>"),
            "{html}"
        );

        let filtered = get_json(&format!("{json_url}?state=left_out")).await;
        assert_eq!(filtered["matching"], 1);
        assert_eq!(filtered["entities"][0]["entity_id"], json!(DANGLING));

        let html = get_text(&format!("http://{metrics}/jobs")).await;
        let everything = format!("{html}\n{view}");
        for secret in [
            V3_AUTH_KEY,
            V3_PRIV_KEY,
            WRONG_KEY,
            SECRET_COMMUNITY,
            &token,
        ] {
            assert!(
                !everything.contains(secret),
                "the page shows a secret: {secret}"
            );
        }
        assert!(html.contains("edge-switch") && html.contains("SNMPv3 authentication"));
        drop(bot);
    }
}

mod ping {
    use super::*;

    const BOT: Id = 1_620_000_012;
    const WORKING: Id = 1_348_300_301;
    const FAILING: Id = 1_348_300_302;
    const DANGLING: Id = 1_348_300_303;
    const NOT_ENABLED: Id = 1_348_300_304;
    const GOOD: Id = 731_002_201;
    const BAD: Id = 731_002_202;
    const SENSOR: Id = 842_003_211;

    fn fixture() -> Fixture {
        let mut f = Fixture::new();
        f.account(ACCOUNT, "Acme").systemwide_bot(BOT, "ping");
        let details = |packets: &str| json!({"n_packets": packets, "sleep_packets": "0", "timeout": "0.5", "retry": "0"});
        f.credential(ACCOUNT, GOOD, "ping", details("2"));
        f.credential(ACCOUNT, BAD, "ping", details("many"));
        f.sensor(ACCOUNT, SENSOR, "ping", Some(60), json!({}));
        f.device(ACCOUNT, WORKING, "core-router", "127.0.0.1");
        f.bind(WORKING, "ping", GOOD, &[(SENSOR, Some(2))], BOT);
        f.device(ACCOUNT, FAILING, "edge-switch", "127.0.0.1");
        f.bind(FAILING, "ping", BAD, &[(SENSOR, Some(2))], BOT);
        f.device(ACCOUNT, DANGLING, "lab-printer", "127.0.0.1");
        f.bind(DANGLING, "ping", 999_999, &[(SENSOR, Some(2))], BOT);
        f.device(ACCOUNT, NOT_ENABLED, "snmp-only-switch", "127.0.0.1");
        f
    }

    /// Where the screenshot goes: `STATUS_PAGE_SCREENSHOT` (the README's picture is made with
    /// `STATUS_PAGE_SCREENSHOT=docs/status-page.png`), else the target directory.
    fn screenshot_path() -> PathBuf {
        match std::env::var_os("STATUS_PAGE_SCREENSHOT") {
            Some(path) => e2e::process::workspace_root().join(path),
            None => e2e::process::workspace_root()
                .join("target")
                .join("status-page.png"),
        }
    }

    /// The text of each entity section (`tbody.entity`) by entity id, in page order.
    async fn sections(browser: &Browser) -> Vec<(String, String, String)> {
        let mut found = Vec::new();
        for section in browser.find_all("tbody.entity").await {
            let id = browser.attribute(&section, "data-entity").await;
            let state = browser.attribute(&section, "data-state").await;
            let text = browser.text(&section).await;
            found.push((id.unwrap_or_default(), state.unwrap_or_default(), text));
        }
        found
    }

    fn section(found: &[(String, String, String)], id: Id) -> (String, String) {
        found
            .iter()
            .find(|(e, _, _)| *e == id.to_string())
            .map(|(_, state, text)| (state.clone(), text.clone()))
            .unwrap_or_else(|| panic!("entity {id} not on the page: {found:#?}"))
    }

    /// The page of a running pingbot in a real headless Chromium: each entity's state and error
    /// as a user reads them, the state filter of the form, and a screenshot.
    #[tokio::test]
    async fn the_page_in_a_headless_browser_shows_states_errors_and_filters() {
        let backend = TestBackend::start(fixture()).await;
        let metrics = format!("127.0.0.1:{}", free_port());
        let token = backend.token(BOT);
        let url = backend.url();
        let _bot = BotProcess::start(
            &build("pingbot", "--bin", "pingbot"),
            &[],
            &[
                ("BACKEND_URL", url.as_str()),
                ("BOT_TOKEN", token.as_str()),
                ("METRICS_ADDRESS", metrics.as_str()),
            ],
        );
        let view = wait_for_page(&format!("http://{metrics}/jobs.json"), |v| {
            state_of(v, WORKING) == "success" && state_of(v, FAILING) == "failure"
        })
        .await;
        assert_eq!(
            entity(&view, WORKING)["jobs"][0]["values"],
            10,
            "2 packets with ok and rtt, success, loss and 4 rtt statistics"
        );

        let browser = Browser::start(1400, 900).await;
        browser.goto(&format!("http://{metrics}/jobs")).await;
        let found = sections(&browser).await;
        assert_eq!(
            found.first().map(|f| f.0.clone()),
            Some(FAILING.to_string()),
            "the failing entity comes first: {found:#?}"
        );
        let (state, text) = section(&found, FAILING);
        assert_eq!(state, "failure");
        assert!(text.contains("edge-switch"), "{text}");
        assert!(text.contains("ping credential field `n_packets`"), "{text}");
        let (state, text) = section(&found, WORKING);
        assert_eq!(state, "success");
        assert!(
            text.contains("core-router") && text.contains("127.0.0.1"),
            "{text}"
        );
        assert!(text.contains("2 s"), "the interval: {text}");
        let (state, text) = section(&found, DANGLING);
        assert_eq!(state, "left_out");
        assert!(
            text.contains("Not polled: credential 999999 is not among the account's credentials"),
            "{text}"
        );
        let (state, text) = section(&found, NOT_ENABLED);
        assert_eq!(state, "left_out");
        assert!(
            text.contains("ping is not enabled on this device"),
            "{text}"
        );
        let source = browser
            .execute("return document.documentElement.outerHTML")
            .await;
        assert!(
            !source.to_string().contains(&token),
            "the page shows the token"
        );
        // The page's own cost, not the load of a shared test machine: the best of three loads.
        let mut best_ms = f64::INFINITY;
        for _ in 0..3 {
            let load_ms = browser
                .execute("const t = performance.timing; return t.loadEventEnd - t.navigationStart;")
                .await;
            best_ms = best_ms.min(load_ms.as_f64().unwrap_or(f64::INFINITY));
            if best_ms < 1000.0 {
                break;
            }
            browser.goto(&format!("http://{metrics}/jobs")).await;
        }
        assert!(best_ms < 1000.0, "the page took {best_ms} ms to load");
        let png = browser.screenshot().await;
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
        let path = screenshot_path();
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).expect("folder for the screenshot");
        }
        std::fs::write(&path, &png).expect("write the screenshot");

        // The state filter, as a user sets it: pick "failing" and press Filter.
        browser
            .click(
                &browser
                    .find("select[name=state] option[value=failing]")
                    .await,
            )
            .await;
        browser.click(&browser.find("#apply").await).await;
        browser.wait_for_page("state=failing").await;
        let filtered = sections(&browser).await;
        let ids: Vec<&str> = filtered.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(ids, vec![FAILING.to_string().as_str()]);
        let pages = browser.text(&browser.find("p.pages").await).await;
        assert!(pages.starts_with("1 entities match"), "{pages}");

        // And the entity filter: part of an address or name, any case.
        browser.goto(&format!("http://{metrics}/jobs")).await;
        let field = browser.find("input[name=entity]").await;
        browser.type_text(&field, "LAB-").await;
        browser.click(&browser.find("#apply").await).await;
        browser.wait_for_page("entity=LAB-").await;
        let filtered = sections(&browser).await;
        let ids: Vec<&str> = filtered.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(ids, vec![DANGLING.to_string().as_str()]);
        browser.quit().await;
    }

    /// `pingbot --standalone --metrics-address ...` serves the embedded example's jobs.
    #[tokio::test]
    async fn standalone_serves_the_embedded_jobs() {
        let metrics = format!("127.0.0.1:{}", free_port());
        let _bot = BotProcess::start(
            &build("pingbot", "--bin", "pingbot"),
            &["--standalone", "--metrics-address", &metrics],
            &[],
        );
        let view = wait_for_page(&format!("http://{metrics}/jobs.json"), |v| v["jobs"] == 2).await;
        let mut names: Vec<&str> = view["entities"]
            .as_array()
            .map(|l| l.iter().filter_map(|e| e["name"].as_str()).collect())
            .unwrap_or_default();
        names.sort();
        assert_eq!(names, vec!["localhost IPv4", "localhost IPv6"]);
        assert_eq!(view["protocol"], "ping");
        let summary = view["entities"][0]["jobs"][0]["summary"].to_string();
        assert!(
            summary.contains("packets") && summary.contains("127.0.0.1"),
            "{summary}"
        );
        let html = get_text(&format!("http://{metrics}/jobs")).await;
        assert!(html.contains("localhost IPv6"));
    }
}
