//! The binary's global allocator: the system allocator, with blocks of
//! 1 KiB and more started on a cache line, plus a hint to Linux to back
//! large blocks (4 MiB and more) with transparent huge pages.
//!
//! Alignment: glibc starts its large blocks 16 bytes into a page, so a
//! 128-byte CLK at a multiple of 128 bytes spanned three cache lines (one
//! of them never prefetched) and every 512-bit load of a tile straddled
//! two lines. On a line, a CLK is two lines and a load one (§28).
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

/// Blocks from this size on start on a cache line.
const LINED: usize = 1 << 10;

/// Cache line.
const LINE: usize = 64;

/// The layout `System` is asked for: a block of [`LINED`] bytes or more
/// starts on a cache line, so that a 1024-bit filter at a multiple of its
/// size spans two lines rather than three (glibc's large blocks start 16
/// bytes into a page), and 512-bit loads never straddle two lines.
#[inline]
fn lined(layout: Layout) -> Layout {
    if layout.size() >= LINED && layout.align() < LINE {
        // SAFETY: LINE is a power of two, and a size valid for a smaller
        // alignment rounds up to at most `size + 63`, which cannot overflow
        // isize for a block that was itself a valid layout below isize::MAX
        // minus a page (checked by `from_size_align` in debug builds).
        unsafe { Layout::from_size_align_unchecked(layout.size(), LINE) }
    } else {
        layout
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the only addition
// is an `madvise` hint on whole huge pages inside the returned block.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(lined(layout)) };
        advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(lined(layout)) };
        advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, lined(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let (old, new) = (
            lined(layout),
            // SAFETY: `realloc`'s contract makes `new_size` valid for this
            // alignment.
            lined(unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) }),
        );
        let p = if old.align() == new.align() {
            // SAFETY: as for `alloc`; the block was allocated with `old`.
            unsafe { System.realloc(ptr, old, new_size) }
        } else {
            // Across the line rule: a new block, the contents copied.
            // SAFETY: `new` is a valid non-zero layout; both blocks are
            // live for the copy of the smaller size; `ptr` was allocated
            // with `old`.
            unsafe {
                let p = System.alloc(new);
                if !p.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                    System.dealloc(ptr, old);
                }
                p
            }
        };
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

    /// Blocks of a line or more start on a line whatever their alignment,
    /// and keep their contents when a reallocation crosses that size.
    #[test]
    fn blocks_from_a_kilobyte_start_on_a_line() {
        let a = HugePages;
        for (size, grown) in [
            (LINED - 8, LINED + 8),
            (LINED + 8, LINED - 8),
            (LINED, 3 * LINED),
            (100, 200),
            (LARGE + 8, 16),
        ] {
            let layout = Layout::from_size_align(size, 8).unwrap();
            // SAFETY: non-zero layouts; each block is freed with the
            // layout it has at that time.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                if size >= LINED {
                    assert_eq!(p as usize % LINE, 0, "{size} bytes");
                }
                for i in 0..size {
                    *p.add(i) = (i % 251) as u8;
                }
                let q = a.realloc(p, layout, grown);
                assert!(!q.is_null());
                if grown >= LINED {
                    assert_eq!(q as usize % LINE, 0, "{size} -> {grown} bytes");
                }
                assert!((0..size.min(grown)).all(|i| *q.add(i) == (i % 251) as u8));
                a.dealloc(q, Layout::from_size_align(grown, 8).unwrap());
            }
        }
    }

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
