//! The process around a bot: logging, mode, the refresh loop, the scheduling loop, signals and
//! an orderly shutdown.

use crate::backend::BackendClient;
use crate::bot::{Collector, Context, StartError};
use crate::cluster::{Assignment, Membership};
use crate::delivery::{BackendSink, Delivery, Sink, StdoutSink};
use crate::entity::{build_configs_explained, BuiltConfigs, ConfigProblem, EntityConfig, Protocol};
use crate::executor::Executor;
use crate::job::JobSpec;
use crate::metrics::{label, Metrics};
use crate::notify::{Notifier, NotifierTasks};
use crate::output::say;
use crate::scheduler::{Clock, Scheduler, HAND_OUT_BATCH};
use crate::settings::{LogFormat, Mode, Settings, ValuesOutput};
use crate::spool::Spool;
use crate::standalone::parse_jobs_file;
use crate::status::{EntityInfo, EntityReport, SkippedEntity, StatusBoard};
use crate::store::Store;
use crate::task_record::TaskRecords;
use crate::telemetry::{self, LastValues, Readiness};
use futures::StreamExt;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Accounts fetched at once during a refresh.
const ACCOUNTS_IN_PARALLEL: usize = 8;

/// Runs a bot until SIGTERM/SIGINT: builds the context, calls `make` to build the bot, then
/// refreshes, schedules, runs and delivers. Exit code 2 for a bad setting, 1 for a fatal error.
pub fn run<C, F>(settings: Settings, make: F) -> ExitCode
where
    C: Collector,
    F: FnOnce(Context) -> Result<C, StartError>,
{
    if settings.health_check {
        return health_check(settings.metrics_address);
    }
    init_logging(settings.log_format);
    let mode = match settings.mode() {
        Ok(mode) => mode,
        Err(problem) => {
            say(format_args!("error: {problem}"));
            return ExitCode::from(2);
        }
    };
    let membership = match settings.cluster.membership() {
        Ok(membership) => membership,
        Err(problem) => {
            say(format_args!("error: {problem}"));
            return ExitCode::from(2);
        }
    };
    crate::heap::limit_arenas();
    let runtime = match build_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            say(format_args!("error: cannot start the async runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run_async(settings, mode, membership, make))
}

/// The async runtime: one thread per CPU the process may use, or, when that is one (a container
/// limited to one CPU, a bot pinned with `taskset`), a single-threaded runtime, which does the
/// same work without the multi-threaded scheduler's cross-thread bookkeeping at every task.
fn build_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    }
}

/// `--health-check`: one GET of /health at the telemetry address.
fn health_check(address: Option<SocketAddr>) -> ExitCode {
    use std::io::{Read, Write};
    let Some(mut address) = address else {
        say(format_args!("error: --health-check needs METRICS_ADDRESS"));
        return ExitCode::from(2);
    };
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let timeout = Duration::from_secs(3);
    let answer = std::net::TcpStream::connect_timeout(&address, timeout).and_then(|mut stream| {
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    });
    match answer {
        Ok(answer) if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") => {
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            say(format_args!(
                "unhealthy: {}",
                answer.lines().next().unwrap_or("")
            ));
            ExitCode::from(1)
        }
        Err(e) => {
            say(format_args!("unhealthy: {address}: {e}"));
            ExitCode::from(1)
        }
    }
}

/// Added to the log filter unless `RUST_LOG` names the library. The SNMP library logs each
/// failed request itself, at ERROR, with the socket address and no entity; the bot logs every
/// failure once with the job, entity and address, so the library's own lines are off
/// (`RUST_LOG=info,async_snmp=debug` shows them).
const QUIET_LIBRARIES: &str = "async_snmp=off";

/// `RUST_LOG` (default `info`; an invalid one falls back to `info`) plus [`QUIET_LIBRARIES`].
fn log_filter() -> tracing_subscriber::EnvFilter {
    let text = std::env::var("RUST_LOG")
        .ok()
        .filter(|text| !text.trim().is_empty())
        .unwrap_or_else(|| "info".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&text)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match QUIET_LIBRARIES.parse() {
        Ok(quiet) if !text.contains("async_snmp") => filter.add_directive(quiet),
        _ => filter,
    }
}

fn init_logging(format: LogFormat) {
    let filter = log_filter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::output::LogWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Wanted jobs from one refresh, with the accounts whose jobs must be kept as they are, and
/// what the refresh said about entities (for the status page).
type JobUpdate<P> = (Vec<JobSpec<P>>, HashSet<u64>, EntityReport);

/// Where job configs come from.
enum Source {
    Backend {
        client: BackendClient,
        bot_id: u64,
    },
    File {
        path: Option<PathBuf>,
        embedded: &'static str,
    },
}

/// The result of one refresh: configs of every readable account, and the accounts that
/// could not be read (their jobs are kept).
pub struct Refresh {
    pub configs: Vec<EntityConfig>,
    pub unreadable: HashSet<u64>,
    /// Entities left out, with the reason (for the status page).
    pub skipped: Vec<SkippedEntity>,
    pub problems: Vec<ConfigProblem>,
}

async fn run_async<C, F>(
    settings: Settings,
    mode: Mode,
    membership: Membership,
    make: F,
) -> ExitCode
where
    C: Collector,
    F: FnOnce(Context) -> Result<C, StartError>,
{
    match run_bot(settings, mode, membership, make).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

/// Starts everything in order, runs the scheduling loop until shutdown, then stops everything
/// in the reverse order. `Err` is the exit code of a start-up that could not complete.
async fn run_bot<C, F>(
    settings: Settings,
    mode: Mode,
    membership: Membership,
    make: F,
) -> Result<(), ExitCode>
where
    C: Collector,
    F: FnOnce(Context) -> Result<C, StartError>,
{
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    tokio::spawn(watch_output(shutdown.clone()));
    let metrics = Metrics::new();
    let store = open_store(&settings)?;
    let backend = backend_client(&settings, &mode, &metrics)?;
    let context = Context {
        store: store.clone(),
        backend: backend.clone(),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        cluster: membership,
    };
    let bot = match make(context) {
        Ok(bot) => Arc::new(bot),
        Err(e) => {
            tracing::error!("cannot start the bot: {e}");
            return Err(ExitCode::from(e.exit_code()));
        }
    };
    let standalone = matches!(mode, Mode::Standalone { .. });
    let services = start_services(
        &settings,
        bot.as_ref(),
        &store,
        &metrics,
        standalone,
        &shutdown,
    )
    .await?;
    let intake = match (mode, backend) {
        (Mode::Backend { .. }, Some(client)) => {
            let protocol = bot.protocol();
            backend_mode(protocol, &settings, client, &store, &metrics, &shutdown).await?
        }
        (mode, _) => standalone_mode(&settings, mode, bot.as_ref(), &services, &metrics).await?,
    };
    let running = schedule(
        &settings, bot, membership, intake, services, metrics, shutdown,
    )
    .await;
    shut_down(running, Duration::from_secs(settings.shutdown_grace)).await;
    Ok(())
}

/// The state file in the data directory; one that cannot be used is a bad setting (exit 2).
fn open_store(settings: &Settings) -> Result<Store, ExitCode> {
    let data_dir = settings.data_dir();
    if settings.data_dir.is_none() {
        warn_about_a_shared_data_dir(&data_dir);
    }
    Store::open(&data_dir, "state").map_err(|e| {
        tracing::error!("{e}");
        ExitCode::from(2)
    })
}

/// The backend client in backend mode, `None` standalone.
fn backend_client(
    settings: &Settings,
    mode: &Mode,
    metrics: &Metrics,
) -> Result<Option<BackendClient>, ExitCode> {
    let Mode::Backend { url, token } = mode else {
        return Ok(None);
    };
    let concurrency = settings.job_concurrency as usize;
    let timeout = Duration::from_secs(settings.backend_timeout);
    match BackendClient::new(url, token, timeout, concurrency.min(256), metrics.clone()) {
        Ok(client) => Ok(Some(client)),
        Err(e) => {
            tracing::error!("{e}");
            Err(ExitCode::from(1))
        }
    }
}

/// What runs beside the jobs in either mode: the bot's background task, the notifier, the
/// status board and the telemetry endpoints.
struct Services {
    status: StatusBoard,
    readiness: Readiness,
    last_values: Option<LastValues>,
    notifier: Notifier,
    notifier_tasks: NotifierTasks,
    background: Option<JoinHandle<()>>,
    background_stop: CancellationToken,
    telemetry: Option<JoinHandle<()>>,
}

async fn start_services<C: Collector>(
    settings: &Settings,
    bot: &C,
    store: &Store,
    metrics: &Metrics,
    standalone: bool,
    shutdown: &CancellationToken,
) -> Result<Services, ExitCode> {
    let protocol = bot.protocol();
    let status = StatusBoard::new(protocol);
    let readiness = Readiness::default();
    let last_values =
        (standalone && settings.values_output == ValuesOutput::Metrics).then(LastValues::default);
    let background_stop = shutdown.child_token();
    let background = bot.background(background_stop.clone()).map(tokio::spawn);
    let print_notices = standalone && settings.values_output == ValuesOutput::Stdout;
    let (notifier, notifier_tasks) = Notifier::start(
        &settings.notify,
        store.clone(),
        metrics,
        protocol,
        print_notices,
    )
    .map_err(|e| {
        say(format_args!("error: {e}"));
        ExitCode::from(2)
    })?;
    status.show_alerts(store.clone());
    let telemetry_address = settings.metrics_address.or_else(|| {
        last_values
            .is_some()
            .then(|| SocketAddr::from(([127, 0, 0, 1], 9100)))
    });
    let telemetry = match telemetry_address {
        Some(address) => Some(
            telemetry::serve(
                address,
                metrics.clone(),
                readiness.clone(),
                last_values.clone(),
                status.clone(),
                shutdown.child_token(),
            )
            .await
            .map_err(|e| {
                say(format_args!("error: {e}"));
                ExitCode::from(2)
            })?,
        ),
        None => None,
    };
    Ok(Services {
        status,
        readiness,
        last_values,
        notifier,
        notifier_tasks,
        background,
        background_stop,
        telemetry,
    })
}

/// Where job configs come from and where values go, per mode.
struct Intake {
    source: Source,
    sink: Arc<dyn Sink>,
    /// Standalone: the refresh made at start-up (a bad jobs file stops the bot there).
    first_refresh: Option<Refresh>,
    /// Backend mode: the spool's replay task and what stops it.
    replayer: Option<(JoinHandle<()>, CancellationToken)>,
}

/// Backend mode: wait for the backend, read our bot id, open the spool and start its replay.
async fn backend_mode(
    protocol: &str,
    settings: &Settings,
    client: BackendClient,
    store: &Store,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<Intake, ExitCode> {
    tracing::info!(protocol, "waiting for the backend");
    let wait = Duration::from_secs(settings.backend_wait_interval);
    if !client.wait_ready(wait, shutdown).await {
        return Err(ExitCode::SUCCESS);
    }
    let bot_id = client.profile().await.map_err(|e| {
        let hint = e.hint().unwrap_or("is BOT_TOKEN right?");
        tracing::error!("cannot read our bot profile: {e}: {hint}");
        ExitCode::from(1)
    })?;
    tracing::info!(protocol, bot_id, "backend ready");
    let spool =
        Spool::open(store.clone(), settings.spool_max_bytes, metrics.clone()).map_err(|e| {
            tracing::error!("{e}");
            ExitCode::from(1)
        })?;
    let replay_stop = CancellationToken::new();
    let replayer = tokio::spawn(spool.clone().replay(client.clone(), replay_stop.clone()));
    let sink = Arc::new(BackendSink::new(
        client.clone(),
        settings.delivery_attempts,
        Duration::from_secs(1),
        metrics.clone(),
        spool,
        shutdown.clone(),
    ));
    Ok(Intake {
        source: Source::Backend { client, bot_id },
        sink,
        first_refresh: None,
        replayer: Some((replayer, replay_stop)),
    })
}

/// Standalone mode: read the jobs file (or the bot's embedded example) once now, so that a bad
/// file stops the bot with exit code 2, and print or serve the values.
async fn standalone_mode<C: Collector>(
    settings: &Settings,
    mode: Mode,
    bot: &C,
    services: &Services,
    metrics: &Metrics,
) -> Result<Intake, ExitCode> {
    let protocol = bot.protocol();
    let jobs_file = match mode {
        Mode::Standalone { jobs_file } => jobs_file,
        Mode::Backend { .. } => None,
    };
    let embedded = bot.default_jobs().unwrap_or("");
    if jobs_file.is_none() && embedded.is_empty() {
        say(format_args!(
            "error: this bot has no embedded example jobs; give --jobs FILE"
        ));
        return Err(ExitCode::from(2));
    }
    let source = Source::File {
        path: jobs_file,
        embedded,
    };
    let first_refresh = refresh(&source, protocol_of(bot), metrics)
        .await
        .map_err(|e| {
            say(format_args!("error: {e}"));
            ExitCode::from(2)
        })?;
    if first_refresh.configs.is_empty() {
        tracing::warn!(
            protocol,
            "the jobs file has no entity for this bot (a device whose `protocols` has \
             `{protocol}`, with a credential and sensors): nothing will run"
        );
    }
    services.readiness.set(true);
    let sink: Arc<dyn Sink> = match settings.values_output {
        ValuesOutput::Stdout => {
            tracing::info!(
                protocol,
                "standalone mode: values go to stdout as JSON lines"
            );
            Arc::new(StdoutSink {
                metrics: metrics.clone(),
            })
        }
        ValuesOutput::Metrics => {
            tracing::info!(protocol, "standalone mode: values go to the /metrics page");
            Arc::new(telemetry::MetricsPageSink {
                values: services.last_values.clone().unwrap_or_default(),
                metrics: metrics.clone(),
            })
        }
    };
    Ok(Intake {
        source,
        sink,
        first_refresh: Some(first_refresh),
        replayer: None,
    })
}

/// What the scheduling loop leaves for [`shut_down`] to stop.
struct Running<C: Collector> {
    executor: Executor<C>,
    delivery: Delivery,
    refresher: JoinHandle<()>,
    services: Services,
    replayer: Option<(JoinHandle<()>, CancellationToken)>,
}

/// Starts delivery, the executor and the refresh loop, then fires due jobs and applies each
/// refresh until shutdown.
async fn schedule<C: Collector>(
    settings: &Settings,
    bot: Arc<C>,
    membership: Membership,
    intake: Intake,
    services: Services,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Running<C> {
    let clock = Clock::new();
    let delivery = Delivery::start(
        intake.sink,
        metrics.clone(),
        10_000,
        64,
        settings.delivery_limits(),
    );
    let executor = Executor::new(
        bot.clone(),
        settings.job_concurrency as usize,
        settings.job_timeout.map(Duration::from_secs),
        delivery.handle(),
        metrics.clone(),
        clock,
        TaskRecords {
            log: settings.task_records,
            prefix: settings.task_records_prefix.clone(),
        },
    )
    .with_notifier(services.notifier.clone())
    .with_pacing(
        settings
            .job_max_starts_per_second
            .or_else(|| bot.max_starts_per_second()),
    );
    let (updates, mut updates_rx) = mpsc::channel::<JobUpdate<C::Params>>(2);
    if membership.is_clustered() {
        tracing::info!(
            member = membership.member(),
            members = membership.members(),
            replication = membership.replication(),
            "cluster member: running only the jobs this member owns"
        );
    }
    let assignment = Assignment::new(membership, &metrics);
    let refresher = tokio::spawn(refresh_loop(
        Configs {
            source: intake.source,
            first: intake.first_refresh,
        },
        bot.clone(),
        settings.refresh_interval(),
        updates,
        metrics.clone(),
        services.readiness.clone(),
        shutdown.clone(),
    ));
    let protocol = bot.protocol();
    let mut scheduler: Scheduler<C::Params> = Scheduler::new(clock);
    let mut fired = Vec::with_capacity(HAND_OUT_BATCH);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            update = updates_rx.recv() => {
                let Some((specs, unreadable, report)) = update else { break };
                let applying = Instant::now();
                let summary = scheduler.update(assignment.keep_owned(specs), &unreadable);
                metrics.framework.jobs_scheduled.set(scheduler.len() as i64);
                services.status.set_entities(report, &unreadable);
                services.status.set_jobs(&scheduler, &bot);
                services.notifier.jobs_now(scheduler.job_ids(), clock.now_unix());
                crate::heap::give_back();
                tracing::info!(protocol, jobs = scheduler.len(), added = summary.added,
                    changed = summary.changed, removed = summary.removed,
                    kept_unreadable = summary.kept_unreadable,
                    // Firings waited this long: the loop fires nothing while it applies a refresh.
                    applied_ms = %format!("{:.1}", applying.elapsed().as_secs_f64() * 1e3),
                    "jobs refreshed");
            }
            _ = scheduler.next_batch(&mut fired, HAND_OUT_BATCH), if !scheduler.is_empty() => {
                executor.fire_all(fired.drain(..));
            }
        }
    }
    Running {
        executor,
        delivery,
        refresher,
        services,
        replayer: intake.replayer,
    }
}

/// Stops in order: no new runs, running jobs finish (within the grace), the notifier sends
/// what they reported, the bot's background task ends, queued values are delivered, the
/// spool's replay stops, and the telemetry endpoints close last.
async fn shut_down<C: Collector>(running: Running<C>, grace: Duration) {
    let Running {
        executor,
        delivery,
        refresher,
        services,
        replayer,
    } = running;
    tracing::info!("stopping: no new runs; waiting for running jobs");
    refresher.abort();
    if !executor.drain(grace).await {
        tracing::warn!("some jobs were still running after {grace:?}; their values are lost");
    }
    // The executor holds a sender of the delivery queue: drop it so the queue can close.
    drop(executor);
    drop(services.notifier);
    services
        .notifier_tasks
        .close(grace.min(Duration::from_secs(5)))
        .await;
    services.background_stop.cancel();
    if let Some(task) = services.background {
        let _ = tokio::time::timeout(grace, task).await;
    }
    if !delivery.close(grace).await {
        tracing::warn!("delivery did not finish within {grace:?}");
    }
    if let Some((task, stop)) = replayer {
        stop.cancel();
        let _ = tokio::time::timeout(grace, task).await;
    }
    if let Some(task) = services.telemetry {
        let _ = tokio::time::timeout(grace, task).await;
    }
    tracing::info!("stopped");
}

async fn watch_signals(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    shutdown.cancel();
}

/// Before each bot had its own default data directory, all used `data`: point at state left there.
fn warn_about_a_shared_data_dir(data_dir: &std::path::Path) {
    let old = std::path::Path::new("data").join("state.redb");
    if old.exists() && !data_dir.join("state.redb").exists() {
        tracing::warn!(
            "{} was left by an earlier version, where every bot shared DATA_DIR=data; this bot \
             now uses {} by default: to keep the undelivered values and counter samples in it, \
             stop the bot and move the file there (or set DATA_DIR=data)",
            old.display(),
            data_dir.display()
        );
    }
}

/// A closed stdout or stderr (the reader of a pipe went away) stops the bot like SIGTERM.
async fn watch_output(shutdown: CancellationToken) {
    let closed = crate::output::closed();
    tokio::select! {
        _ = closed.cancelled() => {
            tracing::info!("stdout or stderr was closed: stopping");
            shutdown.cancel();
        }
        _ = shutdown.cancelled() => {}
    }
}

/// Where job configs come from, with a refresh already made at start-up (standalone mode reads
/// its file once to check it) that the refresh loop uses instead of reading again.
struct Configs {
    source: Source,
    first: Option<Refresh>,
}

/// Refreshes the jobs every `every`.
async fn refresh_loop<C: Collector>(
    configs: Configs,
    bot: Arc<C>,
    every: Duration,
    updates: mpsc::Sender<JobUpdate<C::Params>>,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: CancellationToken,
) {
    let Configs { source, mut first } = configs;
    loop {
        let started = Instant::now();
        let result = match first.take() {
            Some(done) => Ok(done),
            None => refresh(&source, protocol_of(bot.as_ref()), &metrics).await,
        };
        match result {
            Ok(result) => {
                metrics
                    .framework
                    .refreshes
                    .get_or_create(&label("outcome", "ok"))
                    .inc();
                bot.configs_refreshed(&result.configs, &result.unreadable);
                let report = EntityReport {
                    entities: EntityInfo::of_configs(&result.configs),
                    skipped: result.skipped,
                    problems: result.problems,
                    left_out: bot.left_out(&result.configs),
                };
                // Last, and by value: a bot may drop each config as it makes its jobs.
                let specs = bot.jobs_from(result.configs);
                if updates
                    .send((specs, result.unreadable, report))
                    .await
                    .is_err()
                {
                    return;
                }
                readiness.set(true);
            }
            Err(e) => {
                metrics
                    .framework
                    .refreshes
                    .get_or_create(&label("outcome", "failed"))
                    .inc();
                tracing::error!("job refresh failed, current jobs kept: {e}");
            }
        }
        metrics
            .framework
            .refresh_seconds
            .observe(started.elapsed().as_secs_f64());
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The bot's protocol key with what it requires of an entity.
fn protocol_of<C: Collector>(bot: &C) -> Protocol<'static> {
    Protocol {
        name: bot.protocol(),
        needs_credential: bot.needs_credential(),
    }
}

/// Fetches every account's job configs. Fails only when the account list cannot be had (or the
/// jobs file cannot be read); a single unreadable account is logged and reported.
async fn refresh(
    source: &Source,
    protocol: Protocol<'_>,
    metrics: &Metrics,
) -> Result<Refresh, String> {
    match source {
        Source::Backend { client, bot_id } => {
            fetch_from_backend(client, protocol, *bot_id, metrics).await
        }
        Source::File { path, embedded } => {
            let (text, name) = match path {
                Some(path) => (
                    std::fs::read_to_string(path)
                        .map_err(|e| format!("jobs file {}: {e}", path.display()))?,
                    path.display().to_string(),
                ),
                None => (embedded.to_string(), "embedded example jobs".to_string()),
            };
            let accounts = parse_jobs_file(&text).map_err(|e| format!("jobs file {name}: {e}"))?;
            let built = accounts
                .into_iter()
                .map(|(account, data)| build_configs_explained(protocol, None, account, data));
            Ok(configs_of(built, HashSet::new(), metrics))
        }
    }
}

/// Fetches the configs of every account (1 request for the list, 3 per account).
pub async fn fetch_from_backend<'a>(
    client: &BackendClient,
    protocol: impl Into<Protocol<'a>>,
    bot_id: u64,
    metrics: &Metrics,
) -> Result<Refresh, String> {
    let protocol = protocol.into();
    let accounts = client
        .list_accounts()
        .await
        .map_err(|e| format!("cannot list accounts: {e}"))?;
    // `buffered` keeps the backend's account order, so configs come out in that order.
    let fetched: Vec<(u64, Result<BuiltConfigs, _>)> = futures::stream::iter(accounts)
        .map(|account| async move {
            let built = client
                .account_configs(account, protocol, Some(bot_id))
                .await;
            (account, built)
        })
        .buffered(ACCOUNTS_IN_PARALLEL)
        .collect()
        .await;
    let mut readable = Vec::with_capacity(fetched.len());
    let mut unreadable = HashSet::new();
    for (account, result) in fetched {
        match result {
            Ok(built) => readable.push(built),
            Err(e) => {
                tracing::warn!(
                    account,
                    "account skipped in this refresh, its jobs are kept: {e}"
                );
                metrics.framework.accounts_skipped.inc();
                unreadable.insert(account);
            }
        }
    }
    Ok(configs_of(readable, unreadable, metrics))
}

/// One refresh's configs from each account's, each problem logged and counted.
fn configs_of(
    accounts: impl IntoIterator<Item = BuiltConfigs>,
    unreadable: HashSet<u64>,
    metrics: &Metrics,
) -> Refresh {
    let mut configs = Vec::new();
    let mut skipped = Vec::new();
    let mut all_problems = Vec::new();
    for mut built in accounts {
        skipped.append(&mut built.skipped);
        for p in &built.problems {
            tracing::warn!(
                account = p.account_id,
                entity = p.entity_id,
                "left out: {}",
                p.message
            );
            metrics.framework.config_problems.inc();
        }
        all_problems.append(&mut built.problems);
        // The first account's list is taken whole, not copied into a new one: a refresh's
        // configs are its memory peak.
        if configs.is_empty() {
            configs = built.configs;
        } else {
            configs.append(&mut built.configs);
        }
    }
    Refresh {
        configs,
        unreadable,
        skipped,
        problems: all_problems,
    }
}
