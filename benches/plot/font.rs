//! What the benches' PNG charts share (the sweep's and the soak's): the
//! font their text is drawn with, the colours of their curves, and short
//! axis labels.
//!
//! Text needs a TrueType font, loaded at run time: `SWITCHBOARD_BENCH_FONT`
//! when set, else DejaVu Sans or Liberation Sans from /usr/share/fonts.
//! Without one a chart is still drawn, with its curves and grid but no
//! text at all, and the bench says which font to install.

use std::path::PathBuf;

use plotters::prelude::*;

/// Fonts tried in order when `SWITCHBOARD_BENCH_FONT` is not set.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
];

/// The family name the loaded font is registered under.
pub const FAMILY: &str = "sans-serif";

/// The curves' colours, in turn.
pub const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(127, 127, 127),
];

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

/// `1500000` → `1.5M`, `2000` → `2k`, `0.25` → `0.25`.
pub fn short(v: f64) -> String {
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
