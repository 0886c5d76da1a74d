//! The ranks of an MPI world (rsmpi): gathers to rank 0, sums there in rank order,
//! broadcasts back.

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::{Ranks, sum_in_order};

/// The MPI world of this process, initialised once.
pub struct MpiRanks {
    // Finalises MPI when dropped: it must outlive `world`.
    _universe: Universe,
    world: SimpleCommunicator,
}

impl MpiRanks {
    /// Initialises MPI (`None` if it was initialised before).
    pub fn init() -> Option<MpiRanks> {
        let universe = mpi::initialize()?;
        let world = universe.world();
        Some(MpiRanks {
            _universe: universe,
            world,
        })
    }

    /// Ends every rank with `code` (after an error on this one, so that none waits for it).
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

impl Ranks for MpiRanks {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn sum(&self, values: &mut [f32]) {
        let root = self.world.process_at_rank(0);
        if self.rank() == 0 {
            let mut all = vec![0f32; values.len() * self.size()];
            root.gather_into_root(&values[..], &mut all[..]);
            sum_in_order(&all, values);
        } else {
            root.gather_into(&values[..]);
        }
        root.broadcast_into(values);
    }

    fn any(&self, flag: bool) -> bool {
        let mut any = 0u8;
        self.world
            .all_reduce_into(&u8::from(flag), &mut any, SystemOperation::max());
        any == 1
    }

    fn broadcast(&self, bytes: Vec<u8>) -> Vec<u8> {
        let root = self.world.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        let mut out = if self.rank() == 0 {
            bytes
        } else {
            vec![0u8; len as usize]
        };
        root.broadcast_into(&mut out[..]);
        out
    }

    fn local_rank(&self) -> usize {
        // What launchers set: Open MPI, MPICH/Intel MPI, Slurm.
        [
            "OMPI_COMM_WORLD_LOCAL_RANK",
            "MPI_LOCALRANKID",
            "SLURM_LOCALID",
        ]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
        .unwrap_or_else(|| self.rank())
    }
}
