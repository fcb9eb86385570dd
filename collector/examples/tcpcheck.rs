//! A complete small bot on the collector framework: checks that TCP ports accept connections.
//!
//! Run it with no backend: `cargo run -p collector --example tcpcheck -- --standalone`
//! or against Grafolean with `BACKEND_URL` and `BOT_TOKEN` (protocol key `tcpcheck`).
//!
//! Entity `details.ipv4` is the host; each sensor's `details.port` is a port to check;
//! the credential's `details.timeout` (seconds, default 2) bounds each attempt.
//! Values: `entity.{id}.tcpcheck.{port}.ok` (1 or 0) and `.seconds` (connect time, on success).
//! Check: `TcpPortClosed` per port (labels `address`, `port`), bad while the port refuses.

use clap::Parser;
use collector::details::number;
use collector::{
    Check, Collector, Context, EntityConfig, Firing, JobError, JobSpec, Settings, Value,
};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "TCP connect check bot (an example for the collector framework)")]
struct Cli {
    #[command(flatten)]
    settings: Settings,
}

/// What one job needs: where to connect, which ports at which interval, how long to wait.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    entity_id: u64,
    host: String,
    timeout: Duration,
    /// (port, interval in seconds) per sensor.
    ports: Vec<(u16, u64)>,
}

struct TcpCheck;

impl Collector for TcpCheck {
    type Params = Target;

    fn protocol(&self) -> &'static str {
        "tcpcheck"
    }

    fn jobs(&self, configs: &[EntityConfig]) -> Vec<JobSpec<Target>> {
        configs
            .iter()
            .filter_map(|entity| {
                // `details.ipv4` may carry a port (for SNMP on the same device): the host is enough.
                let host = entity.parsed_address().ok()?.host.to_string();
                let ports: Vec<(u16, u64)> = entity
                    .sensors
                    .iter()
                    .filter_map(|s| Some((number(s.details.get("port")?)? as u16, s.interval?)))
                    .collect();
                let timeout = entity
                    .credential_details
                    .get("timeout")
                    .and_then(number)
                    .unwrap_or(2.0);
                let target = Target {
                    entity_id: entity.entity_id,
                    host,
                    timeout: Duration::from_secs_f64(timeout.clamp(0.1, 60.0)),
                    ports: ports.clone(),
                };
                let intervals = ports.iter().map(|(_, interval)| *interval).collect();
                Some(
                    JobSpec::new(entity.entity_id.to_string(), intervals, target)
                        .account(entity.account_id)
                        .entity(entity.entity_id)
                        .entity_name(&entity.name),
                )
            })
            .collect()
    }

    async fn perform(
        &self,
        job: &JobSpec<Target>,
        firing: &Firing,
    ) -> Result<Vec<Value>, JobError> {
        let target = &job.params;
        let mut values = Vec::new();
        for &(port, interval) in &target.ports {
            if !firing.runs(Some(interval)) {
                continue;
            }
            let prefix = format!("entity.{}.tcpcheck.{port}", target.entity_id);
            let started = Instant::now();
            let address = format!("{}:{port}", target.host);
            let connect = tokio::net::TcpStream::connect((target.host.as_str(), port));
            let outcome = tokio::time::timeout(target.timeout, connect).await;
            let check = match &outcome {
                Ok(Ok(_)) => Check::good("TcpPortClosed"),
                Ok(Err(e)) => Check::bad("TcpPortClosed", format!("{address} refused: {e}")),
                Err(_) => Check::bad("TcpPortClosed", format!("{address}: no answer")),
            };
            firing.check(
                check
                    .label("address", &target.host)
                    .label("port", port.to_string()),
            );
            match outcome {
                Ok(Ok(_stream)) => {
                    values.push(Value::new(format!("{prefix}.ok"), 1.0));
                    values.push(Value::new(
                        format!("{prefix}.seconds"),
                        started.elapsed().as_secs_f64(),
                    ));
                }
                Ok(Err(e)) => {
                    tracing::info!(entity = target.entity_id, port, "connect failed: {e}");
                    values.push(Value::new(format!("{prefix}.ok"), 0.0));
                }
                Err(_) => values.push(Value::new(format!("{prefix}.ok"), 0.0)),
            }
        }
        Ok(values)
    }

    fn describe(&self, target: &Target) -> collector::Summary {
        let ports: Vec<String> = target
            .ports
            .iter()
            .map(|(p, i)| format!("{p} every {i} s"))
            .collect();
        collector::Summary::default()
            .item("host", &target.host)
            .item("ports", ports.join(", "))
            .item("timeout", format!("{} s", target.timeout.as_secs_f64()))
    }

    fn default_jobs(&self) -> Option<&'static str> {
        Some(
            r#"
[[credentials]]
id = 1
protocol = "tcpcheck"
details = { timeout = "1.0" }

[[sensors]]
id = 10
protocol = "tcpcheck"
default_interval = 5
details = { port = 22 }

[[entities]]
id = 100
name = "this machine"
details = { ipv4 = "127.0.0.1" }
protocols.tcpcheck = { credential = 1, sensors = [{ sensor = 10 }] }
"#,
        )
    }
}

fn main() -> ExitCode {
    let cli: Cli = collector::cli::parse();
    collector::run(cli.settings, |_context: Context| Ok(TcpCheck))
}
