//! Tensors from Rust data and back: nested arrays, `Vec`s, scalars, dtype and device moves.

use super::{Tensor, TensorOptions};
use crate::autograd::BackwardOp;
use crate::device::Device;
use crate::dtype::{DType, Scalar};
use crate::error::{Error, Result};
use crate::host::{CpuElement, HostBuffer};
use crate::storage::Storage;

/// A leaf value of nested Rust data: `f32`/`f64` become F32, integers I64, `bool` Bool.
pub trait NdLeaf: Copy {
    /// The dtype of a tensor made of such values.
    const DTYPE: DType;
    /// The value as a scalar.
    fn scalar(self) -> Scalar;
}
macro_rules! leaf {
    ($dt:ident: $($t:ty),*) => {$(
        impl NdLeaf for $t {
            const DTYPE: DType = DType::$dt;
            fn scalar(self) -> Scalar { Scalar::from(self) }
        }
    )*};
}
leaf!(F32: f32, f64);
leaf!(I64: i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);
leaf!(Bool: bool);

/// Nested Rust data that can become a tensor: a leaf number, or arrays, slices and `Vec`s of
/// nested data (all rows the same length).
pub trait NdArray {
    /// The dtype of the leaves.
    fn dtype() -> DType;
    /// Append the shape, checking that rows agree.
    fn shape_into(&self, shape: &mut Vec<usize>, depth: usize) -> Result<()>;
    /// Append the leaves in row-major order.
    fn flatten_into(&self, out: &mut Vec<Scalar>);
}

impl<T: NdLeaf> NdArray for T {
    fn dtype() -> DType {
        T::DTYPE
    }
    fn shape_into(&self, _: &mut Vec<usize>, _: usize) -> Result<()> {
        Ok(())
    }
    fn flatten_into(&self, out: &mut Vec<Scalar>) {
        out.push(self.scalar())
    }
}

fn rows_shape<A: NdArray>(rows: &[A], shape: &mut Vec<usize>, depth: usize) -> Result<()> {
    if shape.len() == depth {
        shape.push(rows.len());
        match rows.first() {
            Some(r) => r.shape_into(shape, depth + 1)?,
            None => return Ok(()),
        }
    } else if shape[depth] != rows.len() {
        return Err(Error::bad_shape(
            "Tensor::new",
            shape,
            format!(
                "ragged nested data: a row of length {} where {} was expected at depth {depth}",
                rows.len(),
                shape[depth]
            ),
        ));
    }
    for r in rows {
        let mut sub = shape[..depth + 1].to_vec();
        r.shape_into(&mut sub, depth + 1)?;
        if sub != *shape {
            return Err(Error::bad_shape(
                "Tensor::new",
                shape,
                format!(
                    "ragged nested data: a row has shape {:?}",
                    &sub[depth + 1..]
                ),
            ));
        }
    }
    Ok(())
}

impl<A: NdArray, const N: usize> NdArray for [A; N] {
    fn dtype() -> DType {
        A::dtype()
    }
    fn shape_into(&self, shape: &mut Vec<usize>, depth: usize) -> Result<()> {
        rows_shape(self.as_slice(), shape, depth)
    }
    fn flatten_into(&self, out: &mut Vec<Scalar>) {
        self.iter().for_each(|r| r.flatten_into(out))
    }
}
impl<A: NdArray> NdArray for &[A] {
    fn dtype() -> DType {
        A::dtype()
    }
    fn shape_into(&self, shape: &mut Vec<usize>, depth: usize) -> Result<()> {
        rows_shape(self, shape, depth)
    }
    fn flatten_into(&self, out: &mut Vec<Scalar>) {
        self.iter().for_each(|r| r.flatten_into(out))
    }
}
impl<A: NdArray> NdArray for Vec<A> {
    fn dtype() -> DType {
        A::dtype()
    }
    fn shape_into(&self, shape: &mut Vec<usize>, depth: usize) -> Result<()> {
        rows_shape(self, shape, depth)
    }
    fn flatten_into(&self, out: &mut Vec<Scalar>) {
        self.iter().for_each(|r| r.flatten_into(out))
    }
}

impl Tensor {
    /// A tensor from nested Rust data, PyTorch's `torch.tensor([[1, 2], [3, 4]])`.
    ///
    /// ```
    /// use wgrad::{DType, Tensor};
    /// let y = Tensor::new([[2.0, 1.0, 4.0, 3.0], [1.0, 2.0, 3.0, 4.0]])?;
    /// assert_eq!((y.shape(), y.dtype()), (&[2usize, 4][..], DType::F32));
    /// assert_eq!(Tensor::new([5, 4, 3])?.dtype(), DType::I64);
    /// # Ok::<(), wgrad::Error>(())
    /// ```
    pub fn new<A: NdArray>(data: A) -> Result<Tensor> {
        let mut shape = Vec::new();
        data.shape_into(&mut shape, 0)?;
        let mut values = Vec::new();
        data.flatten_into(&mut values);
        let dtype = A::dtype();
        // A usize past i64::MAX has no I64 value: an Err, not a wrap to a negative.
        for v in &values {
            v.checked_for("Tensor::new", dtype)?;
        }
        Ok(Tensor::from_storage(
            Storage::Cpu(HostBuffer::from_scalars(&values, dtype)),
            &shape,
        ))
    }

    /// [`Tensor::new`] with the `requires_grad` flag set at construction, like
    /// `torch.tensor(data, requires_grad=True)`.
    ///
    /// ```
    /// let x = wgrad::Tensor::new_with_grad([1.0, 2.0], true)?;
    /// assert!(x.requires_grad() && x.is_leaf());
    /// # Ok::<(), wgrad::Error>(())
    /// ```
    pub fn new_with_grad<A: NdArray>(data: A, requires_grad: bool) -> Result<Tensor> {
        Tensor::new(data)?.requires_grad_(requires_grad)
    }

    /// [`Tensor::new`] on a device, or converted to a dtype (`torch.tensor(data, dtype=,
    /// device=)`): `Tensor::new_on([1, 2], (DType::F32, &dev))`.
    pub fn new_on<A: NdArray>(data: A, options: impl Into<TensorOptions>) -> Result<Tensor> {
        Tensor::new(data)?.placed(options.into())
    }

    /// [`Tensor::from_vec`] on a device, or converted to a dtype.
    pub fn from_vec_on<T: CpuElement>(
        data: Vec<T>,
        shape: impl Into<crate::Shape>,
        options: impl Into<TensorOptions>,
    ) -> Result<Tensor> {
        Tensor::from_vec(data, shape)?.placed(options.into())
    }

    /// [`Tensor::scalar`] on a device, or converted to a dtype.
    pub fn scalar_on(
        value: impl Into<Scalar>,
        options: impl Into<TensorOptions>,
    ) -> Result<Tensor> {
        Tensor::scalar(value)?.placed(options.into())
    }

    /// A new CPU tensor converted to the options' dtype and moved to their device.
    fn placed(self, o: TensorOptions) -> Result<Tensor> {
        let t = match o.dtype {
            Some(d) => self.to_dtype(d)?,
            None => self,
        };
        t.to_device(&o.device)
    }

    /// A tensor from a flat `Vec` in row-major order and a shape.
    pub fn from_vec<T: CpuElement>(data: Vec<T>, shape: impl Into<crate::Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if data.len() != shape.numel() {
            return Err(Error::DataLength {
                op: "Tensor::from_vec",
                len: data.len(),
                shape: shape.0.clone(),
                numel: shape.numel(),
            });
        }
        Ok(Tensor::from_storage(Storage::Cpu(T::wrap(data)), &shape))
    }

    /// A tensor from a flat slice in row-major order and a shape.
    pub fn from_slice<T: CpuElement>(data: &[T], shape: impl Into<crate::Shape>) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape)
    }

    /// A 0-dimensional tensor holding one scalar.
    pub fn scalar(value: impl Into<Scalar>) -> Result<Tensor> {
        let v = value.into();
        Ok(Tensor::from_storage(
            Storage::Cpu(HostBuffer::from_scalars(&[v], v.dtype())),
            &[],
        ))
    }

    /// The elements in row-major order. `T` must match the dtype.
    pub fn to_vec<T: CpuElement>(&self) -> Result<Vec<T>> {
        if self.dtype() != T::DTYPE {
            return Err(Error::UnsupportedDType {
                op: "to_vec",
                dtype: self.dtype(),
                shape: self.shape().to_vec(),
                expected: match T::DTYPE {
                    DType::F32 => "F32 (to_vec::<f32>)",
                    DType::I64 => "I64 (to_vec::<i64>)",
                    DType::Bool => "Bool (to_vec::<bool>)",
                    DType::F64 => "F64 (to_vec::<f64>)",
                    DType::F16 => "F16 (to_vec::<half::f16>)",
                    DType::BF16 => "BF16 (to_vec::<half::bf16>)",
                },
            });
        }
        let cpu = self.with_storage(|s, l| s.to_host(l))?;
        T::unwrap(cpu).ok_or_else(|| Error::invalid("to_vec", "the readback has another dtype"))
    }

    /// The rows of a 2-D tensor.
    pub fn to_vec2<T: CpuElement>(&self) -> Result<Vec<Vec<T>>> {
        self.expect_rank("to_vec2", 2)?;
        let (rows, cols) = (self.shape()[0], self.shape()[1]);
        let flat = self.to_vec::<T>()?;
        // Rows of zero columns are still rows: a [3, 0] tensor gives three empty rows.
        Ok((0..rows)
            .map(|r| flat[r * cols..(r + 1) * cols].to_vec())
            .collect())
    }

    /// The matrices of a 3-D tensor.
    pub fn to_vec3<T: CpuElement>(&self) -> Result<Vec<Vec<Vec<T>>>> {
        self.expect_rank("to_vec3", 3)?;
        let (a, b, c) = (self.shape()[0], self.shape()[1], self.shape()[2]);
        let flat = self.to_vec::<T>()?;
        Ok((0..a)
            .map(|i| {
                (0..b)
                    .map(|j| flat[(i * b + j) * c..(i * b + j + 1) * c].to_vec())
                    .collect()
            })
            .collect())
    }

    fn expect_rank(&self, op: &'static str, rank: usize) -> Result<()> {
        if self.ndim() != rank {
            return Err(Error::bad_shape(
                op,
                self.shape(),
                format!("expected a {rank}-D tensor"),
            ));
        }
        Ok(())
    }

    /// The value of a one-element tensor (any shape with one element, as in PyTorch), as a
    /// plain number: `loss.item::<f32>()?`, `count.item::<i64>()?`, or `item::<Scalar>()`.
    pub fn item<T: crate::dtype::FromScalar>(&self) -> Result<T> {
        self.item_scalar().map(T::from_scalar)
    }

    fn item_scalar(&self) -> Result<Scalar> {
        if self.numel() != 1 {
            return Err(Error::NotAScalar {
                op: "item",
                shape: self.shape().to_vec(),
                numel: self.numel(),
            });
        }
        let cpu = self.with_storage(|s, l| s.to_host(l))?;
        cpu.get(0)
            .ok_or_else(|| Error::invalid("item", "the readback of one element was empty"))
    }

    /// Convert to another dtype (a copy; float to integer truncates toward zero).
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        self.live()?;
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let s = super::elementwise::cast_storage(self, dtype)?;
        Ok(if dtype.is_float() {
            Tensor::from_op(s, self.shape(), || BackwardOp::Cast, &[self])?
        } else {
            Tensor::from_storage(s, self.shape())
        })
    }

    /// `x.half()`: [`Tensor::to_dtype`] F16.
    pub fn half(&self) -> Result<Tensor> {
        self.to_dtype(DType::F16)
    }

    /// `x.bfloat16()`: [`Tensor::to_dtype`] BF16.
    pub fn bfloat16(&self) -> Result<Tensor> {
        self.to_dtype(DType::BF16)
    }

    /// `x.float()`: [`Tensor::to_dtype`] F32.
    pub fn float(&self) -> Result<Tensor> {
        self.to_dtype(DType::F32)
    }

    /// Move to a device (a copy unless it is already there).
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        self.live()?;
        if device == self.device() {
            return Ok(self.clone());
        }
        let cpu = self.with_storage(|s, l| s.to_host(l))?;
        let s = Storage::from_host(device, cpu)?;
        Tensor::from_op(s, self.shape(), || BackwardOp::Copy, &[self])
    }
}
