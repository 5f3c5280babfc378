//! The binary's global allocator: the system allocator, plus a hint to
//! Linux to back large blocks (4 MiB and more) with transparent huge pages.
//!
//! The hub compares a candidate pair by reading a dozen arrays per record
//! (the CLK, the field filters, each field's popcount and presence, the
//! date keys). With 4 KiB pages each read of a record not seen lately costs
//! a page walk as well as a cache miss; with 2 MiB pages the translations
//! of a million-record job fit the TLB (docs/decisions.md §25). The hint
//! (`madvise(MADV_HUGEPAGE)`) changes no result: where the kernel's
//! transparent huge pages are off, or on other systems, it does nothing.
//! Never used for anything but placing memory.

use std::alloc::{GlobalAlloc, Layout, System};

/// The system allocator with huge-page hints for large blocks.
pub struct HugePages;

/// Blocks from this size on get the hint.
const LARGE: usize = 4 << 20;

// SAFETY: every call is forwarded unchanged to `System`; the only addition
// is an `madvise` hint on whole huge pages inside the returned block.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        advise(p, new_size);
        p
    }
}

/// Ask for huge pages on the whole 2 MiB pages inside `len` bytes at `p`.
#[inline]
fn advise(p: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    if !p.is_null() && len >= LARGE {
        const HUGE: usize = 2 << 20;
        let start = (p as usize).next_multiple_of(HUGE);
        let end = (p as usize + len) & !(HUGE - 1);
        if end > start {
            // SAFETY: the range lies inside a block just allocated; the
            // advice changes only how the kernel backs it, never its contents.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (p, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_and_small_blocks_keep_their_contents() {
        let a = HugePages;
        for size in [64usize, LARGE - 1, LARGE + 12345, 3 * LARGE] {
            let layout = Layout::from_size_align(size, 64).unwrap();
            // SAFETY: a non-zero layout; the block is freed below with it.
            unsafe {
                let p = a.alloc_zeroed(layout);
                assert!(!p.is_null());
                assert!((0..size).step_by(4093).all(|i| *p.add(i) == 0));
                p.write_bytes(7, size);
                let q = a.realloc(p, layout, size * 2);
                assert!((0..size).step_by(4093).all(|i| *q.add(i) == 7));
                a.dealloc(q, Layout::from_size_align(size * 2, 64).unwrap());
            }
        }
    }
}
