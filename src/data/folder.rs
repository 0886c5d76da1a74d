//! Folders of image files, searched recursively and ordered by path.

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder};

use super::Raw;
use crate::error::{Result, data, io};

const EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp", "pnm", "pbm", "pgm", "ppm", "tga",
    "qoi", "ico", "hdr",
];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io("reading folder", dir))? {
        let path = entry.map_err(io("reading folder", dir))?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if is_image(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Every image file under `dir`, in path order, with the size and colour its header
/// gives (headers are read on a few threads); the pixels are decoded later.
pub(super) fn list(dir: &Path) -> Result<Vec<Raw>> {
    let mut paths = Vec::new();
    walk(dir, &mut paths)?;
    paths.sort();
    let chunk = paths.len().div_ceil(super::default_workers()).max(1);
    std::thread::scope(|scope| {
        let threads: Vec<_> = paths
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(|p| header(p)).collect::<Vec<_>>()))
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("a header reader panicked"))
            .collect()
    })
}

fn open(path: &Path) -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>> {
    image::ImageReader::open(path)
        .map_err(io("reading", path))?
        .with_guessed_format()
        .map_err(io("reading", path))
}

fn name_of(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned())
}

/// One file's size and colour, from its header.
fn header(path: &Path) -> Result<Raw> {
    let decoder = open(path)?
        .into_decoder()
        .map_err(|e| data(path, format!("cannot decode its header as an image: {e}")))?;
    let (width, height) = decoder.dimensions();
    Ok(Raw {
        name: name_of(path),
        label: None,
        path: path.to_path_buf(),
        channels: if decoder.color_type().has_color() {
            3
        } else {
            1
        },
        width: width as usize,
        height: height as usize,
        pixels: Vec::new(),
    })
}

/// One image file, decoded.
pub(super) fn decode(path: &Path) -> Result<Raw> {
    let img = open(path)?
        .decode()
        .map_err(|e| data(path, format!("cannot decode as an image: {e}")))?;
    Ok(to_raw(img, name_of(path), path.to_path_buf()))
}

fn to_raw(img: DynamicImage, name: String, path: PathBuf) -> Raw {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let (channels, interleaved) = if img.color().has_color() {
        (3, img.into_rgb8().into_raw())
    } else {
        (1, img.into_luma8().into_raw())
    };
    let plane = width * height;
    let pixels = (0..channels)
        .flat_map(|c| (0..plane).map(move |i| (c, i)))
        .map(|(c, i)| interleaved[i * channels + c])
        .collect();
    Raw {
        label: None,
        name,
        path,
        channels,
        width,
        height,
        pixels,
    }
}
