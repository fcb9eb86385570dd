//! Helpers shared by the integration tests: the captures and hand-built export packets.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::PathBuf;

pub fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

/// The datagrams of `softflowd-{version}.bin`.
pub fn capture(version: &str) -> Vec<Vec<u8>> {
    netflowbot::capture::read(&testdata(&format!("softflowd-{version}.bin")))
        .expect("capture readable")
}

pub fn exporter() -> IpAddr {
    "192.0.2.10".parse().unwrap()
}

/// A v9/IPFIX set: id, length, content, padded to 4 bytes.
pub fn set(id: u16, content: &[u8]) -> Vec<u8> {
    let mut body = content.to_vec();
    while body.len() % 4 != 0 {
        body.push(0);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// A template record (v9 and IPFIX share the layout for IANA fields).
pub fn template(id: u16, fields: &[(u16, u16)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for (field, len) in fields {
        out.extend_from_slice(&field.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
    }
    out
}

/// A v9 options template record: scope fields then option fields.
pub fn v9_options_template(id: u16, scope: &[(u16, u16)], options: &[(u16, u16)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&((scope.len() * 4) as u16).to_be_bytes());
    out.extend_from_slice(&((options.len() * 4) as u16).to_be_bytes());
    for (field, len) in scope.iter().chain(options) {
        out.extend_from_slice(&field.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
    }
    out
}

/// An IPFIX options template record.
pub fn ipfix_options_template(id: u16, scope: &[(u16, u16)], options: &[(u16, u16)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&((scope.len() + options.len()) as u16).to_be_bytes());
    out.extend_from_slice(&(scope.len() as u16).to_be_bytes());
    for (field, len) in scope.iter().chain(options) {
        out.extend_from_slice(&field.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
    }
    out
}

pub fn v9_packet(sequence: u32, source_id: u32, sets: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&9u16.to_be_bytes());
    out.extend_from_slice(&(sets.len() as u16).to_be_bytes());
    out.extend_from_slice(&1000u32.to_be_bytes());
    out.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&source_id.to_be_bytes());
    for s in sets {
        out.extend_from_slice(s);
    }
    out
}

pub fn ipfix_packet(sequence: u32, domain: u32, sets: &[Vec<u8>]) -> Vec<u8> {
    let length: usize = 16 + sets.iter().map(Vec::len).sum::<usize>();
    let mut out = Vec::new();
    out.extend_from_slice(&10u16.to_be_bytes());
    out.extend_from_slice(&(length as u16).to_be_bytes());
    out.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&domain.to_be_bytes());
    for s in sets {
        out.extend_from_slice(s);
    }
    out
}

/// One NetFlow v5 record.
pub struct V5Record {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub input: u16,
    pub output: u16,
    pub packets: u32,
    pub bytes: u32,
    pub dst_port: u16,
    pub protocol: u8,
}

pub fn v5_packet(sequence: u32, sampling: u16, records: &[V5Record]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&5u16.to_be_bytes());
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    out.extend_from_slice(&1000u32.to_be_bytes());
    out.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&sampling.to_be_bytes());
    for r in records {
        out.extend_from_slice(&r.src);
        out.extend_from_slice(&r.dst);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&r.input.to_be_bytes());
        out.extend_from_slice(&r.output.to_be_bytes());
        out.extend_from_slice(&r.packets.to_be_bytes());
        out.extend_from_slice(&r.bytes.to_be_bytes());
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&1234u16.to_be_bytes());
        out.extend_from_slice(&r.dst_port.to_be_bytes());
        out.extend_from_slice(&[0, 0, r.protocol, 0]);
        out.extend_from_slice(&[0; 8]);
    }
    out
}
