//! The test backend keeps the contract of the real Grafolean backend
//! (the Grafolean bot API contract, §1-§4), checked with a plain HTTP client.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::{
    Bot, Fault, Fixture, Id, Permission, StatusInfo, TestBackend, WriteMethod, CONNECTION_CLOSED,
};
use reqwest::Method;
use serde_json::{json, Value};

const ACME: Id = 1_409_012_345;
const GLOBEX: Id = 1_409_054_321;
const EMPTY: Id = 1_409_000_007;
const SNMP_BOT: Id = 1_620_000_011;
const ACME_BOT: Id = 1_620_000_012;
const PING_BOT: Id = 1_620_000_013;
const ROUTER: Id = 1_348_300_224;
const ETH0: Id = 1_348_300_225;
const ETH0_VLAN: Id = 1_348_300_226;
const SWITCH: Id = 1_348_300_300;
const GLOBEX_DEVICE: Id = 1_348_400_001;
const SNMP_CREDENTIAL: Id = 731_002_101;
const PING_CREDENTIAL: Id = 731_002_103;
const GLOBEX_CREDENTIAL: Id = 731_009_001;
const SYSUPTIME: Id = 842_003_201;
const TRAFFIC: Id = 842_003_202;
const PING_SENSOR: Id = 842_003_211;
const GLOBEX_SENSOR: Id = 842_009_001;

fn fixture() -> Fixture {
    let mut f = Fixture::new();
    f.account(ACME, "Acme Monitoring")
        .account(GLOBEX, "Globex")
        .account(EMPTY, "An empty account")
        .bot(Bot::systemwide(SNMP_BOT, "snmp"))
        .bot(Bot::account_bot(ACME_BOT, ACME, "snmp"))
        .bot(Bot::systemwide(PING_BOT, "ping"))
        .credential(
            ACME,
            SNMP_CREDENTIAL,
            "snmp",
            json!({"version": "snmpv2c", "snmpv12_community": "public"}),
        )
        .credential(
            ACME,
            PING_CREDENTIAL,
            "ping",
            e2e::default_credential_details("ping"),
        )
        .credential(
            GLOBEX,
            GLOBEX_CREDENTIAL,
            "snmp",
            json!({"version": "snmpv1", "snmpv12_community": "x"}),
        )
        .sensor(
            ACME,
            SYSUPTIME,
            "snmp",
            Some(60),
            e2e::default_sensor_details("snmp"),
        )
        .sensor(
            ACME,
            TRAFFIC,
            "snmp",
            None,
            json!({"oids": [], "expression": "$1", "output_path": "t"}),
        )
        .sensor(ACME, PING_SENSOR, "ping", Some(60), json!({}))
        .sensor(GLOBEX, GLOBEX_SENSOR, "snmp", Some(300), json!({}))
        .device(ACME, ROUTER, "core-router", "192.0.2.1")
        .bind(
            ROUTER,
            "snmp",
            SNMP_CREDENTIAL,
            &[(SYSUPTIME, None), (TRAFFIC, Some(30))],
            SNMP_BOT,
        )
        .bind(
            ROUTER,
            "ping",
            PING_CREDENTIAL,
            &[(PING_SENSOR, Some(60))],
            PING_BOT,
        )
        .interface(ACME, ETH0, ROUTER, "eth0", "2", "1000000000")
        .interface(ACME, ETH0_VLAN, ETH0, "eth0.100", "7", "1000000000")
        .device(ACME, SWITCH, "switch", "192.0.2.2")
        .device(GLOBEX, GLOBEX_DEVICE, "globex-router", "198.51.100.1");
    f
}

/// A started backend and a client that speaks to it the way a bot should.
struct Harness {
    backend: TestBackend,
    client: reqwest::Client,
}

/// What came back: status, content type, body text.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    fn ids(&self) -> Vec<Id> {
        self.json()["list"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|item| item["id"].as_i64().expect("an id"))
            .collect()
    }
}

impl Harness {
    async fn start() -> Harness {
        Harness::with(fixture()).await
    }

    async fn with(fixture: Fixture) -> Harness {
        Harness {
            backend: TestBackend::start(fixture).await,
            client: reqwest::Client::new(),
        }
    }

    /// `path` is relative to the API root (`/accounts/`), `query` is appended after the token.
    fn url(&self, path: &str, bot: Option<Id>) -> String {
        let base = format!("{}{}", self.backend.url(), path);
        match bot {
            Some(bot) => {
                let separator = if path.contains('?') { '&' } else { '?' };
                format!("{base}{separator}b={}", self.backend.token(bot))
            }
            None => base,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("the backend answers");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().expect("ascii content type").to_string());
        let text = response.text().await.expect("a readable body");
        Answer {
            status,
            content_type,
            text,
        }
    }

    async fn get(&self, path: &str, bot: Id) -> Answer {
        self.send(self.client.get(self.url(path, Some(bot)))).await
    }

    async fn raw(&self, method: Method, url: &str) -> Answer {
        self.send(self.client.request(method, url)).await
    }

    async fn post_json(&self, path: &str, bot: Id, body: &Value) -> Answer {
        self.send(self.client.post(self.url(path, Some(bot))).json(body))
            .await
    }

    async fn put_json(&self, path: &str, bot: Id, body: &Value) -> Answer {
        self.send(self.client.put(self.url(path, Some(bot))).json(body))
            .await
    }

    async fn delete(&self, path: &str, bot: Id) -> Answer {
        self.send(self.client.delete(self.url(path, Some(bot))))
            .await
    }

    async fn post_values(&self, account: Id, body: &Value) -> Answer {
        self.post_json(&format!("/accounts/{account}/values/"), SNMP_BOT, body)
            .await
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

#[tokio::test]
async fn status_info_needs_no_token_and_reports_the_fixture_status() {
    let h = Harness::start().await;
    let info = h.raw(Method::GET, &h.url("/status/info", None)).await;
    assert_eq!(info.status, 200);
    assert_eq!(info.json()["db_migration_needed"], json!(false));
    assert_eq!(info.json()["user_exists"], json!(true));

    // With a trailing slash it is an ordinary endpoint: a token is needed, and a systemwide bot's
    // grant (`accounts`) does not cover it.
    assert_eq!(
        h.raw(Method::GET, &h.url("/status/info/", None))
            .await
            .status,
        401
    );
    assert_eq!(h.get("/status/info/", SNMP_BOT).await.status, 403);

    h.backend
        .update(|f| f.status = StatusInfo::migration_needed());
    let info = h
        .raw(Method::GET, &h.url("/status/info", None))
        .await
        .json();
    assert_eq!(
        (
            info["db_migration_needed"].clone(),
            info["user_exists"].clone()
        ),
        (json!(true), json!(null))
    );

    h.backend
        .inject(Fault::on("GET", "/api/status/info").status(503).times(1));
    assert_eq!(
        h.raw(Method::GET, &h.url("/status/info", None))
            .await
            .status,
        503
    );
    assert_eq!(
        h.raw(Method::GET, &h.url("/status/info", None))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn token_only_in_b_and_checked_like_the_backend() {
    let h = Harness::start().await;
    let accounts = format!("{}/accounts/", h.backend.url());
    let token = h.backend.token(SNMP_BOT);

    let denied = h.raw(Method::GET, &accounts).await;
    assert_eq!(
        (denied.status, denied.text.as_str(), denied.content_type),
        (401, "Access denied", None)
    );
    assert_eq!(
        h.raw(Method::GET, &format!("{accounts}?b=not-a-uuid"))
            .await
            .status,
        401
    );
    let unknown = "0a1b2c3d-0000-4000-8000-0123456789ab";
    assert_eq!(
        h.raw(Method::GET, &format!("{accounts}?b={unknown}"))
            .await
            .status,
        401
    );
    // Case-insensitive comparison.
    assert_eq!(
        h.raw(
            Method::GET,
            &format!("{accounts}?b={}", token.to_uppercase())
        )
        .await
        .status,
        200
    );
    // The last `b` counts.
    assert_eq!(
        h.raw(Method::GET, &format!("{accounts}?b={unknown}&b={token}"))
            .await
            .status,
        200
    );
    assert_eq!(
        h.raw(Method::GET, &format!("{accounts}?b={token}&b={unknown}"))
            .await
            .status,
        401
    );
    // A token read from a file with its newline: passes the format check, breaks the lookup.
    let newline = h
        .raw(Method::GET, &format!("{accounts}?b={token}%0A"))
        .await;
    assert_eq!(
        (newline.status, newline.text.as_str()),
        (500, "Could not validate access")
    );
    // Any Authorization header makes the backend ignore `b`.
    let with_header = h
        .send(
            h.client
                .get(format!("{accounts}?b={token}"))
                .header("Authorization", format!("Token {token}")),
        )
        .await;
    assert_eq!(
        (with_header.status, with_header.text.as_str()),
        (401, "Access denied")
    );

    // The request log never holds the token, and flags the header.
    let log = h.backend.requests();
    assert!(log
        .iter()
        .all(|r| !r.path.contains(&token) && !r.query.to_lowercase().contains(&token)));
    assert!(log.iter().filter(|r| r.had_authorization).count() == 1);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        h.backend.assert_no_authorization_header()
    }));
    assert!(caught.is_err(), "the header check must flag the request");
}

#[tokio::test]
async fn permissions_are_checked_before_routing() {
    let mut f = fixture();
    let narrow = 1_620_000_099;
    f.account(5, "Five").account(55, "Fifty-five");
    f.bot(
        Bot::new(narrow, "narrow", Some("snmp"))
            .with_permissions(vec![Permission::methods("accounts/5", &["GET"])]),
    );
    let h = Harness::with(f).await;

    // Account bot: its own account's entities yes, another account no, writes no.
    assert_eq!(
        h.get(&format!("/accounts/{ACME}/entities/"), ACME_BOT)
            .await
            .status,
        200
    );
    let other = h
        .get(&format!("/accounts/{GLOBEX}/entities/"), ACME_BOT)
        .await;
    assert_eq!(
        (other.status, other.text.as_str()),
        (403, "Access to resource denied, insufficient permissions")
    );
    let create = json!({"name": "x", "entity_type": "device", "details": {}});
    assert_eq!(
        h.post_json(&format!("/accounts/{ACME}/entities/"), ACME_BOT, &create)
            .await
            .status,
        403
    );
    // Denied before routing: unknown URLs and bad ids get 403 too, allowed ones get 404 / 422.
    assert_eq!(h.get("/no/such/thing", ACME_BOT).await.status, 403);
    assert_eq!(h.get("/no/such/thing", SNMP_BOT).await.status, 403);
    assert_eq!(
        h.get(&format!("/accounts/{GLOBEX}/entities/abc"), ACME_BOT)
            .await
            .status,
        403
    );
    assert_eq!(
        h.get(&format!("/accounts/{ACME}/entities/abc"), ACME_BOT)
            .await
            .status,
        422
    );
    let unknown = h
        .get(&format!("/accounts/{ACME}/no-such-thing/"), SNMP_BOT)
        .await;
    assert_eq!(
        (unknown.status, unknown.json()),
        (404, json!({"detail": "Not Found"}))
    );

    // Path-segment prefixes; HEAD counts as GET.
    assert_eq!(h.get("/accounts/5/entities/", narrow).await.status, 200);
    assert_eq!(h.get("/accounts/55/entities/", narrow).await.status, 403);
    assert_eq!(
        h.post_json("/accounts/5/values/", narrow, &json!([{"p": "a", "v": 1}]))
            .await
            .status,
        403
    );
    assert_ne!(
        h.send(h.client.head(h.url("/accounts/5/entities/", Some(narrow))))
            .await
            .status,
        403
    );
    assert_eq!(
        h.send(h.client.head(h.url("/accounts/55/entities/", Some(narrow))))
            .await
            .status,
        403
    );
    // profile and accounts are open to every bot.
    assert_eq!(
        h.get("/profile/", narrow).await.json()["user_id"],
        json!(narrow)
    );

    // Account listing: all for `accounts`, sorted by name; only named accounts otherwise.
    // "Acme Monitoring", "An empty account", "Fifty-five", "Five", "Globex".
    assert_eq!(
        h.get("/accounts/", SNMP_BOT).await.ids(),
        vec![ACME, EMPTY, 55, 5, GLOBEX]
    );
    assert_eq!(h.get("/accounts", ACME_BOT).await.ids(), vec![ACME]);
    assert_eq!(h.get("/accounts", narrow).await.ids(), vec![5]);
}

#[tokio::test]
async fn every_endpoint_answers_with_and_without_one_trailing_slash() {
    let h = Harness::start().await;
    let paths = [
        "/profile".to_string(),
        "/accounts".to_string(),
        format!("/accounts/{ACME}"),
        format!("/accounts/{ACME}/entities"),
        format!("/accounts/{ACME}/entities/{ROUTER}"),
        format!("/accounts/{ACME}/credentials"),
        format!("/accounts/{ACME}/credentials/{SNMP_CREDENTIAL}"),
        format!("/accounts/{ACME}/sensors"),
        format!("/accounts/{ACME}/sensors/{SYSUPTIME}"),
    ];
    for path in &paths {
        let bare = h.get(path, SNMP_BOT).await;
        let slash = h.get(&format!("{path}/"), SNMP_BOT).await;
        assert_eq!(bare.status, 200, "{path}");
        assert_eq!(slash.status, 200, "{path}/");
        if path != "/profile" {
            assert_eq!(bare.text, slash.text, "{path}");
        }
        assert_ne!(
            h.get(&format!("{path}//"), SNMP_BOT).await.status,
            200,
            "{path}//: only one slash is optional"
        );
    }
}

#[tokio::test]
async fn reads_have_the_backends_shapes() {
    let h = Harness::start().await;
    let profile = h.get("/profile/", SNMP_BOT).await.json();
    assert_eq!(profile["user_id"], json!(SNMP_BOT));
    assert_eq!(profile["user_type"], json!("bot"));
    assert_eq!(profile["record"]["protocol"], json!("snmp"));
    assert!(
        profile["record"]["last_login"].as_i64().is_some(),
        "login time is recorded"
    );

    let list = h
        .get(&format!("/accounts/{ACME}/entities/"), SNMP_BOT)
        .await;
    assert_eq!(list.content_type.as_deref(), Some("application/json"));
    assert_eq!(list.ids(), vec![ROUTER, ETH0, ETH0_VLAN, SWITCH]);
    // Compact JSON in the backend's field order.
    let head = format!(
        r#"{{"list":[{{"id":{ROUTER},"name":"core-router","entity_type":"device","parent":null,"details":{{"ipv4":"192.0.2.1"}},"protocols":{{"ping":{{"credential":{PING_CREDENTIAL},"sensors":[{{"sensor":{PING_SENSOR},"interval":60}}],"bot":{PING_BOT}}}"#
    );
    assert!(list.text.starts_with(&head), "{}", list.text);
    let router = h
        .get(&format!("/accounts/{ACME}/entities/{ROUTER}"), SNMP_BOT)
        .await
        .json();
    assert_eq!(router, list.json()["list"][0]);
    assert_eq!(
        router,
        json!({
            "id": ROUTER, "name": "core-router", "entity_type": "device", "parent": null,
            "details": {"ipv4": "192.0.2.1"},
            "protocols": {
                "snmp": {"credential": SNMP_CREDENTIAL, "sensors": [
                    {"sensor": SYSUPTIME, "interval": null}, {"sensor": TRAFFIC, "interval": 30}], "bot": SNMP_BOT},
                "ping": {"credential": PING_CREDENTIAL, "sensors": [{"sensor": PING_SENSOR, "interval": 60}], "bot": PING_BOT}
            }
        })
    );
    let eth0 = h
        .get(&format!("/accounts/{ACME}/entities/{ETH0}"), SNMP_BOT)
        .await
        .json();
    assert_eq!(eth0["parent"], json!(ROUTER));
    assert_eq!(
        eth0["details"],
        json!({"snmp_index": "2", "speed_bps": "1000000000"})
    );
    assert_eq!(eth0["protocols"], json!({}));

    let credentials = h
        .get(&format!("/accounts/{ACME}/credentials/"), SNMP_BOT)
        .await;
    assert_eq!(credentials.ids(), vec![SNMP_CREDENTIAL, PING_CREDENTIAL]);
    let credential = h
        .get(
            &format!("/accounts/{ACME}/credentials/{SNMP_CREDENTIAL}"),
            SNMP_BOT,
        )
        .await
        .json();
    assert_eq!(credential, credentials.json()["list"][0]);
    assert_eq!(
        credential["details"],
        json!({"version": "snmpv2c", "snmpv12_community": "public"})
    );
    let sensors = h.get(&format!("/accounts/{ACME}/sensors/"), SNMP_BOT).await;
    assert_eq!(sensors.ids(), vec![SYSUPTIME, TRAFFIC, PING_SENSOR]);
    let sensor = h
        .get(&format!("/accounts/{ACME}/sensors/{TRAFFIC}"), SNMP_BOT)
        .await
        .json();
    assert_eq!(sensor, sensors.json()["list"][1]);
    assert_eq!(sensor["default_interval"], json!(null));

    // Another account's records are not found through this account.
    for (path, what) in [
        (
            format!("/accounts/{ACME}/entities/{GLOBEX_DEVICE}"),
            "entity",
        ),
        (
            format!("/accounts/{ACME}/credentials/{GLOBEX_CREDENTIAL}"),
            "credential",
        ),
        (
            format!("/accounts/{ACME}/sensors/{GLOBEX_SENSOR}"),
            "sensor",
        ),
        ("/accounts/42".to_string(), "account"),
    ] {
        let missing = h.get(&path, SNMP_BOT).await;
        assert_eq!(
            (missing.status, missing.json()),
            (404, json!({"detail": format!("No such {what}")})),
            "{path}"
        );
    }
    assert_eq!(
        h.get("/accounts/42/entities/", SNMP_BOT).await.json(),
        json!({"list": []})
    );

    let bad_id = h
        .get(&format!("/accounts/{ACME}/entities/12x"), SNMP_BOT)
        .await;
    assert_eq!(bad_id.status, 422);
    assert_eq!(
        bad_id.json(),
        json!({"detail": [{"loc": ["path", "entity_id"], "msg": "value is not a valid integer", "type": "type_error.integer"}]})
    );
    assert_eq!(
        h.get("/accounts/abc/sensors/", SNMP_BOT).await.json()["detail"][0]["loc"],
        json!(["path", "account_id"])
    );
    let wrong_method = h
        .delete(
            &format!("/accounts/{ACME}/credentials/{SNMP_CREDENTIAL}"),
            SNMP_BOT,
        )
        .await;
    assert_eq!(
        (wrong_method.status, wrong_method.json()),
        (405, json!({"detail": "Method Not Allowed"}))
    );
    assert_eq!(
        h.get(&format!("/accounts/{ACME}/values/"), SNMP_BOT)
            .await
            .status,
        405
    );
}

#[tokio::test]
async fn live_updates_are_served_on_the_next_request() {
    let h = Harness::start().await;
    h.backend.update(|f| {
        f.set_interval(ROUTER, "snmp", SYSUPTIME, Some(10));
        f.remove_entity(SWITCH);
    });
    let router = h
        .get(&format!("/accounts/{ACME}/entities/{ROUTER}"), SNMP_BOT)
        .await
        .json();
    assert_eq!(
        router["protocols"]["snmp"]["sensors"][0],
        json!({"sensor": SYSUPTIME, "interval": 10})
    );
    assert_eq!(
        h.get(&format!("/accounts/{ACME}/entities/"), SNMP_BOT)
            .await
            .ids(),
        vec![ROUTER, ETH0, ETH0_VLAN]
    );
}

#[tokio::test]
async fn posted_values_are_stored_at_server_time() {
    let h = Harness::start().await;
    let before = now();
    let answer = h
        .post_values(
            ACME,
            &json!([
                {"p": "entity.1.snmp.sysuptime", "v": 12345.6},
                {"p": "netflow.1min.egress", "v": "1500"},
                {"p": "a.b", "v": " 5 "},
                {"p": "a.c", "v": "1e3"},
                {"p": "a.nan", "v": "NaN"},
                {"p": "a.zero_t", "v": 1, "t": 0},
                {"p": "a.newline\n", "v": 2},
            ]),
        )
        .await;
    assert_eq!((answer.status, answer.text.as_str()), (204, ""));
    let after = now();
    let values = h.backend.values(ACME);
    let got: Vec<(&str, f64)> = values.iter().map(|v| (v.path.as_str(), v.value)).collect();
    assert_eq!(got.len(), 7);
    assert_eq!(
        &got[..4],
        &[
            ("entity.1.snmp.sysuptime", 12345.6),
            ("netflow.1min.egress", 1500.0),
            ("a.b", 5.0),
            ("a.c", 1000.0)
        ]
    );
    assert!(values[4].value.is_nan() && values[4].path == "a.nan");
    assert_eq!(
        values[6].path, "a.newline",
        "one trailing newline is stripped"
    );
    assert!(values
        .iter()
        .all(|v| v.t == values[0].t && v.method == WriteMethod::Post));
    assert!(values[0].t >= before - 0.001 && values[0].t <= after + 0.001);
    assert!(h.backend.values(GLOBEX).is_empty());
}

#[tokio::test]
async fn value_paths_follow_the_backends_rule() {
    let h = Harness::start().await;
    for ok in [
        "x.1%2e2%3a3",
        "A-b_9",
        "entity.1348300224.netflow.topip.192%2e0%2e2%2e1",
    ] {
        assert_eq!(
            h.post_values(ACME, &json!([{"p": ok, "v": 1}]))
                .await
                .status,
            204,
            "{ok}"
        );
    }
    for (bad, message) in [
        ("x.%2E", "Invalid PathInputValue format: x.%2E"),
        ("a..b", "Invalid PathInputValue format: a..b"),
        ("x.%41", "Invalid PathInputValue format: x.%41"),
        ("a b", "Invalid PathInputValue format: a b"),
        ("a/b", "Invalid PathInputValue format: a/b"),
        ("a:b", "Invalid PathInputValue format: a:b"),
        (".a", "Invalid PathInputValue format: .a"),
        ("a.", "Invalid PathInputValue format: a."),
        ("", "Invalid PathInputValue format: "),
        (
            "system.cpu",
            "Invalid path - should not start with 'system.'!",
        ),
    ] {
        let answer = h
            .post_values(ACME, &json!([{"p": "fine", "v": 1}, {"p": bad, "v": 1}]))
            .await;
        assert_eq!(answer.status, 400, "{bad:?}");
        assert_eq!(
            answer.text,
            format!("Input validation failed: {message}"),
            "{bad:?}"
        );
    }
    // A bad path anywhere loses the whole batch, even when it is behind a bad value.
    let mut items: Vec<Value> = (0..150)
        .map(|i| json!({"p": format!("p{i}"), "v": i}))
        .collect();
    items[10]["v"] = json!(null);
    items[140]["p"] = json!("bad..path");
    assert_eq!(
        h.post_values(GLOBEX, &Value::Array(items)).await.status,
        400
    );
    assert!(h.backend.values(GLOBEX).is_empty());
}

#[tokio::test]
async fn values_follow_the_backends_rule() {
    let h = Harness::start().await;
    for (value, status, message) in [
        (json!(null), 400, Some("Invalid MeasuredValue format: None")),
        (json!(""), 400, Some("Invalid MeasuredValue format: ")),
        (json!("abc"), 400, Some("Invalid MeasuredValue format: abc")),
        (
            json!({"a": 1}),
            400,
            Some("Invalid MeasuredValue format: {'a': 1}"),
        ),
        (json!([1]), 400, Some("Invalid MeasuredValue format: [1]")),
        (json!(true), 500, None),
        (json!("inf"), 500, None),
        (json!("-Infinity"), 500, None),
        (json!("1_000"), 500, None),
    ] {
        let answer = h.post_values(ACME, &json!([{"p": "x", "v": value}])).await;
        assert_eq!(answer.status, status, "{value}");
        if let Some(message) = message {
            assert_eq!(
                answer.text,
                format!("Input validation failed: {message}"),
                "{value}"
            );
        }
    }
    assert!(h.backend.values(ACME).is_empty());

    // Without `Content-Type: application/json` the message carries the backend's hint.
    let answer = h
        .send(
            h.client
                .post(h.url(&format!("/accounts/{ACME}/values/"), Some(SNMP_BOT)))
                .body(r#"[{"p":"x","v":null}]"#),
        )
        .await;
    assert_eq!(
        answer.text,
        "Input validation failed: Invalid MeasuredValue format: None - maybe Content-Type header was not set to application/json?"
    );
    assert_eq!(answer.status, 400);
}

#[tokio::test]
async fn batch_shapes_and_missing_data() {
    let h = Harness::start().await;
    let t_given = h
        .post_values(
            ACME,
            &json!([{"p": "a", "v": 1}, {"p": "b", "v": 2, "t": 1613291111}]),
        )
        .await;
    assert_eq!(
        (t_given.status, t_given.json()),
        (
            400,
            json!({"detail": "Parameter 't' shouldn't be specified with POST"})
        )
    );
    for empty in [json!([]), json!({}), json!(null)] {
        let answer = h.post_values(ACME, &empty).await;
        assert_eq!(
            (answer.status, answer.json()),
            (400, json!({"detail": "Missing data"})),
            "{empty}"
        );
    }
    for broken in [
        json!([{"p": "a"}]),
        json!([{"v": 1}]),
        json!([5]),
        json!({"p": "a", "v": 1}),
        json!("x"),
    ] {
        assert_eq!(h.post_values(ACME, &broken).await.status, 500, "{broken}");
    }
    let no_body = h
        .send(
            h.client
                .post(h.url(&format!("/accounts/{ACME}/values/"), Some(SNMP_BOT))),
        )
        .await;
    assert_eq!(no_body.status, 500);
    assert!(h.backend.values(ACME).is_empty());

    // The query form of a single value.
    let url = h.url(
        &format!("/accounts/{ACME}/values/?p=q.one&v=2.5"),
        Some(SNMP_BOT),
    );
    assert_eq!(
        h.send(h.client.post(url).json(&json!([]))).await.status,
        204
    );
    assert_eq!(h.backend.values_at(ACME, "q.one")[0].value, 2.5);
    let url = h.url(
        &format!("/accounts/{ACME}/values/?p=q.two&v=1&t=1613291111"),
        Some(SNMP_BOT),
    );
    assert_eq!(
        h.send(h.client.post(url).json(&json!([]))).await.status,
        400
    );
}

#[tokio::test]
async fn batches_are_stored_in_pages_of_one_hundred() {
    let h = Harness::start().await;
    let batch = |bad_index: Option<usize>, bad_value: Value| {
        let mut items: Vec<Value> = (0..250)
            .map(|i| json!({"p": format!("page.item{i}"), "v": i}))
            .collect();
        if let Some(i) = bad_index {
            items[i]["v"] = bad_value;
        }
        Value::Array(items)
    };
    // A bad value in the third page: the first two pages stay stored.
    assert_eq!(
        h.post_values(ACME, &batch(Some(230), json!("abc")))
            .await
            .status,
        400
    );
    assert_eq!(h.backend.values(ACME).len(), 200);
    // A database-level failure in the second page: 500, the first page stored.
    assert_eq!(
        h.post_values(GLOBEX, &batch(Some(150), json!(true)))
            .await
            .status,
        500
    );
    assert_eq!(h.backend.values(GLOBEX).len(), 100);
    // A bad value in the first page: nothing.
    assert_eq!(
        h.post_values(EMPTY, &batch(Some(0), json!(null)))
            .await
            .status,
        400
    );
    assert!(h.backend.values(EMPTY).is_empty());
    // A validation error later in a page wins over a database failure earlier in it.
    let mut items: Vec<Value> = (0..5)
        .map(|i| json!({"p": format!("v{i}"), "v": i}))
        .collect();
    items[1]["v"] = json!(true);
    items[3]["v"] = json!(null);
    assert_eq!(h.post_values(EMPTY, &Value::Array(items)).await.status, 400);

    // A path repeated inside one page: 500 for that page.
    h.backend.clear_values();
    let mut items: Vec<Value> = (0..150)
        .map(|i| json!({"p": format!("d{i}"), "v": i}))
        .collect();
    items[120]["p"] = json!("d101");
    assert_eq!(h.post_values(ACME, &Value::Array(items)).await.status, 500);
    assert_eq!(h.backend.values(ACME).len(), 100);
    // Repeated across pages: the later one overwrites (same path, same timestamp).
    h.backend.clear_values();
    let mut items: Vec<Value> = (0..150)
        .map(|i| json!({"p": format!("d{i}"), "v": i}))
        .collect();
    items[120]["p"] = json!("d5");
    assert_eq!(h.post_values(ACME, &Value::Array(items)).await.status, 204);
    assert_eq!(h.backend.values(ACME).len(), 149);
    assert_eq!(h.backend.values_at(ACME, "d5")[0].value, 120.0);
}

#[tokio::test]
async fn put_stores_at_the_given_time_and_overwrites() {
    let h = Harness::start().await;
    let path = format!("/accounts/{ACME}/values/");
    let answer = h
        .put_json(
            &path,
            ACME_BOT,
            &json!([
                {"p": "backfill.a", "t": 1613291111.25, "v": 1.5},
                {"p": "backfill.a", "t": "1613291112.000001", "v": "2"},
                {"p": "backfill.b", "t": 1613291111.25, "v": 3},
            ]),
        )
        .await;
    assert_eq!(answer.status, 204);
    assert_eq!(
        h.put_json(
            &path,
            ACME_BOT,
            &json!([{"p": "backfill.a", "t": 1613291111.25, "v": 9}])
        )
        .await
        .status,
        204
    );
    let a = h.backend.values_at(ACME, "backfill.a");
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[0].t, a[0].value, a[0].method),
        (1613291111.25, 9.0, WriteMethod::Put)
    );
    assert_eq!(a[1].t, 1613291112.000001);

    for (t, status) in [
        (json!("abc"), 400),
        (json!(null), 400),
        (json!("0123456"), 400),
        (json!(true), 500),
    ] {
        assert_eq!(
            h.put_json(&path, ACME_BOT, &json!([{"p": "bad.t", "t": t, "v": 1}]))
                .await
                .status,
            status,
            "{t}"
        );
    }
    let invalid = h
        .put_json(
            &path,
            ACME_BOT,
            &json!([{"p": "bad.t", "t": "abc", "v": 1}]),
        )
        .await;
    assert_eq!(
        invalid.text,
        "Input validation failed: Invalid Timestamp format: abc"
    );
    assert_eq!(
        h.put_json(&path, ACME_BOT, &json!([{"p": "bad.t", "v": 1}]))
            .await
            .status,
        500
    );
    let duplicate =
        json!([{"p": "d", "t": 1613291111, "v": 1}, {"p": "d", "t": 1613291111.0, "v": 2}]);
    assert_eq!(h.put_json(&path, ACME_BOT, &duplicate).await.status, 500);
    assert!(
        h.backend.values_at(ACME, "bad.t").is_empty() && h.backend.values_at(ACME, "d").is_empty()
    );
    // The account bot may write values only to its own account.
    assert_eq!(
        h.put_json(
            &format!("/accounts/{GLOBEX}/values/"),
            ACME_BOT,
            &json!([{"p": "a", "t": 1613291111, "v": 1}])
        )
        .await
        .status,
        403
    );
}

#[tokio::test]
async fn entity_writes_validate_like_the_backend() {
    let h = Harness::start().await;
    let entities = format!("/accounts/{ACME}/entities/");
    let interface = json!({"name": "eth1", "entity_type": "interface", "parent": ROUTER,
        "details": {"snmp_index": "3", "speed_bps": "100000000"}});
    let created = h.post_json(&entities, SNMP_BOT, &interface).await;
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_i64().expect("an id");
    assert!((1..(1i64 << 31) - 1).contains(&id));
    assert_eq!(created.json(), json!({"id": id}));
    let stored = h.get(&format!("{entities}{id}"), SNMP_BOT).await.json();
    assert_eq!(
        (
            stored["parent"].clone(),
            stored["details"]["snmp_index"].clone()
        ),
        (json!(ROUTER), json!("3"))
    );

    for (body, message) in [
        (
            json!({"name": "x", "entity_type": "device"}),
            "'details' is a required property",
        ),
        (
            json!({"id": 5, "name": "x", "entity_type": "device", "details": {}}),
            "Additional properties are not allowed ('id' was unexpected)",
        ),
        (
            json!({"name": 5, "entity_type": "device", "details": {}}),
            "5 is not of type 'string'",
        ),
        (
            json!({"name": "x", "entity_type": "device", "details": {},
            "protocols": {"snmp": {"credential": SNMP_CREDENTIAL, "bot": SNMP_BOT}}}),
            "'sensors' is a required property",
        ),
        (
            json!({"name": "x", "entity_type": "device", "details": {},
            "protocols": {"snmp": {"credential": PING_CREDENTIAL, "bot": SNMP_BOT, "sensors": []}}}),
            &format!("Invalid credential for this account/protocol combination: {PING_CREDENTIAL}"),
        ),
        (
            json!({"name": "x", "entity_type": "device", "details": {},
            "protocols": {"snmp": {"credential": GLOBEX_CREDENTIAL, "bot": SNMP_BOT, "sensors": []}}}),
            &format!(
                "Invalid credential for this account/protocol combination: {GLOBEX_CREDENTIAL}"
            ),
        ),
        (
            json!({"name": "x", "entity_type": "device", "details": {},
            "protocols": {"snmp": {"credential": SNMP_CREDENTIAL, "bot": PING_BOT, "sensors": []}}}),
            &format!("Invalid bot for this protocol: {PING_BOT}"),
        ),
        (
            json!({"name": "x", "entity_type": "device", "details": {},
            "protocols": {"snmp": {"credential": SNMP_CREDENTIAL, "bot": "1234", "sensors": []}}}),
            "Invalid bot for this account: 1234",
        ),
        (
            json!({"name": "x", "entity_type": "device", "details": {},
            "protocols": {"snmp": {"credential": SNMP_CREDENTIAL, "bot": SNMP_BOT, "sensors": [{"sensor": GLOBEX_SENSOR, "interval": 5}]}}}),
            &format!("Invalid sensor for this account/protocol combination: {GLOBEX_SENSOR}"),
        ),
    ] {
        let answer = h.post_json(&entities, SNMP_BOT, &body).await;
        assert_eq!(
            (answer.status, answer.text.as_str()),
            (400, format!("Input validation failed: {message}").as_str()),
            "{body}"
        );
    }
    // An account bot of another account is not valid here.
    let mut f_bot = Bot::account_bot(1_620_000_077, GLOBEX, "snmp");
    f_bot.name = "globex bot".into();
    h.backend.update(|f| {
        f.bot(f_bot);
    });
    let foreign_bot = json!({"name": "x", "entity_type": "device", "details": {},
        "protocols": {"snmp": {"credential": SNMP_CREDENTIAL, "bot": 1_620_000_077, "sensors": []}}});
    assert_eq!(
        h.post_json(&entities, SNMP_BOT, &foreign_bot).await.text,
        "Input validation failed: Invalid bot for this account: 1620000077"
    );

    // Unknown parent or account: database errors.
    assert_eq!(
        h.post_json(
            &entities,
            SNMP_BOT,
            &json!({"name": "x", "entity_type": "d", "details": {}, "parent": 42})
        )
        .await
        .status,
        500
    );
    assert_eq!(
        h.post_json(
            "/accounts/42/entities/",
            SNMP_BOT,
            &json!({"name": "x", "entity_type": "d", "details": {}})
        )
        .await
        .status,
        500
    );

    // A sensor entry without interval passes the schema and fails half-way.
    let half = json!({"name": "half", "entity_type": "device", "details": {},
        "protocols": {"snmp": {"credential": SNMP_CREDENTIAL, "bot": SNMP_BOT, "sensors": [{"sensor": SYSUPTIME}]}}});
    let before = h.get(&entities, SNMP_BOT).await.ids().len();
    assert_eq!(h.post_json(&entities, SNMP_BOT, &half).await.status, 500);
    let list = h.get(&entities, SNMP_BOT).await.json();
    assert_eq!(list["list"].as_array().map(Vec::len), Some(before + 1));
    assert!(list["list"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["name"] == json!("half") && e["protocols"] == json!({})));
}

#[tokio::test]
async fn entity_put_replaces_and_delete_cascades() {
    let h = Harness::start().await;
    let router = format!("/accounts/{ACME}/entities/{ROUTER}/");
    // Validation comes before the existence check.
    let invalid = h
        .put_json(
            &format!("/accounts/{ACME}/entities/42"),
            SNMP_BOT,
            &json!({"name": "x"}),
        )
        .await;
    assert_eq!(invalid.status, 400);
    let valid = json!({"name": "renamed", "entity_type": "device", "details": {"ipv4": "192.0.2.9"}, "parent": ETH0});
    let absent = h
        .put_json(&format!("/accounts/{ACME}/entities/42"), SNMP_BOT, &valid)
        .await;
    assert_eq!(
        (absent.status, absent.json()),
        (404, json!({"detail": "No such entity"}))
    );
    assert_eq!(
        h.put_json(
            &format!("/accounts/{GLOBEX}/entities/{ROUTER}"),
            SNMP_BOT,
            &valid
        )
        .await
        .status,
        404
    );

    // PUT without protocols wipes them, and never moves the entity.
    let answer = h.put_json(&router, SNMP_BOT, &valid).await;
    assert_eq!((answer.status, answer.text.as_str()), (204, ""));
    let stored = h.get(&router, SNMP_BOT).await.json();
    assert_eq!(stored["name"], json!("renamed"));
    assert_eq!(stored["details"], json!({"ipv4": "192.0.2.9"}));
    assert_eq!(stored["parent"], json!(null));
    assert_eq!(stored["protocols"], json!({}));
    let with_protocols = json!({"name": "renamed", "entity_type": "device", "details": {},
        "protocols": {"snmp": {"credential": SNMP_CREDENTIAL, "bot": SNMP_BOT, "sensors": [{"sensor": TRAFFIC, "interval": 10}]}}});
    assert_eq!(
        h.put_json(&router, SNMP_BOT, &with_protocols).await.status,
        204
    );
    assert_eq!(
        h.get(&router, SNMP_BOT).await.json()["protocols"]["snmp"]["sensors"],
        json!([{"sensor": TRAFFIC, "interval": 10}])
    );

    // DELETE takes the children and grandchildren along.
    let answer = h.delete(&router, SNMP_BOT).await;
    assert_eq!((answer.status, answer.text.as_str()), (204, ""));
    assert_eq!(
        h.get(&format!("/accounts/{ACME}/entities/"), SNMP_BOT)
            .await
            .ids(),
        vec![SWITCH]
    );
    assert_eq!(h.delete(&router, SNMP_BOT).await.status, 404);
    assert!(!h.backend.fixture().entities.contains_key(&ETH0_VLAN));
    assert_eq!(
        h.delete(&format!("/accounts/{ACME}/entities/{SWITCH}"), ACME_BOT)
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn faults_hit_only_what_they_match() {
    let h = Harness::start().await;
    // One account refuses while the others answer.
    let refuse = h
        .backend
        .inject(Fault::on("GET", &format!("/api/accounts/{ACME}/")).status(403));
    assert_eq!(
        h.get(&format!("/accounts/{ACME}/entities/"), SNMP_BOT)
            .await
            .status,
        403
    );
    assert_eq!(
        h.get(&format!("/accounts/{GLOBEX}/entities/"), SNMP_BOT)
            .await
            .status,
        200
    );
    assert_eq!(
        h.post_values(ACME, &json!([{"p": "a", "v": 1}]))
            .await
            .status,
        204
    );
    assert_eq!(h.backend.fault_hits(refuse), 1);
    h.backend.remove_fault(refuse);

    // Bad JSON on a list, a limited number of times.
    h.backend.inject(
        Fault::on("GET", &format!("/api/accounts/{GLOBEX}/entities"))
            .invalid_json()
            .times(2),
    );
    for _ in 0..2 {
        let bad = h
            .get(&format!("/accounts/{GLOBEX}/entities/"), SNMP_BOT)
            .await;
        assert_eq!(
            (bad.status, bad.content_type.as_deref()),
            (200, Some("application/json"))
        );
        assert!(serde_json::from_str::<Value>(&bad.text).is_err());
    }
    assert_eq!(
        h.get(&format!("/accounts/{GLOBEX}/entities/"), SNMP_BOT)
            .await
            .ids(),
        vec![GLOBEX_DEVICE]
    );

    // Values refused with 503; nothing stored.
    h.backend.inject(
        Fault::on("POST", "/api/accounts/")
            .and(|r| r.path.ends_with("/values/"))
            .status(503)
            .times(1),
    );
    assert_eq!(
        h.post_values(GLOBEX, &json!([{"p": "a", "v": 1}]))
            .await
            .status,
        503
    );
    assert!(h.backend.values(GLOBEX).is_empty());
    assert_eq!(
        h.post_values(GLOBEX, &json!([{"p": "a", "v": 1}]))
            .await
            .status,
        204
    );

    // A slow backend: the answer comes, late.
    h.backend
        .inject(Fault::on("GET", "/api/profile").delay(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(h.get("/profile/", SNMP_BOT).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A dropped connection: no answer at all, recorded as such.
    h.backend.inject(
        Fault::on("GET", "/api/accounts")
            .close_connection()
            .times(1),
    );
    let error = h
        .client
        .get(h.url("/accounts/", Some(SNMP_BOT)))
        .send()
        .await;
    assert!(
        error.is_err(),
        "the connection must be closed without an answer: {error:?}"
    );
    assert_eq!(h.backend.last_requests(1)[0].status, CONNECTION_CLOSED);
    assert_eq!(h.get("/accounts/", SNMP_BOT).await.status, 200);

    h.backend.inject(Fault::all().status(500));
    assert_eq!(
        h.raw(Method::GET, &h.url("/status/info", None))
            .await
            .status,
        500
    );
    h.backend.clear_faults();
    assert_eq!(
        h.raw(Method::GET, &h.url("/status/info", None))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn stop_and_restart_keep_port_and_values() {
    let h = Harness::start().await;
    let url = h.backend.url();
    assert_eq!(
        h.post_values(ACME, &json!([{"p": "before", "v": 1}]))
            .await
            .status,
        204
    );
    // The client keeps a pooled connection; stopping must break it too.
    h.backend.stop().await;
    assert!(!h.backend.is_running().await);
    let down = h
        .client
        .get(h.url("/accounts/", Some(SNMP_BOT)))
        .send()
        .await;
    assert!(down.is_err(), "a stopped backend must not answer: {down:?}");

    h.backend
        .restart()
        .await
        .expect("the same port can be bound again");
    assert_eq!(h.backend.url(), url);
    assert_eq!(
        h.post_values(ACME, &json!([{"p": "after", "v": 2}]))
            .await
            .status,
        204
    );
    let paths: Vec<String> = h.backend.values(ACME).into_iter().map(|v| v.path).collect();
    assert_eq!(paths, vec!["before", "after"]);
}

#[tokio::test]
async fn waiting_helpers_and_request_counts() {
    let h = Harness::start().await;
    let mark = h.backend.request_mark();
    let poster = {
        let client = h.client.clone();
        let url = h.url(&format!("/accounts/{ACME}/values/"), Some(SNMP_BOT));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            client
                .post(url)
                .json(&json!([{"p": "late", "v": 7}]))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    let values = h
        .backend
        .wait_for_values(
            ACME,
            |v| v.iter().any(|v| v.path == "late"),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(values[0].value, 7.0);
    assert_eq!(
        poster
            .await
            .expect("the task ran")
            .expect("the post went through"),
        204
    );

    for account in [ACME, GLOBEX] {
        for list in ["entities", "credentials", "sensors"] {
            h.get(&format!("/accounts/{account}/{list}/"), SNMP_BOT)
                .await;
        }
    }
    let since = h.backend.requests_since(mark);
    assert_eq!(since.len(), 7);
    assert_eq!(
        since
            .iter()
            .filter(|r| r.account() == Some(ACME) && r.method == "GET")
            .count(),
        3
    );
    assert_eq!(
        h.backend.count("GET", &format!("/api/accounts/{GLOBEX}/")),
        3
    );
    assert!(since
        .iter()
        .all(|r| r.bot == Some(SNMP_BOT) && r.had_token && r.query.is_empty()));
    h.backend
        .wait_for_requests("GET", "/api/accounts/", 6, Duration::from_secs(1))
        .await;
    assert!(h
        .backend
        .wait_until(
            |b| (b.value_count() > 5).then_some(()),
            Duration::from_millis(50)
        )
        .await
        .is_none());
    let total = h.backend.request_mark();
    assert_eq!(h.backend.take_requests().len(), total);
    assert_eq!(h.backend.request_mark(), 0);
    h.backend.clear_values();
    assert_eq!(
        (h.backend.value_count(), h.backend.values_written()),
        (0, 1)
    );
}

#[tokio::test]
async fn generated_fixture_serves_every_device() {
    let h = Harness::with(Fixture::generated(3, 40, "ping")).await;
    let accounts = h.get("/accounts/", e2e::GENERATED_BOT).await.ids();
    assert_eq!(accounts.len(), 3);
    let mut addresses = std::collections::HashSet::new();
    for account in accounts {
        let entities = h
            .get(
                &format!("/accounts/{account}/entities/"),
                e2e::GENERATED_BOT,
            )
            .await
            .json();
        let list = entities["list"].as_array().expect("a list").clone();
        assert_eq!(list.len(), 40);
        for entity in list {
            assert_eq!(
                entity["protocols"]["ping"]["bot"],
                json!(e2e::GENERATED_BOT)
            );
            addresses.insert(
                entity["details"]["ipv4"]
                    .as_str()
                    .expect("an address")
                    .to_string(),
            );
        }
        assert_eq!(
            h.get(
                &format!("/accounts/{account}/credentials/"),
                e2e::GENERATED_BOT
            )
            .await
            .ids()
            .len(),
            1
        );
    }
    assert_eq!(addresses.len(), 120);
    assert!(addresses
        .iter()
        .all(|a| a.starts_with("127.") && !a.ends_with(".0") && !a.ends_with(".255")));
}

#[tokio::test]
async fn the_binary_serves_a_generated_fixture() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_test-backend"))
        .args([
            "--accounts",
            "2",
            "--entities-per-account",
            "3",
            "--protocol",
            "snmp",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the test-backend binary starts");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut url = None;
    let mut token = None;
    while url.is_none() || token.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("the binary prints its settings")
            .expect("readable stdout")
            .expect("the settings come before stdout closes");
        if let Some(value) = line.strip_prefix("BACKEND_URL=") {
            url = Some(value.to_string());
        } else if let Some(value) = line.strip_prefix("BOT_TOKEN=") {
            token = Some(value.to_string());
        }
    }
    let (url, token) = (url.unwrap_or_default(), token.unwrap_or_default());
    let accounts: Value = reqwest::get(format!("{url}/accounts/?b={token}"))
        .await
        .expect("it answers")
        .json()
        .await
        .expect("JSON");
    let account = accounts["list"][0]["id"].as_i64().expect("an account");
    assert_eq!(accounts["list"].as_array().map(Vec::len), Some(2));
    let sensors: Value = reqwest::get(format!("{url}/accounts/{account}/sensors/?b={token}"))
        .await
        .expect("it answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        sensors["list"][0]["details"]["output_path"],
        json!("sysuptime")
    );
    child.kill().await.expect("the child is ours to stop");
}
