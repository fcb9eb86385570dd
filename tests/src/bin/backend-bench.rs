//! Measures the test backend itself, so end-to-end benchmarks know it is not their bottleneck:
//! a job-config refresh the way the collector does it (`GET /accounts/`, then entities, credentials
//! and sensors of every account, `--concurrency` at a time, bodies parsed), and value POSTs of
//! 100 items. Run: `cargo run --release -p e2e --bin backend-bench -- --accounts 100 --entities-per-account 100`.

use std::time::{Duration, Instant};

use clap::Parser;
use e2e::{Fixture, TestBackend, GENERATED_BOT};
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "Benchmark of the e2e test backend")]
struct Args {
    #[arg(long, default_value_t = 100)]
    accounts: usize,
    #[arg(long, default_value_t = 100)]
    entities_per_account: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Refresh rounds (the figure printed is the median).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Value POSTs of 100 items each.
    #[arg(long, default_value_t = 1000)]
    posts: usize,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let fixture = Fixture::generated(args.accounts, args.entities_per_account, "ping");
    let backend = TestBackend::start(fixture).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(1))
        .build();
    let Ok(client) = client else {
        eprintln!("backend-bench: cannot build an HTTP client");
        std::process::exit(1);
    };
    let token = backend.token(GENERATED_BOT);
    let base = backend.url();

    let mut times = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        let started = Instant::now();
        match refresh(&client, &base, &token, args.concurrency).await {
            Ok(entities) => {
                let elapsed = started.elapsed();
                println!(
                    "refresh {}: {entities} entities in {:.1} ms",
                    round + 1,
                    ms(elapsed)
                );
                times.push(elapsed);
            }
            Err(error) => {
                eprintln!("backend-bench: refresh failed: {error}");
                std::process::exit(1);
            }
        }
    }
    times.sort();
    if let Some(median) = times.get(times.len() / 2) {
        println!(
            "refresh median: {:.1} ms for {} accounts x {} entities ({} requests, concurrency {})",
            ms(*median),
            args.accounts,
            args.entities_per_account,
            1 + 3 * args.accounts,
            args.concurrency
        );
    }

    let batch: Vec<Value> = (0..100)
        .map(|i| json!({"p": format!("bench.path{i}"), "v": i}))
        .collect();
    let batch = Value::Array(batch);
    let accounts: Vec<i64> = backend.fixture().accounts.keys().copied().collect();
    let started = Instant::now();
    let results: Vec<Result<u16, String>> = stream::iter(0..args.posts)
        .map(|i| {
            let url = format!(
                "{base}/accounts/{}/values/?b={token}",
                accounts[i % accounts.len()]
            );
            let request = client.post(url).json(&batch);
            async move {
                request
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(|e| e.without_url().to_string())
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let elapsed = started.elapsed();
    let failed = results.iter().filter(|r| !matches!(r, Ok(204))).count();
    println!(
        "values: {} POSTs of 100 in {:.1} ms = {:.0} values/s ({failed} failed, {} stored)",
        args.posts,
        ms(elapsed),
        (args.posts * 100) as f64 / elapsed.as_secs_f64(),
        backend.value_count()
    );
}

async fn refresh(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    concurrency: usize,
) -> Result<usize, String> {
    let accounts = get_list(client, &format!("{base}/accounts/?b={token}")).await?;
    let ids: Vec<i64> = accounts.iter().filter_map(|a| a["id"].as_i64()).collect();
    let lists: Vec<Result<usize, String>> = stream::iter(ids)
        .map(|account| async move {
            let entities = get_list(
                client,
                &format!("{base}/accounts/{account}/entities/?b={token}"),
            )
            .await?;
            get_list(
                client,
                &format!("{base}/accounts/{account}/credentials/?b={token}"),
            )
            .await?;
            get_list(
                client,
                &format!("{base}/accounts/{account}/sensors/?b={token}"),
            )
            .await?;
            Ok(entities.len())
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    lists.into_iter().sum()
}

async fn get_list(client: &reqwest::Client, url: &str) -> Result<Vec<Value>, String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let body: Value = response
        .json()
        .await
        .map_err(|e| e.without_url().to_string())?;
    match body {
        Value::Object(mut map) => match map.remove("list") {
            Some(Value::Array(list)) => Ok(list),
            _ => Err("no list in the answer".to_string()),
        },
        _ => Err("not an object".to_string()),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
