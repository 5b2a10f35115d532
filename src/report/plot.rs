//! The loss plot a `train` build writes (`loss.svg`): training and validation
//! loss against the step, with the unigram baseline to beat.

use anyhow::{Result, anyhow};
use plotters::prelude::*;

/// An SVG of the training loss `(step, loss)` of every step, the validation
/// loss of each evaluation and, if known, the unigram baseline of the
/// validation text.
pub fn loss_svg(train: &[(u64, f64)], val: &[(u64, f64)], baseline: Option<f64>) -> Result<String> {
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing loss.svg: {e}");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let last = train.last().map_or(1, |l| l.0).max(1);
        let values = train
            .iter()
            .chain(val)
            .map(|p| p.1)
            .chain(baseline)
            .filter(|v| v.is_finite());
        let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
        let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 1.0) };
        let pad = ((hi - lo) * 0.05).max(1e-3);
        let mut chart = ChartBuilder::on(&root)
            .caption("pai train: loss", ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0u64..last, (lo - pad).max(0.0)..hi + pad)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("optimizer step")
            .y_desc("cross-entropy loss (nats per token)")
            .draw()
            .map_err(|e| err(&e))?;
        let blue = RGBColor(31, 119, 180);
        let red = RGBColor(214, 39, 40);
        let grey = RGBColor(110, 110, 110);
        chart
            .draw_series(LineSeries::new(train.iter().copied(), blue))
            .map_err(|e| err(&e))?
            .label("train loss")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue));
        if !val.is_empty() {
            chart
                .draw_series(LineSeries::new(val.iter().copied(), red.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label("validation loss")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], red));
            chart
                .draw_series(val.iter().map(|&p| Circle::new(p, 3, red.filled())))
                .map_err(|e| err(&e))?;
        }
        if let Some(b) = baseline {
            chart
                .draw_series(LineSeries::new([(0, b), (last, b)], grey.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label("unigram baseline (validation)")
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}
