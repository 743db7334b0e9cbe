//! The printed report: aligned tables with notes, and number formatting.
//!
//! The first column is left-aligned (it names the row), every other column right-aligned,
//! so figures line up under each other.

use std::fmt;

/// Prints the report's first line: `agentbox <what> benchmark`, marked when it was a quick
/// check.
pub fn print_title(what: &str, quick: bool) {
    let mark = if quick {
        " (--quick: not figures to quote)"
    } else {
        ""
    };
    println!("agentbox {what}benchmark{mark}");
}

/// The machine the figures were taken on: cores and kernel.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, Linux {}", kernel.trim())
}

/// One section of the report.
#[derive(Debug, Clone)]
pub struct Table {
    title: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    pub fn new(title: impl Into<String>, headers: &[&str]) -> Table {
        Table {
            title: title.into(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a row; missing cells are left blank.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Adds a line printed under the table.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max();
        let columns = columns.unwrap_or(0);
        let cell = |row: &[String], i: usize| row.get(i).cloned().unwrap_or_default();
        let mut widths = vec![0; columns];
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, width) in widths.iter_mut().enumerate() {
                *width = (*width).max(cell(row, i).chars().count());
            }
        }
        let line = |row: &[String]| {
            let mut out = String::from("  ");
            for (i, width) in widths.iter().enumerate() {
                let text = cell(row, i);
                let pad = " ".repeat(width - text.chars().count());
                if i == 0 {
                    out.push_str(&text);
                    out.push_str(&pad);
                } else {
                    out.push_str("   ");
                    out.push_str(&pad);
                    out.push_str(&text);
                }
            }
            out.trim_end().to_string()
        };
        writeln!(f, "{}", self.title)?;
        writeln!(f, "{}", line(&self.headers))?;
        let rule = widths.iter().sum::<usize>() + 3 * widths.len().saturating_sub(1);
        writeln!(f, "  {}", "-".repeat(rule))?;
        for row in &self.rows {
            writeln!(f, "{}", line(row))?;
        }
        for note in &self.notes {
            writeln!(f, "  {note}")?;
        }
        Ok(())
    }
}

/// A rate or size with about three significant digits: `1,234`, `56.7`, `0.891`.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".to_string();
    }
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        thousands(value.round() as i64)
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// An integer with thousands separators: `10,000`.
pub fn thousands(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if value < 0 { format!("-{out}") } else { out }
}

/// A ratio such as `0.52x`.
pub fn ratio(numerator: f64, denominator: f64) -> String {
    let value = numerator / denominator;
    if value.is_finite() {
        format!("{value:.2}x")
    } else {
        "n/a".to_string()
    }
}

/// Milliseconds from seconds: `12.3 ms`.
pub fn millis(seconds: f64) -> String {
    format!("{} ms", number(seconds * 1000.0))
}

/// A byte count in MiB: `104.9 MiB`.
pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// A size as a label: `4 KiB`, `1 MiB`, `100 MiB`.
pub fn size_label(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number(12345.4), "12,345");
        assert_eq!(number(123.4), "123");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(1.234), "1.23");
        assert_eq!(number(0.1234), "0.123");
        assert_eq!(number(f64::NAN), "n/a");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(-999), "-999");
        assert_eq!(ratio(1.0, 4.0), "0.25x");
        assert_eq!(ratio(1.0, 0.0), "n/a");
        assert_eq!(millis(0.0123), "12.3 ms");
        assert_eq!(size_label(4096), "4 KiB");
        assert_eq!(size_label(100 << 20), "100 MiB");
    }

    #[test]
    fn columns_line_up() {
        let mut table = Table::new("T", &["name", "value"]);
        table.row(vec!["a".into(), "1".into()]);
        table.row(vec!["longer".into(), "1,000".into()]);
        table.note("n");
        let text = table.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "T");
        assert_eq!(lines[1], "  name     value");
        assert_eq!(lines[2], "  --------------");
        assert_eq!(lines[3], "  a            1");
        assert_eq!(lines[4], "  longer   1,000");
        assert_eq!(lines[5], "  n");
    }
}
