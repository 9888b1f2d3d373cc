//! The numbers of an optimizer step that change from step to step (the learning rate, the
//! step count), kept on the parameters' device once a step has been captured
//! (`crate::capture`): a replay reruns none of the optimizer's Rust code, so those numbers
//! must be read by the kernels from tensors that `set_lr` and the replayed step itself move.
//! Outside captures, optimizers use Rust numbers, which cost no dispatch.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// `[]`-shaped f32 tensors on the parameters' device.
pub(crate) struct StepScalars {
    /// The learning rate.
    pub(crate) lr: Tensor,
    /// The number of steps taken, this one included once `advance` ran.
    pub(crate) step: Tensor,
}

impl StepScalars {
    /// The device scalars of an optimizer about to step: made (outside the recording, so
    /// that a replay does not reset them) at its first step inside a capture, kept after.
    /// `None` while it has never stepped in a capture. Capturing an optimizer whose
    /// per-parameter state does not exist yet is an `Err`: its first step creates the
    /// state, where every later step updates it in place, and a replay must repeat the
    /// latter.
    pub(crate) fn for_step<'a>(
        slot: &'a mut Option<StepScalars>,
        op: &'static str,
        params: &[Tensor],
        state_ready: bool,
        lr: f64,
        step: u64,
    ) -> Result<Option<&'a StepScalars>> {
        if !crate::capture::capturing() {
            return Ok(slot.as_ref());
        }
        if !state_ready {
            return Err(Error::invalid(
                op,
                "a captured optimizer step needs the optimizer's state to exist: run one \
                 step before capturing (its first step creates the state a replay updates)",
            ));
        }
        if slot.is_none() {
            let Some(device) = params.first().map(|p| p.device().clone()) else {
                return Ok(None);
            };
            *slot = Some(crate::capture::unrecorded(|| -> Result<StepScalars> {
                Ok(StepScalars {
                    lr: Tensor::full_on([], lr, &device)?,
                    step: Tensor::full_on([], step as f64, &device)?,
                })
            })?);
        }
        Ok(slot.as_ref())
    }

    /// A new learning rate, for the replays that follow. A device failure here is
    /// reported by the next op or replay on the device.
    pub(crate) fn set_lr(&self, lr: f64) {
        let _ = self.lr.fill_(lr);
    }

    /// Count this step on the device.
    pub(crate) fn advance(&self) -> Result<()> {
        self.step.add_(1.0).map(drop)
    }

    /// `1 - beta^step` (Adam's bias correction), on the device.
    pub(crate) fn bias_correction(&self, beta: f64) -> Result<Tensor> {
        self.step
            .mul_scalar(beta.ln())?
            .exp()?
            .neg()?
            .add_scalar(1.0)
    }
}

/// `t * x`: the device scalar `x` when the optimizer has one, else the Rust number.
pub(crate) fn times(t: &Tensor, host: f64, device: Option<&Tensor>) -> Result<Tensor> {
    match device {
        Some(x) => t.mul(x),
        None => t.mul_scalar(host),
    }
}

/// Whether every parameter with a gradient has its slot of state (a per-parameter state
/// the first step creates).
pub(crate) fn ready(params: &[Tensor], slots: &[Option<Tensor>]) -> bool {
    params
        .iter()
        .zip(slots)
        .all(|(p, s)| s.is_some() || p.grad().is_none())
}
