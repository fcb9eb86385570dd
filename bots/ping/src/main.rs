//! `pingbot`: the Grafolean ping bot. `pingbot --help` lists every setting.

use clap::Parser;
use pingbot::{PingArgs, PingBot};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pingbot",
    version,
    about = "Grafolean ping bot: ICMP echo round trips and loss"
)]
struct Cli {
    #[command(flatten)]
    settings: collector::Settings,
    #[command(flatten)]
    ping: PingArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    collector::run(cli.settings, |context| PingBot::new(&cli.ping, &context))
}
