//! Drawing from distributions that tensors describe: `multinomial`, `bernoulli`, and the
//! in-place fills `normal_` and `uniform_`. All draw from the default generator (see
//! `manual_seed` and `seeded`) with the same counter-based stream on every device, so a
//! seed gives the same samples on the CPU and a GPU.

use super::Tensor;
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};

impl Tensor {
    /// `num_samples` class indices per row of the weights `[C]` or `[B, C]` (non-negative,
    /// not all zero; they need not sum to 1), with or without replacement
    /// (`torch.multinomial`). The weights are read on the host; the result is I64 on their
    /// device.
    pub fn multinomial(&self, num_samples: usize, replacement: bool) -> Result<Tensor> {
        crate::capture::refuse_random("multinomial")?;
        self.live()?;
        const OP: &str = "multinomial";
        if !self.dtype().is_float() || !(1..=2).contains(&self.ndim()) {
            return Err(Error::bad_shape(
                OP,
                self.shape(),
                "expected float weights [C] or [B, C]",
            ));
        }
        let c = self.shape()[self.ndim() - 1];
        if !replacement && num_samples > c {
            return Err(Error::invalid(
                OP,
                format!("cannot draw {num_samples} samples without replacement from {c} classes"),
            ));
        }
        let rows = self.numel() / c.max(1);
        // The draws and the result are built on the host: room for them first.
        let draws = rows.checked_mul(num_samples).ok_or_else(|| {
            Error::invalid(OP, format!("{num_samples} samples per row are too many"))
        })?;
        crate::storage::host_room(OP, draws.saturating_mul(2), DType::I64)?;
        let weights = self
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?
            .to_vec::<f32>()?;
        let mut out = Vec::with_capacity(rows * num_samples);
        for (r, row) in weights.chunks(c.max(1)).enumerate() {
            if row.iter().any(|w| !w.is_finite() || *w < 0.0) || row.iter().all(|&w| w == 0.0) {
                return Err(Error::invalid(
                    OP,
                    format!("row {r} of the weights must be finite, non-negative and not all zero"),
                ));
            }
            let mut w: Vec<f64> = row.iter().map(|&x| x as f64).collect();
            let u = crate::rng::with_default(|g| g.uniform(num_samples));
            for &ui in &u {
                let total: f64 = w.iter().sum();
                // Inverse CDF: the first class whose running sum passes u * total.
                let target = ui as f64 * total;
                let mut acc = 0.0;
                let mut pick = w.iter().rposition(|&x| x > 0.0).unwrap_or(0);
                for (k, &x) in w.iter().enumerate() {
                    acc += x;
                    if x > 0.0 && acc > target {
                        pick = k;
                        break;
                    }
                }
                out.push(pick as i64);
                if !replacement {
                    w[pick] = 0.0;
                }
            }
        }
        let shape: Vec<usize> = if self.ndim() == 1 {
            vec![num_samples]
        } else {
            vec![rows, num_samples]
        };
        Tensor::from_vec(out, shape)?.to_device(self.device())
    }

    /// 1 with probability `self` (elementwise, in [0, 1]), else 0, in this tensor's dtype
    /// (`torch.bernoulli`).
    pub fn bernoulli(&self) -> Result<Tensor> {
        self.live()?;
        self.require_float("bernoulli")?;
        let u = Tensor::rand_on(self.shape(), self.device())?;
        u.lt(self.detach())?.to_dtype(self.dtype())
    }

    /// Fill with draws from `N(mean, std^2)`, in place (`tensor.normal_`).
    pub fn normal_(&self, mean: f64, std: f64) -> Result<&Tensor> {
        check_normal("normal_", std)?;
        let draws = Tensor::randn_on(
            self.shape(),
            (self.dtype_for_draws("normal_")?, self.device()),
        )?;
        self.copy_(&(draws * std + mean))
    }

    /// Fill with draws from `U(low, high)`, in place (`tensor.uniform_`).
    pub fn uniform_(&self, low: f64, high: f64) -> Result<&Tensor> {
        check_uniform("uniform_", low, high, self.dtype())?;
        let draws = Tensor::rand_on(
            self.shape(),
            (self.dtype_for_draws("uniform_")?, self.device()),
        )?;
        self.copy_(&(draws * (high - low) + low))
    }

    fn dtype_for_draws(&self, op: &'static str) -> Result<DType> {
        self.live()?;
        self.require_float(op)?;
        Ok(self.dtype())
    }
}

/// PyTorch's check on a normal distribution's `std`: not negative, not NaN.
pub(crate) fn check_normal(op: &'static str, std: f64) -> Result<()> {
    if std >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(op, format!("std must be >= 0, got {std}")))
    }
}

/// PyTorch's checks on a uniform range: `low <= high` (neither NaN) and a width that the
/// dtype holds (`uniform_(-inf, 1)` would draw NaN and infinities).
pub(crate) fn check_uniform(op: &'static str, low: f64, high: f64, dtype: DType) -> Result<()> {
    if low <= high && crate::dtype::rounds_finite(dtype, high - low) {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!("expects low <= high with a width {dtype:?} holds, got [{low}, {high})"),
        ))
    }
}
