//! `netflowbot`: the Grafolean NetFlow bot. `netflowbot --help` lists every setting.

use clap::Parser;
use netflowbot::{NetflowArgs, NetflowBot};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "netflowbot",
    version,
    about = "Grafolean NetFlow bot: receives NetFlow v5/v9 and IPFIX, reports traffic per entity, interface and top talkers",
    after_help = "Examples:
  netflowbot --standalone                               report flows exported from 127.0.0.1 to UDP 2055
  netflowbot --jobs bots/netflow/example-jobs.toml      your own exporters from a file
  BACKEND_URL=http://grafolean/api BOT_TOKEN_FROM_FILE=/run/secrets/token netflowbot"
)]
struct Cli {
    #[command(flatten)]
    settings: collector::Settings,
    #[command(flatten, next_help_heading = "NetFlow")]
    netflow: NetflowArgs,
}

fn main() -> ExitCode {
    let cli: Cli = collector::cli::parse();
    collector::run(cli.settings, |context| {
        NetflowBot::new(cli.netflow.config()?, context)
    })
}
