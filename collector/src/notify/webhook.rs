//! The events webhook: one JSON POST per alert state change or event, the body being a
//! [`Notice`] (`{"alert": {...}}` or `{"event": {...}}`, shapes in the collector README).

use super::notice::Notice;
use super::outbox::Deliver;
use crate::redact::redact_url;
use futures::future::BoxFuture;

/// Posts notifications to `EVENTS_WEBHOOK_URL`.
pub struct Webhook {
    pub client: reqwest::Client,
    pub url: String,
}

impl Deliver for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn max_batch(&self) -> usize {
        1
    }

    fn send<'a>(&'a self, notices: &'a [Notice]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            for notice in notices {
                let answer = self
                    .client
                    .post(&self.url)
                    .json(notice)
                    .send()
                    .await
                    .map_err(|e| format!("{}: {}", redact_url(&self.url), e.without_url()))?;
                if !answer.status().is_success() {
                    return Err(format!(
                        "{} answered {}",
                        redact_url(&self.url),
                        answer.status()
                    ));
                }
            }
            Ok(())
        })
    }
}
