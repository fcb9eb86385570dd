//! The ICMP echo engine's parts, below [`crate::pinger::Pinger`]: packet layouts and checksum
//! ([`packet`]), sockets with kernel receive timestamps and batched receive ([`socket`]), the
//! table of requests in flight with their tokens ([`inflight`]). The bot-wide send rate is the
//! framework's [`collector::pacing::Pacer`].

pub mod inflight;
pub mod packet;
pub mod socket;
