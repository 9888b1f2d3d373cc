//! F16 matmul on tensor cores: WGSL cooperative matrices (`shaders/matmul_coop.wgsl`), where
//! the adapter has wgpu's experimental `EXPERIMENTAL_COOPERATIVE_MATRIX` with 16x16x16 f16
//! fragments accumulating in f32 (NVIDIA through Vulkan), f16 shaders and subgroups exactly
//! 32 wide.
//!
//! The feature is experimental in wgpu and no CI adapter has it (lavapipe has none), so the
//! kernel earns its place on each device first: before the first F16 product that would use
//! it, it multiplies a small batch of exactly representable matrices (edge blocks, interior
//! blocks, a transposed operand, two matrices) and is used only if every element is right.
//! Otherwise F16 products take the tiled kernel, as on every other adapter.
//! `WGRAD_NO_TENSOR_CORES=1` keeps them off.

use super::context::GpuContext;
use super::kernels::Kernel;
use super::ops::GpuStorage;
use crate::backend::Backend;
use crate::host::HostBuffer;
use crate::layout::Layout;
use std::sync::{Arc, OnceLock};

/// What the kernel needs of the device.
const NEEDED: wgpu::Features = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
    .union(wgpu::Features::SHADER_F16)
    .union(wgpu::Features::SUBGROUP);

fn switched_off() -> bool {
    std::env::var_os("WGRAD_NO_TENSOR_CORES").is_some()
}

/// Subgroups of exactly 32 invocations: the kernel's workgroup is four of them.
fn subgroups_of_32(info: &wgpu::AdapterInfo) -> bool {
    info.subgroup_min_size == 32 && info.subgroup_max_size == 32
}

/// The features to request of `adapter` for tensor-core matmul (none where it lacks them).
pub(crate) fn features_to_request(adapter: &wgpu::Adapter) -> wgpu::Features {
    let has_fragment = adapter.cooperative_matrix_properties().iter().any(|p| {
        (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
            && p.ab_type == wgpu::CooperativeScalarType::F16
            && p.cr_type == wgpu::CooperativeScalarType::F32
    });
    if switched_off()
        || !adapter.features().contains(NEEDED)
        || !has_fragment
        || !subgroups_of_32(&adapter.get_info())
    {
        return wgpu::Features::empty();
    }
    NEEDED
}

/// Whether a device may use the tensor-core kernel, decided once per device.
pub(crate) struct TensorCores {
    /// The device has the features (opened by wgrad, or handed over by an application).
    enabled: bool,
    /// The self-test's verdict, taken at first use.
    verified: OnceLock<bool>,
}

impl TensorCores {
    pub(crate) fn new(device: &wgpu::Device, info: &wgpu::AdapterInfo) -> TensorCores {
        TensorCores {
            enabled: !switched_off() && device.features().contains(NEEDED) && subgroups_of_32(info),
            verified: OnceLock::new(),
        }
    }
}

impl GpuContext {
    /// Whether F16 matmul runs on tensor cores here: the device has them and the kernel
    /// passed its self-test on it (run on the first call).
    pub(crate) fn tensor_cores(self: &Arc<Self>) -> bool {
        if !self.tensor_cores.enabled {
            return false;
        }
        if let Some(&verified) = self.tensor_cores.verified.get() {
            return verified;
        }
        // The self-test reads its product back, which a capture cannot: a step captured
        // before any F16 product ran takes the tiled kernel, and the test runs later.
        if self.recording_here() {
            return false;
        }
        *self
            .tensor_cores
            .verified
            .get_or_init(|| exact_product(self, Kernel::MatmulCoop).unwrap_or(false))
    }
}

/// A small integer pattern: every value, product and sum below is exact in f16 and f32.
fn value(i: usize, salt: usize) -> f32 {
    ((i * 7 + salt) % 11) as f32 - 5.0
}

/// The self-test: multiply two 80 x 40 by 40 x 72 F16 matrices (B read transposed from a
/// 72 x 40 buffer) with `kernel` and compare every element with the exact product. 80 and 72
/// leave a full 64 x 64 block and partial edge blocks; 40 leaves a partial K step.
fn exact_product(ctx: &Arc<GpuContext>, kernel: Kernel) -> crate::error::Result<bool> {
    let (batch, m, k, n) = (2, 80, 40, 72);
    let a: Vec<f32> = (0..batch * m * k).map(|i| value(i, 3)).collect();
    let bt: Vec<f32> = (0..batch * n * k).map(|i| value(i, 5)).collect();
    let to_f16 = |v: &[f32]| HostBuffer::F16(v.iter().map(|&x| half::f16::from_f32(x)).collect());
    let ga = GpuStorage::upload(ctx, &to_f16(&a))?;
    let gb = GpuStorage::upload(ctx, &to_f16(&bt))?;
    let la = Layout::contiguous(&[batch, m, k]);
    // B[q][p][j] is bt[q][j][p]: a transposed view, as `x @ w.T` reads.
    let mut lb = Layout::contiguous(&[batch, k, n]);
    lb.strides = vec![n * k, 1, k];
    let out = ga.matmul_with(kernel, &la, &gb, &lb)?;
    let HostBuffer::F32(got) = out.to_host(&Layout::contiguous(&[batch, m, n]))? else {
        return Ok(false);
    };
    for q in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k)
                    .map(|p| a[(q * m + i) * k + p] * bt[(q * n + j) * k + p])
                    .sum();
                if got[(q * m + i) * n + j] != want {
                    return Ok(false);
                }
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    /// The self-test's inputs and products must be exact in f16 and f32, or a correct
    /// kernel could fail it.
    #[test]
    fn self_test_values_are_exact() {
        for i in 0..1000 {
            for salt in [3, 5] {
                let v = value(i, salt);
                assert_eq!(half::f16::from_f32(v).to_f32(), v);
                // With |v| <= 5, sums of 40 products stay integers far below 2^24.
                assert!(v.abs() <= 5.0 && v.fract() == 0.0);
            }
        }
    }

    /// The self-test accepts a correct F16 kernel and refuses a wrong one. No CI adapter has
    /// tensor cores, so the tiled F16 kernel stands in for a correct one, and the BF16 kernel
    /// (which reads the same bits as other numbers) for a wrong one.
    #[test]
    fn the_self_test_tells_a_right_kernel_from_a_wrong_one() {
        let g = match crate::gpu::default_gpu() {
            Ok(g) => g,
            Err(e) => {
                assert!(
                    std::env::var_os("WGRAD_REQUIRE_GPU").is_none(),
                    "WGRAD_REQUIRE_GPU is set but no GPU: {e}"
                );
                eprintln!("no GPU adapter ({e}): self-test not checked");
                return;
            }
        };
        assert_eq!(
            exact_product(&g.0, Kernel::Matmul(DType::F16)).ok(),
            Some(true)
        );
        assert_eq!(
            exact_product(&g.0, Kernel::Matmul(DType::BF16)).ok(),
            Some(false)
        );
    }
}
