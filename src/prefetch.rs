//! Cache-line prefetch hints: start loading a line the program is about to
//! read, so that the load overlaps other work. A hint changes no result:
//! it reads nothing the program sees and cannot fault.

/// Asks the CPU to start loading the cache line that holds `p` (any
/// address, valid or not). On targets without a stable prefetch
/// instruction it does nothing.
#[inline(always)]
pub fn line<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` only warms the cache: it never faults, whatever
    // the address, and reads nothing into the program's state. SSE is part
    // of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`line`] for every cache line of `*p` (a value of `size_of::<T>()`
/// bytes at `p`), up to `max_lines` of them.
#[inline(always)]
pub fn lines<T>(p: *const T, max_lines: usize) {
    let start = p as usize & !63;
    let end = p as usize + std::mem::size_of::<T>();
    let mut a = start;
    let mut n = 0;
    while a < end && n < max_lines {
        line(a as *const u8);
        a += 64;
        n += 1;
    }
}
