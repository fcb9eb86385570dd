//! The collector framework: everything a Grafolean-style bot needs except its protocol code.
//!
//! A bot implements [`Collector`]; [`run`] does the rest: settings, the backend client (or a local
//! jobs file in standalone mode), scheduling, bounded execution, delivery and shutdown.

pub mod backend;
pub mod bot;
pub mod delivery;
pub mod entity;
pub mod job;
pub mod metrics;
pub mod notify;
pub mod pacing;
pub mod redact;
pub mod report;
pub mod runtime;
pub mod scheduler;
pub mod settings;
pub mod spool;
pub mod standalone;
pub mod store;
pub mod task_record;
pub mod telemetry;
pub mod value;

pub use bot::{Collector, Context, Firing, JobError};
pub use entity::{EntityConfig, SensorConfig};
pub use job::{Anchor, JobSpec};
pub use report::{Check, Event, EventStatus};
pub use runtime::run;
pub use settings::Settings;
pub use store::Store;
pub use value::Value;
pub mod executor;
