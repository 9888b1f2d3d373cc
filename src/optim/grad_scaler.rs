//! Dynamic loss scaling for F16 training (PyTorch's `torch.amp.GradScaler`): small gradients
//! underflow in f16, so the loss is multiplied by a large scale before backward and the
//! gradients divided by it before the optimizer step. A step whose gradients hold an inf or
//! NaN (the scale was too large) is skipped and the scale shrinks; after a run of good steps
//! it grows again.

use super::Optimizer;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Loss scaling with PyTorch's defaults: scale 2^16, halved on an overflowing step, doubled
/// after 2000 steps in a row without one.
///
/// ```
/// use wgrad::optim::{GradScaler, Optimizer, Sgd};
/// use wgrad::Tensor;
/// let w = Tensor::ones([3])?.requires_grad_(true)?;
/// let mut opt = Sgd::new(vec![w.clone()], 0.1);
/// let mut scaler = GradScaler::new();
/// let loss = w.square()?.sum()?;
/// scaler.scale(&loss)?.backward()?;
/// assert!(scaler.step(&mut opt)?); // unscaled gradients, then the optimizer's step
/// scaler.update();
/// assert_eq!(w.to_vec::<f32>()?, vec![0.8; 3]);
/// # Ok::<(), wgrad::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct GradScaler {
    scale: f64,
    growth_factor: f64,
    backoff_factor: f64,
    growth_interval: usize,
    /// Good steps since the scale last changed.
    growth_tracker: usize,
    /// Whether this step's gradients were unscaled, and whether they held an inf or NaN.
    unscaled: Option<bool>,
}

impl Default for GradScaler {
    fn default() -> Self {
        GradScaler::new()
    }
}

impl GradScaler {
    /// PyTorch's defaults: `init_scale` 65536, growth 2, backoff 0.5, interval 2000.
    pub fn new() -> GradScaler {
        GradScaler {
            scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            growth_tracker: 0,
            unscaled: None,
        }
    }

    /// Start from `scale` instead (finite and positive).
    pub fn init_scale(mut self, scale: f64) -> Result<Self> {
        check("init_scale", scale, scale.is_finite() && scale > 0.0)?;
        self.scale = scale;
        Ok(self)
    }

    /// Multiply the scale by `factor` (> 1) after `interval` (> 0) good steps in a row.
    pub fn growth(mut self, factor: f64, interval: usize) -> Result<Self> {
        check("growth_factor", factor, factor.is_finite() && factor > 1.0)?;
        check("growth_interval", interval as f64, interval > 0)?;
        self.growth_factor = factor;
        self.growth_interval = interval;
        Ok(self)
    }

    /// Multiply the scale by `factor` (in (0, 1)) after an overflowing step.
    pub fn backoff(mut self, factor: f64) -> Result<Self> {
        check("backoff_factor", factor, factor > 0.0 && factor < 1.0)?;
        self.backoff_factor = factor;
        Ok(self)
    }

    /// The current scale.
    pub fn get_scale(&self) -> f64 {
        self.scale
    }

    /// `loss * scale`, to call `backward` on.
    pub fn scale(&self, loss: &Tensor) -> Result<Tensor> {
        loss.mul_scalar(self.scale)
    }

    /// Divide the gradients of `opt`'s parameters by the scale, in place, and note whether any
    /// is inf or NaN (one readback for all of them). Call it before clipping gradients; at most
    /// once per step ([`GradScaler::step`] calls it when you did not).
    pub fn unscale_(&mut self, opt: &dyn Optimizer) -> Result<()> {
        if self.unscaled.is_some() {
            return Err(Error::invalid(
                "GradScaler::unscale_",
                "unscale_ was already called since the last update()",
            ));
        }
        let _g = crate::no_grad();
        let inv = 1.0 / self.scale;
        let mut bad: Option<Tensor> = None;
        for p in opt.params() {
            let Some(g) = p.grad() else { continue };
            let g = g.mul_scalar(inv)?;
            // The count of non-finite values (`x * 0` is NaN exactly for inf and NaN), summed
            // on the gradients' device.
            let count = g
                .mul_scalar(0.0)?
                .isnan()?
                .to_dtype(crate::DType::F32)?
                .sum()?;
            let count = match &bad {
                Some(b) => b.add(&count.to_device(b.device())?)?,
                None => count,
            };
            bad = Some(count);
            p.set_grad(Some(g))?;
        }
        let found = match bad {
            Some(b) => b.item::<f32>()? != 0.0,
            None => false,
        };
        self.unscaled = Some(found);
        Ok(())
    }

    /// Unscale the gradients (unless [`GradScaler::unscale_`] did), then run `opt.step()`
    /// unless one of them is inf or NaN. Returns whether the optimizer stepped.
    pub fn step(&mut self, opt: &mut dyn Optimizer) -> Result<bool> {
        if self.unscaled.is_none() {
            self.unscale_(&*opt)?;
        }
        if self.unscaled == Some(true) {
            return Ok(false);
        }
        opt.step()?;
        Ok(true)
    }

    /// Adjust the scale after a step, as PyTorch: halve it (the backoff) after an overflow,
    /// grow it after `growth_interval` good steps in a row.
    pub fn update(&mut self) {
        match self.unscaled.take() {
            Some(true) => {
                self.scale *= self.backoff_factor;
                self.growth_tracker = 0;
            }
            Some(false) => {
                self.growth_tracker += 1;
                if self.growth_tracker == self.growth_interval {
                    self.scale *= self.growth_factor;
                    self.growth_tracker = 0;
                }
            }
            // No step was taken since the last update: nothing to learn from.
            None => {}
        }
    }
}

fn check(what: &str, value: f64, ok: bool) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "GradScaler",
            format!("{what} {value} is out of range"),
        ))
    }
}
