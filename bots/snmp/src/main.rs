//! snmpbot: the Grafolean SNMP bot. `snmpbot --help` lists every setting.

use clap::Parser;
use snmpbot::bot::BotSettings;
use snmpbot::session::SnmpSettings;
use snmpbot::SnmpBot;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Grafolean SNMP bot: polls SNMP sensors and syncs interface entities")]
struct Cli {
    #[command(flatten)]
    settings: collector::Settings,

    /// Seconds to wait for an SNMP answer before retrying.
    #[arg(long, env = "SNMP_TIMEOUT", default_value_t = 1.0)]
    snmp_timeout: f64,

    /// Retries after an SNMP timeout.
    #[arg(long, env = "SNMP_RETRIES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=16))]
    snmp_retries: u32,

    /// SNMP requests in flight at once, over all agents.
    #[arg(long, env = "SNMP_MAX_IN_FLIGHT", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    snmp_max_in_flight: u64,

    /// GETBULK max-repetitions of walks (SNMPv2c/v3).
    #[arg(long, env = "SNMP_MAX_REPETITIONS", default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=1000))]
    snmp_max_repetitions: u32,

    /// Seconds between two interface syncs of a device (the original bot: 300).
    #[arg(long, env = "SNMP_INTERFACE_INTERVAL", default_value_t = snmpbot::bot::INTERFACE_SYNC_INTERVAL, value_parser = clap::value_parser!(u64).range(1..))]
    snmp_interface_interval: u64,

    /// A walk returning more rows than this fails (protects against broken agents).
    #[arg(long, env = "SNMP_MAX_WALK_ROWS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    snmp_max_walk_rows: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !(cli.snmp_timeout.is_finite() && cli.snmp_timeout > 0.0 && cli.snmp_timeout <= 600.0) {
        eprintln!("error: SNMP_TIMEOUT must be a number of seconds above 0 (at most 600)");
        return ExitCode::from(2);
    }
    let settings = BotSettings {
        snmp: SnmpSettings {
            timeout: Duration::from_secs_f64(cli.snmp_timeout),
            retries: cli.snmp_retries,
            max_in_flight: cli.snmp_max_in_flight as usize,
            max_repetitions: cli.snmp_max_repetitions,
            max_walk_rows: cli.snmp_max_walk_rows as usize,
        },
        interface_interval: cli.snmp_interface_interval,
    };
    collector::run(cli.settings, |context| SnmpBot::new(settings, context))
}
