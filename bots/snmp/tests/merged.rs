//! Merged GETs and side-by-side walks give exactly what each OID alone gives: on a real
//! net-snmp snmpd (ifTable, ifXTable and a table with holes; snmpwalk as the reference for the
//! rows), on async-snmp's agent with the smallest message size SNMP allows, which answers
//! large GETs with `tooBig`, truncates GETBULK answers and drops larger requests, and on a
//! wide table whose columns follow their leader's rows or not (row chains).

#[path = "support/snmpd.rs"]
mod snmpd;

use async_snmp::agent::Agent;
use async_snmp::handler::{
    BoxFuture, GetNextResult, GetResult, HandlerResult, MibHandler, OidTable, RequestContext,
};
use async_snmp::{Oid, Value, VarBind};
use serde_json::json;
use snmpbot::merged::Exchange;
use snmpbot::session::{Credential, Session, SnmpCounters, SnmpEngine, SnmpSettings};
use snmpbot::walk::{get, parse_oid, walk, SnmpValue, WalkRow};
use snmpd::{PassObject, Snmpd, COMMUNITY, PASS_BASE};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn engine(max_varbinds: usize) -> Arc<SnmpEngine> {
    engine_with(SnmpSettings {
        max_varbinds,
        ..SnmpSettings::default()
    })
    .await
}

async fn engine_with(settings: SnmpSettings) -> Arc<SnmpEngine> {
    Arc::new(
        SnmpEngine::new(settings, None, SnmpCounters::default())
            .await
            .expect("bind the SNMP socket"),
    )
}

fn community(version: &str) -> Credential {
    Credential::from_details(&json!({"version": version, "snmpv12_community": COMMUNITY})).unwrap()
}

fn oid(text: &str) -> Oid {
    parse_oid(text).unwrap()
}

/// Each OID walked alone (the single-column path), the number of requests that took, and the
/// session it used (for the merged walks to compare).
async fn walk_each(
    engine: &Arc<SnmpEngine>,
    address: &str,
    credential: &Credential,
    bases: &[Oid],
) -> (Vec<Vec<WalkRow>>, u64, Arc<Session>) {
    let session = engine.session(address, credential).await.unwrap();
    let before = engine.counters().requests.get();
    let mut walked = Vec::new();
    for base in bases {
        walked.push(walk(&session, base).await.unwrap());
    }
    let requests = engine.counters().requests.get() - before;
    (walked, requests, session)
}

/// The OIDs under `base` as net-snmp's snmpwalk lists them.
fn snmpwalk_oids(address: &str, version: &str, base: &Oid) -> Vec<String> {
    let output = std::process::Command::new("snmpwalk")
        .args([
            version,
            "-c",
            COMMUNITY,
            "-On",
            "-Oq",
            address,
            &base.to_string(),
        ])
        .output()
        .expect("run snmpwalk (apt-get install snmp)");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|o| o.trim_start_matches('.').to_string())
        // An empty walk makes snmpwalk GET the base itself ("No Such Object").
        .filter(|o| o.starts_with(&format!("{base}.")))
        .collect()
}

/// Every numeric column of ifTable and ifXTable, a table whose columns have holes and
/// different lengths, a subtree that does not exist, and a column named twice.
/// The rows of a walk whose values do not move by themselves (all but counters).
fn steady(rows: &[WalkRow]) -> Vec<&WalkRow> {
    rows.iter()
        .filter(|r| !matches!(r.value, SnmpValue::Counter32(_) | SnmpValue::Counter64(_)))
        .collect()
}

fn snmpd_columns() -> Vec<Oid> {
    let mut columns: Vec<Oid> = (1..=22)
        .map(|c| oid(&format!("1.3.6.1.2.1.2.2.1.{c}")))
        .collect();
    columns.extend((1..=19).map(|c| oid(&format!("1.3.6.1.2.1.31.1.1.1.{c}"))));
    columns.extend(["1", "2", "3", "9"].map(|c| oid(&format!("{PASS_BASE}.{c}"))));
    columns.push(oid("1.3.6.1.2.1.2.2.1.2"));
    columns
}

fn holey_table() -> Vec<PassObject> {
    let mut objects = Vec::new();
    for row in 1..=12 {
        objects.push(PassObject::fixed(
            &format!("{PASS_BASE}.1.{row}"),
            "string",
            &format!("row {row}"),
        ));
        if row % 3 != 0 {
            objects.push(PassObject::fixed(
                &format!("{PASS_BASE}.2.{row}"),
                "gauge",
                &row.to_string(),
            ));
        }
        if row <= 2 {
            objects.push(PassObject::fixed(
                &format!("{PASS_BASE}.3.{row}.7"),
                "counter64",
                &(row * 1000).to_string(),
            ));
        }
    }
    objects
}

#[tokio::test]
async fn merged_walks_on_snmpd_equal_walking_each_column_alone() {
    let agent = Snmpd::start(&holey_table());
    let columns = snmpd_columns();
    for (version, flag) in [("snmpv2c", "-v2c"), ("snmpv1", "-v1")] {
        let credential = community(version);
        // A small answer size, so that the columns advance over many GETBULKs.
        let engine = engine(40).await;
        let (alone, alone_requests, session) =
            walk_each(&engine, &agent.address(), &credential, &columns).await;
        let exchange = Exchange::new(&session);
        let merged: Vec<Vec<WalkRow>> = exchange
            .walk_many(&columns)
            .await
            .unwrap()
            .into_iter()
            .map(|column| column.unwrap())
            .collect();
        for ((column, merged), alone) in columns.iter().zip(&merged).zip(&alone) {
            let rows = |rows: &[WalkRow]| -> Vec<String> {
                rows.iter()
                    .map(|r| format!("{column}.{}", r.index))
                    .collect()
            };
            assert_eq!(
                rows(merged),
                snmpwalk_oids(&agent.address(), flag, column),
                "{version} {column}"
            );
            // Traffic counters of lo move between the two walks whenever anything else on the
            // machine talks over loopback; every other value must be the same.
            assert_eq!(steady(merged), steady(alone), "{version} {column}");
        }
        let pass = |c: &str| {
            merged[columns
                .iter()
                .position(|o| *o == oid(&format!("{PASS_BASE}.{c}")))
                .unwrap()]
            .clone()
        };
        assert_eq!(pass("1").len(), 12);
        assert_eq!(
            pass("2")
                .iter()
                .map(|r| r.index.as_str())
                .collect::<Vec<_>>(),
            ["1", "2", "4", "5", "7", "8", "10", "11"]
        );
        // SNMPv1 has no Counter64: agents skip them in GETNEXT (RFC 3584).
        assert_eq!(pass("3").len(), if version == "snmpv1" { 0 } else { 2 });
        if version == "snmpv2c" {
            let row = WalkRow {
                index: "2.7".into(),
                value: SnmpValue::Counter64(2000),
            };
            assert_eq!(pass("3")[1], row);
        }
        assert!(pass("9").is_empty());
        let merged_requests = u64::from(exchange.requests());
        assert!(
            merged_requests * 4 <= alone_requests,
            "{version}: {merged_requests} merged requests against {alone_requests} walking each column alone"
        );
    }
}

/// A read-only table for async-snmp's agent.
struct Table(OidTable<Value>);

impl MibHandler for Table {
    fn get<'a>(
        &'a self,
        _: &'a RequestContext,
        oid: &'a Oid,
    ) -> BoxFuture<'a, HandlerResult<GetResult>> {
        Box::pin(async move {
            Ok(match self.0.get(oid) {
                Some(value) => GetResult::Value(value.clone()),
                None => GetResult::NoSuchInstance,
            })
        })
    }

    fn get_next<'a>(
        &'a self,
        _: &'a RequestContext,
        oid: &'a Oid,
    ) -> BoxFuture<'a, HandlerResult<GetNextResult>> {
        Box::pin(async move {
            Ok(match self.0.get_next(oid) {
                Some((next, value)) => {
                    GetNextResult::Value(VarBind::new(next.clone(), value.clone()))
                }
                None => GetNextResult::EndOfMibView,
            })
        })
    }
}

const TABLE: &str = "1.3.6.1.4.1.99998.1";

/// Three columns of 40, 27 (holes) and 5 rows with 30-byte names: far more than one 484-byte
/// message holds.
fn small_message_table() -> OidTable<Value> {
    let mut table = OidTable::new();
    for row in 1..=40u32 {
        table.insert(
            oid(&format!("{TABLE}.1.{row}")),
            Value::OctetString(format!("interface number {row:>13}").into_bytes().into()),
        );
        if row % 3 != 0 {
            table.insert(
                oid(&format!("{TABLE}.2.{row}")),
                Value::Counter64(u64::from(row) << 40),
            );
        }
        if row <= 5 {
            table.insert(
                oid(&format!("{TABLE}.3.{row}")),
                Value::Integer(-(row as i32)),
            );
        }
    }
    table
}

/// async-snmp's agent serving `table` under `prefix`, with messages of at most `max_message`
/// bytes, running until the returned agent is cancelled.
async fn table_agent(
    prefix: &str,
    table: OidTable<Value>,
    max_message: usize,
) -> (Arc<Agent>, String, tokio::task::JoinHandle<()>) {
    let agent = Agent::builder()
        .bind("127.0.0.1:0")
        .community(COMMUNITY.as_bytes())
        .max_message_size(max_message)
        .handler(oid(prefix), Arc::new(Table(table)))
        .allow_all_access()
        .build()
        .await
        .expect("start async-snmp's agent");
    let address = agent.local_addr().to_string();
    let agent = Arc::new(agent);
    let running = agent.clone();
    let task = tokio::spawn(async move {
        let _ = running.run().await;
    });
    (agent, address, task)
}

#[tokio::test]
async fn an_agent_with_small_messages_gets_smaller_requests_and_the_same_results() {
    let (agent, address, task) = table_agent("1.3.6.1.4.1.99998", small_message_table(), 484).await;
    let columns: Vec<Oid> = ["1", "2", "3"]
        .map(|c| oid(&format!("{TABLE}.{c}")))
        .to_vec();
    let expected = small_message_table();
    for version in ["snmpv2c", "snmpv1"] {
        let credential = community(version);
        // A short timeout: the agent drops the first row-chain request, which is too large.
        let engine = engine_with(SnmpSettings {
            max_varbinds: 256,
            timeout: Duration::from_millis(300),
            retries: 1,
            ..SnmpSettings::default()
        })
        .await;
        let (alone, _, session) = walk_each(&engine, &address, &credential, &columns).await;
        let exchange = Exchange::new(&session);
        let merged = exchange.walk_many(&columns).await.unwrap();
        // The next walks use the chain size learnt from the dropped request: no more timeouts.
        for _ in 0..3 {
            let started = Instant::now();
            let again = exchange.walk_many(&columns).await.unwrap();
            let again: Vec<_> = again.into_iter().map(|c| c.unwrap()).collect();
            let first: Vec<_> = merged.iter().map(|c| c.clone().unwrap()).collect();
            assert_eq!(again, first, "{version}");
            assert!(
                started.elapsed() < Duration::from_millis(300),
                "{version}: a walk after the first took {:?}",
                started.elapsed()
            );
        }
        for ((column, merged), alone) in columns.iter().zip(merged).zip(alone) {
            let merged = merged.unwrap();
            let listed: Vec<String> = merged
                .iter()
                .map(|r| format!("{column}.{}", r.index))
                .collect();
            let in_table: Vec<String> = (1..=40)
                .map(|r| format!("{column}.{r}"))
                .filter(|o| expected.get(&oid(o)).is_some())
                // SNMPv1 has no Counter64: agents skip them in GETNEXT (RFC 3584).
                .filter(|_| !(version == "snmpv1" && column.to_string().ends_with(".2")))
                .collect();
            assert_eq!(listed, in_table, "{version} {column}");
            assert_eq!(merged, alone, "{version} {column}");
        }

        // 17 GETs, 3 of them missing: the request fits in 484 bytes, the answer does not; the
        // agent says tooBig and the request is split until the answers fit.
        let mut oids: Vec<Oid> = (1..=10).map(|r| oid(&format!("{TABLE}.1.{r}"))).collect();
        oids.extend((1..=6).map(|r| oid(&format!("{TABLE}.3.{r}"))));
        oids.push(oid(&format!("{TABLE}.4.1")));
        let before = engine.counters().requests.get();
        let values = exchange.get_many(&oids).await.unwrap();
        let requests = engine.counters().requests.get() - before;
        assert!(
            requests > 2,
            "{version}: {requests} requests for 17 GETs in 484-byte messages"
        );
        for (oid, value) in oids.iter().zip(values) {
            let alone = get(&session, oid).await;
            assert_eq!(value, alone, "{version} {oid}");
            assert_eq!(
                value.is_ok(),
                expected.get(oid).is_some(),
                "{version} {oid}: {value:?}"
            );
        }
    }
    agent.cancel();
    let _ = task.await;
}

const WIDE: &str = "1.3.6.1.4.1.99997";

/// A wide table under `WIDE.1`: column 1 (the leader) and columns 2 to 12 with rows 1 to 50;
/// then columns that do not follow the leader's rows: 13 with holes, 14 with rows the leader
/// lacks (before, between and after its rows), 15 with two-arc indexes, 16 empty, 17 with
/// three rows. A second table under `WIDE.2` has its own leader.
fn wide_table() -> OidTable<Value> {
    let mut table = OidTable::new();
    let mut put = |text: String, value: Value| table.insert(oid(&text), value);
    for row in 1..=50u32 {
        put(
            format!("{WIDE}.1.1.{row}"),
            Value::OctetString(format!("port {row}").into_bytes().into()),
        );
        for column in 2..=12u32 {
            put(
                format!("{WIDE}.1.{column}.{row}"),
                Value::Counter64(u64::from(row) * 1000 + u64::from(column)),
            );
        }
        if row % 4 != 0 {
            put(format!("{WIDE}.1.13.{row}"), Value::Gauge32(row));
        }
        put(format!("{WIDE}.1.14.{row}"), Value::Integer(row as i32));
        if row <= 10 {
            put(
                format!("{WIDE}.1.15.{row}.1"),
                Value::Integer(-(row as i32)),
            );
        }
        if row <= 3 {
            put(format!("{WIDE}.1.17.{row}"), Value::Integer(7));
        }
        put(format!("{WIDE}.2.1.{row}"), Value::TimeTicks(row));
        put(format!("{WIDE}.2.2.{row}"), Value::TimeTicks(row + 1));
    }
    for extra in ["0", "25.5", "51", "60"] {
        put(format!("{WIDE}.1.14.{extra}"), Value::Integer(-1));
    }
    table
}

#[tokio::test]
async fn columns_that_follow_their_leaders_rows_take_few_requests_and_give_the_same_rows() {
    let (agent, address, task) = table_agent(WIDE, wide_table(), 65_507).await;
    let mut columns: Vec<Oid> = (1..=17).map(|c| oid(&format!("{WIDE}.1.{c}"))).collect();
    columns.extend([1, 2].map(|c| oid(&format!("{WIDE}.2.{c}"))));
    columns.push(oid(&format!("{WIDE}.1.2")));
    let expected = wide_table();
    let mut chained_requests = 0;
    for version in ["snmpv2c", "snmpv1"] {
        let credential = community(version);
        let engine = engine(64).await;
        let (alone, alone_requests, session) =
            walk_each(&engine, &address, &credential, &columns).await;
        // The first round's chains start small and grow; the next use the size learnt.
        let rounds = if version == "snmpv1" { 1 } else { 3 };
        for round in 0..rounds {
            let exchange = Exchange::new(&session);
            let merged = exchange.walk_many(&columns).await.unwrap();
            for ((column, merged), alone) in columns.iter().zip(merged).zip(&alone) {
                let merged = merged.unwrap();
                assert_eq!(&merged, alone, "{version} round {round}: {column}");
                if version == "snmpv2c" {
                    let listed = merged
                        .iter()
                        .map(|r| format!("{column}.{}", r.index))
                        .collect::<Vec<_>>();
                    let in_table = expected
                        .iter()
                        .map(|(o, _)| o.to_string())
                        .filter(|o| o.starts_with(&format!("{column}.")))
                        .collect::<Vec<_>>();
                    assert_eq!(listed, in_table, "{version} round {round}: {column}");
                }
            }
            let requests = u64::from(exchange.requests());
            if version == "snmpv2c" {
                chained_requests = exchange.requests();
                // Each of the 20 columns alone: 3 GETBULKs of 25 for 50 rows. Merged: the two
                // leaders side by side (3), the chains of the other columns, more requests for
                // the columns that left their chains.
                assert!(
                    requests * 4 <= alone_requests,
                    "{version} round {round}: {requests} merged requests against {alone_requests} walking each column alone"
                );
            }
        }
    }
    // SNMP_MAX_CHAIN_VARBINDS=0: the same rows, walked side by side without chains.
    let credential = community("snmpv2c");
    let engine = engine_with(SnmpSettings {
        max_chain_varbinds: 0,
        ..SnmpSettings::default()
    })
    .await;
    let (alone, _, session) = walk_each(&engine, &address, &credential, &columns).await;
    let exchange = Exchange::new(&session);
    let merged = exchange.walk_many(&columns).await.unwrap();
    for ((column, merged), alone) in columns.iter().zip(merged).zip(&alone) {
        assert_eq!(&merged.unwrap(), alone, "without chains: {column}");
    }
    assert!(
        exchange.requests() > chained_requests,
        "without chains: {} requests, with: {chained_requests}",
        exchange.requests()
    );
    agent.cancel();
    let _ = task.await;
}
