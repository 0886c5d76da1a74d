//! Records the wgpu version this build resolved to (from Cargo.lock) for benchmark
//! reports; crates.io builds without a lock file fall back to the version requirement.

fn main() {
    println!("cargo::rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"wgpu\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap_or_else(|| "30 (exact version not recorded)".to_string());
    println!("cargo::rustc-env=VQVAE_WGPU_VERSION={version}");
}
