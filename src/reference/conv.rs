//! Convolution and transposed convolution, straight from their definitions.

use crate::kernels::conv::ConvShape;

/// Visits every (batch, out channel, in channel, output y, x, tap y, x) whose input
/// pixel lies inside the image, with the flat indices of x, y and w.
fn each_tap(s: &ConvShape, mut f: impl FnMut(usize, usize, usize)) {
    let (ho, wo) = (s.hout(), s.wout());
    for b in 0..s.batch {
        for co in 0..s.cout {
            for ci in 0..s.cin {
                for oy in 0..ho {
                    for ox in 0..wo {
                        for ky in 0..s.kh {
                            for kx in 0..s.kw {
                                let iy = (oy * s.stride + ky) as isize - s.pad as isize;
                                let ix = (ox * s.stride + kx) as isize - s.pad as isize;
                                if iy < 0 || ix < 0 || iy >= s.hin as isize || ix >= s.win as isize
                                {
                                    continue;
                                }
                                let xi =
                                    ((b * s.cin + ci) * s.hin + iy as usize) * s.win + ix as usize;
                                let yi = ((b * s.cout + co) * ho + oy) * wo + ox;
                                let wi = ((co * s.cin + ci) * s.kh + ky) * s.kw + kx;
                                f(xi, yi, wi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `Conv2d`: y `[b, cout, hout, wout]` from x `[b, cin, hin, win]`, w `[cout, cin, kh, kw]`, bias `[cout]`.
pub fn conv2d(s: &ConvShape, x: &[f64], w: &[f64], bias: &[f64]) -> Vec<f64> {
    let plane = s.hout() * s.wout();
    let mut y: Vec<f64> = (0..s.batch * s.cout * plane)
        .map(|i| bias[(i / plane) % s.cout])
        .collect();
    each_tap(s, |xi, yi, wi| y[yi] += w[wi] * x[xi]);
    y
}

/// The gradient of [`conv2d`] with respect to x.
pub fn conv2d_input_grad(s: &ConvShape, dy: &[f64], w: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; s.batch * s.cin * s.hin * s.win];
    each_tap(s, |xi, yi, wi| dx[xi] += w[wi] * dy[yi]);
    dx
}

/// The gradient of [`conv2d`] with respect to w.
pub fn conv2d_weight_grad(s: &ConvShape, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; s.cout * s.cin * s.kh * s.kw];
    each_tap(s, |xi, yi, wi| dw[wi] += x[xi] * dy[yi]);
    dw
}

/// The gradient of a bias added to every pixel of channel c: the sum of channel c of
/// `dy` `[batch, channels, plane]`.
pub fn bias_grad(dy: &[f64], channels: usize, batch: usize) -> Vec<f64> {
    let plane = dy.len() / (channels * batch);
    (0..channels)
        .map(|c| {
            (0..batch)
                .flat_map(|b| &dy[(b * channels + c) * plane..(b * channels + c + 1) * plane])
                .sum()
        })
        .collect()
}

/// The geometry of `ConvTranspose2d(cin, cout, k, stride, pad)` on a `[batch, cin, h, w]` input.
#[derive(Clone, Copy, Debug)]
pub struct TransposedShape {
    /// Images.
    pub batch: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Padding.
    pub pad: usize,
}

impl TransposedShape {
    /// Output height: `(h - 1) * stride - 2 pad + k`.
    pub fn hout(&self) -> usize {
        (self.h - 1) * self.stride + self.k - 2 * self.pad
    }

    /// Output width.
    pub fn wout(&self) -> usize {
        (self.w - 1) * self.stride + self.k - 2 * self.pad
    }

    /// Visits every input pixel and tap that lands inside the output, with the flat
    /// indices of input, output and weight `[cin, cout, k, k]`.
    fn each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (ho, wo, k) = (self.hout(), self.wout(), self.k);
        for b in 0..self.batch {
            for i in 0..self.cin {
                for o in 0..self.cout {
                    for iy in 0..self.h {
                        for ix in 0..self.w {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let y = (iy * self.stride + ky) as isize - self.pad as isize;
                                    let x = (ix * self.stride + kx) as isize - self.pad as isize;
                                    if y < 0 || x < 0 || y >= ho as isize || x >= wo as isize {
                                        continue;
                                    }
                                    let xi = ((b * self.cin + i) * self.h + iy) * self.w + ix;
                                    let oi =
                                        ((b * self.cout + o) * ho + y as usize) * wo + x as usize;
                                    let wi = ((i * self.cout + o) * k + ky) * k + kx;
                                    f(xi, oi, wi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `ConvTranspose2d`: every input pixel scatters its weighted kernel into the output.
pub fn conv_transpose2d(s: &TransposedShape, x: &[f64], w: &[f64], bias: &[f64]) -> Vec<f64> {
    let plane = s.hout() * s.wout();
    let mut out: Vec<f64> = (0..s.batch * s.cout * plane)
        .map(|i| bias[(i / plane) % s.cout])
        .collect();
    s.each_tap(|xi, oi, wi| out[oi] += x[xi] * w[wi]);
    out
}

/// The gradient of [`conv_transpose2d`] with respect to its input.
pub fn conv_transpose2d_input_grad(s: &TransposedShape, dout: &[f64], w: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; s.batch * s.cin * s.h * s.w];
    s.each_tap(|xi, oi, wi| dx[xi] += dout[oi] * w[wi]);
    dx
}

/// The gradient of [`conv_transpose2d`] with respect to its weight.
pub fn conv_transpose2d_weight_grad(s: &TransposedShape, x: &[f64], dout: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; s.cin * s.cout * s.k * s.k];
    s.each_tap(|xi, oi, wi| dw[wi] += x[xi] * dout[oi]);
    dw
}
