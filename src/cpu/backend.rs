//! The CPU backend behind the seam (`backend.rs`): each primitive asks `room` for its output,
//! then runs its kernel.

use super::{elementwise, index, matmul, reduce, room, HostBuffer};
use crate::backend::{Arg, Backend};
use crate::dtype::{DType, Scalar};
use crate::error::{Error, Result};
use crate::layout::{split_reduced, Layout};
use crate::op::{BinaryOp, CmpOp, FillKind, ReduceOp, UnaryOp};
use crate::rng::Generator;

/// The I64 elements of an index buffer (the tensor layer checks the dtype; this is the
/// backend's own guard).
fn indices<'a>(op: &'static str, index: &'a HostBuffer) -> Result<&'a [i64]> {
    match index {
        HostBuffer::I64(v) => Ok(v),
        _ => Err(Error::UnsupportedDType {
            op,
            dtype: index.dtype(),
            shape: vec![index.len()],
            expected: "I64 indices",
        }),
    }
}

impl Backend for HostBuffer {
    type Device = ();

    fn full(_: &(), n: usize, value: Scalar, dtype: DType) -> Result<Self> {
        room("full", n, dtype)?;
        Ok(HostBuffer::filled(n, value, dtype))
    }

    fn arange(_: &(), n: usize, start: Scalar, step: Scalar, dtype: DType) -> Result<Self> {
        room("arange", n, dtype)?;
        Ok(match dtype {
            DType::I64 => {
                let (s, st) = (start.to_i64(), step.to_i64());
                HostBuffer::I64(
                    (0..n as i64)
                        .map(|i| s.wrapping_add(i.wrapping_mul(st)))
                        .collect(),
                )
            }
            DType::F32 => {
                let (s, st) = (start.to_f64(), step.to_f64());
                HostBuffer::F32((0..n).map(|i| (s + i as f64 * st) as f32).collect())
            }
            DType::F64 => {
                let (s, st) = (start.to_f64(), step.to_f64());
                HostBuffer::F64((0..n).map(|i| s + i as f64 * st).collect())
            }
            DType::F16 | DType::BF16 => {
                let values = Self::arange(&(), n, start, step, DType::F32)?;
                elementwise::cast(&values, &Layout::contiguous(&[n]), dtype)
            }
            DType::Bool => {
                return Err(Error::Unsupported {
                    op: "arange",
                    dtype,
                    backend: "cpu",
                })
            }
        })
    }

    fn random(
        _: &(),
        kind: FillKind,
        n: usize,
        gen: &mut Generator,
        range: (i64, i64),
    ) -> Result<Self> {
        let dtype = if kind == FillKind::RandInt {
            DType::I64
        } else {
            DType::F32
        };
        room("random", n, dtype)?;
        Ok(match kind {
            FillKind::Uniform => HostBuffer::F32(gen.uniform(n)),
            FillKind::Normal => HostBuffer::F32(gen.normal(n)),
            FillKind::RandInt => HostBuffer::I64(gen.int_range(n, range.0, range.1)),
            FillKind::Constant | FillKind::Arange => {
                return Err(Error::invalid(
                    "random",
                    format!("{kind:?} is not a random fill"),
                ))
            }
        })
    }

    fn from_host(_: &(), data: HostBuffer) -> Result<Self> {
        Ok(data)
    }

    fn dtype(&self) -> DType {
        HostBuffer::dtype(self)
    }

    fn to_host(&self, l: &Layout) -> Result<HostBuffer> {
        self.copy_strided(l)
    }

    fn copy_strided(&self, l: &Layout) -> Result<Self> {
        room("contiguous", l.numel(), self.dtype())?;
        Ok(self.compacted(l))
    }

    fn write(&mut self, dst: &Layout, src: Arg<'_, Self>) -> Result<()> {
        elementwise::write(self, dst, src)
    }

    fn unary(&self, op: UnaryOp, l: &Layout) -> Result<Self> {
        room(op.name(), l.numel(), self.dtype())?;
        elementwise::unary(op, self, l)
    }

    fn binary(
        op: BinaryOp,
        shape: &[usize],
        dtype: DType,
        a: Arg<'_, Self>,
        b: Arg<'_, Self>,
    ) -> Result<Self> {
        room(op.name(), shape.iter().product(), dtype)?;
        elementwise::binary(op, shape, dtype, a, b)
    }

    fn binary_inplace(&mut self, op: BinaryOp, dst: &Layout, src: Arg<'_, Self>) -> Result<()> {
        elementwise::binary_inplace(op, self, dst, src)
    }

    fn cmp(
        op: CmpOp,
        shape: &[usize],
        dtype: DType,
        a: Arg<'_, Self>,
        b: Arg<'_, Self>,
    ) -> Result<Self> {
        room(op.name(), shape.iter().product(), DType::Bool)?;
        elementwise::cmp(op, shape, dtype, a, b)
    }

    fn where_cond(
        shape: &[usize],
        dtype: DType,
        cond: (&Self, &Layout),
        a: Arg<'_, Self>,
        b: Arg<'_, Self>,
    ) -> Result<Self> {
        room("where", shape.iter().product(), dtype)?;
        elementwise::where_cond(shape, dtype, cond, a, b)
    }

    fn cast(&self, l: &Layout, to: DType) -> Result<Self> {
        room("to_dtype", l.numel(), to)?;
        Ok(elementwise::cast(self, l, to))
    }

    fn reduce(&self, op: ReduceOp, l: &Layout, dims: &[usize]) -> Result<Self> {
        let out = if op.def().gives_index {
            DType::I64
        } else {
            self.dtype()
        };
        room(op.name(), split_reduced(l, dims).0.numel(), out)?;
        reduce::reduce(op, self, l, dims)
    }

    fn cumsum(&self, l: &Layout, dim: usize) -> Result<Self> {
        room("cumsum", l.numel(), self.dtype())?;
        reduce::cumsum(self, l, dim)
    }

    fn matmul(&self, l: &Layout, rhs: &Self, rl: &Layout) -> Result<Self> {
        let r = l.rank();
        let n = l.shape[..r - 1]
            .iter()
            .product::<usize>()
            .saturating_mul(rl.shape[r - 1]);
        room("matmul", n, self.dtype())?;
        matmul::matmul(self, l, rhs, rl)
    }

    fn index_select(&self, l: &Layout, dim: usize, index: &Self, il: &Layout) -> Result<Self> {
        let i = indices("index_select", index)?;
        let rows: usize = l
            .shape
            .iter()
            .enumerate()
            .filter(|&(d, _)| d != dim)
            .map(|(_, &s)| s)
            .product();
        room(
            "index_select",
            rows.saturating_mul(il.numel()),
            self.dtype(),
        )?;
        index::index_select(self, l, dim, &super::contiguous_cow(i, il))
    }

    fn gather(&self, l: &Layout, dim: usize, index: &Self, il: &Layout) -> Result<Self> {
        let i = indices("gather", index)?;
        room("gather", il.numel(), self.dtype())?;
        index::gather(self, l, dim, i, il)
    }

    fn scatter_add(
        &self,
        l: &Layout,
        dim: usize,
        index: &Self,
        il: &Layout,
        src: &Self,
        sl: &Layout,
    ) -> Result<Self> {
        let i = indices("scatter_add", index)?;
        room("scatter_add", l.numel(), self.dtype())?;
        index::scatter_add(self, l, dim, i, il, src, sl)
    }
}
