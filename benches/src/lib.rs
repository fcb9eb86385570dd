//! Benchmarks of the bots, kept out of the product crates so that `cargo install` ships none of
//! them. The programs are in `src/bin/`; what they all measure the same way is in [`measure`].

pub mod counting_backend;
pub mod measure;
pub mod snmpsim;
