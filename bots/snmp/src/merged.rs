//! Merged requests of one device in one firing: the GETs of all due sensors as multi-varbind
//! GETs, and their walks advancing side by side as multi-varbind GETBULKs (GETNEXTs on SNMPv1),
//! columns that ended dropping out of the next request.
//!
//! Each OID's result is exactly what walking (or getting) it alone gives: every column keeps
//! its own cursor, and a GETBULK's repetitions are successive GETNEXTs of each column. A
//! failure that concerns one OID (missing object, an agent error naming it, a broken column)
//! stays with that OID; only failures of the whole agent (no answer, v3 security) end the
//! exchange.

use crate::session::{Session, SnmpError};
use crate::walk::{index_text, SnmpValue, WalkRow};
use async_snmp::{ErrorStatus, Oid, VarBind};
use std::collections::hash_map::{Entry, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};

/// One device's requests in one firing: its session and how many requests they took.
pub struct Exchange<'s> {
    session: &'s Session,
    requests: AtomicU32,
}

/// How many OIDs a GET or GETNEXT request of [`Exchange::fixed_many`] holds.
#[derive(Clone, Copy)]
enum Sizing {
    /// At most this many.
    Fixed(usize),
    /// As many as the agent's row-chain size says, learnt from each request.
    Chain,
}

/// What one GET or GETNEXT request (split after `tooBig` answers) came to.
struct Sent {
    /// The range of OIDs that failed, the error index, and the error.
    failure: Option<(Range<usize>, Option<u32>, SnmpError)>,
    /// When the agent said `tooBig`: the most OIDs one of its answers held.
    largest_after_split: Option<usize>,
}

/// What a GETNEXT or GET of one OID in a merged request came back with.
enum Answer {
    Bound(VarBind),
    Failed(SnmpError),
}

impl<'s> Exchange<'s> {
    /// Starts counting requests on `session`.
    pub fn new(session: &'s Session) -> Exchange<'s> {
        Exchange {
            session,
            requests: AtomicU32::new(0),
        }
    }

    /// Requests sent so far (retries after a timeout not counted, `tooBig` answers counted).
    pub fn requests(&self) -> u32 {
        self.requests.load(Ordering::Relaxed)
    }

    fn count(&self, requests: u32) {
        self.requests.fetch_add(requests, Ordering::Relaxed);
    }

    /// GETs `oids` in as few requests as the varbind bound allows. Each OID gets its value or
    /// its own error ([`SnmpError::NoSuchObject`] when the agent lacks it); `Err` only when the
    /// agent cannot be used at all.
    pub async fn get_many(
        &self,
        oids: &[Oid],
    ) -> Result<Vec<Result<SnmpValue, SnmpError>>, SnmpError> {
        // Boxed for the same reason as `walk_many`.
        let per_request = Sizing::Fixed(self.session.settings().max_varbinds);
        let answers = Box::pin(self.fixed_many(oids, false, per_request)).await?;
        let target = self.session.target();
        Ok(answers
            .into_iter()
            .zip(oids)
            .map(|(answer, oid)| match answer {
                Answer::Failed(error) => Err(error),
                Answer::Bound(varbind) if varbind.oid != *oid => Err(SnmpError::Other {
                    target: target.to_string(),
                    reason: format!("the answer to GET {oid} did not contain that OID"),
                }),
                Answer::Bound(varbind) => {
                    SnmpValue::from_value(varbind.value).ok_or_else(|| SnmpError::NoSuchObject {
                        target: target.to_string(),
                    })
                }
            })
            .collect())
    }

    /// GET (or GETNEXT, `next`) of every OID, one answer per OID in order. Requests hold at
    /// as many OIDs as `sizing` says; async-snmp splits a request the agent calls `tooBig`. An OID
    /// the agent refuses by error index (SNMPv1's noSuchName) gets that error and the others
    /// are asked again without it.
    async fn fixed_many(
        &self,
        oids: &[Oid],
        next: bool,
        sizing: Sizing,
    ) -> Result<Vec<Answer>, SnmpError> {
        let mut answers: Vec<Option<Answer>> = oids.iter().map(|_| None).collect();
        loop {
            let open: Vec<usize> = (0..oids.len()).filter(|&i| answers[i].is_none()).collect();
            if open.is_empty() {
                break;
            }
            let asked: Vec<Oid> = open.iter().map(|&i| oids[i].clone()).collect();
            let failure = self.fixed_round(&asked, next, sizing, |position, answer| {
                answers[open[position]] = Some(answer);
            });
            let Some((range, index, classified)) = failure.await? else {
                if open.iter().any(|&i| answers[i].is_none()) {
                    // The stream ended without answering every OID: never ask forever.
                    let reason = "the agent's answers left OIDs out".to_string();
                    for &i in &open {
                        answers[i].get_or_insert_with(|| {
                            Answer::Failed(SnmpError::Other {
                                target: self.session.target().to_string(),
                                reason: reason.clone(),
                            })
                        });
                    }
                }
                continue;
            };
            let named = index
                .and_then(|index| (index as usize).checked_sub(1))
                .filter(|&i| i < range.len())
                .map(|i| range.start + i);
            // The OID the agent named fails alone; without a name, the whole failed range.
            let failed: Range<usize> = match named {
                Some(position) => position..position + 1,
                None => range,
            };
            for position in failed {
                answers[open[position]] = Some(Answer::Failed(classified.clone()));
            }
        }
        Ok(answers.into_iter().flatten().collect())
    }

    /// One pass of GET/GETNEXT over `oids`, requests sized by `sizing`, each through
    /// async-snmp's chunked request (which halves a request the agent calls `tooBig`): answers
    /// go to `deliver` by position; a failure of one OID range ends the pass and is returned
    /// with its meaning.
    async fn fixed_round(
        &self,
        oids: &[Oid],
        next: bool,
        sizing: Sizing,
        mut deliver: impl FnMut(usize, Answer),
    ) -> Result<Option<(Range<usize>, Option<u32>, SnmpError)>, SnmpError> {
        let chain_size = self.session.chain_size();
        let mut offset = 0;
        while offset < oids.len() {
            let size = match sizing {
                Sizing::Fixed(size) => size,
                Sizing::Chain => chain_size.get(),
            };
            let slice = &oids[offset..(offset + size.max(1)).min(oids.len())];
            let started = std::time::Instant::now();
            let sent = self
                .fixed_request(slice, next, |position, answer| {
                    deliver(offset + position, answer)
                })
                .await;
            let sent = match (sizing, sent) {
                (Sizing::Chain, Err(timeout @ SnmpError::Timeout { .. })) if slice.len() > 1 => {
                    // An agent drops a request larger than it can take.
                    chain_size.limit(slice.len() / 2);
                    return Err(timeout);
                }
                (_, sent) => sent?,
            };
            if let Sizing::Chain = sizing {
                match sent.largest_after_split {
                    Some(largest) => chain_size.limit(largest),
                    None if sent.failure.is_none() => chain_size.answered(
                        slice.len(),
                        started.elapsed(),
                        self.session.settings().timeout,
                    ),
                    None => {}
                }
            }
            if let Some((range, index, error)) = sent.failure {
                return Ok(Some((
                    offset + range.start..offset + range.end,
                    index,
                    error,
                )));
            }
            offset += slice.len();
        }
        Ok(None)
    }

    /// One request of `oids` (several after `tooBig` answers), as [`Exchange::fixed_round`].
    async fn fixed_request(
        &self,
        oids: &[Oid],
        next: bool,
        mut deliver: impl FnMut(usize, Answer),
    ) -> Result<Sent, SnmpError> {
        let client = self.session.client();
        let chunks = if next {
            client.get_next_many_chunks(oids)
        } else {
            client.get_many_chunks(oids)
        };
        let mut chunks = chunks.map_err(|e| self.session.classify(&e))?;
        let mut requests = 0u32;
        let mut largest_answer = 0;
        let mut answered = 0;
        let mut failure = None;
        while answered < oids.len() {
            requests += 1;
            self.count(1);
            let item = self
                .session
                .request_noting(chunks.next(), |item| match item {
                    Some(Err(error)) => Some(&*error.source),
                    _ => None,
                })
                .await;
            let chunk = match item {
                None => break,
                Some(Ok(chunk)) => chunk,
                Some(Err(error)) => {
                    failure = Some(error);
                    break;
                }
            };
            answered += chunk.request_range.len();
            largest_answer = largest_answer.max(chunk.request_range.len());
            let mut varbinds = chunk.response.varbinds.into_iter();
            for position in chunk.request_range {
                let answer = match varbinds.next() {
                    Some(varbind) => Answer::Bound(varbind),
                    None => Answer::Failed(SnmpError::Other {
                        target: self.session.target().to_string(),
                        reason: format!("the answer left out {}", oids[position]),
                    }),
                };
                deliver(position, answer);
            }
        }
        // A request split n ways after `tooBig` answers took 2n - 1 requests, not n.
        let leaves = requests - u32::from(failure.is_some());
        let split_retries = leaves.saturating_sub(1);
        self.count(split_retries);
        self.session.count_requests(u64::from(split_retries));
        let largest_after_split =
            (split_retries > 0 && largest_answer > 0).then_some(largest_answer);
        let Some(failure) = failure else {
            return Ok(Sent {
                failure: None,
                largest_after_split,
            });
        };
        let source = failure.source.exchange_source();
        let classified = self.session.classify(source);
        if classified.affects_whole_agent() {
            return Err(classified);
        }
        let index = match source {
            async_snmp::Error::Snmp { index, .. } => Some(*index),
            _ => None,
        };
        Ok(Sent {
            failure: Some((failure.failed_request_range, index, classified)),
            largest_after_split,
        })
    }

    /// Walks the subtrees under `bases` side by side; each gets its rows in agent order or its
    /// own error. `Err` only when the agent cannot be used at all.
    pub async fn walk_many(
        &self,
        bases: &[Oid],
    ) -> Result<Vec<Result<Vec<WalkRow>, SnmpError>>, SnmpError> {
        // Boxed: async-snmp's request futures nest deep, and a firing's future would exceed
        // the compiler's layout depth limit. One allocation per walk.
        Box::pin(self.walk_columns(bases)).await
    }

    /// The walk of `bases`: one round of every column side by side (a small table ends
    /// there); then the columns that lead their tables (the first under each parent OID) and
    /// the columns alone under their parent, to their ends; then the other columns of each
    /// table in row chains along their leader's rows; then whatever the chains left.
    async fn walk_columns(
        &self,
        bases: &[Oid],
    ) -> Result<Vec<Result<Vec<WalkRow>, SnmpError>>, SnmpError> {
        let mut columns: Vec<Column> = bases.iter().map(Column::new).collect();
        let leaders = match self.session.settings().max_chain_varbinds {
            0 => vec![None; bases.len()],
            _ => table_leaders(bases),
        };
        for leader in leaders.iter().flatten() {
            columns[*leader].row_oids = Some(Vec::new());
        }
        let limits = WalkLimits {
            max_rows: self.session.settings().max_walk_rows,
            target: self.session.target(),
        };
        let mut alone = false;
        let everyone: Vec<usize> = (0..columns.len()).collect();
        self.walk_round(&mut columns, &everyone, &limits, &mut alone)
            .await?;
        for (column, leader) in columns.iter_mut().zip(&leaders) {
            column.waits = leader.is_some() && column.is_active();
        }
        self.walk_rounds(&mut columns, &limits, &mut alone).await?;
        if columns.iter().any(|column| column.waits) {
            self.follow_row_chains(&mut columns, &leaders, &limits)
                .await?;
            self.walk_rounds(&mut columns, &limits, &mut alone).await?;
        }
        Ok(columns.into_iter().map(Column::finish).collect())
    }

    /// Advances every active column that does not wait for its leader until all have ended.
    async fn walk_rounds(
        &self,
        columns: &mut [Column],
        limits: &WalkLimits<'_>,
        alone: &mut bool,
    ) -> Result<(), SnmpError> {
        loop {
            let active: Vec<usize> = (0..columns.len())
                .filter(|&c| columns[c].is_active() && !columns[c].waits)
                .collect();
            if active.is_empty() {
                return Ok(());
            }
            self.walk_round(columns, &active, limits, alone).await?;
        }
    }

    /// One step of the `active` columns: GETBULKs, or GETNEXTs on SNMPv1. `alone` is set once
    /// an agent's error named no column.
    async fn walk_round(
        &self,
        columns: &mut [Column],
        active: &[usize],
        limits: &WalkLimits<'_>,
        alone: &mut bool,
    ) -> Result<(), SnmpError> {
        if self.session.credential().is_v1() {
            self.getnext_round(columns, active, limits).await
        } else {
            *alone = self.bulk_round(columns, active, limits, *alone).await?;
            Ok(())
        }
    }

    /// Walks each waiting column along its leader's rows: one GETNEXT of where the column
    /// stands and of each row the leader had after that, many a request. An answer counts
    /// only when the OID it answers is where the column's walk stands (the answer is then
    /// exactly the walk's next step), so rows the leader lacks or has in addition only stop
    /// the chain there; the column's walk then goes on from where it stands. Links are made
    /// and sent a request at a time, so a device holds one request's worth of them.
    async fn follow_row_chains(
        &self,
        columns: &mut [Column],
        leaders: &[Option<usize>],
        limits: &WalkLimits<'_>,
    ) -> Result<(), SnmpError> {
        let followers: Vec<usize> = (0..columns.len())
            .filter(|&c| std::mem::take(&mut columns[c].waits))
            .collect();
        let leader_rows: Vec<Option<Vec<Oid>>> =
            columns.iter_mut().map(|c| c.row_oids.take()).collect();
        let mut batch = ChainBatch::default();
        for column in followers {
            let Some(leader) = leaders[column] else {
                continue;
            };
            let Some(rows) = leader_rows[leader].as_deref() else {
                continue;
            };
            let leader_len = columns[leader].base.len();
            let (base, cursor) = (columns[column].base.clone(), columns[column].cursor.clone());
            batch.push(column, cursor.clone());
            for row in rows {
                let link = Oid::new(base.arcs().iter().chain(&row.arcs()[leader_len..]).copied());
                if link <= cursor {
                    continue;
                }
                batch.push(column, link);
                if batch.len() >= self.session.chain_size().get()
                    && !self.send_chains(&mut batch, columns, limits).await?
                {
                    return Ok(());
                }
            }
        }
        if batch.len() > 0 {
            self.send_chains(&mut batch, columns, limits).await?;
        }
        Ok(())
    }

    /// Sends the links of `batch` and lets each column take the answers that are its walk's
    /// next steps. Returns `false` when this agent's chains stop for this walk: a chain
    /// request got no answer although the agent answered before, so it was taken for one
    /// larger than the agent takes, and the columns are walked as before.
    async fn send_chains(
        &self,
        batch: &mut ChainBatch,
        columns: &mut [Column],
        limits: &WalkLimits<'_>,
    ) -> Result<bool, SnmpError> {
        let chain_size = self.session.chain_size();
        let ceiling = chain_size.ceiling();
        let answers = match self.fixed_many(&batch.links, true, Sizing::Chain).await {
            Ok(answers) => answers,
            Err(SnmpError::Timeout { .. }) if chain_size.ceiling() < ceiling => {
                tracing::info!(
                    target = self.session.target(),
                    "no answer to a GETNEXT of many variable bindings; asking at most {} from now on",
                    chain_size.get()
                );
                return Ok(false);
            }
            Err(error) => return Err(error),
        };
        let links = batch.columns.drain(..).zip(batch.links.drain(..));
        for ((column, link), answer) in links.zip(answers) {
            let column = &mut columns[column];
            if column.is_active() && link == column.cursor {
                column.take(answer, limits);
            }
        }
        Ok(true)
    }

    /// SNMPv1: one GETNEXT step of every active column (several varbinds a request). An
    /// agent's noSuchName is the end of the MIB for the column it names.
    async fn getnext_round(
        &self,
        columns: &mut [Column],
        active: &[usize],
        limits: &WalkLimits<'_>,
    ) -> Result<(), SnmpError> {
        let cursors: Vec<Oid> = active.iter().map(|&c| columns[c].cursor.clone()).collect();
        let per_request = Sizing::Fixed(self.session.settings().max_varbinds);
        for (position, answer) in self
            .fixed_many(&cursors, true, per_request)
            .await?
            .into_iter()
            .enumerate()
        {
            columns[active[position]].take(answer, limits);
        }
        Ok(())
    }

    /// SNMPv2c/v3: one GETBULK per group of active columns, repetitions sized so that the
    /// answer fits what the agent sends. Returns whether columns must be asked alone from now
    /// on (an error that named no column).
    async fn bulk_round(
        &self,
        columns: &mut [Column],
        active: &[usize],
        limits: &WalkLimits<'_>,
        alone: bool,
    ) -> Result<bool, SnmpError> {
        let capacity = self.session.bulk_varbinds();
        let max_repetitions = self.session.settings().max_repetitions.max(1) as usize;
        let group_size = match alone {
            true => 1,
            false => group_size(active.len(), capacity, max_repetitions),
        };
        for group in active.chunks(group_size) {
            let repetitions = (capacity / group.len()).clamp(1, max_repetitions);
            let cursors: Vec<Oid> = group.iter().map(|&c| columns[c].cursor.clone()).collect();
            self.count(1);
            let answer = self
                .session
                .request(
                    self.session
                        .client()
                        .get_bulk(&cursors, 0, repetitions as u32),
                )
                .await;
            let varbinds = match answer {
                Ok(varbinds) => varbinds,
                Err(error) => {
                    if self.bulk_failed(columns, group, repetitions, &error)? {
                        return Ok(true);
                    }
                    continue;
                }
            };
            let asked = group.len() * repetitions;
            let ended_all = varbinds
                .last()
                .is_none_or(|v| matches!(v.value, async_snmp::Value::EndOfMibView));
            if varbinds.len() < asked && !ended_all {
                // The agent truncated the answer to fit its message size.
                self.session.limit_bulk_varbinds(varbinds.len());
            }
            if varbinds.is_empty() {
                group.iter().for_each(|&c| columns[c].end());
                continue;
            }
            for (position, varbind) in varbinds.into_iter().enumerate() {
                let column = &mut columns[group[position % group.len()]];
                if column.is_active() {
                    column.advance(varbind, limits);
                }
            }
        }
        Ok(alone)
    }

    /// Handles a failed GETBULK of `group`: `tooBig` lowers the agent's answer size, an error
    /// naming a column fails that column. Returns whether columns must be asked alone.
    fn bulk_failed(
        &self,
        columns: &mut [Column],
        group: &[usize],
        repetitions: usize,
        error: &async_snmp::Error,
    ) -> Result<bool, SnmpError> {
        let source = error.exchange_source();
        if let async_snmp::Error::Snmp {
            status: ErrorStatus::TooBig,
            ..
        } = source
        {
            if group.len() * repetitions > 1 {
                self.session
                    .limit_bulk_varbinds(group.len() * repetitions / 2);
                return Ok(false);
            }
        }
        let classified = self.session.classify(error);
        if classified.affects_whole_agent() {
            return Err(classified);
        }
        let named = match source {
            async_snmp::Error::Snmp { index, .. } => {
                (*index as usize).checked_sub(1).and_then(|i| group.get(i))
            }
            _ => None,
        };
        match (named, group) {
            (Some(&column), _) | (None, &[column]) => {
                columns[column].fail(classified);
                Ok(false)
            }
            // An error that names no column: from now on each column is asked alone, so that
            // it stays with the column it belongs to.
            (None, _) => Ok(true),
        }
    }
}

/// For each walked base, the first earlier base under the same parent OID (the column that
/// leads its table), or `None` for a base that is the first under its parent.
pub fn table_leaders(bases: &[Oid]) -> Vec<Option<usize>> {
    let mut first: HashMap<&[u32], usize> = HashMap::new();
    bases
        .iter()
        .enumerate()
        .map(|(column, base)| {
            let (_, parent) = base.arcs().split_last()?;
            match first.entry(parent) {
                Entry::Occupied(leader) => Some(*leader.get()),
                Entry::Vacant(slot) => {
                    slot.insert(column);
                    None
                }
            }
        })
        .collect()
}

/// How many columns one GETBULK carries: as few groups as fill at least 9/10 of the answer
/// size (`capacity` varbinds, columns times repetitions), since more groups with more
/// repetitions each read further past the ends of their columns.
pub fn group_size(columns: usize, capacity: usize, max_repetitions: usize) -> usize {
    let wanted = capacity.min(columns * max_repetitions);
    let mut best = (0, columns.max(1));
    for groups in 1..=columns {
        let size = columns.div_ceil(groups);
        let fill = size * (capacity / size).min(max_repetitions);
        if fill * 10 >= wanted * 9 {
            return size;
        }
        if fill > best.0 {
            best = (fill, size);
        }
    }
    best.1
}

/// Row-chain links waiting to be sent: each GETNEXT's OID and the column it walks.
#[derive(Default)]
struct ChainBatch {
    columns: Vec<usize>,
    links: Vec<Oid>,
}

impl ChainBatch {
    fn push(&mut self, column: usize, link: Oid) {
        self.columns.push(column);
        self.links.push(link);
    }

    fn len(&self) -> usize {
        self.links.len()
    }
}

/// Bounds every walked column is held to, and the agent named in their errors.
struct WalkLimits<'a> {
    max_rows: usize,
    target: &'a str,
}

/// One walked subtree during a merged walk.
struct Column {
    base: Oid,
    cursor: Oid,
    rows: Vec<WalkRow>,
    state: ColumnState,
    /// The OIDs of the rows walked, kept while this column leads its table.
    row_oids: Option<Vec<Oid>>,
    /// Waits for its table's leader before it is walked (in row chains).
    waits: bool,
}

enum ColumnState {
    Active,
    Ended,
    Failed(SnmpError),
}

impl Column {
    fn new(base: &Oid) -> Column {
        Column {
            base: base.clone(),
            cursor: base.clone(),
            rows: Vec::new(),
            state: ColumnState::Active,
            row_oids: None,
            waits: false,
        }
    }

    fn is_active(&self) -> bool {
        matches!(self.state, ColumnState::Active)
    }

    fn end(&mut self) {
        self.state = ColumnState::Ended;
    }

    fn fail(&mut self, error: SnmpError) {
        self.state = ColumnState::Failed(error);
    }

    /// Takes the answer to a GETNEXT of this column's cursor. SNMPv1's noSuchName is the end
    /// of the MIB.
    fn take(&mut self, answer: Answer, limits: &WalkLimits<'_>) {
        match answer {
            Answer::Bound(varbind) => self.advance(varbind, limits),
            Answer::Failed(SnmpError::NoSuchObject { .. }) => self.end(),
            Answer::Failed(error) => self.fail(error),
        }
    }

    /// Takes the next binding of this column, as a walk of the column alone would.
    fn advance(&mut self, varbind: VarBind, limits: &WalkLimits<'_>) {
        // endOfMibView (and the other exceptions) end the walk whatever name they carry:
        // agents repeat the last name in it.
        let Some(value) = SnmpValue::from_value(varbind.value) else {
            return self.end();
        };
        let base = &self.base;
        if !varbind.oid.starts_with(base) || varbind.oid.len() == base.len() {
            return self.end();
        }
        let walk_error = |reason: String| SnmpError::Walk {
            target: limits.target.to_string(),
            reason,
        };
        if varbind.oid <= self.cursor {
            let reason = format!(
                "the agent returned {} after {} (OIDs must increase)",
                varbind.oid, self.cursor
            );
            return self.fail(walk_error(reason));
        }
        if self.rows.len() >= limits.max_rows {
            let reason = format!(
                "more than {} rows under {base} (raise the walk row limit if this is real)",
                limits.max_rows
            );
            return self.fail(walk_error(reason));
        }
        self.rows.push(WalkRow {
            index: index_text(&varbind.oid.arcs()[base.len()..]),
            value,
        });
        self.cursor = varbind.oid;
        if let Some(row_oids) = &mut self.row_oids {
            row_oids.push(self.cursor.clone());
        }
    }

    fn finish(self) -> Result<Vec<WalkRow>, SnmpError> {
        match self.state {
            ColumnState::Failed(error) => Err(error),
            ColumnState::Active | ColumnState::Ended => Ok(self.rows),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{group_size, table_leaders};
    use async_snmp::Oid;

    #[test]
    fn each_table_is_led_by_its_first_column() {
        let bases: Vec<Oid> = [
            "1.3.6.1.2.1.2.2.1.2",
            "1.3.6.1.2.1.31.1.1.1.6",
            "1.3.6.1.2.1.2.2.1.10",
            "1.3.6.1.2.1.2.2",
            "1.3.6.1.2.1.31.1.1.1.10",
            "1.3.6.1.2.1.2.2.1.2",
        ]
        .iter()
        .map(|text| text.parse().unwrap())
        .collect();
        assert_eq!(
            table_leaders(&bases),
            [None, None, Some(0), None, Some(1), Some(0)]
        );
    }

    #[test]
    fn groups_fill_the_answer_with_few_groups() {
        // ifTable + ifXTable in 64-varbind answers: 21 + 20 columns, 3 repetitions each.
        assert_eq!(group_size(41, 64, 25), 21);
        assert_eq!(group_size(41, 256, 25), 41);
        assert_eq!(group_size(1, 64, 25), 1);
        assert_eq!(group_size(100, 64, 25), 20);
        assert_eq!(group_size(3, 1, 25), 1);
        assert_eq!(group_size(5, 2, 1), 2);
    }
}
