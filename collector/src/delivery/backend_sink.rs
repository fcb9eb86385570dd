//! The Grafolean backend as a sink: one POST per coalesced group, retried with backoff on
//! connection errors and 5xx, never on 4xx. A group the backend still cannot take goes to the
//! durable spool, and while the spool holds anything new groups join it, so values reach the
//! backend oldest first. A 400 on a group is split in halves until the refused values are found:
//! only those are dropped (each logged with its job and entity), the rest is delivered.

use super::{Batch, Sink};
use crate::backend::{BackendClient, BackendError, ValuesUrl};
use crate::metrics::{label, Metrics};
use crate::spool::Spool;
use crate::status::Delivered;
use crate::value::Value;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Delivers to the backend; see the module documentation.
pub struct BackendSink {
    client: BackendClient,
    /// Tries before a group goes to the spool.
    attempts: u64,
    first_backoff: Duration,
    metrics: Metrics,
    spool: Spool,
    /// Once cancelled (shutdown), failed groups are spooled at once instead of retried.
    shutdown: CancellationToken,
    /// Each account's values URL, token included, parsed once.
    urls: Mutex<HashMap<u64, ValuesUrl>>,
}

/// A value of a group: the firing it came from and its place in that firing.
type Slot = (usize, usize);

/// How one POST of a group (or of a part of it) ended, after retries.
enum Posted {
    Accepted,
    /// Still failing after the retries (or at shutdown): the values go to the spool.
    Unavailable,
    Refused(BackendError),
}

impl BackendSink {
    pub fn new(
        client: BackendClient,
        attempts: u64,
        first_backoff: Duration,
        metrics: Metrics,
        spool: Spool,
        shutdown: CancellationToken,
    ) -> BackendSink {
        BackendSink {
            client,
            attempts,
            first_backoff,
            metrics,
            spool,
            shutdown,
            urls: Mutex::default(),
        }
    }

    fn lost(&self, reason: &'static str, count: u64) {
        self.metrics
            .framework
            .values_dropped
            .get_or_create(&label("reason", reason))
            .inc_by(count);
    }

    fn url(&self, account: u64) -> Result<ValuesUrl, BackendError> {
        let mut urls = self.urls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(url) = urls.get(&account) {
            return Ok(url.clone());
        }
        let url = self.client.values_url(account)?;
        urls.insert(account, url.clone());
        Ok(url)
    }

    async fn to_spool(&self, firings: Vec<Batch>, account: u64) {
        let counts: Vec<u64> = firings.iter().map(|b| b.values.len() as u64).collect();
        let receipts: Vec<Batch> = firings.iter().map(Batch::without_values).collect();
        let result = self.spool.push(firings, account).await;
        for (batch, count) in receipts.iter().zip(counts) {
            let mut delivered = Delivered::default();
            match &result {
                Ok(()) => delivered.spooled = count,
                Err(e) => {
                    tracing::error!(job = %batch.job_id, entity = batch.entity_id, account,
                        "{count} values lost: {e}");
                    self.lost("spool_error", count);
                    delivered.dropped = count;
                }
            }
            batch.report(delivered);
        }
    }

    /// POSTs a body, retrying connection errors and 5xx with backoff.
    async fn post(&self, url: &ValuesUrl, body: Vec<u8>, what: &str) -> Posted {
        // Each attempt shares the one body: a POST of 10,000 values holds 450 KB, not twice that.
        let body = bytes::Bytes::from(body);
        let mut backoff = self.first_backoff;
        let mut attempt = 1;
        loop {
            match self.client.post_values(url, body.clone()).await {
                Ok(()) => return Posted::Accepted,
                Err(e) if !e.is_retryable() => return Posted::Refused(e),
                Err(e) if attempt >= self.attempts || self.shutdown.is_cancelled() => {
                    tracing::warn!("backend unavailable, {what} go to the spool: {e}");
                    return Posted::Unavailable;
                }
                Err(e) => {
                    tracing::warn!(
                        "delivery attempt {attempt} of {what} failed, retrying in {backoff:?}: {e}"
                    );
                    self.metrics.framework.delivery_retries.inc();
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.shutdown.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    attempt += 1;
                }
            }
        }
    }

    /// Delivers a group whose first POST was refused with a status that a single bad value can
    /// cause: halves are tried until each refused value stands alone.
    async fn split(&self, url: &ValuesUrl, account: u64, firings: &[Batch]) {
        let slots: Vec<Slot> = firings
            .iter()
            .enumerate()
            .flat_map(|(f, b)| (0..b.values.len()).map(move |v| (f, v)))
            .collect();
        let mut tallies = vec![Delivered::default(); firings.len()];
        let half = slots.len() / 2;
        let mut parts = vec![&slots[half..], &slots[..half]];
        while let Some(part) = parts.pop() {
            let values = part.iter().map(|&(f, v)| &firings[f].values[v]);
            let what = format!("{} values of account {account}", part.len());
            match self.post(url, json_values(values, part.len()), &what).await {
                Posted::Accepted => {
                    self.metrics
                        .framework
                        .values_delivered
                        .inc_by(part.len() as u64);
                    part.iter().for_each(|&(f, _)| tallies[f].accepted += 1);
                }
                Posted::Unavailable => {
                    self.to_spool(subset(firings, part), account).await;
                }
                Posted::Refused(e) if part.len() > 1 && splittable(&e) => {
                    let half = part.len() / 2;
                    parts.push(&part[half..]);
                    parts.push(&part[..half]);
                }
                Posted::Refused(e) => {
                    for &(f, v) in part {
                        let batch = &firings[f];
                        tracing::error!(job = %batch.job_id, entity = batch.entity_id, account,
                            path = %batch.values[v].path,
                            "value refused by the backend, dropped (the rest is delivered): {e}");
                        tallies[f].dropped += 1;
                    }
                    self.lost("rejected", part.len() as u64);
                }
            }
        }
        for (batch, tally) in firings.iter().zip(tallies) {
            batch.report(tally);
        }
    }

    fn refuse_all(&self, firings: &[Batch], account: u64, e: &BackendError) {
        let hint = e.hint().map(|h| format!(" ({h})")).unwrap_or_default();
        for batch in firings {
            let count = batch.values.len() as u64;
            tracing::error!(job = %batch.job_id, entity = batch.entity_id, account,
                "{count} values rejected by the backend, not retried: {e}{hint}");
            self.lost("rejected", count);
            batch.report(Delivered {
                dropped: count,
                ..Delivered::default()
            });
        }
    }

    async fn deliver_group(&self, firings: Vec<Batch>) {
        let count: usize = firings.iter().map(|b| b.values.len()).sum();
        let Some(account) = firings.first().and_then(|b| b.account_id) else {
            for batch in &firings {
                let count = batch.values.len() as u64;
                tracing::error!(job = %batch.job_id, entity = batch.entity_id,
                    "job produced values but belongs to no account; {count} values dropped");
                self.lost("no_account", count);
                batch.report(Delivered {
                    dropped: count,
                    ..Delivered::default()
                });
            }
            return;
        };
        if !self.spool.is_empty() {
            return self.to_spool(firings, account).await;
        }
        let url = match self.url(account) {
            Ok(url) => url,
            Err(e) => return self.refuse_all(&firings, account, &e),
        };
        let values = firings.iter().flat_map(|b| b.values.iter());
        let what = describe(&firings, count, account);
        match self.post(&url, json_values(values, count), &what).await {
            Posted::Accepted => {
                self.metrics.framework.values_delivered.inc_by(count as u64);
                firings.iter().for_each(Batch::report_accepted);
            }
            Posted::Unavailable => self.to_spool(firings, account).await,
            Posted::Refused(e) if count > 1 && splittable(&e) => {
                tracing::warn!(
                    account,
                    "the backend refused {what}: {e}; finding the refused values"
                );
                self.split(&url, account, &firings).await;
            }
            Posted::Refused(e) => self.refuse_all(&firings, account, &e),
        }
    }
}

impl Sink for BackendSink {
    fn deliver(&self, firings: Vec<Batch>) -> BoxFuture<'_, ()> {
        Box::pin(self.deliver_group(firings))
    }
}

/// Whether a refusal may come from some values only (a path or a number the backend does not
/// take, a list too long) rather than from the account or the token (401, 403, 404).
fn splittable(e: &BackendError) -> bool {
    matches!(e.status(), Some(400 | 413 | 422))
}

/// "12 values of 3 firings (jobs a (entity 5), b, c) for account 1", for log lines.
fn describe(firings: &[Batch], count: usize, account: u64) -> String {
    const NAMED: usize = 3;
    let mut jobs: Vec<String> = firings
        .iter()
        .take(NAMED)
        .map(|b| match b.entity_id {
            Some(entity) => format!("{} (entity {entity})", b.job_id),
            None => b.job_id.clone(),
        })
        .collect();
    if firings.len() > NAMED {
        jobs.push(format!("{} more", firings.len() - NAMED));
    }
    format!(
        "{count} values of {} firings (jobs {}) for account {account}",
        firings.len(),
        jobs.join(", ")
    )
}

/// The values of `slots` as batches of their own firings, for the spool.
fn subset(firings: &[Batch], slots: &[Slot]) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    for &(f, v) in slots {
        let from = &firings[f];
        match out.last_mut() {
            Some(last) if last.job_id == from.job_id && last.time == from.time => {}
            _ => out.push(from.without_values()),
        }
        if let Some(last) = out.last_mut() {
            last.values.push(from.values[v].clone());
        }
    }
    out
}

/// A JSON list of `{p, v}` written straight from the firings, without copying the values.
/// Written by hand rather than through serde's serializer, whose per-field work was most of
/// this. The values passed [`super::clean`], whose path rule allows letters, digits, `_`, `-`,
/// `.` and `%` only, so paths are written as they are: nothing in them needs escaping.
/// Numbers are formatted by serde_json's own formatter, so the bytes are serde_json's.
fn json_values<'a>(values: impl Iterator<Item = &'a Value>, count: usize) -> Vec<u8> {
    use serde_json::ser::{CompactFormatter, Formatter};
    let mut out = Vec::with_capacity(count * 48 + 2);
    out.push(b'[');
    for (at, value) in values.enumerate() {
        debug_assert!(crate::value::path_problem(&value.path).is_none());
        if at > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"p\":\"");
        out.extend_from_slice(value.path.as_bytes());
        out.extend_from_slice(b"\",\"v\":");
        // Half of a ping run's values are 1 or 0 (answered, success, loss): written as serde
        // writes them, without the float formatter.
        if value.value == 1.0 {
            out.extend_from_slice(b"1.0");
        } else if value.value == 0.0 && value.value.is_sign_positive() {
            out.extend_from_slice(b"0.0");
        } else if value.value.is_finite() {
            let _ = CompactFormatter.write_f64(&mut out, value.value);
        } else {
            out.extend_from_slice(b"null");
        }
        out.push(b'}');
    }
    out.push(b']');
    out
}

#[cfg(test)]
mod tests {
    use super::json_values;
    use crate::value::Value;

    #[test]
    fn values_are_written_as_serde_json_writes_them() {
        let paths = [
            "entity.1.ping.rtt.min",
            "a",
            "netflow.1min.egress.entity.5.topip.10%2e0%2e0%2e1",
            "A-b_C.9",
        ];
        let numbers = [
            0.0,
            -0.0,
            1.0,
            0.1,
            1e300,
            -2.5e-8,
            123_456_789.0,
            4.2e21,
            f64::NAN,
            f64::INFINITY,
        ];
        let values: Vec<Value> = paths
            .iter()
            .flat_map(|p| numbers.iter().map(move |n| Value::new(*p, *n)))
            .collect();
        assert_eq!(
            json_values(values.iter(), values.len()),
            serde_json::to_vec(&values).unwrap()
        );
        assert_eq!(json_values(std::iter::empty(), 0), b"[]");
    }
}
