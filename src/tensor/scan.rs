//! Running products and log-sum-exps along a dim, and Einstein summation. The scans are
//! Hillis-Steele doublings (each step combines every element with the one `2^k` before
//! it: log2(n) elementwise ops), so they are exact compositions with exact gradients,
//! zeros and infinities included.

use super::Tensor;
use crate::error::{Error, Result};
use crate::shape::normalize_dim;

impl Tensor {
    /// `y[i] = x[0] * ... * x[i]` along `dim` (`torch.cumprod`).
    pub fn cumprod(&self, dim: isize) -> Result<Tensor> {
        self.scan("cumprod", dim, |a, b| a.mul(b))
    }

    /// `y[i] = log(exp(x[0]) + ... + exp(x[i]))` along `dim`, without overflow
    /// (`torch.logcumsumexp`).
    pub fn logcumsumexp(&self, dim: isize) -> Result<Tensor> {
        self.require_float("logcumsumexp")?;
        self.scan("logcumsumexp", dim, |a, b| {
            // log(e^a + e^b) = max + log1p(e^-|a - b|); both -inf stays -inf.
            let m = a.maximum(b)?;
            let both_empty = m.eq_scalar(f64::NEG_INFINITY)?;
            let gap = Tensor::where_cond(&both_empty, 0.0, &(a - b).abs()?)?;
            m.add(&gap.neg()?.exp()?.log1p()?)
        })
    }

    /// An inclusive scan along `dim` with an associative `combine(earlier, later)`.
    fn scan(
        &self,
        op: &'static str,
        dim: isize,
        combine: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        self.live()?;
        if self.ndim() == 0 {
            return Ok(self.clone());
        }
        let d = normalize_dim(op, dim, self.shape())? as isize;
        let n = self.shape()[d as usize];
        let mut y = self.clone();
        let mut step = 1;
        while step < n {
            let head = y.narrow(d, 0, step)?;
            let later = combine(&y.narrow(d, 0, n - step)?, &y.narrow(d, step, n - step)?)?;
            y = Tensor::cat(&[&head, &later], d)?;
            step *= 2;
        }
        Ok(y)
    }

    /// Einstein summation over `operands` (`torch.einsum`): `"ij,jk->ik"`, `"bhqd,bhkd->bhqk"`,
    /// `"ii->i"` (a repeated index takes the diagonal), `"i,i->"`; without `->`, the output
    /// has the indices that appear once, in alphabetical order. Ellipses are not supported.
    pub fn einsum(equation: &str, operands: &[&Tensor]) -> Result<Tensor> {
        const OP: &str = "einsum";
        let bad = |msg: String| Error::invalid(OP, format!("{equation:?}: {msg}"));
        let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
        let (inputs, output) = match eq.split_once("->") {
            Some((i, o)) => (i.to_string(), Some(o.to_string())),
            None => (eq.clone(), None),
        };
        let terms: Vec<Vec<char>> = inputs.split(',').map(|t| t.chars().collect()).collect();
        if terms.len() != operands.len() {
            return Err(bad(format!(
                "{} terms for {} operands",
                terms.len(),
                operands.len()
            )));
        }
        if eq.contains('.') || !terms.iter().flatten().all(|c| c.is_ascii_alphabetic()) {
            return Err(bad("only letters name indices (no ellipsis)".into()));
        }
        let output: Vec<char> = match output {
            Some(o) => o.chars().collect(),
            None => {
                let mut once: Vec<char> = ('A'..='z')
                    .filter(|c| terms.iter().flatten().filter(|&x| x == c).count() == 1)
                    .collect();
                once.sort();
                once
            }
        };
        // Every index in order of first appearance, the output's first.
        let mut letters = output.clone();
        for &c in terms.iter().flatten() {
            if !letters.contains(&c) {
                letters.push(c);
            }
        }
        let mut sizes = vec![None; letters.len()];
        let mut aligned = Vec::with_capacity(operands.len());
        for (term, t) in terms.iter().zip(operands) {
            if term.len() != t.ndim() {
                return Err(bad(format!(
                    "term {:?} has {} indices for a tensor of shape {:?}",
                    term.iter().collect::<String>(),
                    term.len(),
                    t.shape()
                )));
            }
            let (mut t, mut term) = ((*t).clone(), term.clone());
            // A repeated index within a term: its diagonal.
            while let Some((i, j)) = repeated(&term) {
                t = diagonal(&t, i, j).map_err(|e| bad(e.to_string()))?;
                term.remove(j);
                let c = term.remove(i);
                term.push(c);
            }
            for (k, c) in term.iter().enumerate() {
                let slot = letters.iter().position(|x| x == c).unwrap_or(0);
                match sizes[slot] {
                    Some(s) if s != t.shape()[k] && s != 1 && t.shape()[k] != 1 => {
                        return Err(bad(format!(
                            "index {c:?} has sizes {s} and {}",
                            t.shape()[k]
                        )))
                    }
                    Some(s) if s != 1 => {}
                    _ => sizes[slot] = Some(t.shape()[k]),
                }
            }
            // Permute to the letters' order and give missing letters a size of 1.
            let order: Vec<usize> = letters
                .iter()
                .filter_map(|c| term.iter().position(|x| x == c))
                .collect();
            let t = t.permute(order.iter().map(|&k| k as isize).collect::<Vec<_>>())?;
            let mut present = t.shape().iter();
            let shape: Vec<usize> = letters
                .iter()
                .map(|c| {
                    if term.contains(c) {
                        present.next().copied().unwrap_or(1)
                    } else {
                        1
                    }
                })
                .collect();
            aligned.push(t.reshape(shape)?);
        }
        if let Some(c) = output
            .iter()
            .find(|c| !terms.iter().flatten().any(|x| x == *c))
        {
            return Err(bad(format!("output index {c:?} is in no input")));
        }
        let mut product = aligned[0].clone();
        for t in &aligned[1..] {
            product = product.mul(t)?;
        }
        let summed: Vec<isize> = (output.len()..letters.len()).map(|d| d as isize).collect();
        if summed.is_empty() {
            Ok(product)
        } else {
            product.sum_dims(summed, false)
        }
    }
}

/// The first pair of positions holding the same index.
fn repeated(term: &[char]) -> Option<(usize, usize)> {
    (0..term.len()).find_map(|i| {
        (i + 1..term.len())
            .find(|&j| term[j] == term[i])
            .map(|j| (i, j))
    })
}

/// The diagonal of dims `i` and `j` (equal sizes), as a last dim.
fn diagonal(t: &Tensor, i: usize, j: usize) -> Result<Tensor> {
    let n = t.shape()[i];
    if t.shape()[j] != n {
        return Err(Error::shapes(
            "einsum",
            t.shape(),
            &[n, t.shape()[j]],
            "a repeated index needs equal sizes",
        ));
    }
    let mut order: Vec<isize> = (0..t.ndim())
        .filter(|&k| k != i && k != j)
        .map(|k| k as isize)
        .collect();
    order.extend([i as isize, j as isize]);
    let moved = t.permute(order)?;
    let mut flat = moved.shape()[..moved.ndim() - 2].to_vec();
    flat.push(n * n);
    let index = Tensor::arange_on(0, (n * n) as i64, (n + 1) as i64, t.device())?;
    moved.reshape(flat)?.index_select(-1, &index)
}
