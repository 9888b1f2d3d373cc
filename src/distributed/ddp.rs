//! One rank of a data-parallel group: its replica, its optimizer, and the exchange of
//! gradients and buffers with the other ranks.

use super::Collective;
use crate::nn::Module;
use crate::optim::Optimizer;
use crate::{DType, Device, Error, Result, Tensor};
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
    group: C,
    /// The last step failed on this rank itself (not only on another).
    failed_here: bool,
}

/// What one data-parallel step did, the same on every rank.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// The mean loss over the global batch (each rank's loss weighted by its shard length).
    pub loss: f64,
    /// The global batch: the sum of every rank's shard length.
    pub samples: usize,
    /// This rank's time in the exchange: reading its gradients back, waiting for and summing
    /// with the other ranks, and writing the averaged gradients and buffers.
    pub exchange: Duration,
}

/// The exchange's first, fixed-length vector: who failed, how many samples and how much
/// loss each rank brings, and the length of its gradients-and-buffers vector (with its
/// square, so that a sum tells whether every rank's length is the same).
struct Header {
    failed: Vec<usize>,
    samples: f64,
    loss: f64,
}

impl<M: Module, O: Optimizer, C: Collective> DistributedDataParallel<M, O, C> {
    /// Join `group` with this rank's replica and optimizer. Every rank of the group calls
    /// this, and every rank's replica then holds rank 0's parameters and buffers (DDP's
    /// broadcast at construction). An `Err` on every rank when the replicas' parameters and
    /// buffers differ in number of elements.
    pub fn new(group: C, module: M, optimizer: O) -> Result<Self> {
        let ddp = DistributedDataParallel {
            module,
            optimizer,
            group,
            failed_here: false,
        };
        let params = ddp.module.parameters();
        let buffers = buffers(&ddp.module);
        let len = numel(&params) + numel(&buffers);
        let header = ddp.exchange_header(false, 0, 0.0, len)?;
        ddp.check(&header, Ok(()))?;
        let mut payload = vec![0.0; len];
        if ddp.group.rank() == 0 {
            let (p, b) = payload.split_at_mut(numel(&params));
            read_into(&params, p)?;
            read_into(&buffers, b)?;
        }
        ddp.group.all_reduce_sum(&mut payload)?;
        let (p, b) = payload.split_at(numel(&params));
        let _no_grad = crate::no_grad();
        write_into(&params, p)?;
        write_into(&buffers, b)?;
        Ok(ddp)
    }

    /// One training step on this rank's shard of the batch: `samples` rows, `loss` computes
    /// their mean loss from the replica. Every rank of the group calls `step` once per
    /// step. The gradients are averaged across the ranks, weighted by shard length (a rank
    /// with `samples == 0` runs no forward pass and brings none); every rank takes its
    /// optimizer's step with them, and ends with rank 0's buffers.
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
        let params = self.module.parameters();
        let buffers = buffers(&self.module);
        let (grad_len, buffer_len) = (numel(&params), numel(&buffers));
        let local = if samples == 0 {
            Ok((0.0, None))
        } else {
            guarded(self.group.rank(), || {
                let value = loss(&self.module)?;
                let mean = value.item::<f64>()?;
                value.backward()?;
                Ok((mean, Some(flat_grads(&params)?)))
            })
        };
        let started = Instant::now();
        let (loss_sum, failed) = match &local {
            Ok((mean, _)) => (mean * samples as f64, false),
            Err(_) => (0.0, true),
        };
        self.failed_here = failed;
        let header = self.exchange_header(failed, samples, loss_sum, grad_len + buffer_len)?;
        let (_, grads) = self.check(&header, local)?;
        if header.samples == 0.0 {
            return Err(Error::invalid(
                "DistributedDataParallel::step",
                "every rank's shard is empty",
            ));
        }
        let mut payload = vec![0.0; grad_len + buffer_len];
        let (g, b) = payload.split_at_mut(grad_len);
        if let Some(grads) = grads {
            let weight = samples as f64 / header.samples;
            for (out, x) in g.iter_mut().zip(grads) {
                *out = x as f64 * weight;
            }
        }
        if self.group.rank() == 0 {
            read_into(&buffers, b)?;
        }
        self.group.all_reduce_sum(&mut payload)?;
        let (g, b) = payload.split_at(grad_len);
        set_grads(&params, g)?;
        {
            let _no_grad = crate::no_grad();
            write_into(&buffers, b)?;
        }
        let exchange = started.elapsed();
        self.optimizer.step()?;
        Ok(StepReport {
            loss: header.loss / header.samples,
            samples: header.samples as usize,
            exchange,
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

    /// Sum the header across the group: `[failed flag per rank.., samples, loss sum, len,
    /// len²]`. The lengths are exact in f64 up to 2^26 elements per rank for the square; a
    /// larger model is still checked through the plain sum.
    fn exchange_header(
        &self,
        failed: bool,
        samples: usize,
        loss_sum: f64,
        len: usize,
    ) -> Result<Header> {
        let world = self.group.world_size();
        let mut v = vec![0.0; world + 4];
        if failed {
            v[self.group.rank()] = 1.0;
        }
        let len = len as f64;
        v[world..].copy_from_slice(&[samples as f64, loss_sum, len, len * len]);
        self.group.all_reduce_sum(&mut v)?;
        let n = world as f64;
        // Equal lengths exactly when sum(len)² = n * sum(len²) (Cauchy-Schwarz).
        if v[world + 2] != n * len || v[world + 3] * n != v[world + 2] * v[world + 2] {
            return Err(Error::invalid(
                "DistributedDataParallel",
                format!(
                    "the ranks' replicas differ: rank {} has {len} elements of parameters and buffers, the group's mean is {}",
                    self.group.rank(),
                    v[world + 2] / n
                ),
            ));
        }
        Ok(Header {
            failed: (0..world).filter(|&r| v[r] != 0.0).collect(),
            samples: v[world],
            loss: v[world + 1],
        })
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

fn numel(tensors: &[Tensor]) -> usize {
    tensors.iter().map(Tensor::numel).sum()
}

/// Every parameter's gradient, flattened one after the other as f32 (zeros for a parameter
/// the loss did not reach), read back in one transfer per device.
fn flat_grads(params: &[Tensor]) -> Result<Vec<f32>> {
    let mut out = vec![0.0f32; numel(params)];
    let mut pieces = vec![];
    let mut at = 0;
    for p in params {
        if let Some(g) = p.grad() {
            pieces.push((at, g.to_dtype(DType::F32)?.reshape([-1])?));
        }
        at += p.numel();
    }
    if pieces.is_empty() {
        return Ok(out);
    }
    let refs: Vec<&Tensor> = pieces.iter().map(|(_, t)| t).collect();
    let all = Tensor::cat(&refs, 0)?.to_vec::<f32>()?;
    let mut from = 0;
    for (at, t) in &pieces {
        out[*at..*at + t.numel()].copy_from_slice(&all[from..from + t.numel()]);
        from += t.numel();
    }
    Ok(out)
}

/// The tensors' elements, one after the other, as f64 (integers exactly up to 2^53).
fn read_into(tensors: &[Tensor], out: &mut [f64]) -> Result<()> {
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

/// Copy `values` into the tensors, one after the other, in place (each converted to its
/// tensor's dtype once).
fn write_into(tensors: &[Tensor], values: &[f64]) -> Result<()> {
    let mut at = 0;
    for t in tensors {
        let n = t.numel();
        let host = Tensor::from_vec(values[at..at + n].to_vec(), t.shape())?;
        t.copy_(&host.to_dtype(t.dtype())?.to_device(t.device())?)?;
        at += n;
    }
    Ok(())
}

/// Give every parameter its averaged gradient: views of one upload per device, in the
/// parameter's dtype.
fn set_grads(params: &[Tensor], values: &[f64]) -> Result<()> {
    if params.is_empty() {
        return Ok(());
    }
    let flat: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    let flat = Tensor::from_vec(flat, [values.len()])?;
    let mut uploaded: Vec<(Device, Tensor)> = vec![];
    let mut at = 0;
    for p in params {
        let on_device = match uploaded.iter().find(|(d, _)| d == p.device()) {
            Some((_, t)) => t.clone(),
            None => {
                let t = flat.to_device(p.device())?;
                uploaded.push((p.device().clone(), t.clone()));
                t
            }
        };
        let g = on_device
            .narrow(0, at, p.numel())?
            .reshape(p.shape())?
            .to_dtype(p.dtype())?;
        p.set_grad(Some(g))?;
        at += p.numel();
    }
    Ok(())
}
