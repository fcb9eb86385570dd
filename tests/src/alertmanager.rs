//! A real Alertmanager (Debian's `prometheus-alertmanager`) on loopback for tests, routing every
//! alert to a webhook receiver with short group timings so a test sees notifications in seconds.

use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Alertmanager's own default `resolve_timeout`, in seconds.
const DEFAULT_RESOLVE_TIMEOUT: u64 = 300;

/// A running Alertmanager; killed when dropped.
pub struct Alertmanager {
    pub url: String,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts Alertmanager sending every group to `webhook` (1 s group wait and interval, no
    /// repeats within the test) and waits until it is ready.
    pub async fn start(webhook: &str) -> Alertmanager {
        Self::start_at(webhook, free_port()).await
    }

    /// Like [`Alertmanager::start`], on a chosen loopback port (to start it where a bot already
    /// tries to send).
    pub async fn start_at(webhook: &str, port: u16) -> Alertmanager {
        Self::start_at_resolving_after(webhook, port, DEFAULT_RESOLVE_TIMEOUT).await
    }

    /// Like [`Alertmanager::start_at`], resolving by itself an alert it has not heard of for
    /// `resolve_timeout` seconds (5 min by default): to see that a bot re-sends firing alerts.
    pub async fn start_at_resolving_after(
        webhook: &str,
        port: u16,
        resolve_timeout: u64,
    ) -> Alertmanager {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = format!(
            "global:\n  resolve_timeout: {resolve_timeout}s\nroute:\n  receiver: test\n  group_by: ['alertname', 'entity']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    webhook_configs:\n      - url: '{webhook}'\n        send_resolved: true\n"
        );
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(&config_path, config).expect("write config");
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start prometheus-alertmanager (apt-get install prometheus-alertmanager)");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client.get(format!("{url}/-/ready")).send().await;
            if ready.map(|r| r.status().is_success()).unwrap_or(false) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Alertmanager did not get ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Alertmanager {
            url,
            _child: child,
            _dir: dir,
        }
    }

    /// The alerts it holds as active (`GET /api/v2/alerts`): resolved ones are not listed.
    pub async fn active_alerts(&self) -> Vec<serde_json::Value> {
        let answer = reqwest::get(format!("{}/api/v2/alerts", self.url)).await;
        match answer {
            Ok(answer) => answer.json().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }
}
