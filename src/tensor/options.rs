//! Where a new tensor lives and what it holds: the one argument every `*_on` constructor
//! takes, like PyTorch's `device=` and `dtype=` keywords.

use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};

/// The device and (optionally) dtype of a new tensor. Every constructor `Tensor::x(..)`
/// has a `Tensor::x_on(.., options)` that takes one of: `&device`, a `DType`, or both as
/// a pair, `(DType::I64, &device)`. A dtype left out is the constructor's default (F32 for
/// `zeros`, I64 for `randint`, the data's own for `new`).
///
/// ```
/// use wgrad::{DType, Device, Tensor};
/// let dev = Device::Cpu;
/// let a = Tensor::zeros_on([2, 3], &dev)?;
/// let b = Tensor::ones_on([2], (DType::I64, &dev))?;
/// let c = Tensor::new_on([1, 2, 3], DType::F32)?;
/// assert_eq!((a.dtype(), b.dtype(), c.dtype()), (DType::F32, DType::I64, DType::F32));
/// # Ok::<(), wgrad::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TensorOptions {
    /// Where the tensor is made.
    pub device: Device,
    /// Its element type; `None` for the constructor's default.
    pub dtype: Option<DType>,
}

impl TensorOptions {
    /// The dtype asked for, or `default`.
    pub(crate) fn dtype_or(&self, default: DType) -> DType {
        self.dtype.unwrap_or(default)
    }

    /// The float dtype asked for (F32 by default): random floats have no integer form.
    pub(crate) fn float_dtype(&self, op: &'static str) -> Result<DType> {
        match self.dtype_or(DType::F32) {
            d if d.is_float() => Ok(d),
            d => Err(Error::UnsupportedDType {
                op,
                dtype: d,
                shape: Vec::new(),
                expected: "a float dtype (random floats)",
            }),
        }
    }
}

impl From<&Device> for TensorOptions {
    fn from(device: &Device) -> Self {
        TensorOptions {
            device: device.clone(),
            dtype: None,
        }
    }
}

impl From<Device> for TensorOptions {
    fn from(device: Device) -> Self {
        TensorOptions {
            device,
            dtype: None,
        }
    }
}

impl From<DType> for TensorOptions {
    fn from(dtype: DType) -> Self {
        TensorOptions {
            device: Device::Cpu,
            dtype: Some(dtype),
        }
    }
}

impl From<(DType, &Device)> for TensorOptions {
    fn from((dtype, device): (DType, &Device)) -> Self {
        TensorOptions {
            device: device.clone(),
            dtype: Some(dtype),
        }
    }
}

impl From<(&Device, DType)> for TensorOptions {
    fn from((device, dtype): (&Device, DType)) -> Self {
        TensorOptions {
            device: device.clone(),
            dtype: Some(dtype),
        }
    }
}
