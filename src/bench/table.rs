//! Terminal tables: one run's figures as they are measured, and several runs side by
//! side with ratios.

use std::fmt::Write;
use std::path::PathBuf;

use super::report::{Entry, Report};
use super::suite::Group;

/// What a group measures, printed above its rows.
fn heading(group: Group) -> &'static str {
    match group {
        Group::Kernel => {
            "kernels at the reference model's shapes (batch 32 of 32x32x3, H128 R32 K512 D64)"
        }
        Group::Quantizer => "quantiser: nearest-code search over N, K and D",
        Group::Train => {
            "training step: forward, loss, backward, Adam (GFLOP/s of the convolutions)"
        }
        Group::Inference => "inference: encoder, quantiser, decoder (GFLOP/s of the convolutions)",
        Group::Prior => {
            "PixelCNN prior (img/s of sampling count a position or a row as its share of an image)"
        }
        Group::Data => {
            "data loading: reading and decoding image files on one worker thread (img/s per worker)"
        }
    }
}

/// `v` with four significant digits, without exponent for the usual ranges.
fn sig(v: f64) -> String {
    let digits = if v >= 1000.0 {
        0
    } else if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else if v >= 1.0 {
        3
    } else {
        4
    };
    format!("{v:.digits$}")
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), sig)
}

/// The column titles of [`row`].
pub fn header() -> String {
    format!(
        "{:<36} {:<40} {:>10} {:>21} {:>9} {:>8} {:>8} {:>8}",
        "benchmark", "shape", "median ms", "(min - max)", "GFLOP/s", "GB/s", "img/s", "MiB"
    )
}

/// A heading line when `entry` starts a new group after `previous`.
pub fn group_break(previous: Option<&Entry>, entry: &Entry) -> Option<String> {
    (previous.map(|p| p.group) != Some(entry.group))
        .then(|| format!("\n## {}", heading(entry.group)))
}

/// One entry's figures on one line.
pub fn row(e: &Entry) -> String {
    let Some(t) = e.time_ms else {
        return format!(
            "{:<36} {:<40} failed: {}",
            e.name,
            e.shape,
            e.error.as_deref().unwrap_or("no time measured")
        );
    };
    format!(
        "{:<36} {:<40} {:>10} {:>21} {:>9} {:>8} {:>8} {:>8}",
        e.name,
        e.shape,
        sig(t.median),
        format!("({} - {})", sig(t.min), sig(t.max)),
        opt(e.gflops),
        opt(e.gbps),
        opt(e.images_per_sec),
        opt(e.memory_bytes.map(|b| b as f64 / 1048576.0)),
    )
}

/// Several reports side by side: each benchmark's median time in every report and how
/// many times faster each is than the first. Benchmarks are matched by group, name and
/// shape; one missing from a report shows as `-`.
pub fn compare(reports: &[(PathBuf, Report)]) -> String {
    let mut out = String::new();
    let letter = |i: usize| char::from(b'A' + (i % 26) as u8);
    for (i, (path, r)) in reports.iter().enumerate() {
        let _ = writeln!(
            out,
            "{}: {} ({}, {} suite)\n   {}",
            letter(i),
            path.display(),
            r.date,
            r.suite,
            r.environment.summary()
        );
    }
    let _ = writeln!(
        out,
        "\nmedian ms per run; x = how many times faster than A (above 1: faster)"
    );
    // Every benchmark of any report, in the order first seen.
    let mut keys: Vec<(Group, &str, &str)> = Vec::new();
    for (_, r) in reports {
        for e in &r.results {
            let key = (e.group, e.name.as_str(), e.shape.as_str());
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    let mut title = format!("{:<36} {:<40}", "benchmark", "shape");
    for i in 0..reports.len() {
        let _ = write!(title, " {:>10}", format!("{} ms", letter(i)));
        if i > 0 {
            let _ = write!(title, " {:>8}", format!("{} x", letter(i)));
        }
    }
    let mut group = None;
    for (g, name, shape) in keys {
        if group != Some(g) {
            let _ = writeln!(out, "\n## {}\n{title}", heading(g));
            group = Some(g);
        }
        let median = |r: &Report| {
            r.results
                .iter()
                .find(|e| e.group == g && e.name == name && e.shape == shape)
                .and_then(|e| e.time_ms)
                .map(|t| t.median)
        };
        let base = median(&reports[0].1);
        let mut line = format!("{name:<36} {shape:<40}");
        for (i, (_, r)) in reports.iter().enumerate() {
            let m = median(r);
            let _ = write!(line, " {:>10}", opt(m));
            if i > 0 {
                let ratio = base.zip(m).map(|(a, b)| format!("{:.2}x", a / b));
                let _ = write!(line, " {:>8}", ratio.as_deref().unwrap_or("-"));
            }
        }
        let _ = writeln!(out, "{line}");
    }
    out
}
