//! Plain-text tables and `key: value` blocks for people, in the style of
//! `docker network ls`: a header row in capitals, left-aligned columns separated
//! by at least three spaces, no trailing whitespace, no colour.
//!
//! Contract: rendering is pure (it only writes to the given writer) and never
//! panics, whatever the cell contents; width is counted in characters.

use std::io::{self, Write};

/// Spaces between columns.
const GAP: usize = 3;

/// A table: one header row and any number of data rows.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells render empty, extra cells are kept and
    /// widen the table rather than being dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the table has no data rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes the header and the rows.
    pub fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = line.get(i).map(String::as_str).unwrap_or("");
                text.push_str(cell);
                if i + 1 < columns {
                    let pad = width - cell.chars().count() + GAP;
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(out, "{}", text.trim_end())?;
        }
        Ok(())
    }

    /// The rendered table as a string.
    pub fn to_text(&self) -> String {
        let mut buf = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.render(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Writes `key: value` lines with the values aligned one space past the
/// longest key.
pub fn render_fields(fields: &[(&str, String)], out: &mut dyn Write) -> io::Result<()> {
    let width = fields
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (key, value) in fields {
        let pad = width - key.chars().count();
        writeln!(out, "{key}:{} {value}", " ".repeat(pad))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_lines_have_no_trailing_space() {
        let mut t = Table::new(&["NAME", "SUBNET", "PORTS"]);
        t.row(vec!["yard0".into(), "172.30.0.0/16".into(), "3".into()]);
        t.row(vec!["l2".into(), "-".into(), "0".into()]);
        assert_eq!(
            t.to_text(),
            "NAME    SUBNET          PORTS\n\
             yard0   172.30.0.0/16   3\n\
             l2      -               0\n"
        );
    }

    #[test]
    fn empty_last_cells_and_ragged_rows_do_not_panic() {
        let mut t = Table::new(&["A", "B"]);
        t.row(vec!["x".into()]);
        t.row(vec!["y".into(), "".into(), "extra".into()]);
        assert_eq!(t.to_text(), "A   B\nx\ny       extra\n");
        assert_eq!(t.len(), 2);
        assert!(Table::new(&[]).to_text() == "\n");
    }

    #[test]
    fn header_only_when_empty() {
        let t = Table::new(&["NAME", "KIND"]);
        assert!(t.is_empty());
        assert_eq!(t.to_text(), "NAME   KIND\n");
    }

    #[test]
    fn fields_align_values() {
        let mut out = Vec::new();
        render_fields(
            &[("name", "web".into()), ("fdb entries", "2".into())],
            &mut out,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "name:        web\nfdb entries: 2\n"
        );
    }
}
