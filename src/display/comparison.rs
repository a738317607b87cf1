//! The poster's first table: distillation against the four coreset
//! baselines (R, H, K, F) of the same number of real pairs, from the rows of
//! `results.json`.

use crate::error::{Error, Result};
use crate::evaluate::results::ResultRow;
use std::path::Path;

/// The columns of the table, in the poster's order.
pub const METHODS: [(&str, &str); 5] = [
    ("random", "R"),
    ("herding", "H"),
    ("kcenter", "K"),
    ("forgetting", "F"),
    ("distilled", "Distilled"),
];

/// One mean ± std cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Mean over seeds.
    pub mean: f64,
    /// Standard deviation over seeds.
    pub std: f64,
}

/// One row: a dataset at one number of pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonRow {
    /// Dataset name.
    pub dataset: String,
    /// Number of training pairs.
    pub pairs: usize,
    /// TR R@k per method of [`METHODS`] (`None`: not evaluated).
    pub tr: [Option<Cell>; 5],
    /// IR R@k per method of [`METHODS`].
    pub ir: [Option<Cell>; 5],
}

/// Recall@k of R, H, K, F and the distilled set for every (dataset, pairs)
/// found in result rows: the layout of the poster's comparison table. Where
/// a method was evaluated more than once at the same size, the last row
/// counts. The best mean of each row and modality is set in bold.
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonTable {
    /// The k of Recall@k shown (1, 5 or 10).
    pub k: usize,
    /// Rows sorted by dataset, then pairs.
    pub rows: Vec<ComparisonRow>,
}

fn pick(r: &ResultRow, k: usize) -> (Cell, Cell) {
    let (tr, trs, ir, irs) = match k {
        1 => (r.tr_r1, r.tr_r1_std, r.ir_r1, r.ir_r1_std),
        5 => (r.tr_r5, r.tr_r5_std, r.ir_r5, r.ir_r5_std),
        _ => (r.tr_r10, r.tr_r10_std, r.ir_r10, r.ir_r10_std),
    };
    (Cell { mean: tr, std: trs }, Cell { mean: ir, std: irs })
}

/// Index of the best mean of a row (none when the row is empty).
fn best(cells: &[Option<Cell>; 5]) -> Option<usize> {
    cells
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.map(|c| (i, c.mean)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

impl ComparisonTable {
    /// The table of Recall@`k` (1, 5 or 10) from result rows; rows of other
    /// methods (such as `full`) are ignored.
    pub fn from_rows(rows: &[ResultRow], k: usize) -> Result<Self> {
        if ![1, 5, 10].contains(&k) {
            return Err(Error::Config(format!("Recall@{k}: choose k = 1, 5 or 10")));
        }
        let mut out: Vec<ComparisonRow> = Vec::new();
        for r in rows {
            let (Some(col), Some(pairs)) =
                (METHODS.iter().position(|(m, _)| *m == r.method), r.pairs)
            else {
                continue;
            };
            let i = match out
                .iter()
                .position(|x| x.dataset == r.dataset && x.pairs == pairs)
            {
                Some(i) => i,
                None => {
                    out.push(ComparisonRow {
                        dataset: r.dataset.clone(),
                        pairs,
                        tr: [None; 5],
                        ir: [None; 5],
                    });
                    out.len() - 1
                }
            };
            let (tr, ir) = pick(r, k);
            out[i].tr[col] = Some(tr);
            out[i].ir[col] = Some(ir);
        }
        out.sort_by(|a, b| a.dataset.cmp(&b.dataset).then(a.pairs.cmp(&b.pairs)));
        Ok(ComparisonTable { k, rows: out })
    }

    /// The table from `dir/results.json`.
    pub fn from_results(dir: &Path, k: usize) -> Result<Self> {
        Self::from_rows(&crate::evaluate::results::read_results(dir)?, k)
    }

    fn cells(&self, cells: &[Option<Cell>; 5], bold: (&str, &str)) -> Vec<String> {
        let b = best(cells);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| match c {
                None => "–".to_string(),
                Some(c) if Some(i) == b => {
                    format!("{}{:.1} ± {:.1}{}", bold.0, c.mean, c.std, bold.1)
                }
                Some(c) => format!("{:.1} ± {:.1}", c.mean, c.std),
            })
            .collect()
    }

    /// As a Markdown table (best of each row and modality in bold).
    pub fn to_markdown(&self) -> String {
        let names: Vec<&str> = METHODS.iter().map(|(_, s)| *s).collect();
        let mut s = format!(
            "| dataset | pairs | {} | {} |\n",
            names
                .iter()
                .map(|n| format!("TR R@{} {n}", self.k))
                .collect::<Vec<_>>()
                .join(" | "),
            names
                .iter()
                .map(|n| format!("IR R@{} {n}", self.k))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        s.push_str(&format!("|{}\n", "---|".repeat(2 + 2 * METHODS.len())));
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                r.dataset,
                r.pairs,
                self.cells(&r.tr, ("**", "**")).join(" | "),
                self.cells(&r.ir, ("**", "**")).join(" | ")
            ));
        }
        s
    }

    /// As an HTML table for notebooks (best of each row and modality in bold).
    pub fn to_html(&self) -> String {
        let esc = super::html_escape;
        let mut s = String::from(
            "<table>\n<thead>\n<tr><th rowspan=\"2\">dataset</th><th rowspan=\"2\">pairs</th>",
        );
        s.push_str(&format!(
            "<th colspan=\"{n}\">TR R@{k}</th><th colspan=\"{n}\">IR R@{k}</th></tr>\n<tr>",
            n = METHODS.len(),
            k = self.k
        ));
        for _ in 0..2 {
            for (_, short) in METHODS {
                s.push_str(&format!("<th>{short}</th>"));
            }
        }
        s.push_str("</tr>\n</thead>\n<tbody>\n");
        for r in &self.rows {
            s.push_str(&format!(
                "<tr><td>{}</td><td>{}</td>",
                esc(&r.dataset),
                r.pairs
            ));
            for c in self
                .cells(&r.tr, ("<b>", "</b>"))
                .into_iter()
                .chain(self.cells(&r.ir, ("<b>", "</b>")))
            {
                s.push_str(&format!("<td>{c}</td>"));
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</tbody>\n</table>\n");
        s
    }
}

impl ComparisonTable {
    /// As a polars DataFrame in the same layout: `dataset`, `pairs`, then
    /// for TR and IR and each method a mean column (`TR R@1 R`, …) and a
    /// std column (`TR R@1 R std`, …); null where a method was not evaluated.
    pub fn to_dataframe(&self) -> Result<polars::prelude::DataFrame> {
        use polars::prelude::{Column, DataFrame};
        let mut cols = vec![
            Column::new(
                "dataset".into(),
                self.rows
                    .iter()
                    .map(|r| r.dataset.clone())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "pairs".into(),
                self.rows.iter().map(|r| r.pairs as u64).collect::<Vec<_>>(),
            ),
        ];
        for (modality, get) in [
            (
                "TR",
                (|r: &ComparisonRow| r.tr) as fn(&ComparisonRow) -> [Option<Cell>; 5],
            ),
            ("IR", |r: &ComparisonRow| r.ir),
        ] {
            for (i, (_, short)) in METHODS.iter().enumerate() {
                let name = format!("{modality} R@{} {short}", self.k);
                let cells: Vec<Option<Cell>> = self.rows.iter().map(|r| get(r)[i]).collect();
                cols.push(Column::new(
                    name.as_str().into(),
                    cells.iter().map(|c| c.map(|c| c.mean)).collect::<Vec<_>>(),
                ));
                cols.push(Column::new(
                    format!("{name} std").as_str().into(),
                    cells.iter().map(|c| c.map(|c| c.std)).collect::<Vec<_>>(),
                ));
            }
        }
        DataFrame::new(self.rows.len(), cols)
            .map_err(|e| Error::Config(format!("comparison table as a DataFrame: {e}")))
    }
}

impl ComparisonTable {
    /// Shows the table inline in an evcxr Jupyter notebook, as HTML.
    pub fn evcxr_display(&self) {
        super::evcxr_print("text/html", &self.to_html());
    }
}

impl std::fmt::Display for ComparisonTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_markdown())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::results::RecallStats;
    use crate::model::retrieval::Recall;

    fn row(method: &str, pairs: Option<usize>, tr1: f64, ir1: f64) -> ResultRow {
        let mean = Recall::from_values([tr1, tr1 + 1.0, tr1 + 2.0, ir1, ir1 + 1.0, ir1 + 2.0]);
        let stats = RecallStats {
            mean,
            std: Recall::from_values([0.5; 6]),
            seeds: 3,
        };
        ResultRow::new(
            method, pairs, &stats, "default", "scenes", "convnet", "hashed",
        )
    }

    #[test]
    fn layout_best_in_bold_and_last_row_wins() {
        let rows = vec![
            row("random", Some(100), 1.3, 1.0),
            row("herding", Some(100), 2.0, 1.5),
            row("kcenter", Some(100), 1.1, 0.9),
            row("forgetting", Some(100), 1.8, 0.8),
            row("distilled", Some(100), 5.0, 1.2),
            row("full", None, 9.6, 4.9),
            row("random", Some(200), 2.5, 2.0),
            // a second evaluation of herding at 100 replaces the first
            row("herding", Some(100), 2.2, 1.6),
        ];
        let t = ComparisonTable::from_rows(&rows, 1).unwrap();
        assert_eq!(t.rows.len(), 2);
        assert_eq!((t.rows[0].pairs, t.rows[1].pairs), (100, 200));
        assert_eq!(t.rows[0].tr[1].unwrap().mean, 2.2);
        assert!(t.rows[1].tr[1].is_none());
        let md = t.to_markdown();
        // TR: distilled best; IR: herding best
        assert!(md.contains("| scenes | 100 | 1.3 ± 0.5 | 2.2 ± 0.5 | 1.1 ± 0.5 | 1.8 ± 0.5 | **5.0 ± 0.5** | 1.0 ± 0.5 | **1.6 ± 0.5** |"), "{md}");
        assert!(md.contains("| scenes | 200 | **2.5 ± 0.5** | – |"), "{md}");
        assert_eq!(md.lines().count(), 4);
        let html = t.to_html();
        assert!(html.contains("<td><b>5.0 ± 0.5</b></td>"));
        assert_eq!(html.matches("<tr>").count(), 4);
        let t5 = ComparisonTable::from_rows(&rows, 5).unwrap();
        assert_eq!(t5.rows[0].tr[4].unwrap().mean, 6.0);
        assert!(ComparisonTable::from_rows(&rows, 3).is_err());
        let df = t.to_dataframe().unwrap();
        assert_eq!(df.shape(), (2, 2 + 2 * 2 * 5));
        let d = df.column("TR R@1 Distilled").unwrap().f64().unwrap();
        assert_eq!(d.get(0), Some(5.0));
        assert_eq!(d.get(1), None);
        let p = df.column("pairs").unwrap().u64().unwrap();
        assert_eq!(p.get(1), Some(200));
    }
}
