//! The Gated PixelCNN body (van den Oord et al. 2016): a vertical stack that sees every
//! row above, a horizontal stack that sees the row so far, gated activations, and the
//! vertical stack's features fed to the horizontal one shifted down a row, so that no
//! position has a blind spot.
//!
//! Layer `l` with inputs `v`, `h` (both the embedded codes at layer 0):
//! `v_pre = V_l(v)` (mask Vertical), `h_pre = H_l(h) + link_l(shift_down(v_pre))` (mask
//! horizontal A at layer 0, B after), plus per-class biases at layer 0;
//! `v' = gate(v_pre)`, `h' = [h +] out_l(gate(h_pre))` (the residual from layer 1 on).

use super::network::{Body, BodyInput};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::causal_mask::Mask;
use crate::kernels::conv::{ConvShape, Relu};
use crate::kernels::{elementwise, gated};
use crate::launch::Launch;
use crate::layers::{Conv, InputGrad};
use crate::tensor::{Tensor, zeros_f32 as zeros};

/// One gated layer's convolutions and activations.
struct Layer {
    v: Conv,
    h: Conv,
    link: Conv,
    out: Conv,
    v_pre: Tensor,
    h_conv: Tensor,
    shifted: Tensor,
    link_out: Tensor,
    h_pre: Tensor,
    /// `gate(v_pre)`: the next layer's vertical input (absent on the last layer).
    v_out: Option<Tensor>,
    g: Tensor,
    /// `out(g)`, before the residual (absent on layer 0, which has none).
    o: Option<Tensor>,
    /// `h + o` (layer 0: `out(g)` itself).
    h_out: Tensor,
}

/// The gated body for `b`; its layers are named `v.l`, `h.l`, `link.l`, `out.l` for
/// `l` in `0..=blocks`, and the class biases `cond_v` and `cond_h`.
pub(super) fn body(gpu: &Gpu, b: &BodyInput<'_>) -> Result<Body> {
    let (c, batch, side) = (b.config, b.batch, b.config.grid);
    let (p, layers) = (c.channels, c.blocks + 1);
    let conv = |name: String, cin, cout, k: usize| {
        let shape = ConvShape::new(batch, cin, cout, side, k, 1, k / 2);
        Conv::new(b.params, &name, shape, false, Relu::NONE)
    };
    let plane = |ch| [batch, ch, side[0], side[1]];
    let built = (0..layers)
        .map(|l| {
            let (cin, k) = if l == 0 {
                (c.embed, c.first_kernel)
            } else {
                (p, 3)
            };
            let h_mask = if l == 0 {
                Mask::HorizontalA
            } else {
                Mask::HorizontalB
            };
            Ok(Layer {
                v: conv(format!("v.{l}"), cin, 2 * p, k).masked(Mask::Vertical),
                h: conv(format!("h.{l}"), cin, 2 * p, k).masked(h_mask),
                link: conv(format!("link.{l}"), 2 * p, 2 * p, 1),
                out: conv(format!("out.{l}"), p, p, 1),
                v_pre: zeros(gpu, &plane(2 * p))?,
                h_conv: zeros(gpu, &plane(2 * p))?,
                shifted: zeros(gpu, &plane(2 * p))?,
                link_out: zeros(gpu, &plane(2 * p))?,
                h_pre: zeros(gpu, &plane(2 * p))?,
                v_out: match l + 1 < layers {
                    true => Some(zeros(gpu, &plane(p))?),
                    false => None,
                },
                g: zeros(gpu, &plane(p))?,
                o: match l {
                    0 => None,
                    _ => Some(zeros(gpu, &plane(p))?),
                },
                h_out: zeros(gpu, &plane(p))?,
            })
        })
        .collect::<Result<Vec<Layer>>>()?;
    // Per-class biases on both stacks' pre-activations at layer 0.
    let cond = match b.classes {
        Some(onehot) => Some((
            conv("cond_v".into(), c.classes, 2 * p, 1),
            conv("cond_h".into(), c.classes, 2 * p, 1),
            onehot,
            [zeros(gpu, &plane(2 * p))?, zeros(gpu, &plane(2 * p))?],
            [zeros(gpu, &plane(2 * p))?, zeros(gpu, &plane(2 * p))?],
        )),
        None => None,
    };

    let mut forward = Launch::default();
    let mut flops = 0.0;
    for (l, layer) in built.iter().enumerate() {
        let (v_in, h_in) = match l {
            0 => (b.e, b.e),
            _ => (
                built[l - 1].v_out.as_ref().expect("a later layer"),
                &built[l - 1].h_out,
            ),
        };
        let (v_pre, h_pre) = (&layer.v_pre, &layer.h_pre);
        // Layer 0 of a conditional prior adds the class biases to both pre-activations.
        let biases = cond.as_ref().filter(|_| l == 0);
        forward = match biases {
            Some((cv, _, onehot, [v_raw, bias_v], _)) => forward
                .then(layer.v.forward(gpu, v_in, v_raw)?)
                .then(cv.forward(gpu, onehot, bias_v)?)
                .then(elementwise::add(gpu, v_raw, bias_v, v_pre)?),
            None => forward.then(layer.v.forward(gpu, v_in, v_pre)?),
        };
        forward = forward
            .then(layer.h.forward(gpu, h_in, &layer.h_conv)?)
            .then(gated::shift_down(gpu, v_pre, &layer.shifted)?)
            .then(layer.link.forward(gpu, &layer.shifted, &layer.link_out)?);
        forward = match biases {
            Some((cv, ch, onehot, _, [h_sum, bias_h])) => {
                flops += cv.shape.flops() + ch.shape.flops();
                forward
                    .then(elementwise::add(
                        gpu,
                        &layer.h_conv,
                        &layer.link_out,
                        h_sum,
                    )?)
                    .then(ch.forward(gpu, onehot, bias_h)?)
                    .then(elementwise::add(gpu, h_sum, bias_h, h_pre)?)
            }
            None => forward.then(elementwise::add(
                gpu,
                &layer.h_conv,
                &layer.link_out,
                h_pre,
            )?),
        };
        if let Some(v_out) = &layer.v_out {
            forward = forward.then(gated::gate(gpu, v_pre, v_out)?);
        }
        forward = forward.then(gated::gate(gpu, h_pre, &layer.g)?);
        forward = forward.then(match &layer.o {
            None => layer.out.forward(gpu, &layer.g, &layer.h_out)?,
            Some(o) => layer.out.forward(gpu, &layer.g, o)?.then(elementwise::add(
                gpu,
                h_in,
                o,
                &layer.h_out,
            )?),
        });
        flops += [&layer.v, &layer.h, &layer.link, &layer.out]
            .iter()
            .map(|conv| conv.shape.flops())
            .sum::<f64>();
    }
    let top = built[layers - 1].h_out.clone();

    let (d_top, backward) = match b.d_e {
        Some(de) => {
            let d_top = zeros(gpu, &plane(p))?;
            let launch = backward(
                gpu,
                b,
                &built,
                cond.as_ref().map(|x| (&x.0, &x.1, x.2)),
                &d_top,
                de,
            )?;
            (Some(d_top), Some(launch))
        }
        None => (None, None),
    };
    Ok(Body {
        forward,
        top,
        d_top,
        backward,
        flops,
    })
}

/// From the gradient at the last layer's `h_out` (`d_top`) back through every layer to
/// `d_e`, the sum of the gradients the two stacks' first convolutions pass to the
/// embedded codes.
fn backward(
    gpu: &Gpu,
    b: &BodyInput<'_>,
    layers: &[Layer],
    cond: Option<(&Conv, &Conv, &Tensor)>,
    d_top: &Tensor,
    d_e: &Tensor,
) -> Result<Launch> {
    let like = |t: &Tensor| zeros(gpu, t.shape());
    let mut launch = Launch::default();
    // The gradients at the current layer's outputs, h_out and v_out.
    let mut d_h_out = d_top.clone();
    let mut d_v_out: Option<Tensor> = None;
    for (l, layer) in layers.iter().enumerate().rev() {
        let (v_in, h_in) = match l {
            0 => (b.e, b.e),
            _ => (
                layers[l - 1].v_out.as_ref().expect("a later layer"),
                &layers[l - 1].h_out,
            ),
        };
        let (d_g, d_h_pre) = (like(&layer.g)?, like(&layer.h_pre)?);
        let (d_h_conv_in, d_shifted, d_v_pre_link) =
            (like(h_in)?, like(&layer.shifted)?, like(&layer.v_pre)?);
        let d_v_in = like(v_in)?;
        launch = launch
            .then(
                layer
                    .out
                    .backward(gpu, &layer.g, &d_h_out, Some(InputGrad::into(&d_g)))?,
            )
            .then(gated::gate_backward(gpu, &layer.h_pre, &d_g, &d_h_pre)?)
            .then(
                layer
                    .h
                    .backward(gpu, h_in, &d_h_pre, Some(InputGrad::into(&d_h_conv_in)))?,
            )
            .then(layer.link.backward(
                gpu,
                &layer.shifted,
                &d_h_pre,
                Some(InputGrad::into(&d_shifted)),
            )?)
            .then(gated::shift_up(gpu, &d_shifted, &d_v_pre_link)?);
        let d_v_pre = match &d_v_out {
            Some(d_v) => {
                let (d_gate, sum) = (like(&layer.v_pre)?, like(&layer.v_pre)?);
                launch = launch
                    .then(gated::gate_backward(gpu, &layer.v_pre, d_v, &d_gate)?)
                    .then(elementwise::add(gpu, &d_v_pre_link, &d_gate, &sum)?);
                sum
            }
            None => d_v_pre_link,
        };
        launch = launch.then(layer.v.backward(
            gpu,
            v_in,
            &d_v_pre,
            Some(InputGrad::into(&d_v_in)),
        )?);
        if l == 0 {
            if let Some((cv, ch, onehot)) = cond {
                launch = launch
                    .then(cv.backward(gpu, onehot, &d_v_pre, None)?)
                    .then(ch.backward(gpu, onehot, &d_h_pre, None)?);
            }
            launch = launch.then(elementwise::add(gpu, &d_v_in, &d_h_conv_in, d_e)?);
        } else {
            // h_out = h_in + o: the residual passes d_h_out through unchanged.
            let d_h_in = like(h_in)?;
            launch = launch.then(elementwise::add(gpu, &d_h_out, &d_h_conv_in, &d_h_in)?);
            d_h_out = d_h_in;
            d_v_out = Some(d_v_in);
        }
    }
    Ok(launch)
}
