//! Any bytes given to the safetensors loader give tensors or an Err, never a panic or an
//! abort; a loaded file's tensors can be read back.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tensors) = wgrad::io::load_bytes(data, "fuzz") {
        for (_, t) in tensors {
            let _ = t.sum().and_then(|s| s.item());
        }
    }
});
