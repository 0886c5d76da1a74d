//! Datasets: image folders, IDX files, CIFAR-10 batches and the built-in procedural
//! images, all loaded into one planar u8 array of equal-sized images.

mod builtin;
mod cifar;
mod folder;
mod idx;

use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use crate::error::{Error, Result, data};

/// Decoded images of one size: pixels `[n, channels, height, width]`.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Pixels, image after image, each channel a plane.
    pub pixels: Vec<u8>,
    /// Number of images.
    pub len: usize,
    /// Channels per image (1 or 3).
    pub channels: usize,
    /// Height of every image.
    pub height: usize,
    /// Width of every image.
    pub width: usize,
    /// A name for each image, used for output files: the file stem for folders, the
    /// index zero-padded to 5 digits for IDX and CIFAR data.
    pub names: Vec<String>,
    /// Where the data came from, for messages and run settings.
    pub source: String,
    /// One class per image, where the data has labels: CIFAR-10 batches, or an IDX
    /// images file with its labels file beside it (`*-labels-idx1-ubyte[.gz]`).
    pub labels: Option<Vec<u8>>,
}

/// How to load a dataset.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Channels to convert every image to; `None` keeps the data's own (3 if any image
    /// of a folder has colour).
    pub channels: Option<usize>,
    /// Centre-crop each image to a square and resize it to this side.
    pub image_size: Option<usize>,
    /// Seed of the built-in images.
    pub seed: u64,
}

/// One decoded image before the dataset is assembled: planar pixels.
pub(crate) struct Raw {
    pub name: String,
    /// The class, where the data has labels (CIFAR-10, IDX with a labels file).
    pub label: Option<u8>,
    pub path: PathBuf,
    pub channels: usize,
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl Dataset {
    /// Loads `path` (a folder of images, an IDX file, a CIFAR-10 `.bin` file or folder
    /// of them), or the built-in images when `path` is `None`.
    pub fn load(path: Option<&Path>, options: &LoadOptions) -> Result<Dataset> {
        let Some(path) = path else {
            return assemble(
                builtin::generate(options.seed),
                "built-in shapes".into(),
                options,
            );
        };
        let meta = std::fs::metadata(path).map_err(crate::error::io("reading", path))?;
        let raws = if meta.is_dir() {
            if cifar::is_cifar_folder(path)? {
                cifar::load_folder(path)?
            } else {
                folder::load(path)?
            }
        } else if idx::is_idx(path)? {
            idx::load(path)?
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("bin"))
        {
            cifar::load_file(path)?
        } else {
            folder::load_one(path)?
        };
        assemble(raws, path.display().to_string(), options)
    }

    /// Image `i`'s pixels, `[channels, height, width]`.
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.channels * self.height * self.width;
        &self.pixels[i * size..(i + 1) * size]
    }

    /// Elements per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// Checks sizes, crops and resizes, converts channels, and packs the images.
fn assemble(raws: Vec<Raw>, source: String, options: &LoadOptions) -> Result<Dataset> {
    let Some(first) = raws.first() else {
        return Err(data(
            &source,
            "no images found (looked for PNG, JPEG, GIF, BMP, TIFF, WebP, PNM, TGA, QOI, ICO, HDR files)",
        ));
    };
    let channels = options.channels.unwrap_or_else(|| {
        if raws.iter().any(|r| r.channels == 3) {
            3
        } else {
            1
        }
    });
    if channels != 1 && channels != 3 {
        return Err(Error::Usage(format!(
            "--channels {channels}: a model has 1 or 3 channels"
        )));
    }
    let (height, width) = match options.image_size {
        Some(size) => {
            if size == 0 || size % 4 != 0 {
                return Err(Error::Usage(format!(
                    "--image-size {size}: must be a positive multiple of 4"
                )));
            }
            (size, size)
        }
        None => {
            if let Some(other) = raws
                .iter()
                .find(|r| (r.width, r.height) != (first.width, first.height))
            {
                return Err(data(
                    &other.path,
                    format!(
                        "is {}x{} but {} is {}x{}; images of different sizes need --image-size N to crop and resize them",
                        other.width,
                        other.height,
                        first.path.display(),
                        first.width,
                        first.height
                    ),
                ));
            }
            if first.width % 4 != 0 || first.height % 4 != 0 {
                return Err(data(
                    &first.path,
                    format!(
                        "is {}x{}, not a multiple of 4 on each side; pass --image-size N (a multiple of 4) to crop and resize",
                        first.width, first.height
                    ),
                ));
            }
            (first.height, first.width)
        }
    };
    let mut pixels = Vec::with_capacity(raws.len() * channels * height * width);
    let mut names = Vec::with_capacity(raws.len());
    let len = raws.len();
    let labels: Option<Vec<u8>> = raws.iter().map(|r| r.label).collect();
    for raw in raws {
        let raw = if (raw.height, raw.width) == (height, width) {
            raw
        } else {
            crop_resize(raw, height)
        };
        pixels.extend(convert_channels(&raw, channels));
        names.push(raw.name);
    }
    Ok(Dataset {
        pixels,
        len,
        channels,
        height,
        width,
        names,
        source,
        labels,
    })
}

/// Grey to colour by copying, colour to grey by ITU-R 601 luma.
fn convert_channels(raw: &Raw, channels: usize) -> Vec<u8> {
    let plane = raw.width * raw.height;
    match (raw.channels, channels) {
        (a, b) if a == b => raw.pixels.clone(),
        (1, 3) => raw.pixels.repeat(3),
        _ => (0..plane)
            .map(|i| {
                let [r, g, b] = [0, 1, 2].map(|c| f32::from(raw.pixels[c * plane + i]));
                (0.299 * r + 0.587 * g + 0.114 * b).round() as u8
            })
            .collect(),
    }
}

/// Centre-crops to a square and resizes to `size` x `size`.
fn crop_resize(raw: Raw, size: usize) -> Raw {
    let side = raw.width.min(raw.height);
    let (x0, y0) = ((raw.width - side) / 2, (raw.height - side) / 2);
    let plane = raw.width * raw.height;
    let mut pixels = Vec::with_capacity(raw.channels * size * size);
    for c in 0..raw.channels {
        let src = &raw.pixels[c * plane..(c + 1) * plane];
        let img = image::GrayImage::from_fn(side as u32, side as u32, |x, y| {
            image::Luma([src[(y0 + y as usize) * raw.width + x0 + x as usize]])
        });
        let resized = image::imageops::resize(&img, size as u32, size as u32, FilterType::Triangle);
        pixels.extend(resized.into_raw());
    }
    Raw {
        width: size,
        height: size,
        pixels,
        ..raw
    }
}
