//! Captured steps: run a training step once on a GPU while recording its commands, then
//! replay them without running the step's Rust code (PyTorch's CUDA graphs).
//!
//! ```
//! use wgrad::nn::{self, Forward, Module};
//! use wgrad::optim::{Optimizer, Sgd};
//! use wgrad::{Device, Tensor};
//! # fn main() -> wgrad::Result<()> {
//! # let Ok(dev) = Device::gpu() else { return Ok(()) };
//! let model = nn::Linear::new(4, 2, &dev)?;
//! let mut opt = Sgd::new(model.parameters(), 0.1);
//! // The step's inputs live in tensors of their own; each batch is copied into them.
//! let (x, y) = (Tensor::zeros_on([8, 4], &dev)?, Tensor::zeros_on([8, 2], &dev)?);
//! let (step, loss) = wgrad::capture(&dev, || {
//!     opt.zero_grad();
//!     let loss = nn::mse_loss(&model.forward(&x)?, &y)?;
//!     loss.backward()?;
//!     opt.step()?;
//!     Ok(loss)
//! })?;
//! for _ in 0..3 {
//!     step.replay_with(&[(&x, &Tensor::randn([8, 4])?), (&y, &Tensor::randn([8, 2])?)])?;
//!     println!("loss {}", loss.item::<f32>()?); // the latest replay's loss
//! }
//! # Ok(())
//! # }
//! ```
//!
//! What a replay repeats, and what it cannot:
//!
//! - Every dispatch, copy and upload the closure made on the device, in order, with the
//!   parameters it had then, into the same buffers. No pipeline, bind group or buffer is
//!   created. The tensors the closure returned or kept (the loss, gradients, optimizer state,
//!   the parameters) hold the latest replay's values.
//! - Numbers that change from step to step must live on the device: the optimizers keep
//!   their learning rate (and Adam's and Adagrad's step count) in tensors while a step is
//!   captured, so `set_lr` and the bias corrections reach the replays. A Rust number that
//!   the closure computed from something else is frozen at its captured value.
//! - Refused while capturing, with an `Err`: reading data back (`item`, `to_vec`, printing,
//!   ops that run on the host), random numbers (they would repeat), and capturing on the CPU.
//! - A replay's out-of-range index (a label past the classes, say) makes the next readback
//!   fail, whichever tensor it reads: no tensor records which replay it came from.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::cell::Cell;

thread_local! {
    /// Whether this thread is running a closure under [`capture`].
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    /// Whether recording is paused on this thread (see [`unrecorded`]).
    static PAUSED: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` without recording its commands: one-time set-up inside a captured step (an
/// optimizer's step counter on the device) that a replay must not repeat.
pub(crate) fn unrecorded<T>(f: impl FnOnce() -> T) -> T {
    let before = PAUSED.with(|p| p.replace(true));
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            PAUSED.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(before);
    f()
}

/// Whether recording is paused on the calling thread.
pub(crate) fn paused() -> bool {
    PAUSED.with(|p| p.get())
}

/// Whether the calling thread is capturing a step: optimizers then keep the numbers that
/// change between steps on the device.
pub(crate) fn capturing() -> bool {
    CAPTURING.with(|c| c.get())
}

/// `Err` if the calling thread is capturing: `op` draws random numbers, which a replay
/// would repeat.
pub(crate) fn refuse_random(op: &'static str) -> Result<()> {
    if capturing() {
        return Err(Error::invalid(
            op,
            "random numbers drawn in a captured step would repeat at every replay; draw \
             them outside the capture and copy them into a tensor the step reads",
        ));
    }
    Ok(())
}

/// A step recorded by [`capture`].
pub struct CapturedStep {
    inner: crate::gpu::capture::Replayable,
}

impl CapturedStep {
    /// Run the recorded commands again (submitted; like any GPU work, a readback waits for
    /// them).
    pub fn replay(&self) -> Result<()> {
        // A pending value made before the replay reads what the replay overwrites.
        crate::storage::lazy::settle_all();
        self.inner.replay()
    }

    /// Copy each source into its target (a tensor the step reads, such as its batch), then
    /// replay. A source of another shape or dtype than its target is an `Err`, before
    /// anything runs.
    pub fn replay_with(&self, inputs: &[(&Tensor, &Tensor)]) -> Result<()> {
        const OP: &str = "CapturedStep::replay_with";
        for (target, source) in inputs {
            if target.shape() != source.shape() {
                return Err(Error::shapes(
                    OP,
                    target.shape(),
                    source.shape(),
                    "the step was captured with inputs of the first shape (capture again for another)",
                ));
            }
            if target.dtype() != source.dtype() {
                return Err(Error::DTypeMismatch {
                    op: OP,
                    lhs: target.dtype(),
                    rhs: source.dtype(),
                    lhs_shape: target.shape().to_vec(),
                    rhs_shape: source.shape().to_vec(),
                    detail: "the step was captured with an input of the first dtype".into(),
                });
            }
        }
        for (target, source) in inputs {
            target.copy_(&source.to_device(target.device())?)?;
        }
        self.replay()
    }

    /// Dispatches one replay makes.
    pub fn dispatches(&self) -> usize {
        self.inner.dispatches()
    }
}

/// Run `step` once on `device`, recording its GPU commands, and return them as a
/// [`CapturedStep`] with what `step` returned. See the module docs for what a replay can
/// repeat. `Err` on the CPU (there is nothing to record: run the step itself), when
/// `step` fails, or when it does something a replay could not repeat.
pub fn capture<T>(device: &Device, step: impl FnOnce() -> Result<T>) -> Result<(CapturedStep, T)> {
    let Device::Gpu(gpu) = device else {
        return Err(Error::invalid(
            "capture",
            "capture records GPU commands; on the CPU, run the step itself",
        ));
    };
    let ctx = &gpu.0;
    if capturing() {
        return Err(Error::invalid("capture", "captures do not nest"));
    }
    // Values pending before the capture are computed outside it; those made inside, before
    // it ends, so that a replay repeats them.
    crate::storage::lazy::settle_all();
    ctx.begin_capture()?;
    // Stop recording even if `step` panics.
    struct Stop<'a>(&'a std::sync::Arc<crate::gpu::GpuContext>);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            CAPTURING.with(|c| c.set(false));
            self.0.end_capture();
        }
    }
    let stop = Stop(ctx);
    CAPTURING.with(|c| c.set(true));
    let out = step();
    crate::storage::lazy::settle_all();
    let recording = ctx.end_capture();
    drop(stop);
    let out = out?;
    let recording = recording.ok_or_else(|| Error::invalid("capture", "the recording was lost"))?;
    let inner = crate::gpu::capture::Replayable::new(ctx, recording)?;
    Ok((CapturedStep { inner }, out))
}
