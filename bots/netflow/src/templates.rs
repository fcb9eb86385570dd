//! Template persistence in the data directory (redb), so that after a restart data records
//! decode at once instead of waiting for the exporter's next template refresh (softflowd every
//! 16 datagrams, routers often only every few minutes).

use crate::decode::{DomainKey, FieldSpec, TemplateChange, TemplateDef, TemplateKey, TemplateKind};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Encoded [`TemplateKey`] -> encoded [`TemplateDef`].
const TEMPLATES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("netflow_templates");

/// Format of the stored values; bump when the encoding changes (older entries are skipped).
const FORMAT: u8 = 1;

fn encode_key(key: &TemplateKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(25);
    match key.domain.exporter {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.to_ipv6_mapped().octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&key.domain.version.to_be_bytes());
    out.extend_from_slice(&key.domain.domain.to_be_bytes());
    out.extend_from_slice(&key.template_id.to_be_bytes());
    out
}

fn decode_key(bytes: &[u8]) -> Option<TemplateKey> {
    if bytes.len() != 25 {
        return None;
    }
    let octets: [u8; 16] = bytes[1..17].try_into().ok()?;
    let v6 = Ipv6Addr::from(octets);
    let exporter = match bytes[0] {
        4 => IpAddr::V4(v6.to_ipv4_mapped()?),
        6 => IpAddr::V6(v6),
        _ => return None,
    };
    Some(TemplateKey {
        domain: DomainKey {
            exporter,
            version: u16::from_be_bytes([bytes[17], bytes[18]]),
            domain: u32::from_be_bytes([bytes[19], bytes[20], bytes[21], bytes[22]]),
        },
        template_id: u16::from_be_bytes([bytes[23], bytes[24]]),
    })
}

fn encode_def(def: &TemplateDef) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + 8 * def.fields.len());
    out.push(FORMAT);
    match def.kind {
        TemplateKind::Data => {
            out.push(0);
            out.extend_from_slice(&0u16.to_be_bytes());
        }
        TemplateKind::Options { scope_fields } => {
            out.push(1);
            out.extend_from_slice(&scope_fields.to_be_bytes());
        }
    }
    out.extend_from_slice(&(def.fields.len() as u16).to_be_bytes());
    for f in &def.fields {
        out.extend_from_slice(&f.id.to_be_bytes());
        out.extend_from_slice(&f.enterprise.to_be_bytes());
        out.extend_from_slice(&f.length.to_be_bytes());
    }
    out
}

fn decode_def(bytes: &[u8]) -> Option<TemplateDef> {
    if bytes.len() < 6 || bytes[0] != FORMAT {
        return None;
    }
    let scope_fields = u16::from_be_bytes([bytes[2], bytes[3]]);
    let kind = match bytes[1] {
        0 => TemplateKind::Data,
        1 => TemplateKind::Options { scope_fields },
        _ => return None,
    };
    let count = usize::from(u16::from_be_bytes([bytes[4], bytes[5]]));
    let body = &bytes[6..];
    if body.len() != count * 8 {
        return None;
    }
    let fields = body
        .chunks_exact(8)
        .map(|c| FieldSpec {
            id: u16::from_be_bytes([c[0], c[1]]),
            enterprise: u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            length: u16::from_be_bytes([c[6], c[7]]),
        })
        .collect();
    Some(TemplateDef { kind, fields })
}

/// Every stored template. Entries that cannot be read (another format, damage) are skipped and
/// logged; they will be relearnt from the exporter.
pub fn load(db: &Database) -> Result<Vec<(TemplateKey, TemplateDef)>, redb::Error> {
    let txn = db.begin_read()?;
    let table = match txn.open_table(TEMPLATES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    let mut unreadable = 0usize;
    for entry in table.iter()? {
        let (k, v) = entry?;
        match (decode_key(k.value()), decode_def(v.value())) {
            (Some(key), Some(def)) => out.push((key, def)),
            _ => unreadable += 1,
        }
    }
    if unreadable > 0 {
        tracing::warn!("{unreadable} stored NetFlow templates could not be read; skipped");
    }
    Ok(out)
}

/// Applies learnt and withdrawn templates in one transaction.
pub fn save<'a>(
    db: &Database,
    changes: impl IntoIterator<Item = (&'a TemplateKey, &'a Option<TemplateDef>)>,
) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(TEMPLATES)?;
        for (key, def) in changes {
            let key = encode_key(key);
            match def {
                Some(def) => {
                    table.insert(key.as_slice(), encode_def(def).as_slice())?;
                }
                None => {
                    table.remove(key.as_slice())?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// Collects a decoder's template changes and writes them at most once per `min_interval`, so a
/// flood of changing templates cannot turn the receive thread into a disk writer.
#[derive(Debug)]
pub struct TemplatePersister {
    pending: BTreeMap<TemplateKey, Option<TemplateDef>>,
    last_write: Option<Instant>,
    min_interval: Duration,
}

impl TemplatePersister {
    pub fn new(min_interval: Duration) -> TemplatePersister {
        TemplatePersister {
            pending: BTreeMap::new(),
            last_write: None,
            min_interval,
        }
    }

    /// Notes changes; the latest change of a template wins.
    pub fn record(&mut self, changes: Vec<TemplateChange>) {
        for change in changes {
            match change {
                TemplateChange::Learned(key, def) => self.pending.insert(key, Some(def)),
                TemplateChange::Withdrawn(key) => self.pending.insert(key, None),
            };
        }
    }

    /// Whether changes wait to be written.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes the pending changes if there are any and the last write is old enough (or
    /// `force`). Returns how many were written. On error the changes stay pending.
    pub fn flush(
        &mut self,
        db: &Database,
        now: Instant,
        force: bool,
    ) -> Result<usize, redb::Error> {
        if self.pending.is_empty() {
            return Ok(0);
        }
        if !force
            && self
                .last_write
                .is_some_and(|t| now.duration_since(t) < self.min_interval)
        {
            return Ok(0);
        }
        self.last_write = Some(now);
        save(db, &self.pending)?;
        let written = self.pending.len();
        self.pending.clear();
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(exporter: &str, template_id: u16) -> TemplateKey {
        TemplateKey {
            domain: DomainKey {
                exporter: exporter.parse().unwrap(),
                version: 10,
                domain: 7,
            },
            template_id,
        }
    }

    fn def() -> TemplateDef {
        TemplateDef {
            kind: TemplateKind::Options { scope_fields: 1 },
            fields: vec![
                FieldSpec {
                    id: 143,
                    enterprise: 0,
                    length: 4,
                },
                FieldSpec {
                    id: 12,
                    enterprise: 29305,
                    length: 65535,
                },
            ],
        }
    }

    #[test]
    fn encodings_round_trip() {
        for exporter in ["192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1"] {
            let k = key(exporter, 300);
            assert_eq!(decode_key(&encode_key(&k)), Some(k));
        }
        assert_eq!(decode_def(&encode_def(&def())), Some(def()));
        assert_eq!(decode_def(&[2, 0, 0, 0, 0, 0]), None);
        assert_eq!(decode_def(&encode_def(&def())[..10]), None);
    }

    #[test]
    fn saved_templates_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let db = Database::create(&path).unwrap();
            assert!(load(&db).unwrap().is_empty());
            let mut persister = TemplatePersister::new(Duration::from_secs(1));
            persister.record(vec![
                TemplateChange::Learned(key("192.0.2.1", 300), def()),
                TemplateChange::Learned(key("192.0.2.1", 301), def()),
            ]);
            let now = Instant::now();
            assert_eq!(persister.flush(&db, now, false).unwrap(), 2);
            persister.record(vec![TemplateChange::Withdrawn(key("192.0.2.1", 301))]);
            // Too soon after the last write: kept for later.
            assert_eq!(persister.flush(&db, now, false).unwrap(), 0);
            assert!(persister.has_pending());
            assert_eq!(persister.flush(&db, now, true).unwrap(), 1);
        }
        let db = Database::create(&path).unwrap();
        assert_eq!(load(&db).unwrap(), vec![(key("192.0.2.1", 300), def())]);
    }
}
