//! One rank of a data-parallel group: its replica, its optimizer, and the exchange of
//! gradients and buffers with the other ranks.

use super::buckets::{bucket_observer, buckets, Bucket, ExchangeThread, Signal};
use super::Collective;
use crate::nn::Module;
use crate::optim::Optimizer;
use crate::{DType, Device, Error, Result, Tensor};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One rank of data-parallel training with PyTorch's DistributedDataParallel semantics: a
/// replica of the model and an optimizer over its parameters, in a group of ranks that
/// each take a shard of every batch (see the [module docs](super)).
///
/// ```
/// use wgrad::distributed::{Collective, DistributedDataParallel, ThreadGroup};
/// use wgrad::nn::{self, Forward, Module};
/// use wgrad::optim::Sgd;
/// use wgrad::{Device, Tensor};
///
/// # fn main() -> wgrad::Result<()> {
/// // Two ranks on two threads of this process; with the `mpi` feature, one rank per
/// // process through `MpiGroup::init()?` instead.
/// let x = Tensor::randn([8, 3])?;
/// let y = Tensor::randn([8, 1])?;
/// std::thread::scope(|s| -> wgrad::Result<()> {
///     let handles: Vec<_> = ThreadGroup::ranks(2)?
///         .into_iter()
///         .map(|rank| {
///             let (x, y) = (x.clone(), y.clone());
///             s.spawn(move || -> wgrad::Result<Vec<f32>> {
///                 let r = rank.rank();
///                 let model = nn::Linear::new(3, 1, &Device::Cpu)?;
///                 let opt = Sgd::new(model.parameters(), 0.1);
///                 // Every rank starts from rank 0's parameters.
///                 let mut ddp = DistributedDataParallel::new(rank, model, opt)?;
///                 let (xs, ys) = (x.narrow(0, 4 * r, 4)?, y.narrow(0, 4 * r, 4)?);
///                 let report = ddp.step(4, |m| nn::mse_loss(&m.forward(&xs)?, &ys))?;
///                 assert_eq!(report.samples, 8);
///                 ddp.module().weight.to_vec::<f32>()
///             })
///         })
///         .collect();
///     let weights: Vec<Vec<f32>> = handles.into_iter().map(|h| h.join().unwrap()).collect::<wgrad::Result<_>>()?;
///     assert_eq!(weights[0], weights[1]);
///     Ok(())
/// })?;
/// # Ok(())
/// # }
/// ```
pub struct DistributedDataParallel<M, O, C> {
    module: M,
    optimizer: O,
    group: Arc<C>,
    /// The parameters that required grad at construction: the ones whose gradients are
    /// exchanged (DDP's rule), in the order the buckets index.
    trainable: Vec<Tensor>,
    /// The trainable parameters' gradients in exchange order, bucket by bucket.
    buckets: Vec<Bucket>,
    exchange: ExchangeThread,
    /// The last step failed on this rank itself (not only on another).
    failed_here: bool,
}

/// What one data-parallel step did, the same on every rank but for the times.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// The mean loss over the global batch (each rank's loss weighted by its shard length).
    pub loss: f64,
    /// The global batch: the sum of every rank's shard length.
    pub samples: usize,
    /// The time this rank's step spent on the exchange after its backward pass had ended:
    /// the buckets not done by then (reading gradients back, waiting for the other ranks,
    /// summing), the closing exchange, and writing the averages and buffers. What ran
    /// beside backward (see `overlapped`) is not in it.
    pub exchange: Duration,
    /// Gradient buckets exchanged.
    pub buckets: usize,
    /// Buckets whose exchange began while this rank's backward pass was still running.
    pub overlapped: usize,
}

/// The closing exchange's sums: who failed, how many samples and how much loss.
struct Header {
    failed: Vec<usize>,
    samples: f64,
    loss: f64,
}

impl<M: Module, O: Optimizer, C: Collective + Send + Sync + 'static>
    DistributedDataParallel<M, O, C>
{
    /// Join `group` with this rank's replica and optimizer, gradients exchanged in buckets
    /// of at most 25 MiB of f32 (DDP's `bucket_cap_mb` default). Every rank of the group
    /// calls this, and every rank's replica then holds rank 0's parameters and buffers
    /// (DDP's broadcast at construction). An `Err` on every rank when the replicas'
    /// parameters, buffers or buckets differ in size.
    pub fn new(group: C, module: M, optimizer: O) -> Result<Self> {
        Self::with_bucket_cap_mb(group, module, optimizer, 25.0)
    }

    /// [`DistributedDataParallel::new`] with buckets of at most `cap_mb` MiB of f32
    /// gradients (smaller buckets start exchanging sooner; each costs a readback).
    pub fn with_bucket_cap_mb(group: C, module: M, optimizer: O, cap_mb: f64) -> Result<Self> {
        if cap_mb.is_nan() || cap_mb <= 0.0 {
            return Err(Error::invalid(
                "DistributedDataParallel",
                format!("bucket_cap_mb must be positive, got {cap_mb}"),
            ));
        }
        let cap = ((cap_mb * 262_144.0) as usize).max(1);
        let params = module.parameters();
        let trainable: Vec<Tensor> = params
            .iter()
            .filter(|p| p.requires_grad())
            .cloned()
            .collect();
        let layout = buckets(&trainable, cap);
        let group = Arc::new(group);
        let ddp = DistributedDataParallel {
            exchange: ExchangeThread::start(group.clone(), layout.clone())?,
            buckets: layout,
            trainable,
            module,
            optimizer,
            group,
            failed_here: false,
        };
        let buffers = buffers(&ddp.module);
        let len = numel(&params) + numel(&buffers);
        // The bucket layout, folded into one number every rank must share.
        let layout: f64 = ddp
            .buckets
            .iter()
            .enumerate()
            .map(|(k, b)| ((k + 1) * b.len) as f64)
            .sum();
        ddp.agree(&[len as f64, layout])?;
        // Rank 0's state to every rank; a first element says whether rank 0 could read it
        // (the others must not wait for a rank that gave up).
        let mut payload = vec![0.0; 1 + len];
        let mut own = Ok(());
        if ddp.group.rank() == 0 {
            let (p, b) = payload[1..].split_at_mut(numel(&params));
            own = read_into(&params, p).and_then(|()| read_into(&buffers, b));
            payload[0] = f64::from(u8::from(own.is_err()));
        }
        ddp.group.all_reduce_sum(&mut payload)?;
        own?;
        if payload[0] != 0.0 {
            return Err(Error::invalid(
                "DistributedDataParallel",
                "rank 0 could not read its parameters to share them",
            ));
        }
        let (p, b) = payload[1..].split_at(numel(&params));
        let _no_grad = crate::no_grad();
        write_into(&params, p)?;
        write_into(&buffers, b)?;
        Ok(ddp)
    }

    /// One training step on this rank's shard of the batch: `samples` rows, `loss` computes
    /// their mean loss from the replica. Every rank of the group calls `step` once per
    /// step. The gradients are averaged across the ranks, weighted by shard length (a rank
    /// with `samples == 0` runs no forward pass and brings none); each bucket's exchange
    /// starts on the rank's exchange thread as soon as backward has completed its
    /// gradients, while backward goes on. Every rank then takes its optimizer's step with the averages, and
    /// ends with rank 0's buffers.
    ///
    /// An `Err` on every rank when any rank's `loss`, backward pass or reading of its
    /// gradients fails or panics: that rank's own error there, one naming the failed ranks
    /// elsewhere; no rank's parameters change then.
    pub fn step(
        &mut self,
        samples: usize,
        loss: impl FnOnce(&M) -> Result<Tensor>,
    ) -> Result<StepReport> {
        self.optimizer.zero_grad();
        let params = self.trainable.clone();
        let buffers = buffers(&self.module);
        let rank = self.group.rank();
        let signals = self.exchange.begin(params.clone(), samples)?;
        let local = if samples == 0 {
            Ok(0.0)
        } else {
            let observer = bucket_observer(&params, &self.buckets, signals.clone());
            let module = &self.module;
            guarded(rank, || {
                let value = loss(module)?;
                let mean = value.item::<f64>()?;
                crate::autograd::with_leaf_observer(observer, || value.backward())?;
                Ok(mean)
            })
        };
        // The exchange thread takes the buckets not reported yet as they are now (a send
        // fails only if the thread has ended, which `finish` reports).
        let backward_ended = Instant::now();
        let _ = signals.send(Signal::Finished);
        let exchanged = self.exchange.finish()?;
        // The closing exchange: who failed, samples and loss, which parameters had a
        // gradient, and rank 0's buffers.
        let world = self.group.world_size();
        let at_buffers = world + 2 + params.len();
        let mut closing = vec![0.0; at_buffers + numel(&buffers)];
        for (used, p) in closing[world + 2..at_buffers].iter_mut().zip(&params) {
            *used = f64::from(u8::from(p.grad().is_some()));
        }
        let buffers_read = match rank {
            0 => read_into(&buffers, &mut closing[at_buffers..]),
            _ => Ok(()),
        };
        // This rank's own failure: its loss or backward, else reading its gradients or
        // buffers.
        let local = match (local, exchanged.read_error, buffers_read) {
            (Ok(_), Some(e), _) | (Ok(_), None, Err(e)) => Err(e),
            (local, _, _) => local,
        };
        self.failed_here = local.is_err();
        if self.failed_here {
            closing[rank] = 1.0;
        }
        closing[world] = samples as f64;
        closing[world + 1] = local.as_ref().map_or(0.0, |mean| mean * samples as f64);
        self.group.all_reduce_sum(&mut closing)?;
        let header = Header {
            failed: (0..world).filter(|&r| closing[r] != 0.0).collect(),
            samples: closing[world],
            loss: closing[world + 1],
        };
        self.check(&header, local)?;
        if header.samples == 0.0 {
            return Err(Error::invalid(
                "DistributedDataParallel::step",
                "every rank's shard is empty",
            ));
        }
        let mean: Vec<f64> = exchanged.sums.iter().map(|x| x / header.samples).collect();
        set_grads(&params, &mean, &closing[world + 2..at_buffers])?;
        {
            let _no_grad = crate::no_grad();
            write_into(&buffers, &closing[at_buffers..])?;
        }
        let exchange = backward_ended.elapsed();
        self.optimizer.step()?;
        Ok(StepReport {
            loss: header.loss / header.samples,
            samples: header.samples as usize,
            exchange,
            buckets: self.buckets.len(),
            overlapped: exchanged.overlapped,
        })
    }

    /// This rank's replica.
    pub fn module(&self) -> &M {
        &self.module
    }

    /// This rank's optimizer (to change its learning rate, say, on every rank alike).
    pub fn optimizer_mut(&mut self) -> &mut O {
        &mut self.optimizer
    }

    /// The group this rank belongs to.
    pub fn group(&self) -> &C {
        &self.group
    }

    /// Whether this rank's own forward or backward pass failed in the last step.
    pub fn failed_here(&self) -> bool {
        self.failed_here
    }

    /// The replica and the optimizer, leaving the group.
    pub fn into_parts(self) -> (M, O) {
        (self.module, self.optimizer)
    }

    /// An `Err` on every rank unless every rank brings the same `values`: each is summed
    /// with its square, and `n` equal numbers are exactly those whose sum squared is `n`
    /// times the sum of their squares (Cauchy-Schwarz).
    fn agree(&self, values: &[f64]) -> Result<()> {
        let mut v: Vec<f64> = values.iter().flat_map(|&x| [x, x * x]).collect();
        self.group.all_reduce_sum(&mut v)?;
        let n = self.group.world_size() as f64;
        let same = v
            .chunks(2)
            .zip(values)
            .all(|(s, &x)| s[0] == n * x && s[1] * n == s[0] * s[0]);
        if !same {
            return Err(Error::invalid(
                "DistributedDataParallel",
                format!(
                    "the ranks' replicas differ: rank {} has {} elements of parameters and buffers in {} gradient buckets, and another rank a different size or layout",
                    self.group.rank(),
                    values[0],
                    self.buckets.len()
                ),
            ));
        }
        Ok(())
    }

    /// This rank's result when no rank failed; else this rank's own error, or one naming
    /// the ranks that failed.
    fn check<T>(&self, header: &Header, local: Result<T>) -> Result<T> {
        match local {
            Err(e) => Err(e),
            _ if !header.failed.is_empty() => Err(Error::invalid(
                "DistributedDataParallel::step",
                format!(
                    "rank(s) {:?} of {} failed; rank {} took no step",
                    header.failed,
                    self.group.world_size(),
                    self.group.rank()
                ),
            )),
            Ok(t) => Ok(t),
        }
    }
}

/// Run a rank's forward and backward pass, turning a panic into an `Err` so that the rank
/// still joins the exchange (the other ranks would wait for it forever otherwise).
fn guarded<T>(rank: usize, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string());
        Err(Error::invalid(
            "DistributedDataParallel::step",
            format!("rank {rank} panicked: {msg}"),
        ))
    })
}

/// The buffers a replica shares with rank 0 (running statistics, counters).
fn buffers(module: &impl Module) -> Vec<Tensor> {
    module.named_buffers().into_iter().map(|(_, t)| t).collect()
}

pub(super) fn numel(tensors: &[Tensor]) -> usize {
    tensors.iter().map(Tensor::numel).sum()
}

/// The tensors' elements, one after the other, as f64 (integers exactly up to 2^53).
pub(super) fn read_into(tensors: &[Tensor], out: &mut [f64]) -> Result<()> {
    let mut at = 0;
    for t in tensors {
        let n = t.numel();
        let dst = &mut out[at..at + n];
        match t.dtype() {
            DType::F64 => dst.copy_from_slice(&t.to_vec::<f64>()?),
            DType::I64 => {
                for (d, x) in dst.iter_mut().zip(t.to_vec::<i64>()?) {
                    *d = x as f64;
                }
            }
            _ => {
                for (d, x) in dst.iter_mut().zip(t.to_dtype(DType::F32)?.to_vec::<f32>()?) {
                    *d = x as f64;
                }
            }
        }
        at += n;
    }
    Ok(())
}

/// Copy `values` into the tensors, one after the other, in place (`copy_` converts each to
/// its tensor's dtype once and moves it to its device).
fn write_into(tensors: &[Tensor], values: &[f64]) -> Result<()> {
    let mut at = 0;
    for t in tensors {
        let n = t.numel();
        t.copy_(&Tensor::from_vec(values[at..at + n].to_vec(), t.shape())?)?;
        at += n;
    }
    Ok(())
}

/// Give every parameter its averaged gradient: views of one upload per device, in the
/// parameter's dtype. A parameter no rank's loss reached (`used` 0) keeps no gradient, as
/// on one device, so that optimizers skip it; one that stopped requiring grad gets none.
fn set_grads(params: &[Tensor], values: &[f64], used: &[f64]) -> Result<()> {
    if params.is_empty() {
        return Ok(());
    }
    // F64 parameters get the averages at f64 precision, the others through f32.
    let flat = if params.iter().any(|p| p.dtype() == DType::F64) {
        Tensor::from_vec(values.to_vec(), [values.len()])?
    } else {
        let narrow: Vec<f32> = values.iter().map(|&x| x as f32).collect();
        Tensor::from_vec(narrow, [values.len()])?
    };
    let mut uploaded: Vec<(Device, Tensor)> = vec![];
    let mut at = 0;
    for (p, &used) in params.iter().zip(used) {
        let start = at;
        at += p.numel();
        if used == 0.0 || !p.requires_grad() {
            p.set_grad(None)?;
            continue;
        }
        let on_device = match uploaded.iter().find(|(d, _)| d == p.device()) {
            Some((_, t)) => t.clone(),
            None => {
                let t = flat.to_device(p.device())?;
                uploaded.push((p.device().clone(), t.clone()));
                t
            }
        };
        let g = on_device
            .narrow(0, start, p.numel())?
            .reshape(p.shape())?
            .to_dtype(p.dtype())?;
        p.set_grad(Some(g))?;
    }
    Ok(())
}
