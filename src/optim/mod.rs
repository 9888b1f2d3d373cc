//! Optimizers with PyTorch's update rules, learning-rate schedulers and gradient clipping.
//! Updates are tensor ops on the parameters' own device, run without recording a graph.
//!
//! ```
//! use wgrad::optim::{Optimizer, Sgd};
//! use wgrad::Tensor;
//! let p = Tensor::new([1.0f32, -2.0])?.requires_grad_(true)?;
//! let mut opt = Sgd::new(vec![p.clone()], 0.1).momentum(0.9);
//! for _ in 0..3 {
//!     opt.zero_grad();
//!     p.square()?.sum()?.backward()?;
//!     opt.step()?;
//! }
//! assert!(p.abs()?.sum()?.item::<f64>()? < 3.0);
//! # Ok::<(), wgrad::Error>(())
//! ```

mod fused;
mod grad_scaler;
mod schedulers;
mod step_scalars;

pub(crate) use fused::FUSED_PROGRAMS;
pub use grad_scaler::GradScaler;
pub use schedulers::{CosineAnnealingLr, LrScheduler, SchedulerState, StepLr};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use step_scalars::StepScalars;

/// An optimizer over a fixed list of parameters.
pub trait Optimizer {
    /// Update every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;
    /// The parameters.
    fn params(&self) -> &[Tensor];
    /// The learning rate.
    fn lr(&self) -> f64;
    /// Change the learning rate (schedulers do).
    fn set_lr(&mut self, lr: f64);
    /// Per-parameter state tensors with names (`{index}.{name}`), for checkpoints.
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Restore state written by [`Optimizer::state`] (names must match this optimizer's).
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()>;
    /// Forget the parameters' gradients.
    fn zero_grad(&self) {
        for p in self.params() {
            p.zero_grad();
        }
    }
}

/// A boxed optimizer is one, so that the optimizer can be chosen at run time
/// (`Box<dyn Optimizer + Send>`).
impl<O: Optimizer + ?Sized> Optimizer for Box<O> {
    fn step(&mut self) -> Result<()> {
        (**self).step()
    }
    fn params(&self) -> &[Tensor] {
        (**self).params()
    }
    fn lr(&self) -> f64 {
        (**self).lr()
    }
    fn set_lr(&mut self, lr: f64) {
        (**self).set_lr(lr)
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        (**self).state()
    }
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        (**self).load_state(state)
    }
    fn zero_grad(&self) {
        (**self).zero_grad()
    }
}

/// Builder methods that each set one f64 hyper-parameter.
macro_rules! setters {
    ($t:ty { $($(#[$doc:meta])* $name:ident: $field:ident),* $(,)? }) => {
        impl $t {
            $($(#[$doc])* pub fn $name(mut self, value: f64) -> Self {
                self.$field = value;
                self
            })*
        }
    };
}

/// `params`, `lr` and `set_lr` for optimizers with `params` and `lr` fields.
macro_rules! common_accessors {
    () => {
        fn params(&self) -> &[Tensor] {
            &self.params
        }
        fn lr(&self) -> f64 {
            self.lr
        }
        fn set_lr(&mut self, lr: f64) {
            self.lr = lr;
            if let Some(s) = &self.scalars {
                s.set_lr(lr);
            }
        }
    };
}

/// Each parameter with its gradient (parameters without one are skipped), under no_grad.
fn with_grads(
    params: &[Tensor],
    mut f: impl FnMut(usize, &Tensor, Tensor) -> Result<()>,
) -> Result<()> {
    let _g = crate::no_grad();
    for (i, p) in params.iter().enumerate() {
        let Some(g) = p.grad() else { continue };
        if p.dtype().is_half() {
            // A 16-bit parameter is updated in f32 (its state, made from the gradient, is
            // f32 too) and rounded once when written back.
            let wide = p.to_dtype(DType::F32)?;
            f(i, &wide, g.to_dtype(DType::F32)?)?;
            p.copy_(&wide)?;
        } else {
            f(i, p, g)?;
        }
    }
    Ok(())
}

/// `{index}.{name}` entries of per-parameter slots.
fn named_slots(slots: &[(&str, &Vec<Option<Tensor>>)]) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for (name, v) in slots {
        out.extend(
            v.iter()
                .enumerate()
                .filter_map(|(i, t)| t.as_ref().map(|t| (format!("{i}.{name}"), t.clone()))),
        );
    }
    out
}

/// Fill per-parameter slots from `{index}.{name}` entries; unknown names are errors.
fn load_slots(
    op: &'static str,
    state: &[(String, Tensor)],
    params: &[Tensor],
    slots: &mut [(&str, &mut Vec<Option<Tensor>>)],
) -> Result<()> {
    for (key, t) in state {
        let (i, name) = key
            .split_once('.')
            .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n)))
            .ok_or_else(|| Error::invalid(op, format!("unexpected state entry {key:?}")))?;
        let p = params.get(i).ok_or_else(|| {
            Error::invalid(
                op,
                format!(
                    "state entry {key:?} names parameter {i}, but there are {}",
                    params.len()
                ),
            )
        })?;
        if t.shape() != p.shape() {
            return Err(Error::shapes(
                op,
                p.shape(),
                t.shape(),
                format!("state entry {key:?} does not fit its parameter"),
            ));
        }
        let slot = slots
            .iter_mut()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| Error::invalid(op, format!("unexpected state entry {key:?}")))?;
        // A copy of its own, in the dtype the optimizer keeps state in (f32 for a 16-bit
        // parameter), since the state is updated in place (as PyTorch's `load_state_dict`
        // copies).
        let dtype = if p.dtype().is_half() {
            DType::F32
        } else {
            p.dtype()
        };
        slot.1[i] = Some(t.to_device(p.device())?.to_dtype(dtype)?.deep_clone()?);
    }
    Ok(())
}

/// Whether the update of `params` runs fused (`fused.rs`): fusion is on, and there are
/// parameters. Callers also ask that the state exist (a first step creates it with the
/// ops), so that no step makes scalar tensors that no fused update reads.
fn fusable(params: &[Tensor]) -> bool {
    !params.is_empty() && !crate::storage::fused::fusion_disabled()
}

/// A number as the one-element tensor a fused update of `params` reads: `kept` when the
/// optimizer keeps it on the device already (`StepScalars`), else a new one.
fn scalar_tensor(params: &[Tensor], kept: Option<&Tensor>, value: f64) -> Result<Tensor> {
    match (kept, params.first()) {
        (Some(t), _) => Ok(t.clone()),
        (None, Some(p)) => Tensor::full_on([], value, p.device()),
        (None, None) => Tensor::scalar(value as f32),
    }
}

/// The one-element tensors that a fused update read at its last step, one per number it
/// reads (its slot), with their values: a number that stays the same from step to step (a
/// constant learning rate) is not made again, which on a GPU is a fill kernel per step.
/// Nothing writes them (the updates only read them), so a kept tensor holds its value.
#[derive(Default)]
struct KeptScalars(Vec<Option<(u64, Tensor)>>);

impl KeptScalars {
    /// `scalar_tensor` for the number in `slot`, reusing the slot's tensor while its value
    /// and device stay.
    fn get(
        &mut self,
        slot: usize,
        params: &[Tensor],
        kept: Option<&Tensor>,
        value: f64,
    ) -> Result<Tensor> {
        if kept.is_some() {
            return scalar_tensor(params, kept, value);
        }
        if self.0.len() <= slot {
            self.0.resize(slot + 1, None);
        }
        let device = params.first().map(|p| p.device());
        let bits = value.to_bits();
        if let Some((b, t)) = &self.0[slot] {
            if *b == bits && Some(t.device()) == device {
                return Ok(t.clone());
            }
        }
        // The old tensor goes first, so that a changed number takes its buffer back from
        // the pool: the step then binds the buffers the step before it did.
        self.0[slot] = None;
        let t = scalar_tensor(params, None, value)?;
        self.0[slot] = Some((bits, t.clone()));
        Ok(t)
    }
}

/// The `step` entry of a state list: the count on the device once a step was captured
/// (replays count there), else the Rust one.
fn step_entry(step: u64, scalars: &Option<StepScalars>) -> Option<(String, Tensor)> {
    let t = match scalars {
        Some(s) => s.step.to_dtype(DType::I64),
        None => Tensor::scalar(step as i64),
    };
    t.ok().map(|t| ("step".to_string(), t))
}

/// Take the `step` entry out of a state list.
fn take_step(state: &[(String, Tensor)], step: &mut u64) -> Result<Vec<(String, Tensor)>> {
    let mut rest = Vec::new();
    for (k, t) in state {
        if k == "step" {
            *step = t.item::<i64>()?.max(0) as u64;
        } else {
            rest.push((k.clone(), t.clone()));
        }
    }
    Ok(rest)
}

/// PyTorch's checks of an optimizer's hyper-parameters, made at each step (the
/// constructors and setters cannot fail): every value finite and non-negative, and each
/// `(name, value, below)` under its bound when it has one (Adam's betas below 1).
fn check_hyper(op: &'static str, values: &[(&str, f64, Option<f64>)]) -> Result<()> {
    for &(name, v, below) in values {
        let in_range = v.is_finite() && v >= 0.0 && below.is_none_or(|b| v < b);
        if !in_range {
            let bound = below.map_or(String::new(), |b| format!(" and below {b}"));
            return Err(Error::invalid(
                op,
                format!("invalid {name}: {v} (it must be finite, at least 0{bound})"),
            ));
        }
    }
    Ok(())
}

fn add_weight_decay(g: Tensor, p: &Tensor, wd: f64) -> Result<Tensor> {
    if wd == 0.0 {
        Ok(g)
    } else {
        g.add(&p.mul_scalar(wd)?)
    }
}

/// Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.
pub struct Sgd {
    params: Vec<Tensor>,
    lr: f64,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    nesterov: bool,
    buffers: Vec<Option<Tensor>>,
    /// Device copies of the numbers that change between steps, once captured.
    scalars: Option<StepScalars>,
    /// The one-element tensors of recent steps' numbers.
    kept: KeptScalars,
}

impl Sgd {
    /// Plain SGD with learning rate `lr`.
    pub fn new(params: Vec<Tensor>, lr: f64) -> Sgd {
        let n = params.len();
        Sgd {
            params,
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            buffers: vec![None; n],
            scalars: None,
            kept: KeptScalars::default(),
        }
    }
    /// Nesterov momentum.
    pub fn nesterov(mut self, on: bool) -> Self {
        self.nesterov = on;
        self
    }
}

setters!(Sgd {
    /// Momentum factor.
    momentum: momentum,
    /// Dampening of the momentum.
    dampening: dampening,
    /// L2 penalty added to the gradient.
    weight_decay: weight_decay,
});

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        check_hyper(
            "Sgd",
            &[
                ("learning rate", self.lr, None),
                ("momentum", self.momentum, None),
                ("dampening", self.dampening, None),
                ("weight decay", self.weight_decay, None),
            ],
        )?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::invalid(
                "Sgd",
                "Nesterov momentum requires a momentum and zero dampening",
            ));
        }
        let (lr, m, d, wd, nesterov) = (
            self.lr,
            self.momentum,
            self.dampening,
            self.weight_decay,
            self.nesterov,
        );
        let ready = m == 0.0 || step_scalars::ready(&self.params, &self.buffers);
        let scalars = StepScalars::for_step(&mut self.scalars, "Sgd", &self.params, ready, lr, 0)?;
        let lr_dev = scalars.map(|s| &s.lr);
        let fused_lr = if ready && wd == 0.0 && fusable(&self.params) {
            Some(self.kept.get(0, &self.params, lr_dev, lr)?)
        } else {
            None
        };
        let buffers = &mut self.buffers;
        with_grads(&self.params, |i, p, g| {
            if let Some(lr_t) = &fused_lr {
                let done = match &buffers[i] {
                    _ if m == 0.0 => fused::sgd(p, &g, lr_t)?,
                    Some(b) => fused::sgd_momentum(p, &g, b, lr_t, (m, d, nesterov))?,
                    None => false,
                };
                if done {
                    return Ok(());
                }
            }
            let mut g = add_weight_decay(g, p, wd)?;
            if m != 0.0 {
                let buf = match buffers[i].take() {
                    None => g.deep_clone()?,
                    Some(b) => {
                        b.mul_(m)?;
                        b.add_(&g.mul_scalar(1.0 - d)?)?;
                        b
                    }
                };
                g = if nesterov {
                    g.add(&buf.mul_scalar(m)?)?
                } else {
                    buf.clone()
                };
                buffers[i] = Some(buf);
            }
            p.sub_(&step_scalars::times(&g, lr, lr_dev)?)?;
            Ok(())
        })
    }
    common_accessors!();
    fn state(&self) -> Vec<(String, Tensor)> {
        named_slots(&[("momentum_buffer", &self.buffers)])
    }
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        load_slots(
            "Sgd::load_state",
            state,
            &self.params,
            &mut [("momentum_buffer", &mut self.buffers)],
        )
    }
}

/// Adam, and AdamW (decoupled weight decay) with [`Adam::adamw`].
pub struct Adam {
    params: Vec<Tensor>,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
    step: u64,
    m: Vec<Option<Tensor>>,
    v: Vec<Option<Tensor>>,
    /// Device copies of the numbers that change between steps, once captured.
    scalars: Option<StepScalars>,
    /// The one-element tensors of recent steps' numbers.
    kept: KeptScalars,
}

impl Adam {
    /// Adam with PyTorch's defaults (betas 0.9, 0.999; eps 1e-8; no weight decay).
    pub fn new(params: Vec<Tensor>, lr: f64) -> Adam {
        let n = params.len();
        Adam {
            params,
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            step: 0,
            m: vec![None; n],
            v: vec![None; n],
            scalars: None,
            kept: KeptScalars::default(),
        }
    }
    /// AdamW: weight decay applied to the parameters, not the gradient (default 0.01).
    pub fn adamw(params: Vec<Tensor>, lr: f64) -> Adam {
        Adam {
            decoupled: true,
            weight_decay: 0.01,
            ..Adam::new(params, lr)
        }
    }
    /// Decay rates of the moment estimates.
    pub fn betas(mut self, b1: f64, b2: f64) -> Self {
        self.betas = (b1, b2);
        self
    }
}

setters!(Adam {
    /// Term added to the denominator.
    eps: eps,
    /// Weight decay (L2 for Adam, decoupled for AdamW).
    weight_decay: weight_decay,
});

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        check_hyper(
            "Adam",
            &[
                ("learning rate", self.lr, None),
                ("beta 1", self.betas.0, Some(1.0)),
                ("beta 2", self.betas.1, Some(1.0)),
                ("eps", self.eps, None),
                ("weight decay", self.weight_decay, None),
            ],
        )?;
        let ready = step_scalars::ready(&self.params, &self.m);
        let scalars = StepScalars::for_step(
            &mut self.scalars,
            "Adam",
            &self.params,
            ready,
            self.lr,
            self.step,
        )?;
        self.step += 1;
        let (lr, (b1, b2), eps, wd, decoupled, t) = (
            self.lr,
            self.betas,
            self.eps,
            self.weight_decay,
            self.decoupled,
            self.step as i32,
        );
        // The step size lr / (1 - b1^t), 1 - b2^t and the decoupled decay 1 - lr wd: Rust
        // numbers, or tensors on the device once the step is captured.
        let on_device = match scalars {
            Some(s) => {
                s.advance()?;
                let c2 = s.bias_correction(b2)?.sqrt()?;
                Some((
                    s.lr.div(&s.bias_correction(b1)?)?,
                    c2,
                    s.lr.mul_scalar(-wd)?.add_scalar(1.0)?,
                ))
            }
            None => None,
        };
        // The fused update's step size, sqrt(1 - b2^t) and decay as one-element tensors
        // (L2 weight decay, which changes the gradient, takes the ops).
        let fused_scalars = if ready && (decoupled || wd == 0.0) && fusable(&self.params) {
            Some(match &on_device {
                Some((step_size, c2_sqrt, decay)) => {
                    [step_size.clone(), c2_sqrt.clone(), decay.clone()]
                }
                None => {
                    let (kept, params) = (&mut self.kept, &self.params);
                    let mut host = |slot: usize, v: f64| kept.get(slot, params, None, v);
                    [
                        host(0, lr / (1.0 - b1.powi(t)))?,
                        host(1, (1.0 - b2.powi(t)).sqrt())?,
                        host(2, if decoupled { 1.0 - lr * wd } else { 1.0 })?,
                    ]
                }
            })
        } else {
            None
        };
        let (ms, vs) = (&mut self.m, &mut self.v);
        with_grads(&self.params, |i, p, g| {
            if let (Some(sc), Some(m), Some(v)) = (&fused_scalars, &ms[i], &vs[i]) {
                let scalars = [&sc[0], &sc[1], &sc[2]];
                if fused::adam(p, &g, m, v, scalars, (b1, b2, eps))? {
                    return Ok(());
                }
            }
            let g = if decoupled {
                if wd != 0.0 {
                    match &on_device {
                        Some((_, _, decay)) => p.mul_(decay)?,
                        None => p.mul_(1.0 - lr * wd)?,
                    };
                }
                g
            } else {
                add_weight_decay(g, p, wd)?
            };
            let m = match ms[i].take() {
                None => g.mul_scalar(1.0 - b1)?,
                Some(m) => {
                    m.mul_(b1)?;
                    m.add_(&g.mul_scalar(1.0 - b1)?)?;
                    m
                }
            };
            let v = match vs[i].take() {
                None => g.square()?.mul_scalar(1.0 - b2)?,
                Some(v) => {
                    v.mul_(b2)?;
                    v.add_(&g.square()?.mul_scalar(1.0 - b2)?)?;
                    v
                }
            };
            let update = match &on_device {
                Some((step_size, c2_sqrt, _)) => {
                    let denom = v.sqrt()?.div(c2_sqrt)?.add_scalar(eps)?;
                    m.div(&denom)?.mul(step_size)?
                }
                None => {
                    let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                    let denom = v.sqrt()?.div_scalar(c2.sqrt())?.add_scalar(eps)?;
                    m.div(&denom)?.mul_scalar(lr / c1)?
                }
            };
            p.sub_(&update)?;
            ms[i] = Some(m);
            vs[i] = Some(v);
            Ok(())
        })
    }
    common_accessors!();
    fn state(&self) -> Vec<(String, Tensor)> {
        let mut s = named_slots(&[("exp_avg", &self.m), ("exp_avg_sq", &self.v)]);
        s.extend(step_entry(self.step, &self.scalars));
        s
    }
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let rest = take_step(state, &mut self.step)?;
        if let Some(s) = &self.scalars {
            s.step.fill_(self.step as f64)?;
        }
        load_slots(
            "Adam::load_state",
            &rest,
            &self.params,
            &mut [("exp_avg", &mut self.m), ("exp_avg_sq", &mut self.v)],
        )
    }
}

/// RMSprop (PyTorch's, uncentered, without momentum by default).
pub struct RmsProp {
    params: Vec<Tensor>,
    lr: f64,
    alpha: f64,
    eps: f64,
    weight_decay: f64,
    momentum: f64,
    square_avg: Vec<Option<Tensor>>,
    buffers: Vec<Option<Tensor>>,
    /// Device copies of the numbers that change between steps, once captured.
    scalars: Option<StepScalars>,
    /// The one-element tensors of recent steps' numbers.
    kept: KeptScalars,
}

impl RmsProp {
    /// RMSprop with alpha 0.99 and eps 1e-8.
    pub fn new(params: Vec<Tensor>, lr: f64) -> RmsProp {
        let n = params.len();
        RmsProp {
            params,
            lr,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            square_avg: vec![None; n],
            buffers: vec![None; n],
            scalars: None,
            kept: KeptScalars::default(),
        }
    }
}

setters!(RmsProp {
    /// Smoothing constant.
    alpha: alpha,
    /// Term added to the denominator.
    eps: eps,
    /// L2 penalty.
    weight_decay: weight_decay,
    /// Momentum factor.
    momentum: momentum,
});

impl Optimizer for RmsProp {
    fn step(&mut self) -> Result<()> {
        check_hyper(
            "RmsProp",
            &[
                ("learning rate", self.lr, None),
                ("alpha", self.alpha, None),
                ("eps", self.eps, None),
                ("weight decay", self.weight_decay, None),
                ("momentum", self.momentum, None),
            ],
        )?;
        let (lr, a, eps, wd, mom) = (
            self.lr,
            self.alpha,
            self.eps,
            self.weight_decay,
            self.momentum,
        );
        let ready = step_scalars::ready(&self.params, &self.square_avg)
            && (mom == 0.0 || step_scalars::ready(&self.params, &self.buffers));
        let scalars =
            StepScalars::for_step(&mut self.scalars, "RmsProp", &self.params, ready, lr, 0)?;
        let lr_dev = scalars.map(|s| &s.lr);
        let fused_lr = if ready && wd == 0.0 && fusable(&self.params) {
            Some(self.kept.get(0, &self.params, lr_dev, lr)?)
        } else {
            None
        };
        let (sq, bufs) = (&mut self.square_avg, &mut self.buffers);
        with_grads(&self.params, |i, p, g| {
            if let (Some(lr_t), Some(s)) = (&fused_lr, &sq[i]) {
                let b = if mom > 0.0 { bufs[i].as_ref() } else { None };
                if (mom == 0.0 || b.is_some()) && fused::rmsprop(p, &g, s, b, lr_t, (a, eps, mom))?
                {
                    return Ok(());
                }
            }
            let g = add_weight_decay(g, p, wd)?;
            let s = match sq[i].take() {
                None => g.square()?.mul_scalar(1.0 - a)?,
                Some(s) => {
                    s.mul_(a)?;
                    s.add_(&g.square()?.mul_scalar(1.0 - a)?)?;
                    s
                }
            };
            let update = g.div(&s.sqrt()?.add_scalar(eps)?)?;
            let update = if mom > 0.0 {
                let b = match bufs[i].take() {
                    None => update,
                    Some(b) => {
                        b.mul_(mom)?;
                        b.add_(&update)?;
                        b
                    }
                };
                bufs[i] = Some(b.clone());
                b
            } else {
                update
            };
            p.sub_(&step_scalars::times(&update, lr, lr_dev)?)?;
            sq[i] = Some(s);
            Ok(())
        })
    }
    common_accessors!();
    fn state(&self) -> Vec<(String, Tensor)> {
        named_slots(&[
            ("square_avg", &self.square_avg),
            ("momentum_buffer", &self.buffers),
        ])
    }
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        load_slots(
            "RmsProp::load_state",
            state,
            &self.params,
            &mut [
                ("square_avg", &mut self.square_avg),
                ("momentum_buffer", &mut self.buffers),
            ],
        )
    }
}

/// Adagrad.
pub struct Adagrad {
    params: Vec<Tensor>,
    lr: f64,
    eps: f64,
    weight_decay: f64,
    lr_decay: f64,
    step: u64,
    sums: Vec<Option<Tensor>>,
    /// Device copies of the numbers that change between steps, once captured.
    scalars: Option<StepScalars>,
    /// The one-element tensors of recent steps' numbers.
    kept: KeptScalars,
}

impl Adagrad {
    /// Adagrad with eps 1e-10.
    pub fn new(params: Vec<Tensor>, lr: f64) -> Adagrad {
        let n = params.len();
        Adagrad {
            params,
            lr,
            eps: 1e-10,
            weight_decay: 0.0,
            lr_decay: 0.0,
            step: 0,
            sums: vec![None; n],
            scalars: None,
            kept: KeptScalars::default(),
        }
    }
}

setters!(Adagrad {
    /// L2 penalty.
    weight_decay: weight_decay,
    /// Learning-rate decay per step.
    lr_decay: lr_decay,
});

impl Optimizer for Adagrad {
    fn step(&mut self) -> Result<()> {
        check_hyper(
            "Adagrad",
            &[
                ("learning rate", self.lr, None),
                ("lr decay", self.lr_decay, None),
                ("eps", self.eps, None),
                ("weight decay", self.weight_decay, None),
            ],
        )?;
        let ready = step_scalars::ready(&self.params, &self.sums);
        let scalars = StepScalars::for_step(
            &mut self.scalars,
            "Adagrad",
            &self.params,
            ready,
            self.lr,
            self.step,
        )?;
        // lr / (1 + (t - 1) lr_decay): a Rust number, or a tensor once captured.
        let clr_dev = match scalars {
            Some(s) => {
                let decayed = s.step.mul_scalar(self.lr_decay)?.add_scalar(1.0)?;
                s.advance()?;
                Some(s.lr.div(&decayed)?)
            }
            None => None,
        };
        self.step += 1;
        let clr = self.lr / (1.0 + (self.step - 1) as f64 * self.lr_decay);
        let (eps, wd) = (self.eps, self.weight_decay);
        let fused_clr = if ready && wd == 0.0 && fusable(&self.params) {
            Some(self.kept.get(0, &self.params, clr_dev.as_ref(), clr)?)
        } else {
            None
        };
        let sums = &mut self.sums;
        with_grads(&self.params, |i, p, g| {
            if let (Some(clr_t), Some(s)) = (&fused_clr, &sums[i]) {
                if fused::adagrad(p, &g, s, clr_t, eps)? {
                    return Ok(());
                }
            }
            let g = add_weight_decay(g, p, wd)?;
            let s = match sums[i].take() {
                None => g.square()?,
                Some(s) => {
                    s.add_(&g.square()?)?;
                    s
                }
            };
            let update = g.div(&s.sqrt()?.add_scalar(eps)?)?;
            p.sub_(&step_scalars::times(&update, clr, clr_dev.as_ref())?)?;
            sums[i] = Some(s);
            Ok(())
        })
    }
    common_accessors!();
    fn state(&self) -> Vec<(String, Tensor)> {
        let mut s = named_slots(&[("sum", &self.sums)]);
        s.extend(step_entry(self.step, &self.scalars));
        s
    }
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let rest = take_step(state, &mut self.step)?;
        if let Some(s) = &self.scalars {
            s.step.fill_(self.step as f64)?;
        }
        load_slots(
            "Adagrad::load_state",
            &rest,
            &self.params,
            &mut [("sum", &mut self.sums)],
        )
    }
}

/// Scale the gradients of `params` so that their joint L2 norm is at most `max_norm`;
/// returns the norm before clipping. Runs as tensor ops on the gradients' device (no
/// readback).
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> Result<Option<Tensor>> {
    let _g = crate::no_grad();
    let grads: Vec<Tensor> = params.iter().filter_map(|p| p.grad()).collect();
    let Some(first) = grads.first() else {
        return Ok(None);
    };
    // The norm in f32 whatever the gradients' dtype: squares of 16-bit gradients overflow.
    let squares = |g: &Tensor| g.to_dtype(DType::F32)?.square()?.sum();
    let mut total = squares(first)?;
    for g in &grads[1..] {
        total = total.add(&squares(g)?.to_device(total.device())?)?;
    }
    let total = total.sqrt()?;
    let scale = total
        .add_scalar(1e-6)?
        .reciprocal()?
        .mul_scalar(max_norm)?
        .clamp_max(1.0)?;
    for g in &grads {
        g.mul_(&scale.to_dtype(g.dtype())?.to_device(g.device())?)?;
    }
    Ok(Some(total))
}
