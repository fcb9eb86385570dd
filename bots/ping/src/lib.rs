//! Grafolean ping bot: ICMP echo measurements of the entities that have the `ping` protocol.
//!
//! Modules: [`credential`] (how a job pings), [`target`] (where), [`pinger`] (the shared ICMP
//! engine, built on the parts in [`icmp`]), [`probe`] (one job run: packets, retries, values),
//! [`bot`] (jobs and runs on the collector framework).

pub mod bot;
pub mod credential;
pub mod icmp;
pub mod pinger;
pub mod probe;
pub mod status;
pub mod target;

pub use bot::{PingArgs, PingBot, PingParams};

#[cfg(test)]
mod test_netns;
