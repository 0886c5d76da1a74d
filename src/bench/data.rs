//! The data-loading group: how fast one worker thread reads and decodes image files
//! through the loader that training uses, for PNG and JPEG at 64x64 and 256x256.
//! Compare its images/s, times the workers, with the training step's.

use std::path::PathBuf;

use image::ImageEncoder;

use super::suite::{Case, Group, Job, Work, case};
use crate::data::{Dataset, LoadOptions};
use crate::error::{Result, data, io};
use crate::rng::Rng;

/// Images decoded per run.
const IMAGES: usize = 8;

pub(super) fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    for side in [64u32, 256] {
        for format in [Format::Png, Format::Jpeg] {
            all.push(case(
                Group::Data,
                format!("decode {}", format.name()),
                format!("{IMAGES} images of {side}x{side} RGB, one worker"),
                side == 64,
                move |_| decoding(format, side),
            ));
        }
    }
    all
}

#[derive(Clone, Copy)]
enum Format {
    Png,
    Jpeg,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpeg => "jpg",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Png => "PNG",
            Format::Jpeg => "JPEG (quality 90)",
        }
    }
}

/// A folder that is removed with the work that reads it.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the images and times decoding them all, as a training batch would.
fn decoding(format: Format, side: u32) -> Result<Work> {
    let dir = std::env::temp_dir().join(format!(
        "vqvae-bench-decode-{}-{}-{side}",
        std::process::id(),
        format.extension()
    ));
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let scratch = Scratch(dir);
    let mut rng = Rng::for_purpose(u64::from(side), 0xDA7A);
    for i in 0..IMAGES {
        let path = scratch.0.join(format!("{i}.{}", format.extension()));
        std::fs::write(&path, encoded(format, side, &mut rng)?).map_err(io("writing", &path))?;
    }
    let dataset = Dataset::load(Some(&scratch.0), &LoadOptions::default())?;
    let run = move || {
        let _keep = &scratch;
        for i in 0..IMAGES {
            dataset.image(i)?;
        }
        Ok(())
    };
    Ok(Work {
        job: Job::Host(Box::new(run)),
        flops: None,
        bytes: None,
        images: Some(IMAGES as f64),
    })
}

/// A photo-like picture (smooth gradients, a few discs, mild noise), encoded.
fn encoded(format: Format, side: u32, rng: &mut Rng) -> Result<Vec<u8>> {
    let discs: Vec<[f64; 4]> = (0..4)
        .map(|_| {
            [
                rng.uniform(0.0, 1.0),
                rng.uniform(0.0, 1.0),
                rng.uniform(0.1, 0.3),
                rng.uniform(0.0, 255.0),
            ]
        })
        .collect();
    let s = f64::from(side);
    let mut pixels = Vec::with_capacity((side * side * 3) as usize);
    for y in 0..side {
        for x in 0..side {
            let (u, v) = (f64::from(x) / s, f64::from(y) / s);
            let inside = discs
                .iter()
                .find(|[cx, cy, r, _]| (u - cx).hypot(v - cy) < *r);
            for c in 0..3 {
                let base = inside.map_or(255.0 * (u + v * f64::from(c)) / 3.0, |d| d[3]);
                pixels.push((base + rng.uniform(-8.0, 8.0)).clamp(0.0, 255.0) as u8);
            }
        }
    }
    let mut bytes = Vec::new();
    let written = match format {
        Format::Png => image::codecs::png::PngEncoder::new(&mut bytes).write_image(
            &pixels,
            side,
            side,
            image::ExtendedColorType::Rgb8,
        ),
        Format::Jpeg => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .write_image(&pixels, side, side, image::ExtendedColorType::Rgb8),
    };
    written.map_err(|e| data("bench images", format!("cannot encode: {e}")))?;
    Ok(bytes)
}
