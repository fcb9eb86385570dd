//! The fast decoder against real softflowd exports, the reference decoder, and bad input.

mod common;

use common::*;
use netflowbot::aggregate::Aggregate;
use netflowbot::capture::split_lenient;
use netflowbot::decode::{DecodeError, Decoder, DecoderLimits, TemplateChange, TemplateKey};
use netflowbot::flow::{Direction, Flow};
use netflowbot::reference::ReferenceDecoder;
use rand::{Rng, SeedableRng};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

#[derive(Debug, Default, PartialEq)]
struct Totals {
    v4_flows: u64,
    v4_packets: u64,
    v4_bytes: u64,
    v6_flows: u64,
    v6_packets: u64,
    v6_bytes: u64,
}

fn totals(flows: &[Flow]) -> Totals {
    let mut t = Totals::default();
    for f in flows {
        if f.src.is_ipv4() {
            t.v4_flows += 1;
            t.v4_packets += f.packets;
            t.v4_bytes += f.bytes;
        } else {
            t.v6_flows += 1;
            t.v6_packets += f.packets;
            t.v6_bytes += f.bytes;
        }
    }
    t
}

fn decode_all(decoder: &mut Decoder, datagrams: &[Vec<u8>]) -> Vec<Flow> {
    let mut flows = Vec::new();
    let now = Instant::now();
    for d in datagrams {
        decoder
            .decode(exporter(), d, now, &mut flows)
            .expect("capture datagram decodes");
    }
    flows
}

/// The totals of `softflowd-truth.json`, as a correct decoder sums them. The capture holds
/// 3,167 IPv4 flow records, not the 3,200 flows of the truth file (softflowd exported 3,167
/// records carrying all of their packets and bytes), so record counts are checked separately.
fn truth() -> serde_json::Value {
    let text = std::fs::read_to_string(testdata("softflowd-truth.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn truth_u64(key: &str) -> u64 {
    truth()[key].as_u64().unwrap()
}

#[test]
fn v5_capture_decodes_to_the_exact_totals() {
    let mut decoder = Decoder::default();
    let flows = decode_all(&mut decoder, &capture("v5"));
    let t = totals(&flows);
    assert_eq!(t.v4_packets, truth_u64("v4_pkts"));
    assert_eq!(t.v4_bytes, truth_u64("v4_bytes"));
    assert_eq!(t.v4_flows, 3167);
    assert_eq!(t.v6_flows, 0);
    assert!(flows.iter().all(|f| f.direction == Direction::Ingress));
    let stats = decoder.take_stats();
    assert_eq!(stats.datagrams, 110);
    assert_eq!(stats.records, 3167);
    assert_eq!(stats.malformed, 0);
    assert_eq!(stats.sequence_gaps, 0);
}

#[test]
fn v9_and_ipfix_captures_decode_to_the_exact_totals() {
    for version in ["v9", "ipfix"] {
        let datagrams = capture(version);
        let mut decoder = Decoder::default();
        let flows = decode_all(&mut decoder, &datagrams);
        let t = totals(&flows);
        assert_eq!(t.v4_packets, truth_u64("v4_pkts"), "{version}");
        assert_eq!(t.v4_bytes, truth_u64("v4_bytes"), "{version}");
        assert_eq!(t.v6_packets, truth_u64("v6_pkts"), "{version}");
        assert_eq!(t.v6_bytes, truth_u64("v6_bytes"), "{version}");
        assert_eq!(t.v6_flows, truth_u64("v6_flows"), "{version}");
        assert_eq!(t.v4_flows, 3167, "{version}");
        let stats = decoder.take_stats();
        assert_eq!(stats.datagrams, datagrams.len() as u64, "{version}");
        assert_eq!(stats.records, 3967, "{version}");
        assert_eq!(stats.malformed, 0, "{version}");
        assert_eq!(stats.sequence_gaps, 0, "{version}");
        assert_eq!(stats.sequence_resets, 0, "{version}");
        assert_eq!(stats.sets_before_template, 0, "{version}");
        // softflowd announces 4 data templates and 1 options template, refreshed unchanged.
        assert_eq!(stats.templates_learned, 5, "{version}");
        assert!(stats.option_records > 0, "{version}");
    }
}

#[test]
fn fast_path_matches_netflow_parser_on_the_captures() {
    let source: SocketAddr = "192.0.2.10:40000".parse().unwrap();
    for version in ["v5", "v9", "ipfix"] {
        let datagrams = capture(version);
        let mut reference = ReferenceDecoder::new();
        let mut expected = Vec::new();
        for d in &datagrams {
            reference.decode(source, d, &mut expected).unwrap();
        }
        let mut decoder = Decoder::default();
        let flows = decode_all(&mut decoder, &datagrams);
        assert_eq!(flows.len(), expected.len(), "{version}");
        for (i, (ours, theirs)) in flows.iter().zip(&expected).enumerate() {
            assert_eq!(ours, theirs, "{version} record {i}");
        }
    }
}

#[test]
fn softflowd_captures_carry_direction_interfaces_and_ports() {
    let mut decoder = Decoder::default();
    let flows = decode_all(&mut decoder, &capture("v9"));
    // softflowd sends DIRECTION (61); all its flows are ingress, on interface 0.
    assert!(flows.iter().all(|f| f.direction == Direction::Ingress));
    assert!(flows.iter().any(|f| f.protocol == 6 && f.dst_port != 0));
    assert!(flows.iter().any(|f| f.protocol == 17));
}

#[test]
fn templates_installed_from_an_earlier_run_decode_data_at_once() {
    let datagrams = capture("ipfix");
    let mut first = Decoder::default();
    decode_all(&mut first, &datagrams[..1]);
    let learned: Vec<(TemplateKey, _)> = first
        .take_template_changes()
        .into_iter()
        .filter_map(|c| match c {
            TemplateChange::Learned(k, d) => Some((k, d)),
            TemplateChange::Withdrawn(_) => None,
        })
        .collect();
    assert_eq!(learned.len(), 5);

    // A restarted decoder that gets the templates from the store decodes a data-only datagram.
    let mut restarted = Decoder::default();
    for (key, def) in learned {
        assert!(restarted.install_template(key, def));
    }
    let mut flows = Vec::new();
    restarted
        .decode(exporter(), &datagrams[1], Instant::now(), &mut flows)
        .unwrap();
    let stats = restarted.take_stats();
    assert!(!flows.is_empty());
    assert_eq!(stats.sets_before_template, 0);
    assert_eq!(stats.records, flows.len() as u64);
}

#[test]
fn data_before_its_template_is_buffered_and_decoded_when_the_template_arrives() {
    for version in ["v9", "ipfix"] {
        let datagrams = capture(version);
        let mut in_order = Decoder::default();
        let expected = totals(&decode_all(&mut in_order, &datagrams[..3]));

        // Datagrams 1 and 2 hold data only; datagram 0 brings the templates.
        let mut decoder = Decoder::default();
        let mut flows = Vec::new();
        let now = Instant::now();
        for d in [&datagrams[1], &datagrams[2], &datagrams[0]] {
            let _ = decoder.decode(exporter(), d, now, &mut flows);
        }
        let stats = decoder.take_stats();
        assert!(stats.sets_before_template > 20, "{version}: {stats:?}");
        assert_eq!(stats.sets_replayed, stats.sets_before_template, "{version}");
        assert_eq!(stats.sets_dropped, 0, "{version}");
        assert_eq!(totals(&flows), expected, "{version}");
    }
}

#[test]
fn data_whose_template_never_arrives_is_counted_as_dropped() {
    let datagrams = capture("v9");
    let limits = DecoderLimits {
        pending_ttl: Duration::from_secs(5),
        ..DecoderLimits::default()
    };
    let mut decoder = Decoder::new(limits);
    let mut flows = Vec::new();
    let start = Instant::now();
    let _ = decoder.decode(exporter(), &datagrams[1], start, &mut flows);
    let buffered = decoder.take_stats().sets_before_template;
    assert!(buffered > 0);
    // The next datagram arrives after the wait: the buffered sets are given up.
    let _ = decoder.decode(
        exporter(),
        &datagrams[2],
        start + Duration::from_secs(6),
        &mut flows,
    );
    let stats = decoder.take_stats();
    assert_eq!(stats.sets_dropped, buffered);
    assert!(flows.is_empty());
}

#[test]
fn pending_buffer_is_bounded() {
    let datagrams = capture("v9");
    let limits = DecoderLimits {
        max_pending_sets: 5,
        ..DecoderLimits::default()
    };
    let mut decoder = Decoder::new(limits);
    let mut flows = Vec::new();
    let _ = decoder.decode(exporter(), &datagrams[1], Instant::now(), &mut flows);
    let stats = decoder.take_stats();
    assert_eq!(stats.sets_dropped, stats.sets_before_template - 5);
}

/// Template 256 with the given fields in two observation domains of one exporter.
#[test]
fn two_observation_domains_with_the_same_template_id_are_kept_apart() {
    let layout_a = [(8, 4), (12, 4), (1, 4), (2, 4)];
    let layout_b = [(1, 8), (2, 8), (12, 4), (8, 4), (61, 1)];
    let mut rec_a = Vec::new();
    rec_a.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    rec_a.extend_from_slice(&1000u32.to_be_bytes());
    rec_a.extend_from_slice(&10u32.to_be_bytes());
    let mut rec_b = Vec::new();
    rec_b.extend_from_slice(&5000u64.to_be_bytes());
    rec_b.extend_from_slice(&50u64.to_be_bytes());
    rec_b.extend_from_slice(&[10, 0, 0, 4, 10, 0, 0, 3, 1]);

    for version in [9u16, 10] {
        let packet = |seq, domain, sets: &[Vec<u8>]| {
            if version == 9 {
                v9_packet(seq, domain, sets)
            } else {
                ipfix_packet(seq, domain, sets)
            }
        };
        let template_set = if version == 9 { 0 } else { 2 };
        let mut decoder = Decoder::default();
        let mut flows = Vec::new();
        let now = Instant::now();
        for d in [
            packet(0, 1, &[set(template_set, &template(256, &layout_a))]),
            packet(0, 2, &[set(template_set, &template(256, &layout_b))]),
            packet(1, 1, &[set(256, &rec_a)]),
            packet(1, 2, &[set(256, &rec_b)]),
        ] {
            decoder.decode(exporter(), &d, now, &mut flows).unwrap();
        }
        assert_eq!(flows.len(), 2, "v{version}");
        assert_eq!(flows[0].bytes, 1000);
        assert_eq!(flows[0].src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(flows[0].direction, Direction::Ingress);
        assert_eq!(flows[1].bytes, 5000);
        assert_eq!(flows[1].packets, 50);
        assert_eq!(flows[1].src, "10.0.0.3".parse::<IpAddr>().unwrap());
        assert_eq!(flows[1].direction, Direction::Egress);
        assert_eq!(decoder.template_count(), 2);
    }
}

#[test]
fn template_refresh_with_a_new_layout_takes_effect() {
    let mut decoder = Decoder::default();
    let mut flows = Vec::new();
    let now = Instant::now();
    let old = template(300, &[(1, 4), (8, 4)]);
    let new = template(300, &[(8, 4), (1, 4)]);
    let record = [0, 0, 1, 0, 10, 0, 0, 9]; // old layout: 256 bytes from 10.0.0.9
    decoder
        .decode(
            exporter(),
            &ipfix_packet(0, 0, &[set(2, &old), set(300, &record)]),
            now,
            &mut flows,
        )
        .unwrap();
    // The same definition again is a refresh, not a change.
    decoder
        .decode(
            exporter(),
            &ipfix_packet(1, 0, &[set(2, &old)]),
            now,
            &mut flows,
        )
        .unwrap();
    assert_eq!(decoder.take_template_changes().len(), 1);
    decoder
        .decode(
            exporter(),
            &ipfix_packet(1, 0, &[set(2, &new), set(300, &record)]),
            now,
            &mut flows,
        )
        .unwrap();
    assert_eq!(decoder.take_template_changes().len(), 1);
    assert_eq!(flows[0].bytes, 256);
    assert_eq!(flows[0].src, "10.0.0.9".parse::<IpAddr>().unwrap());
    // New layout: source address first, then the octets.
    assert_eq!(flows[1].src, "0.0.1.0".parse::<IpAddr>().unwrap());
    assert_eq!(flows[1].bytes, 0x0a00_0009);
}

#[test]
fn ipfix_template_withdrawal_forgets_the_template() {
    let mut decoder = Decoder::default();
    let mut flows = Vec::new();
    let now = Instant::now();
    let fields = [(1u16, 4u16), (8, 4)];
    decoder
        .decode(
            exporter(),
            &ipfix_packet(0, 0, &[set(2, &template(300, &fields))]),
            now,
            &mut flows,
        )
        .unwrap();
    decoder
        .decode(
            exporter(),
            &ipfix_packet(0, 0, &[set(2, &template(300, &[]))]),
            now,
            &mut flows,
        )
        .unwrap();
    assert_eq!(decoder.template_count(), 0);
    let changes = decoder.take_template_changes();
    assert!(matches!(changes.last(), Some(TemplateChange::Withdrawn(k)) if k.template_id == 300));
    assert_eq!(decoder.take_stats().templates_withdrawn, 1);
}

#[test]
fn sampling_interval_from_options_data_scales_bytes_and_packets() {
    let data_template = template(256, &[(8, 4), (12, 4), (1, 4), (2, 4)]);
    let mut record = vec![10, 0, 0, 1, 10, 0, 0, 2];
    record.extend_from_slice(&1500u32.to_be_bytes());
    record.extend_from_slice(&3u32.to_be_bytes());

    // v9: options template 257 with scope System (1) and SAMPLING_INTERVAL (34).
    let mut decoder = Decoder::default();
    let mut flows = Vec::new();
    let now = Instant::now();
    let mut options_record = 0u32.to_be_bytes().to_vec();
    options_record.extend_from_slice(&100u32.to_be_bytes());
    let packet = v9_packet(
        0,
        0,
        &[
            set(0, &data_template),
            set(1, &v9_options_template(257, &[(1, 4)], &[(34, 4)])),
            set(257, &options_record),
            set(256, &record),
        ],
    );
    decoder
        .decode(exporter(), &packet, now, &mut flows)
        .unwrap();
    assert_eq!((flows[0].bytes, flows[0].packets), (150_000, 300));

    // IPFIX: samplingPacketInterval 1, samplingPacketSpace 9: one packet in 10.
    let mut decoder = Decoder::default();
    let mut flows = Vec::new();
    let mut options_record = 7u32.to_be_bytes().to_vec();
    options_record.extend_from_slice(&1u32.to_be_bytes());
    options_record.extend_from_slice(&9u32.to_be_bytes());
    let packet = ipfix_packet(
        0,
        0,
        &[
            set(2, &data_template),
            set(
                3,
                &ipfix_options_template(257, &[(143, 4)], &[(305, 4), (306, 4)]),
            ),
            set(257, &options_record),
            set(256, &record),
        ],
    );
    decoder
        .decode(exporter(), &packet, now, &mut flows)
        .unwrap();
    assert_eq!((flows[0].bytes, flows[0].packets), (15_000, 30));

    // v5: the header's sampling interval (mode bits above the 14-bit interval).
    let mut decoder = Decoder::default();
    let mut flows = Vec::new();
    let records = [V5Record {
        src: [10, 0, 0, 1],
        dst: [10, 0, 0, 2],
        input: 1,
        output: 2,
        packets: 2,
        bytes: 100,
        dst_port: 80,
        protocol: 6,
    }];
    decoder
        .decode(
            exporter(),
            &v5_packet(0, 0x4000 | 64, &records),
            now,
            &mut flows,
        )
        .unwrap();
    assert_eq!((flows[0].bytes, flows[0].packets), (6400, 128));
}

#[test]
fn sequence_gaps_are_counted_per_exporter_and_domain() {
    // v9 counts datagrams, v5 and IPFIX count records.
    for (version, missing_units) in [("v5", None), ("v9", Some(1)), ("ipfix", None)] {
        let mut datagrams = capture(version);
        let dropped = datagrams.remove(5);
        let mut decoder = Decoder::default();
        let mut flows = Vec::new();
        decode_all(&mut decoder, &datagrams);
        // A second exporter sending the complete capture has no gap.
        for d in capture(version) {
            decoder
                .decode(
                    "192.0.2.99".parse().unwrap(),
                    &d,
                    Instant::now(),
                    &mut flows,
                )
                .unwrap();
        }
        let stats = decoder.take_stats();
        assert_eq!(stats.sequence_gaps, 1, "{version}");
        let expected_missing = missing_units.unwrap_or_else(|| {
            let mut probe = Decoder::default();
            let mut records = Vec::new();
            decode_all(&mut probe, &capture(version)[..5]);
            probe
                .decode(exporter(), &dropped, Instant::now(), &mut records)
                .unwrap();
            // softflowd counts flow records only (not options records) in v5 and IPFIX.
            records.len() as u64
        });
        assert_eq!(stats.sequence_missing, expected_missing, "{version}");
    }
}

#[test]
fn zero_length_variable_length_field_does_not_lose_the_rest_of_the_set() {
    // Template: sourceIPv4Address, octetDeltaCount, interfaceName (82, variable length).
    let t = template(400, &[(8, 4), (1, 4), (82, 65535)]);
    let mut records = Vec::new();
    for (i, name) in [&b""[..], b"eth0", b"", b"wan"].iter().enumerate() {
        records.extend_from_slice(&[10, 0, 0, i as u8 + 1]);
        records.extend_from_slice(&(100u32 * (i as u32 + 1)).to_be_bytes());
        records.push(name.len() as u8);
        records.extend_from_slice(name);
    }
    let packet = ipfix_packet(0, 0, &[set(2, &t), set(400, &records)]);

    let mut decoder = Decoder::default();
    let mut flows = Vec::new();
    decoder
        .decode(exporter(), &packet, Instant::now(), &mut flows)
        .unwrap();
    assert_eq!(flows.len(), 4);
    assert_eq!(flows.iter().map(|f| f.bytes).sum::<u64>(), 1000);

    // The defect this works around: netflow_parser 1.0 stops the data set at the first
    // zero-length value, losing every record from there on.
    let mut reference = ReferenceDecoder::new();
    let mut theirs = Vec::new();
    let _ = reference.decode("192.0.2.10:4739".parse().unwrap(), &packet, &mut theirs);
    assert!(
        theirs.len() < 4,
        "netflow_parser now decodes {} records",
        theirs.len()
    );
}

#[test]
fn long_variable_length_encoding_is_read() {
    let t = template(401, &[(82, 65535), (1, 4)]);
    let mut record = vec![255];
    record.extend_from_slice(&300u16.to_be_bytes());
    record.extend_from_slice(&[b'x'; 300]);
    record.extend_from_slice(&77u32.to_be_bytes());
    let packet = ipfix_packet(0, 0, &[set(2, &t), set(401, &record)]);
    let mut decoder = Decoder::default();
    let mut flows = Vec::new();
    decoder
        .decode(exporter(), &packet, Instant::now(), &mut flows)
        .unwrap();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].bytes, 77);
}

#[test]
fn truncated_datagrams_are_counted_and_never_panic() {
    for version in ["v5", "v9", "ipfix"] {
        let datagrams = capture(version);
        let mut decoder = Decoder::default();
        decode_all(&mut decoder, &datagrams[..1]);
        decoder.take_stats();
        let mut flows = Vec::new();
        let whole = &datagrams[0];
        for cut in 0..whole.len() {
            let result = decoder.decode(exporter(), &whole[..cut], Instant::now(), &mut flows);
            if version != "v9" {
                // v5 and IPFIX know their length: every cut is detected.
                assert!(result.is_err(), "{version} cut at {cut}");
            }
        }
        let stats = decoder.take_stats();
        assert!(stats.malformed > 0, "{version}");
    }
}

#[test]
fn v5_with_a_count_it_cannot_hold_is_dropped_whole() {
    let records: Vec<V5Record> = (0..10)
        .map(|i| V5Record {
            src: [10, 0, 0, i],
            dst: [10, 0, 1, i],
            input: 1,
            output: 2,
            packets: 1,
            bytes: 64,
            dst_port: 53,
            protocol: 17,
        })
        .collect();
    let mut packet = v5_packet(0, 0, &records);
    packet[3] = 30; // claims 30 records
    let mut decoder = Decoder::default();
    let mut flows = Vec::new();
    let result = decoder.decode(exporter(), &packet, Instant::now(), &mut flows);
    assert!(matches!(result, Err(DecodeError::V5Truncated { .. })));
    assert!(flows.is_empty());
    assert_eq!(decoder.take_stats().malformed, 1);
}

#[test]
fn garbage_and_unknown_versions_are_counted() {
    let mut decoder = Decoder::default();
    let mut flows = Vec::new();
    let now = Instant::now();
    for garbage in [
        &b""[..],
        &[0],
        &[0, 7, 0, 1],
        &[0xff; 100],
        &[
            0, 9, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
        ],
        &[0, 10, 0, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ] {
        assert!(decoder
            .decode(exporter(), garbage, now, &mut flows)
            .is_err());
    }
    assert!(flows.is_empty());
    assert_eq!(decoder.take_stats().malformed, 6);
}

#[test]
fn bad_templates_are_refused() {
    let mut decoder = Decoder::default();
    let mut flows = Vec::new();
    let now = Instant::now();
    // Template id below 256.
    let low = ipfix_packet(0, 0, &[set(2, &template(100, &[(1, 4)]))]);
    assert!(decoder.decode(exporter(), &low, now, &mut flows).is_err());
    // Fields whose lengths add up to zero.
    let empty = ipfix_packet(0, 0, &[set(2, &template(300, &[(1, 0), (2, 0)]))]);
    assert!(decoder.decode(exporter(), &empty, now, &mut flows).is_err());
    // A template claiming more fields than its set holds.
    let mut long = template(301, &[(1, 4)]);
    long[3] = 50;
    let long = ipfix_packet(0, 0, &[set(2, &long)]);
    assert!(decoder.decode(exporter(), &long, now, &mut flows).is_err());
    assert_eq!(decoder.template_count(), 0);
    let stats = decoder.take_stats();
    assert_eq!(stats.malformed, 3);
    assert_eq!(stats.templates_refused, 2);
}

#[test]
fn template_limit_is_enforced() {
    let limits = DecoderLimits {
        max_templates: 3,
        ..DecoderLimits::default()
    };
    let mut decoder = Decoder::new(limits);
    let mut flows = Vec::new();
    let sets: Vec<Vec<u8>> = (0..5)
        .map(|i| set(2, &template(256 + i, &[(1, 4)])))
        .collect();
    decoder
        .decode(
            exporter(),
            &ipfix_packet(0, 0, &sets),
            Instant::now(),
            &mut flows,
        )
        .unwrap();
    assert_eq!(decoder.template_count(), 3);
    assert_eq!(decoder.take_stats().templates_refused, 2);
}

/// Random mutations of real datagrams: never a panic, and on the untouched datagrams the
/// fast path still agrees with the reference afterwards.
#[test]
fn random_mutations_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6e66);
    let mut decoder = Decoder::default();
    let mut flows = Vec::new();
    let now = Instant::now();
    let captures: Vec<Vec<Vec<u8>>> = ["v5", "v9", "ipfix"].iter().map(|v| capture(v)).collect();
    for round in 0..20_000 {
        let datagrams = &captures[round % 3];
        let mut d = datagrams[rng.gen_range(0..datagrams.len())].clone();
        match rng.gen_range(0..4) {
            0 => {
                for _ in 0..rng.gen_range(1..8) {
                    let at = rng.gen_range(0..d.len());
                    d[at] = rng.gen();
                }
            }
            1 => {
                // Lengths and counts live in the first bytes of headers and sets.
                let at = rng.gen_range(0..d.len().min(64));
                d[at] = rng.gen();
            }
            2 => d.truncate(rng.gen_range(0..d.len())),
            _ => {
                let at = rng.gen_range(0..d.len());
                let extra: Vec<u8> = (0..rng.gen_range(1..64)).map(|_| rng.gen()).collect();
                d.splice(at..at, extra);
            }
        }
        let source: IpAddr = if round % 2 == 0 {
            exporter()
        } else {
            "192.0.2.77".parse().unwrap()
        };
        let _ = decoder.decode(source, &d, now, &mut flows);
        flows.clear();
    }
    let stats = decoder.take_stats();
    assert_eq!(stats.datagrams, 20_000);
    assert!(stats.malformed > 1000, "{stats:?}");
}

/// Inputs the fuzz target `netflow_decode` (fuzz/) crashed on, in its input format, replayed as it
/// does: decoded in order by one decoder into the bounded aggregate, without a panic.
#[test]
fn fuzz_findings_decode_and_aggregate_without_panic() {
    let dir = testdata("fuzz");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}", dir.display());
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let mut decoder = Decoder::new(DecoderLimits::default());
        let mut aggregate = Aggregate::new(1000);
        let now = Instant::now();
        for datagram in split_lenient(&bytes) {
            let mut sink = aggregate.exporter_sink(exporter());
            let _ = decoder.decode(exporter(), datagram, now, &mut sink);
            drop(sink);
            aggregate.enforce_limit();
        }
        if file.ends_with("v9-field-of-100-bytes-overflows-sums") {
            // Byte counts near 2^64 saturate the sums instead of wrapping them around.
            let sums = aggregate.exporter(&exporter()).expect("flows decoded");
            let total = sums.direction(Direction::Ingress).total;
            assert_eq!(total, u64::MAX, "{}", file.display());
        }
    }
}
