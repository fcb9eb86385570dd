//! `netflowbot`: the Grafolean NetFlow bot. Settings: `netflowbot --help`.

use clap::Parser;
use netflowbot::{NetflowBot, NetflowSettings};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    version,
    about = "Grafolean NetFlow bot: receives NetFlow v5/v9 and IPFIX, reports traffic per entity, interface and top talkers"
)]
struct Cli {
    #[command(flatten)]
    settings: collector::Settings,
    #[command(flatten)]
    netflow: NetflowSettings,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    collector::run(cli.settings, |context| {
        NetflowBot::new(cli.netflow, context)
    })
}
