//! `pingbot`: the Grafolean ping bot. `pingbot --help` lists every setting.

use clap::Parser;
use pingbot::{PingArgs, PingBot};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pingbot",
    version,
    about = "Grafolean ping bot: ICMP echo round trips and loss",
    after_help = "Examples:
  pingbot --standalone                                  ping 127.0.0.1, ::1 and localhost, values on stdout
  pingbot --jobs bots/ping/example-jobs.toml            your own targets from a file
  BACKEND_URL=http://grafolean/api BOT_TOKEN_FROM_FILE=/run/secrets/token pingbot"
)]
struct Cli {
    #[command(flatten)]
    settings: collector::Settings,
    #[command(flatten, next_help_heading = "Ping")]
    ping: PingArgs,
}

fn main() -> ExitCode {
    let cli: Cli = collector::cli::parse();
    collector::run(cli.settings, |context| {
        PingBot::new(cli.ping.config()?, context)
    })
}
