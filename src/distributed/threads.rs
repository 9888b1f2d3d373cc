//! A [`Collective`] over the threads of one process: ranks meet at a shared accumulator.

use super::Collective;
use crate::{Error, Result};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A group of `world_size` ranks in one process, one [`ThreadRank`] per thread; each rank's
/// handle is used by one thread at a time.
pub struct ThreadGroup;

impl ThreadGroup {
    /// The ranks of a new group of `world_size`, one handle each (rank `i` at index `i`),
    /// to hand one to each thread.
    pub fn ranks(world_size: usize) -> Result<Vec<ThreadRank>> {
        // Each rank is a thread of this process: past this many, the handles or the
        // threads could not exist (a hostile size must be an Err, not an abort).
        const MAX_RANKS: usize = 1 << 16;
        if world_size == 0 || world_size > MAX_RANKS {
            return Err(Error::invalid(
                "ThreadGroup::ranks",
                format!("a group in one process has 1 to {MAX_RANKS} ranks, not {world_size}"),
            ));
        }
        let shared = Arc::new(Shared {
            world_size,
            round: Mutex::new(Round::default()),
            turn: Condvar::new(),
        });
        Ok((0..world_size)
            .map(|rank| ThreadRank {
                rank,
                shared: shared.clone(),
            })
            .collect())
    }
}

/// One rank of a [`ThreadGroup`].
pub struct ThreadRank {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    world_size: usize,
    round: Mutex<Round>,
    turn: Condvar,
}

/// One all-reduce: ranks add their data while gathering, then copy the sum out; the next
/// round starts gathering only when every rank has copied this one's.
#[derive(Default)]
struct Round {
    sum: Vec<f64>,
    arrived: usize,
    departed: usize,
    /// Every rank has added its data: copy the sum out.
    complete: bool,
    /// A rank brought a vector of another length than the first one.
    lengths_differ: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Round> {
        self.round.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, Round>) -> MutexGuard<'a, Round> {
        self.turn.wait(guard).unwrap_or_else(|e| e.into_inner())
    }
}

impl Collective for ThreadRank {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.shared.world_size
    }

    fn all_reduce_sum(&self, data: &mut [f64]) -> Result<()> {
        let shared = &*self.shared;
        let mut round = shared.lock();
        // The previous round is still being copied out by slower ranks.
        while round.complete {
            round = shared.wait(round);
        }
        if round.arrived == 0 {
            round.sum.clear();
            round.sum.extend_from_slice(data);
            round.lengths_differ = false;
        } else if round.sum.len() != data.len() {
            round.lengths_differ = true;
        } else {
            for (s, x) in round.sum.iter_mut().zip(data.iter()) {
                *s += x;
            }
        }
        round.arrived += 1;
        if round.arrived == shared.world_size {
            round.complete = true;
            shared.turn.notify_all();
        }
        while !round.complete {
            round = shared.wait(round);
        }
        let result = if round.lengths_differ {
            Err(Error::invalid(
                "all_reduce_sum",
                format!(
                    "the ranks of the group brought vectors of different lengths (rank {}: {})",
                    self.rank,
                    data.len()
                ),
            ))
        } else {
            data.copy_from_slice(&round.sum);
            Ok(())
        };
        round.departed += 1;
        if round.departed == shared.world_size {
            round.arrived = 0;
            round.departed = 0;
            round.complete = false;
            shared.turn.notify_all();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_sum_their_vectors_round_after_round() {
        let ranks = ThreadGroup::ranks(3).unwrap();
        std::thread::scope(|s| {
            for r in &ranks {
                s.spawn(move || {
                    for round in 0..200 {
                        let mut v = vec![r.rank() as f64 + round as f64, 1.0];
                        r.all_reduce_sum(&mut v).unwrap();
                        assert_eq!(v, vec![3.0 + 3.0 * round as f64, 3.0]);
                    }
                });
            }
        });
    }

    #[test]
    fn impossible_group_sizes_are_errors() {
        assert!(ThreadGroup::ranks(0).is_err());
        assert!(ThreadGroup::ranks(usize::MAX).is_err());
    }

    #[test]
    fn different_lengths_are_an_error_on_every_rank() {
        let ranks = ThreadGroup::ranks(2).unwrap();
        std::thread::scope(|s| {
            for r in &ranks {
                s.spawn(move || {
                    let mut v = vec![0.0; 2 + r.rank()];
                    assert!(r.all_reduce_sum(&mut v).is_err());
                    // The group is still usable.
                    let mut v = vec![1.0];
                    r.all_reduce_sum(&mut v).unwrap();
                    assert_eq!(v, vec![2.0]);
                });
            }
        });
    }
}
