//! Data parallelism across the devices of one process: one replica and one thread per device.

use super::{DistributedDataParallel, StepReport, ThreadGroup, ThreadRank};
use crate::nn::Module;
use crate::optim::Optimizer;
use crate::{Device, Error, Result, Tensor};

/// Train one model on several devices of this process, with DDP's semantics: every device
/// holds a replica and an optimizer; [`DataParallel::step`] splits the batch along its
/// first dim into one shard per device, runs every replica's forward and backward pass on
/// its own thread, averages the gradients (weighted by shard length) and takes every
/// optimizer's step. The parameters are then those one device would reach with the whole
/// batch, within float rounding.
///
/// Devices may be any mix: two GPUs, two devices opened on one adapter
/// ([`Device::gpu_at`]), a GPU and the CPU.
///
/// ```
/// use wgrad::distributed::DataParallel;
/// use wgrad::nn::{self, Forward, Module};
/// use wgrad::optim::Sgd;
/// use wgrad::{Device, Tensor};
///
/// # fn main() -> wgrad::Result<()> {
/// let devices = [Device::Cpu, Device::Cpu]; // e.g. [Device::gpu_at(0)?, Device::gpu_at(1)?]
/// let mut dp = DataParallel::new(
///     &devices,
///     |dev| nn::Linear::new(3, 1, dev),
///     |params| Sgd::new(params, 0.1),
/// )?;
/// let (x, y) = (Tensor::randn([8, 3])?, Tensor::randn([8, 1])?);
/// let report = dp.step(&[&x, &y], |model, batch| {
///     nn::mse_loss(&model.forward(&batch[0])?, &batch[1])
/// })?;
/// assert_eq!(report.samples, 8);
/// println!("loss {:.4}, {:?} exchanging gradients", report.loss, report.exchange);
/// # Ok(())
/// # }
/// ```
pub struct DataParallel<M, O> {
    ranks: Vec<DistributedDataParallel<M, O, ThreadRank>>,
    devices: Vec<Device>,
}

impl<M: Module, O: Optimizer + Send> DataParallel<M, O> {
    /// One replica per device, built by `module` on it, with an optimizer built by
    /// `optimizer` over its parameters; every replica starts from the first one's
    /// parameters and buffers.
    pub fn new(
        devices: &[Device],
        module: impl Fn(&Device) -> Result<M>,
        optimizer: impl Fn(Vec<Tensor>) -> O,
    ) -> Result<Self> {
        if devices.is_empty() {
            return Err(Error::invalid(
                "DataParallel::new",
                "give at least one device",
            ));
        }
        let mut replicas = vec![];
        for dev in devices {
            let m = module(dev)?;
            if let Some(p) = m.parameters().iter().find(|p| p.device() != dev) {
                return Err(Error::DeviceMismatch {
                    op: "DataParallel::new",
                    lhs: dev.to_string(),
                    rhs: format!("a parameter the builder put on {}", p.device()),
                });
            }
            let o = optimizer(m.parameters());
            replicas.push((m, o));
        }
        let ranks = std::thread::scope(|s| {
            let handles: Vec<_> = ThreadGroup::ranks(devices.len())?
                .into_iter()
                .zip(replicas)
                .map(|(rank, (m, o))| s.spawn(move || DistributedDataParallel::new(rank, m, o)))
                .collect();
            joined(handles)
        })?;
        Ok(DataParallel {
            ranks,
            devices: devices.to_vec(),
        })
    }

    /// One training step on a batch: every tensor of `batch` (inputs, targets) is split
    /// along its first dim into contiguous shards, one per device (the first `n % devices`
    /// shards one row longer), moved to that device, and `loss(replica, shards)` gives the
    /// shard's mean loss. Returns the global batch's mean loss and the exchange time.
    ///
    /// An `Err` (and no replica changed) when `batch` is empty or its first dims differ, or
    /// when any replica's `loss` or backward pass fails or panics: that replica's error.
    pub fn step(
        &mut self,
        batch: &[&Tensor],
        loss: impl Fn(&M, &[Tensor]) -> Result<Tensor> + Sync,
    ) -> Result<StepReport> {
        let rows = batch_rows(batch)?;
        let k = self.ranks.len();
        let loss = &loss;
        let outcomes = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .ranks
                .iter_mut()
                .zip(&self.devices)
                .enumerate()
                .map(|(r, (rank, dev))| {
                    let (start, len) = shard(rows, k, r);
                    s.spawn(move || {
                        let outcome = rank.step(len, |m| {
                            let shards = batch
                                .iter()
                                .map(|t| t.narrow(0, start, len)?.to_device(dev))
                                .collect::<Result<Vec<_>>>()?;
                            loss(m, &shards)
                        });
                        (outcome, rank.failed_here())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().map_err(|_| thread_panicked()))
                .collect::<Result<Vec<_>>>()
        })?;
        // The error of a replica that failed itself, else the first one (naming those).
        let own = outcomes.iter().position(|(o, here)| o.is_err() && *here);
        let mut outcomes: Vec<_> = outcomes.into_iter().map(|(o, _)| o).collect();
        match own.or_else(|| outcomes.iter().position(Result::is_err)) {
            Some(i) => outcomes.swap_remove(i),
            None => outcomes.swap_remove(0),
        }
    }

    /// The first device's replica (all replicas hold the same parameters between steps).
    pub fn module(&self) -> &M {
        self.ranks[0].module()
    }

    /// Every replica, in the order of the devices.
    pub fn replicas(&self) -> impl Iterator<Item = &M> {
        self.ranks.iter().map(|r| r.module())
    }

    /// The devices, one per replica.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// Change every replica's optimizer alike (a learning-rate schedule, say).
    pub fn for_each_optimizer(&mut self, mut f: impl FnMut(&mut O)) {
        for r in &mut self.ranks {
            f(r.optimizer_mut())
        }
    }

    /// The first device's replica and optimizer.
    pub fn into_first(self) -> (M, O) {
        let mut ranks = self.ranks;
        ranks.swap_remove(0).into_parts()
    }
}

/// The rows every tensor of the batch shares along its first dim.
fn batch_rows(batch: &[&Tensor]) -> Result<usize> {
    let Some(first) = batch.first() else {
        return Err(Error::invalid(
            "DataParallel::step",
            "the batch has no tensors to split",
        ));
    };
    let rows = |t: &Tensor| -> Result<usize> {
        t.shape().first().copied().ok_or_else(|| {
            Error::bad_shape(
                "DataParallel::step",
                t.shape(),
                "a 0-d tensor has no first dim to split",
            )
        })
    };
    let n = rows(first)?;
    for t in batch {
        if rows(t)? != n {
            return Err(Error::shapes(
                "DataParallel::step",
                first.shape(),
                t.shape(),
                "the batch's tensors must have the same first dim",
            ));
        }
    }
    Ok(n)
}

/// Rank `r`'s shard of `rows` rows over `k` ranks: (start, length).
fn shard(rows: usize, k: usize, r: usize) -> (usize, usize) {
    let (base, extra) = (rows / k, rows % k);
    (r * base + r.min(extra), base + usize::from(r < extra))
}

fn thread_panicked() -> Error {
    Error::invalid(
        "DataParallel",
        "a replica's thread panicked outside its loss function",
    )
}

/// Every thread's result, or the first error (a panic as one).
fn joined<T>(handles: Vec<std::thread::ScopedJoinHandle<'_, Result<T>>>) -> Result<Vec<T>> {
    handles
        .into_iter()
        .map(|h| h.join().unwrap_or_else(|_| Err(thread_panicked())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::shard;

    #[test]
    fn shards_cover_the_batch_in_order() {
        for rows in 0..20 {
            for k in 1..6 {
                let mut next = 0;
                for r in 0..k {
                    let (start, len) = shard(rows, k, r);
                    assert_eq!(start, next);
                    assert!(len == rows / k || len == rows / k + 1);
                    next += len;
                }
                assert_eq!(next, rows);
            }
        }
    }
}
