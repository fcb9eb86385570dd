//! Benchmark of the ICMP engine against fping, on loopback addresses in 127.0.0.0/8.
//!
//! Every target gets one job run (one packet, `--timeout`) per second for `--seconds`, on a
//! single-threaded runtime, as the framework would fire 10,000 ping jobs with a 1 s interval.
//! Printed: pings/s sustained, CPU seconds per 1000 pings (user + system, from getrusage, which
//! on loopback includes the kernel's work of answering), peak RSS, replies lost; then the same
//! for `fping -c 3 -p 20 -q -i 0` on the same targets, and the ratio of CPU per ping.
//!
//! Run as root (raw ICMP socket), release build:
//! `cargo run --release -p pingbot --bin pingbench -- --targets 10000 --seconds 10`

use clap::Parser;
use pingbot::credential::ProbeSettings;
use pingbot::pinger::{PingCounters, Pinger, PingerConfig};
use pingbot::probe::probe;
use pingbot::target::Destination;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Ping 127.0.0.0/8 targets every second; compare with fping")]
struct Args {
    /// Number of distinct loopback targets (127.10.0.1 upwards).
    #[arg(long, default_value_t = 10_000)]
    targets: u32,
    /// How long the steady load runs, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Timeout of each ping, in seconds.
    #[arg(long, default_value_t = 1.0)]
    timeout: f64,
    /// Socket receive buffer per family, in MiB.
    #[arg(long, default_value_t = (pingbot::pinger::DEFAULT_RECEIVE_BUFFER >> 20) as u64)]
    receive_buffer_mib: u64,
    /// Skip the fping comparison.
    #[arg(long)]
    no_fping: bool,
}

/// CPU time and peak RSS of this process or of its waited-for children.
#[derive(Debug, Clone, Copy)]
struct Usage {
    user: Duration,
    cpu: Duration,
    max_rss_kib: i64,
}

fn usage(who: libc::c_int) -> Usage {
    // SAFETY: rusage is plain data; getrusage fills it and cannot fail for these `who` values.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Usage {
        user: tv(ru.ru_utime),
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        max_rss_kib: ru.ru_maxrss,
    }
}

fn targets(n: u32) -> Vec<Ipv4Addr> {
    let base = u32::from(Ipv4Addr::new(127, 10, 0, 1));
    (0..n).map(|i| Ipv4Addr::from(base + i)).collect()
}

struct Figures {
    /// The span the rate is computed over: the load's seconds for pingbot (one tick per
    /// second per target), fping's whole run for fping.
    window: Duration,
    sent: u64,
    replies: u64,
    wall: Duration,
    user: Duration,
    cpu: Duration,
    max_rss_kib: i64,
}

impl Figures {
    fn cpu_per_1000(&self) -> f64 {
        self.cpu.as_secs_f64() * 1000.0 / self.sent.max(1) as f64
    }

    fn print(&self, name: &str) {
        println!(
            "{name:8} sent {:>7}  replies {:>7}  lost {:>5}  wall {:>6.2} s  {:>8.0} pings/s over {:.2} s  \
             cpu {:>6.3} s (user {:.3} s, {:>5.1}% of one core)  {:.4} cpu-s/1000 pings  peak RSS {:.1} MiB",
            self.sent,
            self.replies,
            self.sent - self.replies.min(self.sent),
            self.wall.as_secs_f64(),
            self.sent as f64 / self.window.as_secs_f64(),
            self.window.as_secs_f64(),
            self.cpu.as_secs_f64(),
            self.user.as_secs_f64(),
            100.0 * self.cpu.as_secs_f64() / self.wall.as_secs_f64(),
            self.cpu_per_1000(),
            self.max_rss_kib as f64 / 1024.0,
        );
    }
}

fn run_pingbot(args: &Args, addresses: &[Ipv4Addr]) -> Result<Figures, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let counters = PingCounters::default();
        let pinger = Arc::new(
            Pinger::open(
                &PingerConfig {
                    receive_buffer: (args.receive_buffer_mib as usize) << 20,
                },
                counters.clone(),
            )
            .map_err(|e| e.to_string())?,
        );
        for status in pinger.status() {
            match status.socket {
                Ok((kind, buffer)) => println!(
                    "pingbot  {}: {kind} socket, receive buffer {} KiB",
                    status.family,
                    buffer / 1024
                ),
                Err(err) => println!("pingbot  {}: unavailable: {err}", status.family),
            }
        }
        let settings = ProbeSettings {
            timeout: Duration::from_secs_f64(args.timeout),
            retry: 0,
            n_packets: 1,
            sleep_packets: Duration::ZERO,
        };
        let seconds = args.seconds;
        let before = usage(libc::RUSAGE_SELF);
        let started = tokio::time::Instant::now();
        let tasks: Vec<_> = addresses
            .iter()
            .map(|&address| {
                let pinger = pinger.clone();
                let destination = Destination::from(IpAddr::V4(address));
                tokio::spawn(async move {
                    let mut ticks = tokio::time::interval_at(started, Duration::from_secs(1));
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    for _ in 0..seconds {
                        ticks.tick().await;
                        probe(&pinger, destination, &settings).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.map_err(|e| e.to_string())?;
        }
        let wall = started.elapsed();
        let after = usage(libc::RUSAGE_SELF);
        let expected = u64::from(args.targets) * seconds;
        if counters.sent.get() < expected {
            println!(
                "pingbot  fell behind: {} of {expected} scheduled pings were skipped",
                expected - counters.sent.get()
            );
        }
        Ok(Figures {
            window: Duration::from_secs(seconds),
            sent: counters.sent.get(),
            replies: counters.replies.get(),
            wall,
            user: after.user.saturating_sub(before.user),
            cpu: after.cpu.saturating_sub(before.cpu),
            max_rss_kib: after.max_rss_kib,
        })
    })
}

fn run_fping(addresses: &[Ipv4Addr]) -> Result<Figures, String> {
    let list = tempfile_path("pingbench-targets");
    {
        let mut file = std::fs::File::create(&list).map_err(|e| e.to_string())?;
        for address in addresses {
            writeln!(file, "{address}").map_err(|e| e.to_string())?;
        }
    }
    let before = usage(libc::RUSAGE_CHILDREN);
    let started = Instant::now();
    let output = Command::new("fping")
        .args(["-c", "3", "-p", "20", "-q", "-i", "0", "-f"])
        .arg(&list)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run fping (apt-get install fping): {e}"))?;
    let wall = started.elapsed();
    let after = usage(libc::RUSAGE_CHILDREN);
    let _ = std::fs::remove_file(&list);
    // "127.10.0.1 : xmt/rcv/%loss = 3/3/0%, min/avg/max = 0.01/0.02/0.03"
    let (mut sent, mut replies) = (0u64, 0u64);
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        let Some(counts) = line.split("xmt/rcv/%loss = ").nth(1) else {
            continue;
        };
        let mut fields = counts.split(['/', ',']);
        sent += fields
            .next()
            .and_then(|x| x.trim().parse::<u64>().ok())
            .unwrap_or(0);
        replies += fields
            .next()
            .and_then(|x| x.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    if sent == 0 {
        return Err(format!(
            "fping reported nothing ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .take(3)
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    Ok(Figures {
        window: wall,
        sent,
        replies,
        wall,
        user: after.user.saturating_sub(before.user),
        cpu: after.cpu.saturating_sub(before.cpu),
        max_rss_kib: after.max_rss_kib,
    })
}

fn tempfile_path(stem: &str) -> String {
    format!(
        "{}/{stem}-{}.txt",
        std::env::temp_dir().display(),
        std::process::id()
    )
}

fn main() {
    let args = Args::parse();
    let addresses = targets(args.targets);
    println!(
        "{} targets from 127.10.0.1 up, one ping each per second for {} s, timeout {} s, \
         single-threaded runtime",
        args.targets, args.seconds, args.timeout
    );
    // fping runs first, while this process is still small: a spawned child's peak RSS as the
    // kernel reports it includes the parent's at the time of the spawn.
    let fping = if args.no_fping {
        None
    } else {
        match run_fping(&addresses) {
            Ok(figures) => Some(figures),
            Err(err) => {
                eprintln!("pingbench: fping comparison failed: {err}");
                std::process::exit(1);
            }
        }
    };
    let ours = match run_pingbot(&args, &addresses) {
        Ok(figures) => figures,
        Err(err) => {
            eprintln!("pingbench: {err}");
            std::process::exit(1);
        }
    };
    ours.print("pingbot");
    if let Some(fping) = fping {
        fping.print("fping");
        println!(
            "ratio    pingbot cpu per ping / fping cpu per ping = {:.2}",
            ours.cpu_per_1000() / fping.cpu_per_1000()
        );
    }
}
