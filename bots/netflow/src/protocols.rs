//! IP protocol names as the original bot writes them into value paths (contract §5.11), and
//! the encoding that keeps every one of them a valid path segment.

use std::sync::OnceLock;

/// The IANA names the original bot uses; numbers without a name become `proto{N}`.
const NAMES: &[(u8, &str)] = &[
    (0, "HOPOPT"),
    (1, "ICMP"),
    (2, "IGMP"),
    (3, "GGP"),
    (4, "IP-in-IP"),
    (5, "ST"),
    (6, "TCP"),
    (7, "CBT"),
    (8, "EGP"),
    (9, "IGP"),
    (10, "BBN-RCC-MON"),
    (11, "NVP-II"),
    (12, "PUP"),
    (13, "ARGUS"),
    (14, "EMCON"),
    (15, "XNET"),
    (16, "CHAOS"),
    (17, "UDP"),
    (18, "MUX"),
    (19, "DCN-MEAS"),
    (20, "HMP"),
    (21, "PRM"),
    (22, "XNS-IDP"),
    (23, "TRUNK-1"),
    (24, "TRUNK-2"),
    (25, "LEAF-1"),
    (26, "LEAF-2"),
    (27, "RDP"),
    (28, "IRTP"),
    (29, "ISO-TP4"),
    (30, "NETBLT"),
    (31, "MFE-NSP"),
    (32, "MERIT-INP"),
    (33, "DCCP"),
    (34, "3PC"),
    (35, "IDPR"),
    (36, "XTP"),
    (37, "DDP"),
    (38, "IDPR-CMTP"),
    (39, "TP++"),
    (40, "IL"),
    (41, "IPv6"),
    (42, "SDRP"),
    (43, "IPv6-Route"),
    (44, "IPv6-Frag"),
    (45, "IDRP"),
    (46, "RSVP"),
    (47, "GREs"),
    (48, "DSR"),
    (49, "BNA"),
    (50, "ESP"),
    (51, "AH"),
    (52, "I-NLSP"),
    (53, "SwIPe"),
    (54, "NARP"),
    (55, "MOBILE"),
    (56, "TLSP"),
    (57, "SKIP"),
    (58, "IPv6-ICMP"),
    (59, "IPv6-NoNxt"),
    (60, "IPv6-Opts"),
    (62, "CFTP"),
    (64, "SAT-EXPAK"),
    (65, "KRYPTOLAN"),
    (66, "RVD"),
    (67, "IPPC"),
    (69, "SAT-MON"),
    (70, "VISA"),
    (71, "IPCU"),
    (72, "CPNX"),
    (73, "CPHB"),
    (74, "WSN"),
    (75, "PVP"),
    (76, "BR-SAT-MON"),
    (77, "SUN-ND"),
    (78, "WB-MON"),
    (79, "WB-EXPAK"),
    (80, "ISO-IP"),
    (81, "VMTP"),
    (82, "SECURE-VMTP"),
    (83, "VINES"),
    (84, "TTP/IPTM"),
    (85, "NSFNET-IGP"),
    (86, "DGP"),
    (87, "TCF"),
    (88, "EIGRP"),
    (89, "OSPF"),
    (90, "Sprite-RPC"),
    (91, "LARP"),
    (92, "MTP"),
    (93, "AX.25"),
    (94, "OS"),
    (95, "MICP"),
    (96, "SCC-SP"),
    (97, "ETHERIP"),
    (98, "ENCAP"),
    (100, "GMTP"),
    (101, "IFMP"),
    (102, "PNNI"),
    (103, "PIM"),
    (104, "ARIS"),
    (105, "SCPS"),
    (106, "QNX"),
    (107, "A/N"),
    (108, "IPComp"),
    (109, "SNP"),
    (110, "Compaq-Peer"),
    (111, "IPX-in-IP"),
    (112, "VRRP"),
    (113, "PGM"),
    (115, "L2TP"),
    (116, "DDX"),
    (117, "IATP"),
    (118, "STP"),
    (119, "SRP"),
    (120, "UTI"),
    (121, "SMP"),
    (122, "SM"),
    (123, "PTP"),
    (124, "IS-IS over IPv4"),
    (125, "FIRE"),
    (126, "CRTP"),
    (127, "CRUDP"),
    (128, "SSCOPMCE"),
    (129, "IPLT"),
    (130, "SPS"),
    (131, "PIPE"),
    (132, "SCTP"),
    (133, "FC"),
    (134, "RSVP-E2E-IGNORE"),
    (135, "Mobility Header"),
    (136, "UDPLite"),
    (137, "MPLS-in-IP"),
    (138, "manet"),
    (139, "HIP"),
    (140, "Shim6"),
    (141, "WESP"),
    (142, "ROHC"),
    (255, "Reserved"),
];

/// The protocol's name: the IANA name of the table, else `proto{N}`.
pub fn name(protocol: u8) -> String {
    NAMES.iter().find(|(n, _)| *n == protocol).map_or_else(
        || format!("proto{protocol}"),
        |(_, name)| (*name).to_string(),
    )
}

/// Encodes a name as one path segment. As the original: `.` -> `%2e`, `:` -> `%3a`. Beyond the
/// original, which produced paths the backend rejects (and so lost the whole batch) for five
/// names: every run of other characters outside `A-Z a-z 0-9 _ -` becomes one `-`, and a `-`
/// so produced at the end is dropped, the way Grafolean's slugs look elsewhere:
/// `TP++` -> `TP`, `TTP/IPTM` -> `TTP-IPTM`, `A/N` -> `A-N`, `IS-IS over IPv4` ->
/// `IS-IS-over-IPv4`, `Mobility Header` -> `Mobility-Header`. Names already valid are unchanged.
pub fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut replaced_run = false;
    for c in name.chars() {
        match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '-' => {
                out.push(c);
                replaced_run = false;
            }
            '.' => {
                out.push_str("%2e");
                replaced_run = false;
            }
            ':' => {
                out.push_str("%3a");
                replaced_run = false;
            }
            _ => {
                if !replaced_run {
                    out.push('-');
                }
                replaced_run = true;
            }
        }
    }
    if replaced_run {
        out.pop();
    }
    out
}

/// The encoded path segment of every protocol number, computed once.
pub fn segment(protocol: u8) -> &'static str {
    static SEGMENTS: OnceLock<Vec<String>> = OnceLock::new();
    let segments = SEGMENTS.get_or_init(|| (0..=255u8).map(|p| encode_segment(&name(p))).collect());
    &segments[usize::from(protocol)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// One path segment the backend takes: the framework's path rule, on text without a dot.
    fn valid_segment(s: &str) -> bool {
        !s.contains('.') && collector::value::path_problem(s).is_none()
    }

    #[test]
    fn every_protocol_gives_a_valid_and_distinct_segment() {
        let mut seen = HashSet::new();
        for p in 0..=255u8 {
            let s = segment(p);
            assert!(valid_segment(s), "{p}: {s}");
            assert!(seen.insert(s), "{p}: {s} twice");
        }
    }

    #[test]
    fn names_and_encodings() {
        assert_eq!(segment(6), "TCP");
        assert_eq!(segment(17), "UDP");
        assert_eq!(segment(58), "IPv6-ICMP");
        assert_eq!(segment(99), "proto99");
        assert_eq!(segment(93), "AX%2e25");
        assert_eq!(segment(39), "TP");
        assert_eq!(segment(84), "TTP-IPTM");
        assert_eq!(segment(107), "A-N");
        assert_eq!(segment(124), "IS-IS-over-IPv4");
        assert_eq!(segment(135), "Mobility-Header");
        assert_eq!(encode_segment("a  /b"), "a-b");
    }
}
