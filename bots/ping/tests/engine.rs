//! The ICMP engine on many loopback targets, as root: round trips agree with fping's on the
//! same targets in the same test (both at 10,000 packets a second), no round trip is 0 even on a
//! runtime kept busy, and the send rate holds `PING_MAX_RATE`.

use pingbot::credential::ProbeSettings;
use pingbot::pinger::{Attempt, PingCounters, Pinger, PingerConfig};
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
const PAUSE_MS: u64 = 10;

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

#[test]
fn sends_hold_the_configured_rate_and_each_timeout_counts_from_its_own_send() {
    const RATE: u32 = 2_000;
    const REQUESTS: usize = 5_000;
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let runtime = runtime();
    let counters = PingCounters::default();
    let config = PingerConfig {
        max_rate: RATE,
        ..PingerConfig::default()
    };
    let pinger = runtime.block_on(async {
        Arc::new(Pinger::open(&config, counters.clone()).expect("ICMP sockets"))
    });
    let targets = targets();
    // All asked for at once; at 2,000/s the last leaves after 2.5 s, far past its 300 ms wait
    // if that counted from the call instead of the send.
    let wait = Duration::from_millis(300);
    let started = Instant::now();
    let requests: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let pinger = pinger.clone();
            let target = Destination::from(targets[i % targets.len()]);
            runtime.spawn(async move { pinger.echo(target, wait).await })
        })
        .collect();
    let sample = |at: Duration| {
        std::thread::sleep(at.saturating_sub(started.elapsed()));
        (Instant::now(), counters.sent.get())
    };
    let (t0, sent0) = sample(Duration::from_millis(500));
    let (t1, sent1) = sample(Duration::from_millis(2_000));
    let rate = (sent1 - sent0) as f64 / (t1 - t0).as_secs_f64();
    eprintln!(
        "{rate:.0} sends/s over {:?} at PING_MAX_RATE {RATE}",
        t1 - t0
    );
    assert!(
        (rate - f64::from(RATE)).abs() <= f64::from(RATE) * 0.05,
        "{rate:.0} sends/s at a limit of {RATE}"
    );
    runtime.block_on(async {
        for request in requests {
            let attempt = request.await.expect("request task");
            assert!(matches!(attempt, Attempt::Reply(_)), "{attempt:?}");
        }
    });
    let whole = started.elapsed().as_secs_f64();
    let expected = REQUESTS as f64 / f64::from(RATE);
    assert!(
        whole >= expected * 0.95,
        "{REQUESTS} sends took only {whole:.2} s"
    );
    assert_eq!(counters.replies.get(), REQUESTS as u64);
}
