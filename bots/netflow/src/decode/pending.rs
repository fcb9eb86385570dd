//! Data sets that arrive before their template: held for a while, within limits, and decoded
//! when the template comes; the others are counted and logged.

use super::sequence::LOG_EVERY;
use super::{Decoder, TemplateKey};
use crate::flow::FlowSink;
use std::collections::VecDeque;
use std::time::Instant;

/// A data set waiting for its template.
#[derive(Debug)]
pub(super) struct PendingSet {
    pub(super) key: TemplateKey,
    pub(super) received: Instant,
    pub(super) body: Vec<u8>,
}

impl Decoder {
    pub(super) fn buffer_pending(&mut self, key: TemplateKey, body: &[u8], now: Instant) {
        self.stats.sets_before_template += 1;
        if body.len() > self.limits.max_pending_bytes || self.limits.max_pending_sets == 0 {
            self.note_dropped(key, now);
            return;
        }
        while self.pending.len() >= self.limits.max_pending_sets
            || self.pending_bytes + body.len() > self.limits.max_pending_bytes
        {
            let Some(oldest) = self.pending.pop_front() else {
                break;
            };
            self.pending_bytes -= oldest.body.len();
            self.note_dropped(oldest.key, now);
        }
        self.pending_bytes += body.len();
        self.pending.push_back(PendingSet {
            key,
            received: now,
            body: body.to_vec(),
        });
    }

    pub(super) fn expire_pending(&mut self, now: Instant) {
        while let Some(front) = self.pending.front() {
            if now.duration_since(front.received) < self.limits.pending_ttl {
                break;
            }
            let key = front.key;
            if let Some(expired) = self.pending.pop_front() {
                self.pending_bytes -= expired.body.len();
            }
            self.note_dropped(key, now);
        }
    }

    pub(super) fn note_dropped(&mut self, key: TemplateKey, now: Instant) {
        self.stats.sets_dropped += 1;
        let ttl = self.limits.pending_ttl;
        let Some(state) = self.domain_state(key.domain) else {
            return;
        };
        state.dropped_since_log += 1;
        if state
            .last_drop_log
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            tracing::warn!(
                exporter = %key.domain.exporter,
                domain = key.domain.domain,
                version = key.domain.version,
                template_id = key.template_id,
                "{} data sets dropped: their template did not arrive within {ttl:?}",
                state.dropped_since_log
            );
            state.dropped_since_log = 0;
            state.last_drop_log = Some(now);
        }
    }

    pub(super) fn replay_pending<S: FlowSink>(
        &mut self,
        key: TemplateKey,
        now: Instant,
        sink: &mut S,
    ) {
        if !self.pending.iter().any(|p| p.key == key) {
            return;
        }
        let (waiting, rest): (VecDeque<PendingSet>, VecDeque<PendingSet>) =
            std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|p| p.key == key);
        self.pending = rest;
        for set in waiting {
            self.pending_bytes -= set.body.len();
            self.stats.sets_replayed += 1;
            if let Some(outcome) =
                self.decode_data_set(key.domain, key.template_id, &set.body, now, sink)
            {
                if outcome.error.is_some() {
                    self.stats.malformed += 1;
                }
            }
        }
    }
}
