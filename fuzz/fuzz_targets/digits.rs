//! Any bytes given to the digits loader (gzip CSV) give tensors or an Err.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wgrad::data::read_digits(data, "fuzz");
});
