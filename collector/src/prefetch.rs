//! Software prefetch: asking the CPU to bring memory closer before a later step reads it. With
//! 10,000 jobs and more, a job's data is touched once a second and has left the caches by then;
//! each first read of one of its cache lines waits for main memory, and a run reads several.

use std::sync::Arc;

/// The size of a cache line on the CPUs we run on.
const LINE: usize = 64;

/// Asks the CPU to bring the cache line at `at` closer; no effect where there is no such hint.
#[inline(always)]
pub(crate) fn line<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults and reads nothing the program sees.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// The reference counts of the `Arc` whose data is at `data` (they lie just before it).
pub(crate) fn counts_of<T>(data: *const T) -> *const u8 {
    data.cast::<u8>()
        .wrapping_sub(2 * std::mem::size_of::<usize>())
}

/// Prefetches an `Arc`'s allocation from its reference counts on, at most `max_lines` cache
/// lines of it.
#[inline(always)]
pub(crate) fn arc<T>(arc: &Arc<T>, max_lines: usize) {
    let start = counts_of(Arc::as_ptr(arc));
    let bytes = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<T>();
    for offset in (0..bytes.min(max_lines * LINE)).step_by(LINE) {
        line(start.wrapping_add(offset));
    }
    // The last byte's line, which an unaligned start may leave out.
    line(start.wrapping_add(bytes.min(max_lines * LINE) - 1));
}
