//! Peak heap allocation of a brute-force search stays bounded, independent of bank size.
//!
//! A counting global allocator records the peak of live heap bytes. The default test uses the real
//! PatchCore shape (N = 164,000 bank vectors of d = 1536, i.e. a 1.0 GB bank, 4 queries, k = 9) and
//! checks that building adds only the squared norms, that the default kernel's first search adds
//! its one cached copy (the bf16 screen: half the bank) and at most 16 MiB more, and that every
//! later search, and any search of the full fused scan, adds at most 16 MiB over the bank.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use ad_memory_bank::{BruteForce, KnnIndex, KnnKernel, MemoryBank};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only updates counters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as `System.alloc`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as `System.dealloc`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as `System.realloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                    - layout.size();
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MIB: usize = 1 << 20;

fn reset_peak() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

#[test]
fn search_over_patchcore_sized_bank_has_bounded_peak() {
    let (n, d, nq, k) = (164_000usize, 1536usize, 4usize, 9usize);
    // Cheap deterministic fill (an LCG), so the dev-profile test stays fast.
    let mut s = 0x1234_5678u32;
    let data: Vec<f32> = (0..n * d)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 9) as f32 * (1.0 / (1u32 << 23) as f32)
        })
        .collect();
    let bank_bytes = data.len() * 4;
    let queries: Vec<f32> = data[..nq * d].iter().map(|v| v + 0.01).collect();
    let bank = MemoryBank::from_rows(data, d).unwrap();

    let before_build = reset_peak();
    let index = BruteForce::new(bank);
    let build_extra = PEAK.load(Ordering::Relaxed) - before_build;
    // Only the squared norms (n f32) plus rayon bookkeeping.
    assert!(
        build_extra <= n * 4 + MIB,
        "build allocated {build_extra} bytes"
    );

    let before_fused = reset_peak();
    let fused = index.search_on(&queries, nq, k, KnnKernel::Fused).unwrap();
    let fused_extra = PEAK.load(Ordering::Relaxed) - before_fused;

    let before_first = reset_peak();
    let first = index.search(&queries, nq, k).unwrap();
    let first_extra = PEAK.load(Ordering::Relaxed) - before_first;
    // The cached copy (if this CPU runs the bf16 screen) stays allocated.
    let cached = LIVE.load(Ordering::Relaxed) - before_first;

    let before_search = reset_peak();
    let result = index.search(&queries, nq, k).unwrap();
    let search_extra = PEAK.load(Ordering::Relaxed) - before_search;
    println!(
        "bank {} MiB, build +{} KiB, fused search peak +{} KiB, first search peak +{} KiB \
         (cached {} KiB), search peak +{} KiB",
        bank_bytes / MIB,
        build_extra / 1024,
        fused_extra / 1024,
        first_extra / 1024,
        cached / 1024,
        search_extra / 1024
    );
    assert!(
        fused_extra <= 16 * MIB,
        "fused search peak {fused_extra} bytes over a {bank_bytes}-byte bank"
    );
    assert!(
        cached <= bank_bytes / 2 + MIB && first_extra <= cached + 16 * MIB,
        "first search peak {first_extra} bytes, {cached} kept, over a {bank_bytes}-byte bank"
    );
    assert!(
        search_extra <= 16 * MIB,
        "search peak {search_extra} bytes over a {bank_bytes}-byte bank"
    );
    assert_eq!(first, fused, "default kernel = full fused scan");
    assert_eq!(result, fused);
    for q in 0..nq {
        assert_eq!(
            result.row_indices(q)[0] as usize,
            q,
            "query {q} is a perturbed copy of bank row {q}"
        );
    }
}
