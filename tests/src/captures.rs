//! The softflowd captures of `bots/netflow/testdata` (`softflowd-{v5,v9,ipfix}.bin`: each
//! datagram as a 4-byte big-endian length and its bytes), for tests that replay a real exporter.

use crate::process::workspace_root;

/// The datagrams of capture `name` (`v5`, `v9` or `ipfix`), in the order softflowd sent them.
pub fn softflowd_datagrams(name: &str) -> Vec<Vec<u8>> {
    let path = workspace_root()
        .join("bots/netflow/testdata")
        .join(format!("softflowd-{name}.bin"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut datagrams = Vec::new();
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let len = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let end = (at + 4 + len as usize).min(bytes.len());
        datagrams.push(bytes[at + 4..end].to_vec());
        at = end;
    }
    datagrams
}
