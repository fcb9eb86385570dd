//! The collector framework: everything a Grafolean-style bot needs except its protocol code.
//!
//! A bot implements [`Collector`]; [`run`] does the rest: settings, the backend client (or a local
//! jobs file in standalone mode), scheduling, bounded execution, delivery and shutdown.

pub mod backend;
pub mod bot;
pub mod cli;
pub mod cluster;
pub mod deadlines;
pub(crate) mod delivery;
pub mod details;
pub mod entity;
pub mod heap;
pub mod job;
pub mod metrics;
pub mod notify;
mod on_time;
pub(crate) mod output;
pub mod pacing;
mod prefetch;
pub mod redact;
pub(crate) mod report;
pub mod runtime;
pub mod scheduler;
pub mod settings;
pub mod socket;
pub(crate) mod spool;
pub mod standalone;
pub(crate) mod status;
pub(crate) mod status_page;
pub(crate) mod status_view;
pub(crate) mod store;
pub(crate) mod task_record;
pub(crate) mod telemetry;
pub mod value;

// What a bot's own code needs, at the versions the framework uses: a bot depends on `collector`
// alone (plus `clap` for `#[derive(Parser)]`, whose generated code names the crate directly).
pub use clap;
pub use prometheus_client;
pub use serde_json;
pub use tokio;
pub use tracing;

pub use bot::{Collector, Context, Firing, Intervals, JobError, StartError};
pub use entity::{EntityConfig, Protocol, SensorConfig};
pub use job::{Anchor, JobSpec};
pub use report::{Check, Event, EventStatus};
pub use runtime::run;
pub use settings::Settings;
pub use status::{LeftOut, Summary};
pub use store::Store;
pub use value::Value;
pub(crate) mod executor;
