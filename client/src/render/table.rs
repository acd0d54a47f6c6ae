//! Plain aligned tables (`kubectl get` style) and "Label:  value" blocks.

use super::style::paint;
use crate::vocab::{Tone, Vocabulary};

/// One table cell: its text and the tone it is shown in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    text: String,
    tone: Tone,
}

impl Cell {
    /// A cell on one line: control characters (newlines in an error message, escape
    /// codes in task output) become spaces so they cannot break the layout.
    pub fn new(text: impl AsRef<str>) -> Cell {
        let text = text
            .as_ref()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Cell {
            text,
            tone: Tone::Plain,
        }
    }

    pub fn colored(text: impl AsRef<str>, tone: Tone) -> Cell {
        Cell {
            tone,
            ..Cell::new(text)
        }
    }

    /// The word of a value of the contract's enums, in its tone.
    pub fn word(value: impl Vocabulary) -> Cell {
        Cell::colored(value.label(), value.tone())
    }

    fn width(&self) -> usize {
        self.text.chars().count()
    }
}

impl<T: AsRef<str>> From<T> for Cell {
    fn from(text: T) -> Cell {
        Cell::new(text)
    }
}

/// Rows under upper-case headers, columns two spaces apart, the last column unpadded.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<Cell>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new<const N: usize>(headers: [&str; N]) -> Table {
        Table {
            headers: headers.iter().map(Cell::new).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: impl IntoIterator<Item = Cell>) {
        self.rows.push(cells.into_iter().collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each ending in a newline.
    pub fn render(&self, color: bool) -> String {
        let columns = std::iter::once(&self.headers)
            .chain(&self.rows)
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.width());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                // Padding goes outside the colour codes, which have no width.
                line.push_str(&paint(&cell.text, cell.tone, color));
                if i + 1 < row.len() {
                    line.extend(std::iter::repeat_n(' ', widths[i] - cell.width()));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// "Label:  value" lines with the values aligned, for one object's details.
pub fn fields(rows: &[(&str, String)]) -> String {
    let width = rows
        .iter()
        .map(|(label, _)| label.chars().count() + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (label, value) in rows {
        let label = format!("{label}:");
        out.push_str(format!("{label:<width$}  {value}").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns_without_trailing_spaces() {
        let mut t = Table::new(["ID", "STATUS", "ERROR"]);
        t.row([
            "a".into(),
            Cell::colored("succeeded", Tone::Good),
            "".into(),
        ]);
        t.row(["long_id".into(), "failed".into(), "exit 1\nboom".into()]);
        let want = "\
ID       STATUS     ERROR
a        succeeded
long_id  failed     exit 1 boom
";
        assert_eq!(t.render(false), want);
    }

    #[test]
    fn colour_does_not_shift_columns() {
        let mut t = Table::new(["S", "X"]);
        t.row([Cell::colored("ok", Tone::Good), "1".into()]);
        t.row(["failed".into(), "2".into()]);
        assert_eq!(
            t.render(true),
            "S       X\n\x1b[32mok\x1b[0m      1\nfailed  2\n"
        );
    }

    #[test]
    fn fields_align_values() {
        let got = fields(&[("Job", "a".into()), ("Duration", "1.2s".into())]);
        assert_eq!(got, "Job:       a\nDuration:  1.2s\n");
    }
}
