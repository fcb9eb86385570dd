//! The container images.
//!
//! Always: the one `Dockerfile` builds every bot of the workspace and runs it as a non-root user
//! with its own health check, and the compose example runs those images with settings the bots
//! accept (checked against each binary's `--help`, as a user's typo would not be).
//!
//! `#[ignore]`d, run by `deploy/images.sh` once it has built the images `grafolean-<bot>:$IMAGE_TAG`
//! with `$CONTAINER_ENGINE` (podman or docker): each image is run as a user would run it. The ping
//! bot pings 127.0.0.1 and ::1 with `NET_RAW` as its only capability; the SNMP bot polls a real
//! snmpd on the host; the NetFlow bot counts a capture replayed from the host; in each, the
//! image's own HEALTHCHECK command passes, the bot runs as uid 10001, and SIGTERM stops it with
//! exit code 0. The SNMP and NetFlow containers share the host's network (their peers listen on
//! its loopback); the ping container has a network of its own.

#[path = "../../bots/snmp/tests/support/snmpd.rs"]
mod snmpd;

use e2e::process::{build, env_names_in_help, workspace_root};
use serde::Deserialize;
use serde_json::Value;
use snmpd::{PassObject, Snmpd, COMMUNITY, PASS_BASE};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BOTS: [&str; 3] = ["pingbot", "snmpbot", "netflowbot"];

/// The uid of the images' `bot` user (the Kubernetes manifests' `runAsUser`).
const BOT_UID: u32 = 10001;

/// The binaries of the bots' packages (those under `bots/`), from `cargo metadata`.
fn bot_binaries() -> BTreeSet<String> {
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
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata JSON");
    let bots_dir = workspace_root().join("bots");
    let mut binaries = BTreeSet::new();
    for package in metadata["packages"].as_array().expect("packages") {
        let manifest = Path::new(package["manifest_path"].as_str().unwrap_or_default());
        if !manifest.starts_with(&bots_dir) {
            continue;
        }
        let name = package["name"].as_str().unwrap_or_default();
        let has_own_binary = package["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .any(|t| {
                t["name"] == name
                    && t["kind"]
                        .as_array()
                        .is_some_and(|k| k.contains(&"bin".into()))
            });
        if has_own_binary {
            binaries.insert(name.to_string());
        }
    }
    binaries
}

fn read(relative: &str) -> String {
    let path = workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_dockerfile_builds_each_bot_of_the_workspace_into_one_image_each() {
    let dockerfile = read("Dockerfile");
    let bots = bot_binaries();
    assert_eq!(
        bots,
        BOTS.iter().map(|b| b.to_string()).collect(),
        "the bots of the workspace"
    );
    let build = dockerfile
        .lines()
        .find(|l| l.contains("cargo build --release --locked"))
        .expect("a locked release build");
    let accepted = dockerfile
        .lines()
        .find_map(|l| l.trim().strip_prefix("RUN case \"$BOT\" in "))
        .and_then(|rest| rest.split(')').next())
        .expect("the list of BOT values");
    for bot in &bots {
        assert!(build.contains(&format!("-p {bot}")), "cargo builds {bot}");
        assert!(
            dockerfile.contains(&format!("target/release/{bot}")),
            "copies {bot} from cargo's output"
        );
        assert!(
            accepted.split('|').any(|b| b == bot),
            "BOT={bot} is accepted"
        );
    }
    for line in [
        "ENTRYPOINT [\"/usr/local/bin/bot\"]",
        "CMD [\"/usr/local/bin/bot\", \"--health-check\"]",
        "ln -s \"$BOT\" /out/bot",
        "USER bot",
        "ENV DATA_DIR=/var/lib/bot METRICS_ADDRESS=0.0.0.0:9100",
    ] {
        assert!(dockerfile.contains(line), "Dockerfile has {line}");
    }
    assert!(
        dockerfile.contains(&format!("--uid {BOT_UID}")),
        "the bot user is uid {BOT_UID}"
    );
    for bot in ["ping", "snmp", "netflow"] {
        let copy = workspace_root().join("bots").join(bot).join("Dockerfile");
        assert!(
            !copy.exists(),
            "{}: one Dockerfile serves every bot",
            copy.display()
        );
    }
}

#[derive(Deserialize)]
struct Compose {
    services: std::collections::BTreeMap<String, Value>,
}

#[test]
fn the_compose_example_runs_the_images_with_settings_the_bots_accept() {
    let compose: Compose =
        serde_norway::from_str(&read("docker-compose.example.yml")).expect("compose YAML");
    for bot in BOTS {
        let service = &compose.services[bot];
        assert_eq!(service["image"], format!("grafolean-{bot}"), "{bot}: image");
        assert_eq!(
            service["build"]["context"], ".",
            "{bot}: built from the root"
        );
        assert_eq!(
            service["build"]["args"]["BOT"], bot,
            "{bot}: build argument"
        );
        let accepted = env_names_in_help(&build(bot, "--bin", bot));
        let environment = service["environment"].as_object().expect("environment map");
        for name in environment.keys() {
            assert!(
                accepted.contains(name),
                "{bot}: {name} is not a setting of {bot}"
            );
        }
        let token_file = environment["BOT_TOKEN_FROM_FILE"]
            .as_str()
            .expect("token file");
        let secret = service["secrets"][0].as_str().expect("a secret");
        assert_eq!(token_file, format!("/run/secrets/{secret}"), "{bot}: token");
        let volume = service["volumes"][0].as_str().expect("a volume");
        assert!(
            volume.ends_with(":/var/lib/bot"),
            "{bot}: the data directory on a volume"
        );
        assert!(
            !environment.contains_key("METRICS_ADDRESS"),
            "{bot}: the image's METRICS_ADDRESS is what its HEALTHCHECK asks"
        );
    }
    let ping = &compose.services["pingbot"];
    assert_eq!(ping["cap_add"][0], "NET_RAW");
    // The list form: podman-compose 1.0 reads the map form's keys without their values.
    assert_eq!(
        ping["sysctls"][0], "net.ipv6.conf.all.disable_ipv6=0",
        "IPv6 on for ::1"
    );
    let netflow = &compose.services["netflowbot"];
    let port = netflow["environment"]["NETFLOW_PORT"]
        .as_str()
        .expect("port");
    assert_eq!(netflow["ports"][0], format!("{port}:{port}/udp"));
    let alertmanager = &compose.services["alertmanager"];
    assert!(alertmanager["volumes"][0]
        .as_str()
        .is_some_and(|v| v.starts_with("./alertmanager.example.yml:")));
    for bot in BOTS {
        assert_eq!(
            compose.services[bot]["environment"]["ALERTMANAGER_URL"],
            "http://alertmanager:9093"
        );
    }
}

#[test]
fn the_alertmanager_example_config_is_valid_for_alertmanager() {
    let config = workspace_root().join("alertmanager.example.yml");
    let output = Command::new("amtool")
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

/// A container of one of the images, removed when dropped.
struct Container {
    engine: String,
    name: String,
}

fn engine() -> String {
    std::env::var("CONTAINER_ENGINE")
        .expect("CONTAINER_ENGINE (podman or docker): deploy/images.sh runs these tests")
}

fn image(bot: &str) -> String {
    let tag = std::env::var("IMAGE_TAG").unwrap_or_else(|_| "latest".into());
    format!("grafolean-{bot}:{tag}")
}

fn run(engine: &str, args: &[&str]) -> Output {
    let output = Command::new(engine)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {engine}: {e}"));
    assert!(
        output.status.success(),
        "{engine} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl Container {
    /// `engine run --detach` of `bot`'s image with `options` before the image and `args` after.
    fn start(bot: &str, options: &[&str], args: &[&str]) -> Container {
        let engine = engine();
        let name = format!("grafolean-test-{bot}-{}", std::process::id());
        let image = image(bot);
        let mut command = vec!["run", "--detach", "--name", &name];
        command.extend_from_slice(options);
        command.push(&image);
        command.extend_from_slice(args);
        run(&engine, &command);
        Container { engine, name }
    }

    /// What the container printed so far, stdout and stderr.
    fn output(&self) -> String {
        let output = run(&self.engine, &["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    fn wait_for(&self, what: &str, probe: impl Fn(&str) -> bool, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let output = self.output();
            if probe(&output) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what} within {timeout:?}\n{output}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn inspect(&self, format: &str) -> String {
        let output = run(&self.engine, &["inspect", "--format", format, &self.name]);
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Runs the image's HEALTHCHECK command in the container, as the engine does.
    fn assert_healthy(&self) {
        let image = run(
            &self.engine,
            &[
                "image",
                "inspect",
                "--format",
                "{{json .Config.Healthcheck.Test}}",
                &self.inspect("{{.Config.Image}}"),
            ],
        );
        let test: Vec<String> = serde_json::from_slice(&image.stdout).expect("HEALTHCHECK test");
        assert_eq!(test.first().map(String::as_str), Some("CMD"), "{test:?}");
        let mut exec = vec!["exec", self.name.as_str()];
        exec.extend(test[1..].iter().map(String::as_str));
        let status = Command::new(&self.engine)
            .args(&exec)
            .status()
            .expect("run the health check");
        assert!(
            status.success(),
            "{}: HEALTHCHECK {test:?}: {status}",
            self.name
        );
    }

    /// The bot process's user, as the host sees it.
    fn assert_runs_as_the_bot_user(&self) {
        let pid = self.inspect("{{.State.Pid}}");
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next())
            .and_then(|id| id.parse::<u32>().ok());
        assert_eq!(uid, Some(BOT_UID), "{}: {status}", self.name);
    }

    /// Stops the container (SIGTERM, the engine's default) and checks the exit code.
    fn assert_stops_cleanly(&self) {
        let began = Instant::now();
        run(&self.engine, &["stop", "-t", "30", &self.name]);
        let code = self.inspect("{{.State.ExitCode}}");
        assert_eq!(
            code,
            "0",
            "{}: exit code after SIGTERM\n{}",
            self.name,
            self.output()
        );
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "stopped in {:?}",
            began.elapsed()
        );
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new(&self.engine)
            .args(["rm", "--force", &self.name])
            .output();
    }
}

/// A value line of the standalone output with `path` and value `value`.
fn has_value(output: &str, path: &str, value: &str) -> bool {
    output
        .lines()
        .any(|l| l.contains(&format!("\"p\":\"{path}\"")) && l.contains(&format!("\"v\":{value}")))
}

const WAIT: Duration = Duration::from_secs(60);

/// A jobs file for the container at `/jobs/jobs.toml`: the directory to keep while it runs and
/// the `--volume` option (tempfile makes private files; the container's `bot` user reads these).
fn jobs_volume(jobs: &str) -> (tempfile::TempDir, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("jobs.toml");
    std::fs::write(&file, jobs).expect("write jobs");
    std::fs::set_permissions(&file, PermissionsExt::from_mode(0o644)).expect("chmod");
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).expect("chmod");
    let mount = format!("{}:/jobs:ro", dir.path().display());
    (dir, mount)
}

#[test]
#[ignore = "needs the images: deploy/images.sh"]
fn the_ping_image_pings_loopback_with_net_raw_as_its_only_capability() {
    let (_jobs, mount) = jobs_volume(
        "[[credentials]]\nid = 1\nprotocol = \"ping\"\ndetails = { n_packets = 1, timeout = 1.0 }\n\n\
         [[sensors]]\nid = 2\nprotocol = \"ping\"\ndefault_interval = 1\n\n\
         [[entities]]\nid = 4\nname = \"IPv4\"\ndetails = { ipv4 = \"127.0.0.1\" }\n\
         protocols.ping = { credential = 1, sensors = [{ sensor = 2 }] }\n\n\
         [[entities]]\nid = 6\nname = \"IPv6\"\ndetails = { ipv4 = \"::1\" }\n\
         protocols.ping = { credential = 1, sensors = [{ sensor = 2 }] }\n",
    );
    // No datagram ICMP for anyone: the replies must come through the raw socket that the
    // binary's cap_net_raw opens. IPv6 is enabled explicitly, as Docker's default turns it off.
    let container = Container::start(
        "pingbot",
        &[
            "--cap-drop=all",
            "--cap-add=NET_RAW",
            "--sysctl",
            "net.ipv4.ping_group_range=1 0",
            "--sysctl",
            "net.ipv6.conf.all.disable_ipv6=0",
            "--volume",
            &mount,
        ],
        &["--jobs", "/jobs/jobs.toml"],
    );
    container.wait_for(
        "replies from 127.0.0.1 and ::1",
        |out| {
            has_value(out, "entity.4.ping.p0.ok", "1.0")
                && has_value(out, "entity.6.ping.p0.ok", "1.0")
        },
        WAIT,
    );
    assert!(
        container.output().contains("ICMP raw socket open"),
        "the capability's raw socket"
    );
    container.assert_healthy();
    container.assert_runs_as_the_bot_user();
    container.assert_stops_cleanly();
}

#[test]
#[ignore = "needs the images: deploy/images.sh"]
fn the_snmp_image_polls_an_snmpd_on_the_host() {
    let oid = format!("{}.1.1", PASS_BASE.trim_start_matches('.'));
    let agent = Snmpd::start(&[PassObject::fixed(&oid, "gauge", "4242")]);
    let (_jobs, mount) = jobs_volume(&format!(
        "[[credentials]]\nid = 1\nprotocol = \"snmp\"\n\
         details = {{ version = \"snmpv2c\", snmpv12_community = \"{COMMUNITY}\" }}\n\n\
         [[sensors]]\nid = 2\nprotocol = \"snmp\"\ndefault_interval = 1\n\
         details = {{ oids = [{{ oid = \"{oid}\", fetch_method = \"get\" }}], expression = \"$1\", output_path = \"answer\" }}\n\n\
         [[entities]]\nid = 3\nname = \"agent\"\ndetails = {{ ipv4 = \"{}\" }}\n\
         protocols.snmp = {{ credential = 1, sensors = [{{ sensor = 2 }}] }}\n",
        agent.address()
    ));
    let metrics = format!(
        "METRICS_ADDRESS=127.0.0.1:{}",
        e2e::alertmanager::free_port()
    );
    let container = Container::start(
        "snmpbot",
        &["--network=host", "--volume", &mount, "--env", &metrics],
        &["--jobs", "/jobs/jobs.toml"],
    );
    container.wait_for(
        "the agent's value",
        |out| has_value(out, "entity.3.snmp.answer", "4242"),
        WAIT,
    );
    container.assert_healthy();
    container.assert_runs_as_the_bot_user();
    container.assert_stops_cleanly();
}

#[tokio::test]
#[ignore = "needs the images: deploy/images.sh"]
async fn the_netflow_image_receives_a_capture_replayed_from_the_host() {
    let netflow_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free UDP port")
        .port();
    let metrics_port = e2e::alertmanager::free_port();
    let port_setting = format!("NETFLOW_PORT={netflow_port}");
    let metrics_setting = format!("METRICS_ADDRESS=127.0.0.1:{metrics_port}");
    let container = Container::start(
        "netflowbot",
        &[
            "--network=host",
            "--env",
            &port_setting,
            "--env",
            &metrics_setting,
        ],
        &["--standalone"],
    );
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let datagrams_received = || async {
        let page = reqwest::get(&metrics_url).await.ok()?.text().await.ok()?;
        e2e::metrics::sample(&page, "collector_netflow_datagrams_total")
    };
    let deadline = Instant::now() + WAIT;
    // The counter is there once the bot is up (its sockets are bound before it serves /metrics).
    while datagrams_received().await.is_none() {
        assert!(
            Instant::now() < deadline,
            "no /metrics\n{}",
            container.output()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let datagrams = e2e::captures::softflowd("v9");
    let sent = datagrams.len() as f64;
    let to = format!("127.0.0.1:{netflow_port}");
    tokio::task::spawn_blocking(move || e2e::captures::replay("127.0.0.1:0", &to, &datagrams))
        .await
        .expect("replay");
    loop {
        let received = datagrams_received().await;
        if received == Some(sent) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{received:?} datagrams received of {sent} sent\n{}",
            container.output()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    container.assert_healthy();
    container.assert_runs_as_the_bot_user();
    container.assert_stops_cleanly();
}
