//! The processes that train one model together: this one alone, or the ranks of an MPI
//! world (the `mpi` feature). What ranks must agree on goes through [`Ranks`], whose sums
//! add in rank order so that every rank, and every run, gets the same bits (MPI's own
//! reductions promise neither).

#[cfg(feature = "mpi")]
mod mpi;

#[cfg(feature = "mpi")]
pub use self::mpi::MpiRanks;

/// What the ranks of one run share.
pub trait Ranks {
    /// This process's rank, 0 first.
    fn rank(&self) -> usize;
    /// How many ranks there are.
    fn size(&self) -> usize;
    /// Replaces `values` (as long on every rank) by their sum over the ranks, added in
    /// rank order, the same bits on every rank.
    fn sum(&self, values: &mut [f32]);
    /// Whether `flag` is set on any rank.
    fn any(&self, flag: bool) -> bool;
    /// Rank 0's `bytes`, on every rank.
    fn broadcast(&self, bytes: Vec<u8>) -> Vec<u8>;
    /// This rank's place among the ranks on its machine (the GPU it should take).
    fn local_rank(&self) -> usize {
        self.rank()
    }
}

/// One process: every operation is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct OneProcess;

impl Ranks for OneProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn sum(&self, _: &mut [f32]) {}
    fn any(&self, flag: bool) -> bool {
        flag
    }
    fn broadcast(&self, bytes: Vec<u8>) -> Vec<u8> {
        bytes
    }
}

/// Whether `text` (say, this rank's adapter) is not rank 0's on some rank: the same
/// answer on every rank.
pub fn differs(ranks: &dyn Ranks, text: &str) -> bool {
    let first = ranks.broadcast(text.as_bytes().to_vec());
    ranks.any(first != text.as_bytes())
}

/// Adds `parts` (one slice per rank, each as long as `out`) into `out` in rank order.
pub fn sum_in_order(parts: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for part in parts.chunks(out.len().max(1)) {
        for (o, p) in out.iter_mut().zip(part) {
            *o += p;
        }
    }
}
