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
