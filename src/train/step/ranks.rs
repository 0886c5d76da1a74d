//! What the ranks of a multi-process run agree on in a step: the summed gradients, loss
//! terms, code counts and EMA statistics, the restarts over the global batch, rank 0's
//! starting state, and (for tests) the check that no rank drifted.

use crate::error::{Error, Result};
use crate::reference::quantize::perplexity;
use crate::tensor::Tensor;

use super::TrainStep;

impl TrainStep<'_> {
    /// Errors unless this rank's parameters after step `step` are rank 0's, bit for bit.
    pub(super) fn same_parameters(&self, step: u64) -> Result<()> {
        let fingerprint = crate::prior::codebook_fingerprint(&self.values.to_f32(self.gpu)?);
        let first = self.ranks.broadcast(fingerprint.clone().into_bytes());
        if first != fingerprint.as_bytes() {
            return Err(Error::Usage(format!(
                "rank {}'s parameters after step {} differ from rank 0's",
                self.ranks.rank(),
                step + 1
            )));
        }
        Ok(())
    }

    /// Replaces this rank's gradients (of its slice's mean loss) by the mean over the
    /// ranks' slices, summed in rank order: the global batch's mean gradient, the same bits
    /// on every rank. A sum that is not finite ends the run on every rank before the update.
    pub(super) fn sum_gradients(&self, step: u64) -> Result<()> {
        let mut g = self.grads.to_f32(self.gpu)?;
        self.mean_over_ranks(&mut g);
        if let Some(&value) = g.iter().find(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                step: step + 1,
                value,
                kept: "The ranks' summed gradient was not finite and no rank updated; the last checkpoint is the run's latest.".into(),
            });
        }
        self.grads.write(self.gpu, bytemuck::cast_slice(&g))
    }

    /// Replaces this rank's loss terms and code usage, which the metrics log reads, by
    /// the global batch's: the terms' mean over the ranks, the usage of their summed code
    /// counts.
    pub(super) fn sum_metrics(&self) -> Result<()> {
        let (gpu, net) = (self.gpu, &self.net);
        let terms = net.terms.as_ref().expect("training graph");
        let mut t = terms.to_f32(gpu)?;
        self.mean_over_ranks(&mut t);
        terms.write(gpu, bytemuck::cast_slice(&t))?;
        let counts = self.summed_counts(net.counts.as_ref().expect("training graph"))?;
        let (perplexity, used) = perplexity(&counts);
        let usage = net.usage.as_ref().expect("training graph");
        usage.write(gpu, bytemuck::cast_slice(&[perplexity as f32, used as f32]))
    }

    /// Replaces each codebook's code counts (which the EMA and the restarts read) and each
    /// active EMA codebook's per-code sums by their sums over the ranks, added in rank
    /// order, so that every rank updates and restarts alike.
    pub(super) fn sum_statistics(&self, active: usize) -> Result<()> {
        for stage in &self.net.stages {
            let counts = self.summed_counts(&stage.counts)?;
            stage
                .counts
                .write(self.gpu, bytemuck::cast_slice(&counts))?;
        }
        for e in self.ema.iter().take(active) {
            let mut partial = e.partial.to_f32(self.gpu)?;
            self.ranks.sum(&mut partial);
            e.partial.write(self.gpu, bytemuck::cast_slice(&partial))?;
        }
        Ok(())
    }

    /// Replaces `values` by their mean over the ranks: the sum in rank order, then 1/N.
    fn mean_over_ranks(&self, values: &mut [f32]) {
        self.ranks.sum(values);
        let share = 1.0 / self.ranks.size() as f32;
        values.iter_mut().for_each(|v| *v *= share);
    }

    /// The sum over the ranks of the code counts `counts` holds (u32).
    fn summed_counts(&self, counts: &Tensor) -> Result<Vec<u32>> {
        // Counts below 2^24 add exactly in f32.
        let mut c: Vec<f32> = counts.to_u32(self.gpu)?.iter().map(|&c| c as f32).collect();
        self.ranks.sum(&mut c);
        Ok(c.iter().map(|&c| c as u32).collect())
    }

    /// The restarts of step `step` (0-based) over the global batch, as one process makes
    /// them: the dead codes (the windows count every rank's codes) move onto the rows of
    /// the global batch that the kernel would choose, each read on the rank whose slice
    /// holds it and shared by a sum to which the other ranks add zeros.
    pub(super) fn restart_across_ranks(&self, step: u64) -> Result<()> {
        let (rank, size) = (self.ranks.rank(), self.ranks.size());
        for restart in &self.restarts {
            let dead = restart.dead_codes(self.gpu)?;
            let rows = restart.rows();
            let mut vectors = vec![0.0; dead.len() * rows.dim];
            // Rank r's slice holds rows r*n .. (r+1)*n of the global batch's.
            let (at, mine): (Vec<usize>, Vec<usize>) = dead
                .iter()
                .enumerate()
                .filter_map(|(j, &k)| {
                    let g = restart.source_row(step + 1, k, rows.n * size);
                    (g / rows.n == rank).then_some((j, g % rows.n))
                })
                .unzip();
            let read = restart.read_rows(self.gpu, &mine)?;
            for (&j, v) in at.iter().zip(read.chunks(rows.dim)) {
                vectors[j * rows.dim..(j + 1) * rows.dim].copy_from_slice(v);
            }
            self.ranks.sum(&mut vectors);
            restart.restart_onto(self.gpu, &dead, &vectors)?;
        }
        Ok(())
    }

    /// Rank 0's parameters, optimizer moments and EMA statistics on every rank: at the
    /// start of a run, which every rank computed alike (its k-means too) but perhaps on a
    /// different adapter, and after every step where the ranks' adapters differ.
    pub(in crate::train) fn share_state(&self) -> Result<()> {
        let mut shared = vec![&self.values];
        if let Some((m, v)) = self.update.moments() {
            shared.extend([m, v]);
        }
        for e in &self.ema {
            shared.extend([&e.cluster, &e.sums]);
        }
        for t in shared {
            let bytes = bytemuck::cast_slice(&t.to_f32(self.gpu)?).to_vec();
            t.write(self.gpu, &self.ranks.broadcast(bytes))?;
        }
        Ok(())
    }
}
