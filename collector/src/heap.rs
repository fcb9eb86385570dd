//! What the framework asks of glibc's allocator so that a bot's resident memory follows what it
//! uses, not what it once used (see "Where pingbot's memory went" in docs/decisions.md).
//!
//! - One malloc arena instead of one per thread and core: with a few runtime threads, memory
//!   freed by one thread was kept in its arena while another thread grew its own. The user's
//!   `MALLOC_ARENA_MAX` (or `GLIBC_TUNABLES`) wins when set.
//! - After each job refresh, whose parsing of every entity is the biggest transient of a bot,
//!   the free pages go back to the kernel (`malloc_trim`). A bot calls [`give_back`] itself
//!   after a transient of its own (the SNMP bot after an account's interface listing).
//!
//! On other C libraries both are no-ops.

/// Sets glibc to one malloc arena, unless the user chose otherwise. Call before the runtime
/// starts its threads (the framework's runtime does).
pub(crate) fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let chosen = std::env::var_os("MALLOC_ARENA_MAX").is_some()
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
        if !chosen {
            // SAFETY: mallopt only sets an allocator parameter; no thread allocates yet.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
        }
    }
}

/// Returns the allocator's free pages to the kernel.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the allocator's own locks; it is safe from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
