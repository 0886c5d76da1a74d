//! Datasets: image folders, IDX files, CIFAR-10 batches and the built-in procedural
//! images, as images of one size. IDX, CIFAR and built-in images are decoded into memory
//! (they are small); a folder is listed with each file's size read from its header and
//! decoded image by image when asked, so that memory does not grow with the folder
//! (`prefetch.rs` decodes ahead on worker threads).

mod builtin;
mod cifar;
mod folder;
mod idx;
mod prefetch;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::imageops::FilterType;

pub use prefetch::{Prefetch, default_workers};

use crate::error::{Error, Result, data};

/// Images of one size, `[channels, height, width]` each.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Where the pixels come from.
    pub reader: ImageReader,
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
    /// Centre-crop each image to a square and resize it to this side (smaller images
    /// are scaled up).
    pub image_size: Option<usize>,
    /// Seed of the built-in images.
    pub seed: u64,
}

/// What a dataset's images are before they are framed: where each is, its size and
/// channels, and, for data held in memory, its planar pixels.
pub(crate) struct Raw {
    pub name: String,
    /// The class, where the data has labels (CIFAR-10, IDX with a labels file).
    pub label: Option<u8>,
    pub path: PathBuf,
    pub channels: usize,
    pub width: usize,
    pub height: usize,
    /// Empty for a listed file, decoded when read.
    pub pixels: Vec<u8>,
}

/// Gives image `i` of a dataset, framed to the dataset's size and channels: from memory,
/// or by decoding its file. Clones share the images, for worker threads.
#[derive(Clone, Debug)]
pub struct ImageReader {
    store: Arc<Store>,
    channels: usize,
    height: usize,
    width: usize,
}

#[derive(Debug)]
enum Store {
    /// Framed pixels, image after image.
    Memory(Vec<u8>),
    /// Image files and the sizes their headers gave when listed.
    Files(Vec<(PathBuf, [usize; 2])>),
}

impl ImageReader {
    /// Image `i`'s pixels, `[channels, height, width]`; an error names a file that can no
    /// longer be read or decoded, or whose size changed since it was listed.
    pub fn image(&self, i: usize) -> Result<Cow<'_, [u8]>> {
        let size = self.channels * self.height * self.width;
        match &*self.store {
            Store::Memory(pixels) => Ok(Cow::Borrowed(&pixels[i * size..(i + 1) * size])),
            Store::Files(files) => {
                let (path, [w, h]) = &files[i];
                let raw = folder::decode(path)?;
                if (raw.width, raw.height) != (*w, *h) {
                    return Err(data(
                        path,
                        format!(
                            "is now {}x{} but was {w}x{h} when the data was listed: images must not change during a run",
                            raw.width, raw.height
                        ),
                    ));
                }
                Ok(Cow::Owned(self.frame(raw)))
            }
        }
    }

    /// Elements per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Pixels per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Crops and resizes to the dataset's size, and converts the channels.
    fn frame(&self, raw: Raw) -> Vec<u8> {
        let raw = if (raw.height, raw.width) == (self.height, self.width) {
            raw
        } else {
            crop_resize(raw, self.height)
        };
        convert_channels(&raw, self.channels)
    }
}

impl Dataset {
    /// Loads `path` (a folder of images, an IDX file, a CIFAR-10 `.bin` file or folder
    /// of them), or the built-in images when `path` is `None`. A folder is only listed
    /// (file names and the sizes in their headers); its images are decoded when used.
    pub fn load(path: Option<&Path>, options: &LoadOptions) -> Result<Dataset> {
        let Some(path) = path else {
            return assemble(
                builtin::generate(options.seed),
                "built-in shapes".into(),
                options,
                false,
            );
        };
        let meta = std::fs::metadata(path).map_err(crate::error::io("reading", path))?;
        if meta.is_dir() && !cifar::is_cifar_folder(path)? {
            let listed = folder::list(path)?;
            return assemble(listed, path.display().to_string(), options, true);
        }
        let raws = if meta.is_dir() {
            cifar::load_folder(path)?
        } else if idx::is_idx(path)? {
            idx::load(path)?
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("bin"))
        {
            cifar::load_file(path)?
        } else {
            vec![folder::decode(path)?]
        };
        assemble(raws, path.display().to_string(), options, false)
    }

    /// Image `i`'s pixels, `[channels, height, width]` (see [`ImageReader::image`]).
    pub fn image(&self, i: usize) -> Result<Cow<'_, [u8]>> {
        self.reader.image(i)
    }

    /// Elements per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// Checks sizes and channels, and frames the images into memory, or, for `listed` files
/// (no pixels yet), when they are read.
fn assemble(
    raws: Vec<Raw>,
    source: String,
    options: &LoadOptions,
    listed: bool,
) -> Result<Dataset> {
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
    let len = raws.len();
    let labels: Option<Vec<u8>> = raws.iter().map(|r| r.label).collect();
    let mut reader = ImageReader {
        store: Arc::new(Store::Memory(Vec::new())),
        channels,
        height,
        width,
    };
    let mut names = Vec::with_capacity(len);
    let store = if listed {
        let files = raws
            .into_iter()
            .map(|r| {
                names.push(r.name);
                (r.path, [r.width, r.height])
            })
            .collect();
        Store::Files(files)
    } else {
        let mut pixels = Vec::with_capacity(len * channels * height * width);
        for raw in raws {
            names.push(raw.name.clone());
            pixels.extend(reader.frame(raw));
        }
        Store::Memory(pixels)
    };
    reader.store = Arc::new(store);
    Ok(Dataset {
        reader,
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
