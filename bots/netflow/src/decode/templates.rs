//! Templates: reading template and options template sets, compiling each template into the
//! offsets of the fields we read, keeping them within limits, and withdrawals.

use super::sets::Picks;
use super::{
    be16, be32, DecodeError, Decoder, DomainKey, FieldSpec, TemplateChange, TemplateDef,
    TemplateKey, TemplateKind, VARIABLE_LENGTH,
};
use crate::flow::FlowSink;
use std::time::Instant;

/// How records of a template are laid out.
#[derive(Debug)]
pub(super) enum Layout {
    /// Every field has a fixed length: records are `record_len` apart, fields at fixed offsets.
    Fixed { record_len: usize, picks: Picks },
    /// Some IPFIX field has a variable length: each record is walked field by field.
    Variable { min_record_len: usize },
}

/// A template compiled for decoding.
#[derive(Debug)]
pub(super) struct Template {
    pub(super) def: TemplateDef,
    pub(super) layout: Layout,
    /// Per field: whether it is variable-length (IPFIX only).
    pub(super) variable: Vec<bool>,
}

impl Template {
    pub(super) fn compile(version: u16, def: TemplateDef) -> Result<Template, &'static str> {
        if def.fields.is_empty() {
            return Err("template without fields");
        }
        let scope_fields = match def.kind {
            TemplateKind::Data => 0,
            TemplateKind::Options { scope_fields } => usize::from(scope_fields),
        };
        let variable: Vec<bool> = def
            .fields
            .iter()
            .map(|f| version == 10 && f.length == VARIABLE_LENGTH)
            .collect();
        let layout = if variable.iter().any(|&v| v) {
            let min_record_len = def
                .fields
                .iter()
                .zip(&variable)
                .map(|(f, &var)| if var { 1 } else { usize::from(f.length) })
                .sum();
            Layout::Variable { min_record_len }
        } else {
            let mut picks = Picks::default();
            let mut offset = 0usize;
            for (index, field) in def.fields.iter().enumerate() {
                // Scope fields of v9 options templates carry scope types, not element ids.
                if field.enterprise == 0 && index >= scope_fields {
                    picks.offer(field.id, offset, usize::from(field.length));
                }
                offset += usize::from(field.length);
            }
            if offset == 0 {
                return Err("template whose records have no length");
            }
            Layout::Fixed {
                record_len: offset,
                picks,
            }
        };
        Ok(Template {
            def,
            layout,
            variable,
        })
    }

    pub(super) fn is_options(&self) -> bool {
        matches!(self.def.kind, TemplateKind::Options { .. })
    }
}

/// One record of a template or options template set.
enum TemplateRecord {
    /// The rest of the set is padding.
    Padding,
    /// An IPFIX template withdrawal (a template without fields).
    Withdrawal { template_id: u16 },
    /// A template with more fields than the limit: refused, the set goes on.
    TooManyFields {
        template_id: u16,
        field_count: usize,
    },
    Template {
        template_id: u16,
        kind: TemplateKind,
        fields: Vec<FieldSpec>,
    },
}

/// Reads the records of one template set in order; the error is why the set is malformed.
struct TemplateSetReader<'a> {
    content: &'a [u8],
    at: usize,
    ipfix: bool,
    options: bool,
    max_fields: usize,
}

impl TemplateSetReader<'_> {
    /// The next record, `None` at the end of the set.
    fn next_record(&mut self) -> Option<Result<TemplateRecord, &'static str>> {
        if self.content.len() - self.at < 4 {
            return None;
        }
        Some(if !self.ipfix && self.options {
            self.v9_options_template()
        } else {
            self.template()
        })
    }

    /// A v9 options template: id, scope length, option length (bytes), then the fields.
    fn v9_options_template(&mut self) -> Result<TemplateRecord, &'static str> {
        let (content, at) = (self.content, self.at);
        let template_id = be16(content, at);
        if content.len() - at < 6 || template_id == 0 {
            return Ok(TemplateRecord::Padding);
        }
        let scope_len = usize::from(be16(content, at + 2));
        let option_len = usize::from(be16(content, at + 4));
        let at = at + 6;
        if scope_len % 4 != 0 || option_len % 4 != 0 {
            return Err("options template lengths not multiples of 4");
        }
        if content.len() - at < scope_len + option_len {
            return Err("options template longer than its set");
        }
        let fields = (0..(scope_len + option_len) / 4)
            .map(|i| FieldSpec {
                id: be16(content, at + 4 * i),
                enterprise: 0,
                length: be16(content, at + 4 * i + 2),
            })
            .collect();
        self.at = at + scope_len + option_len;
        let kind = TemplateKind::Options {
            scope_fields: (scope_len / 4) as u16,
        };
        Ok(TemplateRecord::Template {
            template_id,
            kind,
            fields,
        })
    }

    /// A v9 template, or an IPFIX template or options template (RFC 7011 §3.4).
    fn template(&mut self) -> Result<TemplateRecord, &'static str> {
        let template_id = be16(self.content, self.at);
        let field_count = usize::from(be16(self.content, self.at + 2));
        self.at += 4;
        if field_count == 0 {
            if self.ipfix {
                return Ok(TemplateRecord::Withdrawal { template_id });
            }
            if template_id == 0 {
                return Ok(TemplateRecord::Padding);
            }
            return Err("template without fields");
        }
        let mut scope_fields = 0u16;
        if self.options {
            if self.content.len() - self.at < 2 {
                return Err("options template cut short");
            }
            scope_fields = be16(self.content, self.at);
            self.at += 2;
            if scope_fields == 0 || usize::from(scope_fields) > field_count {
                return Err("options template scope field count out of range");
            }
        }
        let mut fields = Vec::with_capacity(field_count.min(self.max_fields));
        for _ in 0..field_count {
            let field = self.field()?;
            if fields.len() < self.max_fields {
                fields.push(field);
            }
        }
        if field_count > self.max_fields {
            return Ok(TemplateRecord::TooManyFields {
                template_id,
                field_count,
            });
        }
        let kind = if self.options {
            TemplateKind::Options { scope_fields }
        } else {
            TemplateKind::Data
        };
        Ok(TemplateRecord::Template {
            template_id,
            kind,
            fields,
        })
    }

    /// One field specifier, with its enterprise number when IPFIX marks one.
    fn field(&mut self) -> Result<FieldSpec, &'static str> {
        const TOO_LONG: &str = "template longer than its set";
        if self.content.len() - self.at < 4 {
            return Err(TOO_LONG);
        }
        let raw_id = be16(self.content, self.at);
        let length = be16(self.content, self.at + 2);
        self.at += 4;
        if !(self.ipfix && raw_id & 0x8000 != 0) {
            return Ok(FieldSpec {
                id: raw_id,
                enterprise: 0,
                length,
            });
        }
        if self.content.len() - self.at < 4 {
            return Err(TOO_LONG);
        }
        let enterprise = be32(self.content, self.at);
        self.at += 4;
        Ok(FieldSpec {
            id: raw_id & 0x7fff,
            enterprise,
            length,
        })
    }
}

impl Decoder {
    /// Parses a template or options template set, installing each template and decoding any
    /// data sets that were waiting for it.
    pub(super) fn learn_templates<S: FlowSink>(
        &mut self,
        domain: DomainKey,
        set_id: u16,
        content: &[u8],
        options: bool,
        now: Instant,
        sink: &mut S,
    ) -> Result<(), DecodeError> {
        let mut reader = TemplateSetReader {
            content,
            at: 0,
            ipfix: domain.version == 10,
            options,
            max_fields: self.limits.max_template_fields,
        };
        while let Some(record) = reader.next_record() {
            match record.map_err(|reason| DecodeError::BadTemplate { set_id, reason })? {
                TemplateRecord::Padding => break,
                TemplateRecord::Withdrawal { template_id } => {
                    self.withdraw(domain, set_id, template_id)
                }
                TemplateRecord::TooManyFields {
                    template_id,
                    field_count,
                } => {
                    self.stats.templates_refused += 1;
                    tracing::warn!(
                        exporter = %domain.exporter,
                        domain = domain.domain,
                        template_id,
                        "template with {field_count} fields refused (limit {})",
                        self.limits.max_template_fields
                    );
                }
                TemplateRecord::Template {
                    template_id,
                    kind,
                    fields,
                } => self.add_template(domain, set_id, template_id, kind, fields, now, sink)?,
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_template<S: FlowSink>(
        &mut self,
        domain: DomainKey,
        set_id: u16,
        template_id: u16,
        kind: TemplateKind,
        fields: Vec<FieldSpec>,
        now: Instant,
        sink: &mut S,
    ) -> Result<(), DecodeError> {
        if template_id < 256 {
            self.stats.templates_refused += 1;
            return Err(DecodeError::BadTemplate {
                set_id,
                reason: "template id below 256",
            });
        }
        let key = TemplateKey {
            domain,
            template_id,
        };
        let def = TemplateDef { kind, fields };
        if let Some(existing) = self.templates.get(&key) {
            if existing.def == def {
                return Ok(()); // a refresh
            }
        } else if self.templates.len() >= self.limits.max_templates {
            self.stats.templates_refused += 1;
            tracing::warn!(
                exporter = %domain.exporter,
                domain = domain.domain,
                template_id,
                "template refused: {} templates kept already",
                self.limits.max_templates
            );
            return Ok(());
        }
        let template = match Template::compile(domain.version, def.clone()) {
            Ok(t) => t,
            Err(reason) => {
                self.stats.templates_refused += 1;
                return Err(DecodeError::BadTemplate { set_id, reason });
            }
        };
        self.templates.insert(key, template);
        self.stats.templates_learned += 1;
        self.changes.push(TemplateChange::Learned(key, def));
        self.replay_pending(key, now, sink);
        Ok(())
    }
    /// Handles an IPFIX template withdrawal; template id 2 (in a template set) or 3 (in an
    /// options template set) withdraws all templates of that kind (RFC 7011 §8.1).
    pub(super) fn withdraw(&mut self, domain: DomainKey, set_id: u16, template_id: u16) {
        let keys: Vec<TemplateKey> = if template_id == set_id {
            let options = set_id == 3;
            self.templates
                .iter()
                .filter(|(k, t)| k.domain == domain && t.is_options() == options)
                .map(|(k, _)| *k)
                .collect()
        } else {
            vec![TemplateKey {
                domain,
                template_id,
            }]
        };
        for key in keys {
            if self.templates.remove(&key).is_some() {
                self.stats.templates_withdrawn += 1;
                self.changes.push(TemplateChange::Withdrawn(key));
            }
        }
    }
}
