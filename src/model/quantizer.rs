//! Which quantiser turns the encoder's output into codes (DESIGN.md section 2): the
//! codebook of the paper, residual VQ's stages of codebooks, or FSQ's fixed levels.

use std::fmt;

use crate::error::{Error, Result};

/// The most dimensions an FSQ latent may have.
pub const MAX_FSQ_DIMS: usize = 16;

/// The most symbols a latent position may take: the joint code that the training
/// metrics count and the prior models (K for VQ, K^S for residual VQ, the product of
/// the levels for FSQ).
pub const MAX_SYMBOLS: u64 = 1 << 20;

/// The checkpoint metadata keys of DESIGN.md section 2.
pub const QUANTIZER_KEY: &str = "quantizer";
/// See [`QUANTIZER_KEY`].
pub const STAGES_KEY: &str = "stages";
/// See [`QUANTIZER_KEY`].
pub const FSQ_LEVELS_KEY: &str = "fsq_levels";

/// The quantiser of a model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantizerKind {
    /// One codebook `codebook.weight` `[K, D]`: the nearest code.
    #[default]
    Vq,
    /// `stages` codebooks `codebook.{s}.weight` `[K, D]`, each quantising the residual
    /// the stages before it left; z_q is the sum of the stages' code vectors.
    Rvq {
        /// Stages S (at least 1).
        stages: usize,
    },
    /// Finite scalar quantisation: no codebook, D = the number of levels.
    Fsq(Levels),
}

/// FSQ's levels per dimension, e.g. `8,5,5,5`.
#[derive(Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Levels {
    len: usize,
    values: [u32; MAX_FSQ_DIMS],
}

impl Levels {
    /// Levels of each dimension: 1 to [`MAX_FSQ_DIMS`] dimensions of at least 2 levels.
    pub fn new(levels: &[u32]) -> Result<Levels> {
        let bad = |why: String| {
            Err(Error::Usage(format!(
                "--fsq-levels {}: {why}",
                join(levels)
            )))
        };
        if levels.is_empty() || levels.len() > MAX_FSQ_DIMS {
            return bad(format!(
                "give 1 to {MAX_FSQ_DIMS} levels, one per code dimension"
            ));
        }
        if let Some(l) = levels.iter().find(|&&l| l < 2) {
            return bad(format!("{l} levels: each dimension needs at least 2"));
        }
        let mut values = [0; MAX_FSQ_DIMS];
        values[..levels.len()].copy_from_slice(levels);
        Ok(Levels {
            len: levels.len(),
            values,
        })
    }

    /// The levels, dimension by dimension.
    pub fn as_slice(&self) -> &[u32] {
        &self.values[..self.len]
    }

    /// The number of codes: the product of the levels.
    pub fn codes(&self) -> u64 {
        self.as_slice().iter().map(|&l| u64::from(l)).product()
    }
}

fn join(levels: &[u32]) -> String {
    levels
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl std::str::FromStr for Levels {
    type Err = Error;
    fn from_str(text: &str) -> Result<Levels> {
        let levels = text
            .split(',')
            .map(|l| l.trim().parse::<u32>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| {
                Error::Usage(format!(
                    "--fsq-levels {text}: expected whole numbers separated by commas, e.g. 8,5,5,5"
                ))
            })?;
        Levels::new(&levels)
    }
}

impl fmt::Display for Levels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&join(self.as_slice()))
    }
}

impl fmt::Debug for Levels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Levels({self})")
    }
}

impl TryFrom<String> for Levels {
    type Error = Error;
    fn try_from(text: String) -> Result<Levels> {
        text.parse()
    }
}

impl From<Levels> for String {
    fn from(levels: Levels) -> String {
        levels.to_string()
    }
}

impl QuantizerKind {
    /// The name DESIGN.md's metadata and `--quantizer` use.
    pub fn name(&self) -> &'static str {
        match self {
            QuantizerKind::Vq => "vq",
            QuantizerKind::Rvq { .. } => "rvq",
            QuantizerKind::Fsq(_) => "fsq",
        }
    }

    /// Codebooks the model trains: 1, S, or none for FSQ.
    pub fn codebooks(&self) -> usize {
        match self {
            QuantizerKind::Vq => 1,
            QuantizerKind::Rvq { stages } => *stages,
            QuantizerKind::Fsq(_) => 0,
        }
    }

    /// The parameter name of codebook `s`.
    pub fn codebook_name(&self, s: usize) -> String {
        match self {
            QuantizerKind::Rvq { .. } => format!("codebook.{s}.weight"),
            _ => "codebook.weight".into(),
        }
    }

    /// Codes per latent position in the files `encode` writes: S for residual VQ, else 1.
    pub fn codes_per_position(&self) -> usize {
        match self {
            QuantizerKind::Rvq { stages } => *stages,
            _ => 1,
        }
    }

    /// The checkpoint metadata that names this quantiser.
    pub fn metadata(&self) -> Vec<(String, String)> {
        let mut out = vec![(QUANTIZER_KEY.to_string(), self.name().to_string())];
        match self {
            QuantizerKind::Vq => {}
            QuantizerKind::Rvq { stages } => out.push((STAGES_KEY.into(), stages.to_string())),
            QuantizerKind::Fsq(levels) => out.push((FSQ_LEVELS_KEY.into(), levels.to_string())),
        }
        out
    }

    /// The quantiser a checkpoint's metadata names (`get` looks a key up); `vq` when it
    /// names none, as a PyTorch-written file does.
    pub fn from_metadata(
        get: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<Self, String> {
        let Some(name) = get(QUANTIZER_KEY) else {
            return Ok(QuantizerKind::Vq);
        };
        match name.as_str() {
            "vq" => Ok(QuantizerKind::Vq),
            "rvq" if get("shared_codebook").is_some_and(|v| v == "true") => Err(
                "residual VQ with one shared codebook (shared_codebook=true) is not trained or read by the command line yet; the ResidualQuantizer component takes one".into(),
            ),
            "rvq" => {
                let stages = get(STAGES_KEY)
                    .and_then(|s| s.parse().ok())
                    .filter(|&s: &usize| s > 0)
                    .ok_or("quantizer rvq without a positive 'stages' in its metadata")?;
                Ok(QuantizerKind::Rvq { stages })
            }
            "fsq" => {
                let text = get(FSQ_LEVELS_KEY)
                    .ok_or("quantizer fsq without 'fsq_levels' in its metadata")?;
                text.parse()
                    .map(QuantizerKind::Fsq)
                    .map_err(|e| format!("its fsq_levels: {e}"))
            }
            other => Err(format!(
                "unknown quantizer '{other}' (expected vq, rvq or fsq)"
            )),
        }
    }

    /// Splits joint codes (stage 0 the least significant digit, base `codes`) into S
    /// codes each, as residual VQ's `[.., S]` files hold them; other quantisers' codes
    /// are their joint codes.
    pub fn split(&self, codes: usize, joint: &[u32]) -> Vec<u32> {
        let per = self.codes_per_position();
        let mut out = Vec::with_capacity(joint.len() * per);
        for &j in joint {
            let mut rest = j as usize;
            for _ in 0..per {
                out.push((rest % codes) as u32);
                rest /= codes;
            }
        }
        out
    }

    /// The inverse of [`QuantizerKind::split`].
    pub fn join(&self, codes: usize, split: &[u32]) -> Vec<u32> {
        split
            .chunks(self.codes_per_position())
            .map(|c| c.iter().rev().fold(0usize, |j, &c| j * codes + c as usize) as u32)
            .collect()
    }
}
