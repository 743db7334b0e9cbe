//! Human-readable output: sizes, times, quoted paths, aligned tables and diff lines.

use std::fmt::Write as _;

/// A byte count in binary units: `512 B`, `1.5 KiB`, `200.0 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Move up a unit before rounding would print `1024.0`.
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// An RFC 3339 UTC time as `2026-12-04 15:38:02`; anything else is shown as it came.
pub fn short_time(rfc3339: &str) -> String {
    let bytes = rfc3339.as_bytes();
    let shaped = bytes.len() >= 19
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't' | b' ')
        && bytes[13] == b':'
        && bytes[16] == b':'
        && rfc3339.is_char_boundary(19);
    if shaped {
        format!("{} {}", &rfc3339[..10], &rfc3339[11..19])
    } else {
        rfc3339.to_owned()
    }
}

/// Permission bits as octal, `0644`.
pub fn mode(mode: u32) -> String {
    format!("{mode:04o}")
}

/// A path or name made safe to print on one line. Names with control characters, `"` or
/// `\` are wrapped in double quotes with C-style escapes (as git does), so every entry stays
/// one line and the output stays unambiguous; all other names are printed as they are.
pub fn quote(name: &str) -> String {
    let needs_quotes = name
        .chars()
        .any(|c| c.is_control() || c == '"' || c == '\\');
    if !needs_quotes {
        return name.to_owned();
    }
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for byte in c.encode_utf8(&mut buf).bytes() {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "\\{byte:03o}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `key  value` lines, the keys padded to the same width.
pub fn key_values(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(key, value)| format!("{key:width$}  {value}\n"))
        .collect()
}

/// How a table column is aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A plain text table: a header row and columns padded to their widest cell, two spaces
/// apart. The last column is never padded, so lines carry no trailing spaces.
#[derive(Debug)]
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        Self {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .map(|(h, _)| h.chars().count())
            .collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.columns.iter().map(|(h, _)| (*h).to_owned()).collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            let last = row.len().min(self.columns.len()).saturating_sub(1);
            for (i, cell) in row.iter().enumerate().take(self.columns.len()) {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i].saturating_sub(cell.chars().count());
                match self.columns[i].1 {
                    Align::Right => {
                        line.push_str(&" ".repeat(pad));
                        line.push_str(cell);
                    }
                    Align::Left => {
                        line.push_str(cell);
                        if i != last {
                            line.push_str(&" ".repeat(pad));
                        }
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Name-status lines for a diff, as git prints them: `A`, `D` or `M`, a tab, the path;
/// ordered by path.
pub fn diff_lines(added: &[String], removed: &[String], modified: &[String]) -> Vec<String> {
    let mut changes: Vec<(&str, char)> = added
        .iter()
        .map(|p| (p.as_str(), 'A'))
        .chain(removed.iter().map(|p| (p.as_str(), 'D')))
        .chain(modified.iter().map(|p| (p.as_str(), 'M')))
        .collect();
    changes.sort_unstable();
    changes
        .into_iter()
        .map(|(path, status)| format!("{status}\t{}", quote(path)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_size(200 * 1024 * 1024), "200.0 MiB");
        assert_eq!(human_size(5 * 1024 * 1024 * 1024 + 1), "5.0 GiB");
        assert_eq!(human_size(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn times_are_shortened_when_they_look_like_rfc3339() {
        assert_eq!(
            short_time("2026-12-04T15:38:02.123456789Z"),
            "2026-12-04 15:38:02"
        );
        assert_eq!(short_time("2026-12-04T15:38:02Z"), "2026-12-04 15:38:02");
        assert_eq!(short_time("yesterday"), "yesterday");
        assert_eq!(short_time("2026-12-04T15:38:0é"), "2026-12-04T15:38:0é");
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(mode(420), "0644");
        assert_eq!(mode(0o755), "0755");
    }

    #[test]
    fn plain_names_are_not_quoted() {
        assert_eq!(quote("/a b/é #&.txt"), "/a b/é #&.txt");
    }

    #[test]
    fn awkward_names_are_quoted_and_escaped() {
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        assert_eq!(quote("tab\there"), "\"tab\\there\"");
        assert_eq!(quote("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(quote("back\\slash"), "\"back\\\\slash\"");
        assert_eq!(quote("bell\u{7}"), "\"bell\\007\"");
        assert_eq!(quote("c1\u{85}"), "\"c1\\302\\205\"");
    }

    #[test]
    fn key_values_line_up() {
        let text = key_values(&[("path", "/a".to_owned()), ("modified", "now".to_owned())]);
        assert_eq!(text, "path      /a\nmodified  now\n");
    }

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let mut table = Table::new(&[
            ("TYPE", Align::Left),
            ("SIZE", Align::Right),
            ("NAME", Align::Left),
        ]);
        assert!(table.is_empty());
        table.push(vec!["file".into(), "1.5 KiB".into(), "a.txt".into()]);
        table.push(vec!["directory".into(), "-".into(), "sub/".into()]);
        assert_eq!(
            table.render(),
            "TYPE          SIZE  NAME\n\
             file       1.5 KiB  a.txt\n\
             directory        -  sub/\n"
        );
    }

    #[test]
    fn diff_lines_are_sorted_by_path_with_a_status_letter() {
        let lines = diff_lines(
            &["/b/new".to_owned(), "/a".to_owned()],
            &["/c".to_owned()],
            &["/b/changed".to_owned(), "/odd\nname".to_owned()],
        );
        assert_eq!(
            lines,
            [
                "A\t/a",
                "M\t/b/changed",
                "A\t/b/new",
                "D\t/c",
                "M\t\"/odd\\nname\""
            ]
        );
        assert!(diff_lines(&[], &[], &[]).is_empty());
    }
}
