//! Code grids as NumPy `.npy` files: int64 `[N, h, w]` (or `[N, h, w, S]`, S codes per
//! position) out, any integer type in.

use std::path::{Path, PathBuf};

use crate::error::{Result, data, io};

/// The shape of `n` grids of `h x w` positions with `per` codes each: `[n, h, w]`, or
/// `[n, h, w, per]` when `per` > 1.
pub fn grid_shape(n: usize, [h, w]: [usize; 2], per: usize) -> Vec<usize> {
    let mut shape = vec![n, h, w];
    if per > 1 {
        shape.push(per);
    }
    shape
}

/// Writes `values` as an int64 array of `shape`.
pub fn write_codes(path: &Path, shape: &[usize], values: &[i64]) -> Result<()> {
    let mut writer = CodesWriter::create(path, shape)?;
    writer.write(values)?;
    writer.finish()
}

/// An int64 `.npy` array written as its values come: the header first (the shape is
/// known), then the values in order.
pub struct CodesWriter {
    writer: npyz::NpyWriter<i64, std::io::BufWriter<std::fs::File>>,
    path: PathBuf,
}

impl CodesWriter {
    /// Creates `path` for an array of `shape`.
    pub fn create(path: &Path, shape: &[usize]) -> Result<CodesWriter> {
        use npyz::WriterBuilder;
        let file = std::fs::File::create(path).map_err(io("writing", path))?;
        let writer = npyz::WriteOptions::<i64>::new()
            .default_dtype()
            .shape(&shape.iter().map(|&d| d as u64).collect::<Vec<_>>())
            .writer(std::io::BufWriter::new(file))
            .begin_nd()
            .map_err(io("writing", path))?;
        Ok(CodesWriter {
            writer,
            path: path.to_path_buf(),
        })
    }

    /// Appends `values`.
    pub fn write(&mut self, values: &[i64]) -> Result<()> {
        self.writer
            .extend(values.iter().copied())
            .map_err(io("writing", &self.path))
    }

    /// Checks that the shape is filled and flushes the file.
    pub fn finish(self) -> Result<()> {
        self.writer.finish().map_err(io("writing", &self.path))
    }
}

/// Reads a .npy array of integer codes of any integer type as `[N, h, w]` grids of
/// `per` codes a position (the shape [`grid_shape`] gives).
pub fn read_codes(path: &Path, per: usize) -> Result<(Vec<i64>, [usize; 3])> {
    let bad = |m: String| data(path, m);
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| bad(format!("not a .npy file: {e}")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let (n, h, w) = match shape[..] {
        [n, h, w] if per == 1 => (n, h, w),
        [n, h, w, p] if per > 1 && p == per => (n, h, w),
        _ => {
            let want = match per {
                1 => "[N, h, w]".to_string(),
                p => format!("[N, h, w, {p}] (the checkpoint's {p} residual stages)"),
            };
            return Err(bad(format!("codes have shape {shape:?}, expected {want}")));
        }
    };
    let npyz::DType::Plain(ty) = npy.dtype() else {
        return Err(bad("codes must be a plain integer array".into()));
    };
    let read = |e: std::io::Error| bad(format!("cannot read the codes: {e}"));
    // Every integer type widens to i64 (u64 past i64::MAX saturates; the range check
    // that follows rejects it).
    macro_rules! widen {
        ($t:ty) => {
            npy.into_vec::<$t>()
                .map_err(read)?
                .into_iter()
                .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
                .collect()
        };
    }
    use npyz::TypeChar::{Int, Uint};
    let values: Vec<i64> = match (ty.type_char(), ty.size_field()) {
        (Int, 8) => widen!(i64),
        (Int, 4) => widen!(i32),
        (Int, 2) => widen!(i16),
        (Int, 1) => widen!(i8),
        (Uint, 8) => widen!(u64),
        (Uint, 4) => widen!(u32),
        (Uint, 2) => widen!(u16),
        (Uint, 1) => widen!(u8),
        _ => return Err(bad(format!("codes have dtype {ty}, expected integers"))),
    };
    Ok((values, [n, h, w]))
}
