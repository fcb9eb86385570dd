//! The UDP listener with real sockets on loopback: captures replayed, counters, template
//! persistence across a restart.

mod common;

use common::*;
use netflowbot::decode::DecoderLimits;
use netflowbot::flow::Direction;
use netflowbot::intake::Intake;
use netflowbot::listener::{self, ListenerConfig};
use netflowbot::windows::{EntityExporter, Windows};
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(threads: usize) -> ListenerConfig {
    ListenerConfig {
        port: 0,
        threads,
        receive_buffer: 8 << 20,
        ipv6: true,
        limits: DecoderLimits::default(),
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send_all(from: &str, port: u16, datagrams: &[Vec<u8>]) {
    let socket = UdpSocket::bind(format!("{from}:0")).unwrap();
    let to = if from.contains(':') {
        format!("[::1]:{port}")
    } else {
        format!("127.0.0.1:{port}")
    };
    for d in datagrams {
        socket.send_to(d, &to).unwrap();
    }
}

#[test]
fn captures_sent_over_ipv4_and_ipv6_are_decoded_and_aggregated() {
    let bound = listener::bind(&config(2)).unwrap();
    let port = bound.port();
    let intake = Arc::new(Intake::new(2, 100_000));
    let v4: IpAddr = "127.0.0.1".parse().unwrap();
    let v6: IpAddr = "::1".parse().unwrap();
    intake.set_aggregated([v4, v6].into_iter().collect());
    let running = bound.start(intake.clone(), None).unwrap();

    send_all("127.0.0.1", port, &capture("v9"));
    send_all("[::1]", port, &capture("ipfix"));
    // Garbage in between changes nothing for the rest.
    send_all(
        "127.0.0.1",
        port,
        &[vec![0xde, 0xad, 0xbe, 0xef], vec![0, 5, 0, 1]],
    );
    wait_for("all records", || intake.records() == 2 * 3967);
    wait_for("the garbage", || intake.counters.decode_errors.get() == 2);
    running.stop();

    let c = &intake.counters;
    assert_eq!(c.datagrams.get(), 149 + 148 + 2);
    assert_eq!(c.records.get(), 2 * 3967);
    assert_eq!(c.kernel_drops.get(), 0);
    assert_eq!(c.sequence_gaps.get(), 0);
    assert_eq!(c.records_unattributed.get(), 0);

    let mut by_exporter = std::collections::BTreeMap::new();
    for live in intake.drain() {
        for (exporter, sums) in live.exporters() {
            let ingress = sums.direction(Direction::Ingress).total;
            *by_exporter.entry(*exporter).or_insert(0u64) += ingress;
        }
    }
    let all_bytes = 13_239_795 + 3_365_061;
    assert_eq!(by_exporter.get(&v4), Some(&all_bytes));
    assert_eq!(by_exporter.get(&v6), Some(&all_bytes));
    assert_eq!(intake.exporters(), vec![v4, v6]);
}

#[test]
fn exporters_that_are_no_entity_are_held_then_left_out_not_aggregated() {
    let bound = listener::bind(&config(1)).unwrap();
    let port = bound.port();
    let intake = Arc::new(Intake::new(1, 100_000));
    let running = bound.start(intake.clone(), None).unwrap();
    send_all("127.0.0.1", port, &capture("v5"));
    wait_for("all records", || intake.records() == 3167);
    running.stop();
    assert_eq!(intake.counters.records_held.get(), 3167);
    assert!(intake.drain().is_empty());
    let exporter: IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(intake.exporters(), vec![exporter]);

    let outcome =
        Windows::new().configure(&intake, &BTreeMap::new(), &HashSet::new(), Instant::now());
    assert_eq!(outcome.attributed, 0);
    assert_eq!(outcome.discarded, 3167);
    assert_eq!(outcome.discarded_exporters, vec![exporter]);
    assert!(
        intake.take_held().is_empty(),
        "nothing held after a refresh"
    );
}

/// Flows that arrive before the first job refresh of a start, or from an exporter whose entity
/// appears at the next refresh, are held and attributed at that refresh; from then on the
/// exporter's flows go straight to the windows.
#[test]
fn flows_before_the_refresh_that_lists_their_entity_are_attributed() {
    let bound = listener::bind(&config(2)).unwrap();
    let port = bound.port();
    let intake = Arc::new(Intake::new(2, 100_000));
    let windows = Windows::new();
    let running = bound.start(intake.clone(), None).unwrap();
    const ACCOUNT: u64 = 1;
    let (values, _) = windows.run(&intake, ACCOUNT, 0, &[], Instant::now());
    assert!(values.is_empty(), "the window's first run only starts it");

    let v4: IpAddr = "127.0.0.1".parse().unwrap();
    send_all("127.0.0.1", port, &capture("v5"));
    send_all("[::1]", port, &capture("ipfix"));
    wait_for("all records", || intake.records() == 3167 + 3967);
    assert_eq!(intake.counters.records_held.get(), 3167 + 3967);

    let entity = EntityExporter {
        entity_id: 7,
        exporter: v4,
    };
    let configured = BTreeMap::from([(ACCOUNT, vec![entity])]);
    let outcome = windows.configure(&intake, &configured, &HashSet::new(), Instant::now());
    assert_eq!(outcome.attributed, 3167);
    assert_eq!(outcome.discarded, 3967);
    assert_eq!(
        outcome.discarded_exporters,
        vec!["::1".parse::<IpAddr>().unwrap()]
    );

    send_all("127.0.0.1", port, &capture("v5"));
    wait_for("the second replay", || intake.records() == 2 * 3167 + 3967);
    running.stop();
    assert_eq!(
        intake.counters.records_held.get(),
        3167 + 3967,
        "aggregated, not held"
    );

    let (values, _) = windows.run(&intake, ACCOUNT, 0, &[entity], Instant::now());
    let total = values
        .iter()
        .find(|v| v.path == "netflow.1min.ingress.entity.7")
        .map(|v| v.bytes);
    assert_eq!(total, Some(2 * 13_239_795));
}

#[test]
fn templates_stored_by_one_run_decode_the_next_runs_data_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = collector::Store::open(dir.path(), "state").unwrap();
    let datagrams = capture("ipfix");

    let bound = listener::bind(&config(1)).unwrap();
    let port = bound.port();
    let intake = Arc::new(Intake::new(1, 100_000));
    let running = bound.start(intake.clone(), Some(db.clone())).unwrap();
    send_all("127.0.0.1", port, &datagrams[..1]);
    wait_for("the templates", || {
        intake.counters.templates_learned.get() == 5
    });
    running.stop();

    // A new listener (a restarted bot) gets data-only datagrams first.
    let bound = listener::bind(&config(1)).unwrap();
    let port = bound.port();
    let intake = Arc::new(Intake::new(1, 100_000));
    let running = bound.start(intake.clone(), Some(db)).unwrap();
    send_all("127.0.0.1", port, &datagrams[1..16]);
    wait_for("15 datagrams", || intake.counters.datagrams.get() == 15);
    running.stop();
    assert_eq!(intake.counters.unknown_template_sets.get(), 0);
    assert!(intake.records() > 300, "{}", intake.records());
    assert_eq!(intake.counters.decode_errors.get(), 0);
}

#[test]
fn a_busy_port_is_reported() {
    let taken = UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut config = config(1);
    config.port = port;
    let error = listener::bind(&config).err().expect("port is taken");
    assert!(error.contains(&port.to_string()), "{error}");
}

#[test]
fn datagrams_the_kernel_drops_are_counted() {
    let mut config = config(1);
    config.receive_buffer = 4096;
    config.ipv6 = false;
    let bound = listener::bind(&config).unwrap();
    let port = bound.port();
    // Nobody reads yet: the tiny buffer overflows.
    let datagrams = capture("v5");
    send_all("127.0.0.1", port, &datagrams);
    let intake = Arc::new(Intake::new(1, 100_000));
    let running = bound.start(intake.clone(), None).unwrap();
    let c = &intake.counters;
    wait_for("the drop count", || c.kernel_drops.get() > 0);
    wait_for("every datagram accounted for", || {
        c.datagrams.get() + c.kernel_drops.get() == datagrams.len() as u64
    });
    running.stop();
    assert!(c.datagrams.get() > 0);
}
