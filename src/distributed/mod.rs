//! Data-parallel training on several devices: PyTorch's DistributedDataParallel semantics.
//!
//! Every device (a *rank*) holds a replica of the model and its own optimizer, takes a shard
//! of the batch, and runs forward and backward on it; the gradients are then averaged across
//! the ranks (weighted by shard length, so that uneven shards give the gradient of the
//! global batch's mean loss) and every rank takes the same optimizer step. Buffers such as
//! BatchNorm's running statistics are rank 0's on every rank after each step, as DDP's
//! `broadcast_buffers` makes them.
//!
//! - [`DataParallel`]: several devices of one process, one thread per replica.
//! - [`DistributedDataParallel`]: one rank of a group; the group is anything that can sum a
//!   vector across ranks (a [`Collective`]): threads of one process ([`ThreadGroup`]) or
//!   processes through MPI (`MpiGroup`, with the `mpi` cargo feature).
//!
//! wgpu has no copies between devices, so gradients meet in host memory: each rank's
//! exchange thread reads its gradients back bucket by bucket (`buckets.rs`) as backward
//! completes them, the group sums each bucket while backward goes on, and each rank uploads
//! the averages. A rank whose forward or backward pass fails (a bad shard, a lost device)
//! still joins every exchange, flagged: every rank then returns an `Err` naming it, instead
//! of waiting forever for it.

mod buckets;
mod data_parallel;
mod ddp;
#[cfg(feature = "mpi")]
mod mpi;
mod threads;

pub use data_parallel::DataParallel;
pub use ddp::{DistributedDataParallel, StepReport};
#[cfg(feature = "mpi")]
pub use mpi::MpiGroup;
pub use threads::{ThreadGroup, ThreadRank};

use crate::Result;

/// A group of ranks that can sum a vector across all of them: the one operation data
/// parallelism needs. Every rank calls the same sequence of `all_reduce_sum`s with vectors
/// of one length.
pub trait Collective {
    /// This rank's index in the group, from 0.
    fn rank(&self) -> usize;

    /// The number of ranks in the group.
    fn world_size(&self) -> usize;

    /// Replace `data`, on every rank, with the elementwise sum of every rank's `data`. An
    /// `Err` where the group can tell that the lengths differ.
    fn all_reduce_sum(&self, data: &mut [f64]) -> Result<()>;
}
