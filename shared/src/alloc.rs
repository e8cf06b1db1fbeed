//! The process's allocator: mimalloc, except for large blocks, which are
//! mapped from the OS for each allocation and unmapped when freed.
//!
//! mimalloc suits a service: a request allocates and frees many small objects
//! across worker threads, where glibc's malloc spent about a sixth of a
//! cached `GET /products/{id}` (perf, BENCHMARKS.md). But it gives freed
//! memory back to the OS lazily, on a later call of the thread that freed
//! it, so a thread that goes idle keeps it resident. One argon2 hash fills a
//! 19 MiB block on a blocking thread that then idles, and user-service idled
//! 14 MB above product-service for it (BENCHMARKS.md, run I). A block this
//! large costs a page fault per page to fill anyway; one `mmap` and one
//! `munmap` beside that are noise.

use std::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc;

/// Blocks of at least this many bytes are mapped for themselves.
pub const LARGE: usize = 1 << 20;

/// mimalloc for small blocks, the OS's pages for [`LARGE`] ones.
pub struct Allocator;

/// Whether `layout` is a block mapped for itself: large, and aligned no
/// further than a page (which every mapping is).
fn mapped(layout: &Layout) -> bool {
    cfg!(target_os = "linux") && layout.size() >= LARGE && layout.align() <= 4096
}

#[cfg(target_os = "linux")]
mod os {
    use std::ptr::null_mut;

    /// A fresh, zeroed mapping of `size` bytes, or null.
    pub unsafe fn map(size: usize) -> *mut u8 {
        // SAFETY: an anonymous private mapping touches no existing memory.
        let p = unsafe {
            libc::mmap(
                null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            null_mut()
        } else {
            p.cast()
        }
    }

    /// Unmaps what [`map`] or [`remap`] returned for `size` bytes.
    pub unsafe fn unmap(ptr: *mut u8, size: usize) {
        // SAFETY: the caller passes a mapping of ours and its size.
        unsafe { libc::munmap(ptr.cast(), size) };
    }

    /// Grows or shrinks a mapping, moving it if it must; null on failure
    /// (the old mapping is then untouched).
    pub unsafe fn remap(ptr: *mut u8, old: usize, new: usize) -> *mut u8 {
        // SAFETY: the caller passes a mapping of ours and its size.
        let p = unsafe { libc::mremap(ptr.cast(), old, new, libc::MREMAP_MAYMOVE) };
        if p == libc::MAP_FAILED {
            null_mut()
        } else {
            p.cast()
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod os {
    // `mapped` is false off Linux: these are never called.
    pub unsafe fn map(_: usize) -> *mut u8 {
        unreachable!()
    }
    pub unsafe fn unmap(_: *mut u8, _: usize) {
        unreachable!()
    }
    pub unsafe fn remap(_: *mut u8, _: usize, _: usize) -> *mut u8 {
        unreachable!()
    }
}

// SAFETY: a block is mapped exactly when `mapped` holds for its layout, and
// each call below hands it to the side that made it: `dealloc` and `realloc`
// get the layout the block was allocated with.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if mapped(&layout) {
            unsafe { os::map(layout.size()) }
        } else {
            unsafe { MiMalloc.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if mapped(&layout) {
            // A fresh mapping is zeroed by the kernel.
            unsafe { os::map(layout.size()) }
        } else {
            unsafe { MiMalloc.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if mapped(&layout) {
            unsafe { os::unmap(ptr, layout.size()) }
        } else {
            unsafe { MiMalloc.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller promises `new_size`, rounded up to `align`, fits
        // an isize.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (mapped(&layout), mapped(&new)) {
            (false, false) => unsafe { MiMalloc.realloc(ptr, layout, new_size) },
            (true, true) => unsafe { os::remap(ptr, layout.size(), new_size) },
            // Across the line: a new block on the other side, then a copy.
            _ => unsafe {
                let moved = self.alloc(new);
                if !moved.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                moved
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process's resident memory, from /proc.
    fn rss_kb() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_freed_large_block_leaves_the_resident_set_at_once() {
        const SIZE: usize = 64 << 20;
        // Filled, on a thread that then ends: as a blocking task's hash does.
        // Other tests run beside this one, so it compares with the block's
        // own size, not with the start.
        let during = std::thread::spawn(|| {
            let block = vec![1u8; SIZE];
            let during = rss_kb();
            drop(std::hint::black_box(block));
            during
        })
        .join()
        .unwrap();
        let after = rss_kb();
        assert!(
            after + SIZE / 1024 / 2 < during,
            "{during} -> {after} kB: the block is still resident"
        );
    }

    #[test]
    fn blocks_keep_their_contents_across_the_line_both_ways() {
        let mut v: Vec<u8> = (0..=255).cycle().take(LARGE / 2).collect();
        // Small to large (a move across), large to larger (a remap), back down.
        for size in [LARGE * 2, LARGE * 5, LARGE / 4] {
            v.resize(size, 7);
            if size < LARGE {
                v.shrink_to_fit();
            }
            assert!(
                v.iter()
                    .take(LARGE / 4)
                    .copied()
                    .eq((0..=255).cycle().take(LARGE / 4))
            );
        }
        assert_eq!(v.len(), LARGE / 4);
    }
}
