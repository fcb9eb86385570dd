//! NetFlow v5/v9/IPFIX decoding and aggregation of what an exporter can send. The input is a
//! sequence of datagrams in the captures' format (`capture::split_lenient`: 4-byte big-endian
//! length, then the payload; a length past the end takes the rest), decoded in order by one
//! decoder, so templates learnt from one datagram are used by the next; the flows go into the
//! bot's bounded aggregate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netflowbot::aggregate::Aggregate;
use netflowbot::capture::split_lenient;
use netflowbot::decode::{Decoder, DecoderLimits};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let exporter = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let mut decoder = Decoder::new(DecoderLimits::default());
    let mut aggregate = Aggregate::new(1000);
    let mut now = Instant::now();
    for datagram in split_lenient(data) {
        let mut sink = aggregate.exporter_sink(exporter);
        let _ = decoder.decode(exporter, datagram, now, &mut sink);
        drop(sink);
        aggregate.enforce_limit();
        now += Duration::from_millis(100);
    }
    let _ = decoder.take_stats();
    let _ = decoder.take_template_changes();
});
