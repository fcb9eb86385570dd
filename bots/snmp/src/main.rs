//! `snmpbot`: the Grafolean SNMP bot. `snmpbot --help` lists every setting.

use clap::Parser;
use snmpbot::{SnmpArgs, SnmpBot};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "snmpbot",
    version,
    about = "Grafolean SNMP bot: polls SNMP sensors and syncs interface entities",
    after_help = "Examples:
  snmpbot --standalone                                  poll the local snmpd (community public)
  snmpbot --jobs bots/snmp/example-jobs.toml            your own devices from a file
  BACKEND_URL=http://grafolean/api BOT_TOKEN_FROM_FILE=/run/secrets/token snmpbot"
)]
struct Cli {
    #[command(flatten)]
    settings: collector::Settings,
    #[command(flatten, next_help_heading = "SNMP")]
    snmp: SnmpArgs,
}

fn main() -> ExitCode {
    let cli: Cli = collector::cli::parse();
    collector::run(cli.settings, |context| {
        SnmpBot::new(cli.snmp.config()?, context)
    })
}
