//! Running the real bot binaries in tests: build once, start with a clean environment, capture
//! stdout and stderr, stop with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The workspace root (the folder holding `Cargo.toml` of the workspace).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The target directory the running test was built into (`.../target`).
fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // The test executable lives in target/<profile>/deps/.
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds (once per test process) and returns the path of a binary of the workspace, with the
/// same profile as the tests. `kind` is `--bin` or `--example`; `package` names the package the
/// binary belongs to, for the reader (the build covers the whole workspace, see below).
pub fn build(package: &str, kind: &str, name: &str) -> PathBuf {
    static BUILT: OnceLock<bool> = OnceLock::new();
    let target = target_dir();
    let path = match kind {
        "--example" => target.join("debug").join("examples").join(name),
        _ => target.join("debug").join(name),
    };
    let built = *BUILT.get_or_init(|| build_workspace(&target));
    assert!(
        built,
        "cargo build of the workspace failed (wanted {package} {kind} {name})"
    );
    path
}

/// One `cargo build` of every test, binary and example of the workspace. Selecting the same
/// targets as `cargo nextest run --workspace` gives the same feature set (dev-dependencies
/// included), so the binaries are linked from the test run's own artifacts: building one
/// package alone would resolve other features and compile its dependency tree a second time
/// (hundreds of megabytes each, which once filled CI's disk).
fn build_workspace(target: &Path) -> bool {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    // Variables cargo sets for the running test would change the build's fingerprint and make it
    // rebuild; the ones that choose how to build (CARGO_INCREMENTAL, CARGO_PROFILE_*, ...) stay.
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("CARGO_") && !is_build_setting(&name_text) {
            command.env_remove(&name);
        }
    }
    command
        .current_dir(workspace_root())
        .args([
            "build",
            "-q",
            "--workspace",
            "--tests",
            "--bins",
            "--examples",
        ])
        .env("CARGO_TARGET_DIR", target)
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// Whether an environment variable is a setting of how cargo builds, rather than one cargo sets
/// for a running test.
fn is_build_setting(name: &str) -> bool {
    name == "CARGO_HOME"
        || name == "CARGO_INCREMENTAL"
        || [
            "CARGO_PROFILE_",
            "CARGO_BUILD_",
            "CARGO_TERM_",
            "CARGO_NET_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// A running bot with its output captured.
pub struct BotProcess {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The tasks reading stdout and stderr; they end at the process's exit.
    readers: Vec<tokio::task::JoinHandle<()>>,
    /// The data directory the bot was given (removed on drop).
    pub data_dir: tempfile::TempDir,
}

/// Environment variables a bot reads, cleared so the test's own environment cannot leak in.
pub const BOT_ENV: &[&str] = &[
    "BACKEND_URL",
    "BOT_TOKEN",
    "BOT_TOKEN_FROM_FILE",
    "JOBS_REFRESH_INTERVAL",
    "JOBS_FILE",
    "STANDALONE",
    "DATA_DIR",
    "JOB_CONCURRENCY",
    "JOB_TIMEOUT",
    "LOG_FORMAT",
    "CLUSTER_MEMBERS",
    "CLUSTER_MEMBER",
    "CLUSTER_REPLICATION",
    "ALERT_IF_IN_A_ROW",
    "ALERT_RENOTIFY",
    "ALERTMANAGER_URL",
    "ALERTMANAGER_RESEND_INTERVAL",
    "EVENTS_WEBHOOK_URL",
    "DATAKIT_URL",
    "METRICS_ADDRESS",
    "VALUES_OUTPUT",
    "DELIVERY_ATTEMPTS",
    "DELIVERY_BATCH_MAX_VALUES",
    "DELIVERY_BATCH_MAX_DELAY_MS",
    "JOB_MAX_STARTS_PER_SECOND",
    "NETFLOW_PORT",
    "NETFLOW_THREADS",
    "NETFLOW_MINUTE",
];

impl BotProcess {
    /// Starts `binary` with `args` and `env` (on top of a cleaned environment, `RUST_LOG=info`
    /// and a fresh `DATA_DIR`).
    pub fn start(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> BotProcess {
        let data_dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(binary, args, env, data_dir)
    }

    /// Like [`BotProcess::start`], reusing a data directory (to test restarts).
    pub fn start_in(
        binary: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        data_dir: tempfile::TempDir,
    ) -> BotProcess {
        let mut command = Command::new(binary);
        for name in BOT_ENV {
            command.env_remove(name);
        }
        command
            .args(args)
            .env("RUST_LOG", "info")
            .env("DATA_DIR", data_dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start bot binary");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(collect(BufReader::new(out), stdout.clone())));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(collect(BufReader::new(err), stderr.clone())));
        }
        BotProcess {
            child,
            stdout,
            stderr,
            readers,
            data_dir,
        }
    }

    /// Lines printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Everything printed on stderr (the log) so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Waits until `probe` holds for (stdout lines, stderr text), checking every 50 ms; panics
    /// after `timeout` showing the output.
    pub async fn wait_for(
        &self,
        what: &str,
        probe: impl Fn(&[String], &str) -> bool,
        timeout: Duration,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !probe(&self.stdout_lines(), &self.stderr()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}\n--- stdout:\n{}\n--- stderr:\n{}",
                self.stdout_lines().join("\n"),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the log contains `text`.
    pub async fn wait_for_log(&self, text: &str, timeout: Duration) {
        self.wait_for(
            &format!("log line {text:?}"),
            |_, err| err.contains(text),
            timeout,
        )
        .await;
    }

    /// Sends SIGTERM and waits for the exit (SIGKILL after `timeout`).
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => {
                self.drain_output().await;
                status.expect("wait for bot")
            }
            Err(_) => {
                let _ = self.child.kill().await;
                panic!(
                    "bot did not stop within {timeout:?} after SIGTERM\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// Kills the process with SIGKILL (no chance to clean up) and hands back its data directory,
    /// to start it again on the same state.
    pub async fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill().await;
        let placeholder = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.data_dir, placeholder)
    }

    /// Waits for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("bot still running after {timeout:?}\n{}", self.stderr()))
            .expect("wait for bot");
        self.drain_output().await;
        status
    }

    /// Waits (briefly) until everything the exited process printed has been read.
    async fn drain_output(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
    }
}

async fn collect<R: tokio::io::AsyncBufRead + Unpin>(reader: R, lines: Arc<Mutex<Vec<String>>>) {
    let mut reader = reader.lines();
    while let Ok(Some(line)) = reader.next_line().await {
        if let Ok(mut lines) = lines.lock() {
            lines.push(line);
        }
    }
}

/// Environment variables a binary's `--help` names (`[env: NAME=...]`).
pub fn env_names_in_help(binary: &Path) -> std::collections::BTreeSet<String> {
    let output = std::process::Command::new(binary)
        .arg("--help")
        .env_clear()
        .output()
        .expect("run --help");
    assert!(
        output.status.success(),
        "{} --help failed",
        binary.display()
    );
    String::from_utf8_lossy(&output.stdout)
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_string)
        .collect()
}
