//! Transfer progress on stderr: bytes, throughput and time left, shown only when stderr is a
//! terminal and the transfer is big enough to be worth watching.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

/// Transfers smaller than this finish too fast for a bar to help.
pub const MIN_BYTES: u64 = 1024 * 1024;

const TEMPLATE: &str = "{msg} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}";

/// Whether to draw a bar for a transfer of `len` bytes (unknown lengths get none).
pub fn wanted(stderr_is_terminal: bool, len: Option<u64>) -> bool {
    stderr_is_terminal && len.is_some_and(|len| len >= MIN_BYTES)
}

/// A bar for a transfer of `len` bytes labelled `label` (`uploading`, `downloading`), or a
/// hidden one when [`wanted`] says no. The bar clears itself when dropped, so errors and
/// results print on a clean line.
pub fn bar(label: &'static str, len: Option<u64>) -> ProgressBar {
    if !wanted(std::io::stderr().is_terminal(), len) {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr())
        .with_style(style)
        .with_message(label)
        .with_finish(ProgressFinish::AndClear)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_need_a_terminal_and_a_large_known_length() {
        assert!(wanted(true, Some(MIN_BYTES)));
        assert!(wanted(true, Some(200 * MIN_BYTES)));
        assert!(!wanted(true, Some(MIN_BYTES - 1)));
        assert!(!wanted(true, None));
        assert!(!wanted(false, Some(200 * MIN_BYTES)));
    }

    #[test]
    fn the_template_parses() {
        assert!(ProgressStyle::with_template(TEMPLATE).is_ok());
    }
}
