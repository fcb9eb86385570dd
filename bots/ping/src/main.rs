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

/// jemalloc rather than glibc's malloc: at 10,000 pings a second it took 10-14 % less of the
/// bot's CPU (glibc served every run's task, 128-byte aligned, through its slow `memalign` path
/// and merged free chunks at every large free), for 1-2 MiB more resident memory. See
/// docs/decisions.md, "The ping bot's allocator".
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its start (`_RJEM_MALLOC_CONF` in the environment overrides them):
/// one arena, as the framework sets for glibc; freed pages returned within a second; and thread
/// caches of up to 2,048 chunks of a size (16 times a slab's, from 200). A second's values are
/// freed in bursts of thousands when their POST is done, and the default cache spilled every 100
/// frees: half the chunks of a size moved to the arena and back each time (4 % fewer
/// instructions a ping, and less resident memory, measured).
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] =
    b"narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0,tcache_nslots_small_max:2048,lg_tcache_nslots_mul:4\0";

fn main() -> ExitCode {
    let cli: Cli = collector::cli::parse();
    collector::run(cli.settings, |context| {
        PingBot::new(cli.ping.config()?, context)
    })
}
