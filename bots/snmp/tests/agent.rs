//! Sessions, GET and WALK against a real net-snmp snmpd on loopback.

#[path = "support/snmpd.rs"]
mod snmpd;

use serde_json::json;
use snmpbot::session::{Credential, SnmpCounters, SnmpEngine, SnmpError, SnmpSettings};
use snmpbot::walk::{get, parse_oid, walk, SnmpValue};
use snmpd::{PassObject, Snmpd, COMMUNITY, PASS_BASE, V3_AUTH_KEY, V3_PRIV_KEY, V3_USER};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn objects() -> Vec<PassObject> {
    vec![
        PassObject::fixed(&format!("{PASS_BASE}.1.1"), "string", "first row"),
        PassObject::fixed(&format!("{PASS_BASE}.1.2"), "string", "second"),
        PassObject::fixed(&format!("{PASS_BASE}.1.10"), "integer", "-7"),
        PassObject::fixed(&format!("{PASS_BASE}.2.1.4.192.0.2.1"), "gauge", "42"),
        PassObject::rate(&format!("{PASS_BASE}.3.1"), "counter", 1000, 0, 1 << 32),
        PassObject::fixed(&format!("{PASS_BASE}.3.2"), "counter64", "12345678901234"),
    ]
}

async fn engine(settings: SnmpSettings) -> Arc<SnmpEngine> {
    Arc::new(
        SnmpEngine::new(settings, None, SnmpCounters::default())
            .await
            .expect("bind the SNMP socket"),
    )
}

fn v2c() -> Credential {
    Credential::from_details(&json!({"version": "snmpv2c", "snmpv12_community": COMMUNITY}))
        .unwrap()
}

fn v3(auth_key: &str, priv_key: &str) -> Credential {
    Credential::from_details(&json!({
        "version": "snmpv3", "snmpv3_securityName": V3_USER, "snmpv3_securityLevel": "authPriv",
        "snmpv3_authProtocol": "SHA", "snmpv3_authKey": auth_key,
        "snmpv3_privProtocol": "AES", "snmpv3_privKey": priv_key,
    }))
    .unwrap()
}

fn oid(text: &str) -> async_snmp::Oid {
    parse_oid(text).unwrap()
}

#[tokio::test]
async fn v2c_get_and_bulk_walk() {
    let agent = Snmpd::start(&objects());
    let engine = engine(SnmpSettings {
        max_repetitions: 2,
        ..SnmpSettings::default()
    })
    .await;
    let session = engine.session(&agent.address(), &v2c()).await.unwrap();

    let uptime = get(&session, &oid("1.3.6.1.2.1.1.3.0")).await.unwrap();
    assert!(matches!(uptime, SnmpValue::TimeTicks(_)), "{uptime:?}");

    let rows = walk(&session, &oid(&format!("{PASS_BASE}.1")))
        .await
        .unwrap();
    let rows: Vec<(&str, SnmpValue)> = rows
        .iter()
        .map(|r| (r.index.as_str(), r.value.clone()))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("1", SnmpValue::Text("first row".into())),
            ("2", SnmpValue::Text("second".into())),
            ("10", SnmpValue::Integer(-7)),
        ]
    );
    let rows = walk(&session, &oid(&format!("{PASS_BASE}.2")))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].index, "1.4.192.0.2.1",
        "the index is the whole suffix"
    );
    assert_eq!(rows[0].value, SnmpValue::Unsigned(42));

    let counters = walk(&session, &oid(&format!("{PASS_BASE}.3")))
        .await
        .unwrap();
    assert!(matches!(counters[0].value, SnmpValue::Counter32(_)));
    assert_eq!(counters[1].value, SnmpValue::Counter64(12_345_678_901_234));

    let interfaces = walk(&session, &oid("1.3.6.1.2.1.2.2.1.2")).await.unwrap();
    assert!(
        interfaces
            .iter()
            .any(|r| r.value == SnmpValue::Text("lo".into())),
        "ifDescr should list lo: {interfaces:?}"
    );
    assert!(walk(&session, &oid(&format!("{PASS_BASE}.9")))
        .await
        .unwrap()
        .is_empty());
    let missing = get(&session, &oid(&format!("{PASS_BASE}.9.9"))).await;
    assert!(
        matches!(missing, Err(SnmpError::NoSuchObject { .. })),
        "{missing:?}"
    );
}

#[tokio::test]
async fn v1_walks_with_getnext() {
    let agent = Snmpd::start(&objects());
    let engine = engine(SnmpSettings::default()).await;
    let v1 =
        Credential::from_details(&json!({"version": "snmpv1", "snmpv12_community": COMMUNITY}))
            .unwrap();
    let session = engine.session(&agent.address(), &v1).await.unwrap();
    let rows = walk(&session, &oid(&format!("{PASS_BASE}.1")))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2].index, "10");
    // The end of the MIB view is the end of the walk, not an error.
    let tail = walk(&session, &oid(PASS_BASE)).await.unwrap();
    assert!(tail.len() >= 5, "{tail:?}");
}

#[tokio::test]
async fn walks_stop_at_the_end_of_the_mib_view() {
    let agent = Snmpd::start(&objects());
    let engine = engine(SnmpSettings {
        max_repetitions: 5,
        ..SnmpSettings::default()
    })
    .await;
    // SNMPv1 cannot carry the Counter64 object: the agent skips it.
    for (version, in_last_subtree) in [("snmpv2c", 2), ("snmpv1", 1)] {
        let limited = Credential::from_details(
            &json!({"version": version, "snmpv12_community": snmpd::LIMITED_COMMUNITY}),
        )
        .unwrap();
        let session = engine.session(&agent.address(), &limited).await.unwrap();
        // The last subtree of the view: the agent answers endOfMibView (v2c) or noSuchName (v1).
        let rows = walk(&session, &oid(&format!("{PASS_BASE}.3")))
            .await
            .unwrap();
        assert_eq!(rows.len(), in_last_subtree, "{version}: {rows:?}");
        let all = walk(&session, &oid(PASS_BASE)).await.unwrap();
        assert_eq!(all.len(), 4 + in_last_subtree, "{version}: {all:?}");
    }
}

#[tokio::test]
async fn v3_auth_priv() {
    let agent = Snmpd::start(&objects());
    let engine = engine(SnmpSettings::default()).await;
    let session = engine
        .session(&agent.address(), &v3(V3_AUTH_KEY, V3_PRIV_KEY))
        .await
        .unwrap();
    let rows = walk(&session, &oid(&format!("{PASS_BASE}.1")))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let uptime = get(&session, &oid("1.3.6.1.2.1.1.3.0")).await.unwrap();
    assert!(matches!(uptime, SnmpValue::TimeTicks(_)));
}

#[tokio::test]
async fn v3_md5_des_and_sha256_users() {
    let agent = Snmpd::start(&objects());
    let dir = tempfile::tempdir().unwrap();
    let database = redb::Database::create(dir.path().join("state.redb")).unwrap();
    let des_salt = snmpbot::session::des_salt_state(&database).unwrap();
    let engine = Arc::new(
        SnmpEngine::new(
            SnmpSettings::default(),
            Some(des_salt),
            SnmpCounters::default(),
        )
        .await
        .unwrap(),
    );
    let des = Credential::from_details(&json!({
        "version": "snmpv3", "snmpv3_securityName": snmpd::V3_DES_USER, "snmpv3_securityLevel": "authPriv",
        "snmpv3_authProtocol": "MD5", "snmpv3_authKey": V3_AUTH_KEY,
        "snmpv3_privProtocol": "DES", "snmpv3_privKey": V3_PRIV_KEY,
    }))
    .unwrap();
    let sha256 = Credential::from_details(&json!({
        "version": "snmpv3", "snmpv3_securityName": snmpd::V3_SHA2_USER, "snmpv3_securityLevel": "authNoPriv",
        "snmpv3_authProtocol": "SHA-256", "snmpv3_authKey": V3_AUTH_KEY,
    }))
    .unwrap();
    for credential in [des, sha256] {
        let session = engine.session(&agent.address(), &credential).await.unwrap();
        let rows = walk(&session, &oid(&format!("{PASS_BASE}.1"))).await;
        assert_eq!(rows.map(|r| r.len()), Ok(3), "{credential:?}");
    }
}

#[tokio::test]
async fn wrong_v3_passwords_are_reported_clearly() {
    let agent = Snmpd::start(&objects());
    let engine = engine(SnmpSettings {
        timeout: Duration::from_millis(500),
        retries: 1,
        ..SnmpSettings::default()
    })
    .await;
    let session = engine
        .session(&agent.address(), &v3("wrongpass123", V3_PRIV_KEY))
        .await
        .unwrap();
    let started = Instant::now();
    let error = get(&session, &oid("1.3.6.1.2.1.1.3.0")).await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, SnmpError::Authentication { .. })
            && message.contains("authentication password"),
        "{message}"
    );
    assert!(
        message.contains(V3_USER) && !message.contains("wrongpass123"),
        "{message}"
    );
    assert!(error.affects_whole_agent());
    eprintln!(
        "wrong auth password reported after {:?}: {message}",
        started.elapsed()
    );

    let session = engine
        .session(&agent.address(), &v3(V3_AUTH_KEY, "wrongpriv123"))
        .await
        .unwrap();
    let error = get(&session, &oid("1.3.6.1.2.1.1.3.0")).await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, SnmpError::Authentication { .. }),
        "{message}"
    );
    assert!(!message.contains("wrongpriv123"), "{message}");
    eprintln!("wrong privacy password: {message}");
}

#[tokio::test]
async fn unreachable_agent_times_out_within_the_settings() {
    let (_silent, port) = snmpd::silent_udp_port();
    let settings = SnmpSettings {
        timeout: Duration::from_millis(200),
        retries: 2,
        ..SnmpSettings::default()
    };
    let engine = engine(settings).await;
    let session = engine
        .session(&format!("127.0.0.1:{port}"), &v2c())
        .await
        .unwrap();
    let started = Instant::now();
    let error = walk(&session, &oid("1.3.6.1.2.1.2.2.1.2"))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(error, SnmpError::Timeout { retries: 2, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
    assert!(
        elapsed >= Duration::from_millis(550) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert_eq!(engine.counters().timeouts.get(), 1);
}

#[tokio::test]
async fn walks_are_capped() {
    let agent = Snmpd::start(&objects());
    let engine = engine(SnmpSettings {
        max_walk_rows: 2,
        ..SnmpSettings::default()
    })
    .await;
    let session = engine.session(&agent.address(), &v2c()).await.unwrap();
    let error = walk(&session, &oid(&format!("{PASS_BASE}.1")))
        .await
        .unwrap_err();
    assert!(
        matches!(error, SnmpError::Walk { .. }) && error.to_string().contains("more than 2 rows"),
        "{error}"
    );
}

#[tokio::test]
async fn bad_addresses_and_credentials_fail_before_sending() {
    let engine = engine(SnmpSettings::default()).await;
    let error = engine
        .session("127.0.0.1:notaport", &v2c())
        .await
        .err()
        .unwrap();
    assert!(matches!(error, SnmpError::Config(_)), "{error}");
    let short = Credential::from_details(&json!({
        "version": "snmpv3", "snmpv3_securityName": "u", "snmpv3_securityLevel": "authNoPriv",
        "snmpv3_authProtocol": "SHA", "snmpv3_authKey": "short"}))
    .unwrap();
    let error = engine.session("127.0.0.1:161", &short).await.err().unwrap();
    assert!(
        matches!(error, SnmpError::Config(_)) && !error.to_string().contains("short\""),
        "{error}"
    );
}
