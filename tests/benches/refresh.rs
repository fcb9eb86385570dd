//! Refresh benchmark: job configs of 10,000 entities fetched from the in-process test backend
//! with the framework's backend client and turned into configs by the skip rules.
//!
//! `cargo bench -p e2e --bench refresh` (env `ACCOUNTS`, `DEVICES` to change the shape).

use collector::backend::BackendClient;
use collector::metrics::Metrics;
use collector::runtime::fetch_from_backend;
use e2e::{Fixture, TestBackend, GENERATED_BOT};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let shapes = [
        (env_or("ACCOUNTS", 10), env_or("DEVICES", 1000)),
        (1, 10_000),
        (1000, 10),
    ];
    for (accounts, devices) in shapes {
        let backend = TestBackend::start(Fixture::generated(accounts, devices, "ping")).await;
        let client = BackendClient::new(
            &backend.url(),
            &backend.token(GENERATED_BOT),
            Duration::from_secs(60),
            64,
            Metrics::new(),
        )
        .expect("client");
        let mut best = f64::MAX;
        let mut configs = 0;
        for _ in 0..3 {
            let started = Instant::now();
            let refresh =
                fetch_from_backend(&client, "ping", GENERATED_BOT as u64, &Metrics::new())
                    .await
                    .expect("refresh");
            best = best.min(started.elapsed().as_secs_f64());
            configs = refresh.configs.len();
        }
        assert_eq!(
            configs,
            accounts * devices,
            "every device became a job config"
        );
        let requests = backend.count("GET", "/api/accounts/") / 3;
        println!(
            "refresh: {accounts} accounts x {devices} devices = {configs} entities in {:.3} s (best of 3), {requests} requests per refresh",
            best
        );
    }
}
