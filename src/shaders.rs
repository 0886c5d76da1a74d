//! The WGSL sources, public for callers who compose shaders themselves.

/// A WGSL source file from `shaders/`.
#[derive(Debug)]
pub struct Shader {
    /// The file's stem, e.g. `conv` for `shaders/conv.wgsl`.
    pub name: &'static str,
    /// The WGSL text: [`PRELUDE`] followed by the file, ready to compile.
    pub source: &'static str,
}

/// `shaders/prelude.wgsl`, the helpers every shader shares (the linear workgroup number,
/// the PCG hash), joined in front of each file so that no file repeats them.
pub const PRELUDE: &str = include_str!("../shaders/prelude.wgsl");

macro_rules! shaders {
    ($($(#[$doc:meta])* $id:ident => $file:literal),* $(,)?) => {
        $(
            $(#[$doc])*
            pub static $id: Shader = Shader {
                name: $file,
                source: concat!(
                    include_str!("../shaders/prelude.wgsl"),
                    include_str!(concat!("../shaders/", $file, ".wgsl"))
                ),
            };
        )*
        /// Every shader, for tools that validate or translate them all.
        pub static ALL: &[&Shader] = &[$(&$id),*];
    };
}

shaders! {
    /// Convolution as an implicit GEMM: forward, input gradient (= transposed
    /// convolution forward) and weight gradient, with register- and shared-memory tiles.
    CONV => "conv",
    /// The transposed convolution with kernel 4, stride 2, padding 1 to a few output
    /// channels, as four sub-pixel convolutions sharing their loads.
    SUBPIXEL => "subpixel",
    /// Deterministic reductions: split-k sums, per-channel sums, tree sums.
    REDUCE => "reduce",
    /// Element-wise kernels: the sum of two tensors.
    ELEMENTWISE => "elementwise",
    /// The fused nearest-code quantiser: code norms, argmin without a distance matrix,
    /// and the gather of code vectors.
    QUANTIZE => "quantize",
    /// The quantiser's backward pass: straight-through plus commitment gradient, and the
    /// deterministic per-code codebook gradient.
    VQ_BACKWARD => "vq_backward",
    /// The loss: reconstruction MSE value and gradient, and the loss terms.
    LOSS => "loss",
    /// Code-usage histogram and perplexity.
    CODES => "codes",
    /// Adam and SGD parameter updates.
    OPTIM => "optim",
    /// Restarting dead codes on encoder outputs.
    RESTART => "restart",
    /// The exponential-moving-average codebook update (k-means with decay 0).
    EMA => "ema",
    /// k-means++ seeding: drawing centres in proportion to their squared distances.
    KMEANS => "kmeans",
    /// Copying rows between stacks of code grids (the sampling band and whole grids).
    ROWS => "rows",
    /// Causal masks of PixelCNN convolutions, applied to weights and their gradients.
    CAUSAL_MASK => "causal_mask",
    /// Softmax over code logits: cross-entropy with its gradient, and seeded
    /// categorical sampling with a temperature.
    SOFTMAX => "softmax",
    /// Gated PixelCNN's gated activation and row shift, with their backward passes.
    GATED => "gated",
    /// The non-finite-loss guard: raising its flag, and gating dispatches by it.
    GUARD => "guard",
    /// L2 normalisation of vectors, for nearest codes by angle.
    NORMALIZE => "normalize",
    /// The k nearest codes of each vector and their distances.
    TOPK => "topk",
    /// Finite scalar quantisation: forward with codes, straight-through backward, decode.
    FSQ => "fsq",
    /// Residual vector quantisation: a stage's update of the residual, the quantised sum
    /// and the `[n, S]` codes; stacking codebooks at aligned offsets.
    RVQ => "rvq",
    /// A probe of how the device lays out its subgroups, for kernels that share loads
    /// across them.
    SUBGROUPS => "subgroups",
}
