//! Average pooling of contiguous f32 `[planes, h, w]` over `k x k` windows `stride`
//! apart, and its gradient, plane by plane: in place of a reduction over the windows'
//! two innermost dims (runs of `k` elements, each a call of the generic reduction) and a
//! strided scatter per tap backward. The tensor side is `tensor/fused/pool.rs`.

use rayon::prelude::*;

/// The sizes of an average pool: `planes` images of `h x w`, output `oh x ow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeometry {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub oh: usize,
    pub ow: usize,
}

impl PoolGeometry {
    fn plane_in(&self) -> usize {
        self.h * self.w
    }
    fn plane_out(&self) -> usize {
        self.oh * self.ow
    }
}

/// `f(input plane, output plane)` for every plane pair, in parallel where there is enough.
fn planes<'a>(
    g: &PoolGeometry,
    a: &'a [f32],
    a_plane: usize,
    b: &mut [f32],
    b_plane: usize,
    f: impl Fn(&'a [f32], &mut [f32]) + Sync,
) {
    if a_plane == 0 || b_plane == 0 {
        return;
    }
    if a.len() + b.len() >= super::PARALLEL_THRESHOLD && g.planes > 1 {
        b.par_chunks_mut(b_plane)
            .zip(a.par_chunks(a_plane))
            .for_each(|(b, a)| f(a, b));
    } else {
        b.chunks_mut(b_plane)
            .zip(a.chunks(a_plane))
            .for_each(|(b, a)| f(a, b));
    }
}

/// The mean of each window.
pub fn avg_pool2d_forward(g: &PoolGeometry, x: &[f32]) -> Vec<f32> {
    let mut y = super::pool::take::<f32>(g.planes * g.plane_out());
    let scale = 1.0 / (g.k * g.k) as f32;
    planes(g, x, g.plane_in(), &mut y, g.plane_out(), |x, y| {
        for (oy, row) in y.chunks_exact_mut(g.ow).enumerate() {
            row.fill(0.0);
            for i in 0..g.k {
                let src = &x[(oy * g.stride + i) * g.w..][..g.w];
                for (ox, d) in row.iter_mut().enumerate() {
                    let start = ox * g.stride;
                    *d += src[start..start + g.k].iter().sum::<f32>();
                }
            }
            for d in row.iter_mut() {
                *d *= scale;
            }
        }
    });
    y
}

/// Each output's gradient spread evenly over its window (summed where windows overlap).
pub fn avg_pool2d_backward(g: &PoolGeometry, dy: &[f32]) -> Vec<f32> {
    let mut dx = super::pool::take::<f32>(g.planes * g.plane_in());
    let scale = 1.0 / (g.k * g.k) as f32;
    planes(g, dy, g.plane_out(), &mut dx, g.plane_in(), |dy, dx| {
        dx.fill(0.0);
        for (oy, row) in dy.chunks_exact(g.ow).enumerate() {
            for i in 0..g.k {
                let dst = &mut dx[(oy * g.stride + i) * g.w..][..g.w];
                for (ox, &v) in row.iter().enumerate() {
                    let start = ox * g.stride;
                    for d in &mut dst[start..start + g.k] {
                        *d += v * scale;
                    }
                }
            }
        }
    });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the definition, and the gradient against the adjoint identity
    /// `<dy, pool(x)> = <backward(dy), x>` (pooling is linear).
    #[test]
    fn matches_the_definition_and_its_adjoint() {
        for (h, w, k, stride) in [(6, 6, 2, 2), (7, 5, 3, 1), (9, 8, 2, 3), (4, 4, 4, 1)] {
            let out = |len: usize| (len - k) / stride + 1;
            let g = PoolGeometry {
                planes: 3,
                h,
                w,
                k,
                stride,
                oh: out(h),
                ow: out(w),
            };
            let x: Vec<f32> = (0..g.planes * h * w)
                .map(|i| ((i * 37) % 11) as f32 - 5.0)
                .collect();
            let y = avg_pool2d_forward(&g, &x);
            for p in 0..g.planes {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut sum = 0.0f64;
                        for i in 0..k {
                            for j in 0..k {
                                sum +=
                                    x[p * h * w + (oy * stride + i) * w + ox * stride + j] as f64;
                            }
                        }
                        let got = y[(p * g.oh + oy) * g.ow + ox] as f64;
                        assert!((got - sum / (k * k) as f64).abs() < 1e-5, "{g:?}");
                    }
                }
            }
            let dy: Vec<f32> = (0..y.len()).map(|i| ((i * 13) % 7) as f32 - 3.0).collect();
            let dx = avg_pool2d_backward(&g, &dy);
            assert_eq!(dx.len(), x.len());
            let lhs: f64 = dy.iter().zip(&y).map(|(&a, &b)| a as f64 * b as f64).sum();
            let rhs: f64 = dx.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum();
            assert!((lhs - rhs).abs() < 1e-3, "{g:?}: {lhs} vs {rhs}");
        }
    }
}
