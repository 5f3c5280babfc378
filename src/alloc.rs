//! The binary's global allocator: the system allocator, with blocks of
//! 1 KiB and more started on a cache line, and large blocks (4 MiB and
//! more) given mappings of their own that Linux is asked to back with
//! transparent huge pages.
//!
//! Alignment: glibc starts its large blocks 16 bytes into a page, so a
//! 128-byte CLK at a multiple of 128 bytes spanned three cache lines (one
//! of them never prefetched) and every 512-bit load of a tile straddled
//! two lines. On a line, a CLK is two lines and a load one (§28).
//!
//! Mappings: glibc serves a freed block's size from its heaps once it has
//! seen a block that large freed (its threshold climbs to 32 MiB), and the
//! space those blocks leave is kept, fragmented, rather than returned. A
//! 1M × 1M link peaked 0.3 GB higher for it (docs/decisions.md §60). On
//! Linux a block of [`MAPPED`] bytes or more is therefore an anonymous
//! mapping of its own: returned to the system when freed, and grown or
//! shrunk by `mremap`, which moves pages instead of copying them (the
//! system allocator copies every block it reallocates at a cache line's
//! alignment).
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

/// Blocks from this size on are mappings of their own (Linux): those that
/// get the hint. From 1 MiB, the faults of fresh mappings made encoding
/// 5-10% slower (docs/decisions.md §60).
const MAPPED: usize = LARGE;

/// The smallest page on any Linux system: a mapping starts on one.
const PAGE: usize = 4096;

/// Whether a block of `layout` is a mapping of its own.
#[inline]
fn mapped(layout: Layout) -> bool {
    cfg!(target_os = "linux") && layout.size() >= MAPPED && layout.align() <= PAGE
}

/// A fresh anonymous mapping of `len` bytes (zeroed), or null.
#[inline]
fn map(len: usize) -> *mut u8 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a new private anonymous mapping; no existing memory is
        // touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p as *mut u8
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = len;
        std::ptr::null_mut()
    }
}

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

// SAFETY: a block is either `System`'s (forwarded unchanged, at most on a
// line) or, when `mapped` says so for its layout, a mapping of its own
// that only these functions create, resize and remove; the layout a block
// is freed or resized with decides which, and `GlobalAlloc`'s contract
// makes it the layout the block was made with. The only other addition is
// an `madvise` hint on a large block (`advise`).
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = if mapped(layout) {
            map(layout.size())
        } else {
            // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
            unsafe { System.alloc(lined(layout)) }
        };
        advise(p, layout.size(), mapped(layout));
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = if mapped(layout) {
            // A fresh anonymous mapping reads as zeros.
            map(layout.size())
        } else {
            // SAFETY: as for `alloc`.
            unsafe { System.alloc_zeroed(lined(layout)) }
        };
        advise(p, layout.size(), mapped(layout));
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if mapped(layout) {
            #[cfg(target_os = "linux")]
            // SAFETY: the block is a mapping of `layout.size()` bytes made
            // by `map` or `mremap` (see the impl's note); nothing uses it
            // after `dealloc`.
            unsafe {
                libc::munmap(ptr as *mut libc::c_void, layout.size());
            }
        } else {
            // SAFETY: as for `alloc`.
            unsafe { System.dealloc(ptr, lined(layout)) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `realloc`'s contract makes `new_size` valid for this
        // alignment.
        let grown = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let p = match (mapped(layout), mapped(grown)) {
            #[cfg(target_os = "linux")]
            (true, true) => {
                // SAFETY: the block is a mapping of `layout.size()` bytes
                // (see the impl's note); on failure it is left as it was.
                let q = unsafe {
                    libc::mremap(
                        ptr as *mut libc::c_void,
                        layout.size(),
                        new_size,
                        libc::MREMAP_MAYMOVE,
                    )
                };
                if q == libc::MAP_FAILED {
                    std::ptr::null_mut()
                } else {
                    q as *mut u8
                }
            }
            (false, false) => {
                let (old, new) = (lined(layout), lined(grown));
                if old.align() == new.align() {
                    // SAFETY: as for `alloc`; the block was allocated with `old`.
                    unsafe { System.realloc(ptr, old, new_size) }
                } else {
                    // Across the line rule: a new block (advised by
                    // `alloc`), the contents copied.
                    // SAFETY: as in `moved`.
                    return unsafe { moved(self, ptr, layout, grown) };
                }
            }
            // Into or out of a mapping of its own: as above.
            // SAFETY: as in `moved`.
            _ => return unsafe { moved(self, ptr, layout, grown) },
        };
        advise(p, new_size, mapped(grown));
        p
    }
}

/// A block moved to a new one of layout `new`: allocated, the contents up
/// to the smaller size copied, the old block freed; null (the old block
/// kept) when the new one cannot be had.
///
/// # Safety
/// `ptr` is a live block of `a` allocated with `old`; `new` is a valid
/// layout of non-zero size.
unsafe fn moved(a: &HugePages, ptr: *mut u8, old: Layout, new: Layout) -> *mut u8 {
    // SAFETY: the contract; both blocks are live for the copy.
    unsafe {
        let p = a.alloc(new);
        if !p.is_null() {
            std::ptr::copy_nonoverlapping(ptr, p, old.size().min(new.size()));
            a.dealloc(ptr, old);
        }
        p
    }
}

/// Ask for huge pages on a block of `len` bytes at `p`: on the whole of a
/// mapping of its own (`whole`), else on the whole 2 MiB pages inside the
/// block. A mapping is advised whole so that it stays one region of the
/// same kind: `mremap` refuses a range that spans regions of different
/// kinds, which advising only its inside would make it.
#[inline]
fn advise(p: *mut u8, len: usize, whole: bool) {
    #[cfg(target_os = "linux")]
    if !p.is_null() && len >= LARGE {
        const HUGE: usize = 2 << 20;
        let (start, end) = if whole {
            (p as usize, p as usize + len)
        } else {
            (
                (p as usize).next_multiple_of(HUGE),
                (p as usize + len) & !(HUGE - 1),
            )
        };
        if end > start {
            // SAFETY: the range lies inside a block just allocated (a
            // mapping starts on a page); the advice changes only how the
            // kernel backs it, never its contents.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (p, len, whole);
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
            (MAPPED - 8, MAPPED + 8),
            (MAPPED + 8, MAPPED - 8),
            (3 * MAPPED + 5, MAPPED + 1),
            (MAPPED, 5 * MAPPED),
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
                assert!(!q.is_null(), "{size} -> {} bytes", size * 2);
                assert!((0..size).step_by(4093).all(|i| *q.add(i) == 7));
                a.dealloc(q, Layout::from_size_align(size * 2, 64).unwrap());
            }
        }
    }

    /// Blocks of 4 MiB and more are mappings of their own (on a page,
    /// where glibc's start 16 bytes into one), smaller ones are not, and a
    /// mapping keeps its contents when it grows or shrinks.
    #[cfg(target_os = "linux")]
    #[test]
    fn large_blocks_are_mappings_of_their_own() {
        let a = HugePages;
        let layout = |size| Layout::from_size_align(size, 8).unwrap();
        // SAFETY: non-zero layouts; each block is freed with the layout it
        // has at that time.
        unsafe {
            let small = a.alloc(layout(MAPPED - 64));
            assert_ne!(small as usize % PAGE, 0, "glibc's block, not a mapping");
            a.dealloc(small, layout(MAPPED - 64));
            let p = a.alloc_zeroed(layout(MAPPED));
            assert_eq!(p as usize % PAGE, 0);
            assert!((0..MAPPED).all(|i| *p.add(i) == 0));
            for i in 0..MAPPED {
                *p.add(i) = (i % 253) as u8;
            }
            let mut q = p;
            for (from, to) in [(MAPPED, 9 * MAPPED + 3), (9 * MAPPED + 3, 2 * MAPPED)] {
                q = a.realloc(q, layout(from), to);
                assert!(!q.is_null());
                assert_eq!(q as usize % PAGE, 0, "{from} -> {to} bytes");
                assert!((0..MAPPED).all(|i| *q.add(i) == (i % 253) as u8));
            }
            a.dealloc(q, layout(2 * MAPPED));
        }
    }
}
