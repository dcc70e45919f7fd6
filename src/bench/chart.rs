//! The report's chart (`report.png`): k2's tok/s next to its references, and the tokens an
//! agent run evaluates step by step next to what a loop without KV reuse would evaluate.

use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use super::Figure;

/// One step of the longest KV-reuse run, running totals in tokens.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct KvStep {
    /// The step, from 1.
    pub step: usize,
    /// Tokens k2 put through a forward pass so far (prompt and generated).
    pub evaluated: usize,
    /// Tokens the model holds after this step: the transcript.
    pub held: usize,
    /// What re-reading the whole prompt at every step would have evaluated so far.
    pub without_reuse: usize,
}

type Error = Box<dyn std::error::Error>;
type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
/// One line of the token panel, read off each step.
type Pick = fn(&KvStep) -> usize;

/// Draws both panels into `path`.
pub fn draw(path: &Path, figures: &[Figure], kv: &[KvStep]) -> Result<(), Error> {
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        epaint_default_fonts::HACK_REGULAR,
    )
    .map_err(|_| "the chart's font did not load")?;
    let root = BitMapBackend::new(path, (1280, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(640);
    speeds(&left, figures)?;
    tokens(&right, kv)?;
    root.present()?;
    Ok(())
}

/// Bars: each tok/s figure, k2 beside its reference.
fn speeds(area: &Area, figures: &[Figure]) -> Result<(), Error> {
    let bars: Vec<(&str, f64, f64)> = figures
        .iter()
        .filter(|f| f.unit == "tok/s")
        .map(|f| (short(&f.name), f.value, f.reference.unwrap_or(0.0)))
        .collect();
    let top = bars.iter().map(|b| b.1.max(b.2)).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "tok/s: k2 (blue); grey: llama-bench, or k2 without the grammar",
            ("sans-serif", 16),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..bars.len().max(1) as f64, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("tokens per second")
        .draw()?;
    for (i, (name, ours, theirs)) in bars.iter().enumerate() {
        let x = i as f64;
        chart.draw_series([
            Rectangle::new([(x + 0.12, 0.0), (x + 0.48, *ours)], BLUE.filled()),
            Rectangle::new(
                [(x + 0.52, 0.0), (x + 0.88, *theirs)],
                RGBColor(150, 150, 150).filled(),
            ),
        ])?;
        chart.draw_series([
            Text::new(
                format!("{ours:.0}"),
                (x + 0.14, ours + top * 0.01),
                ("sans-serif", 14),
            ),
            Text::new(
                format!("{theirs:.0}"),
                (x + 0.54, theirs + top * 0.01),
                ("sans-serif", 14),
            ),
            Text::new(name.to_string(), (x + 0.12, top * 0.96), ("sans-serif", 15)),
        ])?;
    }
    Ok(())
}

/// A few words for a figure's name, to fit under a bar.
fn short(name: &str) -> &str {
    if name.starts_with("prompt") {
        "prompt"
    } else if name.contains("grammar") {
        "grammar decode"
    } else if name.starts_with("decode") {
        "decode"
    } else {
        name
    }
}

/// Lines: tokens evaluated so far against steps.
fn tokens(area: &Area, kv: &[KvStep]) -> Result<(), Error> {
    let steps = kv.last().map_or(1, |s| s.step).max(1) as f64;
    let top = kv
        .iter()
        .map(|s| s.without_reuse.max(s.evaluated) as f64)
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("Tokens evaluated over an agent run", ("sans-serif", 16))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(1.0..steps, 0.0..top)?;
    chart
        .configure_mesh()
        .x_labels(kv.len().clamp(2, 16))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("step")
        .y_desc("tokens")
        .draw()?;
    let line = |f: Pick| kv.iter().map(move |s| (s.step as f64, f(s) as f64));
    // The transcript goes under k2's line, wider: where k2 re-reads nothing they coincide.
    let series: [(&str, RGBColor, u32, Pick); 3] = [
        ("transcript length", RGBColor(140, 210, 150), 7, |s| s.held),
        ("k2: evaluated so far", BLUE, 2, |s| s.evaluated),
        ("without KV reuse", RED, 2, |s| s.without_reuse),
    ];
    for (label, color, width, f) in series {
        chart
            .draw_series(LineSeries::new(line(f), color.stroke_width(width)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 20, y)], color.stroke_width(width))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}
