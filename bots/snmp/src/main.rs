//! snmpbot: the Grafolean SNMP bot. `snmpbot --help` lists every setting.

use clap::Parser;
use snmpbot::bot::SnmpArgs;
use snmpbot::SnmpBot;
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
    match cli.snmp.settings() {
        Ok(settings) => collector::run(cli.settings, |context| SnmpBot::new(settings, context)),
        Err(problem) => {
            collector::output::say(format_args!("error: {problem}"));
            ExitCode::from(2)
        }
    }
}
