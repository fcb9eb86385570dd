//! The container files, checked as far as this machine can (no Docker engine runs here): every
//! Dockerfile builds a binary that the workspace really has, copies the path cargo writes it to,
//! and runs the same binary as entry point and health check; the compose example names only
//! Dockerfiles that exist.

use e2e::process::workspace_root;
use std::process::Command;

/// (package, binary) pairs of every bin target in the workspace, from `cargo metadata`.
fn workspace_binaries() -> Vec<(String, String)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .expect("cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("metadata JSON");
    let mut binaries = Vec::new();
    for package in metadata["packages"].as_array().expect("packages") {
        for target in package["targets"].as_array().expect("targets") {
            if target["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
            {
                binaries.push((
                    package["name"].as_str().unwrap_or_default().to_string(),
                    target["name"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    binaries
}

/// The word after `flag` in a line (`-p pingbot` -> `pingbot`).
fn after<'a>(line: &'a str, flag: &str) -> Option<&'a str> {
    let mut words = line.split_whitespace();
    words.by_ref().find(|w| *w == flag)?;
    words.next()
}

#[test]
fn each_bot_has_a_dockerfile_that_builds_and_runs_a_real_binary() {
    let binaries = workspace_binaries();
    for bot in ["ping", "snmp", "netflow"] {
        let path = workspace_root().join("bots").join(bot).join("Dockerfile");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let build = text
            .lines()
            .find(|l| l.contains("cargo build --release --locked"))
            .unwrap_or_else(|| panic!("{bot}: no locked release build"));
        let package = after(build, "-p").expect("-p PACKAGE");
        let binary = after(build, "--bin").expect("--bin NAME");
        assert!(
            binaries.contains(&(package.to_string(), binary.to_string())),
            "{bot}: package {package} has no binary {binary}: {binaries:?}"
        );
        let built = format!("/src/target/release/{binary}");
        assert!(
            text.contains(&format!(
                "COPY --from=build {built} /usr/local/bin/{binary}"
            )),
            "{bot}: copies {built}"
        );
        assert!(
            text.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{binary}\"]")),
            "{bot}: entry point"
        );
        assert!(
            text.contains("HEALTHCHECK")
                && text.contains(&format!("\"/usr/local/bin/{binary}\", \"--health-check\"")),
            "{bot}: health check through the bot itself"
        );
        assert!(text.contains("USER bot"), "{bot}: runs as a non-root user");
    }
}

#[test]
fn the_compose_example_names_existing_dockerfiles_and_the_bot_settings() {
    let root = workspace_root();
    let text =
        std::fs::read_to_string(root.join("docker-compose.example.yml")).expect("compose example");
    let dockerfiles: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split("dockerfile:").nth(1))
        .map(|rest| rest.trim().trim_end_matches('}').trim())
        .collect();
    assert_eq!(dockerfiles.len(), 3, "three bots: {dockerfiles:?}");
    for dockerfile in dockerfiles {
        assert!(root.join(dockerfile).is_file(), "{dockerfile} exists");
    }
    for setting in [
        "BACKEND_URL",
        "BOT_TOKEN_FROM_FILE",
        "JOBS_REFRESH_INTERVAL",
        "NETFLOW_PORT",
        "NET_RAW",
        "ALERTMANAGER_URL: http://alertmanager:9093",
        "./alertmanager.example.yml:/etc/alertmanager/alertmanager.yml",
    ] {
        assert!(text.contains(setting), "compose example sets {setting}");
    }
}

#[test]
fn the_alertmanager_example_config_is_valid_for_alertmanager() {
    let config = workspace_root().join("alertmanager.example.yml");
    let output = std::process::Command::new("amtool")
        .arg("check-config")
        .arg(&config)
        .output()
        .expect("run amtool (apt-get install prometheus-alertmanager)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
