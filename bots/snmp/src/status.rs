//! What the status page (`/jobs`) says about SNMP jobs: agent, SNMP version, each sensor with
//! its OIDs, expression and output path (never a community or a key); and the entities that
//! get no job.

use crate::bot::SnmpJob;
use crate::sensor::{FetchMethod, SensorSpec};
use crate::session::{CommunityVersion, Credential};
use collector::{EntityConfig, LeftOut, Summary};

/// The protocol summary of one SNMP job.
pub fn describe(job: &SnmpJob) -> Summary {
    match job {
        SnmpJob::Poll(poll) => {
            let mut summary = Summary::default()
                .item("agent", poll.address.as_deref().unwrap_or("(no address)"))
                .item("credential", credential_kind(&poll.credential));
            for sensor in &poll.sensors {
                summary = match sensor {
                    Ok(spec) => summary.item(sensor_title(spec), sensor_text(spec)),
                    Err(problem) => summary.item(
                        format!("sensor {}", problem.sensor_id),
                        format!("unusable: {}", problem.message),
                    ),
                };
            }
            summary
        }
        SnmpJob::Interfaces(job) => Summary::default()
            .item("agent", job.address.as_deref().unwrap_or("(no address)"))
            .item("credential", credential_kind(&job.credential))
            .item(
                "task",
                "keeps the device's interface entities in step with IF-MIB",
            ),
    }
}

fn sensor_title(spec: &SensorSpec) -> String {
    match spec.interval {
        Some(interval) => format!("sensor {} every {interval} s", spec.sensor_id),
        None => format!("sensor {} (no interval)", spec.sensor_id),
    }
}

fn sensor_text(spec: &SensorSpec) -> String {
    let oids: Vec<String> = spec
        .oids
        .iter()
        .map(|oid| {
            let method = match oid.method {
                FetchMethod::Get => "get",
                FetchMethod::Walk => "walk",
            };
            format!("{method} {}", oid.text)
        })
        .collect();
    format!(
        "{} → {} = {}",
        oids.join(", "),
        spec.template.text(),
        spec.expression.source()
    )
}

/// The SNMP version and security level, without community or keys.
fn credential_kind(credential: &Result<Credential, String>) -> String {
    match credential {
        Ok(Credential::Community { version, .. }) => match version {
            CommunityVersion::V1 => "SNMPv1 community".to_string(),
            CommunityVersion::V2c => "SNMPv2c community".to_string(),
        },
        Ok(Credential::Usm(usm)) => {
            let level = match (&usm.auth, &usm.privacy) {
                (Some((auth, _)), Some((privacy, _))) => format!("authPriv, {auth:?}/{privacy:?}"),
                (Some((auth, _)), None) => format!("authNoPriv, {auth:?}"),
                _ => "noAuthNoPriv".to_string(),
            };
            format!("SNMPv3 user {:?}, {level}", usm.security_name)
        }
        Err(problem) => format!("unusable: {problem}"),
    }
}

/// Entities without a job: no sensor with an interval and no interface sync (standalone).
pub fn left_out(configs: &[EntityConfig], interface_sync: bool) -> Vec<LeftOut> {
    if interface_sync {
        return Vec::new();
    }
    configs
        .iter()
        .filter(|c| c.sensors.iter().all(|s| s.interval.is_none()))
        .map(|c| {
            LeftOut::of(
                c,
                "none of its SNMP sensors has an interval (neither on the entity nor a sensor default)",
            )
        })
        .collect()
}
