//! A cache of large freed CPU buffers. A fresh multi-megabyte allocation costs a page fault
//! per 4 KiB on first write (the kernel zeroes each page), which makes an allocating
//! elementwise op several times slower than one writing into existing memory; reusing the
//! buffers of dropped tensors removes that cost. Small buffers go to the allocator as usual.
//!
//! A buffer handed out holds stale values: every caller overwrites all of its elements.

use std::sync::Mutex;

/// Buffers smaller than this many bytes are not cached.
const MIN_BYTES: usize = 256 << 10;
/// At most this many bytes are kept cached in total.
const MAX_CACHED_BYTES: usize = 512 << 20;

pub struct Cache<T> {
    buffers: Vec<Vec<T>>,
    bytes: usize,
}

pub trait Pooled: Copy + Default + Send + 'static {
    fn cache() -> &'static Mutex<Cache<Self>>;
}

/// The element types with a cache: `clear` and `cached_bytes` visit the same list, so a new
/// host dtype is added once, here (its `HostBuffer::recycle` arm needs it to compile).
macro_rules! pooled {
    ($($t:ty),*) => {
        $(impl Pooled for $t {
            fn cache() -> &'static Mutex<Cache<Self>> {
                static CACHE: Mutex<Cache<$t>> = Mutex::new(Cache { buffers: Vec::new(), bytes: 0 });
                &CACHE
            }
        })*

        /// Free every cached buffer.
        pub fn clear() {
            $(clear_cache::<$t>();)*
        }

        /// Bytes held by cached buffers.
        pub fn cached_bytes() -> usize {
            0 $(+ bytes_of::<$t>())*
        }
    };
}
pooled!(f32, i64, bool, half::f16, half::bf16, f64);

fn clear_cache<T: Pooled>() {
    let mut cache = T::cache().lock().unwrap_or_else(|e| e.into_inner());
    cache.buffers.clear();
    cache.bytes = 0;
}

fn bytes_of<T: Pooled>() -> usize {
    T::cache().lock().unwrap_or_else(|e| e.into_inner()).bytes
}

fn bytes<T>(n: usize) -> usize {
    n * std::mem::size_of::<T>()
}

/// A buffer of `n` elements with unspecified (initialised) contents.
pub fn take<T: Pooled>(n: usize) -> Vec<T> {
    if bytes::<T>(n) >= MIN_BYTES {
        let mut cache = T::cache().lock().unwrap_or_else(|e| e.into_inner());
        // Best fit among buffers at least as long and at most twice as long.
        let best = cache
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= n && b.len() <= 2 * n)
            .min_by_key(|(_, b)| b.len())
            .map(|(i, _)| i);
        if let Some(i) = best {
            let mut v = cache.buffers.swap_remove(i);
            cache.bytes -= bytes::<T>(v.len());
            drop(cache);
            v.truncate(n);
            return v;
        }
    }
    vec![T::default(); n]
}

/// Give a buffer back for reuse.
pub fn give<T: Pooled>(v: Vec<T>) {
    let b = bytes::<T>(v.len());
    if b < MIN_BYTES {
        return;
    }
    let mut cache = T::cache().lock().unwrap_or_else(|e| e.into_inner());
    while cache.bytes + b > MAX_CACHED_BYTES && !cache.buffers.is_empty() {
        let old = cache.buffers.remove(0);
        cache.bytes -= bytes::<T>(old.len());
    }
    if b <= MAX_CACHED_BYTES {
        cache.bytes += b;
        cache.buffers.push(v);
    }
}
