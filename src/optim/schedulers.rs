//! Learning-rate schedules, stepped once per epoch.

use super::Optimizer;

/// Sets an optimizer's learning rate from the epoch count.
pub trait LrScheduler {
    /// Advance one epoch and update `opt`'s learning rate.
    fn step(&mut self, opt: &mut dyn Optimizer);
    /// Where the schedule is, for a checkpoint.
    fn state(&self) -> SchedulerState;
    /// Continue from a saved position.
    fn load_state(&mut self, state: SchedulerState);
}

/// A schedule's position: the epochs stepped and the rate it started from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedulerState {
    /// Epochs stepped so far.
    pub epoch: usize,
    /// The learning rate the schedule started from.
    pub base_lr: f64,
}

/// The state accessors of a scheduler with `base` and `epoch` fields.
macro_rules! position {
    () => {
        fn state(&self) -> SchedulerState {
            SchedulerState {
                epoch: self.epoch,
                base_lr: self.base,
            }
        }
        fn load_state(&mut self, state: SchedulerState) {
            self.epoch = state.epoch;
            self.base = state.base_lr;
        }
    };
}

/// Multiply the learning rate by `gamma` every `step_size` epochs (`StepLR`).
pub struct StepLr {
    base: f64,
    step_size: usize,
    gamma: f64,
    epoch: usize,
}

impl StepLr {
    /// From the optimizer's current learning rate.
    pub fn new(opt: &dyn Optimizer, step_size: usize, gamma: f64) -> StepLr {
        StepLr {
            base: opt.lr(),
            step_size: step_size.max(1),
            gamma,
            epoch: 0,
        }
    }
}

impl LrScheduler for StepLr {
    position!();
    fn step(&mut self, opt: &mut dyn Optimizer) {
        self.epoch += 1;
        opt.set_lr(self.base * self.gamma.powi((self.epoch / self.step_size) as i32));
    }
}

/// Cosine annealing from the initial rate to `eta_min` over `t_max` epochs.
pub struct CosineAnnealingLr {
    base: f64,
    t_max: usize,
    eta_min: f64,
    epoch: usize,
}

impl CosineAnnealingLr {
    /// From the optimizer's current learning rate.
    pub fn new(opt: &dyn Optimizer, t_max: usize, eta_min: f64) -> CosineAnnealingLr {
        CosineAnnealingLr {
            base: opt.lr(),
            t_max: t_max.max(1),
            eta_min,
            epoch: 0,
        }
    }
}

impl LrScheduler for CosineAnnealingLr {
    position!();
    fn step(&mut self, opt: &mut dyn Optimizer) {
        self.epoch += 1;
        let t = (self.epoch.min(self.t_max)) as f64 / self.t_max as f64;
        opt.set_lr(
            self.eta_min
                + (self.base - self.eta_min) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0,
        );
    }
}
