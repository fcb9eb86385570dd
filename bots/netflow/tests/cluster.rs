//! NetFlow members (`CLUSTER_MEMBERS` > 1) in the fan-out setup: every exporter's datagrams
//! reach every member over real UDP, and each member's 1-minute window reports only the
//! exporter entities it owns, without the account total; together they report every entity
//! exactly once. A bot on its own reports every entity and the total.

mod common;

use collector::bot::Firing;
use collector::cluster::{owners, Membership};
use collector::{Collector, Context, EntityConfig, JobSpec};
use common::{v5_packet, V5Record};
use netflowbot::{NetflowArgs, NetflowBot, NetflowJob};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const ACCOUNT: u64 = 5;
const EXPORTERS: u64 = 8;
const BYTES: u32 = 1000;

fn entity(n: u64) -> EntityConfig {
    EntityConfig {
        entity_id: 1_348_300_000 + n,
        account_id: ACCOUNT,
        name: format!("exporter {n}"),
        entity_type: "device".into(),
        parent: None,
        details: json!({"ipv4": format!("127.0.0.{}", n + 1)}),
        credential_details: json!({}).into(),
        sensors: Vec::new(),
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// A member listening on its own port, with its 1-minute window job of the account.
struct Member {
    bot: NetflowBot,
    window: JobSpec<NetflowJob>,
    port: u16,
    metrics: collector::metrics::Metrics,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

fn start(member: u32, members: u32, configs: &[EntityConfig]) -> Member {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_udp_port();
    let metrics = collector::metrics::Metrics::new();
    let context = Context {
        store: collector::Store::open(dir.path(), "state").expect("store"),
        backend: None,
        metrics: metrics.clone(),
        shutdown: Default::default(),
        cluster: Membership::new(member, members, 1).expect("membership"),
    };
    let settings = NetflowArgs {
        netflow_port: port,
        netflow_threads: Some(1),
        netflow_receive_buffer: 1 << 20,
        netflow_max_keys: 1000,
        netflow_no_ipv6: true,
        netflow_minute: 60,
    };
    let bot = NetflowBot::new(settings.config().expect("config"), context).expect("bot");
    let stop = CancellationToken::new();
    if let Some(listener) = bot.background(stop.clone()) {
        tokio::spawn(listener);
    }
    let window = bot
        .jobs(configs)
        .into_iter()
        .find(|j| j.id == format!("aggr/1min/{ACCOUNT}"))
        .expect("1-minute window job");
    Member {
        bot,
        window,
        port,
        metrics,
        stop,
        _dir: dir,
    }
}

fn send_from_every_exporter(port: u16) {
    for n in 0..EXPORTERS {
        let socket = UdpSocket::bind(format!("127.0.0.{}:0", n + 1)).expect("bind exporter");
        let record = V5Record {
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 2],
            input: 1,
            output: 2,
            packets: 1,
            bytes: BYTES,
            dst_port: 443,
            protocol: 6,
        };
        let datagram = v5_packet(1, 0, &[record]);
        socket
            .send_to(&datagram, ("127.0.0.1", port))
            .expect("send");
    }
}

/// Waits until the listener decoded every exporter's datagram, then runs the window: path -> bytes.
async fn report(member: &Member) -> BTreeMap<String, f64> {
    let all_received = format!("collector_netflow_datagrams_total {EXPORTERS}");
    for _ in 0..100 {
        if member.metrics.render().lines().any(|l| l == all_received) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let firing = Firing::new(0, vec![60]);
    let values = member
        .bot
        .perform(&member.window, &firing)
        .await
        .expect("window run");
    assert!(
        !values.is_empty(),
        "member on port {} reported nothing",
        member.port
    );
    values.into_iter().map(|v| (v.path, v.value)).collect()
}

/// Starts the members, opens their windows, sends every exporter's flows to all, reports.
async fn reports(members: u32, configs: &[EntityConfig]) -> Vec<BTreeMap<String, f64>> {
    let started: Vec<Member> = (0..members).map(|m| start(m, members, configs)).collect();
    let firing = Firing::new(0, vec![60]);
    for member in &started {
        // A window's first run only starts it.
        let first = member.bot.perform(&member.window, &firing).await;
        assert_eq!(first, Ok(Vec::new()));
        send_from_every_exporter(member.port);
    }
    let mut all = Vec::new();
    for member in &started {
        all.push(report(member).await);
        member.stop.cancel();
    }
    all
}

fn entity_path(config: &EntityConfig) -> String {
    format!("netflow.1min.ingress.entity.{}", config.entity_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_exporter_is_reported_by_exactly_its_owner() {
    let configs: Vec<EntityConfig> = (0..EXPORTERS).map(entity).collect();
    let reports = reports(3, &configs).await;
    for config in &configs {
        let owner = owners(&config.entity_id.to_string(), 3, 1)[0] as usize;
        for (member, report) in reports.iter().enumerate() {
            let reported = report.get(&entity_path(config));
            if member == owner {
                assert_eq!(reported, Some(&f64::from(BYTES)), "{report:?}");
            } else {
                assert_eq!(
                    reported, None,
                    "member {member} reports {}",
                    config.entity_id
                );
            }
        }
    }
    for report in &reports {
        assert!(!report.contains_key("netflow.1min.ingress"), "{report:?}");
        assert!(!report.contains_key("netflow.1min.egress"), "{report:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_on_its_own_reports_every_exporter_and_the_total() {
    let configs: Vec<EntityConfig> = (0..EXPORTERS).map(entity).collect();
    let reports = reports(1, &configs).await;
    let report = &reports[0];
    for config in &configs {
        assert_eq!(report.get(&entity_path(config)), Some(&f64::from(BYTES)));
    }
    let total = f64::from(BYTES) * EXPORTERS as f64;
    assert_eq!(report.get("netflow.1min.ingress"), Some(&total));
}
