//! # wgrad
//!
//! A GPU-first deep learning library: PyTorch-like tensors with broadcasting, views and
//! reverse-mode autograd, on two backends with the same semantics: WGSL compute kernels on
//! any Vulkan, Metal or DX12 GPU through wgpu, and a pure-Rust CPU backend, chosen by
//! [`Device::auto`] when there is no GPU. The primitive ops are data ([`op`]): one table
//! entry per op holds its dtype rules, both backends' kernels and its derivative.
//!
//! ```
//! use wgrad::{s, Tensor};
//! let x = Tensor::arange(0.0, 12.0, 1.0)?.reshape(&[3, 4])?;
//! let y = Tensor::new([[2.0, 1.0, 4.0, 3.0], [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])?;
//! let z = Tensor::cat(&[&x, &y], 1)?;
//! assert_eq!(z.shape(), &[3, 8]);
//! println!("{}", x.i(s![1..3, 1..])?);
//! # Ok::<(), wgrad::Error>(())
//! ```
//!
//! Every fallible operation returns [`Result`]. Operators (`&a + &b * 2.0`) return a
//! [`Tensor`] that carries a failure to the next call returning a `Result` (see
//! [`Tensor::check`]), so an expression reads like the math and needs no `?` per operator.

#![warn(missing_docs)]

// `#[derive(Module)]` writes `::wgrad::nn::...` paths; this makes them resolve inside the
// crate too, so the built-in layers use the derive like a user's model does.
extern crate self as wgrad;

mod autocast;
mod autograd;
mod backend;
pub mod capture;
mod cpu;
pub mod data;
mod device;
pub mod distributed;
mod dtype;
mod error;
pub mod func;
pub mod gpu;
mod host;
pub mod io;
mod layout;
pub mod nn;
pub mod op;
pub mod optim;
mod rng;
mod shape;
mod storage;
mod tensor;

pub use autocast::{autocast, autocast_dtype, AutocastGuard};
pub use autograd::{
    gradcheck, is_grad_enabled, no_grad, no_grad_scope, set_grad_enabled, GradModeGuard,
    GradcheckOptions,
};
pub use capture::{capture, CapturedStep};
pub use device::Device;
pub use dtype::{DType, DTypeInfo, Element, FromScalar, Kind, Scalar};
pub use error::{Error, Result};
/// The `half` crate, whose `f16` and `bf16` are the element types of [`DType::F16`] and
/// [`DType::BF16`] tensors (`Tensor::from_vec(vec![half::f16::ONE], [1])`, `to_vec::<half::bf16>()`).
pub use half;
pub use rng::{manual_seed, seeded, Generator};
pub use shape::{IntList, Shape};
pub use storage::MemoryStats;
pub use tensor::{grad, CpuElement, NdArray, NdLeaf, SliceItem, Source, Tensor, TensorOptions};

#[doc(hidden)]
pub use storage::fused::without_fusion;

/// Every WGSL kernel variant the crate can generate, as (label, source): for validating the
/// shaders without a GPU (see `tests/shaders.rs`).
#[doc(hidden)]
pub fn wgsl_variants() -> Result<Vec<(String, String)>> {
    gpu::kernels::all_variants()
        .iter()
        .map(|k| Ok((k.label(), k.source()?)))
        .collect()
}

/// The README's Rust examples run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
