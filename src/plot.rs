//! Curves of a run, drawn from its metrics log: `metrics.png` for the autoencoder
//! (loss, reconstruction MSE, perplexity and codes in use against the step, training and
//! held-out) and `prior_metrics.png` for the prior (bits per code against its two
//! baselines). Text uses the DejaVu Sans font built into the binary: no system font is
//! looked up, so the pictures render the same on a machine with none.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use image::ImageEncoder;

use crate::checkpoint::write_atomic;
use crate::error::{Error, Result, data, io};

/// The autoencoder's curves, in the run folder.
pub const METRICS_PNG: &str = "metrics.png";
/// The prior's curves, in its run folder.
pub const PRIOR_METRICS_PNG: &str = "prior_metrics.png";

const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1200, 800);
const TRAIN: RGBColor = RGBColor(40, 70, 160);
const HELD_OUT: RGBColor = RGBColor(210, 90, 20);
const BASELINE: RGBColor = RGBColor(120, 120, 120);

/// A line to draw: its legend, colour, and (step, value) points.
struct Series {
    name: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
    dashed: bool,
}

/// One panel: a title, whether its values are on a log scale, whether they rise (the
/// legend then goes low, away from where the lines end), and its lines.
struct Panel {
    title: &'static str,
    log: bool,
    rising: bool,
    series: Vec<Series>,
}

/// The values of `key` in the lines of `log` that have it, against their `step`.
fn column(log: &[serde_json::Value], key: &str) -> Vec<(f64, f64)> {
    log.iter()
        .filter_map(|v| Some((v["step"].as_f64()?, v.get(key)?.as_f64()?)))
        .filter(|(_, y)| y.is_finite())
        .collect()
}

fn read_log(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path).map_err(io("reading", path))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn line(name: &'static str, color: RGBColor, points: Vec<(f64, f64)>) -> Series {
    Series {
        name,
        color,
        points,
        dashed: false,
    }
}

/// Draws `metrics` (a training run's `metrics.jsonl`) into `png`.
pub fn training_curves(metrics: &Path, png: &Path) -> Result<()> {
    let log = read_log(metrics)?;
    // Losses fall (a log scale, the legend high); code usage rises (the legend low).
    let panel = |title, falling: bool, series| Panel {
        title,
        log: falling,
        rising: !falling,
        series,
    };
    let with_held_out = |name, key, held_out| {
        vec![
            line(name, TRAIN, column(&log, key)),
            line("held-out", HELD_OUT, column(&log, held_out)),
        ]
    };
    let panels = [
        panel(
            "training loss",
            true,
            vec![line("training", TRAIN, column(&log, "loss"))],
        ),
        panel(
            "reconstruction MSE",
            true,
            with_held_out("training", "recon", "val_recon_mse"),
        ),
        panel(
            "perplexity of the codes",
            false,
            with_held_out("training batch", "perplexity", "val_perplexity"),
        ),
        panel(
            "codes in use",
            false,
            with_held_out("training batch", "codes_used", "val_codes_used"),
        ),
    ];
    draw(png, &panels, (2, 2))
}

/// Draws `metrics` (a prior run's `prior_metrics.jsonl`) into `png`: bits per code on
/// the training batches and the held-out grids, with the uniform prior's and the code
/// frequencies' as lines.
pub fn prior_curves(metrics: &Path, png: &Path) -> Result<()> {
    let log = read_log(metrics)?;
    let steps: Vec<f64> = log.iter().filter_map(|v| v["step"].as_f64()).collect();
    let (first, last) = steps
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &s| (a.min(s), b.max(s)));
    let flat = |key| {
        let value = log.iter().find_map(|v| v.get(key)?.as_f64());
        value.map_or_else(Vec::new, |y| vec![(first, y), (last, y)])
    };
    let panels = [Panel {
        title: "bits per code",
        log: false,
        rising: false,
        series: vec![
            line("training batch", TRAIN, column(&log, "train_bits")),
            line("held-out", HELD_OUT, column(&log, "val_bits")),
            Series {
                dashed: true,
                ..line("uniform prior", BASELINE, flat("uniform_bits"))
            },
            Series {
                dashed: true,
                ..line(
                    "code frequencies",
                    RGBColor(60, 150, 60),
                    flat("frequency_bits"),
                )
            },
        ],
    }];
    draw(png, &panels, (1, 1))
}

fn font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    ok.then_some(())
        .ok_or_else(|| Error::Usage("the built-in plotting font cannot be read".into()))
}

fn draw(png: &Path, panels: &[Panel], (rows, columns): (usize, usize)) -> Result<()> {
    font()?;
    let failed = |e: &dyn std::fmt::Display| data(png, format!("cannot draw the curves: {e}"));
    let mut rgb = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(&e))?;
        for (area, panel) in root.split_evenly((rows, columns)).iter().zip(panels) {
            draw_panel(area, panel).map_err(|e| failed(&e))?;
        }
        root.present().map_err(|e| failed(&e))?;
    }
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(&rgb, SIZE.0, SIZE.1, image::ExtendedColorType::Rgb8)
        .map_err(|e| data(png, format!("cannot encode the PNG: {e}")))?;
    // Redrawn at every checkpoint: a reader never sees half a picture.
    write_atomic(png, &bytes)
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn draw_panel(area: &Area, panel: &Panel) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let points = panel.series.iter().flat_map(|s| &s.points);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points.filter(|(_, y)| !panel.log || *y > 0.0) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        // Nothing logged yet: an empty frame with its title.
        (x0, x1, y0, y1) = (0.0, 1.0, 1.0, 2.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    // A log scale only where the values span more than a decade.
    let log = panel.log && y0 > 0.0 && y1 / y0 > 10.0;
    let (y0, y1) = if log {
        (y0 / 1.2, (y1 * 1.2).max(y0 * 1.5))
    } else {
        let pad = ((y1 - y0) * 0.05).max(y1.abs() * 0.02).max(1e-6);
        (y0 - pad, y1 + pad)
    };
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(panel.title, (FONT, 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64);
    let step = |x: &f64| format!("{x:.0}");
    let value = |y: &f64| match y.abs() {
        a if a >= 10.0 || a == 0.0 => format!("{y:.0}"),
        a if a >= 1.0 => format!("{y:.1}"),
        a if a >= 0.01 => format!("{y:.3}"),
        _ => format!("{y:.1e}"),
    };
    if log {
        let mut chart = builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("step")
            .x_label_formatter(&step)
            .y_label_formatter(&value)
            .label_style((FONT, 14))
            .draw()?;
        draw_series(&mut chart, panel)?;
        legend(&mut chart, panel.rising)?;
    } else {
        let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .x_label_formatter(&step)
            .y_label_formatter(&value)
            .label_style((FONT, 14))
            .draw()?;
        draw_series(&mut chart, panel)?;
        legend(&mut chart, panel.rising)?;
    }
    Ok(())
}

fn draw_series<'a, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    panel: &Panel,
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    Y: Ranged<ValueType = f64>,
{
    for s in panel.series.iter().filter(|s| !s.points.is_empty()) {
        let color = s.color;
        let style = color.stroke_width(2);
        let drawn = if s.dashed {
            chart.draw_series(DashedLineSeries::new(s.points.iter().copied(), 8, 6, style))?
        } else if s.points.len() < 12 {
            // A few points (validations): marked as well as joined.
            chart.draw_series(PointSeries::of_element(
                s.points.iter().copied(),
                4,
                color.filled(),
                &|c, size, st| EmptyElement::at(c) + Circle::new((0, 0), size, st),
            ))?;
            chart.draw_series(LineSeries::new(s.points.iter().copied(), style))?
        } else {
            chart.draw_series(LineSeries::new(s.points.iter().copied(), style))?
        };
        drawn
            .label(s.name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    Ok(())
}

fn legend<'a, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    rising: bool,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let position = if rising {
        SeriesLabelPosition::LowerRight
    } else {
        SeriesLabelPosition::UpperRight
    };
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}
