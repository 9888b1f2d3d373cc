//! The fuzz corpus (fuzz/corpus/, for `cargo fuzz`; see fuzz/Cargo.toml) replayed through
//! the loaders on every `cargo test`, with every truncation and every single-byte change of
//! each file: each input gives data or an Err, never a panic.

use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no corpus", dir.display());
    files
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

/// Every prefix of `bytes` and every copy with one byte inverted or zeroed: the damage a
/// cut-off download or a flipped bit does (the corpus files are at most a few hundred bytes).
fn damaged(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
    for i in 0..bytes.len() {
        for byte in [!bytes[i], 0] {
            let mut copy = bytes.to_vec();
            copy[i] = byte;
            out.push(copy);
        }
    }
    out
}

fn no_panic(what: &str, f: impl FnOnce() + std::panic::UnwindSafe) {
    assert!(std::panic::catch_unwind(f).is_ok(), "{what} panicked");
}

#[test]
fn safetensors_corpus() {
    let mut loaded = 0;
    for (name, bytes) in inputs("safetensors") {
        no_panic(&name, || {
            if let Ok(tensors) = wgrad::io::load_bytes(&bytes, "corpus") {
                for (_, t) in tensors {
                    let _ = t.sum().and_then(|s| s.item::<wgrad::Scalar>());
                }
            }
        });
        loaded += wgrad::io::load_bytes(&bytes, "corpus").is_ok() as usize;
        for broken in damaged(&bytes) {
            no_panic(&format!("{name} (damaged)"), || {
                if let Ok(tensors) = wgrad::io::load_bytes(&broken, "corpus") {
                    for (_, t) in tensors {
                        let _ = t.sum().and_then(|s| s.item::<wgrad::Scalar>());
                    }
                }
            });
        }
    }
    // The valid files load; the broken ones are errors.
    assert_eq!(
        loaded, 3,
        "valid.safetensors, int_and_bool and huge_empty_shape"
    );
}

#[test]
fn csv_corpus() {
    for (name, bytes) in inputs("csv") {
        for input in std::iter::once(bytes.clone()).chain(damaged(&bytes)) {
            no_panic(&name, || {
                let text = String::from_utf8_lossy(&input);
                if let Ok(t) = wgrad::data::Table::parse_csv(&text, "corpus") {
                    let _ = t.fill_na_mean().get_dummies(true).to_tensor();
                }
            });
        }
    }
}

#[test]
fn digits_corpus() {
    let mut loaded = 0;
    for (name, bytes) in inputs("digits") {
        no_panic(&name, || {
            let _ = wgrad::data::read_digits(&bytes[..], "corpus");
        });
        loaded += wgrad::data::read_digits(&bytes[..], "corpus").is_ok() as usize;
        for broken in damaged(&bytes) {
            no_panic(&format!("{name} (damaged)"), || {
                let _ = wgrad::data::read_digits(&broken[..], "corpus");
            });
        }
    }
    assert_eq!(loaded, 2, "one.gz and two_members.gz load");
}
