//! The SNMP bot's own metrics in one struct: what the SNMP layer, the sensors and interface sync
//! count, registered once in `/metrics` (prefix `collector_snmp_`). Not to be confused with
//! `counters`, the Counter32/Counter64 samples that become rates.

use crate::interfaces::InterfaceCounters;
use crate::sensor::SensorCounters;
use crate::session::SnmpCounters;
use prometheus_client::metrics::counter::Counter;

/// Every metric of the SNMP bot; each part is handed to the layer that counts it.
#[derive(Clone, Default)]
pub struct SnmpMetrics {
    pub requests: SnmpCounters,
    pub sensors: SensorCounters,
    pub interfaces: InterfaceCounters,
}

impl SnmpMetrics {
    /// Registers every metric with the framework's registry.
    pub fn register(&self, metrics: &collector::metrics::Metrics) {
        let all: [(&str, &str, &Counter); 7] = [
            (
                "snmp_requests",
                "SNMP requests sent (GET, GETNEXT, GETBULK)",
                &self.requests.requests,
            ),
            (
                "snmp_timeouts",
                "SNMP requests without an answer after all retries",
                &self.requests.timeouts,
            ),
            (
                "snmp_errors",
                "SNMP requests that failed otherwise (error status, authentication, malformed)",
                &self.requests.errors,
            ),
            (
                "snmp_sensor_failures",
                "Sensors that gave no values in a firing (failing OID, bad config)",
                &self.sensors.sensor_failures,
            ),
            (
                "snmp_rows_skipped",
                "Rows left out (expression failed, path invalid or repeated)",
                &self.sensors.rows_skipped,
            ),
            (
                "snmp_interface_changes",
                "Interface entities created, updated or deleted",
                &self.interfaces.changes,
            ),
            (
                "snmp_interface_forbidden",
                "Interface syncs refused by the backend (403)",
                &self.interfaces.forbidden,
            ),
        ];
        for (name, help, counter) in all {
            metrics.register(name, help, counter.clone());
        }
        metrics.register(
            "snmp_requests_per_poll",
            "SNMP requests one device-poll took (merged GETs and GETBULK walks of all due sensors)",
            self.sensors.requests_per_poll.clone(),
        );
    }
}
