//! Grafolean SNMP bot: protocol code on the collector framework.
//!
//! `session` (credentials to async-snmp clients on one shared socket), `walk` (GET and WALK),
//! `expression`, `slug` and `output_path` (sensor config), `counters` (rates, persisted),
//! `sensor` (one firing of an entity's sensors), `interfaces` (interface entity sync, `if_speed` the
//! speed of each, `interface_list` the account's interface entities listed once a round) and
//! `bot` (the `Collector` implementation).

pub mod bot;
pub mod counters;
pub mod expression;
pub mod if_speed;
pub mod interface_list;
pub mod interfaces;
pub mod merged;
pub mod metrics;
pub mod output_path;
pub mod sensor;
pub mod session;
pub mod slug;
pub mod status;
pub mod walk;

pub use bot::{SnmpArgs, SnmpBot, SnmpConfig};
