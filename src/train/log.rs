//! What a run reports as it goes: the metrics log (JSON lines), the progress bar, and
//! the check that stops a run whose loss is no longer finite.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::checkpoint::MODEL_FILE;
use crate::error::{Error, Result, io};
use crate::metrics::StepMetrics;

use super::Settings;

/// The metrics log's name in a run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Appends JSON lines to the metrics log (or, on ranks other than the first, nowhere).
pub(crate) struct Log {
    file: Option<std::fs::File>,
    path: PathBuf,
}

impl Log {
    /// Opens `path`; a resumed run keeps the lines up to its step and drops the rest.
    pub fn open(path: PathBuf, keep_until: Option<u64>) -> Result<Log> {
        let kept = match keep_until {
            Some(step) => std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v["step"].as_u64())
                        .is_some_and(|s| s <= step)
                })
                .map(|l| format!("{l}\n"))
                .collect(),
            None => String::new(),
        };
        std::fs::write(&path, kept).map_err(io("writing", &path))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io("writing", &path))?;
        Ok(Log {
            file: Some(file),
            path,
        })
    }

    /// A log that keeps nothing.
    pub fn discard() -> Log {
        Log {
            file: None,
            path: PathBuf::new(),
        }
    }

    pub fn line(&mut self, value: &serde_json::Value) -> Result<()> {
        match &mut self.file {
            Some(file) => writeln!(file, "{value}").map_err(io("writing", &self.path)),
            None => Ok(()),
        }
    }
}

pub(crate) fn progress_bar(show: bool, position: u64, total: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] step {pos}/{len} {msg} (eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_position(position);
    bar
}

/// The log, the bar and the run's clock, fed with each step's metrics as they arrive.
pub(super) struct Progress<'a> {
    pub log: Log,
    bar: indicatif::ProgressBar,
    out: &'a Path,
    /// The latest metrics.
    pub last: Option<StepMetrics>,
    /// The step of the latest checkpoint this run wrote.
    pub saved: Option<u64>,
    first_step: u64,
    settings: &'a Settings,
    codes: usize,
    started: Instant,
    /// Time spent validating and saving, left out of images/s.
    pub aside: Duration,
}

impl<'a> Progress<'a> {
    /// Opens the log in `out` (keeping a resumed run's lines up to `first_step`; with
    /// `write` false, a log that keeps nothing) and the bar, for steps `first_step..` of
    /// the run `settings` describe, with a codebook of `codes`.
    pub fn new(
        out: &'a Path,
        (resumed, write): (bool, bool),
        first_step: u64,
        settings: &'a Settings,
        codes: usize,
        show: bool,
    ) -> Result<Progress<'a>> {
        let log = match write {
            true => Log::open(out.join(METRICS_FILE), resumed.then_some(first_step))?,
            false => Log::discard(),
        };
        Ok(Progress {
            log,
            bar: progress_bar(show, first_step, settings.steps),
            out,
            last: None,
            saved: None,
            first_step,
            settings,
            codes,
            started: Instant::now(),
            aside: Duration::ZERO,
        })
    }

    /// Logs `rows`, each with its learning rate; a non-finite loss ends the run with an
    /// error naming the last good checkpoint.
    pub fn take(&mut self, rows: Vec<StepMetrics>) -> Result<()> {
        for r in rows {
            if !r.loss.is_finite() {
                let kept = match self.saved {
                    Some(step) => format!(
                        "The last good checkpoint (step {step}) is {}.",
                        self.out.join(MODEL_FILE).display()
                    ),
                    None => "No checkpoint had been written yet.".to_string(),
                };
                return Err(Error::NonFinite {
                    step: r.step,
                    value: r.loss,
                    kept,
                });
            }
            let mut line = serde_json::to_value(r).expect("metrics serialise");
            line["lr"] = self.settings.lr_at(r.step).into();
            self.log.line(&line)?;
            self.last = Some(r);
        }
        Ok(())
    }

    /// Seconds spent training (validation and saving left out).
    pub fn seconds(&self) -> f64 {
        (self.started.elapsed() - self.aside).as_secs_f64()
    }

    /// Moves the bar to `done` steps and shows the latest metrics.
    pub fn show(&self, done: u64) {
        self.bar.set_position(done);
        if let Some(r) = &self.last {
            let images = (done - self.first_step) as f64 * self.settings.batch_size as f64;
            self.bar.set_message(format!(
                "loss {:.4} recon {:.4} perplexity {:.1} codes {}/{} {:.0} img/s",
                r.loss,
                r.recon,
                r.perplexity,
                r.codes_used,
                self.codes,
                images / self.seconds()
            ));
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
