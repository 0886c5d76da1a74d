//! The built-in dataset: 32x32 colour images of discs, boxes, triangles and rings, some
//! striped, on gradient backgrounds. Procedural, so it needs no files, and the same seed
//! always draws the same images.

use std::path::PathBuf;

use super::Raw;
use crate::rng::Rng;

/// Images drawn.
pub const COUNT: usize = 4096;
const SIDE: usize = 32;

#[derive(Clone, Copy)]
enum Kind {
    Disc,
    Box,
    Triangle,
    Ring,
}

struct Shape {
    kind: Kind,
    cx: f64,
    cy: f64,
    r: f64,
    angle: f64,
    colour: [f64; 3],
    stripes: Option<(f64, f64)>, // (direction, period)
}

impl Shape {
    fn random(rng: &mut Rng) -> Shape {
        let kind = [Kind::Disc, Kind::Box, Kind::Triangle, Kind::Ring][rng.below(4)];
        Shape {
            kind,
            cx: rng.uniform(6.0, 26.0),
            cy: rng.uniform(6.0, 26.0),
            r: rng.uniform(4.0, 10.0),
            angle: rng.uniform(0.0, std::f64::consts::TAU),
            colour: bright(rng),
            stripes: (rng.unit() < 0.35).then(|| {
                (
                    rng.uniform(0.0, std::f64::consts::PI),
                    rng.uniform(3.0, 6.0),
                )
            }),
        }
    }

    fn contains(&self, x: f64, y: f64) -> bool {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let (s, c) = self.angle.sin_cos();
        let (u, v) = (c * dx + s * dy, -s * dx + c * dy);
        match self.kind {
            Kind::Disc => dx * dx + dy * dy <= self.r * self.r,
            Kind::Ring => {
                let d = (dx * dx + dy * dy).sqrt();
                d <= self.r && d >= self.r * 0.55
            }
            Kind::Box => u.abs() <= self.r * 0.8 && v.abs() <= self.r * 0.6,
            Kind::Triangle => {
                // Equilateral, pointing along the rotated v axis.
                let h = self.r;
                v >= -h * 0.5 && v <= h && u.abs() <= (h - v) / 3f64.sqrt()
            }
        }
    }

    fn colour_at(&self, x: f64, y: f64) -> [f64; 3] {
        match self.stripes {
            Some((dir, period))
                if ((x * dir.cos() + y * dir.sin()) / period).rem_euclid(1.0) < 0.5 =>
            {
                self.colour.map(|c| c * 0.35)
            }
            _ => self.colour,
        }
    }
}

fn bright(rng: &mut Rng) -> [f64; 3] {
    let mut c = [rng.unit(), rng.unit(), rng.unit()];
    c[rng.below(3)] = rng.uniform(0.8, 1.0);
    c.map(|v| 40.0 + 215.0 * v)
}

fn dull(rng: &mut Rng) -> [f64; 3] {
    [rng.unit(), rng.unit(), rng.unit()].map(|v| 20.0 + 120.0 * v)
}

fn draw(rng: &mut Rng) -> Vec<u8> {
    let (a, b) = (dull(rng), dull(rng));
    let dir = rng.uniform(0.0, std::f64::consts::TAU);
    let shapes: Vec<Shape> = (0..1 + rng.below(3)).map(|_| Shape::random(rng)).collect();
    let mut pixels = vec![0u8; 3 * SIDE * SIDE];
    for y in 0..SIDE {
        for x in 0..SIDE {
            let mut sum = [0.0; 3];
            // 2x2 supersampling for smooth edges.
            for (sx, sy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                let (px, py) = (x as f64 + sx, y as f64 + sy);
                let t = ((px - 16.0) * dir.cos() + (py - 16.0) * dir.sin()) / 45.0 + 0.5;
                let mut colour = [0, 1, 2].map(|c| a[c] + (b[c] - a[c]) * t.clamp(0.0, 1.0));
                for s in &shapes {
                    if s.contains(px, py) {
                        colour = s.colour_at(px, py);
                    }
                }
                for c in 0..3 {
                    sum[c] += colour[c] / 4.0;
                }
            }
            for c in 0..3 {
                pixels[(c * SIDE + y) * SIDE + x] = sum[c].round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    pixels
}

pub(super) fn generate(seed: u64) -> Vec<Raw> {
    let mut rng = Rng::for_purpose(seed, 0xda7a);
    (0..COUNT)
        .map(|i| Raw {
            label: None,
            name: format!("{i:05}"),
            path: PathBuf::from("built-in"),
            channels: 3,
            width: SIDE,
            height: SIDE,
            pixels: draw(&mut rng),
        })
        .collect()
}
