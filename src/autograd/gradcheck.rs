//! Checking autograd against numerical differentiation (central differences, as the seed's
//! section on numerical differentiation describes).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Step and tolerances for [`gradcheck`]. The defaults suit f32 functions of moderate size.
#[derive(Debug, Clone, Copy)]
pub struct GradcheckOptions {
    /// Finite-difference step.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance.
    pub rtol: f64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            eps: 1e-3,
            atol: 1e-2,
            rtol: 1e-2,
        }
    }
}

/// Compare the gradients autograd computes for `f` at `inputs` with central finite
/// differences. The scalar differentiated is `sum(f(inputs) * w)` for a fixed random `w`, so
/// every output element matters. Inputs that are not float, or do not require grad, are held
/// constant. Returns `Ok(())` when every gradient element agrees within
/// `atol + rtol * |numerical|`, and an `Err` naming the first input and element that does not.
///
/// ```
/// use wgrad::{gradcheck, GradcheckOptions, Tensor};
/// let x = Tensor::randn(&[3, 4])?.requires_grad_(true)?;
/// gradcheck(|xs| xs[0].tanh()?.sum_dims(&[1], false), &[x], GradcheckOptions::default())?;
/// # Ok::<(), wgrad::Error>(())
/// ```
pub fn gradcheck(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    opts: GradcheckOptions,
) -> Result<()> {
    // Fresh leaves, so the caller's tensors keep their grads.
    let leaves: Vec<Tensor> = inputs
        .iter()
        .map(|t| {
            let c = t.detach().contiguous_copy()?;
            if t.requires_grad() && t.dtype().is_float() {
                c.requires_grad_(true)
            } else {
                Ok(c)
            }
        })
        .collect::<Result<_>>()?;
    let out = f(&leaves)?;
    if !out.dtype().is_float() {
        return Err(Error::invalid(
            "gradcheck",
            "the function's output must be a float tensor",
        ));
    }
    let mut weights_gen = crate::rng::Generator::new(0x5eed);
    let w = Tensor::from_vec(
        weights_gen
            .uniform(out.numel())
            .into_iter()
            .map(|u| u + 0.5)
            .collect(),
        out.shape(),
    )?
    .to_dtype(DType::F64)?
    .to_device(out.device())?;
    // The objective is summed in f64, so that an F64 function is checked to f64 precision.
    let objective = |xs: &[Tensor]| -> Result<f64> {
        let _g = crate::no_grad();
        f(xs)?.to_dtype(DType::F64)?.mul(&w)?.sum()?.item::<f64>()
    };
    out.to_dtype(DType::F64)?.mul(&w)?.sum()?.backward()?;

    for (i, leaf) in leaves.iter().enumerate() {
        if !leaf.requires_grad() {
            continue;
        }
        // Values of any float dtype, read as the f64 they hold exactly.
        let analytic = match leaf.grad() {
            Some(g) => g.to_dtype(DType::F64)?.to_vec::<f64>()?,
            None => vec![0.0; leaf.numel()],
        };
        let base: Vec<f64> = leaf.to_dtype(DType::F64)?.to_vec()?;
        for j in 0..base.len() {
            let probe = |delta: f64| -> Result<f64> {
                let mut v = base.clone();
                v[j] += delta;
                let mut xs = leaves.clone();
                xs[i] = Tensor::from_vec(v, leaf.shape())?
                    .to_dtype(leaf.dtype())?
                    .to_device(leaf.device())?;
                objective(&xs)
            };
            let numeric = (probe(opts.eps)? - probe(-opts.eps)?) / (2.0 * opts.eps);
            let a = analytic[j];
            // Written so that a NaN on either side counts as a mismatch.
            let agrees = (a - numeric).abs() <= opts.atol + opts.rtol * numeric.abs();
            if !agrees {
                return Err(Error::autograd(
                    "gradcheck",
                    format!(
                        "gradient mismatch for input {i} (shape {:?}) at flat index {j}: autograd {a}, finite differences {numeric}",
                        leaf.shape()
                    ),
                ));
            }
        }
    }
    Ok(())
}
