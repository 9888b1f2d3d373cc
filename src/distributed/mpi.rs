//! A [`Collective`] over the processes of an MPI job (the `mpi` cargo feature).

use super::Collective;
use crate::{Error, Result};
use mpi::collective::SystemOperation;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::CommunicatorCollectives;

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
    world: SimpleCommunicator,
    // Dropped last: finalises MPI.
    _universe: mpi::environment::Universe,
}

impl MpiGroup {
    /// Initialise MPI and join its world communicator; an `Err` when MPI was initialised
    /// already in this process.
    pub fn init() -> Result<MpiGroup> {
        let universe = mpi::initialize().ok_or_else(|| {
            Error::invalid(
                "MpiGroup::init",
                "MPI is initialised already in this process",
            )
        })?;
        Ok(MpiGroup {
            world: universe.world(),
            _universe: universe,
        })
    }
}

impl Collective for MpiGroup {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn world_size(&self) -> usize {
        self.world.size() as usize
    }

    /// `MPI_Allreduce` with `MPI_SUM`; MPI cannot tell lengths apart, so callers agree on
    /// them first (`DistributedDataParallel` exchanges a fixed-length header that does).
    fn all_reduce_sum(&self, data: &mut [f64]) -> Result<()> {
        let send = data.to_vec();
        self.world
            .all_reduce_into(&send[..], data, SystemOperation::sum());
        Ok(())
    }
}
