//! Alerts and events: what runs report through [`Firing::check`](crate::Firing::check) and
//! [`Firing::event`](crate::Firing::event), plus `JobFailing` for every run that failed or timed
//! out, turned into alert state (in the store) and notifications for the sinks: Alertmanager, a
//! webhook, DataKit (with the self-observability upload) and, standalone, stdout.

pub mod alertmanager;
pub mod alerts;
pub(crate) mod book;
pub mod datakit;
pub mod memo;
pub mod metrics;
pub mod notice;
pub mod outbox;
pub mod streak;
pub mod webhook;

pub use metrics::NotifyMetrics;

use crate::executor::Outcome;
use crate::report::Findings;
use crate::scheduler::JobState;
use crate::store::Store;
use alerts::AlertRules;
use book::Book;
use clap::Args;
use outbox::{Deliver, Outbox};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Reports waiting for the notifier, at most; more are dropped and counted.
const QUEUE: usize = 10_000;

/// The alert and sink settings (flattened into [`crate::Settings`]).
#[derive(Debug, Clone, Args)]
pub struct NotifySettings {
    /// Bad runs in a row before an alert fires.
    #[arg(long, env = "ALERT_IF_IN_A_ROW", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub alert_if_in_a_row: u32,

    /// Seconds between repeats of a firing alert on every sink (Alertmanager also gets firing
    /// alerts again every ALERTMANAGER_RESEND_INTERVAL, so that it does not resolve them); 0: never.
    #[arg(long, env = "ALERT_RENOTIFY", default_value_t = 0)]
    pub alert_renotify: u64,

    /// Alertmanager base URL (alerts go to {url}/api/v2/alerts).
    #[arg(long, env = "ALERTMANAGER_URL")]
    pub alertmanager_url: Option<String>,

    /// Seconds between re-sends of every firing alert to Alertmanager, which resolves an alert
    /// it has not heard of for its `resolve_timeout` (5 min by default): keep it well below that.
    #[arg(long, env = "ALERTMANAGER_RESEND_INTERVAL", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub alertmanager_resend_interval: u64,

    /// URL that receives one JSON POST per alert state change or event.
    #[arg(long, env = "EVENTS_WEBHOOK_URL", hide_env_values = true)]
    pub events_webhook_url: Option<String>,

    /// DataKit base URL, or DataWay URL with ?token=: key events and the self-observability upload.
    #[arg(long, env = "DATAKIT_URL", hide_env_values = true)]
    pub datakit_url: Option<String>,
}

/// What one finished run hands the notifier.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub job: String,
    pub entity: Option<u64>,
    pub entity_name: Option<String>,
    pub account: Option<u64>,
    pub outcome: Outcome,
    /// Why the run failed, for `JobFailing`'s description.
    pub error: Option<String>,
    pub findings: Findings,
    pub trigger: u64,
    pub start: f64,
    pub end: f64,
    /// The job's state, whose [`memo::AlertMemo`] the notifier updates once it handled the run.
    pub state: Option<Arc<JobState>>,
}

/// A run that says nothing: it succeeded, every check is good and it has no event.
fn quiet(outcome: Outcome, findings: &Findings) -> bool {
    outcome == Outcome::Success && findings.says_nothing()
}

impl RunReport {
    /// The labels every alert and event of this run carries.
    pub fn labels(&self, bot: &str) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            ("bot".to_string(), bot.to_string()),
            ("job".to_string(), self.job.clone()),
        ]);
        if let Some(entity) = self.entity {
            labels.insert("entity".into(), entity.to_string());
        }
        if let Some(name) = &self.entity_name {
            labels.insert("entity_name".into(), name.clone());
        }
        if let Some(account) = self.account {
            labels.insert("account".into(), account.to_string());
        }
        labels
    }
}

/// What the notifier thread works on, in order.
pub(crate) enum Input {
    Run(Box<RunReport>),
    /// The job ids scheduled now, with the time: alerts of other jobs resolve.
    Jobs(HashSet<String>, f64),
}

/// The executor's and runtime's handle to the notifier; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    input: mpsc::Sender<Input>,
    upload: Option<datakit::Uploader>,
    bot: &'static str,
    metrics: NotifyMetrics,
}

/// The notifier's thread and sink tasks, for an orderly stop.
pub struct NotifierTasks {
    thread: std::thread::JoinHandle<()>,
    sinks: Vec<tokio::task::JoinHandle<()>>,
    outboxes: Vec<Outbox>,
    stop: CancellationToken,
}

fn parse_url(setting: &str, url: &str) -> Result<reqwest::Url, String> {
    match reqwest::Url::parse(url.trim()) {
        Ok(url) if url.scheme() == "http" || url.scheme() == "https" => Ok(url),
        _ => Err(format!("{setting} must be an http:// or https:// URL")),
    }
}

/// The configured sinks: each sender with its outbox and whether it takes events, the tasks
/// already started (the DataKit upload) and the upload's handle.
struct Sinks {
    senders: Vec<(Outbox, Arc<dyn Deliver>, bool)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    upload: Option<datakit::Uploader>,
}

/// Builds the sinks the settings ask for; a bad URL is an error naming its setting (never
/// showing the URL, which may hold a token).
fn configured_sinks(
    settings: &NotifySettings,
    store: &Store,
    metrics: &NotifyMetrics,
    stop: &CancellationToken,
) -> Result<Sinks, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let mut senders: Vec<(Outbox, Arc<dyn Deliver>, bool)> = Vec::new();
    let mut tasks = Vec::new();
    if let Some(url) = &settings.alertmanager_url {
        let base = parse_url("ALERTMANAGER_URL", url)?;
        let am = Arc::new(alertmanager::Alertmanager {
            client: client.clone(),
            endpoint: format!("{}/api/v2/alerts", base.as_str().trim_end_matches('/')),
            resend_every: Duration::from_secs(settings.alertmanager_resend_interval),
        });
        let outbox = Outbox::new(store.clone(), "alertmanager", "outbox_alertmanager");
        senders.push((outbox, am, false));
    }
    if let Some(url) = &settings.events_webhook_url {
        let url = parse_url("EVENTS_WEBHOOK_URL", url)?.to_string();
        let outbox = Outbox::new(store.clone(), "webhook", "outbox_webhook");
        let webhook = Arc::new(webhook::Webhook {
            client: client.clone(),
            url,
        });
        senders.push((outbox, webhook, true));
    }
    let mut upload = None;
    if let Some(url) = &settings.datakit_url {
        let datakit = datakit::DataKit {
            client: client.clone(),
            base: parse_url("DATAKIT_URL", url)?,
        };
        let (uploader, task) =
            datakit::Uploader::start(datakit.clone(), metrics.clone(), stop.clone());
        upload = Some(uploader);
        tasks.push(task);
        let outbox = Outbox::new(store.clone(), "datakit", "outbox_datakit");
        senders.push((outbox, Arc::new(datakit), true));
    }
    Ok(Sinks {
        senders,
        tasks,
        upload,
    })
}

impl Notifier {
    /// Starts the notifier: the thread that keeps alert state, and one task per configured sink.
    /// `stdout`: print alerts and events as JSON lines (standalone mode).
    pub fn start(
        settings: &NotifySettings,
        store: Store,
        registry: &crate::metrics::Metrics,
        bot: &'static str,
        stdout: bool,
    ) -> Result<(Notifier, NotifierTasks), String> {
        let metrics = NotifyMetrics::register(registry);
        let stop = CancellationToken::new();
        let Sinks {
            senders,
            mut tasks,
            upload,
        } = configured_sinks(settings, &store, &metrics, &stop)?;
        let rules = AlertRules {
            if_in_a_row: settings.alert_if_in_a_row,
            renotify: settings.alert_renotify,
        };
        let mut outboxes = Vec::new();
        let mut book_outboxes = Vec::new();
        for (outbox, sink, takes_events) in senders {
            tasks.push(tokio::spawn(outbox.clone().run(
                sink,
                metrics.clone(),
                stop.clone(),
            )));
            book_outboxes.push((outbox.clone(), takes_events));
            outboxes.push(outbox);
        }
        let book = Book::open(store, rules, bot, book_outboxes, stdout, metrics.clone())?;
        let (input, inputs) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("notifier".into())
            .spawn(move || book.run(inputs))
            .map_err(|e| format!("cannot start the notifier thread: {e}"))?;
        let notifier = Notifier {
            input,
            upload,
            bot,
            metrics,
        };
        let tasks = NotifierTasks {
            thread,
            sinks: tasks,
            outboxes,
            stop,
        };
        Ok((notifier, tasks))
    }

    /// Hands over a finished run; never waits (a full queue drops it, logged and counted).
    pub fn finish(&self, report: RunReport) {
        if let Some(upload) = &self.upload {
            let mut tags = report.labels(self.bot);
            tags.remove("entity_name");
            upload.send(datakit::TaskPoint {
                tags,
                outcome: report.outcome,
                trigger: report.trigger,
                end: report.end,
                wait_cost: (report.start - report.trigger as f64).max(0.0),
                run_cost: (report.end - report.start).max(0.0),
                total_cost: (report.end - report.trigger as f64).max(0.0),
            });
        }
        if let Some(state) = &report.state {
            state.alert_memo.reporting();
        }
        if let Err(refused) = self.input.try_send(Input::Run(Box::new(report))) {
            if let Input::Run(report) = refused.into_inner() {
                tracing::warn!(job = %report.job,
                    "notifier queue full: this run's checks and events are lost");
                if let Some(state) = &report.state {
                    state.alert_memo.handled(None);
                }
            }
            self.metrics.dropped("notifier", "queue_full", 1);
        }
    }

    /// Whether a finished run must be reported: it failed, has a bad check or an event, its job
    /// has or may have alert state, or every run is uploaded (DataKit task records).
    pub fn needs_report(&self, outcome: Outcome, findings: &Findings, state: &JobState) -> bool {
        !quiet(outcome, findings) || self.reads_quiet_runs(state)
    }

    /// Whether a run of this job that says nothing is still reported (and its good checks
    /// read): the job has or may have alert state, or every run is uploaded.
    pub fn reads_quiet_runs(&self, state: &JobState) -> bool {
        self.upload.is_some() || !state.alert_memo.quiet_run_needs_no_report()
    }

    /// Tells the notifier which jobs exist now; alerts of removed jobs resolve.
    pub fn jobs_now<'a>(&self, jobs: impl Iterator<Item = &'a str>, now: f64) {
        let jobs = jobs.map(str::to_string).collect();
        if self.input.try_send(Input::Jobs(jobs, now)).is_err() {
            self.metrics.dropped("notifier", "queue_full", 1);
        }
    }
}

impl NotifierTasks {
    /// Once every [`Notifier`] handle is dropped: waits for the thread to finish what was
    /// reported, gives the sinks up to `grace` to empty their outboxes (what remains is sent at
    /// the next start), then stops them.
    pub async fn close(self, grace: Duration) {
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline
            && self.outboxes.iter().any(|outbox| !outbox.is_empty())
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stop.cancel();
        for task in self.sinks {
            let _ = tokio::time::timeout(grace, task).await;
        }
    }
}
