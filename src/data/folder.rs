//! Folders of image files, searched recursively and ordered by path.

use std::path::{Path, PathBuf};

use image::DynamicImage;

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

/// Every image file under `dir`, decoded, in path order.
pub(super) fn load(dir: &Path) -> Result<Vec<Raw>> {
    let mut paths = Vec::new();
    walk(dir, &mut paths)?;
    paths.sort();
    paths
        .iter()
        .map(|p| load_one(p).map(|mut v| v.remove(0)))
        .collect()
}

/// One image file.
pub(super) fn load_one(path: &Path) -> Result<Vec<Raw>> {
    let img = image::ImageReader::open(path)
        .map_err(io("reading", path))?
        .with_guessed_format()
        .map_err(io("reading", path))?
        .decode()
        .map_err(|e| data(path, format!("cannot decode as an image: {e}")))?;
    let name = path
        .file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
    Ok(vec![to_raw(img, name, path.to_path_buf())])
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
