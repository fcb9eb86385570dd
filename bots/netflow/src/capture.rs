//! The capture file format of `testdata/`: each datagram as a 4-byte big-endian length followed
//! by the UDP payload. Used by the tests, the benchmark and the end-to-end tests to replay real
//! exports.

use std::path::Path;

/// Splits a capture into its datagrams. A truncated last entry is an error.
pub fn parse(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut datagrams = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 4) else {
            return Err(format!("truncated length at byte {at}"));
        };
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        at += 4;
        let Some(datagram) = bytes.get(at..at + length) else {
            return Err(format!("datagram at byte {at} runs past the end"));
        };
        datagrams.push(datagram.to_vec());
        at += length;
    }
    Ok(datagrams)
}

/// Splits any bytes into datagrams the capture way, never failing: a length past the end takes
/// the rest, fewer than 4 bytes left end it. The fuzz target's input format, so its findings
/// replay in the tests exactly as fuzzed.
pub fn split_lenient(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut datagrams = Vec::new();
    while bytes.len() >= 4 {
        let length = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let body = &bytes[4..];
        let (datagram, rest) = body.split_at(length.min(body.len()));
        datagrams.push(datagram);
        bytes = rest;
    }
    datagrams
}

/// Reads and splits a capture file.
pub fn read(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes datagrams in the capture format.
pub fn encode(datagrams: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(datagrams.iter().map(|d| d.len() + 4).sum());
    for d in datagrams {
        out.extend_from_slice(&(d.len() as u32).to_be_bytes());
        out.extend_from_slice(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let datagrams = vec![vec![1, 2, 3], vec![], vec![9; 300]];
        let bytes = encode(&datagrams);
        assert_eq!(parse(&bytes).unwrap(), datagrams);
        assert!(parse(&bytes[..bytes.len() - 1]).is_err());
        assert!(parse(&[0, 0]).is_err());
    }
}
