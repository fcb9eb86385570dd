//! Benchmark of the ICMP engine against fping, on loopback addresses in 127.0.0.0/8.
//!
//! Every target gets one job run (one packet, `--timeout`) per second for `--seconds`, on a
//! single-threaded runtime, as the framework would fire 10,000 ping jobs with a 1 s interval.
//! Printed: pings/s sustained, CPU seconds per 1000 pings (user + system, from getrusage, which
//! on loopback includes the kernel's work of answering), peak RSS, replies lost; then the same
//! for `fping -c 3 -p 20 -q -i 0` on the same targets, and the ratio of CPU per ping.
//!
//! Run as root (raw ICMP socket), release build:
//! `cargo run --release -p benches --bin pingbench -- --targets 10000 --seconds 10`

use benches::counting_backend::{
    lateness_percentile, AccountConfigs, CountingBackend, Counts, BOT_ID, TOKEN,
};
use benches::measure::{
    own_usage, process_cpu, process_memory_kib, spawn_pinned, thread_cpu, wait_with_usage,
    watch_peak_rss, CpuTime, ScratchDir, Who,
};
use clap::Parser;
use pingbot::credential::ProbeSettings;
use pingbot::pinger::{PingCounters, Pinger, PingerConfig};
use pingbot::probe::probe;
use pingbot::target::Destination;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::ExitStatusExt;
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
    /// Echo requests per second at most (the bot's `PING_MAX_RATE`).
    #[arg(long, default_value_t = pingbot::pinger::DEFAULT_MAX_RATE)]
    max_rate: u32,
    /// Skip the fping comparison.
    #[arg(long)]
    no_fping: bool,
    /// Also run the real `pingbot` binary (built next to this one) in standalone mode on the
    /// same targets, pinned to CPU 0 with `taskset`, and measure it from outside.
    #[arg(long)]
    whole_bot: bool,
    /// Also run the real `pingbot` in Grafolean mode (BACKEND_URL, BOT_TOKEN) against a local
    /// backend that only validates and counts (on CPU 1), the bot pinned to CPU 0 like fping:
    /// what users run.
    #[arg(long)]
    grafolean: bool,
    /// The bot's `JOBS_REFRESH_INTERVAL` in Grafolean mode, in seconds (the bot's default, 120,
    /// if not given): shorter than `--seconds`, the window holds refreshes, whose parsed entities
    /// and new jobs count in the peak RSS.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    refresh_interval: Option<u64>,
    /// Runs the whole comparison this many times, one round after the other, and ends with the
    /// median and range of each figure and of the ratio: a short fping burst is easily
    /// disturbed on a shared host, and one round can mislead.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
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
    cpu: CpuTime,
    max_rss_kib: u64,
}

impl Figures {
    fn cpu_per_1000(&self) -> f64 {
        self.cpu.total.as_secs_f64() * 1000.0 / self.sent.max(1) as f64
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
            self.cpu.total.as_secs_f64(),
            self.cpu.user.as_secs_f64(),
            100.0 * self.cpu.total.as_secs_f64() / self.wall.as_secs_f64(),
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
                    max_rate: args.max_rate,
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
        let (before, _) = own_usage(Who::Myself);
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
        let (after, max_rss_kib) = own_usage(Who::Myself);
        println!(
            "pingbot  replies without a positive rtt: {} (rtt = kernel receive time - send time)",
            counters.invalid_rtts.get()
        );
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
            cpu: after - before,
            max_rss_kib,
        })
    })
}

fn run_fping(addresses: &[Ipv4Addr]) -> Result<Figures, String> {
    let scratch = ScratchDir::new("pingbench-fping").map_err(|e| e.to_string())?;
    let list = scratch.path().join("targets.txt");
    {
        let mut file = std::fs::File::create(&list).map_err(|e| e.to_string())?;
        for address in addresses {
            writeln!(file, "{address}").map_err(|e| e.to_string())?;
        }
    }
    let started = Instant::now();
    let mut command = Command::new("fping");
    command
        .args(["-c", "3", "-p", "20", "-q", "-i", "0", "-f"])
        .arg(&list)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // On CPU 0, where the bot runs too.
    let mut child = spawn_pinned(&mut command, 0)
        .map_err(|e| format!("cannot run fping (apt-get install fping): {e}"))?;
    let peak_rss = watch_peak_rss(child.id(), "fping");
    let mut output = Vec::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_end(&mut output)
            .map_err(|e| format!("reading fping's output: {e}"))?;
    }
    let stderr = String::from_utf8_lossy(&output);
    let (status, cpu) = wait_with_usage(&child).map_err(|e| format!("waiting for fping: {e}"))?;
    let max_rss_kib = peak_rss.join().unwrap_or(0);
    let wall = started.elapsed();
    // "127.10.0.1 : xmt/rcv/%loss = 3/3/0%, min/avg/max = 0.01/0.02/0.03"
    let (mut sent, mut replies) = (0u64, 0u64);
    for line in stderr.lines() {
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
            std::process::ExitStatus::from_raw(status),
            stderr.lines().take(3).collect::<Vec<_>>().join(" | ")
        ));
    }
    Ok(Figures {
        window: wall,
        sent,
        replies,
        wall,
        cpu,
        max_rss_kib,
    })
}

/// The real bot in standalone mode: a jobs file with one entity per target, 1 s interval,
/// one packet per run; its stdout (8 values per run) read here; its CPU from /proc.
fn run_whole_bot(args: &Args, addresses: &[Ipv4Addr]) -> Result<Figures, String> {
    use std::io::BufRead;
    use std::sync::atomic::{AtomicU64, Ordering};
    let binary = sibling_binary("pingbot")?;
    let scratch = ScratchDir::new("pingbench-bot").map_err(|e| e.to_string())?;
    let jobs = scratch.path().join("jobs.toml");
    let data_dir = scratch.path().join("data");
    {
        let mut file = std::fs::File::create(&jobs).map_err(|e| e.to_string())?;
        writeln!(
            file,
            "[[credentials]]\nid = 1\nprotocol = \"ping\"\ndetails = {{ n_packets = 1, timeout = {} }}\n\n\
             [[sensors]]\nid = 10\nprotocol = \"ping\"\ndefault_interval = 1\n",
            args.timeout
        )
        .map_err(|e| e.to_string())?;
        for (i, address) in addresses.iter().enumerate() {
            writeln!(
                file,
                "[[entities]]\nid = {}\nname = \"{address}\"\ndetails = {{ ipv4 = \"{address}\" }}\n\
                 protocols.ping = {{ credential = 1, sensors = [{{ sensor = 10 }}] }}",
                i + 1
            )
            .map_err(|e| e.to_string())?;
        }
    }
    let mut child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(&binary)
        .arg("--jobs")
        .arg(&jobs)
        .arg("--data-dir")
        .arg(&data_dir)
        .env("JOB_CONCURRENCY", (addresses.len() * 2).to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run taskset {}: {e}", binary.display()))?;
    let pid = child.id();
    let answered = Arc::new(AtomicU64::new(0));
    let unanswered = Arc::new(AtomicU64::new(0));
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = {
        let (answered, unanswered) = (answered.clone(), unanswered.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains(".ping.p0.ok\"") {
                    if line.contains("\"v\":1.0") {
                        answered.fetch_add(1, Ordering::Relaxed);
                    } else {
                        unanswered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    // Warm up until the runs of two whole seconds have been printed.
    let warm = Instant::now();
    while answered.load(Ordering::Relaxed) + unanswered.load(Ordering::Relaxed)
        < 2 * addresses.len() as u64
    {
        if warm.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            return Err("the bot printed too few values in 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let printed = || answered.load(Ordering::Relaxed) + unanswered.load(Ordering::Relaxed);
    let (ok0, lost0) = (
        answered.load(Ordering::Relaxed),
        unanswered.load(Ordering::Relaxed),
    );
    let cpu_before = process_cpu(pid);
    let started = Instant::now();
    // The window ends when `seconds` worth of runs have been printed: if the bot keeps up,
    // that takes `seconds`; if it falls behind, longer, and the rate shows it.
    let wanted = ok0 + lost0 + args.seconds * addresses.len() as u64;
    while printed() < wanted && started.elapsed() < Duration::from_secs(3 * args.seconds) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let cpu_after = process_cpu(pid);
    let wall = started.elapsed();
    let (ok1, lost1) = (
        answered.load(Ordering::Relaxed),
        unanswered.load(Ordering::Relaxed),
    );
    let max_rss_kib = process_memory_kib(pid, "VmHWM:");
    // SAFETY: kill with a valid pid of our own child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
    let _ = reader.join();
    let replies = ok1 - ok0;
    Ok(Figures {
        window: wall,
        sent: replies + (lost1 - lost0),
        replies,
        wall,
        cpu: cpu_after - cpu_before,
        max_rss_kib,
    })
}

/// The bot pinned to CPU 0 against the counting backend on CPU 1: the configs of one entity per
/// target (1 s interval, one packet), values counted as the backend receives them.
fn run_grafolean_bot(args: &Args, addresses: &[Ipv4Addr]) -> Result<(Figures, Delivered), String> {
    let binary = sibling_binary("pingbot")?;
    let entities = addresses
        .iter()
        .enumerate()
        .map(|(i, address)| {
            json!({"id": i + 1, "name": address.to_string(), "entity_type": "device", "parent": null,
                "details": {"ipv4": address.to_string()},
                "protocols": {"ping": {"credential": 1, "bot": BOT_ID,
                    "sensors": [{"sensor": 10, "interval": 1}]}}})
        })
        .collect();
    let configs = AccountConfigs {
        entities,
        credentials: vec![json!({"id": 1, "name": "bench", "protocol": "ping",
            "details": {"n_packets": 1, "timeout": args.timeout}})],
        sensors: vec![json!({"id": 10, "name": "ping", "protocol": "ping",
            "default_interval": 1, "details": {}})],
    };
    let backend = CountingBackend::start(configs, ".p0.ok", 1).map_err(|e| e.to_string())?;
    let scratch = ScratchDir::new("pingbench-grafolean").map_err(|e| e.to_string())?;
    let mut command = Command::new(&binary);
    command
        .env("BACKEND_URL", backend.url())
        .env("BOT_TOKEN", TOKEN)
        .env("DATA_DIR", scratch.path())
        .env("JOB_CONCURRENCY", (addresses.len() * 2).to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(every) = args.refresh_interval {
        command.env("JOBS_REFRESH_INTERVAL", every.to_string());
    }
    let mut child = spawn_pinned(&mut command, 0)
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let pid = child.id();
    let window = measure_window(&backend, pid, addresses.len() as u64, args.seconds);
    let max_rss_kib = process_memory_kib(pid, "VmHWM:");
    // SAFETY: kill with a valid pid of our own child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
    let (before, after, wall, bot_cpu, backend_cpu) = window?;
    let arrivals = &after.arrivals[before.arrivals.len()..];
    if std::env::var_os("PINGBENCH_ARRIVALS").is_some() {
        println!("arrivals (ms after the second, values): {arrivals:?}");
    }
    Ok((
        Figures {
            window: wall,
            sent: after.marked - before.marked,
            replies: after.marked_ones - before.marked_ones,
            wall,
            cpu: bot_cpu,
            max_rss_kib,
        },
        Delivered {
            posts_per_second: (after.posts - before.posts) as f64 / wall.as_secs_f64(),
            values_per_second: (after.values - before.values) as f64 / wall.as_secs_f64(),
            refused: after.refused,
            lateness_p50_ms: lateness_percentile(arrivals, 0.5),
            lateness_p99_ms: lateness_percentile(arrivals, 0.99),
            backend_cpu_share: backend_cpu.total.as_secs_f64() / wall.as_secs_f64(),
        },
    ))
}

/// What the backend saw of the bot's delivery in the window.
struct Delivered {
    posts_per_second: f64,
    values_per_second: f64,
    refused: u64,
    lateness_p50_ms: f64,
    lateness_p99_ms: f64,
    /// The counting backend's CPU time over the window, as a share of one core.
    backend_cpu_share: f64,
}

type Window = (Counts, Counts, Duration, CpuTime, CpuTime);

/// Warms up until two seconds of pings have arrived, then measures until `seconds` more have:
/// if the bot keeps up that takes `seconds`, if not longer, and the rate shows it.
fn measure_window(
    backend: &CountingBackend,
    pid: u32,
    targets: u64,
    seconds: u64,
) -> Result<Window, String> {
    let warm = Instant::now();
    while backend.counts().marked < 2 * targets {
        if warm.elapsed() > Duration::from_secs(90) {
            return Err(format!(
                "the backend received too few values in 90 s: {:?}",
                backend.counts().marked
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = backend.counts();
    let (bot_before, backend_before) = (process_cpu(pid), thread_cpu(backend.thread_id));
    let started = Instant::now();
    let wanted = before.marked + seconds * targets;
    while backend.counts().marked < wanted && started.elapsed() < Duration::from_secs(3 * seconds) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let wall = started.elapsed();
    let (bot_after, backend_after) = (process_cpu(pid), thread_cpu(backend.thread_id));
    Ok((
        before,
        backend.counts(),
        wall,
        bot_after - bot_before,
        backend_after - backend_before,
    ))
}

/// A binary built next to this one.
fn sibling_binary(name: &str) -> Result<std::path::PathBuf, String> {
    let binary = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name(name);
    if binary.exists() {
        Ok(binary)
    } else {
        Err(format!(
            "{} not found: build both with `cargo build --release -p {name} -p benches`",
            binary.display()
        ))
    }
}

fn main() {
    let args = Args::parse();
    let addresses = targets(args.targets);
    println!(
        "{} targets from 127.10.0.1 up, one ping each per second for {} s, timeout {} s, \
         single-threaded runtime",
        args.targets, args.seconds, args.timeout
    );
    let mut rounds = Vec::new();
    for number in 1..=args.repeat {
        if args.repeat > 1 {
            println!("round    {number} of {}", args.repeat);
        }
        rounds.push(round(&args, &addresses));
    }
    if rounds.len() > 1 {
        summary(&rounds);
    }
}

/// One round's figures, for the summary of `--repeat`.
struct Round {
    /// CPU seconds per 1000 pings of what the ratio compares: the bot in Grafolean mode with
    /// `--grafolean`, else the engine.
    ours: f64,
    fping: Option<f64>,
    peak_rss_mib: f64,
    lateness_p99_ms: Option<f64>,
}

/// One comparison: fping, then ours; prints each side and the ratio.
fn round(args: &Args, addresses: &[Ipv4Addr]) -> Round {
    // fping runs first, while this process is still small: a spawned child's peak RSS as the
    // kernel reports it includes the parent's at the time of the spawn.
    let fping = if args.no_fping {
        None
    } else {
        match run_fping(addresses) {
            Ok(figures) => Some(figures),
            Err(err) => {
                eprintln!("pingbench: fping comparison failed: {err}");
                std::process::exit(1);
            }
        }
    };
    if args.grafolean {
        return grafolean_report(args, addresses, fping);
    }
    let ours = match run_pingbot(args, addresses) {
        Ok(figures) => figures,
        Err(err) => {
            eprintln!("pingbench: {err}");
            std::process::exit(1);
        }
    };
    ours.print("pingbot");
    let whole = args
        .whole_bot
        .then(|| match run_whole_bot(args, addresses) {
            Ok(figures) => figures,
            Err(err) => {
                eprintln!("pingbench: whole bot: {err}");
                std::process::exit(1);
            }
        });
    if let Some(whole) = &whole {
        whole.print("bot");
        println!(
            "         (bot: the pingbot binary, standalone, pinned to one CPU, measured from \
             warm-up until {} runs were printed; each run prints 8 values as JSON lines)",
            u64::from(args.targets) * args.seconds
        );
    }
    if let Some(fping) = &fping {
        fping.print("fping");
        println!(
            "ratio    pingbot cpu per ping / fping cpu per ping = {:.2}",
            ours.cpu_per_1000() / fping.cpu_per_1000()
        );
        if let Some(whole) = &whole {
            println!(
                "ratio    bot cpu per ping / fping cpu per ping = {:.2}",
                whole.cpu_per_1000() / fping.cpu_per_1000()
            );
        }
    }
    Round {
        ours: ours.cpu_per_1000(),
        fping: fping.as_ref().map(Figures::cpu_per_1000),
        peak_rss_mib: ours.max_rss_kib as f64 / 1024.0,
        lateness_p99_ms: None,
    }
}

/// The median and the range of `figures` (not empty), as "median (min-max)".
fn spread(figures: impl Iterator<Item = f64>, decimals: usize) -> String {
    let sorted = sorted(figures);
    let (Some(min), Some(max)) = (sorted.first(), sorted.last()) else {
        return "none".to_string();
    };
    format!(
        "{:.decimals$} ({min:.decimals$}-{max:.decimals$})",
        median(&sorted)
    )
}

/// `figures` in ascending order, for their median and range.
fn sorted(figures: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut sorted: Vec<f64> = figures.collect();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// The median of sorted figures (the mean of the middle two for an even count).
fn median(sorted: &[f64]) -> f64 {
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 0 && middle > 0 {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted.get(middle).copied().unwrap_or(f64::NAN)
    }
}

/// After `--repeat`: each figure's median and range over the rounds, the ratio per round, and
/// the ratio of the medians.
fn summary(rounds: &[Round]) {
    println!("summary  {} rounds, median (min-max):", rounds.len());
    let lateness = rounds
        .iter()
        .filter_map(|r| r.lateness_p99_ms)
        .collect::<Vec<_>>();
    println!(
        "  ours   {} cpu-s/1000 pings, peak RSS {} MiB{}",
        spread(rounds.iter().map(|r| r.ours), 4),
        spread(rounds.iter().map(|r| r.peak_rss_mib), 1),
        if lateness.is_empty() {
            String::new()
        } else {
            format!(
                ", values p99 {} ms after the due second",
                spread(lateness.into_iter(), 0)
            )
        }
    );
    let paired: Vec<(f64, f64)> = rounds
        .iter()
        .filter_map(|r| r.fping.map(|fping| (r.ours, fping)))
        .collect();
    if paired.is_empty() {
        return;
    }
    println!(
        "  fping  {} cpu-s/1000 pings",
        spread(paired.iter().map(|&(_, fping)| fping), 4)
    );
    let ratios: Vec<f64> = paired.iter().map(|&(ours, fping)| ours / fping).collect();
    let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    let ours = median(&sorted(paired.iter().map(|&(ours, _)| ours)));
    let fping = median(&sorted(paired.iter().map(|&(_, fping)| fping)));
    println!(
        "  ratio  per round {}; {}; at or below 1.00 in {} of {}; median ours / median fping = {:.2}",
        listed.join(" "),
        spread(ratios.iter().copied(), 2),
        ratios.iter().filter(|&&r| r <= 1.0).count(),
        ratios.len(),
        ours / fping
    );
}

/// `--grafolean`: the real bot in Grafolean mode beside fping, printed with the ratio.
fn grafolean_report(args: &Args, addresses: &[Ipv4Addr], fping: Option<Figures>) -> Round {
    let (bot, delivered) = match run_grafolean_bot(args, addresses) {
        Ok(figures) => figures,
        Err(err) => {
            eprintln!("pingbench: pingbot in Grafolean mode: {err}");
            std::process::exit(1);
        }
    };
    bot.print("pingbot");
    println!(
        "         (the pingbot binary in Grafolean mode, pinned to CPU 0 at nice -10, measured from \
         warm-up until {} pings had been delivered)",
        u64::from(args.targets) * args.seconds
    );
    println!(
        "delivery {:.1} POSTs/s to the account, {:.0} values/s, refused POSTs {}; arrival after \
         the due second p50 {:.0} ms, p99 {:.0} ms",
        delivered.posts_per_second,
        delivered.values_per_second,
        delivered.refused,
        delivered.lateness_p50_ms,
        delivered.lateness_p99_ms
    );
    println!(
        "backend  the counting backend (CPU 1) used {:.1}% of one core",
        100.0 * delivered.backend_cpu_share
    );
    if let Some(fping) = &fping {
        fping.print("fping");
        println!(
            "ratio    pingbot (Grafolean mode) cpu per ping / fping cpu per ping = {:.2}",
            bot.cpu_per_1000() / fping.cpu_per_1000()
        );
    }
    Round {
        ours: bot.cpu_per_1000(),
        fping: fping.as_ref().map(Figures::cpu_per_1000),
        peak_rss_mib: bot.max_rss_kib as f64 / 1024.0,
        lateness_p99_ms: Some(delivered.lateness_p99_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::{median, spread};

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[1.0, 2.0, 3.0, 10.0]), 2.5);
        assert_eq!(median(&[1.0, 2.0, 30.0]), 2.0);
        assert_eq!(
            spread([0.9, 1.2, 0.8, 1.0].into_iter(), 2),
            "0.95 (0.80-1.20)"
        );
    }
}
