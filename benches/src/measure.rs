//! What every benchmark measures the same way: CPU time and peak memory of a process (this one,
//! its children, or another by pid), pinning to a core, free loopback ports, a scratch directory
//! and a counter read from a Prometheus page. One copy, so that figures of different benchmarks
//! compare.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// CPU time split the way the reports print it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTime {
    /// User time only.
    pub user: Duration,
    /// User plus system time.
    pub total: Duration,
}

impl std::ops::Sub for CpuTime {
    type Output = CpuTime;
    fn sub(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            total: self.total.saturating_sub(earlier.total),
        }
    }
}

/// Whose resource usage `getrusage` reports.
#[derive(Debug, Clone, Copy)]
pub enum Who {
    /// This process.
    Myself,
    /// The children this process has waited for.
    Children,
}

/// CPU time and peak RSS (KiB) of this process or of its waited-for children, from getrusage.
pub fn own_usage(who: Who) -> (CpuTime, u64) {
    let who = match who {
        Who::Myself => libc::RUSAGE_SELF,
        Who::Children => libc::RUSAGE_CHILDREN,
    };
    // SAFETY: rusage is plain data; getrusage only writes into it and cannot fail for these
    // `who` values.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    usage_figures(&usage)
}

/// Waits for `child` to end; returns its raw wait status and its CPU time, its own alone:
/// `getrusage(RUSAGE_CHILDREN)` sums every child waited for so far. Read the child's pipes
/// before. Not its peak RSS: the kernel's figure keeps the high-water mark of the memory the
/// child shared with this process before its `exec` (see [`watch_peak_rss`]).
pub fn wait_with_usage(child: &Child) -> std::io::Result<(i32, CpuTime)> {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills; the pid is our own unwaited child's.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    if waited < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (cpu, _inherited_peak) = usage_figures(&usage);
    Ok((status, cpu))
}

/// Follows a running child's peak RSS (`VmHWM`, KiB) once it runs `program` (its name as
/// `/proc/<pid>/comm` shows it) until it ends; the thread returns the last figure read, within
/// 2 ms of the end. `wait4`'s peak is no use for a spawned peer: it counts this process's
/// pages, shared until the `exec` (a later round of a benchmark grown to 100 MiB made fping's
/// few MiB read as 100), and so does `VmHWM` before the `exec`.
pub fn watch_peak_rss(pid: u32, program: &'static str) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        loop {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            // Gone, or ended and not yet reaped (no memory left, so no `VmHWM` line).
            let now = process_memory_kib(pid, "VmHWM:");
            if comm.is_empty() || (now == 0 && peak > 0) {
                return peak;
            }
            if comm.trim_end() == program {
                peak = peak.max(now);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

/// CPU time and peak RSS (KiB) of a `rusage`.
fn usage_figures(usage: &libc::rusage) -> (CpuTime, u64) {
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let cpu = CpuTime {
        user: time(usage.ru_utime),
        total: time(usage.ru_utime) + time(usage.ru_stime),
    };
    (cpu, usage.ru_maxrss.max(0) as u64)
}

/// CPU time of another running process so far (zero if it is gone). The total is the
/// scheduler's own count, in nanoseconds, summed over the process's threads
/// (`/proc/<pid>/task/*/schedstat`); `/proc/<pid>/stat` counts in clock ticks of 10 ms, coarser
/// than a bot's whole CPU time over a short run. A thread that ended is no longer counted there
/// (the bots' threads live as long as they do). The user part is from `stat`, in ticks.
pub fn process_cpu(pid: u32) -> CpuTime {
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|thread| runtime_of_schedstat(&thread.path().join("schedstat")));
    exact_total(
        cpu_of_stat(&format!("/proc/{pid}/stat")),
        threads.reduce(|a, b| a + b),
    )
}

/// CPU time of one thread of this process (`gettid`), the total from its `schedstat` as in
/// [`process_cpu`].
pub fn thread_cpu(tid: u32) -> CpuTime {
    exact_total(
        cpu_of_stat(&format!("/proc/self/task/{tid}/stat")),
        runtime_of_schedstat(Path::new(&format!("/proc/self/task/{tid}/schedstat"))),
    )
}

/// `ticks` with its total replaced by the scheduler's exact one, when there is one.
fn exact_total(ticks: CpuTime, exact: Option<Duration>) -> CpuTime {
    exact.map_or(ticks, |total| CpuTime {
        user: ticks.user,
        total,
    })
}

/// The first field of a thread's `schedstat`: nanoseconds it ran on a CPU.
fn runtime_of_schedstat(path: &Path) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    let nanos = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// utime and stime of a `stat` file of procfs.
fn cpu_of_stat(path: &str) -> CpuTime {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // utime and stime are fields 14 and 15, counted after the parenthesised command name.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let seconds = |t: u64| Duration::from_secs_f64(t as f64 / per_second);
    CpuTime {
        user: seconds(ticks(11)),
        total: seconds(ticks(11) + ticks(12)),
    }
}

/// A memory figure of a process in KiB from `/proc/<pid>/status`: `"VmHWM:"` is the peak RSS,
/// `"VmRSS:"` the current one. Zero if the process is gone.
pub fn process_memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// Pins the calling thread (and what it later spawns) to one CPU.
pub fn pin_to(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_SET and sched_setaffinity get valid pointers.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Starts `command` pinned to `cpu` at nice -10, so that both sides of a comparison get the same
/// core and other work on a shared machine disturbs them less.
pub fn spawn_pinned(command: &mut Command, cpu: usize) -> std::io::Result<Child> {
    // SAFETY: only async-signal-safe calls (sched_setaffinity, setpriority) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            libc::setpriority(libc::PRIO_PROCESS, 0, -10);
            Ok(())
        });
    }
    command.spawn()
}

/// Raises the soft limit of open files to the hard limit (thousands of sockets or targets).
pub fn raise_fd_limit() {
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> std::io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A scratch directory under the system's temporary directory, removed on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A fresh, empty directory named after the benchmark and this process.
    pub fn new(name: &str) -> std::io::Result<ScratchDir> {
        let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(ScratchDir(path))
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The whole HTTP/1.0 answer (head and body) to a GET, or `None` if nobody answers in time.
pub fn http_get(address: SocketAddr, path: &str) -> Option<String> {
    http_get_within(address, path, Duration::from_secs(5))
}

/// [`http_get`] for answers that take long (an exporter polling a device): waits up to `wait`
/// between reads.
pub fn http_get_within(address: SocketAddr, path: &str, wait: Duration) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(wait)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// The value of the first sample on a Prometheus text page whose name ends with `name` (0 if
/// there is none).
pub fn prometheus_value(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(' '))
        .find(|(sample, _)| sample.ends_with(name))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_and_memory_from_proc() {
        let pid = std::process::id();
        // stat counts in clock ticks: spin until one is on the books (at most 5 s of wall time).
        let give_up = std::time::Instant::now() + Duration::from_secs(5);
        while process_cpu(pid).user == Duration::ZERO && std::time::Instant::now() < give_up {}
        let cpu = process_cpu(pid);
        assert!(cpu.user > Duration::ZERO);
        // The scheduler's count is exact and never below what the ticks sampled, give or take
        // one tick.
        let ticks = cpu_of_stat(&format!("/proc/{pid}/stat"));
        assert!(
            cpu.total + Duration::from_millis(20) >= ticks.total,
            "{cpu:?} {ticks:?}"
        );
        assert!(
            cpu.total <= ticks.total + Duration::from_millis(200),
            "{cpu:?} {ticks:?}"
        );
        assert!(process_memory_kib(pid, "VmHWM:") > 0);
        assert_eq!(process_memory_kib(u32::MAX, "VmHWM:"), 0);
    }

    #[test]
    fn finds_a_sample_by_name_suffix() {
        let page = "# HELP x_total x\nbot_x_total 12\nbot_y 3.5\n";
        assert_eq!(prometheus_value(page, "x_total"), 12.0);
        assert_eq!(prometheus_value(page, "_y"), 3.5);
        assert_eq!(prometheus_value(page, "missing"), 0.0);
    }
}
