//! Creating tensors: constants, ranges, identity, random numbers.

use super::Tensor;
use super::TensorOptions;
use crate::device::Device;
use crate::dtype::{DType, Scalar};
use crate::error::{Error, Result};
use crate::op::FillKind;
use crate::rng::{self, Generator};
use crate::shape::Shape;
use crate::storage::Storage;

impl Tensor {
    /// A tensor of `shape` filled with `value` (of its dtype unless `options` names one).
    pub fn full_on(
        shape: impl Into<Shape>,
        value: impl Into<Scalar>,
        options: impl Into<TensorOptions>,
    ) -> Result<Tensor> {
        let (options, value) = (options.into(), value.into());
        let (dtype, device) = (options.dtype_or(value.dtype()), &options.device);
        let shape = shape.into();
        // An element count whose bytes cannot be addressed is an error, not an overflow.
        crate::shape::addressable_bytes("full", &shape, dtype.size_in_bytes())?;
        let value = value.checked_for("full", dtype)?;
        Ok(Tensor::from_storage(
            Storage::full(device, shape.numel(), value, dtype)?,
            &shape,
        ))
    }

    /// Zeros of `shape` (F32 unless `options` names a dtype).
    pub fn zeros_on(shape: impl Into<Shape>, options: impl Into<TensorOptions>) -> Result<Tensor> {
        let o = options.into();
        Tensor::full_on(shape, 0, (o.dtype_or(DType::F32), &o.device))
    }

    /// Ones of `shape` (F32 unless `options` names a dtype).
    pub fn ones_on(shape: impl Into<Shape>, options: impl Into<TensorOptions>) -> Result<Tensor> {
        let o = options.into();
        Tensor::full_on(shape, 1, (o.dtype_or(DType::F32), &o.device))
    }

    /// f32 zeros on the CPU (`torch.zeros`).
    pub fn zeros(shape: impl Into<Shape>) -> Result<Tensor> {
        Tensor::zeros_on(shape, (DType::F32, &Device::Cpu))
    }

    /// f32 ones on the CPU (`torch.ones`).
    pub fn ones(shape: impl Into<Shape>) -> Result<Tensor> {
        Tensor::ones_on(shape, (DType::F32, &Device::Cpu))
    }

    /// A tensor filled with `value`; its dtype follows the value (`2` gives I64, `2.0` F32).
    pub fn full(shape: impl Into<Shape>, value: impl Into<Scalar>) -> Result<Tensor> {
        let v = value.into();
        Tensor::full_on(shape, v, (v.dtype(), &Device::Cpu))
    }

    /// Zeros with the shape, dtype and device of `t`.
    pub fn zeros_like(t: &Tensor) -> Result<Tensor> {
        Tensor::zeros_on(t.shape(), (t.dtype(), t.device()))
    }

    /// Ones with the shape, dtype and device of `t`.
    pub fn ones_like(t: &Tensor) -> Result<Tensor> {
        Tensor::ones_on(t.shape(), (t.dtype(), t.device()))
    }

    /// `value` with the shape, dtype and device of `t`.
    pub fn full_like(t: &Tensor, value: impl Into<Scalar>) -> Result<Tensor> {
        Tensor::full_on(t.shape(), value, (t.dtype(), t.device()))
    }

    /// Values from `start` up to (not including) `end` in steps of `step`. Integer arguments
    /// give an I64 tensor, float arguments F32 (`torch.arange(1, 12, 2)`,
    /// `torch.arange(6, 12, 0.5)`).
    ///
    /// ```
    /// use wgrad::Tensor;
    /// assert_eq!(Tensor::arange(1, 12, 2)?.to_vec::<i64>()?, vec![1, 3, 5, 7, 9, 11]);
    /// assert_eq!(Tensor::arange(0.0, 1.0, 0.25)?.to_vec::<f32>()?, vec![0.0, 0.25, 0.5, 0.75]);
    /// # Ok::<(), wgrad::Error>(())
    /// ```
    pub fn arange(
        start: impl Into<Scalar>,
        end: impl Into<Scalar>,
        step: impl Into<Scalar>,
    ) -> Result<Tensor> {
        Tensor::arange_on(start, end, step, &Device::Cpu)
    }

    /// [`Tensor::arange`] on a device.
    pub fn arange_on(
        start: impl Into<Scalar>,
        end: impl Into<Scalar>,
        step: impl Into<Scalar>,
        options: impl Into<TensorOptions>,
    ) -> Result<Tensor> {
        let o = options.into();
        let t = Tensor::arange_in(start, end, step, &o.device)?;
        match o.dtype {
            Some(d) => t.to_dtype(d),
            None => Ok(t),
        }
    }

    fn arange_in(
        start: impl Into<Scalar>,
        end: impl Into<Scalar>,
        step: impl Into<Scalar>,
        device: &Device,
    ) -> Result<Tensor> {
        let (start, end, step) = (start.into(), end.into(), step.into());
        let dtype = start
            .dtype()
            .promote(end.dtype())
            .promote(step.dtype())
            .promote(DType::I64);
        let (s, e, st) = (start.to_f64(), end.to_f64(), step.to_f64());
        if st == 0.0 || !st.is_finite() || !s.is_finite() || !e.is_finite() {
            return Err(Error::invalid(
                "arange",
                format!("step must be non-zero and bounds finite (start {s}, end {e}, step {st})"),
            ));
        }
        if (e - s) * st < 0.0 {
            return Err(Error::invalid(
                "arange",
                format!(
                    "upper bound and step sign are inconsistent (start {s}, end {e}, step {st})"
                ),
            ));
        }
        let n = if let (DType::I64, Scalar::Int(a), Scalar::Int(b), Scalar::Int(c)) =
            (dtype, start, end, step)
        {
            // Integer ranges are counted exactly (f64 loses integers past 2^53).
            let (span, c) = (b as i128 - a as i128, c as i128);
            let count = if span == 0 {
                0
            } else {
                (span + c - c.signum()) / c
            };
            usize::try_from(count.max(0)).map_err(|_| Error::BufferTooLarge {
                op: "arange",
                bytes: u64::MAX,
                limit: isize::MAX as u64,
            })?
        } else {
            ((e - s) / st).ceil().max(0.0) as usize
        };
        Ok(Tensor::from_storage(
            Storage::arange(device, n, start, step, dtype)?,
            &[n],
        ))
    }

    /// `steps` evenly spaced f32 values from `start` to `end` inclusive.
    pub fn linspace(start: f64, end: f64, steps: usize) -> Result<Tensor> {
        Tensor::linspace_on(start, end, steps, &Device::Cpu)
    }

    /// [`Tensor::linspace`] on a device (F32 unless `options` names a dtype).
    pub fn linspace_on(
        start: f64,
        end: f64,
        steps: usize,
        options: impl Into<TensorOptions>,
    ) -> Result<Tensor> {
        let o = options.into();
        // Built on the host: a size the device cannot hold is refused before any work.
        crate::storage::room_on(&o.device, "linspace", steps, o.dtype_or(DType::F32))?;
        Tensor::linspace_cpu(start, end, steps)?
            .to_dtype(o.dtype_or(DType::F32))?
            .to_device(&o.device)
    }

    fn linspace_cpu(start: f64, end: f64, steps: usize) -> Result<Tensor> {
        // A count the machine cannot hold is an Err, not an abort.
        let bytes = crate::shape::addressable_bytes("linspace", &[steps], 4)?;
        let mut data: Vec<f32> = Vec::new();
        data.try_reserve_exact(steps)
            .map_err(|_| Error::OutOfMemory {
                op: "linspace",
                bytes: bytes as u64,
                device: "cpu",
            })?;
        match steps {
            0 => {}
            1 => data.push(start as f32),
            _ => {
                let step = (end - start) / (steps - 1) as f64;
                // Symmetric like PyTorch: the second half counts back from `end`.
                data.extend((0..steps).map(|i| {
                    let v = if i < steps / 2 {
                        start + step * i as f64
                    } else {
                        end - step * (steps - 1 - i) as f64
                    };
                    v as f32
                }));
            }
        }
        Tensor::from_vec(data, [steps])
    }

    /// The `n x n` f32 identity matrix.
    pub fn eye(n: usize) -> Result<Tensor> {
        Tensor::eye_on(n, &Device::Cpu)
    }

    /// The identity on a device (F32 unless `options` names a dtype).
    pub fn eye_on(n: usize, options: impl Into<TensorOptions>) -> Result<Tensor> {
        let t = Tensor::zeros_on([n, n], options)?;
        // The diagonal is a strided view of the zeros: one fill.
        let diagonal = Tensor::view_of(
            t.storage().clone(),
            crate::layout::Layout {
                shape: vec![n],
                strides: vec![n + 1],
                offset: 0,
            },
            t.dtype(),
            t.device().clone(),
            None,
            None,
        );
        diagonal.fill_(1.0)?;
        Ok(t)
    }

    fn random(
        kind: FillKind,
        shape: impl Into<Shape>,
        device: &Device,
        g: &mut Generator,
        range: (i64, i64),
    ) -> Result<Tensor> {
        crate::capture::refuse_random("a random tensor (rand, randn, randint, dropout)")?;
        let shape = shape.into();
        Ok(Tensor::from_storage(
            Storage::random(device, kind, shape.numel(), g, range)?,
            &shape,
        ))
    }

    /// Uniform f32 numbers in `[0, 1)` from the global generator (`torch.rand`).
    pub fn rand(shape: impl Into<Shape>) -> Result<Tensor> {
        Tensor::rand_on(shape, &Device::Cpu)
    }

    /// Uniform numbers generated on `device`: the same values on every device for the same
    /// generator state.
    pub fn rand_on(shape: impl Into<Shape>, options: impl Into<TensorOptions>) -> Result<Tensor> {
        let o = options.into();
        let dtype = o.float_dtype("rand")?;
        rng::with_default(|g| Tensor::random(FillKind::Uniform, shape, &o.device, g, (0, 0)))?
            .to_dtype(dtype)
    }

    /// Uniform numbers from an explicit generator.
    pub fn rand_with(shape: impl Into<Shape>, g: &mut Generator) -> Result<Tensor> {
        Tensor::random(FillKind::Uniform, shape, &Device::Cpu, g, (0, 0))
    }

    /// Standard normal f32 numbers from the global generator (`torch.randn`).
    pub fn randn(shape: impl Into<Shape>) -> Result<Tensor> {
        Tensor::randn_on(shape, &Device::Cpu)
    }

    /// Standard normal numbers generated on `device`.
    pub fn randn_on(shape: impl Into<Shape>, options: impl Into<TensorOptions>) -> Result<Tensor> {
        let o = options.into();
        let dtype = o.float_dtype("randn")?;
        rng::with_default(|g| Tensor::random(FillKind::Normal, shape, &o.device, g, (0, 0)))?
            .to_dtype(dtype)
    }

    /// Standard normal numbers from an explicit generator.
    pub fn randn_with(shape: impl Into<Shape>, g: &mut Generator) -> Result<Tensor> {
        Tensor::random(FillKind::Normal, shape, &Device::Cpu, g, (0, 0))
    }

    /// Integers uniform in `low..high` (I64) from the global generator (`torch.randint`).
    pub fn randint(low: i64, high: i64, shape: impl Into<Shape>) -> Result<Tensor> {
        Tensor::randint_on(low, high, shape, &Device::Cpu)
    }

    /// Random integers generated on `device`.
    pub fn randint_on(
        low: i64,
        high: i64,
        shape: impl Into<Shape>,
        options: impl Into<TensorOptions>,
    ) -> Result<Tensor> {
        let o = options.into();
        rng::with_default(|g| Tensor::randint_gen(low, high, shape, &o.device, g))?
            .to_dtype(o.dtype_or(DType::I64))
    }

    /// Random integers from an explicit generator.
    pub fn randint_with(
        low: i64,
        high: i64,
        shape: impl Into<Shape>,
        g: &mut Generator,
    ) -> Result<Tensor> {
        Tensor::randint_gen(low, high, shape, &Device::Cpu, g)
    }

    fn randint_gen(
        low: i64,
        high: i64,
        shape: impl Into<Shape>,
        device: &Device,
        g: &mut Generator,
    ) -> Result<Tensor> {
        if high <= low {
            return Err(Error::invalid(
                "randint",
                format!("low ({low}) must be less than high ({high})"),
            ));
        }
        Tensor::random(FillKind::RandInt, shape, device, g, (low, high))
    }

    /// A random permutation of `0..n` (I64) from the global generator (`torch.randperm`).
    pub fn randperm(n: usize) -> Result<Tensor> {
        rng::with_default(|g| Tensor::randperm_with(n, g))
    }

    /// A random permutation of `0..n` on a device (I64 unless `options` names a dtype).
    pub fn randperm_on(n: usize, options: impl Into<TensorOptions>) -> Result<Tensor> {
        let o = options.into();
        crate::storage::room_on(&o.device, "randperm", n, o.dtype_or(DType::I64))?;
        Tensor::randperm(n)?
            .to_device(&o.device)?
            .to_dtype(o.dtype_or(DType::I64))
    }

    /// A random permutation from an explicit generator.
    pub fn randperm_with(n: usize, g: &mut Generator) -> Result<Tensor> {
        crate::capture::refuse_random("randperm")?;
        // The keys and the indices being sorted: three words per element.
        crate::storage::host_room("randperm", n.saturating_mul(3), DType::I64)?;
        Tensor::from_vec(g.permutation(n), [n])
    }
}
