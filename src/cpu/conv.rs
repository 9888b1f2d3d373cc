//! 2-D convolution of contiguous f32 tensors, image by image: the image's windows copied
//! into a column workspace (im2col) that stays in cache, times the weight through gemm; the
//! backward pass likewise per image, the weight's gradient a gemm with the same columns and
//! the input's the transposed product added back window by window (col2im). Images run in
//! parallel, each thread reusing one workspace, in place of the composite path's
//! whole-batch column tensor (tens of megabytes, written once and read once) and its
//! gradient's strided scatter, one pass per kernel tap. The tensor side, with the
//! composite fallback and the backward rule, is `tensor/fused/conv.rs`.

use super::matmul::gemm_slices;
use rayon::prelude::*;

/// Each image's products run on the thread the pool gave it.
const ON_THIS_THREAD: gemm::Parallelism = gemm::Parallelism::None;

/// The sizes of one convolution: input `[n, c, h, w]`, weight `[o, c / groups, kh, kw]`,
/// output `[n, o, oh, ow]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl ConvGeometry {
    /// Input channels per group.
    fn cg(&self) -> usize {
        self.c / self.groups
    }
    /// Output channels per group.
    fn og(&self) -> usize {
        self.o / self.groups
    }
    /// Rows of a group's columns: its input channels times the taps.
    fn ck(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    /// Output positions per image.
    fn positions(&self) -> usize {
        self.oh * self.ow
    }
    fn image_in(&self) -> usize {
        self.c * self.h * self.w
    }
    fn image_out(&self) -> usize {
        self.o * self.positions()
    }
    /// A 1x1 kernel with stride 1 and no padding reads the image itself as its columns.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.padding == 0
    }

    /// The outputs `lo..hi` along an axis of `out` positions whose tap at offset `off`
    /// (`tap * dilation - padding`) lands inside an input of `len`: `0 <= o * stride + off < len`.
    fn inside(&self, off: isize, len: usize, out: usize) -> (usize, usize) {
        let s = self.stride as isize;
        let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
        let last = len as isize - 1 - off;
        let hi = if last < 0 { 0 } else { last / s + 1 };
        let hi = (hi as usize).min(out);
        ((lo as usize).min(hi), hi)
    }

    /// Offset of tap `t` in the padded input's coordinates.
    fn tap_offset(&self, t: usize) -> isize {
        (t * self.dilation) as isize - self.padding as isize
    }

    /// `f(start, channel, input row, inside, tap offset)` for every output row of every
    /// column row (channel and tap): `start` indexes the columns, the input row is `None`
    /// in the padding, `inside` is the part of the output row whose taps fall inside the
    /// input's width and the tap offset is their column's [`ConvGeometry::tap_offset`].
    fn for_each_window_row(
        &self,
        mut f: impl FnMut(usize, usize, Option<usize>, (usize, usize), isize),
    ) {
        let (p, ow) = (self.positions(), self.ow);
        for c in 0..self.cg() {
            for i in 0..self.kh {
                let oy_range = self.inside(self.tap_offset(i), self.h, self.oh);
                for j in 0..self.kw {
                    let row = ((c * self.kh + i) * self.kw + j) * p;
                    let off_x = self.tap_offset(j);
                    let ox_range = self.inside(off_x, self.w, ow);
                    for oy in 0..self.oh {
                        let iy = (oy_range.0..oy_range.1).contains(&oy).then(|| {
                            (oy as isize * self.stride as isize + self.tap_offset(i)) as usize
                        });
                        f(row + oy * ow, c, iy, ox_range, off_x);
                    }
                }
            }
        }
    }
}

/// The columns `[ck, oh * ow]` of one group of one image (`x` its `[cg, h, w]` channels).
fn im2col(g: &ConvGeometry, x: &[f32], cols: &mut [f32]) {
    let (ow, s) = (g.ow, g.stride);
    let plane = g.h * g.w;
    g.for_each_window_row(|at, c, iy, (lo, hi), off_x| {
        let dst = &mut cols[at..at + ow];
        let Some(iy) = iy else {
            dst.fill(0.0);
            return;
        };
        let src = &x[c * plane + iy * g.w..][..g.w];
        dst[..lo].fill(0.0);
        dst[hi..].fill(0.0);
        let first = (lo as isize * s as isize + off_x) as usize;
        if s == 1 {
            dst[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
        } else {
            for (k, d) in dst[lo..hi].iter_mut().enumerate() {
                *d = src[first + k * s];
            }
        }
    });
}

/// The adjoint of [`im2col`]: each column element added into the input element it copied.
fn col2im(g: &ConvGeometry, cols: &[f32], dx: &mut [f32]) {
    let s = g.stride;
    let plane = g.h * g.w;
    g.for_each_window_row(|at, c, iy, (lo, hi), off_x| {
        let Some(iy) = iy else { return };
        let src = &cols[at + lo..at + hi];
        let dst = &mut dx[c * plane + iy * g.w..][..g.w];
        let first = (lo as isize * s as isize + off_x) as usize;
        if s == 1 {
            for (d, &v) in dst[first..first + (hi - lo)].iter_mut().zip(src) {
                *d += v;
            }
        } else {
            for (k, &v) in src.iter().enumerate() {
                dst[first + k * s] += v;
            }
        }
    });
}

thread_local! {
    /// Each thread's column workspaces, kept between convolutions: a fresh half-megabyte
    /// buffer per image run costs a page fault per 4 KiB on its first write.
    static WORKSPACES: std::cell::RefCell<[Vec<f32>; 2]> = const {
        std::cell::RefCell::new([Vec::new(), Vec::new()])
    };
}

/// `f` with this thread's two workspaces, `lens` floats long, of stale contents: every
/// caller writes each element before reading it.
fn with_workspaces<R>(lens: [usize; 2], f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    let mut taken = WORKSPACES.with(|w| std::mem::take(&mut *w.borrow_mut()));
    for (v, &len) in taken.iter_mut().zip(&lens) {
        if v.len() < len {
            v.resize(len, 0.0);
        }
    }
    let [a, b] = &mut taken;
    let r = f(&mut a[..lens[0]], &mut b[..lens[1]]);
    WORKSPACES.with(|w| *w.borrow_mut() = taken);
    r
}

/// The convolution of `x` (`[n, c, h, w]`) with `weight` (`[o, c / groups, kh, kw]`) plus
/// `bias` (`[o]`): `[n, o, oh, ow]`, row-major.
pub fn conv2d_forward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (p, ck, cg, og) = (g.positions(), g.ck(), g.cg(), g.og());
    let mut y = super::pool::take::<f32>(g.n * g.image_out());
    if y.is_empty() {
        return y;
    }
    let workspace = if g.pointwise() { 0 } else { ck * p };
    y.par_chunks_mut(g.image_out())
        .zip(x.par_chunks(g.image_in().max(1)))
        .for_each(|(y_img, x_img)| {
            with_workspaces([workspace, 0], |cols, _| {
                if let Some(b) = bias {
                    for (row, &bo) in y_img.chunks_exact_mut(p).zip(b) {
                        row.fill(bo);
                    }
                }
                for gi in 0..g.groups {
                    let xg = &x_img[gi * cg * g.h * g.w..][..cg * g.h * g.w];
                    let cols: &[f32] = if g.pointwise() {
                        xg
                    } else {
                        im2col(g, xg, cols);
                        cols
                    };
                    let w_g = &weight[gi * og * ck..][..og * ck];
                    let y_g = &mut y_img[gi * og * p..][..og * p];
                    gemm_slices(
                        og,
                        p,
                        ck,
                        y_g,
                        bias.is_some(),
                        w_g,
                        (ck, 1),
                        cols,
                        (p, 1),
                        ON_THIS_THREAD,
                    );
                }
            })
        });
    y
}

/// The gradients of a convolution's input, weight and bias from the output's `dy`
/// (`[n, o, oh, ow]`), each computed only where `need` asks for it.
pub fn conv2d_backward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    need: [bool; 3],
) -> [Option<Vec<f32>>; 3] {
    let [need_x, need_w, need_b] = need;
    let (p, ck, cg, og) = (g.positions(), g.ck(), g.cg(), g.og());
    let weight_len = g.o * ck;
    let mut dx = need_x.then(|| super::pool::take::<f32>(g.n * g.image_in()));
    // Images split into a few runs per thread, each run with its own partial weight
    // gradient; the partials are summed after.
    let parts = (rayon::current_num_threads() * 2).clamp(1, g.n.max(1));
    let per = g.n.div_ceil(parts).max(1);
    let mut runs: Vec<(usize, Option<&mut [f32]>)> = Vec::with_capacity(parts);
    match dx.as_deref_mut() {
        Some(dx) => runs.extend(
            dx.chunks_mut((per * g.image_in()).max(1))
                .enumerate()
                .map(|(k, c)| (k * per, Some(c))),
        ),
        None => runs.extend((0..g.n).step_by(per).map(|first| (first, None))),
    }
    let partials: Vec<Option<Vec<f32>>> = runs
        .into_par_iter()
        .map(|(first, mut dx_run)| {
            let mut dw = need_w.then(|| vec![0.0f32; weight_len]);
            let lens = [
                if g.pointwise() { 0 } else { ck * p },
                if need_x && !g.pointwise() { ck * p } else { 0 },
            ];
            with_workspaces(lens, |cols, dcols| {
                for img in first..(first + per).min(g.n) {
                    let x_img = &x[img * g.image_in()..][..g.image_in()];
                    let dy_img = &dy[img * g.image_out()..][..g.image_out()];
                    let mut dx_img = dx_run
                        .as_deref_mut()
                        .map(|d| &mut d[(img - first) * g.image_in()..][..g.image_in()]);
                    if let Some(d) = dx_img.as_deref_mut() {
                        d.fill(0.0);
                    }
                    for gi in 0..g.groups {
                        let group_in = cg * g.h * g.w;
                        let dy_g = &dy_img[gi * og * p..][..og * p];
                        let w_g = &weight[gi * og * ck..][..og * ck];
                        if let Some(dw) = dw.as_deref_mut() {
                            let xg = &x_img[gi * group_in..][..group_in];
                            let cols: &[f32] = if g.pointwise() {
                                xg
                            } else {
                                im2col(g, xg, cols);
                                cols
                            };
                            // dW_g [og, ck] += dy_g [og, p] @ cols^T [p, ck]
                            let dw_g = &mut dw[gi * og * ck..][..og * ck];
                            gemm_slices(
                                og,
                                ck,
                                p,
                                dw_g,
                                true,
                                dy_g,
                                (p, 1),
                                cols,
                                (1, p),
                                ON_THIS_THREAD,
                            );
                        }
                        if let Some(dx_img) = dx_img.as_deref_mut() {
                            let dx_g = &mut dx_img[gi * group_in..][..group_in];
                            // dcols [ck, p] = W_g^T [ck, og] @ dy_g [og, p]
                            // A pointwise kernel's columns are the image itself.
                            let dst: &mut [f32] = if g.pointwise() { dx_g } else { &mut *dcols };
                            gemm_slices(
                                ck,
                                p,
                                og,
                                dst,
                                false,
                                w_g,
                                (1, ck),
                                dy_g,
                                (p, 1),
                                ON_THIS_THREAD,
                            );
                            if !g.pointwise() {
                                col2im(g, dcols, dx_g);
                            }
                        }
                    }
                }
            });
            dw
        })
        .collect();
    let dw = need_w.then(|| {
        let mut total = vec![0.0f32; weight_len];
        for part in partials.iter().flatten() {
            for (t, &v) in total.iter_mut().zip(part) {
                *t += v;
            }
        }
        total
    });
    let db = need_b.then(|| {
        let mut totals = vec![0.0f64; g.o];
        for dy_img in dy.chunks_exact(g.image_out().max(1)) {
            for (t, row) in totals.iter_mut().zip(dy_img.chunks_exact(p.max(1))) {
                *t += super::simd::vectorized(
                    #[inline(always)]
                    || super::lanes::sum(row),
                );
            }
        }
        totals.into_iter().map(|t| t as f32).collect()
    });
    [dx, dw, db]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution by its definition, in f64.
    fn reference(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Vec<f64> {
        let mut y = vec![0.0; g.n * g.image_out()];
        for n in 0..g.n {
            for o in 0..g.o {
                let gi = o / g.og();
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut acc = 0.0;
                        for c in 0..g.cg() {
                            for i in 0..g.kh {
                                for j in 0..g.kw {
                                    let iy = (oy * g.stride + i * g.dilation) as isize
                                        - g.padding as isize;
                                    let ix = (ox * g.stride + j * g.dilation) as isize
                                        - g.padding as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xi = ((n * g.c + gi * g.cg() + c) * g.h + iy as usize)
                                        * g.w
                                        + ix as usize;
                                    let wi = ((o * g.cg() + c) * g.kh + i) * g.kw + j;
                                    acc += x[xi] as f64 * w[wi] as f64;
                                }
                            }
                        }
                        y[((n * g.o + o) * g.oh + oy) * g.ow + ox] = acc;
                    }
                }
            }
        }
        y
    }

    fn geometry(
        n: usize,
        c: usize,
        hw: (usize, usize),
        o: usize,
        k: (usize, usize),
        spdg: [usize; 4],
    ) -> ConvGeometry {
        let [stride, padding, dilation, groups] = spdg;
        let out = |len: usize, k: usize| (len + 2 * padding - (k - 1) * dilation - 1) / stride + 1;
        ConvGeometry {
            n,
            c,
            h: hw.0,
            w: hw.1,
            o,
            kh: k.0,
            kw: k.1,
            oh: out(hw.0, k.0),
            ow: out(hw.1, k.1),
            stride,
            padding,
            dilation,
            groups,
        }
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// Forward against the definition; backward against the adjoint identity
    /// `<dy, conv(x, w)> = <dx, x>` per operand (the convolution is bilinear, so its
    /// gradients are exact adjoints): `<dy, conv(x', w)> = <dx(dy), x'>` for any `x'`.
    #[test]
    fn matches_the_definition_and_its_adjoints() {
        let cases = [
            geometry(2, 3, (7, 6), 4, (3, 3), [1, 1, 1, 1]),
            geometry(3, 4, (9, 8), 6, (3, 2), [2, 2, 1, 2]),
            geometry(2, 2, (8, 8), 2, (3, 3), [1, 3, 2, 1]),
            geometry(2, 4, (5, 5), 4, (1, 1), [1, 0, 1, 1]),
            geometry(2, 4, (5, 5), 8, (1, 1), [2, 0, 1, 4]),
            geometry(1, 1, (4, 4), 1, (4, 4), [1, 0, 1, 1]),
        ];
        for g in cases {
            let x = values(g.n * g.image_in(), 1);
            let w = values(g.o * g.ck(), 2);
            let b = values(g.o, 3);
            let y = conv2d_forward(&g, &x, &w, Some(&b));
            let want = reference(&g, &x, &w);
            for (k, (&got, &r)) in y.iter().zip(&want).enumerate() {
                let with_bias = r + b[(k / g.positions()) % g.o] as f64;
                assert!(
                    (got as f64 - with_bias).abs() < 1e-4,
                    "{g:?} at {k}: {got} vs {with_bias}"
                );
            }
            let dy = values(y.len(), 4);
            let [dx, dw, db] = conv2d_backward(&g, &x, &w, &dy, [true; 3]);
            // <dy, conv(probe)> against <probe, gradient>, the probe in the place of x or w.
            let adjoint =
                |what: &str, probe: &[f32], y_of_probe: Vec<f64>, grad: Option<Vec<f32>>| {
                    let lhs: f64 = y_of_probe
                        .iter()
                        .zip(&dy)
                        .map(|(&a, &b)| a * b as f64)
                        .sum();
                    let grad = grad.unwrap_or_default();
                    assert_eq!(grad.len(), probe.len(), "{g:?} {what}");
                    let rhs: f64 = probe
                        .iter()
                        .zip(&grad)
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum();
                    assert!(
                        (lhs - rhs).abs() < 1e-3 * (1.0 + lhs.abs()),
                        "{g:?} {what}: {lhs} vs {rhs}"
                    );
                };
            let probe_x = values(x.len(), 5);
            adjoint("dx", &probe_x, reference(&g, &probe_x, &w), dx);
            let probe_w = values(w.len(), 6);
            adjoint("dw", &probe_w, reference(&g, &x, &probe_w), dw);
            let db = db.unwrap_or_default();
            assert_eq!(db.len(), g.o);
            for (o, &got) in db.iter().enumerate() {
                let want: f64 = dy
                    .chunks(g.positions())
                    .skip(o)
                    .step_by(g.o)
                    .flatten()
                    .map(|&v| v as f64)
                    .sum();
                assert!((got as f64 - want).abs() < 1e-3, "{g:?} db[{o}]");
            }
        }
    }
}
