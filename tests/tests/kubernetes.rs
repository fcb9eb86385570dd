//! The Kubernetes manifests (`deploy/kubernetes/`), checked against what the bots accept (no
//! cluster runs here): every environment variable a manifest sets is one the bot's `--help`
//! lists, ports and probe paths match the bot's settings, each StatefulSet has as many replicas
//! as `CLUSTER_MEMBERS` and takes its member from the pod name, the token comes from a Secret
//! file, the data directory from a volume claim, and the containers run as non-root with only
//! the capabilities they need. The `sed` commands of the README are run on a copy and must keep
//! replicas and members equal.

use e2e::process::{build, env_names_in_help, workspace_root};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn manifests_dir(root: &Path) -> PathBuf {
    root.join("deploy").join("kubernetes")
}

/// Every document of every `*.yaml` file in `dir`, as JSON values, with their file names.
fn documents(dir: &Path) -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    let mut all = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read manifest");
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        for document in serde_norway::Deserializer::from_str(&text) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{name}: not valid YAML: {e}"));
            if !value.is_null() {
                all.push((name.clone(), value));
            }
        }
    }
    all
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

fn port_named(container: &Value, name: &str) -> Option<(u64, String)> {
    let port = container["ports"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)?;
    Some((
        port["containerPort"].as_u64()?,
        port["protocol"].as_str().unwrap_or("TCP").to_string(),
    ))
}

fn mount_path(container: &Value, volume: &str) -> Option<String> {
    container["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == volume)
        .and_then(|m| m["mountPath"].as_str())
        .map(str::to_string)
}

/// `CLUSTER_MEMBERS` and `replicas` of a StatefulSet.
fn members_and_replicas(set: &Value) -> (String, u64) {
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    let members = env_value(container, "CLUSTER_MEMBERS")
        .and_then(|e| e["value"].as_str())
        .unwrap_or("missing")
        .to_string();
    (members, set["spec"]["replicas"].as_u64().unwrap_or(0))
}

fn check_stateful_set(file: &str, set: &Value, services: &[&Value]) {
    let name = set["metadata"]["name"].as_str().expect("StatefulSet name");
    let spec = &set["spec"];
    let pod = &spec["template"]["spec"];
    let labels = &spec["template"]["metadata"]["labels"];
    for (key, value) in spec["selector"]["matchLabels"]
        .as_object()
        .expect("selector")
    {
        assert_eq!(
            &labels[key], value,
            "{file}: selector does not match the pod labels"
        );
    }
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "{file}");
    let container = &containers[0];
    let binary = build(name, "--bin", name);
    let accepted = env_names_in_help(&binary);
    let set_env: Vec<&str> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    for env in &set_env {
        assert!(
            accepted.contains(*env),
            "{file}: {env} is not a setting of {name} ({accepted:?})"
        );
    }
    assert!(
        !set_env.contains(&"BOT_TOKEN"),
        "{file}: the token belongs in a Secret file"
    );

    let (members, replicas) = members_and_replicas(set);
    assert_eq!(
        members,
        replicas.to_string(),
        "{file}: CLUSTER_MEMBERS vs replicas"
    );
    let member = env_value(container, "CLUSTER_MEMBER").expect("CLUSTER_MEMBER");
    assert_eq!(
        member["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name",
        "{file}"
    );

    // The metrics port: METRICS_ADDRESS, the named container port, both probes, the Service.
    let address = env_value(container, "METRICS_ADDRESS").expect("METRICS_ADDRESS")["value"]
        .as_str()
        .expect("METRICS_ADDRESS value");
    let address: std::net::SocketAddr = address.parse().expect("METRICS_ADDRESS is ip:port");
    assert!(
        address.ip().is_unspecified(),
        "{file}: probes come from outside the pod"
    );
    let (port, protocol) = port_named(container, "metrics").expect("a port named metrics");
    assert_eq!(
        (port, protocol.as_str()),
        (u64::from(address.port()), "TCP"),
        "{file}"
    );
    for (probe, path) in [("livenessProbe", "/health"), ("readinessProbe", "/ready")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{file}: {probe}");
        assert_eq!(get["port"], "metrics", "{file}: {probe}");
    }
    let service = services
        .iter()
        .find(|s| s["metadata"]["name"] == spec["serviceName"])
        .unwrap_or_else(|| panic!("{file}: no Service {}", spec["serviceName"]));
    assert_eq!(
        service["spec"]["clusterIP"], "None",
        "{file}: headless Service"
    );
    assert!(service["spec"]["ports"]
        .as_array()
        .is_some_and(|p| p.iter().any(|p| p["targetPort"] == "metrics")));

    // Token from a Secret file, data on the claim.
    let token = env_value(container, "BOT_TOKEN_FROM_FILE").expect("BOT_TOKEN_FROM_FILE")["value"]
        .as_str()
        .expect("token path");
    let secret_volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["secret"]["secretName"].is_string())
        .expect("a Secret volume");
    let secret_mount = mount_path(
        container,
        secret_volume["name"].as_str().unwrap_or_default(),
    )
    .expect("Secret volume mounted");
    assert_eq!(
        Path::new(token).parent(),
        Some(Path::new(&secret_mount)),
        "{file}"
    );
    let claim = spec["volumeClaimTemplates"][0]["metadata"]["name"]
        .as_str()
        .expect("a volume claim template");
    let data_dir = env_value(container, "DATA_DIR").expect("DATA_DIR")["value"].clone();
    assert_eq!(
        Some(data_dir.as_str().unwrap_or_default().to_string()),
        mount_path(container, claim)
    );

    // Non-root, nothing but what the bot needs.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{file}");
    assert!(pod["securityContext"]["runAsUser"]
        .as_u64()
        .is_some_and(|u| u > 0));
    let capabilities = &container["securityContext"]["capabilities"];
    assert_eq!(capabilities["drop"], serde_json::json!(["ALL"]), "{file}");
    let added = capabilities["add"].as_array().cloned().unwrap_or_default();
    let expected: Vec<Value> = match name {
        "pingbot" => vec!["NET_RAW".into()],
        _ => Vec::new(),
    };
    assert_eq!(added, expected, "{file}: added capabilities");

    if name == "netflowbot" {
        let port = env_value(container, "NETFLOW_PORT").expect("NETFLOW_PORT")["value"].clone();
        let (container_port, protocol) = port_named(container, "netflow").expect("netflow port");
        assert_eq!(
            port.as_str(),
            Some(container_port.to_string().as_str()),
            "{file}"
        );
        assert_eq!(protocol, "UDP", "{file}");
    }
}

#[test]
fn manifests_match_what_the_bots_accept() {
    let all = documents(&manifests_dir(&workspace_root()));
    let services: Vec<&Value> = all
        .iter()
        .filter(|(_, d)| d["kind"] == "Service")
        .map(|(_, d)| d)
        .collect();
    let mut bots = BTreeSet::new();
    for (file, document) in &all {
        assert!(
            document["apiVersion"].is_string() && document["kind"].is_string(),
            "{file}"
        );
        if document["kind"] == "StatefulSet" {
            check_stateful_set(file, document, &services);
            bots.insert(
                document["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    assert_eq!(
        bots,
        BTreeSet::from(["netflowbot".to_string(), "pingbot".into(), "snmpbot".into()])
    );
    // Every Service selecting one member names a pod the StatefulSet makes.
    for service in services {
        if let Some(pod) =
            service["spec"]["selector"]["statefulset.kubernetes.io/pod-name"].as_str()
        {
            let (set, ordinal) = pod.rsplit_once('-').expect("pod name");
            assert!(
                bots.contains(set) && ordinal.parse::<u32>().is_ok(),
                "{pod}"
            );
        }
    }
}

#[test]
fn the_readme_scaling_commands_keep_replicas_and_members_equal() {
    let root = workspace_root();
    let readme = std::fs::read_to_string(manifests_dir(&root).join("README.md")).expect("README");
    let commands: Vec<&str> = readme
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("sed -i"))
        .collect();
    assert!(
        !commands.is_empty(),
        "the README shows how to scale with sed"
    );
    let copy = tempfile::tempdir().expect("temp dir");
    let target = manifests_dir(copy.path());
    std::fs::create_dir_all(&target).expect("mkdir");
    for entry in std::fs::read_dir(manifests_dir(&root)).expect("manifests") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, target.join(path.file_name().unwrap_or_default())).expect("copy");
    }
    for command in &commands {
        let status = Command::new("sh")
            .args(["-c", command])
            .current_dir(copy.path())
            .status()
            .expect("sh");
        assert!(status.success(), "{command}");
    }
    let scaled: Vec<(String, u64)> = documents(&target)
        .iter()
        .filter(|(_, d)| d["kind"] == "StatefulSet")
        .map(|(_, d)| members_and_replicas(d))
        .collect();
    assert!(
        scaled.iter().all(|(m, r)| *m == r.to_string()),
        "{scaled:?}"
    );
    assert!(scaled.contains(&("3".to_string(), 3)), "{scaled:?}");
}
