//! Grafolean NetFlow bot: receives NetFlow v5, v9 and IPFIX, aggregates flows in memory and
//! reports per-window byte counts (contract §5.11).

pub mod capture;
pub mod decode;
pub mod flow;
pub mod reference;
