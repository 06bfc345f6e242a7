//! The soak's PNG: three panels over time, one above the other (each
//! gateway's resident memory, delivered/s, live p99), with a vertical mark
//! at every fault, labelled at the top. The font, colours and axis labels
//! are the benches' shared ones (`plot/font.rs`).

use std::path::Path;

use plotters::prelude::*;

use crate::figures::{Fault, Mark, Sample};
use crate::font::{short, COLORS, FAMILY};

/// The picture's size: three panels of this width, each a third of it high.
const SIZE: (u32, u32) = (1400, 1050);

/// The marks' colours: storm, NATS restart, gateway kill.
const STORM: RGBColor = RGBColor(255, 127, 14);
const NATS: RGBColor = RGBColor(148, 103, 189);
const KILL: RGBColor = RGBColor(0, 0, 0);

fn mark_color(kind: Fault) -> RGBColor {
    match kind {
        Fault::Storm => STORM,
        Fault::NatsRestart => NATS,
        Fault::GatewayKill => KILL,
    }
}

/// A curve's pieces: a gateway's memory is broken where its process
/// restarted, the p99 where no event arrived.
type Pieces = Vec<Vec<(f64, f64)>>;

/// One panel: its title, y axis, and named curves.
struct Panel {
    title: String,
    y_desc: String,
    curves: Vec<(String, Pieces)>,
}

/// Draws the chart into `path`; with `text` false (no font), without text.
pub fn draw(path: &Path, samples: &[Sample], marks: &[Mark], text: bool) -> Result<(), String> {
    let minutes = |t: f64| t / 60.0;
    let rss = |g: usize| {
        let mut pieces: Pieces = Vec::new();
        let mut pid = None;
        for s in samples {
            if pid != Some(s.pid[g]) {
                pid = Some(s.pid[g]);
                pieces.push(Vec::new());
            }
            if let (Some(piece), Some(kib)) = (pieces.last_mut(), s.rss_kib[g]) {
                piece.push((minutes(s.t), kib as f64 / 1024.0));
            }
        }
        pieces
    };
    let panels = [
        Panel {
            title: "resident memory per gateway".into(),
            y_desc: "RSS (MiB)".into(),
            curves: vec![("gateway 0".into(), rss(0)), ("gateway 1".into(), rss(1))],
        },
        Panel {
            title: "events delivered to the clients".into(),
            y_desc: "delivered/s".into(),
            curves: vec![(
                "delivered/s".into(),
                vec![samples
                    .iter()
                    .map(|s| (minutes(s.t), s.delivered_per_s))
                    .collect()],
            )],
        },
        Panel {
            title: "live latency, publish to client, p99 per second".into(),
            y_desc: "p99 (ms)".into(),
            curves: vec![("live p99".into(), p99_pieces(samples))],
        },
    ];
    let end = samples.last().map_or(1.0, |s| minutes(s.t)).max(0.1);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let areas = root.split_evenly((panels.len(), 1));
    for (i, (panel, area)) in panels.iter().zip(areas.iter()).enumerate() {
        draw_panel(area, panel, marks, end, i == 0, text)?;
    }
    root.present().map_err(|e| e.to_string())
}

/// The p99 curve, broken over the seconds in which no event arrived.
fn p99_pieces(samples: &[Sample]) -> Pieces {
    let mut pieces = vec![Vec::new()];
    for s in samples {
        match (s.p99_ms, pieces.last_mut()) {
            (Some(p99), Some(piece)) => piece.push((s.t / 60.0, p99)),
            (None, Some(piece)) if !piece.is_empty() => pieces.push(Vec::new()),
            _ => {}
        }
    }
    pieces
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    panel: &Panel,
    marks: &[Mark],
    end: f64,
    label_marks: bool,
    text: bool,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let top = panel
        .curves
        .iter()
        .flat_map(|(_, pieces)| pieces.iter().flatten().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    let mut builder = ChartBuilder::on(area);
    builder.margin(12);
    if text {
        builder
            .caption(&panel.title, (FAMILY, 18))
            .x_label_area_size(36)
            .y_label_area_size(64);
    }
    let mut chart = builder
        .build_cartesian_2d(0.0..end, 0.0..top)
        .map_err(|e| err(&e))?;
    let mut mesh = chart.configure_mesh();
    mesh.x_labels(12)
        .y_labels(6)
        .light_line_style(RGBColor(235, 235, 235));
    if text {
        mesh.x_desc("minutes since the start")
            .y_desc(panel.y_desc.as_str())
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 14))
            .x_label_formatter(&|v| short(*v))
            .y_label_formatter(&|v| short(*v));
    }
    mesh.draw().map_err(|e| err(&e))?;
    for mark in marks {
        let x = mark.t / 60.0;
        let color = mark_color(mark.kind);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, 0.0), (x, top)],
                color.mix(0.7).stroke_width(1),
            )))
            .map_err(|e| err(&e))?;
        if text && label_marks {
            chart
                .draw_series(std::iter::once(Text::new(
                    mark.label.clone(),
                    (x, top * 0.98),
                    (FAMILY, 11).into_font().color(&color),
                )))
                .map_err(|e| err(&e))?;
        }
    }
    for (i, (name, pieces)) in panel.curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        for (k, piece) in pieces.iter().enumerate() {
            let drawn = chart
                .draw_series(LineSeries::new(
                    piece.iter().copied(),
                    color.stroke_width(1),
                ))
                .map_err(|e| err(&e))?;
            if text && k == 0 {
                drawn.label(name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            }
        }
    }
    if text && label_marks {
        // The marks' kinds in the legend too.
        for kind in [Fault::Storm, Fault::NatsRestart, Fault::GatewayKill] {
            if !marks.iter().any(|m| m.kind == kind) {
                continue;
            }
            let color = mark_color(kind);
            chart
                .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
                .map_err(|e| err(&e))?
                .label(kind.name())
                .legend(move |(x, y)| {
                    PathElement::new(
                        vec![(x + 10, y - 6), (x + 10, y + 6)],
                        color.stroke_width(2),
                    )
                });
        }
    }
    if text {
        chart
            .configure_series_labels()
            .label_font((FAMILY, 12))
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    Ok(())
}
