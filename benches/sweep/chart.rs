//! The sweep's PNG: one panel per figure side by side, each a few curves
//! over a log-scale x axis (plotters' bitmap backend).
//!
//! Text needs a TrueType font, loaded at run time: `SWITCHBOARD_BENCH_FONT`
//! when set, else DejaVu Sans or Liberation Sans from /usr/share/fonts.
//! Without one the chart is still drawn, with its curves and grid but no
//! text at all (the table in sweep.txt has the figures), and the bench says
//! which font to install.

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

/// Fonts tried in order when `SWITCHBOARD_BENCH_FONT` is not set.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
];

const FAMILY: &str = "sans-serif";

/// One panel's pixel size.
const PANEL: (u32, u32) = (620, 460);

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(127, 127, 127),
];

/// One curve: its name and its (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Drawn as a thin line without markers (a target, a baseline).
    pub reference: bool,
}

/// One panel: its title, axis names, curves, and whether y is log-scale
/// too.
pub struct Panel {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub log_y: bool,
    pub series: Vec<Series>,
}

/// Registers a font for the chart's text; `Err` lists what was tried.
pub fn load_font() -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = match std::env::var_os("SWITCHBOARD_BENCH_FONT") {
        Some(path) => vec![PathBuf::from(path)],
        None => FONTS.iter().map(PathBuf::from).collect(),
    };
    for path in &candidates {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        // plotters keeps a registered font for the whole process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        if plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
            return Ok(path.clone());
        }
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(tried.join(", "))
}

/// Draws the panels side by side into a PNG at `path`; with `text` false
/// (no font), without any text.
pub fn draw(path: &Path, panels: &[Panel], text: bool) -> Result<(), String> {
    let width = PANEL.0 * panels.len().max(1) as u32;
    let root = BitMapBackend::new(path, (width, PANEL.1)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        let x = bounds(
            panel
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0)),
        );
        let y = bounds(
            panel
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1)),
        );
        let x_range = (x.0 / 2.0).max(f64::MIN_POSITIVE)..x.1 * 2.0;
        if panel.log_y {
            let y_range = (y.0 / 2.0).max(1e-3)..y.1 * 2.0;
            draw_panel(area, panel, x_range.log_scale(), y_range.log_scale(), text)?;
        } else {
            draw_panel(area, panel, x_range.log_scale(), 0.0..y.1 * 1.2, text)?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

/// The smallest and largest positive values (1 and 10 when none).
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        (1.0, 10.0)
    } else {
        (lo, hi)
    }
}

fn draw_panel<X, Y>(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    panel: &Panel,
    x: X,
    y: Y,
    text: bool,
) -> Result<(), String>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let mut builder = ChartBuilder::on(area);
    builder.margin(16);
    if text {
        builder
            .caption(&panel.title, (FAMILY, 20))
            .x_label_area_size(44)
            .y_label_area_size(64);
    }
    let mut chart = builder.build_cartesian_2d(x, y).map_err(|e| err(&e))?;
    let mut mesh = chart.configure_mesh();
    // Few key points on x: a log axis otherwise labels every 1..9 of each
    // decade, and the labels run into each other.
    mesh.x_labels(6)
        .max_light_lines(2)
        .light_line_style(RGBColor(235, 235, 235));
    if text {
        mesh.x_desc(panel.x_desc.as_str())
            .y_desc(panel.y_desc.as_str())
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 15))
            .x_label_formatter(&|v| short(*v))
            .y_label_formatter(&|v| short(*v));
    }
    mesh.draw().map_err(|e| err(&e))?;
    for (i, series) in panel.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<(f64, f64)> = series
            .points
            .iter()
            .copied()
            .filter(|(x, y)| *x > 0.0 && (!panel.log_y || *y > 0.0))
            .collect();
        let line = if series.reference {
            LineSeries::new(points, color.stroke_width(1))
        } else {
            LineSeries::new(points, color.stroke_width(2)).point_size(4)
        };
        let drawn = chart.draw_series(line).map_err(|e| err(&e))?;
        if text {
            drawn.label(series.name.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
    }
    if text {
        chart
            .configure_series_labels()
            .label_font((FAMILY, 13))
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    Ok(())
}

/// `1500000` → `1.5M`, `2000` → `2k`, `0.25` → `0.25`.
fn short(v: f64) -> String {
    let (scaled, unit) = if v.abs() >= 1e6 {
        (v / 1e6, "M")
    } else if v.abs() >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let digits = if scaled.fract().abs() < 1e-9 || scaled.abs() >= 100.0 {
        0
    } else if scaled.abs() >= 1.0 {
        1
    } else {
        2
    };
    format!("{scaled:.digits$}{unit}")
}
