//! A PixelCNN prior over code grids (van den Oord et al. 2016, as the VQ-VAE paper used
//! it): an embedding of the codes, a 7x7 convolution under mask A, residual blocks whose
//! 3x3 convolutions are under mask B, and 1x1 layers to K logits per position, trained
//! with softmax cross-entropy. Optionally conditioned on a class, added as a learned
//! per-class bias after the first layer.

mod gated;
mod network;
mod sample;
mod train;

pub use network::PriorNet;
pub use sample::{SampleSettings, Sampler, band_rows};
pub use train::{
    CodeGrids, PRIOR_FILE, PRIOR_METRICS_FILE, PRIOR_STATE_FILE, PriorRun, PriorSettings,
    PriorStart, PriorSummary,
};

use serde::{Deserialize, Serialize};

use crate::checkpoint::TensorFile;
use crate::error::{Error, Result};
use crate::model::{Init, ParamSpec};

/// The prior's sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorConfig {
    /// Codebook size K of the autoencoder whose codes it models.
    pub codes: usize,
    /// Code grid `[h, w]`: the autoencoder's latent grid.
    pub grid: [usize; 2],
    /// Channels of the code embedding.
    pub embed: usize,
    /// Channels between layers.
    pub channels: usize,
    /// Channels inside each residual block.
    pub hidden: usize,
    /// Residual blocks.
    pub blocks: usize,
    /// Side of the first (mask A) convolution; odd.
    pub first_kernel: usize,
    /// Classes it is conditioned on; 0 for none.
    pub classes: usize,
    /// The Gated PixelCNN body (vertical and horizontal stacks, gated activations)
    /// instead of residual blocks under mask B.
    #[serde(default)]
    pub gated: bool,
}

/// The `metadata` key of a prior checkpoint that holds its [`PriorConfig`] as JSON.
pub const CONFIG_KEY: &str = "prior_config";

/// The `metadata` key of a prior checkpoint that names the autoencoder whose codes it
/// learned, by [`codebook_fingerprint`].
pub const AUTOENCODER_KEY: &str = "autoencoder_codebook";

/// A fingerprint of a codebook's exact values (64-bit FNV-1a of the f32 bits, in hex):
/// codes mean something only with the codebook they index.
pub fn codebook_fingerprint(codebook: &[f32]) -> String {
    let hash = codebook
        .iter()
        .flat_map(|v| v.to_bits().to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, byte| {
            (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{hash:016x}")
}

impl PriorConfig {
    /// The default sizes for codes `codes` on a `grid`.
    pub fn new(codes: usize, grid: [usize; 2], classes: usize) -> PriorConfig {
        PriorConfig {
            codes,
            grid,
            embed: 32,
            channels: 64,
            hidden: 32,
            blocks: 4,
            first_kernel: 7,
            classes,
            gated: false,
        }
    }

    /// Rows above a position that its logits can see: each masked convolution reaches
    /// half its height up (the first `first_kernel / 2`, each block's 3x3 one), and the
    /// gated body's vertical stack reaches the horizontal one a row further down.
    pub fn rows_above(&self) -> usize {
        self.first_kernel / 2 + self.blocks + usize::from(self.gated)
    }

    /// Checks that the sizes can build a network.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("codes", self.codes),
            ("grid height", self.grid[0]),
            ("grid width", self.grid[1]),
            ("embedding channels", self.embed),
            ("channels", self.channels),
            ("residual channels", self.hidden),
        ];
        if let Some((what, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(Error::Usage(format!("prior {what} must be at least 1")));
        }
        if self.first_kernel.is_multiple_of(2) {
            return Err(Error::Usage(format!(
                "prior first kernel {}: must be odd (a masked kernel needs a centre)",
                self.first_kernel
            )));
        }
        Ok(())
    }

    /// Every parameter, in a fixed order, with its name and shape.
    pub fn params(&self) -> Vec<ParamSpec> {
        let (k, f, p, r) = (self.codes, self.embed, self.channels, self.hidden);
        let mut out = vec![ParamSpec {
            name: "embedding.weight".into(),
            shape: vec![k, f],
            init: Init::Uniform(1),
        }];
        let mut conv = |name: String, cout: usize, cin: usize, size: usize| {
            out.extend(ParamSpec::conv(&name, cout, cin, size));
        };
        if self.gated {
            for l in 0..=self.blocks {
                let (cin, size) = if l == 0 {
                    (f, self.first_kernel)
                } else {
                    (p, 3)
                };
                conv(format!("v.{l}"), 2 * p, cin, size);
                conv(format!("h.{l}"), 2 * p, cin, size);
                conv(format!("link.{l}"), 2 * p, 2 * p, 1);
                conv(format!("out.{l}"), p, p, 1);
            }
            if self.classes > 0 {
                conv("cond_v".into(), 2 * p, self.classes, 1);
                conv("cond_h".into(), 2 * p, self.classes, 1);
            }
        } else {
            conv("conv_in".into(), p, f, self.first_kernel);
            if self.classes > 0 {
                conv("cond".into(), p, self.classes, 1);
            }
            for i in 0..self.blocks {
                conv(format!("res.{i}.conv1"), r, p, 3);
                conv(format!("res.{i}.conv2"), p, r, 1);
            }
        }
        conv("out1".into(), p, p, 1);
        conv("out2".into(), k, p, 1);
        out
    }

    /// The configuration a prior checkpoint records.
    pub fn of_checkpoint(file: &TensorFile, path: &std::path::Path) -> Result<PriorConfig> {
        let config: PriorConfig = file
            .metadata
            .get(CONFIG_KEY)
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!(
                    "no '{CONFIG_KEY}' in its metadata: not a prior written by `vqvae train-prior`"
                ),
            })?;
        config.validate()?;
        Ok(config)
    }
}
