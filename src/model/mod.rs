//! The VQ-VAE of DESIGN.md section 1: its configuration, its parameters' PyTorch names
//! and shapes, and their initialisation.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::rng::Rng;

pub mod quantizer;

pub use quantizer::{Levels, QuantizerKind};

/// Every size of the model.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// Image channels C (1 or 3).
    pub channels: usize,
    /// Hidden channels H (even).
    pub hidden: usize,
    /// Residual hidden channels R.
    pub res_hidden: usize,
    /// Residual blocks L in the encoder and in the decoder.
    pub res_layers: usize,
    /// Codebook size K (per stage for residual VQ; the product of the levels for FSQ).
    pub codes: usize,
    /// Code dimension D (the number of levels for FSQ).
    pub code_dim: usize,
    /// Commitment weight beta.
    pub beta: f32,
    /// The quantiser.
    #[serde(default)]
    pub quantizer: QuantizerKind,
}

impl Config {
    /// The reference configuration for `channels`-channel images.
    pub fn reference(channels: usize) -> Config {
        Config {
            channels,
            hidden: 128,
            res_hidden: 32,
            res_layers: 2,
            codes: 512,
            code_dim: 64,
            beta: 0.25,
            quantizer: QuantizerKind::Vq,
        }
    }

    /// The symbols a latent position takes: K, K^S for residual VQ, the product of the
    /// levels for FSQ (saturating past u64).
    pub fn symbols(&self) -> u64 {
        match self.quantizer {
            QuantizerKind::Rvq { stages } => {
                (0..stages).fold(1u64, |j, _| j.saturating_mul(self.codes as u64))
            }
            _ => self.codes as u64,
        }
    }

    /// Checks that every size can build a model.
    pub fn validate(&self) -> Result<()> {
        let bad = |flag: &str, value: usize, want: &str| {
            Err(Error::Usage(format!("{flag} {value}: {want}")))
        };
        if self.channels != 1 && self.channels != 3 {
            return bad("--channels", self.channels, "must be 1 or 3");
        }
        if self.hidden < 2 || !self.hidden.is_multiple_of(2) {
            return bad(
                "--hidden",
                self.hidden,
                "must be an even number of at least 2",
            );
        }
        for (flag, v) in [
            ("--res-hidden", self.res_hidden),
            ("--codes", self.codes),
            ("--code-dim", self.code_dim),
        ] {
            if v == 0 {
                return bad(flag, v, "must be at least 1");
            }
        }
        match self.quantizer {
            QuantizerKind::Fsq(levels) => {
                let (dims, codes) = (levels.as_slice().len(), levels.codes());
                if self.code_dim != dims || self.codes as u64 != codes {
                    return Err(Error::Usage(format!(
                        "--fsq-levels {levels} make {codes} codes of dimension {dims}, not --codes {} of --code-dim {}",
                        self.codes, self.code_dim
                    )));
                }
            }
            QuantizerKind::Rvq { stages: 0 } => {
                return bad("--stages", 0, "must be at least 1");
            }
            _ => {}
        }
        if self.symbols() > quantizer::MAX_SYMBOLS {
            return Err(Error::Usage(format!(
                "{} codes per latent position (--quantizer {}): at most {} fit the code counts and the prior",
                self.symbols(),
                self.quantizer.name(),
                quantizer::MAX_SYMBOLS
            )));
        }
        if !self.beta.is_finite() || self.beta < 0.0 {
            return Err(Error::Usage(format!(
                "--beta {}: must be a finite number >= 0",
                self.beta
            )));
        }
        Ok(())
    }

    /// Every parameter, in a fixed order, with its PyTorch name and shape.
    pub fn params(&self) -> Vec<ParamSpec> {
        let (c, h, r, d) = (self.channels, self.hidden, self.res_hidden, self.code_dim);
        let mut out = Vec::new();
        let mut conv = |name: String, cout: usize, cin: usize, k: usize| {
            out.extend(ParamSpec::conv(&name, cout, cin, k));
        };
        conv("encoder.conv1".into(), h / 2, c, 4);
        conv("encoder.conv2".into(), h, h / 2, 4);
        conv("encoder.conv3".into(), h, h, 3);
        for i in 0..self.res_layers {
            conv(format!("encoder.res.{i}.conv1"), r, h, 3);
            conv(format!("encoder.res.{i}.conv2"), h, r, 1);
        }
        conv("pre_vq".into(), d, h, 1);
        conv("decoder.conv1".into(), h, d, 3);
        for i in 0..self.res_layers {
            conv(format!("decoder.res.{i}.conv1"), r, h, 3);
            conv(format!("decoder.res.{i}.conv2"), h, r, 1);
        }
        // ConvTranspose2d weights are [in, out, kh, kw]; PyTorch's fan-in is out * kh * kw.
        for (name, cin, cout) in [("decoder.deconv1", h, h / 2), ("decoder.deconv2", h / 2, c)] {
            let fan_in = cout * 16;
            out.push(ParamSpec {
                name: format!("{name}.weight"),
                shape: vec![cin, cout, 4, 4],
                init: Init::Uniform(fan_in),
            });
            out.push(ParamSpec {
                name: format!("{name}.bias"),
                shape: vec![cout],
                init: Init::Uniform(fan_in),
            });
        }
        for s in 0..self.quantizer.codebooks() {
            out.push(ParamSpec {
                name: self.quantizer.codebook_name(s),
                shape: vec![self.codes, d],
                init: Init::Codebook(self.codes),
            });
        }
        out
    }

    /// Reads the architecture from tensor shapes (a checkpoint's) and the quantiser its
    /// metadata names, then checks that every tensor the model needs is there with
    /// exactly its shape.
    pub fn from_shapes(
        shapes: &HashMap<String, Vec<usize>>,
        quantizer: QuantizerKind,
        beta: f32,
        path: &Path,
    ) -> Result<Config> {
        let err = |message: String| Error::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let get = |name: &str, dim: usize| -> Result<usize> {
            let shape = shapes
                .get(name)
                .ok_or_else(|| err(format!("missing tensor '{name}'")))?;
            shape.get(dim).copied().ok_or_else(|| {
                err(format!(
                    "tensor '{name}' has shape {shape:?}, too few dimensions"
                ))
            })
        };
        let res_layers = (0..)
            .take_while(|i| shapes.contains_key(&format!("encoder.res.{i}.conv1.weight")))
            .count();
        let config = Config {
            channels: get("encoder.conv1.weight", 1)?,
            hidden: get("encoder.conv2.weight", 0)?,
            res_hidden: if res_layers > 0 {
                get("encoder.res.0.conv1.weight", 0)?
            } else {
                1
            },
            res_layers,
            codes: match quantizer {
                QuantizerKind::Fsq(levels) => levels.codes() as usize,
                q => get(&q.codebook_name(0), 0)?,
            },
            code_dim: match quantizer {
                QuantizerKind::Fsq(levels) => levels.as_slice().len(),
                q => get(&q.codebook_name(0), 1)?,
            },
            beta,
            quantizer,
        };
        config
            .validate()
            .map_err(|e| err(format!("inconsistent shapes: {e}")))?;
        let specs = config.params();
        for spec in &specs {
            match shapes.get(&spec.name) {
                None => {
                    return Err(err(format!(
                        "missing tensor '{}' (shape {:?})",
                        spec.name, spec.shape
                    )));
                }
                Some(s) if *s != spec.shape => {
                    return Err(err(format!(
                        "tensor '{}' has shape {s:?}, but the other tensors make it {:?}",
                        spec.name, spec.shape
                    )));
                }
                Some(_) => {}
            }
        }
        let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        if let Some(extra) = shapes.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(err(format!(
                "unexpected tensor '{extra}' for a model with {res_layers} residual blocks and quantizer {} (metadata '{}')",
                quantizer.name(),
                quantizer::QUANTIZER_KEY
            )));
        }
        Ok(config)
    }
}

/// How a parameter starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// PyTorch's default for convolutions: uniform in ±1/sqrt(fan_in).
    Uniform(usize),
    /// Uniform in ±1/K (PyTorch's usual codebook init; replaced by data by default).
    Codebook(usize),
}

/// A parameter's PyTorch name, shape and initialisation.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// The `state_dict` name.
    pub name: String,
    /// The shape.
    pub shape: Vec<usize>,
    /// The initialisation.
    pub init: Init,
}

impl ParamSpec {
    /// A `Conv2d(cin, cout, k)`'s weight and bias, PyTorch-initialised.
    pub fn conv(name: &str, cout: usize, cin: usize, k: usize) -> [ParamSpec; 2] {
        let fan_in = cin * k * k;
        [
            ParamSpec {
                name: format!("{name}.weight"),
                shape: vec![cout, cin, k, k],
                init: Init::Uniform(fan_in),
            },
            ParamSpec {
                name: format!("{name}.bias"),
                shape: vec![cout],
                init: Init::Uniform(fan_in),
            },
        ]
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the parameter has no elements (never, for a valid config).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Initial values drawn from `rng`.
    pub fn initial(&self, rng: &mut Rng) -> Vec<f32> {
        let bound = match self.init {
            Init::Uniform(fan_in) => 1.0 / (fan_in as f64).sqrt(),
            Init::Codebook(k) => 1.0 / k as f64,
        };
        (0..self.len())
            .map(|_| rng.uniform(-bound, bound) as f32)
            .collect()
    }
}
