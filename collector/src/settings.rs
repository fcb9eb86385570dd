//! Settings shared by every bot: each one a flag and an environment variable (`--help` lists them).
//! A bot flattens [`Settings`] into its own clap parser next to its protocol settings.

use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// The framework's settings, named as the Python bots name them where they exist.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Backend URL including the API prefix, e.g. http://grafolean/api.
    #[arg(help_heading = "Backend", long, env = "BACKEND_URL")]
    pub backend_url: Option<String>,

    /// Bot token (a UUID from the Grafolean UI). Prefer BOT_TOKEN_FROM_FILE.
    #[arg(
        help_heading = "Backend",
        long,
        env = "BOT_TOKEN",
        hide_env_values = true
    )]
    pub bot_token: Option<String>,

    /// File holding the bot token (trailing whitespace is trimmed).
    #[arg(help_heading = "Backend", long, env = "BOT_TOKEN_FROM_FILE")]
    pub bot_token_from_file: Option<PathBuf>,

    /// Seconds between two refreshes of the job configs.
    #[arg(help_heading = "Backend", long, env = "JOBS_REFRESH_INTERVAL", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub jobs_refresh_interval: u64,

    /// Standalone mode: read jobs from this TOML file instead of the backend and print values
    /// to stdout as JSON lines. The file is read again at every refresh.
    #[arg(help_heading = "Standalone", long, env = "JOBS_FILE")]
    pub jobs: Option<PathBuf>,

    /// Standalone mode with the bot's embedded example jobs (when --jobs is not given).
    #[arg(help_heading = "Standalone", long, env = "STANDALONE", value_parser = clap::builder::BoolishValueParser::new())]
    pub standalone: bool,

    /// Directory for the bot's durable state (counter samples, templates, spool); each bot needs
    /// its own [default: data/<bot>, e.g. data/pingbot].
    #[arg(help_heading = "Jobs and state", long, env = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Maximum number of jobs running at once.
    #[arg(help_heading = "Jobs and state", long, env = "JOB_CONCURRENCY", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub job_concurrency: u64,

    /// Seconds a job may run before it is cancelled (default: the job's smallest interval).
    #[arg(help_heading = "Jobs and state", long, env = "JOB_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..))]
    pub job_timeout: Option<u64>,

    /// Seconds a running job may take to finish after SIGTERM/SIGINT.
    #[arg(
        help_heading = "Jobs and state",
        long,
        env = "SHUTDOWN_GRACE",
        default_value_t = 10
    )]
    pub shutdown_grace: u64,

    /// Seconds before a backend request is abandoned.
    #[arg(help_heading = "Backend", long, env = "BACKEND_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub backend_timeout: u64,

    /// Seconds between two checks of /status/info while waiting for the backend.
    #[arg(help_heading = "Backend", long, env = "BACKEND_WAIT_INTERVAL", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub backend_wait_interval: u64,

    /// Tries to POST one batch of values (connection errors and 5xx) before it goes to the spool.
    #[arg(help_heading = "Delivery", long, env = "DELIVERY_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub delivery_attempts: u64,

    /// Values of one account that go in one POST at most: the firings finishing close together
    /// are coalesced until this many values or DELIVERY_BATCH_MAX_DELAY_MS, whichever is first.
    #[arg(help_heading = "Delivery", long, env = "DELIVERY_BATCH_MAX_VALUES", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub delivery_batch_max_values: u64,

    /// Milliseconds a value may wait for others to share its POST (0: one POST per firing); a
    /// group also closes once no firing joined it for a tenth of this.
    #[arg(help_heading = "Delivery", long, env = "DELIVERY_BATCH_MAX_DELAY_MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub delivery_batch_max_delay_ms: u64,

    /// Bytes the on-disk spool of undelivered values may hold; when full the oldest are dropped.
    #[arg(help_heading = "Delivery", long, env = "SPOOL_MAX_BYTES", default_value_t = 256 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(4096..))]
    pub spool_max_bytes: u64,

    /// Address for /metrics, /health and /ready (e.g. 0.0.0.0:9100); none by default.
    #[arg(help_heading = "Telemetry", long, env = "METRICS_ADDRESS")]
    pub metrics_address: Option<std::net::SocketAddr>,

    /// Standalone mode: print values to stdout, or show the last value of each path on the
    /// /metrics page (at METRICS_ADDRESS, default 127.0.0.1:9100).
    #[arg(help_heading = "Standalone", long, env = "VALUES_OUTPUT", value_enum, default_value_t = ValuesOutput::Stdout)]
    pub values_output: ValuesOutput,

    /// Log a task record (job, entity, trigger, start, end, wait/run/total cost, status) for
    /// every firing at INFO level (otherwise at DEBUG).
    #[arg(help_heading = "Telemetry", long, env = "TASK_RECORDS", value_parser = clap::builder::BoolishValueParser::new())]
    pub task_records: bool,

    /// Also send task records as values under `<prefix>.job.<job id>.{success,wait_cost,run_cost,total_cost}`
    /// to the job's account, e.g. `bot.snmp`.
    #[arg(help_heading = "Telemetry", long, env = "TASK_RECORDS_PREFIX", value_parser = valid_prefix)]
    pub task_records_prefix: Option<String>,

    /// Ask a running bot whether it is healthy (GET /health at METRICS_ADDRESS) and exit 0 if
    /// so, 1 if not: the container HEALTHCHECK, with no curl in the image.
    #[arg(help_heading = "Telemetry", long)]
    pub health_check: bool,

    /// Print a completion script for this shell and exit (e.g. `--completions bash >
    /// /etc/bash_completion.d/pingbot`).
    #[arg(help_heading = "Installation", long, value_name = "SHELL")]
    pub completions: Option<clap_complete::Shell>,

    /// Print the man page (roff) and exit (e.g. `--man-page > /usr/local/share/man/man1/pingbot.1`).
    #[arg(help_heading = "Installation", long)]
    pub man_page: bool,

    /// Log format.
    #[arg(help_heading = "Telemetry", long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Replicas sharing the jobs (CLUSTER_MEMBERS, CLUSTER_MEMBER, CLUSTER_REPLICATION).
    #[command(flatten, next_help_heading = "Replicas")]
    pub cluster: crate::cluster::ClusterSettings,

    /// Job starts per second at most (firings due together are spread); unlimited by default.
    #[arg(help_heading = "Jobs and state", long, env = "JOB_MAX_STARTS_PER_SECOND", value_parser = clap::value_parser!(u32).range(1..))]
    pub job_max_starts_per_second: Option<u32>,

    /// Alerts, events and their sinks.
    #[command(flatten, next_help_heading = "Alerts and events")]
    pub notify: crate::notify::NotifySettings,
}

/// How log lines are written (to stderr; stdout is for values in standalone mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn valid_prefix(prefix: &str) -> Result<String, String> {
    match crate::value::path_problem(prefix) {
        None => Ok(prefix.to_string()),
        Some(problem) => Err(format!("not a valid path prefix: {problem}")),
    }
}

/// Where standalone mode puts values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValuesOutput {
    /// JSON lines `{"p", "v", "t"}` on stdout.
    Stdout,
    /// Gauges `grafolean_value{path=...}` on the /metrics page.
    Metrics,
}

/// Where jobs come from and values go, resolved from the settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// The Grafolean backend (token already trimmed).
    Backend { url: String, token: String },
    /// A local jobs file, or the bot's embedded example when `None`.
    Standalone { jobs_file: Option<PathBuf> },
}

impl Settings {
    /// Decides the mode, or says in one line which setting is missing or invalid.
    pub fn mode(&self) -> Result<Mode, String> {
        if let Some(file) = &self.jobs {
            return Ok(Mode::Standalone {
                jobs_file: Some(file.clone()),
            });
        }
        if self.standalone {
            return Ok(Mode::Standalone { jobs_file: None });
        }
        let url = match self.backend_url.as_deref().map(str::trim) {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                url.trim_end_matches('/').to_string()
            }
            Some(url) if !url.is_empty() => {
                return Err(format!(
                    "BACKEND_URL must start with http:// or https://, got {url:?}"
                ))
            }
            _ => {
                return Err("BACKEND_URL is not set (or use --jobs FILE or --standalone to run without a backend)".into())
            }
        };
        let token = match (&self.bot_token, &self.bot_token_from_file) {
            (Some(token), _) => token.trim().to_string(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("BOT_TOKEN_FROM_FILE {}: cannot read: {e}", path.display()))?
                .trim()
                .to_string(),
            (None, None) => return Err("BOT_TOKEN (or BOT_TOKEN_FROM_FILE) is not set".into()),
        };
        if token.is_empty() {
            return Err("BOT_TOKEN is empty".into());
        }
        Ok(Mode::Backend { url, token })
    }

    /// `DATA_DIR`, or `data/<bot>` named after the running executable, so that two bots started
    /// in the same folder do not share (and lock each other out of) one store.
    pub fn data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        let bot = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "bot".into());
        PathBuf::from("data").join(bot)
    }

    /// When a coalesced group of values closes.
    pub fn delivery_limits(&self) -> crate::delivery::coalesce::Limits {
        crate::delivery::coalesce::Limits {
            max_values: usize::try_from(self.delivery_batch_max_values).unwrap_or(usize::MAX),
            max_delay: Duration::from_millis(self.delivery_batch_max_delay_ms),
        }
    }

    pub fn refresh_interval(&self) -> Duration {
        Duration::from_secs(self.jobs_refresh_interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    fn parse(args: &[&str]) -> Result<Settings, clap::Error> {
        let mut all = vec!["bot"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| c.settings)
    }

    #[test]
    fn token_from_file_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "b0b5e5a3-1c2d-4e5f-8a9b-0c1d2e3f4a5b\n").unwrap();
        let s = parse(&[
            "--backend-url",
            "http://h/api/",
            "--bot-token-from-file",
            file.to_str().unwrap(),
        ])
        .unwrap();
        assert_eq!(
            s.mode().unwrap(),
            Mode::Backend {
                url: "http://h/api".into(),
                token: "b0b5e5a3-1c2d-4e5f-8a9b-0c1d2e3f4a5b".into()
            }
        );
    }

    #[test]
    fn missing_or_bad_settings_name_themselves() {
        let err = parse(&[]).unwrap().mode().unwrap_err();
        assert!(err.contains("BACKEND_URL"), "{err}");
        let err = parse(&["--backend-url", "grafolean/api"])
            .unwrap()
            .mode()
            .unwrap_err();
        assert!(err.contains("BACKEND_URL"), "{err}");
        let err = parse(&["--backend-url", "http://h/api"])
            .unwrap()
            .mode()
            .unwrap_err();
        assert!(err.contains("BOT_TOKEN"), "{err}");
        assert!(parse(&["--jobs-refresh-interval", "0"]).is_err());
        assert!(parse(&["--job-concurrency", "x"]).is_err());
    }

    #[test]
    fn standalone_modes() {
        assert_eq!(
            parse(&["--standalone"]).unwrap().mode().unwrap(),
            Mode::Standalone { jobs_file: None }
        );
        assert_eq!(
            parse(&["--jobs", "j.toml"]).unwrap().mode().unwrap(),
            Mode::Standalone {
                jobs_file: Some("j.toml".into())
            }
        );
    }
}
