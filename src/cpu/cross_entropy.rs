//! Cross-entropy of rows of logits against class labels, forward and backward, in one pass
//! per step over each row (its maximum, the sum of exponentials, the gradient) instead of
//! the log-softmax, gather and masking ops. The tensor side is
//! `tensor/fused/cross_entropy.rs`; the GPU's kernels are `shaders/cross_entropy*.wgsl`.
//!
//! Each row's log-sum-exp is computed as `log_softmax`'s (`softmax.rs`): shifted by the
//! row's maximum where it is finite, the sum in f64, so the loss equals the composite's
//! `-log_softmax(x)[label]` to the bit.

use super::softmax::row_max;
use crate::op::math::exp;

/// The three rows of `n` values the forward pass gives for `n` rows of `c` logits (`x`,
/// row-major) and their labels: the loss `lse - x[label]` (0 where the label is `ignore`,
/// as PyTorch skips those), 1 where the label counts and 0 where it is ignored, and the
/// row's log-sum-exp. A label outside `0..c` that is not `ignore` is `Err(label)`.
pub fn forward(x: &[f32], c: usize, labels: &[i64], ignore: i64) -> Result<Vec<f32>, i64> {
    let n = labels.len();
    let mut out = vec![0.0f32; 3 * n];
    let (loss, rest) = out.split_at_mut(n);
    let (keep, lse) = rest.split_at_mut(n);
    for (r, &label) in labels.iter().enumerate() {
        let row = &x[r * c..(r + 1) * c];
        let m = row_max(row);
        let shift = if m.is_infinite() { 0.0 } else { m };
        let sum = super::lanes::sum_of(row, row, |v, _| exp(v - shift));
        lse[r] = (sum.ln() as f32) + shift;
        if label == ignore {
            continue;
        }
        let k = usize::try_from(label)
            .ok()
            .filter(|&k| k < c)
            .ok_or(label)?;
        loss[r] = lse[r] - row[k];
        keep[r] = 1.0;
    }
    Ok(out)
}

/// The logits' gradient `(softmax(x) - onehot(label)) g[row]` for rows whose label counts
/// (0 for ignored rows), from the forward pass's three rows `saved` and each row's upstream
/// gradient `g` (already divided by the count for a mean).
pub fn backward(x: &[f32], c: usize, labels: &[i64], saved: &[f32], g: &[f32]) -> Vec<f32> {
    let n = labels.len();
    let mut dx = super::pool::take::<f32>(n * c);
    let (keep, lse) = (&saved[n..2 * n], &saved[2 * n..3 * n]);
    for (r, d) in dx.chunks_mut(c.max(1)).enumerate().take(n) {
        if keep[r] == 0.0 {
            d.fill(0.0);
            continue;
        }
        let row = &x[r * c..(r + 1) * c];
        for (dv, &v) in d.iter_mut().zip(row) {
            *dv = exp(v - lse[r]) * g[r];
        }
        // The label's term last, as the composite's `-g + e g`.
        if let Some(dv) = usize::try_from(labels[r]).ok().and_then(|k| d.get_mut(k)) {
            *dv -= g[r];
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Losses and gradients against f64 definitions and central differences, with an
    /// ignored row and rows longer than the lanes.
    #[test]
    fn rows_match_the_definitions_in_f64() {
        for c in [1usize, 3, 37] {
            let labels: Vec<i64> = vec![0, (c - 1) as i64, -100, (c / 2) as i64];
            let n = labels.len();
            let x: Vec<f32> = (0..n * c)
                .map(|i| ((i * 7919) % 23) as f32 / 3.0 - 3.0)
                .collect();
            let g: Vec<f32> = vec![0.5, -1.25, 2.0, 1.0];
            let loss64 = |x: &[f64]| -> Vec<f64> {
                x.chunks(c)
                    .zip(&labels)
                    .map(|(row, &t)| {
                        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
                        if t == -100 {
                            0.0
                        } else {
                            lse - row[t as usize]
                        }
                    })
                    .collect()
            };
            let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let saved = forward(&x, c, &labels, -100).expect("labels in range");
            for (r, want) in loss64(&x64).iter().enumerate() {
                assert!((saved[r] as f64 - want).abs() < 1e-5, "c {c} row {r}");
                assert_eq!(saved[n + r], if labels[r] == -100 { 0.0 } else { 1.0 });
            }
            let dx = backward(&x, c, &labels, &saved, &g);
            let objective =
                |x: &[f64]| -> f64 { loss64(x).iter().zip(&g).map(|(l, &w)| l * w as f64).sum() };
            crate::cpu::assert_gradient(objective, &x64, &dx, &format!("c {c}"));
        }
    }

    /// A label outside the classes is the error's value; NaN and infinite logits give the
    /// composite's NaN.
    #[test]
    fn bad_labels_and_special_values() {
        assert_eq!(forward(&[1.0, 2.0], 2, &[2], -100), Err(2));
        assert_eq!(forward(&[1.0, 2.0], 2, &[-1], -100), Err(-1));
        let out = forward(&[1.0, f32::NAN], 2, &[0], -100).expect("in range");
        assert!(out[0].is_nan());
        let out = forward(&[f32::INFINITY, 1.0], 2, &[1], -100).expect("in range");
        assert_eq!(out[0], f32::INFINITY);
    }
}
