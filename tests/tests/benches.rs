//! The benchmarks of `benches/README.md`, run small: each whole-bot benchmark starts the real
//! bot in Grafolean mode beside its peer tool and prints the ratio. Here they run on a few
//! targets for a few seconds (debug builds), so that a command the README shows cannot break
//! unnoticed; the figures themselves come from release builds (`benches/README.md`).
//!
//! Needs root (ICMP), `fping`, `snmpsim` and `prometheus-snmp-exporter` (`.ci/run` installs them).

use e2e::process::build;
use std::process::Command;

/// Runs a benchmark to its end and returns what it printed; it must exit 0.
fn run(binary: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(binary)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}\n{stdout}\n{}",
        binary.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The number after `label` on the line that holds it.
fn number_after(text: &str, label: &str) -> f64 {
    let rest = text
        .split_once(label)
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no '{label}' in:\n{text}"));
    let number: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number
        .parse()
        .unwrap_or_else(|_| panic!("no number after '{label}' in:\n{text}"))
}

#[test]
fn pingbench_grafolean_measures_the_real_bot_beside_fping() {
    build("pingbot", "--bin", "pingbot");
    let bench = build("benches", "--bin", "pingbench");
    let out = run(
        &bench,
        &[
            "--targets",
            "200",
            "--seconds",
            "2",
            "--grafolean",
            "--repeat",
            "2",
            "--refresh-interval",
            "1",
        ],
    );
    assert!(
        out.contains("pingbot  sent") && out.contains("fping    sent"),
        "{out}"
    );
    assert!(number_after(&out, "to the account,") > 0.0, "values: {out}");
    assert_eq!(number_after(&out, "refused POSTs"), 0.0, "{out}");
    assert!(number_after(&out, "fping cpu per ping =") > 0.0, "{out}");
    // fping's own peak RSS, read after its exec: a few MiB, not the benchmark's pages.
    let fping = out
        .lines()
        .find(|line| line.starts_with("fping    sent"))
        .unwrap_or_default();
    let fping_rss = number_after(fping, "peak RSS");
    assert!(
        fping_rss > 0.0 && fping_rss < 40.0,
        "fping peak RSS: {fping}"
    );
    // Two rounds, then their summary with the ratio of the medians.
    assert!(out.contains("round    2 of 2"), "{out}");
    assert!(out.contains("summary  2 rounds"), "{out}");
    assert!(
        number_after(&out, "median ours / median fping =") > 0.0,
        "{out}"
    );
}

#[test]
fn snmpbench_snmpsim_measures_the_real_bot_beside_snmp_exporter() {
    let bot = build("snmpbot", "--bin", "snmpbot");
    let bench = build("benches", "--bin", "snmpbench");
    let bot = bot.to_string_lossy().to_string();
    let out = run(
        &bench,
        &[
            "--snmpsim",
            "--devices",
            "2",
            "--ports",
            "4",
            "--interval",
            "10",
            "--rounds",
            "1",
            "--snmpbot",
            &bot,
        ],
    );
    let bot_line = out
        .lines()
        .find(|l| l.starts_with("snmpbot "))
        .unwrap_or_else(|| panic!("no snmpbot line in:\n{out}"));
    assert!(
        number_after(bot_line, "snmpbot") > 0.0,
        "device-polls: {out}"
    );
    assert!(number_after(bot_line, "peak RSS") > 0.0, "{out}");
    assert!(number_after(bot_line, "(") > 0.0, "values delivered: {out}");
    assert!(
        out.contains("CPU per device-poll, snmpbot / snmp_exporter:"),
        "{out}"
    );
    // 4 interfaces: each of the 41 columns alone takes one GETBULK of 25 repetitions.
    assert!(
        out.contains("walking each of the 41 columns alone with max-repetitions 25 (41): 0."),
        "{out}"
    );
    assert!(
        out.contains("while measured: 0 failed, 0 timed out, 0 skipped"),
        "{out}"
    );
}

#[test]
fn netflowbench_decodes_from_memory() {
    let bench = build("benches", "--bin", "netflowbench");
    let out = run(&bench, &["--memory-only", "--memory-seconds", "0.5"]);
    for version in ["v5", "v9", "IPFIX"] {
        assert!(out.contains(version), "{version}: {out}");
    }
    assert!(number_after(&out, "v5") > 0.0, "{out}");
}
