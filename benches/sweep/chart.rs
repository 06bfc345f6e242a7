//! The sweep's PNG: one panel per figure side by side, each a few curves
//! over a log-scale x axis (plotters' bitmap backend).
//! Its font, colours and labels are the benches' shared ones
//! (`plot/font.rs`); without a font the chart has no text (the table in
//! sweep.txt has the figures).

use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use crate::font::{short, COLORS, FAMILY};

/// One panel's pixel size.
const PANEL: (u32, u32) = (620, 460);

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
