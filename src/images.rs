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
