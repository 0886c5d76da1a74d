//! The autotuner: times kernel variants and tile shapes at a model's real shapes on
//! this adapter and keeps the fastest, so that no adapter runs on a guess.
//!
//! The search is a single pass of coordinate descent from the adapter's default
//! ([`Tuning::for_adapter`]): each knob in turn walks its ordered values from the best's
//! one neighbour at a time, while each step wins, with the others held at the best found
//! so far. Convolution knobs are timed on the whole training step (the
//! convolutions are most of it, and their shapes interact); quantiser knobs on the
//! quantiser alone at the model's N, K and D, where a step's noise would hide them.
//! Each time is the fastest of a few runs (of one, for a candidate whose first run is
//! plainly slower), and a change must win by [`MARGIN`], so that noise does not move the
//! tuning off the default for nothing. What the winner gains over the default is timed
//! again at the end, the two in turn, since the first runs of a process run slow; a
//! winner slower than the default there gives way to it.
//!
//! `parallel_groups` (how reductions split, which changes results in the last bits)
//! stays the default's: a tuning changes speed, and the bits only through the kernels'
//! documented orders.

pub mod cache;

use std::time::Instant;

use crate::bench::{Timer, model_launch};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::quantize;
use crate::launch::{Launch, Tuning};
use crate::model::Config;
use crate::network::CodebookUpdate;
use crate::rng::Rng;
use crate::tensor::{DType, Tensor};

/// A candidate must be this much faster than the best so far to replace it.
pub const MARGIN: f64 = 0.03;

/// Timed runs per candidate; the fastest counts.
const RUNS: usize = 3;

/// What a tuning is for: a training step of this model at this batch and image size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Target {
    /// The model.
    pub config: Config,
    /// Images per step.
    pub batch: usize,
    /// Image `[height, width]`.
    pub image: [usize; 2],
}

impl Target {
    /// The target in words, as the cache keys it.
    pub fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "train step, batch {} {}x{}x{}, H{} R{} L{} K{} D{}",
            self.batch,
            c.channels,
            self.image[0],
            self.image[1],
            c.hidden,
            c.res_hidden,
            c.res_layers,
            c.codes,
            c.code_dim
        )
    }
}

/// One timed candidate.
#[derive(Clone, Debug)]
pub struct Trial {
    /// The knob tried and its value, e.g. `gemm_tile = [16, 8]`.
    pub what: String,
    /// Milliseconds of the work timed (the step, or the quantiser), or why it failed.
    pub ms: std::result::Result<f64, String>,
    /// Whether it became the best so far.
    pub kept: bool,
}

/// The outcome of a search.
#[derive(Clone, Debug)]
pub struct Tuned {
    /// The winning tuning.
    pub tuning: Tuning,
    /// A training step with the default, in milliseconds.
    pub default_step_ms: f64,
    /// A training step with the winner, in milliseconds.
    pub step_ms: f64,
    /// Seconds the search took.
    pub seconds: f64,
}

/// Sets one knob's value into a tuning.
type Setter = Box<dyn Fn(&mut Tuning)>;

/// A knob: its name, and its values, each labelled.
struct Knob {
    name: &'static str,
    /// Timed on the quantiser alone rather than the whole step.
    quantiser: bool,
    values: Vec<(String, Setter)>,
}

fn knob<T: std::fmt::Debug + Copy + 'static>(
    name: &'static str,
    quantiser: bool,
    values: &[T],
    set: fn(&mut Tuning, T),
) -> Knob {
    Knob {
        name,
        quantiser,
        values: values
            .iter()
            .map(|&v| {
                let apply: Setter = Box::new(move |t| set(t, v));
                (format!("{v:?}"), apply)
            })
            .collect(),
    }
}

/// The knobs in the order they are tuned, each with the values worth trying in order
/// (of tile size, workgroup size, threshold), which the search walks.
fn knobs() -> Vec<Knob> {
    vec![
        Knob {
            name: "preset",
            quantiser: false,
            values: [("register", Tuning::REGISTER), ("shared", Tuning::SHARED)]
                .map(|(label, preset)| {
                    let apply: Setter = Box::new(move |t| {
                        *t = Tuning {
                            parallel_groups: t.parallel_groups,
                            ..preset
                        }
                    });
                    (label.to_string(), apply)
                })
                .into(),
        },
        // Not 16 x 16: in four cold tunings on lavapipe it ran within a few percent of
        // 16 x 8 and 16 x 12 (kept once, by 1.03x in the final race: noise), and its
        // pipelines took a fifth of each (15 of 75 s). Tuning::gemm_tile still takes it.
        knob(
            "gemm_tile",
            false,
            &[
                None,
                Some([8, 4]),
                Some([8, 8]),
                Some([16, 8]),
                Some([16, 12]),
            ],
            |t, v| t.gemm_tile = v,
        ),
        knob("gemm_shared", false, &[false, true], |t, v| {
            t.gemm_shared = v
        }),
        knob("gemm_subgroup", false, &[false, true], |t, v| {
            t.gemm_subgroup = v
        }),
        knob("packed_from", false, &[16, 32, 64, 128], |t, v| {
            t.packed_from = v
        }),
        knob(
            "conv_tile",
            false,
            &[[4, 4], [4, 8], [4, 12], [8, 8]],
            |t, v| t.conv_tile = v,
        ),
        knob(
            "conv_workgroup",
            false,
            &[[8, 8], [16, 8], [16, 16]],
            |t, v| t.conv_workgroup = v,
        ),
        knob(
            "quantize_tile",
            true,
            &[None, Some([8, 8]), Some([16, 8]), Some([16, 16])],
            |t, v| t.quantize_tile = v,
        ),
        knob("quantize_subgroup", true, &[false, true], |t, v| {
            t.quantize_subgroup = v
        }),
        knob("quantize_workgroup", true, &[32, 64, 128, 256], |t, v| {
            t.quantize_workgroup = v
        }),
        knob("quantize_rows", true, &[2, 4, 8], |t, v| {
            t.quantize_rows = v
        }),
    ]
}

/// Searches for the fastest tuning of `target` on `gpu`, calling `progress` after each
/// candidate; leaves `gpu` set to the winner. A candidate that builds exactly the
/// kernels and grids of the best so far (a tile of a path the model never takes) is not
/// timed.
pub fn tune(gpu: &mut Gpu, target: &Target, mut progress: impl FnMut(&Trial)) -> Result<Tuned> {
    let started = Instant::now();
    let timer = Timer::new(gpu, false)?;
    let default = Tuning::for_adapter(gpu.info());
    let mut best = Best::of(gpu, target, &timer, default)?;
    let default_step = best.step_time;
    let first = Trial {
        what: "the adapter's default".into(),
        ms: Ok(default_step * 1e3),
        kept: true,
    };
    progress(&first);
    for k in knobs() {
        for walk in walks(&k, best.tuning) {
            let mut won = false;
            for v in walk {
                let (label, apply) = &k.values[v];
                let mut candidate = best.tuning;
                apply(&mut candidate);
                let Some((ms, kept)) = best.try_candidate(gpu, target, &timer, &k, candidate)?
                else {
                    continue;
                };
                progress(&Trial {
                    what: format!("{} = {label}", k.name),
                    ms,
                    kept,
                });
                if !kept {
                    break;
                }
                won = true;
            }
            if won {
                break;
            }
        }
    }
    let Best {
        tuning: mut best,
        step_tuning,
        step,
        step_time,
        ..
    } = best;
    // A process's first steps run slow for a while (on lavapipe the default's runs fell
    // from 1.7x to 1.3x its later time), and the default is timed first: so what the
    // tuning gained is timed again at the end, the default and the winner in turn.
    let (default_ms, best_ms) = if step_tuning == default {
        (step_time, step_time)
    } else {
        let again = build(gpu, target, default, false)?;
        // Its buffers are new: one untimed run first, as every candidate had.
        timer.time(gpu, &again, 1)?;
        let (mut d, mut w) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..RUNS {
            d = d.min(timer.time(gpu, &again, 1)?);
            w = w.min(timer.time(gpu, &step, 1)?);
        }
        (d, w)
    };
    // Run in turn, the two race fairer than the search could: a winner that loses here
    // (on a busy lavapipe, 322 against 304 ms) was noise, and the default's step knobs
    // stay. The quantiser's, timed on the quantiser alone, stand as found.
    let best_ms = if default_ms <= best_ms {
        best = with_quantiser_of(default, best);
        default_ms
    } else {
        best_ms
    };
    gpu.set_tuning(best);
    Ok(Tuned {
        tuning: best,
        default_step_ms: default_ms * 1e3,
        step_ms: best_ms * 1e3,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The orders in which the search tries `k`'s values from `best`'s. Each knob's values
/// are listed in order, and a knob's time is taken to rise on either side of its fastest
/// value: so the search walks one neighbour at a time, down while each step wins, and up
/// only if no step down won (the caller stops after a walk that won); every value, in
/// order, where `best` holds none of them. On lavapipe the GEMM tiles far from the winner
/// and the far thresholds are then never compiled: a first tuning took 53-58 s rather
/// than 59-68 (BENCHMARKS.md).
fn walks(k: &Knob, best: Tuning) -> Vec<Vec<usize>> {
    let here = k.values.iter().position(|(_, apply)| {
        let mut t = best;
        apply(&mut t);
        t == best
    });
    match here {
        Some(i) => vec![(0..i).rev().collect(), (i + 1..k.values.len()).collect()],
        None => vec![(0..k.values.len()).collect()],
    }
}

/// The search's best so far: its tuning, and the work and time of its step and of its
/// quantiser.
struct Best {
    tuning: Tuning,
    /// The tuning `step` was built with: `tuning` as of its last kept step knob.
    step_tuning: Tuning,
    step: Launch,
    step_time: f64,
    search: Launch,
    search_time: f64,
}

impl Best {
    /// `tuning`, built and timed.
    fn of(gpu: &mut Gpu, target: &Target, timer: &Timer, tuning: Tuning) -> Result<Best> {
        let step = build(gpu, target, tuning, false)?;
        let step_time = fastest(gpu, timer, &step, f64::INFINITY)?;
        let search = build(gpu, target, tuning, true)?;
        let search_time = fastest(gpu, timer, &search, f64::INFINITY)?;
        Ok(Best {
            tuning,
            step_tuning: tuning,
            step,
            step_time,
            search,
            search_time,
        })
    }

    /// Times `candidate`, a value of knob `k`, on the step or the quantiser, and keeps it
    /// where it wins by [`MARGIN`]: its milliseconds (or why it failed) and whether it was
    /// kept. `None` where it builds exactly the best's work (a tile of a path the model
    /// never takes), untimed.
    fn try_candidate(
        &mut self,
        gpu: &mut Gpu,
        target: &Target,
        timer: &Timer,
        k: &Knob,
        candidate: Tuning,
    ) -> Result<Option<(std::result::Result<f64, String>, bool)>> {
        let (work, time) = if k.quantiser {
            (&mut self.search, &mut self.search_time)
        } else {
            (&mut self.step, &mut self.step_time)
        };
        let launch = match build(gpu, target, candidate, k.quantiser) {
            Ok(launch) if launch.same_work(work) => return Ok(None),
            other => other,
        };
        let cutoff = *time * PLAINLY_SLOWER;
        let timed = launch.and_then(|l| Ok((fastest(gpu, timer, &l, cutoff)?, l)));
        if let Err(e @ Error::DeviceLost { .. }) = timed {
            return Err(e);
        }
        let kept = timed
            .as_ref()
            .is_ok_and(|(t, _)| *t < *time * (1.0 - MARGIN));
        let ms = timed.map(|(t, l)| {
            if kept {
                (*time, *work) = (t, l);
            }
            t * 1e3
        });
        if kept {
            self.tuning = candidate;
            if !k.quantiser {
                self.step_tuning = candidate;
                // The preset also moves the quantiser's knobs.
                self.search = build(gpu, target, candidate, true)?;
                self.search_time = fastest(gpu, timer, &self.search, f64::INFINITY)?;
            }
        }
        Ok(Some((ms.map_err(|e| e.to_string()), kept)))
    }
}

/// `tuning` with the quantiser's knobs of `quantiser`.
fn with_quantiser_of(tuning: Tuning, quantiser: Tuning) -> Tuning {
    Tuning {
        quantize_workgroup: quantiser.quantize_workgroup,
        quantize_rows: quantiser.quantize_rows,
        quantize_tile: quantiser.quantize_tile,
        quantize_subgroup: quantiser.quantize_subgroup,
        ..tuning
    }
}

/// The work a candidate is timed on: with `quantiser`, the quantiser's search at
/// `target`'s N, K and D; else a whole training step.
fn build(gpu: &mut Gpu, target: &Target, tuning: Tuning, quantiser: bool) -> Result<Launch> {
    gpu.set_tuning(tuning);
    if !quantiser {
        let train = Some(CodebookUpdate::Gradient);
        return Ok(model_launch(gpu, &target.config, target.batch, target.image, train)?.0);
    }
    let c = &target.config;
    let n = target.batch * (target.image[0] / 4) * (target.image[1] / 4);
    let noise = |shape: &[usize], seed| {
        let mut rng = Rng::for_purpose(seed, 0x7E57);
        let values: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|_| rng.uniform(-1.0, 1.0) as f32)
            .collect();
        Tensor::from_f32(gpu, shape, &values)
    };
    quantize::quantize(
        gpu,
        &noise(&[n, c.code_dim], 1)?,
        &noise(&[c.codes, c.code_dim], 2)?,
        &Tensor::zeros(gpu, &[n], DType::U32)?,
        None,
        None,
    )
}

/// The fastest of [`RUNS`] timed runs of `launch`, after one that warms it; a candidate
/// whose first timed run is past `cutoff` is plainly slower and runs no more.
fn fastest(gpu: &Gpu, timer: &Timer, launch: &Launch, cutoff: f64) -> Result<f64> {
    let once = timer.time(gpu, launch, 1)?;
    // Short work repeats within a run so that a run's time is not the timer's noise.
    let reps = ((2e-3 / once).ceil() as usize).clamp(1, 100);
    let mut best = f64::INFINITY;
    for _ in 0..RUNS {
        best = best.min(timer.time(gpu, launch, reps)?);
        if best > cutoff {
            break;
        }
    }
    Ok(best)
}

/// Past this many times the best so far, a candidate's first run settles it.
const PLAINLY_SLOWER: f64 = 1.5;

#[cfg(test)]
mod tests {
    use super::*;

    /// `with_quantiser_of` moves exactly what the quantiser's knobs set: a race lost at
    /// the end must neither drop their values nor carry a step knob's.
    #[test]
    fn with_quantiser_of_moves_the_quantiser_knobs_and_nothing_else() {
        let base = Tuning::REGISTER;
        for k in knobs().into_iter().filter(|k| k.name != "preset") {
            for (label, apply) in &k.values {
                let mut t = base;
                apply(&mut t);
                let (got, want) = if k.quantiser {
                    (with_quantiser_of(base, t), t)
                } else {
                    (with_quantiser_of(t, base), t)
                };
                assert_eq!(got, want, "{} = {label}", k.name);
            }
        }
    }
}
