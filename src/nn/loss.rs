//! Loss functions, numerically stable (log-sum-exp; no `log(0)` for large logits).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// How per-element losses are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// The mean over all elements (PyTorch's default).
    #[default]
    Mean,
    /// The sum over all elements.
    Sum,
    /// The per-element losses.
    None,
}

fn reduce(loss: Tensor, r: Reduction) -> Result<Tensor> {
    match r {
        Reduction::Mean => loss.mean(),
        Reduction::Sum => loss.sum(),
        Reduction::None => Ok(loss),
    }
}

fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::shapes(
            op,
            a.shape(),
            b.shape(),
            "input and target must have the same shape",
        ));
    }
    Ok(())
}

/// Squared error `(input - target)^2`, averaged (`F.mse_loss`; [`MSELoss`] for other
/// reductions).
pub fn mse_loss(input: &Tensor, target: &Tensor) -> Result<Tensor> {
    MSELoss::new().forward(input, target)
}

/// Absolute error, averaged (`F.l1_loss`; [`L1Loss`] for other reductions).
pub fn l1_loss(input: &Tensor, target: &Tensor) -> Result<Tensor> {
    L1Loss::new().forward(input, target)
}

/// Huber's loss with `delta = 1`, averaged (`F.huber_loss`; [`HuberLoss`] for options).
pub fn huber_loss(input: &Tensor, target: &Tensor) -> Result<Tensor> {
    HuberLoss::new().forward(input, target)
}

/// Binary cross-entropy of logits and 0/1 (or probability) targets, averaged
/// (`F.binary_cross_entropy_with_logits`; [`BCEWithLogitsLoss`] for other reductions).
pub fn binary_cross_entropy_with_logits(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    BCEWithLogitsLoss::new().forward(logits, target)
}

/// Negative log-likelihood of class labels given log-probabilities `[N, C, ...]`
/// (`F.nll_loss`; [`NLLLoss`] for weights, `ignore_index` and reductions).
pub fn nll_loss(log_probs: &Tensor, target: &Tensor) -> Result<Tensor> {
    NLLLoss::new().forward(log_probs, target)
}

/// Cross-entropy of logits `[N, C, ...]` and class labels `[N, ...]` (or class
/// probabilities shaped like the logits), averaged (`F.cross_entropy`;
/// [`CrossEntropyLoss`] for weights, `ignore_index`, label smoothing and reductions).
pub fn cross_entropy(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    CrossEntropyLoss::new().forward(logits, target)
}

/// Binary cross-entropy of probabilities in [0, 1] against targets in [0, 1], averaged
/// (`F.binary_cross_entropy`; [`BCELoss`] for other reductions). The logs are clamped at
/// -100, as PyTorch does, so a probability of 0 or 1 gives a finite loss.
pub fn binary_cross_entropy(input: &Tensor, target: &Tensor) -> Result<Tensor> {
    BCELoss::new().forward(input, target)
}

/// The smooth L1 loss with `beta = 1`, averaged (`F.smooth_l1_loss`; [`SmoothL1Loss`]).
pub fn smooth_l1_loss(input: &Tensor, target: &Tensor) -> Result<Tensor> {
    SmoothL1Loss::new().forward(input, target)
}

/// The Kullback-Leibler divergence of `target` from log-probabilities `input`, summed and
/// divided by the batch size (`F.kl_div(.., reduction="batchmean")`; [`KLDivLoss`]).
pub fn kl_div(input: &Tensor, target: &Tensor) -> Result<Tensor> {
    KLDivLoss::new().forward(input, target)
}

/// The `reduction` option every loss has.
macro_rules! reduction_option {
    ($($t:ty),*) => {$(
        impl $t {
            /// The loss with PyTorch's defaults (a mean; see the type for the others).
            pub fn new() -> Self {
                Self::default()
            }

            /// How the per-element losses combine (default [`Reduction::Mean`]).
            pub fn reduction(mut self, reduction: Reduction) -> Self {
                self.reduction = reduction;
                self
            }
        }
    )*};
}
reduction_option!(
    BCELoss,
    SmoothL1Loss,
    MSELoss,
    L1Loss,
    HuberLoss,
    BCEWithLogitsLoss,
    NLLLoss,
    CrossEntropyLoss
);

/// The options of the losses over class labels.
macro_rules! class_options {
    ($($t:ty),*) => {$(
        impl $t {
            /// A weight per class `[C]` (the mean divides by the weights of the targets).
            pub fn weight(mut self, weight: &Tensor) -> Self {
                self.weight = Some(weight.clone());
                self
            }

            /// Label targets equal to this contribute nothing (and do not count in the mean).
            pub fn ignore_index(mut self, ignore_index: i64) -> Self {
                self.ignore_index = ignore_index;
                self
            }
        }
    )*};
}
class_options!(NLLLoss, CrossEntropyLoss);

/// `nn.MSELoss`: squared error.
#[derive(Debug, Clone, Copy, Default)]
pub struct MSELoss {
    reduction: Reduction,
}

impl MSELoss {
    /// The loss of `input` against `target` (same shapes).
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        if let Some([input, target]) = crate::autocast::widened([input, target])? {
            return self.forward(&input, &target);
        }
        same_shape("mse_loss", input, target)?;
        reduce(input.sub(target)?.square()?, self.reduction)
    }
}

/// `nn.L1Loss`: absolute error.
#[derive(Debug, Clone, Copy, Default)]
pub struct L1Loss {
    reduction: Reduction,
}

impl L1Loss {
    /// The loss of `input` against `target` (same shapes).
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        if let Some([input, target]) = crate::autocast::widened([input, target])? {
            return self.forward(&input, &target);
        }
        same_shape("l1_loss", input, target)?;
        reduce(input.sub(target)?.abs()?, self.reduction)
    }
}

/// `nn.HuberLoss`: `0.5 d^2` where `|d| < delta`, else `delta (|d| - 0.5 delta)`.
#[derive(Debug, Clone, Copy)]
pub struct HuberLoss {
    reduction: Reduction,
    delta: f64,
}

impl Default for HuberLoss {
    fn default() -> Self {
        HuberLoss {
            reduction: Reduction::Mean,
            delta: 1.0,
        }
    }
}

impl HuberLoss {
    /// Where the loss turns from quadratic to linear (positive).
    pub fn delta(mut self, delta: f64) -> Self {
        self.delta = delta;
        self
    }

    /// The loss of `input` against `target` (same shapes).
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        if let Some([input, target]) = crate::autocast::widened([input, target])? {
            return self.forward(&input, &target);
        }
        let delta = self.delta;
        same_shape("huber_loss", input, target)?;
        if !(delta > 0.0 && delta.is_finite()) {
            return Err(Error::invalid(
                "huber_loss",
                format!("delta must be positive, got {delta}"),
            ));
        }
        let d = input.sub(target)?;
        let a = d.abs()?;
        let quadratic = d.square()?.mul_scalar(0.5)?;
        let linear = a.sub_scalar(0.5 * delta)?.mul_scalar(delta)?;
        reduce(
            Tensor::where_cond(&a.lt_scalar(delta)?, &quadratic, &linear)?,
            self.reduction,
        )
    }
}

/// `nn.BCEWithLogitsLoss`, computed stably: `max(x, 0) - x y + log(1 + e^-|x|)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BCEWithLogitsLoss {
    reduction: Reduction,
}

impl BCEWithLogitsLoss {
    /// The loss of `logits` against `target` (same shapes).
    pub fn forward(&self, logits: &Tensor, target: &Tensor) -> Result<Tensor> {
        if let Some([logits, target]) = crate::autocast::widened([logits, target])? {
            return self.forward(&logits, &target);
        }
        same_shape("binary_cross_entropy_with_logits", logits, target)?;
        let t = target.to_dtype(logits.dtype())?;
        let loss = logits
            .relu()?
            .sub(&logits.mul(&t)?)?
            .add(&logits.abs()?.neg()?.exp()?.add_scalar(1.0)?.log()?)?;
        reduce(loss, self.reduction)
    }
}

/// PyTorch's default `ignore_index`: no real class is -100.
const IGNORE_NONE: i64 = -100;

/// `nn.NLLLoss`: the negative log-probability of each target class.
#[derive(Debug, Clone)]
pub struct NLLLoss {
    reduction: Reduction,
    weight: Option<Tensor>,
    ignore_index: i64,
}

impl Default for NLLLoss {
    fn default() -> Self {
        NLLLoss {
            reduction: Reduction::Mean,
            weight: None,
            ignore_index: IGNORE_NONE,
        }
    }
}

impl NLLLoss {
    /// The loss of `log_probs [N, C, ...]` against labels `[N, ...]`.
    pub fn forward(&self, log_probs: &Tensor, target: &Tensor) -> Result<Tensor> {
        if let Some([log_probs, target]) = crate::autocast::widened([log_probs, target])? {
            return self.forward(&log_probs, &target);
        }
        let labels = Labels::check(
            "nll_loss",
            log_probs,
            target,
            self.ignore_index,
            self.weight.as_ref(),
        )?;
        let picked = log_probs
            .gather(1, &labels.safe.unsqueeze(1)?)?
            .squeeze_dim(1)?;
        labels.reduce(picked.neg()?, self.reduction)
    }
}

/// `nn.CrossEntropyLoss`: log-softmax over dim 1 and the negative log-likelihood of class
/// labels, or the cross-entropy with class probabilities shaped like the input.
#[derive(Debug, Clone)]
pub struct CrossEntropyLoss {
    reduction: Reduction,
    weight: Option<Tensor>,
    ignore_index: i64,
    label_smoothing: f64,
}

impl Default for CrossEntropyLoss {
    fn default() -> Self {
        CrossEntropyLoss {
            reduction: Reduction::Mean,
            weight: None,
            ignore_index: IGNORE_NONE,
            label_smoothing: 0.0,
        }
    }
}

impl CrossEntropyLoss {
    /// Mix the targets with the uniform distribution by `label_smoothing` in `[0, 1]`.
    pub fn label_smoothing(mut self, label_smoothing: f64) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }

    /// The loss of `logits [N, C, ...]` (or `[C]`) against labels `[N, ...]` or
    /// probabilities shaped like `logits`.
    pub fn forward(&self, logits: &Tensor, target: &Tensor) -> Result<Tensor> {
        if let Some([logits, target]) = crate::autocast::widened([logits, target])? {
            return self.forward(&logits, &target);
        }
        const OP: &str = "cross_entropy";
        let eps = self.label_smoothing;
        if !(0.0..=1.0).contains(&eps) {
            return Err(Error::invalid(
                OP,
                format!("label_smoothing must be in [0, 1], got {eps}"),
            ));
        }
        // An unbatched input `[C]` is a batch of one.
        if logits.ndim() == 1 {
            let t = if target.dtype().is_float() {
                target.unsqueeze(0)?
            } else {
                target.reshape([1])?
            };
            let loss = self.forward(&logits.unsqueeze(0)?, &t)?;
            return match self.reduction {
                Reduction::None => loss.squeeze_dim(0),
                Reduction::Mean | Reduction::Sum => Ok(loss),
            };
        }
        if logits.ndim() < 2 {
            return Err(Error::bad_shape(
                OP,
                logits.shape(),
                "expected logits [N, C, ...] or [C]",
            ));
        }
        if self.weight.is_none() && eps == 0.0 && !target.dtype().is_float() {
            // Plain class labels: one op where the kernels take the operands.
            Labels::validate(OP, logits, target, self.ignore_index)?;
            let fused = crate::tensor::fused::cross_entropy::cross_entropy(
                logits,
                target,
                self.ignore_index,
                self.reduction,
            )?;
            if let Some(loss) = fused {
                return Ok(loss);
            }
        }
        let c = logits.shape()[1];
        let logp = logits.log_softmax(1)?;
        let weight_shape: Vec<usize> = (0..logits.ndim())
            .map(|d| if d == 1 { c } else { 1 })
            .collect();
        let class_weight = match &self.weight {
            Some(w) => {
                check_weight(OP, w, c)?;
                Some(w.reshape(weight_shape.clone())?)
            }
            None => None,
        };
        if target.dtype().is_float() {
            // Class probabilities: -sum_c w_c p_c log q_c, the mean over the positions.
            same_shape(OP, logits, target)?;
            let p = if eps > 0.0 {
                (target * (1.0 - eps) + eps / c as f64).check()?
            } else {
                target.clone()
            };
            let mut terms = logp.mul(&p)?;
            if let Some(w) = &class_weight {
                terms = terms.mul(w)?;
            }
            let loss = terms.sum_dims([1], false)?.neg()?;
            return reduce(loss, self.reduction);
        }
        let labels = Labels::check(OP, &logp, target, self.ignore_index, self.weight.as_ref())?;
        let nll = logp
            .gather(1, &labels.safe.unsqueeze(1)?)?
            .squeeze_dim(1)?
            .neg()?;
        if eps == 0.0 {
            return labels.reduce(nll, self.reduction);
        }
        // Smoothing: (1 - eps) nll + eps / C * sum_c -w_c log q_c, ignored positions 0; the
        // mean divides both parts by the same (weighted) count, as PyTorch does.
        let mut all = logp.neg()?;
        if let Some(w) = &class_weight {
            all = all.mul(w)?;
        }
        let smooth = all.sum_dims([1], false)?.mul(&labels.keep)?;
        let picked = labels.weighted(nll)?;
        let loss = (picked * (1.0 - eps) + smooth * (eps / c as f64)).check()?;
        match self.reduction {
            Reduction::None => Ok(loss),
            Reduction::Sum => loss.sum(),
            Reduction::Mean => loss.sum()?.div(&labels.denominator()?),
        }
    }
}

/// The cross-entropy of `logits [N, C]` against class labels composed from primitives (the
/// form `tensor/fused/cross_entropy.rs` differentiates under `create_graph`).
pub(crate) fn cross_entropy_composite(
    logits: &Tensor,
    target: &Tensor,
    ignore_index: i64,
    reduction: Reduction,
) -> Result<Tensor> {
    const OP: &str = "cross_entropy";
    let logp = logits.log_softmax_composite(1)?;
    let labels = Labels::check(OP, &logp, target, ignore_index, None)?;
    let nll = logp
        .gather(1, &labels.safe.unsqueeze(1)?)?
        .squeeze_dim(1)?
        .neg()?;
    labels.reduce(nll, reduction)
}

fn check_weight(op: &'static str, w: &Tensor, c: usize) -> Result<()> {
    if w.shape() != [c] || !w.dtype().is_float() {
        return Err(Error::shapes(
            op,
            &[c],
            w.shape(),
            format!(
                "weight must be a float tensor of one value per class ({c}), got {:?}",
                w.dtype()
            ),
        ));
    }
    Ok(())
}

/// Class-label targets, checked: I64, shaped like the input without its class dim, each
/// label in `0..C` or `ignore_index` (else `Err` naming it: PyTorch raises, and a wrapped
/// label would silently train the wrong class).
struct Labels {
    /// The labels with ignored ones replaced by class 0 (safe to gather).
    safe: Tensor,
    /// 1.0 where a label counts, 0.0 where it is ignored.
    keep: Tensor,
    /// The class weight of each label (0 where ignored), when there are weights.
    weight: Option<Tensor>,
}

impl Labels {
    fn check(
        op: &'static str,
        input: &Tensor,
        target: &Tensor,
        ignore_index: i64,
        weight: Option<&Tensor>,
    ) -> Result<Labels> {
        Labels::validate(op, input, target, ignore_index)?;
        let c = input.shape()[1];
        let valid = target.ne_scalar(ignore_index)?;
        let safe = Tensor::where_cond(&valid, target, 0)?;
        let keep = valid.to_dtype(input.dtype())?;
        let weight = match weight {
            Some(w) => {
                check_weight(op, w, c)?;
                let w = w.to_device(input.device())?;
                Some(
                    w.index_select(0, &safe.reshape([-1isize])?)?
                        .reshape(safe.shape().to_vec())?
                        .mul(&keep)?,
                )
            }
            None => None,
        };
        Ok(Labels { safe, keep, weight })
    }

    /// Check the labels' dtype, shape and values against `input [N, C, ...]`.
    fn validate(
        op: &'static str,
        input: &Tensor,
        target: &Tensor,
        ignore_index: i64,
    ) -> Result<()> {
        if target.dtype() != DType::I64 {
            return Err(Error::UnsupportedDType {
                op,
                dtype: target.dtype(),
                shape: target.shape().to_vec(),
                expected: "I64 class labels (or float probabilities shaped like the input)",
            });
        }
        let mut expected = input.shape().to_vec();
        if expected.len() >= 2 {
            expected.remove(1);
        }
        if input.ndim() < 2 || target.shape() != expected.as_slice() {
            return Err(Error::shapes(
                op,
                input.shape(),
                target.shape(),
                "expected input [N, C, d1, ...] and target [N, d1, ...]",
            ));
        }
        let c = input.shape()[1];
        // The labels are few (one per position); they are read on the host to check them,
        // except in a captured step on a GPU, which cannot read back: there the index
        // kernel's own check reports a bad label (at the next readback; `crate::capture`).
        let host = if crate::capture::capturing() && !target.device().is_cpu() {
            Vec::new()
        } else {
            target.to_device(&crate::Device::Cpu)?.to_vec::<i64>()?
        };
        if let Some(&bad) = host
            .iter()
            .find(|&&l| l != ignore_index && !(0..c as i64).contains(&l))
        {
            // "index -1 out of range for dimension 1 of size 3": the label and the classes.
            return Err(Error::IndexOutOfRange {
                op,
                index: bad,
                dim: 1,
                size: c,
                shape: input.shape().to_vec(),
            });
        }
        Ok(())
    }

    /// Per-position losses times their class weight, ignored positions 0.
    fn weighted(&self, loss: Tensor) -> Result<Tensor> {
        match &self.weight {
            Some(w) => loss.mul(w),
            None => loss.mul(&self.keep),
        }
    }

    /// What the mean divides by: the (weighted) number of labels that count.
    fn denominator(&self) -> Result<Tensor> {
        match &self.weight {
            Some(w) => w.sum(),
            None => self.keep.sum(),
        }
    }

    fn reduce(&self, loss: Tensor, r: Reduction) -> Result<Tensor> {
        let loss = self.weighted(loss)?;
        match r {
            Reduction::None => Ok(loss),
            Reduction::Sum => loss.sum(),
            Reduction::Mean => loss.sum()?.div(&self.denominator()?),
        }
    }
}

/// `nn.BCELoss`: `-(y log p + (1 - y) log(1 - p))`, each log clamped at -100.
#[derive(Debug, Clone, Copy, Default)]
pub struct BCELoss {
    reduction: Reduction,
}

impl BCELoss {
    /// The loss of probabilities `input` against `target` (same shapes).
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        if let Some([input, target]) = crate::autocast::widened([input, target])? {
            return self.forward(&input, &target);
        }
        same_shape("binary_cross_entropy", input, target)?;
        let log_p = input.log()?.clamp_min(-100.0)?;
        let log_q = (1.0 - input).log()?.clamp_min(-100.0)?;
        let loss = (target * &log_p + (1.0 - target) * &log_q).neg()?;
        reduce(loss, self.reduction)
    }
}

/// `nn.SmoothL1Loss`: `0.5 d^2 / beta` where `|d| < beta`, else `|d| - 0.5 beta`.
#[derive(Debug, Clone, Copy)]
pub struct SmoothL1Loss {
    reduction: Reduction,
    beta: f64,
}

impl Default for SmoothL1Loss {
    fn default() -> Self {
        SmoothL1Loss {
            reduction: Reduction::Mean,
            beta: 1.0,
        }
    }
}

impl SmoothL1Loss {
    /// Where the loss turns from quadratic to linear (0: the L1 loss).
    pub fn beta(mut self, beta: f64) -> Self {
        self.beta = beta;
        self
    }

    /// The loss of `input` against `target` (same shapes).
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        if let Some([input, target]) = crate::autocast::widened([input, target])? {
            return self.forward(&input, &target);
        }
        let beta = self.beta;
        same_shape("smooth_l1_loss", input, target)?;
        if !(beta >= 0.0 && beta.is_finite()) {
            return Err(Error::invalid(
                "smooth_l1_loss",
                format!("beta must be non-negative, got {beta}"),
            ));
        }
        let d = input.sub(target)?.abs()?;
        if beta == 0.0 {
            return reduce(d, self.reduction);
        }
        let quadratic = d.square()? * (0.5 / beta);
        let linear = &d - 0.5 * beta;
        reduce(
            Tensor::where_cond(&d.lt_scalar(beta)?, &quadratic, &linear)?,
            self.reduction,
        )
    }
}

/// How [`KLDivLoss`] combines the pointwise terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KlReduction {
    /// The sum divided by the batch size (the first dim): the divergence per sample, what
    /// the math means, and PyTorch's recommended mode.
    #[default]
    BatchMean,
    /// The mean over every element.
    Mean,
    /// The sum.
    Sum,
    /// The pointwise terms.
    None,
}

/// `nn.KLDivLoss`: `target * (log(target) - input)`, 0 where `target` is 0; with
/// `log_target`, the target is given as log-probabilities.
#[derive(Debug, Clone, Copy, Default)]
pub struct KLDivLoss {
    reduction: KlReduction,
    log_target: bool,
}

impl KLDivLoss {
    /// `batchmean`, probabilities as targets.
    pub fn new() -> Self {
        Self::default()
    }

    /// How the terms combine.
    pub fn reduction(mut self, reduction: KlReduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Whether the target holds log-probabilities.
    pub fn log_target(mut self, on: bool) -> Self {
        self.log_target = on;
        self
    }

    /// The divergence of `target` from the log-probabilities `input` (same shapes).
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        if let Some([input, target]) = crate::autocast::widened([input, target])? {
            return self.forward(&input, &target);
        }
        same_shape("kl_div", input, target)?;
        let terms = if self.log_target {
            target.exp()? * (target - input)
        } else {
            // xlogy: a zero target contributes 0, not 0 * -inf.
            let positive = target.gt_scalar(0.0)?;
            let safe = Tensor::where_cond(&positive, target, 1.0)?;
            Tensor::where_cond(&positive, &(target * (safe.log()? - input)), 0.0)?
        };
        match self.reduction {
            KlReduction::None => Ok(terms),
            KlReduction::Sum => terms.sum(),
            KlReduction::Mean => terms.mean(),
            KlReduction::BatchMean => {
                let batch = input.shape().first().copied().unwrap_or(1).max(1);
                terms.sum()?.div_scalar(batch as f64)
            }
        }
    }
}
