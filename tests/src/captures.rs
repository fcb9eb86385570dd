//! The repository's NetFlow captures (`bots/netflow/testdata/softflowd-{v5,v9,ipfix}.bin`: each
//! datagram as a 4-byte big-endian length and its bytes), and a replay of them over UDP.

use crate::process::workspace_root;
use std::net::UdpSocket;
use std::time::Duration;

/// The datagrams of `softflowd-{name}.bin` (`v5`, `v9`, `ipfix`).
pub fn softflowd(name: &str) -> Vec<Vec<u8>> {
    let path = workspace_root()
        .join("bots/netflow/testdata")
        .join(format!("softflowd-{name}.bin"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut datagrams = Vec::new();
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let len = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let end = at + 4 + len as usize;
        assert!(end <= bytes.len(), "{}: truncated datagram", path.display());
        datagrams.push(bytes[at + 4..end].to_vec());
        at = end;
    }
    datagrams
}

/// Sends `datagrams` from address `from` to `to`, paced as an exporter would.
pub fn replay(from: &str, to: &str, datagrams: &[Vec<u8>]) {
    let socket = UdpSocket::bind(from).expect("bind the sending socket");
    for d in datagrams {
        socket.send_to(d, to).expect("send a datagram");
        // A real exporter paces its datagrams; keep well within the socket buffer.
        std::thread::sleep(Duration::from_micros(200));
    }
}
