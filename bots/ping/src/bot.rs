//! The ping bot on the collector framework: one job per device entity with the `ping` protocol
//! (job id `"{entity_id}"`, contract §5.5 and §5.10), run on the shared ICMP engine.

use collector::{
    Check, Collector, Context, EntityConfig, Firing, Intervals, JobError, JobSpec, StartError,
    Value,
};
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::credential::ProbeSettings;
use crate::pinger::{PingCounters, Pinger, PingerConfig, DEFAULT_MAX_RATE, DEFAULT_RECEIVE_BUFFER};
use crate::probe::probe;
use crate::target::Target;

/// The ping bot's own settings, next to the framework's (`--help` lists both).
#[derive(Debug, Clone, clap::Args)]
pub struct PingArgs {
    /// Receive buffer of each ICMP socket, in bytes. Replies to a burst of requests wait here;
    /// about 32 MiB holds a burst of 50,000. Above `net.core.rmem_max` it needs CAP_NET_ADMIN.
    #[arg(long, env = "ICMP_RECEIVE_BUFFER", default_value_t = DEFAULT_RECEIVE_BUFFER)]
    pub icmp_receive_buffer: usize,
    /// Echo requests sent per second at most, by the whole bot. Requests of jobs that fire
    /// together leave as a paced stream at this rate; each packet's timeout counts from its own
    /// send. Lower it for links or firewalls that rate-limit ICMP.
    #[arg(long, env = "PING_MAX_RATE", default_value_t = DEFAULT_MAX_RATE,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub ping_max_rate: u32,
}

/// What one job needs, compared at every refresh: a change re-anchors the job.
#[derive(Debug, Clone, PartialEq)]
pub struct PingParams {
    pub entity_id: u64,
    /// The sensors' resolved intervals; a firing probes when one of them is due. Kept inline
    /// (no allocation of their own) because every run reads them.
    pub intervals: Intervals,
    /// Where and how to ping, or why this entity cannot be pinged (reported at every firing).
    pub plan: Result<(Target, ProbeSettings), String>,
}

impl PingArgs {
    /// The engine's configuration from the flags (clap has already checked their ranges).
    pub fn config(&self) -> Result<PingerConfig, StartError> {
        Ok(PingerConfig {
            receive_buffer: self.icmp_receive_buffer,
            max_rate: self.ping_max_rate,
        })
    }
}

/// The bot: job building and the shared ICMP engine.
pub struct PingBot {
    pinger: Arc<Pinger>,
}

/// The standalone jobs of `pingbot --standalone`: the example file, so what users read is what runs.
pub const DEFAULT_JOBS: &str = include_str!("../example-jobs.toml");

impl PingBot {
    /// Opens the ICMP sockets and registers the engine's counters. Fails, saying what to
    /// grant, when the process may open no ICMP socket at all.
    pub fn new(config: PingerConfig, context: Context) -> Result<PingBot, StartError> {
        let counters = PingCounters::default();
        counters.register(&context.metrics);
        let pinger = Pinger::open(&config, counters).map_err(|e| e.to_string())?;
        for status in pinger.status() {
            match &status.socket {
                Ok((kind, buffer)) => tracing::info!(
                    family = status.family,
                    receive_buffer = buffer,
                    max_rate = config.max_rate,
                    "ICMP {kind} socket open"
                ),
                Err(err) => tracing::warn!(
                    family = status.family,
                    "no ICMP socket, entities with such addresses cannot be pinged: {err}"
                ),
            }
        }
        Ok(PingBot {
            pinger: Arc::new(pinger),
        })
    }

    /// A bot on an engine opened elsewhere (benchmarks, tests).
    pub fn with_pinger(pinger: Arc<Pinger>) -> PingBot {
        PingBot { pinger }
    }
}

/// Builds the job of one entity, or `None` when none of its sensors has an interval
/// (contract §5.3: such an entity's job cannot be scheduled).
pub fn job_of(entity: &EntityConfig) -> Option<JobSpec<PingParams>> {
    let unscheduled = entity
        .sensors
        .iter()
        .filter(|s| s.interval.is_none())
        .count();
    if unscheduled > 0 {
        tracing::warn!(
            entity = entity.entity_id,
            sensors = unscheduled,
            "ping sensors without an interval (neither on the entity nor a sensor default) \
             cannot be scheduled and are left out"
        );
    }
    let intervals: Vec<u64> = entity
        .sensors
        .iter()
        .filter_map(|s| s.interval)
        .filter(|&i| i > 0)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let smallest = *intervals.first()?;
    let plan = Target::from_details(&entity.details)
        .map_err(|e| e.to_string())
        .and_then(|target| {
            ProbeSettings::from_details(&entity.credential_details)
                .map(|settings| (target, settings))
                .map_err(|e| e.to_string())
        });
    match &plan {
        Err(problem) => tracing::warn!(
            entity = entity.entity_id,
            "entity cannot be pinged, its runs will fail: {problem}"
        ),
        Ok((_, settings)) if settings.worst_case_duration().as_secs_f64() > smallest as f64 => {
            tracing::warn!(
                entity = entity.entity_id,
                worst_case_seconds = settings.worst_case_duration().as_secs_f64(),
                interval = smallest,
                "a run of this entity can take longer than its interval; a run still going \
                 when the next is due makes that firing skip, and the job timeout \
                 (JOB_TIMEOUT, default the interval) cancels it"
            )
        }
        Ok(_) => {}
    }
    let params = PingParams {
        entity_id: entity.entity_id,
        intervals: Intervals::from_slice(&intervals),
        plan,
    };
    Some(
        JobSpec::new(entity.entity_id.to_string(), intervals, params)
            .account(entity.account_id)
            .entity(entity.entity_id)
            .entity_name(&entity.name),
    )
}

impl Collector for PingBot {
    type Params = PingParams;

    fn protocol(&self) -> &'static str {
        "ping"
    }

    fn jobs(&self, configs: &[EntityConfig]) -> Vec<JobSpec<PingParams>> {
        configs.iter().filter_map(job_of).collect()
    }

    /// One entity's job from its config alone: each config goes as its job is made.
    fn jobs_from(&self, configs: Vec<EntityConfig>) -> Vec<JobSpec<PingParams>> {
        let mut jobs = Vec::with_capacity(configs.len());
        jobs.extend(configs.into_iter().filter_map(|config| job_of(&config)));
        jobs
    }

    async fn perform(
        &self,
        job: &JobSpec<PingParams>,
        firing: &Firing,
    ) -> Result<Vec<Value>, JobError> {
        let params = &job.params;
        if !params.intervals.iter().any(|&i| firing.runs(Some(i))) {
            return Ok(Vec::new());
        }
        let (target, settings) = params.plan.as_ref().map_err(|e| JobError::new(e.clone()))?;
        let destination = target
            .resolve()
            .await
            .map_err(|e| JobError::new(e.to_string()))?;
        self.pinger
            .check_family(destination.ip)
            .map_err(|e| JobError::new(format!("cannot ping {destination}: {e}")))?;
        let report = probe(&self.pinger, destination, settings).await;
        if report.replies() < report.packets.len() {
            if let Some(problem) = report.first_problem() {
                tracing::info!(
                    entity = params.entity_id,
                    target = %destination,
                    lost = report.packets.len() - report.replies(),
                    "packets lost: {problem}"
                );
            }
        }
        // A good check's label and name cost allocations at every run; skip it when unread.
        if report.replies() == 0 || firing.good_checks_read() {
            firing.check(host_down_check(&report, target, &destination));
        }
        Ok(report.values(params.entity_id))
    }

    fn default_jobs(&self) -> Option<&'static str> {
        Some(DEFAULT_JOBS)
    }

    /// A run's first request leaves at once only if the engine's rate allows it: runs that
    /// fall due together start at that rate rather than all at the top of the second.
    fn max_starts_per_second(&self) -> Option<u32> {
        Some(self.pinger.max_rate())
    }

    fn describe(&self, params: &PingParams) -> collector::Summary {
        crate::status::describe(params)
    }

    fn left_out(&self, configs: &[EntityConfig]) -> Vec<collector::LeftOut> {
        crate::status::left_out(configs)
    }
}

/// `PingHostDown`: bad when no packet of the firing was answered, good at any answer.
fn host_down_check(
    report: &crate::probe::ProbeReport,
    target: &Target,
    destination: &impl std::fmt::Display,
) -> Check {
    let check = if report.replies() == 0 {
        let sent = report.packets.len();
        Check::bad(
            "PingHostDown",
            format!("none of {sent} packets to {destination} was answered"),
        )
    } else {
        Check::good("PingHostDown")
    };
    check.label("address", target.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use collector::entity::build_configs;
    use collector::standalone::parse_jobs_file;
    use collector::{Firing, SensorConfig};
    use serde_json::json;
    use std::time::Duration;

    fn entity(
        id: u64,
        address: &str,
        credential: serde_json::Value,
        intervals: &[Option<u64>],
    ) -> EntityConfig {
        EntityConfig {
            entity_id: id,
            account_id: 77,
            name: format!("device {id}"),
            entity_type: "device".into(),
            parent: None,
            details: json!({ "ipv4": address }),
            credential_details: credential.into(),
            sensors: intervals
                .iter()
                .enumerate()
                .map(|(i, &interval)| SensorConfig {
                    sensor_id: 500 + i as u64,
                    details: json!({}).into(),
                    interval,
                })
                .collect(),
        }
    }

    fn jobs_of_file(text: &str) -> Vec<JobSpec<PingParams>> {
        let accounts = parse_jobs_file(text).expect("jobs file parses");
        let mut configs = Vec::new();
        for (&account, data) in &accounts {
            let (mut account_configs, problems) = build_configs("ping", None, account, data);
            assert!(problems.is_empty(), "{problems:?}");
            configs.append(&mut account_configs);
        }
        configs.iter().filter_map(job_of).collect()
    }

    fn firing(affecting: &[u64]) -> Firing {
        Firing::new(0, affecting.to_vec())
    }

    fn bot() -> (PingBot, Arc<Pinger>) {
        let pinger = Arc::new(
            Pinger::open(&PingerConfig::default(), PingCounters::default()).expect("open pinger"),
        );
        (PingBot::with_pinger(pinger.clone()), pinger)
    }

    #[test]
    fn one_job_per_entity_with_its_sensors_distinct_intervals() {
        let job = job_of(&entity(
            5,
            "127.0.0.1",
            json!({}),
            &[Some(60), Some(10), Some(60)],
        ))
        .expect("a job");
        assert_eq!(job.id, "5");
        assert_eq!(job.intervals, vec![10, 60]);
        assert_eq!(job.account_id, Some(77));
        assert_eq!(job.entity_id, Some(5));
        assert_eq!(job.params.intervals.as_slice(), [10, 60]);
        let (target, settings) = job.params.plan.as_ref().unwrap();
        assert_eq!(target, &Target::parse("127.0.0.1").unwrap());
        assert_eq!(settings, &ProbeSettings::default());
    }

    #[test]
    fn sensors_without_interval_are_left_out_and_without_any_there_is_no_job() {
        let job = job_of(&entity(5, "127.0.0.1", json!({}), &[None, Some(30)])).unwrap();
        assert_eq!(job.intervals, vec![30]);
        assert!(job_of(&entity(6, "127.0.0.1", json!({}), &[None, None])).is_none());
    }

    #[test]
    fn a_bad_credential_or_address_is_an_error_of_that_entity_alone() {
        let bot = PingBot::with_pinger(Arc::new(
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(async { Pinger::open(&PingerConfig::default(), PingCounters::default()) })
                .unwrap(),
        ));
        let configs = vec![
            entity(1, "127.0.0.1", json!({"timeout": "soon"}), &[Some(10)]),
            entity(2, "999.1.1.1", json!({}), &[Some(10)]),
            entity(4, "127.0.0.1", json!({}), &[None]),
            entity(3, "127.0.0.1", json!({}), &[Some(10)]),
        ];
        let jobs = bot.jobs(&configs);
        assert_eq!(jobs.len(), 3, "the entity without an interval has no job");
        assert!(
            bot.jobs_from(configs) == jobs,
            "a refresh's jobs (configs by value) are the same"
        );
        let problem = |job: &JobSpec<PingParams>| job.params.plan.clone().err();
        assert!(problem(&jobs[0]).unwrap().contains("`timeout`"));
        assert!(problem(&jobs[1]).unwrap().contains("999.1.1.1"));
        assert!(problem(&jobs[2]).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_of_a_bad_entity_fails_with_its_problem() {
        let (bot, pinger) = bot();
        let job = job_of(&entity(
            1,
            "127.0.0.1",
            json!({"n_packets": 0}),
            &[Some(10)],
        ))
        .unwrap();
        let err = bot.perform(&job, &firing(&[10])).await.unwrap_err();
        assert!(err.to_string().contains("`n_packets`"), "{err}");
        let job = job_of(&entity(2, "no-such-host.invalid", json!({}), &[Some(10)])).unwrap();
        let err = bot.perform(&job, &firing(&[10])).await.unwrap_err();
        assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
        assert_eq!(pinger.counters().sent.get(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_address_of_a_family_without_socket_is_an_error_of_that_entity() {
        let pinger = Pinger::open(&PingerConfig::default(), PingCounters::default())
            .expect("open pinger")
            .without_ipv6("the kernel does not support this address family");
        let bot = PingBot::with_pinger(Arc::new(pinger));
        let job = job_of(&entity(4, "::1", json!({}), &[Some(10)])).unwrap();
        let err = bot.perform(&job, &firing(&[10])).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot ping ::1: IPv6 is unavailable: the kernel does not support this address family"
        );
        let job = job_of(&entity(
            5,
            "127.0.0.1",
            json!({"n_packets": 1}),
            &[Some(10)],
        ))
        .unwrap();
        assert!(
            bot.perform(&job, &firing(&[10])).await.is_ok(),
            "IPv4 still works"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_firing_runs_only_when_one_of_the_sensors_intervals_is_due() {
        let (bot, pinger) = bot();
        let credential = json!({"n_packets": 2, "sleep_packets": 0, "timeout": 1});
        let job = job_of(&entity(9, "127.0.0.1", credential, &[Some(10), Some(30)])).unwrap();
        assert_eq!(bot.perform(&job, &firing(&[20])).await.unwrap(), vec![]);
        assert_eq!(
            pinger.counters().sent.get(),
            0,
            "nothing sent for an unrelated interval"
        );
        let values = bot.perform(&job, &firing(&[10, 30])).await.unwrap();
        assert_eq!(
            pinger.counters().sent.get(),
            2,
            "one run serves every due sensor"
        );
        let ok: Vec<f64> = values
            .iter()
            .filter(|v| v.path.ends_with(".ok"))
            .map(|v| v.value)
            .collect();
        assert_eq!(ok, vec![1.0, 1.0]);
        assert!(values.iter().all(|v| v.path.starts_with("entity.9.ping.")
            && collector::value::path_problem(&v.path).is_none()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_engine_counters_are_served_with_the_framework_metrics() {
        let data_dir = std::env::temp_dir().join(format!("pingbot-test-{}", std::process::id()));
        let context = Context {
            store: collector::Store::open(&data_dir, "state").expect("store"),
            backend: None,
            metrics: collector::metrics::Metrics::new(),
            shutdown: Default::default(),
            cluster: Default::default(),
        };
        let args = PingArgs {
            icmp_receive_buffer: 1 << 20,
            ping_max_rate: DEFAULT_MAX_RATE,
        };
        let metrics = context.metrics.clone();
        let bot = PingBot::new(args.config().expect("config"), context).expect("bot");
        let job = job_of(&entity(3, "::1", json!({"n_packets": 1}), &[Some(10)])).unwrap();
        bot.perform(&job, &firing(&[10])).await.unwrap();
        let page = metrics.render();
        for line in [
            "ping_echo_requests_sent_total 1",
            "ping_echo_replies_total 1",
            "ping_timeouts_total 0",
            "ping_errors_total 0",
        ] {
            assert!(
                page.lines().any(|l| l.ends_with(line)),
                "{line} missing from:\n{page}"
            );
        }
        drop(bot);
        let _ = std::fs::remove_dir_all(&data_dir);
    }

    #[test]
    fn the_embedded_example_jobs_file_gives_the_documented_jobs() {
        let jobs = jobs_of_file(DEFAULT_JOBS);
        let summary: Vec<(&str, Vec<u64>)> = jobs
            .iter()
            .map(|j| (j.id.as_str(), j.intervals.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("1001", vec![10]),
                ("1002", vec![15]),
                ("1003", vec![20, 60])
            ]
        );
        assert!(jobs.iter().all(|j| j.params.plan.is_ok()));
        let (target, settings) = jobs[2].params.plan.as_ref().unwrap();
        assert_eq!(target.to_string(), "localhost");
        assert_eq!(settings.retry, 1);
        assert_eq!(settings.attempt_slice(), Duration::from_secs(1));
    }
}
