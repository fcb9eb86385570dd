//! What a new user meets in the first hour, run as the user runs it: the README's first commands
//! exactly as written, pipes closed under the bot, two bots in one folder, a second netflowbot on a
//! taken port, a backend URL that is wrong in the usual ways, settings from the environment.

use e2e::process::{build, workspace_root, BotProcess, BOT_ENV};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// A ping jobs file: 127.0.0.1 every second, one packet, plus `extra` TOML.
fn ping_jobs(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("jobs.toml");
    let text = format!(
        r#"
[[credentials]]
id = 1
protocol = "ping"
details = {{ n_packets = 1, sleep_packets = 0.1, timeout = 0.5, retry = 0 }}

[[sensors]]
id = 11
protocol = "ping"
default_interval = 1

[[entities]]
id = 1001
name = "lo"
details = {{ ipv4 = "127.0.0.1" }}
protocols.ping = {{ credential = 1, sensors = [{{ sensor = 11 }}] }}
{extra}"#
    );
    std::fs::write(&path, text).expect("write jobs file");
    path
}

/// A command for a bot binary with none of the bot's settings inherited from the test's
/// environment (the tests set their own).
fn bot_command(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    for name in BOT_ENV {
        command.env_remove(name);
    }
    command.env("RUST_LOG", "info").stdin(Stdio::null());
    command
}

/// Waits for the child's exit, killing it after `timeout`.
fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the bot did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(child: &std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

/// The lines of the first ```sh block after `heading` in the root README (from the top when
/// `heading` is empty), comments removed.
fn readme_commands(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let section = readme
        .split_once(heading)
        .map(|(_, rest)| rest)
        .expect("the README section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```sh block in README.md");
    block
        .lines()
        .map(|line| line.split(" # ").next().unwrap_or("").trim().to_string())
        .filter(|line| !line.is_empty())
        .collect()
}

/// A shell in `dir` running `line` as written, in its own process group (as a terminal runs a
/// command), with cargo's variables for the running test removed (they would change the build's
/// fingerprint). The shell `exec`s the line, so that a signal reaches the command itself (`cargo
/// run` replaces itself with the bot).
fn shell(line: &str, dir: &Path) -> Command {
    let mut command = Command::new("sh");
    command
        .args(["-c", &format!("exec {line}")])
        .current_dir(dir)
        .process_group(0);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("CARGO_") && name != "CARGO_HOME" {
            command.env_remove(&name);
        }
    }
    command
}

#[test]
fn the_readme_first_commands_work_as_written() {
    let commands = readme_commands("");
    assert_eq!(commands.len(), 2, "{commands:?}");
    let (run, test) = (&commands[0], &commands[1]);
    assert!(run.starts_with("cargo run "), "{run}");
    assert!(test.starts_with("cargo nextest run"), "{test}");
    // CI runs the README's test command (with --locked added), and stops nothing it did not
    // start (a developer's own snmpd survives `bash .ci/run`).
    let ci = std::fs::read_to_string(workspace_root().join(".ci/run")).expect(".ci/run");
    assert!(
        !ci.contains("pkill") && !ci.contains("killall"),
        ".ci/run kills processes by name"
    );
    let locked = format!("{test} --locked");
    assert!(
        ci.lines().any(|l| l.trim() == test || l.trim() == locked),
        ".ci/run does not run {test:?}"
    );

    // The run command, as written, from a folder of the workspace (its data directory lands
    // there), until it reports 127.0.0.1 answering; then SIGTERM.
    let cwd = tempfile::tempdir_in(workspace_root().join("target")).expect("temp dir");
    let mut child = shell(run, cwd.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    let (found_tx, found_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            let path = value["p"].as_str().unwrap_or_default();
            if path.ends_with(".ok") && value["v"] == 1.0 {
                let _ = found_tx.send(line.clone());
            }
        }
    });
    // A cold release build on two cores takes minutes; the embedded jobs fire after 10 s.
    let found = found_rx.recv_timeout(Duration::from_secs(900));
    sigterm(&child);
    let status = wait_exit(&mut child, WAIT);
    // Whatever the line left behind in its process group goes too. The `--` matters: procps'
    // kill reads `-KILL -17523` as `kill(-1)`, which kills every process the user may signal.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let log = log.join().unwrap_or_default();
    assert!(found.is_ok(), "no answered ping from `{run}`:\n{log}");
    assert!(status.success(), "{status:?}\n{log}");
    assert!(
        cwd.path().join("data/pingbot/state.redb").exists(),
        "the bot's own default data directory:\n{log}"
    );

    // The install commands, after the release build above: `cargo install` into a folder of the
    // test (CARGO_INSTALL_ROOT) rather than ~/.cargo, sharing the build (CARGO_TARGET_DIR); the
    // lines after it from that folder, with the installed binary first on PATH.
    let install = readme_commands("## Install");
    let root = tempfile::tempdir().expect("temp dir");
    let path = format!(
        "{}:{}",
        root.path().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (i, line) in install.iter().enumerate() {
        let dir = if i == 0 {
            workspace_root()
        } else {
            root.path().to_path_buf()
        };
        let out = shell(line, &dir)
            .env("CARGO_INSTALL_ROOT", root.path())
            .env("CARGO_TARGET_DIR", workspace_root().join("target"))
            .env("PATH", &path)
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "`{line}` failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let completions = std::fs::read_to_string(root.path().join("pingbot.bash")).unwrap_or_default();
    assert!(completions.contains("--backend-url"), "{completions}");
    let man = std::fs::read_to_string(root.path().join("pingbot.1")).unwrap_or_default();
    assert!(man.contains(".TH pingbot"), "{man}");
}

#[test]
fn a_closed_stdout_ends_the_bot_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = ping_jobs(dir.path(), "");
    let mut child = bot_command(&build("pingbot", "--bin", "pingbot"))
        .args(["--jobs", jobs.to_str().expect("path")])
        .env("DATA_DIR", dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pingbot");
    // Like `pingbot ... | head -3`: read three lines, then close the pipe.
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    for _ in 0..3 {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("a value line");
        assert!(line.starts_with("{\"p\""), "{line}");
    }
    drop(stdout);
    let status = wait_exit(&mut child, WAIT);
    let mut log = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut log);
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("stdout or stderr was closed"), "{log}");
}

#[test]
fn a_closed_stderr_ends_the_bot_cleanly_without_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = ping_jobs(dir.path(), "");
    // Like `pingbot ... 2>&1 | grep -m1 ok`: the reader of the log goes away after a line. With
    // task records every firing writes to stderr.
    let mut child = bot_command(&build("pingbot", "--bin", "pingbot"))
        .args(["--jobs", jobs.to_str().expect("path"), "--task-records"])
        .env("DATA_DIR", dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pingbot");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("a log line");
    drop(stderr);
    let status = wait_exit(&mut child, WAIT);
    assert!(status.success(), "{status:?}: a panic exits 101");
}

#[tokio::test]
async fn two_bots_in_one_folder_each_get_their_own_data_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = ping_jobs(dir.path(), "");
    let ping = build("pingbot", "--bin", "pingbot");
    let tcpcheck = build("collector", "--example", "tcpcheck");
    let start = |binary: &Path, args: &[&str]| {
        bot_command(binary)
            .args(args)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bot")
    };
    let mut first = start(&ping, &["--jobs", jobs.to_str().expect("path")]);
    let mut second = start(&tcpcheck, &["--standalone"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(first.try_wait().expect("wait").is_none(), "pingbot stopped");
    assert!(
        second.try_wait().expect("wait").is_none(),
        "tcpcheck stopped"
    );
    assert!(dir.path().join("data/pingbot/state.redb").exists());
    assert!(dir.path().join("data/tcpcheck/state.redb").exists());

    // A third bot given the same DATA_DIR as a running one is told which directory and setting.
    let mut third = bot_command(&ping)
        .args(["--jobs", jobs.to_str().expect("path")])
        .env("DATA_DIR", dir.path().join("data/pingbot"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bot");
    let status = wait_exit(&mut third, WAIT);
    let mut log = String::new();
    let _ = third
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut log);
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("DATA_DIR") && log.contains("in use"), "{log}");
    for child in [&mut first, &mut second] {
        sigterm(child);
        assert!(wait_exit(child, WAIT).success());
    }
}

#[tokio::test]
async fn an_unreadable_store_is_set_aside_and_the_bot_starts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = ping_jobs(dir.path(), "");
    let data = tempfile::tempdir().expect("temp dir");
    std::fs::write(data.path().join("state.redb"), vec![0x42u8; 16_384]).expect("write");
    let bot = BotProcess::start_in(
        &build("pingbot", "--bin", "pingbot"),
        &["--jobs", jobs.to_str().expect("path")],
        &[],
        data,
    );
    bot.wait_for(
        "a value",
        |out, _| out.iter().any(|l| l.contains(".ok")),
        WAIT,
    )
    .await;
    let log = bot.stderr();
    assert!(
        log.contains("ERROR") && log.contains("is unreadable") && log.contains("are lost"),
        "{log}"
    );
    let aside = std::fs::read_dir(bot.data_dir.path())
        .expect("data dir")
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.redb.corrupt-")
        });
    assert!(aside, "the unreadable file is kept for inspection");
}

#[tokio::test]
async fn a_second_netflowbot_on_a_taken_port_is_refused_naming_the_port() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port()
        .to_string();
    let netflowbot = build("netflowbot", "--bin", "netflowbot");
    let env = [("NETFLOW_PORT", port.as_str()), ("NETFLOW_THREADS", "2")];
    let first = BotProcess::start(&netflowbot, &["--standalone"], &env);
    first.wait_for_log("listening for NetFlow", WAIT).await;
    let mut second = BotProcess::start(&netflowbot, &["--standalone"], &env);
    let status = second.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(2), "{}", second.stderr());
    let log = second.stderr();
    assert!(
        log.contains(&format!("UDP port {port} is already in use")),
        "{log}"
    );
    assert!(
        !first.stderr().contains("ERROR"),
        "the first bot goes on: {}",
        first.stderr()
    );
}

/// A one-route-per-path HTTP server for backends that are wrong the usual ways.
fn fake_backend(routes: Vec<(&'static str, u16, &'static str)>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let path = path.split('?').next().unwrap_or(path);
            let (status, body) = routes
                .iter()
                .find(|(p, _, _)| *p == path)
                .map(|(_, s, b)| (*s, *b))
                .unwrap_or((404, r#"{"detail":"Not Found"}"#));
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut &stream, answer.as_bytes());
        }
    });
    port
}

const HTML: &str = "<!DOCTYPE html><html><head><title>Grafolean</title></head><body>the web app, not the API</body></html>";

#[tokio::test]
async fn backend_problems_are_named_once_with_their_likely_fix() {
    let tcpcheck = build("collector", "--example", "tcpcheck");
    let fast = [("BACKEND_WAIT_INTERVAL", "1"), ("BOT_TOKEN", "x")];

    // Nothing listening: the host, the port and "connection refused", once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("http://127.0.0.1:{closed}/api");
    let env = [fast[0], fast[1], ("BACKEND_URL", url.as_str())];
    let mut bot = BotProcess::start(&tcpcheck, &[], &env);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    bot.terminate(WAIT).await;
    let log = bot.stderr();
    let wanted = format!("cannot connect to 127.0.0.1:{closed}");
    assert_eq!(log.matches(&wanted).count(), 1, "{log}");
    assert!(log.to_lowercase().contains("connection refused"), "{log}");
    assert!(log.contains("BACKEND_URL"), "{log}");

    // A web page where the API should be: named, not pasted, with the /api hint.
    let port = fake_backend(vec![("/status/info", 200, HTML)]);
    let url = format!("http://127.0.0.1:{port}");
    let env = [fast[0], fast[1], ("BACKEND_URL", url.as_str())];
    let mut bot = BotProcess::start(&tcpcheck, &[], &env);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    bot.terminate(WAIT).await;
    let log = bot.stderr();
    assert!(log.contains("an HTML page instead of JSON"), "{log}");
    assert!(log.contains("/api"), "{log}");
    assert!(!log.contains("the web app, not the API"), "{log}");
    assert_eq!(log.matches("HTML page").count(), 1, "{log}");

    // The status answers but /profile/ is an unknown route: a missing prefix, not a bad token.
    let ready = r#"{"db_migration_needed":false,"user_exists":true}"#;
    let port = fake_backend(vec![("/status/info", 200, ready)]);
    let url = format!("http://127.0.0.1:{port}");
    let env = [fast[0], fast[1], ("BACKEND_URL", url.as_str())];
    let mut bot = BotProcess::start(&tcpcheck, &[], &env);
    assert_eq!(bot.wait_exit(WAIT).await.code(), Some(1));
    let log = bot.stderr();
    assert!(
        log.contains("GET /profile/: HTTP 404") && log.contains("API prefix"),
        "{log}"
    );
    // The one-letter token redacted nothing else.
    assert!(!log.contains("REDACTED"), "{log}");
}

#[tokio::test]
async fn settings_as_a_user_gives_them() {
    let ping = build("pingbot", "--bin", "pingbot");
    for (bot, binary) in [
        ("pingbot", ping.clone()),
        ("snmpbot", build("snmpbot", "--bin", "snmpbot")),
        ("netflowbot", build("netflowbot", "--bin", "netflowbot")),
    ] {
        let out = bot_command(&binary).arg("-V").output().expect("run");
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{bot} {}", env!("CARGO_PKG_VERSION"))
        );
        let out = bot_command(&binary)
            .args(["--completions", "bash"])
            .output()
            .expect("run");
        assert!(String::from_utf8_lossy(&out.stdout).contains("--backend-url"));
        let out = bot_command(&binary)
            .arg("--man-page")
            .output()
            .expect("run");
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!(".TH {bot}")));
    }

    // A bad value from the environment is reported under the variable's name.
    let out = bot_command(&ping)
        .env("JOB_CONCURRENCY", "many")
        .arg("--standalone")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("JOB_CONCURRENCY=\"many\""), "{err}");

    // A data directory that cannot be made is a bad setting.
    let out = bot_command(&ping)
        .env("DATA_DIR", "/proc/not-here")
        .arg("--standalone")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATA_DIR /proc/not-here"));

    // STANDALONE=1 is yes; a jobs file with nothing for the bot says so; a dangling credential
    // is reported once, not twice, at start.
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = ping_jobs(
        dir.path(),
        r#"
[[entities]]
id = 1002
name = "dangling"
details = { ipv4 = "127.0.0.2" }
protocols.ping = { credential = 99, sensors = [{ sensor = 11 }] }
"#,
    );
    let bot = BotProcess::start(&ping, &[], &[("JOBS_FILE", jobs.to_str().expect("path"))]);
    bot.wait_for("a value", |out, _| !out.is_empty(), WAIT)
        .await;
    assert_eq!(
        bot.stderr().matches("left out").count(),
        1,
        "{}",
        bot.stderr()
    );
    let mut bot = BotProcess::start(&ping, &[], &[("STANDALONE", "1")]);
    bot.wait_for_log("jobs refreshed", WAIT).await;
    bot.terminate(WAIT).await;
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").expect("write");
    let mut bot = BotProcess::start(&ping, &["--jobs", empty.to_str().expect("path")], &[]);
    bot.wait_for_log("has no entity for this bot", WAIT).await;
    bot.terminate(WAIT).await;
}

#[tokio::test]
async fn values_on_the_metrics_page_count_as_delivered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs = ping_jobs(dir.path(), "");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let address = format!("127.0.0.1:{port}");
    let mut bot = BotProcess::start(
        &build("pingbot", "--bin", "pingbot"),
        &["--jobs", jobs.to_str().expect("path")],
        &[("VALUES_OUTPUT", "metrics"), ("METRICS_ADDRESS", &address)],
    );
    let deadline = Instant::now() + WAIT;
    let delivered = loop {
        let page = reqwest::get(format!("http://{address}/metrics"))
            .await
            .ok()
            .map(|r| r.text());
        let page = match page {
            Some(text) => text.await.unwrap_or_default(),
            None => String::new(),
        };
        let delivered = page
            .lines()
            .find(|l| l.starts_with("collector_values_delivered_total"))
            .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        if delivered > 0.0 || Instant::now() > deadline {
            break delivered;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    bot.terminate(WAIT).await;
    assert!(delivered > 0.0, "{}", bot.stderr());
}
