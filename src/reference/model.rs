//! The whole VQ-VAE, forward and backward, composed from the reference kernels in f64:
//! the ground truth for the GPU graph's gradients.

use std::collections::HashMap;

use super::conv::{self as rc, TransposedShape};
use super::{add, loss, quantize as rq, relu, relu_backward};
use crate::kernels::conv::ConvShape;
use crate::kernels::quantize::Rows;
use crate::model::Config;

/// Parameters or gradients by PyTorch name.
pub type Named = HashMap<String, Vec<f64>>;

/// Each residual block's input and inner activation, kept for the backward pass.
type Saved = Vec<(Vec<f64>, Vec<f64>)>;

struct Net<'a> {
    c: &'a Config,
    p: &'a Named,
    batch: usize,
}

fn same(
    batch: usize,
    cin: usize,
    cout: usize,
    side: [usize; 2],
    k: usize,
    pad: usize,
) -> ConvShape {
    ConvShape::new(batch, cin, cout, side, k, 1, pad)
}

impl Net<'_> {
    fn w(&self, name: &str) -> &[f64] {
        &self.p[&format!("{name}.weight")]
    }

    fn b(&self, name: &str) -> &[f64] {
        &self.p[&format!("{name}.bias")]
    }

    fn conv(&self, name: &str, s: &ConvShape, x: &[f64]) -> Vec<f64> {
        rc::conv2d(s, x, self.w(name), self.b(name))
    }

    /// Gradients of a conv at `x` for `dy`: weight, bias into `g`; returns dx.
    fn conv_back(
        &self,
        name: &str,
        s: &ConvShape,
        x: &[f64],
        dy: &[f64],
        g: &mut Named,
    ) -> Vec<f64> {
        g.insert(format!("{name}.weight"), rc::conv2d_weight_grad(s, x, dy));
        g.insert(format!("{name}.bias"), rc::bias_grad(dy, s.cout, s.batch));
        rc::conv2d_input_grad(s, dy, self.w(name))
    }

    fn res_shapes(&self, side: [usize; 2]) -> (ConvShape, ConvShape) {
        let (h, r) = (self.c.hidden, self.c.res_hidden);
        (
            same(self.batch, h, r, side, 3, 1),
            same(self.batch, r, h, side, 1, 0),
        )
    }

    /// The residual stack: returns each block's input and `t`, and the output.
    fn res_forward(&self, prefix: &str, side: [usize; 2], a0: Vec<f64>) -> (Saved, Vec<f64>) {
        let (s1, s2) = self.res_shapes(side);
        let mut saved = Vec::new();
        let mut a = a0;
        for i in 0..self.c.res_layers {
            let t = relu(&self.conv(&format!("{prefix}.res.{i}.conv1"), &s1, &relu(&a)));
            let u = self.conv(&format!("{prefix}.res.{i}.conv2"), &s2, &t);
            let next = add(&a, &u);
            saved.push((a, t));
            a = next;
        }
        (saved, a)
    }

    fn res_backward(
        &self,
        prefix: &str,
        side: [usize; 2],
        saved: &Saved,
        d_out: Vec<f64>,
        g: &mut Named,
    ) -> Vec<f64> {
        let (s1, s2) = self.res_shapes(side);
        let mut d = d_out;
        for (i, (a, t)) in saved.iter().enumerate().rev() {
            let dt = self.conv_back(&format!("{prefix}.res.{i}.conv2"), &s2, t, &d, g);
            let dt_pre = relu_backward(&dt, t);
            let da_relu = self.conv_back(
                &format!("{prefix}.res.{i}.conv1"),
                &s1,
                &relu(a),
                &dt_pre,
                g,
            );
            d = add(&d, &relu_backward(&da_relu, a));
        }
        d
    }
}

/// The loss terms `[loss, reconstruction, codebook, commitment]` and every parameter's
/// gradient for images `x` `[batch, C, height, width]` (already scaled). `indices`
/// forces the code choice (to follow another implementation through near-ties);
/// `None` picks the nearest codes.
pub fn loss_and_grads(
    c: &Config,
    p: &Named,
    x: &[f64],
    batch: usize,
    [height, width]: [usize; 2],
    indices: Option<&[u32]>,
) -> ([f64; 4], Named) {
    let net = Net { c, p, batch };
    let (hh, h, d) = (c.hidden / 2, c.hidden, c.code_dim);
    let half = [height / 2, width / 2];
    let side = [height / 4, width / 4];
    let down = |cin, cout, size| ConvShape::new(batch, cin, cout, size, 4, 2, 1);
    let (s1, s2, s3) = (
        down(c.channels, hh, [height, width]),
        down(hh, h, half),
        same(batch, h, h, side, 3, 1),
    );
    let (spre, sdec) = (same(batch, h, d, side, 1, 0), same(batch, d, h, side, 3, 1));
    let t1 = TransposedShape {
        batch,
        cin: h,
        cout: hh,
        h: side[0],
        w: side[1],
        k: 4,
        stride: 2,
        pad: 1,
    };
    let t2 = TransposedShape {
        batch,
        cin: hh,
        cout: c.channels,
        h: half[0],
        w: half[1],
        k: 4,
        stride: 2,
        pad: 1,
    };

    let h1 = relu(&net.conv("encoder.conv1", &s1, x));
    let h2 = relu(&net.conv("encoder.conv2", &s2, &h1));
    let a0 = net.conv("encoder.conv3", &s3, &h2);
    let (enc_saved, a_top) = net.res_forward("encoder", side, a0);
    let z_e = net.conv("pre_vq", &spre, &relu(&a_top));
    let rows = Rows {
        n: batch * side[0] * side[1],
        dim: d,
        plane: side[0] * side[1],
    };
    let codebook = &p["codebook.weight"];
    let idx = indices.map_or_else(|| rq::nearest(&rows, &z_e, codebook).0, <[u32]>::to_vec);
    let z_q = rq::gather(&rows, &idx, codebook);
    let b0 = net.conv("decoder.conv1", &sdec, &z_q);
    let (dec_saved, b_top) = net.res_forward("decoder", side, b0);
    let g1 = relu(&rc::conv_transpose2d(
        &t1,
        &relu(&b_top),
        net.w("decoder.deconv1"),
        net.b("decoder.deconv1"),
    ));
    let x_hat = rc::conv_transpose2d(&t2, &g1, net.w("decoder.deconv2"), net.b("decoder.deconv2"));
    let terms = loss::terms(&x_hat, x, &z_e, &z_q, f64::from(c.beta));

    let mut g = Named::new();
    let dx_hat = loss::mse_grad(&x_hat, x);
    g.insert(
        "decoder.deconv2.weight".into(),
        rc::conv_transpose2d_weight_grad(&t2, &g1, &dx_hat),
    );
    g.insert(
        "decoder.deconv2.bias".into(),
        rc::bias_grad(&dx_hat, c.channels, batch),
    );
    let dg1 = relu_backward(
        &rc::conv_transpose2d_input_grad(&t2, &dx_hat, net.w("decoder.deconv2")),
        &g1,
    );
    g.insert(
        "decoder.deconv1.weight".into(),
        rc::conv_transpose2d_weight_grad(&t1, &relu(&b_top), &dg1),
    );
    g.insert(
        "decoder.deconv1.bias".into(),
        rc::bias_grad(&dg1, hh, batch),
    );
    let db_top = relu_backward(
        &rc::conv_transpose2d_input_grad(&t1, &dg1, net.w("decoder.deconv1")),
        &b_top,
    );
    let db0 = net.res_backward("decoder", side, &dec_saved, db_top, &mut g);
    let dz_q = net.conv_back("decoder.conv1", &sdec, &z_q, &db0, &mut g);
    let (dz_e, dcb) = rq::vq_backward(&rows, &z_e, &idx, codebook, &dz_q, f64::from(c.beta));
    g.insert("codebook.weight".into(), dcb);
    let da_top = relu_backward(
        &net.conv_back("pre_vq", &spre, &relu(&a_top), &dz_e, &mut g),
        &a_top,
    );
    let da0 = net.res_backward("encoder", side, &enc_saved, da_top, &mut g);
    let dh2 = relu_backward(&net.conv_back("encoder.conv3", &s3, &h2, &da0, &mut g), &h2);
    let dh1 = relu_backward(&net.conv_back("encoder.conv2", &s2, &h1, &dh2, &mut g), &h1);
    net.conv_back("encoder.conv1", &s1, x, &dh1, &mut g);
    (terms, g)
}
