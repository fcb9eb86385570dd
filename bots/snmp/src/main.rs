//! snmpbot: the Grafolean SNMP bot. `snmpbot --help` lists every setting.

use clap::Parser;
use snmpbot::bot::SnmpArgs;
use snmpbot::SnmpBot;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Grafolean SNMP bot: polls SNMP sensors and syncs interface entities")]
struct Cli {
    #[command(flatten)]
    settings: collector::Settings,
    #[command(flatten)]
    snmp: SnmpArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.snmp.settings() {
        Ok(settings) => collector::run(cli.settings, |context| SnmpBot::new(settings, context)),
        Err(problem) => {
            collector::output::say(format_args!("error: {problem}"));
            ExitCode::from(2)
        }
    }
}
