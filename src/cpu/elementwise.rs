//! Elementwise kernels: the CPU side of the op tables (`op/`), `where`, writes and casts.
//! Each function picks the table entry for the operands' dtype and runs its closure over the
//! strided walk; an entry without a kernel for the dtype is `Err(Unsupported)`.

use super::map::{map1, map3, run1, run2, update, write_into};
use super::pool::Pooled;
use crate::backend::Arg;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::host::{CpuElement, HostBuffer};
use crate::layout::Layout;
use crate::op::{Binary, BinaryOp, CmpOp, Kern2, Unary, UnaryOp};
use std::borrow::Cow;

/// An element type the CPU kernels run on.
pub(crate) trait HostElem: CpuElement + Pooled {}
impl<T: CpuElement + Pooled> HostElem for T {}

fn unsupported(op: &'static str, dtype: DType) -> Error {
    Error::Unsupported {
        op,
        dtype,
        backend: "cpu",
    }
}

fn wrong_dtype(op: &'static str, expected: DType, got: DType) -> Error {
    Error::invalid(
        op,
        format!("an operand of dtype {got:?} reached the CPU kernel for {expected:?}"),
    )
}

/// An operand's elements and its layout over `shape`; a number is one element that every
/// position reads (stride 0), held in `holder`.
fn operand<'a, T: HostElem>(
    op: &'static str,
    arg: Arg<'a, HostBuffer>,
    shape: &[usize],
    holder: &'a mut [T; 1],
) -> Result<(&'a [T], Cow<'a, Layout>)> {
    match arg {
        Arg::Buf(b, l) => {
            let data = T::of(b).ok_or_else(|| wrong_dtype(op, T::DTYPE, b.dtype()))?;
            Ok((data, Cow::Borrowed(l)))
        }
        Arg::Scalar(s) => {
            holder[0] = T::from_scalar(s);
            let l = Layout {
                shape: shape.to_vec(),
                strides: vec![0; shape.len()],
                offset: 0,
            };
            Ok((&holder[..], Cow::Owned(l)))
        }
    }
}

/// A two-operand kernel's run over `shape`, each operand a buffer or a number.
fn map2<T: HostElem, U: Pooled>(
    name: &'static str,
    shape: &[usize],
    a: Arg<'_, HostBuffer>,
    b: Arg<'_, HostBuffer>,
    run: crate::op::Run2<T, U>,
) -> Result<Vec<U>> {
    let (mut ha, mut hb) = ([T::default()], [T::default()]);
    let (x, lx) = operand(name, a, shape, &mut ha)?;
    let (y, ly) = operand(name, b, shape, &mut hb)?;
    Ok(run2(shape, (x, &lx), (y, &ly), run))
}

pub fn unary(op: UnaryOp, s: &HostBuffer, l: &Layout) -> Result<HostBuffer> {
    fn on<T: HostElem>(
        name: &'static str,
        e: &Unary<T>,
        v: &[T],
        l: &Layout,
    ) -> Result<HostBuffer> {
        match e {
            Unary::Map(k) => Ok(T::wrap(run1(v, l, k.cpu))),
            Unary::Test(k) => Ok(HostBuffer::Bool(run1(v, l, k.cpu))),
            Unary::ViaFloat | Unary::Refused(_) => Err(unsupported(name, T::DTYPE)),
        }
    }
    let def = op.def();
    match s {
        HostBuffer::F32(v) => on(def.name, &def.f32, v, l),
        HostBuffer::I64(v) => on(def.name, &def.i64, v, l),
        HostBuffer::Bool(v) => on(def.name, &def.bool, v, l),
        HostBuffer::F64(v) => on(def.name, &def.f64, v, l),
        // The storage layer computes the 16-bit floats in f32.
        HostBuffer::F16(_) | HostBuffer::BF16(_) => Err(unsupported(def.name, s.dtype())),
    }
}

fn arith<'a, T: HostElem>(name: &'static str, e: &'a Binary<T>) -> Result<&'a crate::op::Arith<T>> {
    match e {
        Binary::Map(k) => Ok(k),
        Binary::ViaFloat | Binary::ViaInt | Binary::Refused(_) => Err(unsupported(name, T::DTYPE)),
    }
}

/// `a (op) b` over `shape`, in `dtype`.
pub fn binary(
    op: BinaryOp,
    shape: &[usize],
    dtype: DType,
    a: Arg<'_, HostBuffer>,
    b: Arg<'_, HostBuffer>,
) -> Result<HostBuffer> {
    fn on<T: HostElem>(
        name: &'static str,
        e: &Binary<T>,
        shape: &[usize],
        a: Arg<'_, HostBuffer>,
        b: Arg<'_, HostBuffer>,
    ) -> Result<HostBuffer> {
        Ok(T::wrap(map2(name, shape, a, b, arith(name, e)?.cpu)?))
    }
    let def = op.def();
    crate::op::entry_for!(dtype, def, |e| on(def.name, e, shape, a, b))
}

/// `dst = dst (op) src` in place; `src` is in another buffer, or a number.
pub fn binary_inplace(
    op: BinaryOp,
    dst: &mut HostBuffer,
    dl: &Layout,
    src: Arg<'_, HostBuffer>,
) -> Result<()> {
    fn on<T: HostElem>(
        name: &'static str,
        e: &Binary<T>,
        dst: &mut HostBuffer,
        dl: &Layout,
        src: Arg<'_, HostBuffer>,
    ) -> Result<()> {
        let k = arith(name, e)?;
        let mut h = [T::default()];
        let (y, ly) = operand(name, src, &dl.shape, &mut h)?;
        let got = dst.dtype();
        let d = T::of_mut(dst).ok_or_else(|| wrong_dtype(name, T::DTYPE, got))?;
        update(d, dl, y, &ly, k.cpu_update);
        Ok(())
    }
    let def = op.def();
    crate::op::entry_for!(dst.dtype(), def, |e| on(def.name, e, dst, dl, src))
}

/// A comparison or logical connective, to bool.
pub fn cmp(
    op: CmpOp,
    shape: &[usize],
    dtype: DType,
    a: Arg<'_, HostBuffer>,
    b: Arg<'_, HostBuffer>,
) -> Result<HostBuffer> {
    fn on<T: HostElem>(
        name: &'static str,
        k: &Kern2<T, bool>,
        shape: &[usize],
        a: Arg<'_, HostBuffer>,
        b: Arg<'_, HostBuffer>,
    ) -> Result<HostBuffer> {
        Ok(HostBuffer::Bool(map2(name, shape, a, b, k.cpu)?))
    }
    let def = op.def();
    crate::op::entry_for!(dtype, def, |e| on(def.name, e, shape, a, b))
}

/// `cond ? a : b` over `shape`; `a` and `b` of `dtype`.
pub fn where_cond(
    shape: &[usize],
    dtype: DType,
    (c, lc): (&HostBuffer, &Layout),
    a: Arg<'_, HostBuffer>,
    b: Arg<'_, HostBuffer>,
) -> Result<HostBuffer> {
    fn on<T: HostElem>(
        shape: &[usize],
        c: &[bool],
        lc: &Layout,
        a: Arg<'_, HostBuffer>,
        b: Arg<'_, HostBuffer>,
    ) -> Result<HostBuffer> {
        let (mut ha, mut hb) = ([T::default()], [T::default()]);
        let (x, lx) = operand("where", a, shape, &mut ha)?;
        let (y, ly) = operand("where", b, shape, &mut hb)?;
        Ok(T::wrap(map3((c, lc), (x, &lx), (y, &ly), |c, a, b| {
            if c {
                a
            } else {
                b
            }
        })))
    }
    let c = bool::of(c).ok_or_else(|| wrong_dtype("where", DType::Bool, c.dtype()))?;
    match dtype {
        DType::F32 => on::<f32>(shape, c, lc, a, b),
        DType::I64 => on::<i64>(shape, c, lc, a, b),
        DType::Bool => on::<bool>(shape, c, lc, a, b),
        DType::F16 => on::<half::f16>(shape, c, lc, a, b),
        DType::BF16 => on::<half::bf16>(shape, c, lc, a, b),
        DType::F64 => on::<f64>(shape, c, lc, a, b),
    }
}

/// Overwrite the elements of the view `dl` with `src` (broadcast to its shape) or a number.
pub fn write(dst: &mut HostBuffer, dl: &Layout, src: Arg<'_, HostBuffer>) -> Result<()> {
    fn on<T: HostElem>(dst: &mut HostBuffer, dl: &Layout, src: Arg<'_, HostBuffer>) -> Result<()> {
        let mut h = [T::default()];
        let (y, ly) = operand("assign", src, &dl.shape, &mut h)?;
        let got = dst.dtype();
        let d = T::of_mut(dst).ok_or_else(|| wrong_dtype("assign", T::DTYPE, got))?;
        write_into(d, dl, y, &ly);
        Ok(())
    }
    match dst.dtype() {
        DType::F32 => on::<f32>(dst, dl, src),
        DType::I64 => on::<i64>(dst, dl, src),
        DType::Bool => on::<bool>(dst, dl, src),
        DType::F16 => on::<half::f16>(dst, dl, src),
        DType::BF16 => on::<half::bf16>(dst, dl, src),
        DType::F64 => on::<f64>(dst, dl, src),
    }
}

/// The 16-bit values of `v` seen through `l` as f32: a contiguous view converts in one call
/// of the `half` crate, which uses the CPU's conversion instructions (F16C) where it has them.
fn widened<T>(v: &[T], l: &Layout, one: impl Fn(T) -> f32 + Sync) -> Vec<f32>
where
    T: Copy + Sync,
    [T]: half::slice::HalfFloatSliceExt,
{
    use half::slice::HalfFloatSliceExt;
    // An empty view may start past the end of its (empty) buffer.
    if !l.is_contiguous() || l.numel() == 0 {
        return map1(v, l, one);
    }
    let mut out = super::pool::take(l.numel());
    v[l.offset..l.offset + l.numel()].convert_to_f32_slice(&mut out);
    out
}

/// f32 values seen through `l` rounded to a 16-bit type (see [`widened`]).
fn narrowed<T>(v: &[f32], l: &Layout, one: impl Fn(f32) -> T + Sync) -> Vec<T>
where
    T: Pooled,
    [T]: half::slice::HalfFloatSliceExt,
{
    use half::slice::HalfFloatSliceExt;
    if !l.is_contiguous() || l.numel() == 0 {
        return map1(v, l, one);
    }
    let mut out = super::pool::take(l.numel());
    out.convert_from_f32_slice(&v[l.offset..l.offset + l.numel()]);
    out
}

/// Convert to another dtype (float to int truncates toward zero, as PyTorch; a float to a
/// 16-bit float rounds to nearest even). The 16-bit floats convert through f32, which holds
/// each of their values exactly.
pub fn cast(s: &HostBuffer, l: &Layout, to: DType) -> HostBuffer {
    use half::{bf16, f16};
    use HostBuffer as H;
    match (s, to) {
        (H::F64(v), DType::F64) => H::F64(map1(v, l, |x| x)),
        (H::F64(v), DType::F32) => H::F32(map1(v, l, |x| x as f32)),
        (H::F64(v), DType::I64) => H::I64(map1(v, l, |x| x as i64)),
        (H::F64(v), DType::Bool) => H::Bool(map1(v, l, |x| x != 0.0)),
        // One rounding from f64 (through f32 would be two).
        (H::F64(v), DType::F16) => H::F16(map1(v, l, f16::from_f64)),
        (H::F64(v), DType::BF16) => H::BF16(map1(v, l, bf16::from_f64)),
        (H::F32(v), DType::F64) => H::F64(map1(v, l, |x| x as f64)),
        (H::I64(v), DType::F64) => H::F64(map1(v, l, |x| x as f64)),
        (H::Bool(v), DType::F64) => H::F64(map1(v, l, |x| x as u8 as f64)),
        (H::F16(v), DType::F16) => H::F16(map1(v, l, |x| x)),
        (H::BF16(v), DType::BF16) => H::BF16(map1(v, l, |x| x)),
        (H::F16(v), DType::F32) => H::F32(widened(v, l, f16::to_f32)),
        (H::BF16(v), DType::F32) => H::F32(widened(v, l, bf16::to_f32)),
        (H::F16(_) | H::BF16(_), _) => {
            cast(&cast(s, l, DType::F32), &Layout::contiguous(&l.shape), to)
        }
        (H::F32(v), DType::F16) => H::F16(narrowed(v, l, f16::from_f32)),
        (H::F32(v), DType::BF16) => H::BF16(narrowed(v, l, bf16::from_f32)),
        (H::I64(_) | H::Bool(_), DType::F16 | DType::BF16) => {
            cast(&cast(s, l, DType::F32), &Layout::contiguous(&l.shape), to)
        }
        (H::F32(v), DType::F32) => H::F32(map1(v, l, |x| x)),
        (H::F32(v), DType::I64) => H::I64(map1(v, l, |x| x as i64)),
        (H::F32(v), DType::Bool) => H::Bool(map1(v, l, |x| x != 0.0)),
        (H::I64(v), DType::F32) => H::F32(map1(v, l, |x| x as f32)),
        (H::I64(v), DType::I64) => H::I64(map1(v, l, |x| x)),
        (H::I64(v), DType::Bool) => H::Bool(map1(v, l, |x| x != 0)),
        (H::Bool(v), DType::F32) => H::F32(map1(v, l, |x| x as u8 as f32)),
        (H::Bool(v), DType::I64) => H::I64(map1(v, l, |x| x as i64)),
        (H::Bool(v), DType::Bool) => H::Bool(map1(v, l, |x| x)),
    }
}
