//! What the status page (`/jobs`) says about ping jobs: address, packets, timeout; and the
//! entities that get no job.

use crate::bot::PingParams;
use collector::{EntityConfig, LeftOut, Summary};

/// The protocol summary of one ping job.
pub fn describe(params: &PingParams) -> Summary {
    match &params.plan {
        Ok((target, settings)) => Summary::default()
            .item("address", target)
            .item("packets", settings.n_packets)
            .item(
                "timeout",
                format!(
                    "{} s per packet, {} retries",
                    settings.timeout.as_secs_f64(),
                    settings.retry
                ),
            )
            .item(
                "pause",
                format!("{} s between packets", settings.sleep_packets.as_secs_f64()),
            ),
        Err(problem) => Summary::default().item("cannot ping", problem),
    }
}

/// Entities without a job: none of their sensors has an interval.
pub fn left_out(configs: &[EntityConfig]) -> Vec<LeftOut> {
    configs
        .iter()
        .filter(|c| c.sensors.iter().all(|s| s.interval.is_none()))
        .map(|c| {
            LeftOut::of(
                c,
                "none of its ping sensors has an interval (neither on the entity nor a sensor default)",
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::job_of;
    use collector::SensorConfig;
    use serde_json::json;

    fn entity(credential: serde_json::Value, interval: Option<u64>) -> EntityConfig {
        EntityConfig {
            entity_id: 5,
            account_id: 7,
            name: "router".into(),
            entity_type: "device".into(),
            parent: None,
            details: json!({"ipv4": "192.0.2.1"}),
            credential_details: credential.into(),
            sensors: vec![SensorConfig {
                sensor_id: 1,
                details: json!({}).into(),
                interval,
            }],
        }
    }

    #[test]
    fn summary_and_left_out_entities() {
        let ok = entity(json!({"n_packets": "2", "timeout": "0.5"}), Some(10));
        let job = job_of(&ok).expect("a job");
        let summary = describe(&job.params);
        let lines: Vec<(&str, &str)> = summary
            .0
            .iter()
            .map(|i| (i.name.as_str(), i.value.as_str()))
            .collect();
        assert_eq!(lines[0], ("address", "192.0.2.1"));
        assert_eq!(lines[1], ("packets", "2"));
        assert_eq!(lines[2], ("timeout", "0.5 s per packet, 0 retries"));
        let bad = job_of(&entity(json!({"n_packets": "x"}), Some(10))).expect("a job");
        assert_eq!(describe(&bad.params).0[0].name, "cannot ping");
        let unscheduled = entity(json!({}), None);
        assert!(job_of(&unscheduled).is_none());
        let left = left_out(&[ok, unscheduled]);
        assert_eq!(left.len(), 1);
        assert!(left[0]
            .reason
            .starts_with("none of its ping sensors has an interval"));
    }
}
