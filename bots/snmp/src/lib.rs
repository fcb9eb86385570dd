//! Grafolean SNMP bot: protocol code on the collector framework.

pub mod counters;
pub mod expression;
pub mod output_path;
pub mod sensor;
pub mod session;
pub mod slug;
pub mod walk;
