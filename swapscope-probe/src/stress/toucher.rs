//! The memory toucher that `stress` runs inside its cgroup (as `swapscope __touch`).

use std::time::{Duration, Instant};

use crate::workload::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Pattern {
    /// Write a non-zero byte into every 4 KiB page, pass after pass; reclaim under the cgroup
    /// limit swaps the area out in order.
    Sequential,
    /// The pattern of the kernel's tools/mm/thp_swap_allocator_test: fill and page out the
    /// region, then repeatedly write a random quarter back in (4 KiB grain, or 64 KiB with
    /// `--aligned-swapin`, the test's `-a`), drop and re-touch a random quarter in 64 KiB chunks,
    /// and page the region out again.
    ThpFragment,
    /// Parent and child share 64 KiB folios that are swapped out (swap count 2); the child zaps
    /// the first half of random chunks (MADV_DONTNEED) while the parent keeps them, both swap
    /// pages back in and page out again; slots are freed only when both have dropped them.
    ForkPartialZap,
}

#[derive(Debug, thiserror::Error)]
pub enum TouchError {
    #[error("mmap of {0} MiB failed: {1}")]
    Mmap(u64, std::io::Error),
    #[error("fork failed: {0}")]
    Fork(std::io::Error),
    #[error("the child exited with status {0}")]
    Child(i32),
}

const PAGE: usize = 4096;
const CHUNK: usize = 64 * 1024;
const ALIGN: usize = 2 << 20;

/// An anonymous mapping aligned to 2 MiB, so 64 KiB..2 MiB folios can be faulted in whole.
struct Region {
    base: *mut u8,
    map_len: usize,
    start: *mut u8,
    len: usize,
}

impl Region {
    fn new(len: usize) -> Result<Self, TouchError> {
        let map_len = len + ALIGN;
        // SAFETY: anonymous private mapping with no address hint; the result is checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(TouchError::Mmap(
                (len >> 20) as u64,
                std::io::Error::last_os_error(),
            ));
        }
        let base = base.cast::<u8>();
        let pad = (ALIGN - (base as usize % ALIGN)) % ALIGN;
        // SAFETY: pad < ALIGN, so start..start+len lies inside the mapping of len + ALIGN bytes.
        let start = unsafe { base.add(pad) };
        Ok(Region {
            base,
            map_len,
            start,
            len,
        })
    }

    fn write(&self, off: usize, v: u8) {
        // SAFETY: callers pass off < len; the page is mapped read-write.
        unsafe { std::ptr::write_volatile(self.start.add(off % self.len), v) }
    }

    fn madvise(&self, off: usize, len: usize, advice: i32) {
        // SAFETY: the range lies inside our mapping; madvise has no memory-safety effect on it
        // beyond what the advice documents (DONTNEED zero-fills, PAGEOUT reclaims).
        unsafe { libc::madvise(self.start.add(off).cast(), len.min(self.len - off), advice) };
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `new`.
        unsafe { libc::munmap(self.base.cast(), self.map_len) };
    }
}

/// Runs `pattern` over `size_mib` until `passes` passes are done or `duration` is over (or `stop`
/// returns true). Returns the passes completed.
pub fn run(
    pattern: Pattern,
    size_mib: u64,
    passes: u32,
    duration: Option<Duration>,
    seed: u64,
    aligned_swapin: bool,
    stop: &dyn Fn() -> bool,
) -> Result<u32, TouchError> {
    let len = (size_mib as usize) << 20;
    let r = Region::new(len)?;
    let end = duration.map(|d| Instant::now() + d);
    let over = || stop() || end.is_some_and(|e| Instant::now() >= e);
    let mut rng = Rng::new(seed);
    let mut done = 0;
    match pattern {
        Pattern::Sequential => {
            while done < passes && !over() {
                let v = (done as u8).wrapping_mul(31).wrapping_add(1) | 1;
                for off in (0..len).step_by(PAGE) {
                    r.write(off, v);
                    // Check the clock every 64 MiB so --duration and signals stop a pass early.
                    if off % (64 << 20) == 0 && off > 0 && over() {
                        return Ok(done);
                    }
                }
                done += 1;
            }
        }
        Pattern::ForkPartialZap => return fork_partial_zap(&r, passes, seed, &over),
        Pattern::ThpFragment => {
            // tools/mm/thp_swap_allocator_test: warm-up fill and page-out, then per iteration a
            // random swap-in of a quarter of the region (writes, 4 KiB or 64 KiB grain), random
            // MADV_DONTNEED + re-touch of a quarter in 64 KiB chunks, and a page-out.
            for off in (0..len).step_by(PAGE) {
                r.write(off, 0x11);
            }
            r.madvise(0, len, libc::MADV_PAGEOUT);
            let grain = if aligned_swapin { CHUNK } else { PAGE };
            while done < passes && !over() {
                for _ in 0..len / 4 / grain {
                    let at = rng.index(len / grain) * grain;
                    for off in (at..at + grain).step_by(PAGE) {
                        r.write(off, 0x11);
                    }
                }
                for _ in 0..len / 4 / CHUNK {
                    let chunk = rng.index(len / CHUNK);
                    r.madvise(chunk * CHUNK, CHUNK, libc::MADV_DONTNEED);
                    for off in (chunk * CHUNK..(chunk + 1) * CHUNK).step_by(PAGE) {
                        r.write(off, 0x11);
                    }
                }
                r.madvise(0, len, libc::MADV_PAGEOUT);
                done += 1;
            }
        }
    }
    Ok(done)
}

/// One round of `ForkPartialZap` on one side: swap some pages in by writing them, zap (child)
/// half of some chunks, page everything out.
fn fork_zap_round(r: &Region, rng: &mut Rng, zap: bool) {
    let len = r.len;
    for _ in 0..len / 8 / PAGE {
        let page = rng.index(len / PAGE);
        r.write(page * PAGE, 0x22);
    }
    if zap {
        for _ in 0..len / 8 / CHUNK {
            let chunk = rng.index(len / CHUNK);
            r.madvise(chunk * CHUNK, CHUNK / 2, libc::MADV_DONTNEED);
        }
    }
    r.madvise(0, len, libc::MADV_PAGEOUT);
}

/// `Pattern::ForkPartialZap`.
fn fork_partial_zap(
    r: &Region,
    passes: u32,
    seed: u64,
    over: &dyn Fn() -> bool,
) -> Result<u32, TouchError> {
    for off in (0..r.len).step_by(PAGE) {
        r.write(off, 0x11);
    }
    // SAFETY: this process is single-threaded here (the toucher runs alone in its process), so
    // the child may keep running ordinary Rust code; it leaves through `_exit` only.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(TouchError::Fork(std::io::Error::last_os_error()));
    }
    let child = pid == 0;
    if child {
        // SAFETY: prctl with PR_SET_PDEATHSIG and a valid signal has no memory effects: the
        // forked half dies with the toucher, however the toucher dies.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    }
    r.madvise(0, r.len, libc::MADV_PAGEOUT);
    let mut rng = Rng::derive(seed, u64::from(child));
    let mut done = 0;
    while done < passes && !over() {
        fork_zap_round(r, &mut rng, child);
        done += 1;
    }
    if child {
        // SAFETY: ends the child without running the parent's destructors or atexit handlers.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if status != 0 {
        return Err(TouchError::Child(status));
    }
    // The parent alone: the child's references are gone, so these frees release slots.
    fork_zap_round(r, &mut rng, false);
    Ok(done)
}
