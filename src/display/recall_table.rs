//! A recall table with one row per labelled result (an ablation's variants,
//! say): TR and IR Recall@1/5/10 as mean ± std, the best mean of each column
//! in bold. Renders as Markdown, HTML (inline in evcxr) or a polars DataFrame.

use crate::error::{Error, Result};
use crate::evaluate::results::RecallStats;
use std::path::Path;

/// Column names, in the order of [`crate::model::retrieval::Recall::values`].
pub const COLUMNS: [&str; 6] = ["TR R@1", "TR R@5", "TR R@10", "IR R@1", "IR R@5", "IR R@10"];

/// Rows of (label, recall statistics), shown with the best mean of each
/// column in bold.
///
/// ```
/// use vl_distill::display::recall_table::RecallTable;
/// use vl_distill::model::retrieval::Recall;
/// use vl_distill::evaluate::results::RecallStats;
/// let r = |v| RecallStats::from_runs(&[Recall::from_values([v; 6])]).unwrap();
/// let table = RecallTable::new("single modality")
///     .with_row("text only", r(2.0))
///     .with_row("both", r(5.0));
/// assert!(table.to_markdown().contains("**5.0 ± 0.0**"));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecallTable {
    /// Caption above the table (may be empty).
    pub title: String,
    /// Header of the label column.
    pub label_header: String,
    /// The rows, in display order.
    pub rows: Vec<(String, RecallStats)>,
}

impl RecallTable {
    /// An empty table with a title; the label column is headed "set".
    pub fn new(title: &str) -> Self {
        RecallTable {
            title: title.into(),
            label_header: "set".into(),
            rows: Vec::new(),
        }
    }

    /// Renames the label column.
    pub fn with_label_header(mut self, header: &str) -> Self {
        self.label_header = header.into();
        self
    }

    /// Appends a row.
    pub fn with_row(mut self, label: &str, stats: RecallStats) -> Self {
        self.push(label, stats);
        self
    }

    /// Appends a row in place.
    pub fn push(&mut self, label: &str, stats: RecallStats) -> &mut Self {
        self.rows.push((label.into(), stats));
        self
    }

    /// Index of the row with the best mean in column `c` (ties: the first).
    fn best(&self, c: usize) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for (i, (_, s)) in self.rows.iter().enumerate() {
            let v = s.mean.values()[c];
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((i, v));
            }
        }
        best.map(|(i, _)| i)
    }

    fn cells(&self, bold: (&str, &str)) -> Vec<Vec<String>> {
        let best: Vec<Option<usize>> = (0..COLUMNS.len()).map(|c| self.best(c)).collect();
        self.rows
            .iter()
            .enumerate()
            .map(|(i, (_, s))| {
                let (m, sd) = (s.mean.values(), s.std.values());
                (0..COLUMNS.len())
                    .map(|c| {
                        let text = format!("{:.1} ± {:.1}", m[c], sd[c]);
                        if best[c] == Some(i) && self.rows.len() > 1 {
                            format!("{}{text}{}", bold.0, bold.1)
                        } else {
                            text
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// As a Markdown table (title as a bold line above it).
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        if !self.title.is_empty() {
            s.push_str(&format!("**{}**\n\n", self.title));
        }
        s.push_str(&format!(
            "| {} | {} |\n|---|{}\n",
            self.label_header,
            COLUMNS.join(" | "),
            "---|".repeat(COLUMNS.len())
        ));
        for ((label, _), cells) in self.rows.iter().zip(self.cells(("**", "**"))) {
            s.push_str(&format!("| {label} | {} |\n", cells.join(" | ")));
        }
        s
    }

    /// As an HTML table with the title as its caption.
    pub fn to_html(&self) -> String {
        let esc = super::html_escape;
        let mut s = String::from("<table>\n");
        if !self.title.is_empty() {
            s.push_str(&format!("<caption>{}</caption>\n", esc(&self.title)));
        }
        s.push_str(&format!(
            "<thead>\n<tr><th rowspan=\"2\">{}</th><th colspan=\"3\">text retrieval</th>\
             <th colspan=\"3\">image retrieval</th></tr>\n<tr>",
            esc(&self.label_header)
        ));
        for k in [1, 5, 10, 1, 5, 10] {
            s.push_str(&format!("<th>R@{k}</th>"));
        }
        s.push_str("</tr>\n</thead>\n<tbody>\n");
        for ((label, _), cells) in self.rows.iter().zip(self.cells(("<b>", "</b>"))) {
            s.push_str(&format!("<tr><td>{}</td>", esc(label)));
            for c in cells {
                s.push_str(&format!("<td>{c}</td>"));
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</tbody>\n</table>\n");
        s
    }

    /// As a polars DataFrame: the label column, then a mean and a `… std`
    /// column per recall (`TR R@1`, `TR R@1 std`, …).
    pub fn to_dataframe(&self) -> Result<polars::prelude::DataFrame> {
        use polars::prelude::{Column, DataFrame};
        let mut cols = vec![Column::new(
            self.label_header.as_str().into(),
            self.rows.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>(),
        )];
        for (c, name) in COLUMNS.iter().enumerate() {
            cols.push(Column::new(
                (*name).into(),
                self.rows
                    .iter()
                    .map(|(_, s)| s.mean.values()[c])
                    .collect::<Vec<_>>(),
            ));
            cols.push(Column::new(
                format!("{name} std").as_str().into(),
                self.rows
                    .iter()
                    .map(|(_, s)| s.std.values()[c])
                    .collect::<Vec<_>>(),
            ));
        }
        DataFrame::new(self.rows.len(), cols)
            .map_err(|e| Error::Config(format!("recall table as a DataFrame: {e}")))
    }

    /// Writes the table as a standalone HTML file.
    pub fn save_html(&self, path: &Path) -> Result<()> {
        let page = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n{}</body></html>\n",
            self.to_html()
        );
        std::fs::write(path, page).map_err(|e| Error::io(path, e))
    }

    /// Shows the table inline in an evcxr Jupyter notebook, as HTML.
    pub fn evcxr_display(&self) {
        super::evcxr_print("text/html", &self.to_html());
    }
}

impl std::fmt::Display for RecallTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_markdown())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::retrieval::Recall;

    fn stats(tr1: f64, ir1: f64) -> RecallStats {
        RecallStats::from_runs(&[
            Recall::from_values([tr1, 10.0, 20.0, ir1, 10.0, 20.0]),
            Recall::from_values([tr1 + 2.0, 10.0, 20.0, ir1, 10.0, 20.0]),
        ])
        .unwrap()
    }

    #[test]
    fn best_of_each_column_is_bold_in_every_rendering() {
        let t = RecallTable::new("init")
            .with_label_header("images × texts")
            .with_row("real × real", stats(4.0, 1.0))
            .with_row("noise × <real>", stats(1.0, 3.0));
        let md = t.to_markdown();
        // TR R@1 best is the first row (5.0 ± 1.0), IR R@1 the second
        assert!(md.contains("| real × real | **5.0 ± 1.0** |"), "{md}");
        assert!(md.contains("**3.0 ± 0.0**"), "{md}");
        let html = t.to_html();
        assert!(html.contains("<td><b>5.0 ± 1.0</b></td>"), "{html}");
        assert!(html.contains("noise × &lt;real&gt;"), "{html}");
        assert!(html.contains("<caption>init</caption>"));
        let df = t.to_dataframe().unwrap();
        assert_eq!(df.shape(), (2, 13));
        let col = df.column("TR R@1 std").unwrap().f64().unwrap();
        assert_eq!(col.get(0), Some(1.0));
    }

    #[test]
    fn a_single_row_is_not_bold() {
        let md = RecallTable::new("")
            .with_row("a", stats(1.0, 1.0))
            .to_markdown();
        assert!(!md.contains("**"), "{md}");
    }
}
