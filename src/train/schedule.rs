//! The learning rate over a run: constant or cosine, after an optional linear warmup.
//! The cosine's horizon is the `--steps` of the run that started it, saved with the
//! run, so a resumed run follows the same curve; steps past the horizon keep its final
//! rate.

use crate::error::{Error, Result};

use super::Settings;

/// How the learning rate moves.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// `--lr` throughout (after the warmup).
    #[default]
    Constant,
    /// Half a cosine from `--lr` down to [`COSINE_FLOOR`] x `--lr` at the horizon.
    Cosine,
}

/// The cosine schedule's final rate, as a fraction of `--lr`.
pub const COSINE_FLOOR: f64 = 0.1;

impl Settings {
    /// The learning rate of update `step` (1 for the first): `lr * step / warmup` during
    /// the warmup, then the schedule's. Like PyTorch's `CosineAnnealingLR`, the first
    /// step after the warmup runs at `lr`, and the floor is reached one step after the
    /// horizon.
    pub fn lr_at(&self, step: u64) -> f64 {
        let (warmup, horizon) = (self.warmup_steps, self.lr_horizon);
        if step <= warmup {
            return self.lr * step as f64 / warmup as f64;
        }
        match self.lr_schedule {
            LrSchedule::Constant => self.lr,
            LrSchedule::Cosine => {
                let after = step - warmup - 1;
                let done = (after as f64 / (horizon - warmup) as f64).min(1.0);
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * done).cos());
                self.lr * (COSINE_FLOOR + (1.0 - COSINE_FLOOR) * cosine)
            }
        }
    }

    /// Refuses a warmup that does not end within the run (a cosine needs at least one
    /// step after it).
    pub fn check_schedule(&self) -> Result<()> {
        let cosine = self.lr_schedule == LrSchedule::Cosine;
        if self.warmup_steps > self.lr_horizon || (cosine && self.warmup_steps == self.lr_horizon) {
            return Err(Error::Usage(format!(
                "--warmup-steps {} is beyond --steps {}: the warmup must end {}",
                self.warmup_steps,
                self.lr_horizon,
                if cosine {
                    "before the last step, for the cosine to have steps to decay over"
                } else {
                    "by the last step"
                }
            )));
        }
        Ok(())
    }
}
