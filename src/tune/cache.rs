//! The tuning cache: one JSON file of tunings, each keyed by the adapter, its driver,
//! this build (wgpu version, crate version, a hash of the shader sources) and the
//! target, so that a tuning is only ever used where it was measured.
//!
//! The file lives in the user's cache folder (`vqvae-wgpu/tuning.json`) unless
//! `VQVAE_TUNING` names another path. It is written atomically (temporary file, then
//! rename). A file that cannot be read or parsed, or one that cannot be written, costs a
//! one-line notice and nothing else: the run tunes anew, or keeps its tuning for itself.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Target, Tuned};
use crate::checkpoint::write_atomic;
use crate::gpu::{Gpu, driver_text};
use crate::launch::Tuning;
use crate::shaders;

/// The environment variable naming the cache file.
pub const ENV: &str = "VQVAE_TUNING";

/// The file layout's version; a file of another version is ignored.
const SCHEMA: u32 = 1;

/// Where a tuning applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// The adapter's name.
    pub adapter: String,
    /// PCI vendor and device ids.
    pub ids: [u32; 2],
    /// Vulkan, Metal, DX12 or GL.
    pub backend: String,
    /// The driver's name, version and details.
    pub driver: String,
    /// The wgpu version of the build.
    pub wgpu: String,
    /// This crate's version.
    pub version: String,
    /// A hash of every shader source and of the generator of the unrolled kernels.
    pub shaders: String,
    /// What was tuned ([`Target::describe`]).
    pub target: String,
}

impl Key {
    /// The key of `target` on `gpu` with this build.
    pub fn of(gpu: &Gpu, target: &Target) -> Key {
        let info = gpu.info();
        Key {
            adapter: info.name.clone(),
            ids: [info.vendor, info.device],
            backend: format!("{:?}", info.backend),
            driver: driver_text(&info.driver, &info.driver_info),
            wgpu: env!("VQVAE_WGPU_VERSION").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            shaders: shader_hash(),
            target: target.describe(),
        }
    }

    /// Same adapter and driver, whatever the build and target.
    fn same_adapter(&self, other: &Key) -> bool {
        (&self.adapter, self.ids, &self.backend, &self.driver)
            == (&other.adapter, other.ids, &other.backend, &other.driver)
    }
}

/// FNV-1a over every shader file and the generator of the unrolled kernels, in hex.
fn shader_hash() -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let generator = include_str!("../kernels/unrolled.rs");
    let texts = shaders::ALL.iter().map(|s| s.source).chain([generator]);
    for text in texts {
        for byte in text.bytes().chain([0]) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// One cached tuning and what it measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// Where it applies.
    pub key: Key,
    /// The tuning.
    pub tuning: Tuning,
    /// A training step with the adapter's default tuning, in milliseconds.
    pub default_step_ms: f64,
    /// A training step with this tuning, in milliseconds.
    pub step_ms: f64,
    /// When it was measured (RFC 3339, UTC).
    pub date: String,
}

impl Entry {
    /// The entry recording `tuned` under `key`.
    pub fn new(key: Key, tuned: &Tuned) -> Entry {
        Entry {
            key,
            tuning: tuned.tuning,
            default_step_ms: tuned.default_step_ms,
            step_ms: tuned.step_ms,
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct File {
    schema: u32,
    entries: Vec<Entry>,
}

/// The cache as read from its file (empty where there is none).
pub struct Cache {
    /// The file (`None`: no cache folder is known, so nothing is kept).
    pub path: Option<PathBuf>,
    entries: Vec<Entry>,
}

impl Cache {
    /// The cache file's path: `VQVAE_TUNING`, else the user's cache folder.
    pub fn default_path() -> Option<PathBuf> {
        match std::env::var_os(ENV) {
            Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
            _ => dirs::cache_dir().map(|d| d.join("vqvae-wgpu").join("tuning.json")),
        }
    }

    /// Reads the cache at `path`; an unreadable or corrupt file is reported through
    /// `notice` and treated as empty.
    pub fn open(path: Option<PathBuf>, notice: &mut impl FnMut(String)) -> Cache {
        let entries = path
            .as_deref()
            .and_then(|p| match read(p) {
                Ok(entries) => entries,
                Err(why) => {
                    notice(format!(
                        "tuning cache {} ignored: {why}; it will be rewritten",
                        p.display()
                    ));
                    None
                }
            })
            .unwrap_or_default();
        Cache { path, entries }
    }

    /// The tuning cached for `key`; entries for this adapter made by another build are
    /// reported through `notice`.
    pub fn get(&self, key: &Key, notice: &mut impl FnMut(String)) -> Option<Tuning> {
        if let Some(e) = self.entries.iter().find(|e| &e.key == key) {
            return Some(e.tuning);
        }
        let stale = self
            .entries
            .iter()
            .filter(|e| e.key.same_adapter(key) && e.key.target == key.target)
            .count();
        if stale > 0 {
            notice(format!(
                "tuning cache {}: {stale} tuning(s) for this adapter and model come from another build (wgpu, crate or shaders changed); ignored",
                self.display()
            ));
        }
        None
    }

    /// Stores `entry` (replacing one with its key) and rewrites the file atomically;
    /// returns why the file could not be written, if it could not.
    pub fn put(&mut self, entry: Entry) -> std::result::Result<(), String> {
        self.entries.retain(|e| e.key != entry.key);
        self.entries.push(entry);
        let Some(path) = &self.path else {
            return Err("no cache folder is known; set VQVAE_TUNING to keep tunings".into());
        };
        let file = File {
            schema: SCHEMA,
            entries: self.entries.clone(),
        };
        let text = serde_json::to_string_pretty(&file).expect("tunings serialise");
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        write_atomic(path, text.as_bytes()).map_err(|e| e.to_string())
    }

    /// The file's path in words.
    pub fn display(&self) -> String {
        self.path
            .as_ref()
            .map_or("(none)".into(), |p| p.display().to_string())
    }
}

/// The entries of the file at `path` (`None` if there is no file).
fn read(path: &Path) -> std::result::Result<Option<Vec<Entry>>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("not JSON ({e})"))?;
    let schema = value.get("schema").and_then(serde_json::Value::as_u64);
    if schema != Some(u64::from(SCHEMA)) {
        return Err(format!(
            "layout version {schema:?}, this build reads {SCHEMA}"
        ));
    }
    let file: File = serde_json::from_value(value).map_err(|e| format!("malformed ({e})"))?;
    Ok(Some(file.entries))
}
