//! CIFAR-10 binary batches: records of one label byte and 32x32x3 planar pixels.

use std::path::{Path, PathBuf};

use super::Raw;
use crate::error::{Result, data, io};

const SIDE: usize = 32;
const RECORD: usize = 1 + 3 * SIDE * SIDE;

fn bin_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io("reading folder", dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("bin")))
        .collect();
    files.sort();
    Ok(files)
}

/// A folder is read as CIFAR-10 when it holds `.bin` files.
pub(super) fn is_cifar_folder(dir: &Path) -> Result<bool> {
    Ok(!bin_files(dir)?.is_empty())
}

pub(super) fn load_folder(dir: &Path) -> Result<Vec<Raw>> {
    let mut all = Vec::new();
    for file in bin_files(dir)? {
        all.extend(load_file(&file)?);
    }
    for (i, raw) in all.iter_mut().enumerate() {
        raw.name = format!("{i:05}");
    }
    Ok(all)
}

pub(super) fn load_file(path: &Path) -> Result<Vec<Raw>> {
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(data(
            path,
            format!(
                "is {} bytes, not a whole number of CIFAR-10 records ({RECORD} bytes each: a label and 32x32x3 pixels)",
                bytes.len()
            ),
        ));
    }
    Ok(bytes
        .chunks(RECORD)
        .enumerate()
        .map(|(i, r)| Raw {
            name: format!("{i:05}"),
            label: Some(r[0]),
            path: path.to_path_buf(),
            channels: 3,
            width: SIDE,
            height: SIDE,
            pixels: r[1..].to_vec(),
        })
        .collect())
}
