//! Runs the test backend on its own, serving a generated fixture, for manual runs and benchmarks:
//! `test-backend --accounts 100 --entities-per-account 100 --protocol ping` prints the
//! `BACKEND_URL` and `BOT_TOKEN` to give a bot, then serves until Ctrl-C, printing a line of
//! request and value counts every `--stats-interval` seconds.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use e2e::{Fixture, TestBackend, GENERATED_BOT};

#[derive(Parser, Debug)]
#[command(about = "A Grafolean test backend serving a generated fixture")]
struct Args {
    /// Number of accounts.
    #[arg(long, default_value_t = 1)]
    accounts: usize,
    /// Devices per account, each bound to the bot with one credential and one sensor.
    #[arg(long, default_value_t = 10)]
    entities_per_account: usize,
    /// Protocol of the bot, the credentials and the sensors (ping, snmp, netflow).
    #[arg(long, default_value = "ping")]
    protocol: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Seconds between statistics lines (0 = none).
    #[arg(long, default_value_t = 10)]
    stats_interval: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let fixture = Fixture::generated(args.accounts, args.entities_per_account, &args.protocol);
    let backend = match TestBackend::bind(args.listen, fixture).await {
        Ok(backend) => backend,
        Err(error) => {
            eprintln!("test-backend: cannot listen on {}: {error}", args.listen);
            std::process::exit(2);
        }
    };
    println!("BACKEND_URL={}", backend.url());
    println!("BOT_TOKEN={}", backend.token(GENERATED_BOT));
    println!(
        "serving {} accounts x {} {} devices; Ctrl-C to stop",
        args.accounts, args.entities_per_account, args.protocol
    );

    let mut ticker = tokio::time::interval(Duration::from_secs(args.stats_interval.max(1)));
    ticker.tick().await;
    let mut last_requests = 0;
    let mut last_values = 0;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick(), if args.stats_interval > 0 => {
                let requests = backend.request_mark();
                let values = backend.value_count();
                println!(
                    "requests {requests} (+{}), values {values} (+{})",
                    requests - last_requests,
                    values - last_values
                );
                last_requests = requests;
                last_values = values;
            }
        }
    }
    backend.stop().await;
}
