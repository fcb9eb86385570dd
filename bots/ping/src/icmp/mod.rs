//! The ICMP echo engine's parts, below [`crate::pinger::Pinger`]: packet layouts and checksum
//! ([`packet`]), sockets with kernel receive timestamps and batched receive ([`socket`]), the
//! table of requests in flight ([`inflight`]), per-host sequence numbers ([`sequence`]) and the
//! bot-wide send rate ([`pacer`]).

pub mod inflight;
pub mod pacer;
pub mod packet;
pub mod sequence;
pub mod socket;
