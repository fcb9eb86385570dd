//! The NetFlow bot on the collector framework: its settings, jobs (contract §5.5, §5.11) and
//! the listener as its background task.

use crate::cluster;
use crate::decode::DecoderLimits;
use crate::flow::exporter_address;
use crate::intake::Intake;
use crate::listener::{self, BoundListener, ListenerConfig};
use crate::windows::{EntityExporter, HeldOutcome, WindowClock, Windows, WINDOWS};
use collector::backend::BackendClient;
use collector::bot::Firing;
use collector::cluster::Membership;
use collector::{
    Anchor, Check, Collector, Context, EntityConfig, Event, EventStatus, JobError, JobSpec,
    StartError, Store, Value,
};
use futures::future::BoxFuture;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// The bot's own settings, each a flag and an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct NetflowArgs {
    /// UDP port NetFlow v5/v9 and IPFIX exporters send to (IPv4 and IPv6).
    #[arg(long, env = "NETFLOW_PORT", default_value_t = 2055)]
    pub netflow_port: u16,

    /// Receive threads, each with its own sockets (SO_REUSEPORT); default: the CPUs available
    /// to the process, at most 8.
    #[arg(long, env = "NETFLOW_THREADS", value_parser = clap::value_parser!(u64).range(1..=256))]
    pub netflow_threads: Option<u64>,

    /// Socket receive buffer in bytes (absorbs bursts; see net.core.rmem_max).
    #[arg(long, env = "NETFLOW_RECEIVE_BUFFER", default_value_t = 32 << 20)]
    pub netflow_receive_buffer: usize,

    /// Distinct keys (hosts, connections, ports, interfaces...) one aggregation window holds
    /// before the smaller half of its lists is folded away; bounds memory.
    #[arg(long, env = "NETFLOW_MAX_KEYS", default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1000..))]
    pub netflow_max_keys: u64,

    /// Do not listen on IPv6.
    #[arg(long, env = "NETFLOW_NO_IPV6")]
    pub netflow_no_ipv6: bool,

    /// Seconds in a minute of the bot's schedule: every window's interval and first run, and
    /// the exporter suggestions' interval, scale with it; labels and paths stay. For tests that
    /// cannot wait minutes (hidden from --help).
    #[arg(long, env = "NETFLOW_MINUTE", default_value_t = 60, hide = true, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub netflow_minute: u64,
}

/// The bot's validated configuration.
#[derive(Debug, Clone)]
pub struct NetflowConfig {
    pub listener: ListenerConfig,
    /// Distinct keys one aggregation window holds before folding.
    pub max_keys: usize,
    /// The schedule's minute (`NETFLOW_MINUTE`).
    pub clock: WindowClock,
}

impl NetflowArgs {
    /// The configuration from the flags (clap has already checked their ranges).
    pub fn config(&self) -> Result<NetflowConfig, StartError> {
        Ok(NetflowConfig {
            listener: ListenerConfig {
                port: self.netflow_port,
                threads: self
                    .netflow_threads
                    .map_or_else(default_threads, |n| n as usize),
                receive_buffer: self.netflow_receive_buffer,
                ipv6: !self.netflow_no_ipv6,
                limits: DecoderLimits::default(),
            },
            max_keys: self.netflow_max_keys as usize,
            clock: WindowClock::with_minute(self.netflow_minute),
        })
    }
}

/// What a NetFlow job does.
#[derive(Debug, Clone, PartialEq)]
pub enum NetflowJob {
    /// `maint/suggest_entities`: posts exporters that are no entity yet.
    SuggestEntities,
    /// `aggr/{label}/{account}`: reports window `window` (index into [`WINDOWS`]) of
    /// `account`, whose NetFlow entities are `entities` (so any change re-creates the job).
    Aggregate {
        window: usize,
        account: u64,
        entities: Vec<EntityConfig>,
    },
}

/// The NetFlow bot: the listener feeds the intake, the jobs report the windows.
pub struct NetflowBot {
    intake: Arc<Intake>,
    windows: Arc<Windows>,
    backend: Option<BackendClient>,
    store: Option<Store>,
    listener: Mutex<Option<BoundListener>>,
    cluster: Membership,
    clock: WindowClock,
}

/// The standalone jobs of `netflowbot --standalone`: the example file, so what users read is what runs.
const DEFAULT_JOBS: &str = include_str!("../example-jobs.toml");

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8)
}

/// The exporter address an entity stands for (see [`exporter_address`]).
fn entity_exporter(config: &EntityConfig) -> Result<EntityExporter, String> {
    Ok(EntityExporter {
        entity_id: config.entity_id,
        exporter: exporter_address(&config.details)?,
    })
}

/// Logs what a job refresh did with the flows held for exporters that were not entities.
fn log_held(outcome: &HeldOutcome) {
    if outcome.attributed > 0 {
        tracing::info!(
            records = outcome.attributed,
            "NetFlow records received before their exporter's entity was known are attributed"
        );
    }
    if outcome.discarded > 0 {
        let shown: Vec<String> = outcome
            .discarded_exporters
            .iter()
            .take(10)
            .map(IpAddr::to_string)
            .collect();
        let more = outcome
            .discarded_exporters
            .len()
            .saturating_sub(shown.len());
        tracing::info!(
            records = outcome.discarded,
            "NetFlow records left out: their exporters are no entity of any account: {}{}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
}

impl NetflowBot {
    /// Binds the UDP sockets (a busy port is a start-up error) and registers the counters.
    pub fn new(config: NetflowConfig, context: Context) -> Result<NetflowBot, StartError> {
        let NetflowConfig {
            listener,
            max_keys,
            clock,
        } = config;
        let threads = listener.threads;
        listener::ensure_port_free(listener.port, listener.ipv6)
            .map_err(StartError::bad_setting)?;
        let bound = listener::bind(&listener)?;
        tracing::info!(
            port = bound.port(),
            threads,
            "listening for NetFlow v5/v9 and IPFIX"
        );
        let intake = Arc::new(Intake::new(threads, max_keys));
        intake.counters.register(&context.metrics);
        Ok(NetflowBot {
            intake,
            windows: Arc::new(Windows::new()),
            backend: context.backend,
            store: Some(context.store),
            listener: Mutex::new(Some(bound)),
            cluster: context.cluster,
            clock,
        })
    }

    /// Posts, to every account the bot can list, a device for each exporter seen that is not
    /// among the account's devices yet (contract §5.11); a failed request ends the run.
    async fn suggest_entities(&self, firing: &Firing) -> Result<(), JobError> {
        let Some(backend) = &self.backend else {
            return Ok(());
        };
        let exporters = self.intake.exporters();
        if exporters.is_empty() {
            return Ok(());
        }
        let accounts = backend
            .list_accounts()
            .await
            .map_err(|e| JobError::new(format!("cannot list accounts: {e}")))?;
        for account in accounts {
            let entities = backend.list_entities(account).await.map_err(|e| {
                JobError::new(format!("cannot list entities of account {account}: {e}"))
            })?;
            let mut known_text = HashSet::new();
            let mut known_ip = HashSet::new();
            for entity in entities.iter().filter(|e| e.entity_type == "device") {
                if let Some(text) = entity.details.get("ipv4").and_then(|v| v.as_str()) {
                    known_text.insert(text.to_string());
                }
                if let Ok(ip) = exporter_address(&entity.details) {
                    known_ip.insert(ip);
                }
            }
            for exporter in &exporters {
                let text = exporter.to_string();
                if known_ip.contains(exporter) || known_text.contains(&text) {
                    continue;
                }
                let entity = json!({
                    "name": format!("{text} (NetFlow exporter)"),
                    "entity_type": "device",
                    "details": { "ipv4": text },
                });
                let id = backend.create_entity(account, &entity).await.map_err(|e| {
                    JobError::new(format!(
                        "cannot suggest exporter {text} to account {account}: {e}"
                    ))
                })?;
                tracing::info!(account, entity = id, exporter = %text, "exporter suggested as entity");
                let message = format!(
                    "exporter {text} sends flows and was added to account {account} as entity {id}"
                );
                let event =
                    Event::new(EventStatus::Info, "new NetFlow exporter suggested", message)
                        .about(id)
                        .tag("address", text.as_str())
                        .tag("account", account.to_string());
                firing.event(event);
            }
        }
        Ok(())
    }

    async fn aggregate(
        &self,
        window: usize,
        account: u64,
        configs: &[EntityConfig],
    ) -> Result<Vec<Value>, JobError> {
        let mut entities = Vec::with_capacity(configs.len());
        for config in configs {
            match entity_exporter(config) {
                Ok(entity) => entities.push(entity),
                Err(why) => tracing::warn!(
                    account,
                    entity = config.entity_id,
                    "{why}; no flows can be matched to it"
                ),
            }
        }
        let clustered = self.cluster.is_clustered();
        let intake = self.intake.clone();
        let windows = self.windows.clone();
        let (values, folded) = tokio::task::spawn_blocking(move || {
            windows.run(&intake, account, window, &entities, Instant::now())
        })
        .await
        .map_err(|e| JobError::new(format!("aggregation task failed: {e}")))?;
        self.intake.counters.keys_folded.inc_by(folded);
        let label = WINDOWS[window].label;
        Ok(values
            .into_iter()
            .filter(|v| !(clustered && cluster::is_account_total(label, &v.path)))
            .map(|v| Value::new(v.path, v.bytes as f64))
            .collect())
    }
}

/// 1-minute windows without a single flow before `NetflowExporterSilent` fires.
pub const SILENT_MINUTES: u32 = 3;

/// `NetflowExporterSilent` per entity from the values of a 1-minute window: bad for a minute in
/// which its exporter sent nothing (both directions' totals are 0); fires after
/// [`SILENT_MINUTES`] such minutes in a row, resolves at the first minute with flows.
pub fn silent_checks(values: &[Value], entities: &[EntityConfig]) -> Vec<Check> {
    entities
        .iter()
        .filter_map(|entity| {
            let address = entity.address()?.trim().to_string();
            let suffix = format!(".entity.{}", entity.entity_id);
            let bytes: f64 = values
                .iter()
                .filter(|v| v.path.split('.').count() == 5 && v.path.ends_with(&suffix))
                .map(|v| v.value)
                .sum();
            let check = if bytes > 0.0 {
                Check::good("NetflowExporterSilent")
            } else {
                let message =
                    format!("exporter {address} sent no flows in the last 1-minute window");
                Check::bad("NetflowExporterSilent", message)
            };
            Some(
                check
                    .in_a_row(SILENT_MINUTES)
                    .about(entity.entity_id, entity.name.clone())
                    .label("address", address),
            )
        })
        .collect()
}

impl Collector for NetflowBot {
    type Params = NetflowJob;

    fn protocol(&self) -> &'static str {
        "netflow"
    }

    fn configs_refreshed(&self, configs: &[EntityConfig], unreadable: &HashSet<u64>) {
        let mut accounts: BTreeMap<u64, Vec<EntityExporter>> = BTreeMap::new();
        for config in configs {
            let list = accounts.entry(config.account_id).or_default();
            list.extend(entity_exporter(config));
        }
        let outcome = self
            .windows
            .configure(&self.intake, &accounts, unreadable, Instant::now());
        let counters = &self.intake.counters;
        counters.records_held_attributed.inc_by(outcome.attributed);
        counters.records_unattributed.inc_by(outcome.discarded);
        counters.keys_folded.inc_by(outcome.folded);
        log_held(&outcome);
    }

    fn jobs(&self, configs: &[EntityConfig]) -> Vec<JobSpec<NetflowJob>> {
        let mut specs = Vec::new();
        if self.backend.is_some() {
            specs.push(
                JobSpec::new(
                    "maint/suggest_entities",
                    vec![self.clock.seconds(120)],
                    NetflowJob::SuggestEntities,
                )
                .anchored(Anchor::Unix(self.clock.seconds(10))),
            );
        }
        let mut accounts: BTreeMap<u64, Vec<EntityConfig>> = BTreeMap::new();
        let mut offered: BTreeMap<u64, usize> = BTreeMap::new();
        for config in configs {
            *offered.entry(config.account_id).or_default() += 1;
        }
        for config in cluster::owned_entities(configs, &self.cluster) {
            accounts
                .entry(config.account_id)
                .or_default()
                .push(config.clone());
        }
        for (account, entities) in accounts {
            if self.cluster.is_clustered() {
                let all = offered.get(&account).copied().unwrap_or_default();
                cluster::log_owned(account, &entities, all, &self.cluster);
            }
            for (window, spec) in WINDOWS.iter().enumerate() {
                specs.push(
                    JobSpec::new(
                        format!("aggr/{}/{account}", spec.label),
                        vec![self.clock.interval(spec)],
                        NetflowJob::Aggregate {
                            window,
                            account,
                            entities: entities.clone(),
                        },
                    )
                    .account(account)
                    .anchored(Anchor::FirstAfter(self.clock.first_run_after(spec)))
                    .on_every_member(),
                );
            }
        }
        specs
    }

    async fn perform(
        &self,
        job: &JobSpec<NetflowJob>,
        firing: &Firing,
    ) -> Result<Vec<Value>, JobError> {
        match &job.params {
            NetflowJob::SuggestEntities => self.suggest_entities(firing).await.map(|()| Vec::new()),
            NetflowJob::Aggregate {
                window,
                account,
                entities,
            } => {
                // A window's first run only starts it: it says nothing about silence.
                let started = self.windows.is_started(*account, *window);
                let values = self.aggregate(*window, *account, entities).await?;
                if *window == 0 && started {
                    for check in silent_checks(&values, entities) {
                        firing.check(check);
                    }
                }
                Ok(values)
            }
        }
    }

    fn background(&self, shutdown: CancellationToken) -> Option<BoxFuture<'static, ()>> {
        let bound = self
            .listener
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()?;
        let running = match bound.start(self.intake.clone(), self.store.clone()) {
            Ok(running) => running,
            Err(e) => {
                tracing::error!("NetFlow listener did not start: {e}");
                return None;
            }
        };
        Some(Box::pin(async move {
            shutdown.cancelled().await;
            let _ = tokio::task::spawn_blocking(move || running.stop()).await;
        }))
    }

    fn default_jobs(&self) -> Option<&'static str> {
        Some(DEFAULT_JOBS)
    }

    fn describe(&self, params: &NetflowJob) -> collector::Summary {
        crate::status::describe(params, self.clock)
    }

    fn left_out(&self, configs: &[EntityConfig]) -> Vec<collector::LeftOut> {
        crate::status::left_out(configs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exporter(id: u64, address: &str) -> EntityConfig {
        EntityConfig {
            entity_id: id,
            account_id: 1,
            name: format!("exporter {id}"),
            entity_type: "device".into(),
            parent: None,
            details: json!({ "ipv4": address }),
            credential_details: json!({}).into(),
            sensors: Vec::new(),
        }
    }

    /// What each form of `details.ipv4` makes of an entity: the exporter address its flows come from.
    #[test]
    fn details_ipv4_forms() {
        let cases: [(&str, Option<&str>); 8] = [
            ("192.0.2.1", Some("192.0.2.1")),
            (" 192.0.2.1 ", Some("192.0.2.1")),
            ("192.0.2.1:2055", Some("192.0.2.1")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]:9995", Some("2001:db8::1")),
            ("fe80::1%eth0", Some("fe80::1")),
            ("::ffff:192.0.2.9", Some("192.0.2.9")),
            ("router.example:2055", None),
        ];
        for (text, expected) in cases {
            let found = entity_exporter(&exporter(1, text)).ok().map(|e| e.exporter);
            assert_eq!(found, expected.map(|ip| ip.parse().unwrap()), "{text:?}");
        }
    }

    #[test]
    fn an_exporter_without_flows_in_the_minute_is_bad_with_its_own_rule() {
        let values = vec![
            Value::new("netflow.1min.ingress.entity.7", 1500.0),
            Value::new("netflow.1min.egress.entity.7", 0.0),
            Value::new("netflow.1min.ingress.entity.8", 0.0),
            Value::new("netflow.1min.egress.entity.8", 0.0),
            Value::new("netflow.1min.ingress.entity.78.if.3", 99.0),
            Value::new("netflow.1min.ingress", 1500.0),
        ];
        let entities = [
            exporter(7, "10.0.0.7"),
            exporter(8, "10.0.0.8"),
            exporter(78, "10.0.0.78"),
        ];
        let checks = silent_checks(&values, &entities);
        let bad: Vec<(u64, bool)> = checks
            .iter()
            .map(|c| (c.entity.unwrap_or(0), c.bad))
            .collect();
        assert_eq!(bad, [(7, false), (8, true), (78, true)]);
        assert!(checks
            .iter()
            .all(|c| c.in_a_row == Some(SILENT_MINUTES) && c.name == "NetflowExporterSilent"));
        assert_eq!(checks[1].labels["address"], "10.0.0.8");
        assert_eq!(checks[1].entity_name.as_deref(), Some("exporter 8"));
    }
}
