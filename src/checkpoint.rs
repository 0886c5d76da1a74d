//! Checkpoints as DESIGN.md section 2 fixes them: safetensors, f32, PyTorch names and
//! shapes, written atomically. The model file holds the model alone (PyTorch reads it as
//! a `state_dict`); what only resuming needs lives beside it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result, io};

/// File name of the model checkpoint in a run folder.
pub const MODEL_FILE: &str = "checkpoint.safetensors";
/// File name of the optimizer state and step counter in a run folder.
pub const STATE_FILE: &str = "training_state.safetensors";

pub use crate::params::Tensors;

/// Named f32 tensors and string metadata, as read from or written to a file.
#[derive(Clone, Debug, Default)]
pub struct TensorFile {
    /// Tensors by name: shape and values.
    pub tensors: Tensors,
    /// The file's `__metadata__`.
    pub metadata: HashMap<String, String>,
}

impl TensorFile {
    /// The shapes of all tensors.
    pub fn shapes(&self) -> HashMap<String, Vec<usize>> {
        self.tensors
            .iter()
            .map(|(k, (s, _))| (k.clone(), s.clone()))
            .collect()
    }

    /// The values of all tensors.
    pub fn values(&self) -> HashMap<String, Vec<f32>> {
        self.tensors
            .iter()
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect()
    }

    /// Reads a safetensors file of f32 tensors.
    pub fn read(path: &Path) -> Result<TensorFile> {
        let bytes = std::fs::read(path).map_err(io("reading", path))?;
        let err = |message: String| Error::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let (_, meta) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| err(format!("not a safetensors file: {e}")))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| err(format!("not a safetensors file: {e}")))?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(err(format!(
                    "tensor '{name}' is {:?}; checkpoints hold f32 tensors",
                    view.dtype()
                )));
            }
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        Ok(TensorFile {
            tensors,
            metadata: meta.metadata().clone().unwrap_or_default(),
        })
    }

    /// Writes the file atomically: a temporary file beside it, synced, then renamed, so
    /// that a crash leaves the old file or the new one, never a damaged one.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_together(&[(self, path)])
    }

    fn serialize(&self, path: &Path) -> Result<Vec<u8>> {
        let bytes_of: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(k, (s, v))| {
                (
                    k.clone(),
                    s.clone(),
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )
            })
            .collect();
        let views = bytes_of
            .iter()
            .map(|(k, s, b)| {
                Ok((
                    k.as_str(),
                    TensorView::new(Dtype::F32, s.clone(), b)
                        .map_err(|e| Error::Usage(format!("tensor {k}: {e}")))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let metadata = (!self.metadata.is_empty()).then(|| self.metadata.clone());
        safetensors::serialize(views, metadata)
            .map_err(|e| Error::Usage(format!("serialising {}: {e}", path.display())))
    }
}

/// Writes files that belong together (a model and its training state) through synced
/// temporary files, renamed into place only once every one is complete: a crash leaves
/// the old set whole, or (but for the instant between the renames) the new one.
pub fn write_together(files: &[(&TensorFile, &Path)]) -> Result<()> {
    let mut written = Vec::with_capacity(files.len());
    for (file, path) in files {
        written.push((write_temporary(path, &file.serialize(path)?)?, *path));
    }
    for (tmp, path) in written {
        std::fs::rename(&tmp, path).map_err(io("renaming into place", path))?;
    }
    Ok(())
}

/// Refuses a model file and a training state that do not come from one save (a crash
/// between the two writes leaves such a pair), naming the newer of the two.
pub fn check_pair(
    (model, model_path): (&TensorFile, &Path),
    (state, state_path): (&TensorFile, &Path),
) -> Result<()> {
    let step = |file: &TensorFile, path: &Path| {
        file.metadata
            .get("step")
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| Error::Checkpoint {
                path: path.to_path_buf(),
                message: "no step in its metadata: it was not written by a run".into(),
            })
    };
    let (m, s) = (step(model, model_path)?, step(state, state_path)?);
    if m == s {
        return Ok(());
    }
    let (newer, older) = if m > s {
        ((model_path, m), (state_path, s))
    } else {
        ((state_path, s), (model_path, m))
    };
    Err(Error::Checkpoint {
        path: newer.0.to_path_buf(),
        message: format!(
            "is from step {} but {} from step {}: the two must come from one save (the newer one is {})",
            newer.1,
            older.0.display(),
            older.1,
            newer.0.display()
        ),
    })
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = write_temporary(path, bytes)?;
    std::fs::rename(&tmp, path).map_err(io("renaming into place", path))
}

/// Writes and syncs the temporary file beside `path`; returns its path.
fn write_temporary(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let tmp = temporary(path);
    let mut f = std::fs::File::create(&tmp).map_err(io("writing", &tmp))?;
    crash_for_tests(path, || f.write_all(&bytes[..bytes.len() / 2]));
    f.write_all(bytes).map_err(io("writing", &tmp))?;
    f.sync_all().map_err(io("writing", &tmp))?;
    Ok(tmp)
}

/// The fault-injection hook of the crash tests, in debug builds only: with
/// `VQVAE_TEST_CRASH=NAME:K`, the K-th write of a file named NAME (counting from 1) aborts
/// the process halfway, after `half` has written half of it.
fn crash_for_tests(path: &Path, half: impl FnOnce() -> std::io::Result<()>) {
    #[cfg(debug_assertions)]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let Ok(spec) = std::env::var("VQVAE_TEST_CRASH") else {
            return;
        };
        let Some((name, k)) = spec.split_once(':') else {
            return;
        };
        if path.file_name().is_some_and(|n| n == name)
            && k.parse() == Ok(WRITES.fetch_add(1, Ordering::SeqCst) + 1)
        {
            let _ = half();
            std::process::abort();
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = (path, half);
}

fn temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}
