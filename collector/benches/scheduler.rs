//! Scheduler benchmark: 100,000 jobs of mixed intervals on the real clock. Prints the time to
//! schedule them, memory per job, and firing lateness (due second to the moment the scheduler
//! hands the job out) at p50/p99/max.
//!
//! `cargo bench -p collector --bench scheduler` (env `JOBS`, `SECONDS` to change the size).

use collector::scheduler::{Clock, Scheduler, HAND_OUT_BATCH};
use collector::JobSpec;
use std::collections::HashSet;
use std::time::Instant;

/// Resident memory of this process in bytes (Linux).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Parameters like a real bot's: an address and a few sensor intervals.
#[derive(Debug, Clone, PartialEq)]
struct Params {
    address: String,
    sensors: Vec<(u64, u64)>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let jobs = env_or("JOBS", 100_000);
    let seconds = env_or("SECONDS", 31) as u64;
    let mixes: [&[u64]; 6] = [&[1], &[5], &[10, 20], &[15, 60], &[30], &[1, 10, 60]];
    let rss_before = rss_bytes();
    let specs = make_specs(jobs, &mixes);
    let clock = Clock::new();
    let mut scheduler = Scheduler::new(clock);
    let started = Instant::now();
    scheduler.update(specs, &HashSet::new());
    let add_time = started.elapsed();
    let rss_after = rss_bytes();

    let again = make_specs(jobs, &mixes);
    let started = Instant::now();
    let summary = scheduler.update(again, &HashSet::new());
    let diff_time = started.elapsed();
    assert_eq!(summary.unchanged, jobs);

    let end = clock.now_secs() + seconds;
    // Firings due before the first whole second after the set-up waited for it (creating and
    // refreshing the jobs takes about 200 ms): they are counted apart, not in the lateness,
    // or a run that starts just before a second boundary measures its set-up.
    let measured_from = clock.now_secs() + 1;
    let (mut during_set_up, mut set_up_wait_ms) = (0usize, 0.0f64);
    // Allocated and touched up front, so page faults of the measurement do not count as lateness.
    let mut lateness_ms: Vec<f64> = vec![0.0; jobs * seconds as usize];
    lateness_ms.clear();
    let mut first_of_second_ms: Vec<f64> = Vec::new();
    // Per due second: (jobs handed out, ms from its first hand-out to its last).
    let mut bursts: Vec<(usize, f64)> = Vec::new();
    let mut last_second = 0;
    // The handed-out jobs are kept, as the executor's runs keep theirs, and released on another
    // thread once their second is over, as runs end on other workers: what is measured is the
    // scheduler's hand-out, not a consumer dropping each job the moment it gets it.
    let (finished_runs, runs_to_end) = std::sync::mpsc::channel::<Vec<_>>();
    let (emptied, empty_lists) = std::sync::mpsc::channel();
    let ender = std::thread::spawn(move || {
        for mut runs in runs_to_end {
            runs.clear();
            let _ = emptied.send(runs);
        }
    });
    let mut running = Vec::with_capacity(jobs);
    // Handed out as the bot's runtime takes them.
    let mut batch = Vec::with_capacity(HAND_OUT_BATCH);
    // One clock reading a batch, when it is handed out (the scheduler's own clock: Unix time
    // kept by tokio's). The benchmark's own work on a batch's jobs delays the next batch, as
    // the executor's does in the bot.
    let mut now = clock.now_unix();
    while now < end as f64 {
        scheduler.next_batch(&mut batch, HAND_OUT_BATCH).await;
        now = clock.now_unix();
        for due in batch.drain(..) {
            let late = (now - due.firing.scheduled as f64) * 1000.0;
            if due.firing.scheduled < measured_from {
                during_set_up += 1;
                set_up_wait_ms = set_up_wait_ms.max(late);
                running.push(due);
                continue;
            }
            if due.firing.scheduled != last_second {
                last_second = due.firing.scheduled;
                let next_list = empty_lists
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(jobs));
                let _ = finished_runs.send(std::mem::replace(&mut running, next_list));
                first_of_second_ms.push(late);
                bursts.push((0, late));
            }
            if let Some(burst) = bursts.last_mut() {
                burst.0 += 1;
                burst.1 = late - first_of_second_ms[first_of_second_ms.len() - 1];
            }
            lateness_ms.push(late);
            running.push(due);
        }
    }
    drop(finished_runs);
    let _ = ender.join();
    lateness_ms.sort_by(f64::total_cmp);
    first_of_second_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| lateness_ms[((lateness_ms.len() - 1) as f64 * p) as usize];
    println!("scheduler: {jobs} jobs, intervals {mixes:?}");
    println!(
        "  schedule all: {:.1} ms; refresh diff (all unchanged): {:.1} ms",
        add_time.as_secs_f64() * 1e3,
        diff_time.as_secs_f64() * 1e3
    );
    println!(
        "  memory: {:.0} bytes per job, params included (RSS {:.1} MiB -> {:.1} MiB)",
        rss_after.saturating_sub(rss_before) as f64 / jobs as f64,
        rss_before as f64 / 1048576.0,
        rss_after as f64 / 1048576.0
    );
    println!(
        "  {} firings in {seconds} s ({:.0}/s); lateness p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lateness_ms.len(),
        lateness_ms.len() as f64 / seconds as f64,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    if during_set_up > 0 {
        println!(
            "  left out: {during_set_up} firings due during the set-up, handed out up to \
             {set_up_wait_ms:.2} ms late"
        );
    }
    println!(
        "  timer precision (first job of each due second): median {:.2} ms, max {:.2} ms",
        first_of_second_ms[first_of_second_ms.len() / 2],
        first_of_second_ms[first_of_second_ms.len() - 1]
    );
    if let Some(&(jobs, ms)) = bursts.iter().max_by_key(|(jobs, _)| *jobs) {
        println!(
            "  biggest due second: {jobs} jobs handed out in {ms:.2} ms ({:.0} ns a job)",
            ms * 1e6 / jobs as f64
        );
    }
}

/// Jobs like a real bot's: an address and a sensor per interval.
fn make_specs(jobs: usize, mixes: &[&[u64]; 6]) -> Vec<JobSpec<Params>> {
    (0..jobs)
        .map(|n| {
            let intervals = mixes[n % mixes.len()].to_vec();
            let params = Params {
                address: format!("10.{}.{}.{}", n >> 16 & 255, n >> 8 & 255, n & 255),
                sensors: intervals.iter().map(|&i| (n as u64, i)).collect(),
            };
            JobSpec::new(n.to_string(), intervals, params)
                .account(1)
                .entity(n as u64)
        })
        .collect()
}
