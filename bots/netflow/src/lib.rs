//! Grafolean NetFlow bot: receives NetFlow v5, v9 and IPFIX, aggregates flows in memory and
//! reports per-window byte counts (contract §5.11).

pub mod aggregate;
pub mod bot;
#[cfg(feature = "testkit")]
pub mod capture;
pub mod cluster;
pub mod decode;
pub mod flow;
pub mod intake;
pub mod listener;
pub mod protocols;
#[cfg(feature = "testkit")]
pub mod reference;
pub mod status;
pub mod sums;
pub mod templates;
pub mod windows;

pub use bot::{NetflowBot, NetflowJob, NetflowSettings};
