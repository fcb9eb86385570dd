//! One run of a ping job (contract §5.10): `n_packets` packets, each given up to `timeout` split
//! over `retry + 1` attempts, `sleep_packets` apart; then the values the original bot sent, plus
//! round-trip statistics and loss.

use collector::Value;
use futures::stream::{FuturesUnordered, StreamExt};
use std::time::Duration;

use crate::credential::ProbeSettings;
use crate::pinger::{Attempt, Pinger};
use crate::target::Destination;

/// The outcome of one packet of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct PacketOutcome {
    /// Whether an echo reply came.
    pub answered: bool,
    /// The round trip of the reply, measured from the send of the attempt it answered; `None`
    /// without a reply or when it could not be measured (see [`Attempt::ReplyWithoutRtt`]).
    pub rtt: Option<Duration>,
    /// For a packet without reply: the first ICMP error or send failure seen, if any.
    pub problem: Option<String>,
}

/// The outcome of one run, in packet order.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    pub packets: Vec<PacketOutcome>,
}

/// Round-trip statistics over the answered packets of a run, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RttStats {
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    /// Population standard deviation, as `ping` reports it (`mdev`).
    pub stddev: f64,
}

/// Runs one job: the packets one after the other, each with its attempts, pausing
/// `sleep_packets` between packets. Other jobs run concurrently on the same engine.
pub async fn probe(
    pinger: &Pinger,
    destination: Destination,
    settings: &ProbeSettings,
) -> ProbeReport {
    let mut packets = Vec::with_capacity(settings.n_packets as usize);
    for i in 0..settings.n_packets {
        if i > 0 && !settings.sleep_packets.is_zero() {
            tokio::time::sleep(settings.sleep_packets).await;
        }
        packets.push(packet(pinger, destination, settings).await);
    }
    ProbeReport { packets }
}

/// One packet: attempt k is sent `k * slice` after the first unless a reply came before, and
/// every attempt waits until the packet's deadline (`timeout` after the first send), so a reply
/// to an earlier attempt that arrives after a retry was sent still counts.
async fn packet(
    pinger: &Pinger,
    destination: Destination,
    settings: &ProbeSettings,
) -> PacketOutcome {
    if settings.retry == 0 {
        // The common case needs no attempt schedule.
        let attempt = pinger.echo(destination, settings.timeout).await;
        return settle(pinger, [attempt]);
    }
    let slice = settings.attempt_slice();
    let start = tokio::time::Instant::now();
    let mut attempts: FuturesUnordered<_> = (0..=settings.retry)
        .map(|k| {
            let offset = slice * k;
            let wait = settings.timeout.saturating_sub(offset);
            async move {
                if k > 0 {
                    tokio::time::sleep_until(start + offset).await;
                }
                pinger.echo(destination, wait).await
            }
        })
        .collect();
    let mut outcomes = Vec::with_capacity(settings.retry as usize + 1);
    while let Some(attempt) = attempts.next().await {
        let answered = matches!(attempt, Attempt::Reply(_) | Attempt::ReplyWithoutRtt);
        outcomes.push(attempt);
        if answered {
            break;
        }
    }
    settle(pinger, outcomes)
}

/// A packet's outcome from its attempts' outcomes: the first reply, else lost with the first
/// problem seen.
fn settle(pinger: &Pinger, attempts: impl IntoIterator<Item = Attempt>) -> PacketOutcome {
    let mut problem = None;
    for attempt in attempts {
        match attempt {
            Attempt::Reply(rtt) => {
                return PacketOutcome {
                    answered: true,
                    rtt: Some(rtt),
                    problem: None,
                }
            }
            Attempt::ReplyWithoutRtt => {
                return PacketOutcome {
                    answered: true,
                    rtt: None,
                    problem: None,
                }
            }
            Attempt::NoReply => {}
            Attempt::IcmpError { from, kind } => {
                problem.get_or_insert_with(|| format!("{kind} (ICMP from {from})"));
            }
            Attempt::SendFailed(message) => {
                problem.get_or_insert_with(|| format!("send failed: {message}"));
            }
        }
    }
    pinger.counters().timeouts.inc();
    PacketOutcome {
        answered: false,
        rtt: None,
        problem,
    }
}

impl ProbeReport {
    /// Packets that got a reply.
    pub fn replies(&self) -> usize {
        self.packets.iter().filter(|p| p.answered).count()
    }

    /// Answered packets over sent packets, 0..=1 (the original's `success`).
    pub fn success(&self) -> f64 {
        if self.packets.is_empty() {
            return 0.0;
        }
        self.replies() as f64 / self.packets.len() as f64
    }

    /// Statistics over the replies; `None` when nothing answered.
    pub fn rtt_stats(&self) -> Option<RttStats> {
        let rtts = || {
            self.packets
                .iter()
                .filter_map(|p| p.rtt.map(|d| d.as_secs_f64()))
        };
        let n = rtts().count();
        if n == 0 {
            return None;
        }
        let n = n as f64;
        let avg = rtts().sum::<f64>() / n;
        let variance = rtts().map(|r| (r - avg) * (r - avg)).sum::<f64>() / n;
        Some(RttStats {
            min: rtts().fold(f64::INFINITY, f64::min),
            avg,
            max: rtts().fold(f64::NEG_INFINITY, f64::max),
            stddev: variance.sqrt(),
        })
    }

    /// The first problem seen among lost packets, for a log line.
    pub fn first_problem(&self) -> Option<&str> {
        self.packets.iter().find_map(|p| p.problem.as_deref())
    }

    /// The values of the run under `entity.{id}.ping.`: per packet `p{i}.ok` (1 or 0) and, when
    /// answered, `p{i}.rtt` (seconds); `success` (answered / sent); and beyond the original,
    /// `rtt.min|avg|max|stddev` (seconds, only when a round trip was measured) and `loss` (0..1).
    pub fn values(&self, entity_id: u64) -> Vec<Value> {
        let mut prefix = String::with_capacity(40);
        prefix.push_str("entity.");
        prefix.push_str(itoa::Buffer::new().format(entity_id));
        prefix.push_str(".ping.");
        // Each path in one allocation of its exact size, without the formatting machinery: a
        // run of one packet makes eight of them.
        let path = |suffix: &str| {
            let mut path = String::with_capacity(prefix.len() + suffix.len());
            path.push_str(&prefix);
            path.push_str(suffix);
            path
        };
        let mut values = Vec::with_capacity(self.packets.len() * 2 + 6);
        let mut index = itoa::Buffer::new();
        let mut packet_suffix = String::with_capacity(12);
        for (i, packet) in self.packets.iter().enumerate() {
            packet_suffix.clear();
            packet_suffix.push('p');
            packet_suffix.push_str(index.format(i));
            let stem = packet_suffix.len();
            packet_suffix.push_str(".ok");
            let ok = if packet.answered { 1.0 } else { 0.0 };
            values.push(Value::new(path(&packet_suffix), ok));
            if let Some(rtt) = packet.rtt {
                packet_suffix.truncate(stem);
                packet_suffix.push_str(".rtt");
                values.push(Value::new(path(&packet_suffix), rtt.as_secs_f64()));
            }
        }
        let success = self.success();
        values.push(Value::new(path("success"), success));
        if let Some(stats) = self.rtt_stats() {
            values.push(Value::new(path("rtt.min"), stats.min));
            values.push(Value::new(path("rtt.avg"), stats.avg));
            values.push(Value::new(path("rtt.max"), stats.max));
            values.push(Value::new(path("rtt.stddev"), stats.stddev));
        }
        values.push(Value::new(path("loss"), 1.0 - success));
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pinger::{PingCounters, PingerConfig};
    use crate::test_netns::{in_private_netns, runtime, silence_kernel_echo, Behaviour, Responder};
    use collector::Value;
    use std::net::IpAddr;
    use std::time::Instant;

    fn open() -> Pinger {
        Pinger::open(&PingerConfig::default(), PingCounters::default()).expect("open pinger")
    }

    fn dest(ip: &str) -> Destination {
        Destination::from(ip.parse::<IpAddr>().unwrap())
    }

    fn settings(timeout_ms: u64, retry: u32, n_packets: u32, sleep_ms: u64) -> ProbeSettings {
        ProbeSettings {
            timeout: Duration::from_millis(timeout_ms),
            retry,
            n_packets,
            sleep_packets: Duration::from_millis(sleep_ms),
        }
    }

    fn value(values: &[Value], path: &str) -> Option<f64> {
        values.iter().find(|v| v.path == path).map(|v| v.value)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loopback_runs_give_the_original_values_and_the_extras() {
        let pinger = open();
        for ip in ["127.0.0.1", "::1"] {
            let started = Instant::now();
            let report = probe(&pinger, dest(ip), &settings(1000, 0, 3, 200)).await;
            let elapsed = started.elapsed();
            // Two pauses between three packets; none after the last.
            assert!(
                elapsed >= Duration::from_millis(400) && elapsed < Duration::from_millis(700),
                "{ip}: {elapsed:?}"
            );
            let values = report.values(42);
            let paths: Vec<&str> = values.iter().map(|v| v.path.as_str()).collect();
            assert_eq!(
                paths,
                [
                    "entity.42.ping.p0.ok",
                    "entity.42.ping.p0.rtt",
                    "entity.42.ping.p1.ok",
                    "entity.42.ping.p1.rtt",
                    "entity.42.ping.p2.ok",
                    "entity.42.ping.p2.rtt",
                    "entity.42.ping.success",
                    "entity.42.ping.rtt.min",
                    "entity.42.ping.rtt.avg",
                    "entity.42.ping.rtt.max",
                    "entity.42.ping.rtt.stddev",
                    "entity.42.ping.loss",
                ]
            );
            for i in 0..3 {
                assert_eq!(
                    value(&values, &format!("entity.42.ping.p{i}.ok")),
                    Some(1.0)
                );
                let rtt = value(&values, &format!("entity.42.ping.p{i}.rtt")).unwrap();
                assert!((0.0..0.1).contains(&rtt), "{ip} p{i}: {rtt}");
            }
            assert_eq!(value(&values, "entity.42.ping.success"), Some(1.0));
            assert_eq!(value(&values, "entity.42.ping.loss"), Some(0.0));
            let min = value(&values, "entity.42.ping.rtt.min").unwrap();
            let avg = value(&values, "entity.42.ping.rtt.avg").unwrap();
            let max = value(&values, "entity.42.ping.rtt.max").unwrap();
            assert!(min <= avg && avg <= max && max < 0.1, "{min} {avg} {max}");
        }
    }

    #[test]
    fn a_silent_host_gives_ok_0_no_rtt_and_success_0_after_every_attempt() {
        in_private_netns(|| {
            silence_kernel_echo();
            runtime().block_on(async {
                let pinger = open();
                for ip in ["127.0.0.3", "::1"] {
                    let silent = Responder::start(ip.parse().unwrap(), Behaviour::Silent);
                    let started = Instant::now();
                    let report = probe(&pinger, dest(ip), &settings(600, 2, 2, 100)).await;
                    let elapsed = started.elapsed();
                    // Each packet waits its whole timeout; attempts are 200 ms apart.
                    assert!(
                        elapsed >= Duration::from_millis(1300)
                            && elapsed < Duration::from_millis(1700),
                        "{ip}: {elapsed:?}"
                    );
                    assert_eq!(silent.requests(), 6, "{ip}: 2 packets x 3 attempts");
                    assert_eq!(
                        report.values(7),
                        vec![
                            Value::new("entity.7.ping.p0.ok", 0.0),
                            Value::new("entity.7.ping.p1.ok", 0.0),
                            Value::new("entity.7.ping.success", 0.0),
                            Value::new("entity.7.ping.loss", 1.0),
                        ],
                        "{ip}"
                    );
                }
                assert_eq!(pinger.counters().timeouts.get(), 4);
                assert_eq!(pinger.counters().sent.get(), 12);
            })
        });
    }

    #[test]
    fn a_reply_later_than_the_timeout_is_a_loss_and_within_it_a_measured_rtt() {
        in_private_netns(|| {
            silence_kernel_echo();
            runtime().block_on(async {
                let pinger = open();
                for ip in ["127.0.0.4", "::1"] {
                    let _late = Responder::start(
                        ip.parse().unwrap(),
                        Behaviour::Delay(Duration::from_millis(250)),
                    );
                    let too_short = probe(&pinger, dest(ip), &settings(150, 0, 1, 0)).await;
                    assert_eq!(too_short.replies(), 0, "{ip}");
                    // Let the late reply arrive and be discarded before the next run.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let long_enough = probe(&pinger, dest(ip), &settings(600, 0, 1, 0)).await;
                    let rtt = long_enough.packets[0].rtt.expect(ip).as_secs_f64();
                    assert!((0.25..0.4).contains(&rtt), "{ip}: {rtt}");
                }
                // The two late replies were read, matched nothing and were counted.
                assert_eq!(pinger.counters().unmatched.get(), 2);
            })
        });
    }

    #[test]
    fn a_reply_to_an_earlier_attempt_counts_after_a_retry_was_sent() {
        in_private_netns(|| {
            silence_kernel_echo();
            runtime().block_on(async {
                let pinger = open();
                let late = Responder::start(
                    "127.0.0.8".parse().unwrap(),
                    Behaviour::Delay(Duration::from_millis(300)),
                );
                // Slices of 200 ms: the retry goes out at 200 ms, the first reply comes at 300.
                let report = probe(&pinger, dest("127.0.0.8"), &settings(400, 1, 1, 0)).await;
                let rtt = report.packets[0].rtt.expect("answered").as_secs_f64();
                assert!((0.3..0.4).contains(&rtt), "rtt of the first attempt: {rtt}");
                assert_eq!(late.requests(), 2);
            })
        });
    }

    #[test]
    fn retries_recover_lost_requests() {
        in_private_netns(|| {
            silence_kernel_echo();
            runtime().block_on(async {
                let pinger = open();
                let lossy =
                    Responder::start("127.0.0.10".parse().unwrap(), Behaviour::AnswerEvery(2));
                // Without retry every other packet is lost.
                let report = probe(&pinger, dest("127.0.0.10"), &settings(300, 0, 4, 0)).await;
                let oks: Vec<bool> = report.packets.iter().map(|p| p.answered).collect();
                assert_eq!(oks, [false, true, false, true]);
                assert_eq!(lossy.requests(), 4);
                // With one retry each packet's second attempt is answered at once.
                let report = probe(&pinger, dest("127.0.0.10"), &settings(600, 1, 3, 0)).await;
                assert_eq!(report.replies(), 3);
                assert_eq!(lossy.requests(), 4 + 6);
                for packet in &report.packets {
                    let rtt = packet.rtt.unwrap();
                    assert!(
                        rtt < Duration::from_millis(100),
                        "measured from the retry: {rtt:?}"
                    );
                }
                assert_eq!(report.success(), 1.0);
            })
        });
    }

    #[test]
    fn an_unreachable_host_is_lost_and_the_reason_kept_for_the_log() {
        in_private_netns(|| {
            silence_kernel_echo();
            runtime().block_on(async {
                let pinger = open();
                let _router =
                    Responder::start("127.0.0.11".parse().unwrap(), Behaviour::Unreachable);
                let report = probe(&pinger, dest("127.0.0.11"), &settings(300, 0, 1, 0)).await;
                assert_eq!(report.replies(), 0);
                assert_eq!(
                    report.first_problem(),
                    Some("host unreachable (ICMP from 127.0.0.11)")
                );
            })
        });
    }

    #[test]
    fn a_reply_without_a_measured_rtt_counts_as_answered_with_no_rtt_value() {
        let report = ProbeReport {
            packets: vec![PacketOutcome {
                answered: true,
                rtt: None,
                problem: None,
            }],
        };
        assert_eq!(
            report.values(3),
            vec![
                Value::new("entity.3.ping.p0.ok", 1.0),
                Value::new("entity.3.ping.success", 1.0),
                Value::new("entity.3.ping.loss", 0.0),
            ]
        );
    }

    #[test]
    fn statistics_are_over_the_answered_packets() {
        let report = ProbeReport {
            packets: [Some(10), None, Some(30), Some(20)]
                .into_iter()
                .map(|ms| PacketOutcome {
                    answered: ms.is_some(),
                    rtt: ms.map(Duration::from_millis),
                    problem: None,
                })
                .collect(),
        };
        let stats = report.rtt_stats().unwrap();
        assert!((stats.min - 0.010).abs() < 1e-12);
        assert!((stats.avg - 0.020).abs() < 1e-12);
        assert!((stats.max - 0.030).abs() < 1e-12);
        assert!((stats.stddev - (200.0f64 / 3.0).sqrt() / 1000.0).abs() < 1e-12);
        let values = report.values(1);
        assert_eq!(value(&values, "entity.1.ping.success"), Some(0.75));
        assert_eq!(value(&values, "entity.1.ping.loss"), Some(0.25));
        assert_eq!(value(&values, "entity.1.ping.p1.ok"), Some(0.0));
        assert_eq!(value(&values, "entity.1.ping.p1.rtt"), None);
    }
}
