//! IDX image files (MNIST, Fashion-MNIST and friends), plain or gzip-compressed.

use std::io::Read;
use std::path::Path;

use super::Raw;
use crate::error::{Result, data, io};

/// Unsigned bytes (0x08) in three dimensions (0x03): `[images, rows, columns]`.
const IMAGE_MAGIC: u32 = 0x0000_0803;
/// Unsigned bytes in one dimension: `[labels]`.
const LABEL_MAGIC: u32 = 0x0000_0801;

/// Whether `path` looks like an IDX file: by name, as DESIGN.md names them.
pub(super) fn is_idx(path: &Path) -> Result<bool> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    Ok(name.contains("-idx") || name.ends_with(".idx") || name.ends_with(".idx.gz"))
}

fn read_all(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| data(path, format!("gzip data is damaged or truncated: {e}")))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

pub(super) fn load(path: &Path) -> Result<Vec<Raw>> {
    let bytes = read_all(path)?;
    if bytes.len() < 16 {
        return Err(data(
            path,
            format!(
                "is {} bytes, too short for an IDX header (16 bytes)",
                bytes.len()
            ),
        ));
    }
    let word = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let magic = word(0);
    if magic != IMAGE_MAGIC {
        return Err(data(
            path,
            format!(
                "IDX magic is 0x{magic:08x}, expected 0x{IMAGE_MAGIC:08x} (unsigned bytes in 3 dimensions: images, rows, columns)"
            ),
        ));
    }
    let (n, rows, cols) = (word(4) as usize, word(8) as usize, word(12) as usize);
    let size = rows * cols;
    let body = &bytes[16..];
    if body.len() < n * size {
        return Err(data(
            path,
            format!(
                "is truncated: the header promises {n} images of {rows}x{cols} ({} bytes) but {} bytes follow",
                n * size,
                body.len()
            ),
        ));
    }
    let labels = match labels_beside(path) {
        Some(file) => Some(read_labels(&file, n)?),
        None => None,
    };
    Ok((0..n)
        .map(|i| Raw {
            name: format!("{i:05}"),
            label: labels.as_ref().map(|l| l[i]),
            path: path.to_path_buf(),
            channels: 1,
            width: cols,
            height: rows,
            pixels: body[i * size..(i + 1) * size].to_vec(),
        })
        .collect())
}

/// The labels file named like an images file (`train-images-idx3-ubyte.gz` ->
/// `train-labels-idx1-ubyte.gz`), if it exists.
fn labels_beside(images: &Path) -> Option<std::path::PathBuf> {
    let name = images
        .file_name()?
        .to_string_lossy()
        .replace("images-idx3", "labels-idx1");
    let path = images.with_file_name(name);
    (path != images && path.is_file()).then_some(path)
}

/// The labels of an IDX labels file (`*-labels-idx1-ubyte`, plain or gzip), which must
/// hold `expected` of them when given.
fn read_labels(path: &Path, expected: usize) -> Result<Vec<u8>> {
    let bytes = read_all(path)?;
    let word = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    if bytes.len() < 8 || word(0) != LABEL_MAGIC {
        return Err(data(
            path,
            format!(
                "is not an IDX labels file (expected magic 0x{LABEL_MAGIC:08x}: unsigned bytes in 1 dimension)"
            ),
        ));
    }
    let n = word(4) as usize;
    if bytes.len() - 8 < n || n != expected {
        return Err(data(
            path,
            format!(
                "holds {} of {n} promised labels, but the images number {expected}",
                (bytes.len() - 8).min(n)
            ),
        ));
    }
    Ok(bytes[8..8 + n].to_vec())
}
