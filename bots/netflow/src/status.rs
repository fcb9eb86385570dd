//! What the status page (`/jobs`) says about NetFlow jobs: window and exporters; and the
//! entities whose address can never match an exporter.

use crate::bot::NetflowJob;
use crate::flow::exporter_address;
use crate::windows::{WindowClock, WINDOWS};
use collector::{EntityConfig, LeftOut, Summary};

/// The protocol summary of one NetFlow job.
pub fn describe(job: &NetflowJob, clock: WindowClock) -> Summary {
    match job {
        NetflowJob::SuggestEntities => Summary::default().item(
            "task",
            "suggests a device to every account for each exporter seen that is none of its devices",
        ),
        NetflowJob::Aggregate {
            window, entities, ..
        } => {
            let window = match WINDOWS.get(*window) {
                Some(spec) => format!("{} (reported every {} s)", spec.label, clock.interval(spec)),
                None => format!("window {window}"),
            };
            let exporters: Vec<String> = entities
                .iter()
                .map(|e| format!("{} ({})", e.address().unwrap_or("no address"), e.name))
                .collect();
            Summary::default()
                .item("window", window)
                .item("exporters", exporters.join(", "))
        }
    }
}

/// Entities whose `details.ipv4` holds no IP address: no flow can be matched to them.
pub fn left_out(configs: &[EntityConfig]) -> Vec<LeftOut> {
    configs
        .iter()
        .filter_map(|c| {
            let why = exporter_address(&c.details).err()?;
            Some(LeftOut::of(
                c,
                format!("{why}; no flow can be matched to it"),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entity(id: u64, address: serde_json::Value) -> EntityConfig {
        EntityConfig {
            entity_id: id,
            account_id: 1,
            name: format!("exporter {id}"),
            entity_type: "device".into(),
            parent: None,
            details: json!({ "ipv4": address }),
            credential_details: json!({}).into(),
            sensors: Vec::new(),
        }
    }

    #[test]
    fn window_exporters_and_unmatchable_addresses() {
        let entities = vec![entity(1, json!("192.0.2.1")), entity(2, json!("router"))];
        let job = NetflowJob::Aggregate {
            window: 0,
            account: 1,
            entities: entities.clone(),
        };
        let summary = describe(&job, WindowClock::default());
        assert_eq!(summary.0[0].value, "1min (reported every 60 s)");
        assert_eq!(
            summary.0[1].value,
            "192.0.2.1 (exporter 1), router (exporter 2)"
        );
        let left = left_out(&entities);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].entity_id, 2);
        assert_eq!(
            left[0].reason,
            "details.ipv4 `router` is a host name, not an IP address; no flow can be matched to it"
        );
    }
}
