//! The DataKit sink (`DATAKIT_URL`: a DataKit base URL, or a DataWay URL with its `?token=`):
//! alerts and events as key events in line protocol (`/v1/write/keyevent`), and the
//! self-observability upload: each firing's task record to `/v1/write/logging` and its costs to
//! `/v1/write/metric`, batched (at most [`POINTS_PER_POST`] a POST) and flushed every second.
//! Upload failures are counted and logged; a job never waits for an upload.

use super::notice::{AlertState, Notice};
use super::outbox::Deliver;
use super::streak::{FailureStreak, Turn};
use super::NotifyMetrics;
use crate::executor::Outcome;
use crate::redact::redact_url;
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Points per POST, at most.
pub const POINTS_PER_POST: usize = 100;
/// Task records waiting for upload, at most; more are dropped and counted.
const UPLOAD_QUEUE: usize = 10_000;

/// One DataKit (or DataWay) endpoint.
#[derive(Clone)]
pub struct DataKit {
    pub client: reqwest::Client,
    pub base: reqwest::Url,
}

impl DataKit {
    /// `base` with `path` (`/v1/write/keyevent`), keeping its query (the DataWay token).
    fn endpoint(&self, path: &str) -> reqwest::Url {
        let mut url = self.base.clone();
        let prefix = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{prefix}{path}"));
        url
    }

    async fn post(&self, path: &str, body: String) -> Result<(), String> {
        let url = self.endpoint(path);
        let shown = redact_url(url.as_str());
        let answer = self
            .client
            .post(url)
            .header("Content-Type", "text/plain")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{shown}: {}", e.without_url()))?;
        match answer.status() {
            status if status.is_success() => Ok(()),
            status => Err(format!("{shown} answered {status}")),
        }
    }
}

/// Escapes a measurement name, tag key or tag value.
fn tag(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            ',' | '=' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// A string field value, quoted and escaped.
fn string_field(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

fn tags(measurement: &str, tags: &BTreeMap<String, String>) -> String {
    let mut line = tag(measurement);
    for (key, value) in tags {
        if !value.is_empty() {
            let _ = write!(line, ",{}={}", tag(key), tag(value));
        }
    }
    line
}

fn nanos(unix: f64) -> i64 {
    (unix * 1e9) as i64
}

/// A notice as one `keyevent` line.
pub fn keyevent_line(notice: &Notice) -> String {
    let (status, id, title, message, labels, time, range) = match notice {
        Notice::Alert(alert) => {
            let (status, time) = match alert.state {
                AlertState::Firing => ("critical", alert.starts_at),
                AlertState::Resolved => ("ok", alert.ends_at.unwrap_or(alert.starts_at)),
            };
            let id = format!("{}-{}", alert.name, nanos(alert.starts_at));
            let title = match alert.state {
                AlertState::Firing => format!("{} firing: {}", alert.name, alert.summary),
                AlertState::Resolved => format!("{} resolved: {}", alert.name, alert.summary),
            };
            let range = (time - alert.starts_at).max(0.0).round() as i64;
            let message = alert.description.clone();
            (status, id, title, message, &alert.labels, time, range)
        }
        Notice::Event(event) => (
            event.status.as_str(),
            event.id.clone(),
            event.title.clone(),
            event.message.clone(),
            &event.tags,
            event.time,
            0,
        ),
    };
    let mut line_tags = labels.clone();
    if let Notice::Alert(alert) = notice {
        line_tags.insert("alertname".into(), alert.name.clone());
    }
    line_tags.insert("df_status".into(), status.into());
    line_tags.insert("df_event_id".into(), id);
    line_tags.insert("df_source".into(), "monitor".into());
    let dimension_tags = serde_json::to_string(labels).unwrap_or_default();
    format!(
        "{} df_title={},df_message={},df_dimension_tags={},df_date_range={range}i {}",
        tags("monitor", &line_tags),
        string_field(&title),
        string_field(&message),
        string_field(&dimension_tags),
        nanos(time)
    )
}

impl Deliver for DataKit {
    fn name(&self) -> &'static str {
        "datakit"
    }

    fn max_batch(&self) -> usize {
        POINTS_PER_POST
    }

    fn send<'a>(&'a self, notices: &'a [Notice]) -> BoxFuture<'a, Result<(), String>> {
        let body: Vec<String> = notices.iter().map(keyevent_line).collect();
        Box::pin(self.post("/v1/write/keyevent", body.join("\n")))
    }
}

/// One firing's task record, for the self-observability upload.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPoint {
    pub tags: BTreeMap<String, String>,
    pub outcome: Outcome,
    pub trigger: u64,
    pub end: f64,
    pub wait_cost: f64,
    pub run_cost: f64,
    pub total_cost: f64,
}

/// `task_status` and the matching `status` of a run outcome.
fn statuses(outcome: Outcome) -> (&'static str, &'static str) {
    match outcome {
        Outcome::Success => ("success", "ok"),
        Outcome::Failure | Outcome::Panic => ("failure", "critical"),
        Outcome::Timeout => ("timeout", "error"),
        Outcome::Skip => ("skip", "warning"),
    }
}

impl TaskPoint {
    fn lines(&self) -> (String, String) {
        let (task_status, status) = statuses(self.outcome);
        let mut all = self.tags.clone();
        all.insert("task_status".into(), task_status.into());
        let costs = format!(
            "wait_cost={:.3},run_cost={:.3},total_cost={:.3}",
            self.wait_cost * 1000.0,
            self.run_cost * 1000.0,
            self.total_cost * 1000.0
        );
        let metric = format!(
            "{} {costs} {}",
            tags("collector_task", &all),
            nanos(self.end)
        );
        all.insert("status".into(), status.into());
        let message = format!(
            "task {} {task_status}, triggered at {}",
            self.tags.get("job").map(String::as_str).unwrap_or(""),
            self.trigger
        );
        let logging = format!(
            "{} message={},trigger_time={}i,{costs} {}",
            tags("collector_task", &all),
            string_field(&message),
            self.trigger,
            nanos(self.end)
        );
        (logging, metric)
    }
}

/// The sending side of the self-observability upload; cheap to clone.
#[derive(Clone)]
pub struct Uploader {
    queue: mpsc::Sender<TaskPoint>,
    metrics: NotifyMetrics,
    /// Whether the queue is full now (the log says so once, not at every dropped record).
    full: Arc<AtomicBool>,
}

impl Uploader {
    /// Starts the upload task.
    pub fn start(
        datakit: DataKit,
        metrics: NotifyMetrics,
        shutdown: CancellationToken,
    ) -> (Uploader, tokio::task::JoinHandle<()>) {
        let (queue, points) = mpsc::channel(UPLOAD_QUEUE);
        let task = tokio::spawn(upload(datakit, points, metrics.clone(), shutdown));
        let full = Arc::new(AtomicBool::new(false));
        (
            Uploader {
                queue,
                metrics,
                full,
            },
            task,
        )
    }

    /// Queues a task record; never waits (a full queue drops it, counted).
    pub fn send(&self, point: TaskPoint) {
        match self.queue.try_send(point) {
            Ok(()) => {
                if self.full.swap(false, Ordering::Relaxed) {
                    tracing::info!("self-observability upload queue has room again");
                }
            }
            Err(_) => {
                self.metrics.upload("task", "dropped", 1);
                if !self.full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "self-observability upload queue full (DataKit takes points slower than \
                         runs make them): task records are dropped and counted \
                         (collector_uploads_total{{kind=\"task\",outcome=\"dropped\"}})"
                    );
                }
            }
        }
    }
}

/// Logs what an upload's result changed: once when an endpoint starts failing, once when it
/// works again.
fn log_upload(kind: &'static str, turn: Turn) {
    match turn {
        Turn::Working => {}
        Turn::StartedFailing(e) => tracing::warn!(
            kind,
            "self-observability upload failing, points are dropped and counted \
             (collector_uploads_total{{outcome=\"failed\"}}) until it works again: {e}"
        ),
        Turn::StillFailing(e) => {
            tracing::debug!(kind, "self-observability upload still failing: {e}")
        }
        Turn::Recovered(lost) => tracing::info!(
            kind,
            lost,
            "self-observability upload works again; points lost while it failed: {lost}"
        ),
    }
}

/// The upload task's side: the endpoint, the points waiting for the next flush, and how each
/// endpoint fares.
struct Upload {
    datakit: DataKit,
    metrics: NotifyMetrics,
    batch: Vec<TaskPoint>,
    logging: FailureStreak,
    metric: FailureStreak,
}

async fn upload(
    datakit: DataKit,
    mut points: mpsc::Receiver<TaskPoint>,
    metrics: NotifyMetrics,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut upload = Upload {
        datakit,
        metrics,
        batch: Vec::with_capacity(POINTS_PER_POST),
        logging: FailureStreak::default(),
        metric: FailureStreak::default(),
    };
    loop {
        tokio::select! {
            point = points.recv() => match point {
                Some(point) => upload.add(point).await,
                None => break,
            },
            _ = tick.tick() => upload.flush().await,
            _ = shutdown.cancelled() => break,
        }
    }
    while let Ok(point) = points.try_recv() {
        upload.add(point).await;
    }
    upload.flush().await;
}

impl Upload {
    async fn add(&mut self, point: TaskPoint) {
        self.batch.push(point);
        if self.batch.len() >= POINTS_PER_POST {
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let (logging, metric): (Vec<String>, Vec<String>) =
            self.batch.iter().map(TaskPoint::lines).unzip();
        let count = self.batch.len() as u64;
        self.batch.clear();
        let endpoints = [
            ("logging", "/v1/write/logging", logging, &mut self.logging),
            ("metric", "/v1/write/metric", metric, &mut self.metric),
        ];
        for (kind, path, lines, streak) in endpoints {
            let result = self.datakit.post(path, lines.join("\n")).await;
            let outcome = if result.is_ok() { "sent" } else { "failed" };
            self.metrics.upload(kind, outcome, count);
            log_upload(kind, streak.record(result, count));
        }
    }
}
