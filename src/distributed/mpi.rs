//! A [`Collective`] over the processes of an MPI job (the `mpi` cargo feature).

use super::Collective;
use crate::{Error, Result};
use mpi::collective::SystemOperation;
use mpi::environment::Threading;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::CommunicatorCollectives;
use std::sync::Mutex;

/// The processes of an MPI job (`mpirun -np N program`), each one rank, through MPI's
/// world communicator. MPI is finalised when the group is dropped; open it once per process.
///
/// ```no_run
/// use wgrad::distributed::{Collective, DistributedDataParallel, MpiGroup};
/// # fn main() -> wgrad::Result<()> {
/// let group = MpiGroup::init()?;
/// println!("rank {} of {}", group.rank(), group.world_size());
/// # Ok(())
/// # }
/// ```
pub struct MpiGroup {
    /// Calls go one at a time through the lock: MPI is initialised for serialised calls
    /// from any thread (a data-parallel step exchanges from a thread of its own).
    world: Mutex<SimpleCommunicator>,
    rank: usize,
    size: usize,
    // Dropped last: finalises MPI.
    _universe: mpi::environment::Universe,
}

// SAFETY: MPI was initialised with `MPI_THREAD_SERIALIZED` or more (`init` refuses less),
// which allows MPI calls from any thread as long as no two run at once; every call on the
// communicator goes through the mutex, and the universe is only dropped with the group.
unsafe impl Sync for MpiGroup {}
unsafe impl Send for MpiGroup {}

impl MpiGroup {
    /// Initialise MPI (for serialised calls from any thread) and join its world
    /// communicator; an `Err` when MPI was initialised already in this process or the MPI
    /// library cannot serialise calls from several threads.
    pub fn init() -> Result<MpiGroup> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| {
                Error::invalid(
                    "MpiGroup::init",
                    "MPI is initialised already in this process",
                )
            })?;
        if threading < Threading::Serialized {
            return Err(Error::invalid(
                "MpiGroup::init",
                format!("the MPI library offers {threading:?} threading; data parallelism needs Serialized"),
            ));
        }
        let world = universe.world();
        Ok(MpiGroup {
            rank: world.rank() as usize,
            size: world.size() as usize,
            world: Mutex::new(world),
            _universe: universe,
        })
    }
}

impl Collective for MpiGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.size
    }

    /// `MPI_Allreduce` with `MPI_SUM`; MPI cannot tell lengths apart, so callers agree on
    /// them first (`DistributedDataParallel` exchanges a fixed-length header that does).
    fn all_reduce_sum(&self, data: &mut [f64]) -> Result<()> {
        let send = data.to_vec();
        let world = self.world.lock().unwrap_or_else(|e| e.into_inner());
        world.all_reduce_into(&send[..], data, SystemOperation::sum());
        Ok(())
    }
}
