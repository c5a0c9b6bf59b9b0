//! Human-readable output: payload previews, sizes, durations and plain-text tables.

use std::fmt::Write as _;
use std::time::Duration;

/// Longest text preview, in characters.
const TEXT_PREVIEW: usize = 120;
/// Longest hex preview, in bytes.
const HEX_PREVIEW: usize = 24;

/// A one-line preview of a payload: quoted text when it is printable UTF-8, otherwise a hex dump
/// of its first bytes. Long payloads are cut and their size given.
///
/// ```
/// use carrier_cli::format::preview;
/// assert_eq!(preview(b"hello"), "\"hello\"");
/// assert_eq!(preview(&[0, 1, 255]), "00 01 ff");
/// ```
pub fn preview(payload: &[u8]) -> String {
    if let Ok(text) = std::str::from_utf8(payload)
        && !text.chars().any(|c| c.is_control() && c != '\t')
    {
        let count = text.chars().count();
        if count <= TEXT_PREVIEW {
            return format!("{text:?}");
        }
        let cut: String = text.chars().take(TEXT_PREVIEW).collect();
        return format!("{cut:?}… ({} bytes)", payload.len());
    }
    let mut s = String::new();
    for (i, b) in payload.iter().take(HEX_PREVIEW).enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{b:02x}");
    }
    if payload.len() > HEX_PREVIEW {
        let _ = write!(s, " … ({} bytes)", payload.len());
    }
    s
}

/// A byte count with a binary unit: `812 B`, `12.4 KiB`, `3.10 MiB`.
pub fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let x = n as f64;
    if x < KIB {
        format!("{n} B")
    } else if x < KIB * KIB {
        format!("{:.1} KiB", x / KIB)
    } else {
        format!("{:.2} MiB", x / (KIB * KIB))
    }
}

/// A duration in milliseconds with one decimal: `9.2 ms`.
pub fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1_000.0)
}

/// A ratio as a percentage with one decimal: `99.3 %`.
pub fn percent(ratio: f64) -> String {
    format!("{:.1} %", ratio * 100.0)
}

/// A plain-text table: the first column (or the first few, see [`Table::left_aligned`])
/// left-aligned, the others right-aligned, columns separated by two spaces.
#[derive(Clone, Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    left: usize,
}

impl Table {
    /// A table with these column titles.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
            left: 1,
        }
    }

    /// Left-aligns the first `n` columns (text) instead of only the first one.
    #[must_use]
    pub fn left_aligned(mut self, n: usize) -> Self {
        self.left = n;
        self
    }

    /// Appends a row (missing cells are empty).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The table in GitHub-flavoured Markdown (text columns left-aligned, the others right).
    pub fn markdown(&self) -> String {
        let escape = |c: &str| c.replace('|', "\\|");
        let columns = self.header.len();
        let mut out = String::new();
        out.push('|');
        for h in &self.header {
            let _ = write!(out, " {} |", escape(h));
        }
        out.push_str("\n|");
        for i in 0..columns {
            out.push_str(if i < self.left { "---|" } else { "---:|" });
        }
        out.push('\n');
        for row in &self.rows {
            out.push('|');
            for i in 0..columns {
                let _ = write!(out, " {} |", escape(row.get(i).map_or("", String::as_str)));
            }
            out.push('\n');
        }
        out
    }

    /// The table as lines of text, each ending with a newline.
    pub fn render(&self) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in self.rows.iter().chain([&self.header]) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in [&self.header].into_iter().chain(&self.rows) {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                let pad = w - cell.chars().count();
                if i > 0 {
                    line.push_str("  ");
                }
                if i < self.left {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                } else {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_text_and_binary() {
        assert_eq!(preview(b"hi there"), "\"hi there\"");
        assert_eq!(preview("héllo".as_bytes()), "\"héllo\"");
        assert_eq!(preview(b"a\nb"), "61 0a 62");
        let long = vec![7u8; 100];
        assert!(preview(&long).ends_with("… (100 bytes)"));
        let text = "x".repeat(500);
        assert!(preview(text.as_bytes()).ends_with("… (500 bytes)"));
        assert_eq!(preview(b""), "\"\"");
    }

    #[test]
    fn sizes_and_times() {
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(12_698), "12.4 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.00 MiB");
        assert_eq!(millis(Duration::from_micros(9_250)), "9.2 ms");
        assert_eq!(percent(0.993), "99.3 %");
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(["name", "n"]);
        t.row(["a→b", "1"]);
        t.row(["long name", "100"]);
        assert_eq!(
            t.render(),
            "name         n\na→b          1\nlong name  100\n"
        );
        let mut t = Table::new(["a", "b", "c"]).left_aligned(2);
        t.row(["xx", "y", "1"]);
        t.row(["x", "yyy", "22"]);
        assert_eq!(t.render(), "a   b     c\nxx  y     1\nx   yyy  22\n");
        let mut t = Table::new(["a", "n"]);
        t.row(["x|y"]);
        assert_eq!(t.markdown(), "| a | n |\n|---|---:|\n| x\\|y |  |\n");
    }
}
