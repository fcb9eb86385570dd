//! Aggregation windows: the values of a known traffic mix, checked path by path.

use collector::value::path_problem;
use netflowbot::flow::{Direction, Flow, FlowSink};
use netflowbot::intake::Intake;
use netflowbot::windows::{EntityExporter, PathValue, Windows};
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::Instant;

const ONE_MIN: usize = 0;
const FIFTEEN_MIN: usize = 1;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[allow(clippy::too_many_arguments)]
fn flow(
    exporter: &str,
    direction: Direction,
    in_if: u32,
    out_if: u32,
    src: &str,
    dst: &str,
    protocol: u8,
    dst_port: u16,
    bytes: u64,
) -> Flow {
    Flow {
        exporter: ip(exporter),
        direction,
        in_if,
        out_if,
        src: ip(src),
        dst: ip(dst),
        protocol,
        dst_port,
        bytes,
        packets: 1,
    }
}

fn feed(intake: &Intake, flows: &[Flow]) {
    let mut live = intake.live(0);
    for f in flows {
        live.flow(f);
    }
    intake.add_records(flows.len() as u64);
}

fn as_map(values: &[PathValue]) -> BTreeMap<String, u64> {
    let map: BTreeMap<String, u64> = values.iter().map(|v| (v.path.clone(), v.bytes)).collect();
    assert_eq!(map.len(), values.len(), "a path is repeated");
    for path in map.keys() {
        assert_eq!(path_problem(path), None, "{path}");
    }
    map
}

fn entities() -> Vec<EntityExporter> {
    vec![
        EntityExporter {
            entity_id: 100,
            exporter: ip("192.0.2.1"),
        },
        EntityExporter {
            entity_id: 200,
            exporter: ip("192.0.2.2"),
        },
    ]
}

fn mix() -> Vec<Flow> {
    use Direction::*;
    vec![
        flow(
            "192.0.2.1",
            Ingress,
            1,
            9,
            "10.0.0.1",
            "198.51.100.1",
            6,
            443,
            1000,
        ),
        flow(
            "192.0.2.1",
            Ingress,
            1,
            9,
            "10.0.0.1",
            "198.51.100.2",
            17,
            53,
            200,
        ),
        flow(
            "192.0.2.1",
            Ingress,
            2,
            9,
            "10.0.0.2",
            "198.51.100.1",
            6,
            443,
            300,
        ),
        flow(
            "192.0.2.1",
            Egress,
            9,
            3,
            "198.51.100.1",
            "10.0.0.1",
            6,
            51000,
            5000,
        ),
        flow(
            "192.0.2.1",
            Ingress,
            1,
            0,
            "2001:db8::1",
            "2001:db8::2",
            39,
            0,
            7,
        ),
        flow("192.0.2.2", Egress, 4, 7, "10.1.0.1", "10.1.0.2", 1, 0, 64),
        // Not an entity of the account: left out.
        flow(
            "192.0.2.3",
            Ingress,
            1,
            2,
            "10.9.0.1",
            "10.9.0.2",
            6,
            80,
            999_999,
        ),
    ]
}

fn expected_mix() -> BTreeMap<String, u64> {
    let i = "netflow.1min.ingress";
    let e = "netflow.1min.egress";
    [
        (i.to_string(), 1507),
        (format!("{i}.entity.100"), 1507),
        (format!("{i}.entity.100.if.1"), 1207),
        (format!("{i}.entity.100.if.2"), 300),
        (format!("{i}.entity.100.topip.10%2e0%2e0%2e1"), 1200),
        (format!("{i}.entity.100.topip.10%2e0%2e0%2e2"), 300),
        (format!("{i}.entity.100.topip.2001%3adb8%3a%3a1"), 7),
        (format!("{i}.entity.100.if.1.topip.10%2e0%2e0%2e1"), 1200),
        (format!("{i}.entity.100.if.1.topip.2001%3adb8%3a%3a1"), 7),
        (format!("{i}.entity.100.if.2.topip.10%2e0%2e0%2e2"), 300),
        (format!("{i}.entity.100.topprotocol.TCP"), 1300),
        (format!("{i}.entity.100.topprotocol.UDP"), 200),
        (format!("{i}.entity.100.topprotocol.TP"), 7),
        (format!("{i}.entity.100.if.1.topprotocol.TCP"), 1000),
        (format!("{i}.entity.100.if.1.topprotocol.UDP"), 200),
        (format!("{i}.entity.100.if.1.topprotocol.TP"), 7),
        (format!("{i}.entity.100.if.2.topprotocol.TCP"), 300),
        (
            format!("{i}.entity.100.topconn.10%2e0%2e0%2e1.198%2e51%2e100%2e1"),
            1000,
        ),
        (
            format!("{i}.entity.100.topconn.10%2e0%2e0%2e1.198%2e51%2e100%2e2"),
            200,
        ),
        (
            format!("{i}.entity.100.topconn.10%2e0%2e0%2e2.198%2e51%2e100%2e1"),
            300,
        ),
        (
            format!("{i}.entity.100.topconn.2001%3adb8%3a%3a1.2001%3adb8%3a%3a2"),
            7,
        ),
        (format!("{i}.entity.100.topdstports.443"), 1300),
        (format!("{i}.entity.100.topdstports.53"), 200),
        (format!("{i}.entity.100.topdstports.0"), 7),
        (format!("{i}.entity.200"), 0),
        (e.to_string(), 5064),
        (format!("{e}.entity.100"), 5000),
        (format!("{e}.entity.100.if.3"), 5000),
        (format!("{e}.entity.100.topip.10%2e0%2e0%2e1"), 5000),
        (format!("{e}.entity.100.if.3.topip.10%2e0%2e0%2e1"), 5000),
        (format!("{e}.entity.100.topprotocol.TCP"), 5000),
        (format!("{e}.entity.100.if.3.topprotocol.TCP"), 5000),
        (
            format!("{e}.entity.100.topconn.198%2e51%2e100%2e1.10%2e0%2e0%2e1"),
            5000,
        ),
        (format!("{e}.entity.100.topdstports.51000"), 5000),
        (format!("{e}.entity.200"), 64),
        (format!("{e}.entity.200.if.7"), 64),
        (format!("{e}.entity.200.topip.10%2e1%2e0%2e2"), 64),
        (format!("{e}.entity.200.if.7.topip.10%2e1%2e0%2e2"), 64),
        (format!("{e}.entity.200.topprotocol.ICMP"), 64),
        (format!("{e}.entity.200.if.7.topprotocol.ICMP"), 64),
        (
            format!("{e}.entity.200.topconn.10%2e1%2e0%2e1.10%2e1%2e0%2e2"),
            64,
        ),
        (format!("{e}.entity.200.topdstports.0"), 64),
    ]
    .into_iter()
    .collect()
}

#[test]
fn a_known_traffic_mix_gives_exactly_the_expected_values() {
    let intake = Intake::new(1, 100_000);
    let windows = Windows::new();
    let now = Instant::now();
    // The first run of a window only starts it.
    let (first, _) = windows.run(&intake, 1, ONE_MIN, &entities(), now);
    assert!(first.is_empty());
    feed(&intake, &mix());
    let (values, folded) = windows.run(&intake, 1, ONE_MIN, &entities(), now);
    assert_eq!(folded, 0);
    assert_eq!(as_map(&values), expected_mix());
}

#[test]
fn each_window_reports_what_arrived_since_its_own_previous_run() {
    let intake = Intake::new(2, 100_000);
    let windows = Windows::new();
    let now = Instant::now();
    let entities = entities();
    windows.run(&intake, 1, ONE_MIN, &entities, now);
    windows.run(&intake, 1, FIFTEEN_MIN, &entities, now);
    let total = |values: &[PathValue], path: &str| as_map(values).get(path).copied();

    feed(
        &intake,
        &[flow(
            "192.0.2.1",
            Direction::Ingress,
            1,
            0,
            "10.0.0.1",
            "10.0.0.2",
            6,
            22,
            100,
        )],
    );
    let (minute1, _) = windows.run(&intake, 1, ONE_MIN, &entities, now);
    assert_eq!(total(&minute1, "netflow.1min.ingress"), Some(100));

    // Two receive threads: both are drained.
    {
        let mut live = intake.live(1);
        live.flow(&flow(
            "192.0.2.1",
            Direction::Ingress,
            1,
            0,
            "10.0.0.1",
            "10.0.0.2",
            6,
            22,
            20,
        ));
    }
    feed(
        &intake,
        &[flow(
            "192.0.2.1",
            Direction::Ingress,
            1,
            0,
            "10.0.0.1",
            "10.0.0.2",
            6,
            22,
            3,
        )],
    );
    let (minute2, _) = windows.run(&intake, 1, ONE_MIN, &entities, now);
    assert_eq!(total(&minute2, "netflow.1min.ingress"), Some(23));

    let (quarter, _) = windows.run(&intake, 1, FIFTEEN_MIN, &entities, now);
    assert_eq!(total(&quarter, "netflow.15min.ingress"), Some(123));
    assert_eq!(
        total(&quarter, "netflow.15min.ingress.entity.100.topdstports.22"),
        Some(123)
    );

    // Nothing received since: nothing reported.
    let (idle, _) = windows.run(&intake, 1, ONE_MIN, &entities, now);
    assert!(idle.is_empty());

    // Traffic of another exporter only: this account's totals are reported as zero.
    feed(
        &intake,
        &[flow(
            "192.0.2.3",
            Direction::Ingress,
            1,
            0,
            "10.0.0.1",
            "10.0.0.2",
            6,
            22,
            3,
        )],
    );
    let (zeros, _) = windows.run(&intake, 1, ONE_MIN, &entities, now);
    let zeros = as_map(&zeros);
    assert_eq!(zeros.get("netflow.1min.ingress"), Some(&0));
    assert_eq!(zeros.get("netflow.1min.egress.entity.200"), Some(&0));
    assert_eq!(zeros.len(), 6);
}

#[test]
fn two_accounts_with_the_same_exporter_both_get_its_flows() {
    let intake = Intake::new(1, 100_000);
    let windows = Windows::new();
    let now = Instant::now();
    let other = vec![EntityExporter {
        entity_id: 900,
        exporter: ip("192.0.2.1"),
    }];
    windows.run(&intake, 1, ONE_MIN, &entities(), now);
    windows.run(&intake, 2, ONE_MIN, &other, now);
    feed(&intake, &mix());
    let (one, _) = windows.run(&intake, 1, ONE_MIN, &entities(), now);
    let (two, _) = windows.run(&intake, 2, ONE_MIN, &other, now);
    assert_eq!(as_map(&one)["netflow.1min.ingress.entity.100"], 1507);
    assert_eq!(as_map(&two)["netflow.1min.ingress.entity.900"], 1507);
    assert_eq!(as_map(&two)["netflow.1min.egress"], 5000);
}

#[test]
fn top_lists_hold_the_ten_largest() {
    let intake = Intake::new(1, 100_000);
    let windows = Windows::new();
    let now = Instant::now();
    let entities = entities();
    windows.run(&intake, 1, ONE_MIN, &entities, now);
    let flows: Vec<Flow> = (1..=15u16)
        .map(|i| {
            let src = format!("10.0.0.{i}");
            flow(
                "192.0.2.1",
                Direction::Ingress,
                1,
                0,
                &src,
                "10.9.9.9",
                6,
                1000 + i,
                u64::from(i) * 10,
            )
        })
        .collect();
    feed(&intake, &flows);
    let (values, _) = windows.run(&intake, 1, ONE_MIN, &entities, now);
    let map = as_map(&values);
    let hosts: HashSet<&str> = map
        .keys()
        .filter_map(|p| p.strip_prefix("netflow.1min.ingress.entity.100.topip."))
        .collect();
    let expected: HashSet<String> = (6..=15).map(|i| format!("10%2e0%2e0%2e{i}")).collect();
    assert_eq!(hosts, expected.iter().map(String::as_str).collect());
    let ports = map
        .keys()
        .filter(|p| p.starts_with("netflow.1min.ingress.entity.100.topdstports."))
        .count();
    assert_eq!(ports, 10);
    assert_eq!(map["netflow.1min.ingress.entity.100.topdstports.1015"], 150);
    assert_eq!(
        map["netflow.1min.ingress.entity.100"],
        (1..=15).sum::<u64>() * 10
    );
}

#[test]
fn memory_bound_folds_keys_but_keeps_totals_exact() {
    let intake = Intake::new(1, 1000);
    let windows = Windows::new();
    let now = Instant::now();
    let entities = entities();
    windows.run(&intake, 1, ONE_MIN, &entities, now);
    let mut expected_total = 0u64;
    for round in 0..20u32 {
        let flows: Vec<Flow> = (0..200u32)
            .map(|i| {
                let n = round * 200 + i;
                let src = format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255);
                flow(
                    "192.0.2.1",
                    Direction::Ingress,
                    1,
                    0,
                    &src,
                    "10.9.9.9",
                    6,
                    80,
                    1 + u64::from(n % 7),
                )
            })
            .collect();
        expected_total += flows.iter().map(|f| f.bytes).sum::<u64>();
        feed(&intake, &flows);
        intake.live(0).enforce_limit();
    }
    assert!(intake.live(0).folded() > 0, "the bound was reached");
    let (values, _) = windows.run(&intake, 1, ONE_MIN, &entities, now);
    let map = as_map(&values);
    assert_eq!(map["netflow.1min.ingress.entity.100"], expected_total);
    assert_eq!(map["netflow.1min.ingress.entity.100.if.1"], expected_total);
    assert_eq!(map["netflow.1min.ingress"], expected_total);
    assert_eq!(
        map.keys().filter(|p| p.contains(".topip.")).count(),
        20,
        "entity and interface top lists"
    );
}
