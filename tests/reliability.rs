//! Reliability under long graphs and threads: dropping a deep graph does not overflow the
//! stack, and in-place ops on tensors that two threads share never deadlock.

mod common;

use std::sync::mpsc;
use std::time::Duration;
use wgrad::{Result, Tensor};

/// Run `f` on a thread with a 2 MiB stack (a test thread's usual size) and wait at most
/// `limit` for it: a deadlock fails the test instead of hanging it.
fn on_small_thread(limit: Duration, f: impl FnOnce() -> Result<()> + Send + 'static) {
    let (done, wait) = mpsc::channel();
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let r = f();
            let _ = done.send(r.map_err(|e| e.to_string()));
        })
        .unwrap();
    match wait.recv_timeout(limit) {
        Ok(r) => r.unwrap(),
        Err(_) => panic!("no result within {limit:?}: deadlock or overflow"),
    }
}

#[test]
fn a_million_op_graph_drops_on_a_small_stack() {
    on_small_thread(Duration::from_secs(300), || {
        let x = Tensor::new([1.0f32])?.requires_grad_(true)?;
        let mut y = x.clone();
        for _ in 0..1_000_000 {
            y = y.mul_scalar(1.0)?;
        }
        assert!(y.requires_grad());
        drop(y);
        Ok(())
    });
}

#[test]
fn in_place_ops_across_threads_never_deadlock() {
    for dev in common::devices() {
        let a = Tensor::ones([64]).unwrap().to_device(&dev).unwrap();
        let b = Tensor::ones([64]).unwrap().to_device(&dev).unwrap();
        let (a2, b2) = (a.clone(), b.clone());
        let (x, x2) = (a.clone(), a.clone());
        on_small_thread(Duration::from_secs(120), move || {
            let t1 = std::thread::spawn(move || -> Result<()> {
                for _ in 0..2000 {
                    a.mul_(&b)?;
                    a.copy_(&b)?;
                }
                Ok(())
            });
            let t2 = std::thread::spawn(move || -> Result<()> {
                for _ in 0..2000 {
                    b2.mul_(&a2)?;
                    b2.copy_(&a2)?;
                }
                Ok(())
            });
            // One tensor read twice by an op while another thread writes it.
            let t3 = std::thread::spawn(move || -> Result<()> {
                for _ in 0..2000 {
                    drop(x.mul(&x)?);
                }
                Ok(())
            });
            for _ in 0..2000 {
                x2.mul_(1.0)?;
            }
            for t in [t1, t2, t3] {
                t.join().unwrap()?;
            }
            Ok(())
        });
    }
}
