//! [`LinePlot`]: curves over iterations or epochs (matching loss, learned
//! learning rates, expert training loss, recall against pairs), drawn with
//! plotters as SVG, shown inline in an evcxr notebook or saved to a file.

use crate::error::{Error, Result};
use crate::evaluate::results::ResultRow;
use crate::stage1::trajectory::Trajectory;
use crate::stage2::distiller::DistillReport;
use plotters::prelude::*;
use std::path::Path;

/// Width and height of a rendered plot in pixels.
pub const SIZE: (u32, u32) = (640, 400);

/// Line colours, in series order (cycled).
/// Series of at most this many points also get a dot at each point (a
/// single point is visible; a sweep's few settings read as measurements);
/// longer curves, such as losses per iteration, are lines only.
const MAX_MARKED_POINTS: usize = 30;

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One named curve: points `(x, y)` in drawing order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

/// A line plot of one or more series with a title and axis labels.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePlot {
    /// Title above the plot.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// The curves.
    pub series: Vec<Series>,
}

impl LinePlot {
    /// An empty plot.
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        LinePlot {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
        }
    }

    /// Adds a curve (non-finite points are left out when drawing).
    pub fn with_series(mut self, name: &str, points: Vec<(f64, f64)>) -> Self {
        self.series.push(Series {
            name: name.into(),
            points,
        });
        self
    }

    /// The matching loss of a distillation, total and per modality, over
    /// its iterations.
    pub fn matching_loss(reports: &[DistillReport]) -> Self {
        let pts = |f: fn(&DistillReport) -> f64| {
            reports.iter().map(|r| (r.iteration as f64, f(r))).collect()
        };
        LinePlot::new("matching loss", "iteration", "loss")
            .with_series("total", pts(|r| r.loss))
            .with_series("image tower", pts(|r| r.loss_image))
            .with_series("text tower", pts(|r| r.loss_text))
    }

    /// The learned student learning rates α of a distillation over its iterations.
    pub fn learning_rates(reports: &[DistillReport]) -> Self {
        let pts = |f: fn(&DistillReport) -> f64| {
            reports.iter().map(|r| (r.iteration as f64, f(r))).collect()
        };
        LinePlot::new("learned learning rates α", "iteration", "α")
            .with_series("image", pts(|r| r.lr_image))
            .with_series("text", pts(|r| r.lr_text))
    }

    /// Every expert's mean training loss per epoch.
    pub fn expert_losses(trajectories: &[Trajectory]) -> Self {
        trajectories.iter().fold(
            LinePlot::new("expert training loss", "epoch", "contrastive loss"),
            |p, t| {
                let pts = t
                    .meta
                    .train_loss
                    .iter()
                    .enumerate()
                    .map(|(e, l)| ((e + 1) as f64, *l))
                    .collect();
                p.with_series(&format!("expert {}", t.meta.expert), pts)
            },
        )
    }

    /// Mean recall against the number of training pairs, one curve per
    /// method of `rows` (distilled, random, …; rows without a pair count,
    /// such as `full`, are left out). `column` names the recall as in
    /// [`recall_table::COLUMNS`](super::recall_table::COLUMNS): `"TR R@1"`,
    /// `"IR R@10"`, ….
    pub fn recall_vs_pairs(rows: &[ResultRow], column: &str) -> Result<Self> {
        let c = super::recall_table::COLUMNS
            .iter()
            .position(|n| *n == column)
            .ok_or_else(|| {
                Error::Config(format!(
                    "no recall column {column:?}; choose one of {:?}",
                    super::recall_table::COLUMNS
                ))
            })?;
        let mut methods: Vec<&str> = Vec::new();
        for r in rows {
            if r.pairs.is_some() && !methods.contains(&r.method.as_str()) {
                methods.push(&r.method);
            }
        }
        let mut plot = LinePlot::new(&format!("{column} against pairs"), "pairs", column);
        for m in methods {
            let mut pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.method == m)
                .filter_map(|r| Some((r.pairs? as f64, r.stats().mean.values()[c])))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            plot = plot.with_series(m, pts);
        }
        Ok(plot)
    }

    /// The ranges of all finite points, widened when flat.
    fn bounds(&self) -> Result<((f64, f64), (f64, f64))> {
        let pts: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        if pts.is_empty() {
            return Err(Error::Config(format!(
                "plot {:?}: no finite point to draw",
                self.title
            )));
        }
        let range = |v: Vec<f64>| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let pad = if hi > lo {
                0.05 * (hi - lo)
            } else {
                lo.abs().max(1.0) * 0.05
            };
            (lo - pad, hi + pad)
        };
        Ok((
            range(pts.iter().map(|p| p.0).collect()),
            range(pts.iter().map(|p| p.1).collect()),
        ))
    }

    /// The plot as an SVG document.
    pub fn to_svg(&self) -> Result<String> {
        let ((x0, x1), (y0, y1)) = self.bounds()?;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            let draw = |e: &dyn std::fmt::Display| Error::Config(format!("drawing the plot: {e}"));
            root.fill(&WHITE).map_err(|e| draw(&e))?;
            let mut chart = ChartBuilder::on(&root)
                .caption(&self.title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| draw(&e))?;
            chart
                .configure_mesh()
                .x_desc(self.x_label.as_str())
                .y_desc(self.y_label.as_str())
                .draw()
                .map_err(|e| draw(&e))?;
            for (i, s) in self.series.iter().enumerate() {
                let colour = COLOURS[i % COLOURS.len()];
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .collect();
                if pts.len() <= MAX_MARKED_POINTS {
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                        .map_err(|e| draw(&e))?;
                }
                chart
                    .draw_series(LineSeries::new(pts, colour.stroke_width(2)))
                    .map_err(|e| draw(&e))?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                    });
            }
            if self.series.len() > 1 {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|e| draw(&e))?;
            }
            root.present().map_err(|e| draw(&e))?;
        }
        Ok(svg)
    }

    /// Writes the SVG to `path`.
    pub fn save_svg(&self, path: &Path) -> Result<()> {
        let svg = self.to_svg()?;
        std::fs::write(path, svg).map_err(|e| Error::io(path, e))
    }

    /// Shows the plot inline in an evcxr Jupyter notebook (evcxr calls this
    /// when a cell's value is a `LinePlot`); an error is shown as text.
    pub fn evcxr_display(&self) {
        match self.to_svg() {
            Ok(s) => super::evcxr_print("image/svg+xml", &s),
            Err(e) => super::evcxr_print("text/plain", &e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_against_pairs_has_a_sorted_curve_per_method() {
        use crate::evaluate::results::RecallStats;
        use crate::model::retrieval::Recall;
        let row = |method: &str, pairs: Option<usize>, tr1: f64| {
            let s = RecallStats::from_runs(&[Recall::from_values([
                tr1,
                0.0,
                0.0,
                tr1 / 2.0,
                0.0,
                0.0,
            ])])
            .unwrap();
            ResultRow::new(method, pairs, &s, "smoke", "scenes", "convnet", "hashed")
        };
        let rows = [
            row("distilled", Some(500), 9.0),
            row("distilled", Some(100), 5.0),
            row("random", Some(100), 1.0),
            row("full", None, 20.0),
        ];
        let p = LinePlot::recall_vs_pairs(&rows, "TR R@1").unwrap();
        assert_eq!(p.series.len(), 2, "no curve for the full data");
        assert_eq!(p.series[0].name, "distilled");
        assert_eq!(p.series[0].points, vec![(100.0, 5.0), (500.0, 9.0)]);
        let ir = LinePlot::recall_vs_pairs(&rows, "IR R@1").unwrap();
        assert_eq!(ir.series[1].points, vec![(100.0, 0.5)]);
        assert!(LinePlot::recall_vs_pairs(&rows, "TR R@2").is_err());
    }

    #[test]
    fn draws_every_series_and_refuses_an_empty_plot() {
        let p = LinePlot::new("loss", "iteration", "value")
            .with_series(
                "a",
                vec![(0.0, 1.0), (1.0, 0.5), (2.0, f64::NAN), (3.0, 0.2)],
            )
            .with_series("b", vec![(0.0, 2.0), (3.0, 1.0)]);
        let svg = p.to_svg().unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let has_text = |t: &str| svg.contains(&format!(">\n{t}\n</text>"));
        assert!(has_text("loss") && has_text("iteration") && has_text("value"));
        // each series: its line and its legend entry, in its own colour
        for colour in ["#1F77B4", "#FF7F0E"] {
            let n = svg
                .matches(&format!("stroke=\"{colour}\" stroke-width=\"2\""))
                .count();
            assert_eq!(n, 2, "{colour}");
        }
        assert!(has_text("a") && has_text("b"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.svg");
        p.save_svg(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), svg);
        assert!(LinePlot::new("empty", "x", "y").to_svg().is_err());
        let flat = LinePlot::new("flat", "x", "y").with_series("c", vec![(1.0, 3.0)]);
        assert!(flat.to_svg().is_ok());
        assert!(LinePlot::new("nan", "x", "y")
            .with_series("d", vec![(f64::NAN, 1.0)])
            .to_svg()
            .is_err());
    }

    #[test]
    fn distillation_curves_follow_the_reports() {
        let report = |i: usize, loss: f64| DistillReport {
            iteration: i,
            expert: 0,
            start_epoch: 0,
            loss,
            loss_image: loss * 0.6,
            loss_text: loss * 0.4,
            lr_image: 0.1 + i as f64 * 0.01,
            lr_text: 0.2,
            grad_norm_images: 1.0,
            grad_norm_texts: 1.0,
            student_loss: 4.0,
            seconds: 1.0,
            grad_scale_images: 1.0,
            grad_scale_texts: 1.0,
            grad_norm_similarity: None,
        };
        let reports: Vec<DistillReport> = (0..5).map(|i| report(i, 2.0 - 0.3 * i as f64)).collect();
        let m = LinePlot::matching_loss(&reports);
        assert_eq!(m.series.len(), 3);
        assert_eq!(m.series[0].points[4], (4.0, 2.0 - 1.2));
        assert!((m.series[1].points[1].1 - 1.7 * 0.6).abs() < 1e-12);
        let a = LinePlot::learning_rates(&reports);
        assert_eq!(a.series[0].points[3], (3.0, 0.13));
        assert!(m.to_svg().is_ok() && a.to_svg().is_ok());
    }

    #[test]
    fn short_series_get_a_dot_per_point_and_long_ones_none() {
        let dots = |n: usize| {
            let points = (0..n).map(|i| (i as f64, (i * i) as f64)).collect();
            let svg = LinePlot::new("t", "x", "y")
                .with_series("s", points)
                .to_svg()
                .unwrap();
            svg.matches("<circle").count()
        };
        assert_eq!(dots(1), 1);
        assert_eq!(dots(5), 5);
        assert_eq!(dots(MAX_MARKED_POINTS + 1), 0);
    }
}
