//! The SNMP bot on the collector framework: job specs from entity configs, and what a firing
//! of each job does.

use crate::counters::CounterStore;
use crate::interfaces::{InterfaceJob, InterfaceSync};
use crate::metrics::SnmpMetrics;
use crate::sensor::{EntityPoll, Poller, SensorCache};
use crate::session::{des_salt_state, Credential, SnmpEngine, SnmpError, SnmpSettings};
use collector::{
    Check, Collector, Context, EntityConfig, Event, EventStatus, Firing, JobError, JobSpec,
    StartError, Value,
};
use std::sync::Arc;
use std::time::Duration;

/// Interface sync runs every 5 minutes (contract §5.5).
pub const INTERFACE_SYNC_INTERVAL: u64 = 300;

/// The bot's command-line flags and environment variables, flattened next to
/// `collector::Settings` in `main`.
#[derive(Debug, Clone, clap::Args)]
pub struct SnmpArgs {
    /// Seconds to wait for an SNMP answer before retrying.
    #[arg(long, env = "SNMP_TIMEOUT", default_value_t = 1.0)]
    pub snmp_timeout: f64,

    /// Retries after an SNMP timeout.
    #[arg(long, env = "SNMP_RETRIES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=16))]
    pub snmp_retries: u32,

    /// SNMP requests in flight at once, over all agents.
    #[arg(long, env = "SNMP_MAX_IN_FLIGHT", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    pub snmp_max_in_flight: u64,

    /// Devices polled or synced at once; bounds the memory of walks in progress (a full
    /// ifTable + ifXTable walk of 48 ports holds about 200 KB until the firing ends).
    #[arg(long, env = "SNMP_MAX_DEVICES", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub snmp_max_devices: u64,

    /// GETBULK max-repetitions of walks (SNMPv2c/v3).
    #[arg(long, env = "SNMP_MAX_REPETITIONS", default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub snmp_max_repetitions: u32,

    /// Variable bindings one SNMP request asks for at most: the OIDs of a merged GET, the
    /// columns times repetitions of a GETBULK. Lowered per agent by itself when an agent's
    /// answers come back truncated or tooBig.
    #[arg(long, env = "SNMP_MAX_VARBINDS", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub snmp_max_varbinds: u64,

    /// Variable bindings of one row-chain GETNEXT at most: after a table's first walked column,
    /// its other columns are checked row by row against its rows, many rows a request. Lowered
    /// per agent by itself when an agent answers tooBig. 0 turns row chains off.
    #[arg(long, env = "SNMP_MAX_CHAIN_VARBINDS", default_value_t = 256, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub snmp_max_chain_varbinds: u64,

    /// Seconds between two interface syncs of a device (the original bot: 300).
    #[arg(long, env = "SNMP_INTERFACE_INTERVAL", default_value_t = INTERFACE_SYNC_INTERVAL, value_parser = clap::value_parser!(u64).range(1..))]
    pub snmp_interface_interval: u64,

    /// A walk returning more rows than this fails (protects against broken agents).
    #[arg(long, env = "SNMP_MAX_WALK_ROWS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub snmp_max_walk_rows: u64,
}

impl SnmpArgs {
    /// The validated configuration, or which setting is out of range (exit code 2).
    pub fn config(&self) -> Result<SnmpConfig, StartError> {
        if !(self.snmp_timeout.is_finite() && self.snmp_timeout > 0.0 && self.snmp_timeout <= 600.0)
        {
            return Err(StartError::bad_setting(
                "SNMP_TIMEOUT must be a number of seconds above 0 (at most 600)",
            ));
        }
        Ok(SnmpConfig {
            snmp: SnmpSettings {
                timeout: Duration::from_secs_f64(self.snmp_timeout),
                retries: self.snmp_retries,
                max_in_flight: self.snmp_max_in_flight as usize,
                max_devices: self.snmp_max_devices as usize,
                max_repetitions: self.snmp_max_repetitions,
                max_varbinds: self.snmp_max_varbinds as usize,
                max_chain_varbinds: self.snmp_max_chain_varbinds as usize,
                max_walk_rows: self.snmp_max_walk_rows as usize,
            },
            interface_interval: self.snmp_interface_interval,
        })
    }
}

/// The bot's validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SnmpConfig {
    pub snmp: SnmpSettings,
    /// Seconds between interface syncs of a device (the original: 300).
    pub interface_interval: u64,
}

/// How often counter samples are synced to disk; between syncs they are committed without fsync.
const COUNTER_SYNC_EVERY: Duration = Duration::from_secs(30);
/// Counter samples not updated for this long belong to removed entities or sensors.
const COUNTER_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The parameters of one SNMP job.
#[derive(Debug, Clone, PartialEq)]
pub enum SnmpJob {
    /// `"{entity_id}"`: poll the entity's sensors.
    Poll(EntityPoll),
    /// `"{entity_id}-interfaces"`: sync the device's interface entities.
    Interfaces(InterfaceJob),
}

/// The SNMP bot.
pub struct SnmpBot {
    engine: Arc<SnmpEngine>,
    poller: Poller,
    interfaces: Option<InterfaceSync>,
    interface_interval: u64,
}

/// Counter samples live in the framework's store.
impl crate::counters::DatabaseHandle for collector::Store {
    fn database(&self) -> &redb::Database {
        collector::Store::database(self)
    }
}

impl SnmpBot {
    /// Builds the bot: binds the shared SNMP socket, opens the counter state and registers the
    /// bot's metrics. Must run inside the framework's runtime (it spawns the socket's receiver).
    pub fn new(config: SnmpConfig, context: Context) -> Result<SnmpBot, StartError> {
        if config.interface_interval == 0 {
            return Err(StartError::bad_setting(
                "the interface sync interval must be at least 1 second",
            ));
        }
        let des_salt = match des_salt_state(context.store.database()) {
            Ok(state) => Some(state),
            Err(error) => {
                tracing::warn!("SNMPv3 DES privacy is unavailable: {error}");
                None
            }
        };
        let metrics = SnmpMetrics::default();
        metrics.register(&context.metrics);

        // Binding never waits (the address is literal), so blocking on it is instant; the
        // framework builds bots synchronously.
        let engine = Arc::new(futures::executor::block_on(SnmpEngine::new(
            config.snmp,
            des_salt,
            metrics.requests,
        ))?);
        let counters = CounterStore::new(Arc::new(context.store.clone()), COUNTER_SYNC_EVERY);
        match counters.migrate() {
            Ok(0) => {}
            Ok(moved) => tracing::info!(moved, "counter samples moved to the column store"),
            Err(error) => {
                tracing::warn!("cannot move the counter samples of an earlier version: {error}")
            }
        }
        match counters.prune(COUNTER_MAX_AGE) {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "old counter samples removed"),
            Err(error) => tracing::warn!("cannot prune old counter samples: {error}"),
        }
        let interfaces = context
            .backend
            .map(|backend| InterfaceSync::new(backend, metrics.interfaces));
        Ok(SnmpBot {
            poller: Poller {
                engine: engine.clone(),
                counters,
                metrics: metrics.sensors,
            },
            engine,
            interfaces,
            interface_interval: config.interface_interval,
        })
    }
}

impl Drop for SnmpBot {
    /// Counter samples committed since the last sync reach the disk here, at shutdown.
    fn drop(&mut self) {
        if let Err(error) = self.poller.counters.flush() {
            tracing::warn!("counter samples not synced at shutdown: {error}");
        }
    }
}

/// Polling and interface jobs of one entity (contract §5.5), without any I/O. Interface jobs
/// run every `interface_interval` seconds; `None` leaves them out.
pub fn entity_jobs(
    entity: &EntityConfig,
    interface_interval: Option<u64>,
) -> Vec<JobSpec<SnmpJob>> {
    entity_jobs_sharing(entity, interface_interval, &mut SensorCache::default())
}

/// [`entity_jobs`] with the sensors parsed through `sensors`, shared by the entities of one
/// refresh.
pub fn entity_jobs_sharing(
    entity: &EntityConfig,
    interface_interval: Option<u64>,
    sensors: &mut SensorCache,
) -> Vec<JobSpec<SnmpJob>> {
    let credential = Credential::from_details(&entity.credential_details);
    let address = entity.address().map(str::to_string);
    let poll = EntityPoll {
        entity_id: entity.entity_id,
        address: address.clone(),
        credential: credential.clone(),
        sensors: entity.sensors.iter().map(|s| sensors.parse(s)).collect(),
    };
    let mut jobs = Vec::with_capacity(2);
    let intervals = poll.intervals();
    // Sensors without any interval cannot be scheduled; an entity with only those has no
    // polling job, but its interface job still runs (as in the original).
    if !intervals.is_empty() {
        jobs.push(
            JobSpec::new(entity.entity_id.to_string(), intervals, SnmpJob::Poll(poll))
                .account(entity.account_id)
                .entity(entity.entity_id)
                .entity_name(&entity.name),
        );
    }
    if let Some(interval) = interface_interval {
        jobs.push(
            JobSpec::new(
                format!("{}-interfaces", entity.entity_id),
                vec![interval],
                SnmpJob::Interfaces(InterfaceJob {
                    entity_id: entity.entity_id,
                    account_id: entity.account_id,
                    address,
                    credential,
                }),
            )
            .account(entity.account_id)
            .entity(entity.entity_id),
        );
    }
    jobs
}

impl Collector for SnmpBot {
    type Params = SnmpJob;

    fn protocol(&self) -> &'static str {
        "snmp"
    }

    fn jobs(&self, configs: &[EntityConfig]) -> Vec<JobSpec<SnmpJob>> {
        // Without a backend (standalone) there are no interface entities to sync.
        let interface_interval = self.interfaces.as_ref().map(|_| self.interface_interval);
        let mut sensors = SensorCache::default();
        configs
            .iter()
            .flat_map(|entity| entity_jobs_sharing(entity, interface_interval, &mut sensors))
            .collect()
    }

    async fn perform(
        &self,
        job: &JobSpec<SnmpJob>,
        firing: &Firing,
    ) -> Result<Vec<Value>, JobError> {
        match &job.params {
            SnmpJob::Poll(entity) => {
                let result = self
                    .poller
                    .poll_noting_restart(entity, |i| firing.runs(i))
                    .await;
                let address = entity.address.as_deref().unwrap_or("");
                if any_due(entity, firing) {
                    for check in agent_checks(result.as_ref().err(), address) {
                        firing.check(check);
                    }
                }
                let (values, restarted) = result.map_err(|e| JobError::new(e.to_string()))?;
                if restarted {
                    let message =
                        format!("the SNMP agent at {address} restarted (sysUpTime went back)");
                    firing.event(
                        Event::new(EventStatus::Warning, "SNMP agent restarted", message)
                            .tag("address", address),
                    );
                }
                Ok(values)
            }
            SnmpJob::Interfaces(interface_job) => match &self.interfaces {
                Some(sync) => sync
                    .run(&self.engine, interface_job, firing)
                    .await
                    .map(|_| Vec::new())
                    .map_err(JobError::from),
                None => Ok(Vec::new()),
            },
        }
    }

    fn default_jobs(&self) -> Option<&'static str> {
        Some(DEFAULT_JOBS)
    }

    fn describe(&self, params: &SnmpJob) -> collector::Summary {
        crate::status::describe(params)
    }

    fn left_out(&self, configs: &[EntityConfig]) -> Vec<collector::LeftOut> {
        crate::status::left_out(configs, self.interfaces.is_some())
    }
}

/// Whether a sensor of the entity is due at this firing (otherwise the agent was not asked).
fn any_due(entity: &EntityPoll, firing: &Firing) -> bool {
    entity.sensors.iter().any(|sensor| {
        firing.runs(match sensor {
            Ok(spec) => spec.interval,
            Err(problem) => problem.interval,
        })
    })
}

/// `SnmpAgentUnreachable` (every request timed out: a firing stops at the first timeout) and
/// `SnmpAuthFailed` (SNMPv3 credentials refused) from how a poll ended. A configuration problem
/// says nothing about the agent: no check (the run fails, which `JobFailing` reports). A timeout
/// says nothing about the credentials: no `SnmpAuthFailed`, so an authentication alert neither
/// resolves nor fires again because the agent was down for a while.
pub fn agent_checks(error: Option<&SnmpError>, address: &str) -> Vec<Check> {
    let check = |name: &str, bad: Option<String>| {
        match bad {
            Some(message) => Check::bad(name, message),
            None => Check::good(name),
        }
        .label("address", address)
    };
    let auth = match error {
        Some(SnmpError::Config(_)) => return Vec::new(),
        Some(e @ SnmpError::Timeout { .. }) => {
            return vec![check("SnmpAgentUnreachable", Some(e.to_string()))]
        }
        Some(e @ SnmpError::Authentication { .. }) => Some(e.to_string()),
        _ => None,
    };
    // Any answer, even a refusal, shows the agent reachable.
    vec![
        check("SnmpAgentUnreachable", None),
        check("SnmpAuthFailed", auth),
    ]
}

/// The standalone example: polls sysUpTime and the interface traffic counters of a local
/// snmpd (`apt-get install snmpd`; its default config lets 127.0.0.1 read with community
/// `public`).
pub const DEFAULT_JOBS: &str = include_str!("../example-jobs.toml");

#[cfg(test)]
mod tests {
    use super::*;
    use collector::SensorConfig;
    use serde_json::json;

    fn outcomes(error: Option<&SnmpError>) -> Vec<(String, bool)> {
        agent_checks(error, "192.0.2.1")
            .into_iter()
            .map(|c| (c.name, c.bad))
            .collect()
    }

    /// A timeout says nothing about the credentials, so an authentication alert outlives an
    /// agent outage; an answer of any kind shows the agent reachable.
    #[test]
    fn agent_checks_follow_what_the_poll_learnt() {
        let timeout = SnmpError::Timeout {
            target: "192.0.2.1:161".into(),
            retries: 3,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            outcomes(Some(&timeout)),
            [("SnmpAgentUnreachable".to_string(), true)]
        );
        let refused = SnmpError::Authentication {
            target: "192.0.2.1:161".into(),
            user: "monitor".into(),
            reason: "wrong digest".into(),
        };
        assert_eq!(
            outcomes(Some(&refused)),
            [
                ("SnmpAgentUnreachable".to_string(), false),
                ("SnmpAuthFailed".to_string(), true)
            ]
        );
        assert_eq!(
            outcomes(None),
            [
                ("SnmpAgentUnreachable".to_string(), false),
                ("SnmpAuthFailed".to_string(), false)
            ]
        );
        assert!(outcomes(Some(&SnmpError::Config("no community".into()))).is_empty());
    }

    fn entity(sensor_intervals: &[Option<u64>]) -> EntityConfig {
        EntityConfig {
            entity_id: 42,
            account_id: 7,
            name: "router".into(),
            entity_type: "device".into(),
            parent: None,
            details: json!({"ipv4": "192.0.2.1:1161"}),
            credential_details: json!({"version": "snmpv2c", "snmpv12_community": "public"}).into(),
            sensors: sensor_intervals
                .iter()
                .enumerate()
                .map(|(i, interval)| SensorConfig {
                    sensor_id: i as u64 + 1,
                    interval: *interval,
                    details: json!({"oids": [{"oid": "1.3.6.1.2.1.1.3.0", "fetch_method": "get"}],
                        "expression": "$1", "output_path": "sysuptime"})
                    .into(),
                })
                .collect(),
        }
    }

    #[test]
    fn polling_and_interface_jobs() {
        let jobs = entity_jobs(
            &entity(&[Some(60), Some(30), None, Some(60)]),
            Some(INTERFACE_SYNC_INTERVAL),
        );
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].id, "42");
        assert_eq!(jobs[0].intervals, vec![30, 60]);
        assert_eq!((jobs[0].account_id, jobs[0].entity_id), (Some(7), Some(42)));
        assert_eq!(jobs[1].id, "42-interfaces");
        assert_eq!(jobs[1].intervals, vec![300]);
        let SnmpJob::Interfaces(interfaces) = &jobs[1].params else {
            panic!()
        };
        assert_eq!(interfaces.address.as_deref(), Some("192.0.2.1:1161"));
    }

    #[test]
    fn only_null_intervals_leave_just_the_interface_job() {
        let jobs = entity_jobs(&entity(&[None]), Some(300));
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].id, "42-interfaces");
        assert!(entity_jobs(&entity(&[None]), None).is_empty());
    }

    #[test]
    fn jobs_are_pure() {
        let config = entity(&[Some(60)]);
        assert_eq!(
            entity_jobs(&config, Some(300)),
            entity_jobs(&config, Some(300))
        );
        let mut changed = config.clone();
        Arc::make_mut(&mut changed.sensors[0].details)["expression"] = json!("$1 / 100");
        assert_ne!(
            entity_jobs(&config, Some(300))[0],
            entity_jobs(&changed, Some(300))[0]
        );
    }

    #[test]
    fn flags_become_settings() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            snmp: SnmpArgs,
        }
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("snmpbot").chain(args.iter().copied()))
        };
        let defaults = parse(&[]).unwrap().snmp.config().unwrap();
        assert_eq!(defaults.snmp, SnmpSettings::default());
        assert_eq!(defaults.interface_interval, 300);
        let custom = parse(&[
            "--snmp-timeout",
            "0.25",
            "--snmp-retries",
            "0",
            "--snmp-interface-interval",
            "5",
        ])
        .unwrap()
        .snmp
        .config()
        .unwrap();
        assert_eq!(custom.snmp.timeout, Duration::from_millis(250));
        assert_eq!((custom.snmp.retries, custom.interface_interval), (0, 5));
        assert!(parse(&["--snmp-timeout=-1"])
            .unwrap()
            .snmp
            .config()
            .is_err());
        assert!(parse(&["--snmp-retries", "17"]).is_err());
        assert!(parse(&["--snmp-max-in-flight", "0"]).is_err());
    }

    #[test]
    fn the_default_jobs_file_parses_into_snmp_jobs() {
        let accounts = collector::standalone::parse_jobs_file(DEFAULT_JOBS).unwrap();
        let (configs, problems) = collector::entity::build_configs("snmp", None, 1, &accounts[&1]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(configs.len(), 1);
        let jobs = entity_jobs(&configs[0], None);
        assert_eq!(jobs.len(), 1);
        let SnmpJob::Poll(poll) = &jobs[0].params else {
            panic!()
        };
        assert!(poll.credential.is_ok());
        assert!(poll.sensors.iter().all(Result::is_ok), "{:?}", poll.sensors);
    }
}
