//! Pixel scaling (DESIGN.md section 1) and writing images.

use std::path::Path;

use crate::error::{Result, data};

/// `pixel / 255 - 0.5`.
pub fn to_input(pixels: &[u8]) -> impl Iterator<Item = f32> + '_ {
    pixels.iter().map(|&p| f32::from(p) / 255.0 - 0.5)
}

/// `clamp(round((x + 0.5) * 255), 0, 255)`.
pub fn to_pixels(x: &[f32]) -> Vec<u8> {
    x.iter()
        .map(|&v| ((v + 0.5) * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect()
}

/// Writes a planar `[channels, height, width]` image as a grey or RGB PNG.
pub fn save_png(
    path: &Path,
    channels: usize,
    height: usize,
    width: usize,
    planar: &[u8],
) -> Result<()> {
    let plane = height * width;
    let interleaved: Vec<u8> = (0..plane)
        .flat_map(|i| (0..channels).map(move |c| planar[c * plane + i]))
        .collect();
    let color = if channels == 1 {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    };
    image::save_buffer(path, &interleaved, width as u32, height as u32, color)
        .map_err(|e| data(path, format!("cannot write the PNG: {e}")))
}

/// Lays planar images out in rows of `columns`, 2 pixels apart on a grey background,
/// each pixel repeated `zoom` times along both axes (small images are hard to see).
/// Returns the grid's height, width and pixels.
pub fn grid(
    images: &[&[u8]],
    channels: usize,
    height: usize,
    width: usize,
    columns: usize,
    zoom: usize,
) -> (usize, usize, Vec<u8>) {
    const GAP: usize = 2;
    let zoomed: Vec<Vec<u8>> = images
        .iter()
        .map(|img| enlarge(img, channels, height, width, zoom))
        .collect();
    let (height, width) = (height * zoom, width * zoom);
    let rows = images.len().div_ceil(columns);
    let (gh, gw) = (rows * (height + GAP) + GAP, columns * (width + GAP) + GAP);
    let mut out = vec![128u8; channels * gh * gw];
    for (k, img) in zoomed.iter().enumerate() {
        let (oy, ox) = (
            GAP + (k / columns) * (height + GAP),
            GAP + (k % columns) * (width + GAP),
        );
        for c in 0..channels {
            for y in 0..height {
                let src = &img[(c * height + y) * width..][..width];
                out[(c * gh + oy + y) * gw + ox..][..width].copy_from_slice(src);
            }
        }
    }
    (gh, gw, out)
}

/// Repeats each pixel `zoom` times along both axes.
fn enlarge(img: &[u8], channels: usize, height: usize, width: usize, zoom: usize) -> Vec<u8> {
    let (h, w) = (height * zoom, width * zoom);
    (0..channels * h * w)
        .map(|i| {
            let (c, y, x) = (i / (h * w), (i / w) % h, i % w);
            img[(c * height + y / zoom) * width + x / zoom]
        })
        .collect()
}

/// Writes `path`: code usage at a glance. A bar per code, from the most used code to
/// the least, its height the square root of its share of the most used code's count (so
/// rare codes still show); under the axis, a red mark for every code never used.
pub fn save_code_usage(path: &Path, counts: &[u64]) -> Result<()> {
    const HEIGHT: usize = 160;
    const MARKS: usize = 8;
    let mut sorted = counts.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let bar = (1024 / sorted.len().max(1)).clamp(1, 16);
    let (width, height) = (bar * sorted.len().max(1), HEIGHT + 2 + MARKS);
    let top = sorted.first().copied().unwrap_or(0).max(1) as f64;
    // Planar RGB on white.
    let mut planes = vec![255u8; 3 * width * height];
    let mut paint = |x: usize, y: usize, [r, g, b]: [u8; 3]| {
        let i = y * width + x;
        planes[i] = r;
        planes[width * height + i] = g;
        planes[2 * width * height + i] = b;
    };
    for x in 0..width {
        paint(x, HEIGHT, [0, 0, 0]);
    }
    for (k, &c) in sorted.iter().enumerate() {
        let tall = ((c as f64 / top).sqrt() * HEIGHT as f64).round() as usize;
        for x in k * bar..(k + 1) * bar {
            if c == 0 {
                for y in HEIGHT + 2..height {
                    paint(x, y, [200, 30, 30]);
                }
            }
            for y in HEIGHT - tall.min(HEIGHT)..HEIGHT {
                paint(x, y, [40, 70, 160]);
            }
        }
    }
    save_png(path, 3, height, width, &planes)
}
