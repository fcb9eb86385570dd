//! The ICMP engine on many loopback targets, as root: round trips agree with fping's on the
//! same targets in the same test, no round trip is 0 even on a runtime kept busy, and the send
//! rate holds `PING_MAX_RATE`.

use pingbot::credential::ProbeSettings;
use pingbot::pinger::{PingCounters, Pinger, PingerConfig};
use pingbot::probe::probe;
use pingbot::target::Destination;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tests measure time; run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const PACKETS: u32 = 20;
const PAUSE_MS: u64 = 20;

/// 99 loopback addresses from 127.21.0.1 and ::1.
fn targets() -> Vec<IpAddr> {
    let mut targets: Vec<IpAddr> = (1..=99u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 21, 0, i)))
        .collect();
    targets.push("::1".parse().unwrap());
    targets
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The value at quantile `q` of sorted microseconds.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// fping's round trips in microseconds: `fping -C` prints each target's in milliseconds.
fn fping_rtts(targets: &[IpAddr]) -> Vec<f64> {
    let mut command = Command::new("fping");
    command.args([
        "-C",
        &PACKETS.to_string(),
        "-p",
        &PAUSE_MS.to_string(),
        "-i",
        "0.1",
        "-q",
    ]);
    command.args(targets.iter().map(|t| t.to_string()));
    let output = command.output().expect("fping runs (apt package fping)");
    let text = String::from_utf8_lossy(&output.stderr);
    let mut rtts = Vec::new();
    for line in text.lines() {
        let (_, list) = line
            .split_once(" : ")
            .unwrap_or_else(|| panic!("fping: {line}"));
        for field in list.split_whitespace() {
            let ms: f64 = field
                .parse()
                .unwrap_or_else(|_| panic!("fping lost a reply: {line}"));
            rtts.push(ms * 1000.0);
        }
    }
    assert_eq!(rtts.len(), targets.len() * PACKETS as usize, "{text}");
    rtts
}

/// Keeps a runtime's workers busy: each hog spins 500 us between yields until told to stop.
fn start_hogs(runtime: &tokio::runtime::Runtime, stop: &Arc<AtomicBool>) {
    for _ in 0..2 {
        let stop = stop.clone();
        runtime.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let spin = Instant::now();
                while spin.elapsed() < Duration::from_micros(500) {
                    std::hint::spin_loop();
                }
                tokio::task::yield_now().await;
            }
        });
    }
}

/// Our round trips in microseconds: every target probed as a job of `PACKETS` packets
/// `PAUSE_MS` apart, all at once, on a runtime whose workers are kept busy.
fn engine_rtts(targets: &[IpAddr]) -> (Vec<f64>, PingCounters) {
    let runtime = runtime();
    let stop = Arc::new(AtomicBool::new(false));
    start_hogs(&runtime, &stop);
    let counters = PingCounters::default();
    let rtts = runtime.block_on(async {
        let config = PingerConfig {
            max_rate: 10_000,
            ..PingerConfig::default()
        };
        let pinger = Arc::new(Pinger::open(&config, counters.clone()).expect("ICMP sockets"));
        let settings = ProbeSettings {
            timeout: Duration::from_secs(1),
            retry: 0,
            n_packets: PACKETS,
            sleep_packets: Duration::from_millis(PAUSE_MS),
        };
        let jobs: Vec<_> = targets
            .iter()
            .map(|&ip| {
                let pinger = pinger.clone();
                let settings = settings.clone();
                tokio::spawn(async move { probe(&pinger, Destination::from(ip), &settings).await })
            })
            .collect();
        let mut rtts = Vec::new();
        for (job, ip) in jobs.into_iter().zip(targets) {
            let report = job.await.expect("job");
            for packet in report.packets {
                let rtt = packet.rtt.unwrap_or_else(|| panic!("{ip}: {packet:?}"));
                rtts.push(rtt.as_secs_f64() * 1e6);
            }
        }
        rtts
    });
    stop.store(true, Ordering::Relaxed);
    (rtts, counters)
}

#[test]
fn round_trips_are_never_zero_and_agree_with_fping_on_the_same_targets() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let targets = targets();
    let mut fping = fping_rtts(&targets);
    let (mut ours, counters) = engine_rtts(&targets);
    assert_eq!(ours.len(), targets.len() * PACKETS as usize);
    assert_eq!(
        counters.invalid_rtts.get(),
        0,
        "replies without a positive rtt"
    );
    assert!(ours.iter().all(|&rtt| rtt > 0.0), "an rtt of 0");
    for rtts in [&mut fping, &mut ours] {
        rtts.sort_by(f64::total_cmp);
    }
    let (p50, p99) = (quantile(&ours, 0.5), quantile(&ours, 0.99));
    let (fping_p50, fping_p99) = (quantile(&fping, 0.5), quantile(&fping, 0.99));
    eprintln!(
        "{} replies each: pingbot p50 {p50:.1} us p99 {p99:.1} us; fping p50 {fping_p50:.1} us \
         p99 {fping_p99:.1} us",
        ours.len()
    );
    assert!(
        (p50 - fping_p50).abs() <= 10.0,
        "p50 {p50:.1} us vs fping's {fping_p50:.1} us"
    );
    assert!(
        (p99 - fping_p99).abs() <= 50.0,
        "p99 {p99:.1} us vs fping's {fping_p99:.1} us"
    );
}
