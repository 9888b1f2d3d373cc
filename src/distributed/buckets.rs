//! Gradient buckets: which parameters' gradients are exchanged together, the backward
//! pass's observer that says when a bucket is complete, and the rank's exchange thread,
//! which sums each complete bucket across the group while backward goes on.

use super::ddp::{numel, read_into};
use super::Collective;
use crate::{DType, Error, Result, Tensor};
use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

/// Parameters whose gradients are exchanged together, as soon as backward has completed
/// all of them: the last parameters first, since backward reaches them first (DDP's
/// buckets: the first one at most 1 MiB of f32, so that the exchange starts early, the
/// others at most the cap).
#[derive(Clone)]
pub(super) struct Bucket {
    /// Indices into the parameter list.
    pub(super) params: Vec<usize>,
    /// Elements in all.
    pub(super) len: usize,
}

/// The first bucket's cap in elements (1 MiB of f32, as DDP's first bucket).
const FIRST_BUCKET: usize = 1 << 18;

pub(super) fn buckets(params: &[Tensor], cap: usize) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = vec![];
    for i in (0..params.len()).rev() {
        let n = params[i].numel();
        let limit = if out.len() == 1 {
            cap.min(FIRST_BUCKET)
        } else {
            cap
        };
        match out.last_mut() {
            Some(b) if b.len + n <= limit || b.len == 0 => {
                b.params.push(i);
                b.len += n;
            }
            _ => out.push(Bucket {
                params: vec![i],
                len: n,
            }),
        }
    }
    out
}

/// What the backward thread tells the exchange thread.
pub(super) enum Signal {
    /// Every gradient of this bucket is complete.
    Ready(usize),
    /// Backward is over (every bucket not reported yet is exchanged as it is then).
    Finished,
}

/// A rank's exchange thread, alive as long as the rank: MPI libraries set a thread up on
/// its first call (about 10 ms with Open MPI), so the exchanges of every step run on one.
pub(super) struct ExchangeThread {
    jobs: Option<Sender<Job>>,
    results: Receiver<Result<Exchanged>>,
    handle: Option<std::thread::JoinHandle<()>>,
    /// A step's exchange began and was not collected (a panic went through `step`).
    in_flight: bool,
}

/// One step's exchange: the parameters (in the order the layout indexes), the rank's
/// shard length, and where backward reports complete buckets.
struct Job {
    params: Vec<Tensor>,
    samples: usize,
    signals: Receiver<Signal>,
}

impl ExchangeThread {
    pub(super) fn start<C: Collective + Send + Sync + 'static>(
        group: Arc<C>,
        layout: Vec<Bucket>,
    ) -> Result<ExchangeThread> {
        let (jobs, job_rx) = channel::<Job>();
        let (result_tx, results) = channel();
        let handle = std::thread::Builder::new()
            .name(format!("wgrad-exchange-{}", group.rank()))
            .spawn(move || {
                for job in job_rx {
                    let done =
                        exchange_buckets(&*group, &job.params, &layout, job.signals, job.samples);
                    if result_tx.send(done).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| {
                Error::invalid(
                    "DistributedDataParallel",
                    format!("cannot start the exchange thread: {e}"),
                )
            })?;
        Ok(ExchangeThread {
            jobs: Some(jobs),
            results,
            handle: Some(handle),
            in_flight: false,
        })
    }

    /// Start a step's exchange; backward then reports buckets through the returned sender
    /// and ends with [`Signal::Finished`].
    pub(super) fn begin(&mut self, params: Vec<Tensor>, samples: usize) -> Result<Sender<Signal>> {
        let (tx, signals) = channel();
        let job = Job {
            params,
            samples,
            signals,
        };
        match &self.jobs {
            Some(jobs) if jobs.send(job).is_ok() => {
                self.in_flight = true;
                Ok(tx)
            }
            _ => Err(self.ended()),
        }
    }

    /// The step's exchanged sums, once every bucket is done.
    pub(super) fn finish(&mut self) -> Result<Exchanged> {
        self.in_flight = false;
        self.results.recv().map_err(|_| self.ended())?
    }

    fn ended(&self) -> Error {
        Error::invalid(
            "DistributedDataParallel::step",
            "the exchange thread has ended (it panicked)",
        )
    }
}

impl Drop for ExchangeThread {
    fn drop(&mut self) {
        // Closing the job channel ends the thread's loop. A thread still in an exchange
        // (a panic left `step` midway) may wait for other ranks forever: it is left to
        // end with them, not joined.
        self.jobs = None;
        if let Some(h) = self.handle.take().filter(|_| !self.in_flight) {
            let _ = h.join();
        }
    }
}

/// What the exchange thread brings back.
pub(super) struct Exchanged {
    /// Every parameter's gradient times its rank's shard length, summed over the ranks,
    /// flat in parameter order.
    pub(super) sums: Vec<f64>,
    /// Why this rank could not read its own gradients (it brought zeros then).
    pub(super) read_error: Option<Error>,
    /// Buckets whose exchange began before backward ended.
    pub(super) overlapped: usize,
}

/// The backward pass's leaf observer: counts each bucket's completed gradients and tells
/// the exchange thread when a bucket is complete.
pub(super) fn bucket_observer(
    params: &[Tensor],
    layout: &[Bucket],
    tx: Sender<Signal>,
) -> Box<dyn FnMut(&Tensor)> {
    let mut buckets_of: HashMap<u64, Vec<usize>> = HashMap::new();
    for (k, bucket) in layout.iter().enumerate() {
        for &i in &bucket.params {
            buckets_of.entry(params[i].id()).or_default().push(k);
        }
    }
    let mut left: Vec<usize> = layout.iter().map(|b| b.params.len()).collect();
    Box::new(move |leaf| {
        for &k in buckets_of.get(&leaf.id()).into_iter().flatten() {
            if left[k] > 0 {
                left[k] -= 1;
                if left[k] == 0 {
                    // A send fails only once the exchange thread has ended: nothing to tell.
                    let _ = tx.send(Signal::Ready(k));
                }
            }
        }
    })
}

/// The exchange thread: every bucket in order (the same on every rank), each as soon as
/// backward has completed it or has ended, its gradients read back, weighted by the
/// rank's shard length and summed across the group.
fn exchange_buckets<C: Collective>(
    group: &C,
    params: &[Tensor],
    layout: &[Bucket],
    signals: Receiver<Signal>,
    samples: usize,
) -> Result<Exchanged> {
    let mut offsets = Vec::with_capacity(params.len());
    let mut at = 0;
    for p in params {
        offsets.push(at);
        at += p.numel();
    }
    let mut done = Exchanged {
        sums: vec![0.0; at],
        read_error: None,
        overlapped: 0,
    };
    let mut ready = vec![false; layout.len()];
    let mut backward_over = false;
    for (k, bucket) in layout.iter().enumerate() {
        while !ready[k] && !backward_over {
            match signals.recv() {
                Ok(Signal::Ready(j)) => ready[j] = true,
                Ok(Signal::Finished) | Err(_) => backward_over = true,
            }
        }
        if !backward_over {
            done.overlapped += 1;
        }
        let mut v = vec![0.0; bucket.len];
        if done.read_error.is_none() && samples > 0 {
            let members: Vec<Tensor> = bucket.params.iter().map(|&i| params[i].clone()).collect();
            match flat_grads(&members) {
                Ok(g) => {
                    for (out, x) in v.iter_mut().zip(g) {
                        *out = x * samples as f64;
                    }
                }
                Err(e) => done.read_error = Some(e),
            }
        }
        group.all_reduce_sum(&mut v)?;
        let mut from = 0;
        for &i in &bucket.params {
            let n = params[i].numel();
            done.sums[offsets[i]..offsets[i] + n].copy_from_slice(&v[from..from + n]);
            from += n;
        }
    }
    Ok(done)
}

/// Every parameter's gradient, flattened one after the other (zeros for a parameter the
/// loss did not reach), read back in one transfer: as f32, or as f64 when a gradient is F64
/// (its precision kept).
fn flat_grads(params: &[Tensor]) -> Result<Vec<f64>> {
    let mut out = vec![0.0; numel(params)];
    let grads: Vec<(usize, Tensor)> = params
        .iter()
        .scan(0, |at, p| {
            let start = *at;
            *at += p.numel();
            Some((start, p.grad()))
        })
        .filter_map(|(start, g)| g.map(|g| (start, g)))
        .collect();
    if grads.is_empty() {
        return Ok(out);
    }
    let wide = grads.iter().any(|(_, g)| g.dtype() == DType::F64);
    let as_read = if wide { DType::F64 } else { DType::F32 };
    let flat = grads
        .iter()
        .map(|(_, g)| g.to_dtype(as_read)?.reshape([-1]))
        .collect::<Result<Vec<_>>>()?;
    let all = Tensor::cat(&flat.iter().collect::<Vec<_>>(), 0)?;
    let mut read = vec![0.0; all.numel()];
    read_into(std::slice::from_ref(&all), &mut read)?;
    let all = read;
    let mut from = 0;
    for (start, g) in &grads {
        let n = g.numel();
        out[*start..*start + n].copy_from_slice(&all[from..from + n]);
        from += n;
    }
    Ok(out)
}
