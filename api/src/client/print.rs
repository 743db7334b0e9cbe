//! Writing results to standard output. A reader that goes away early (`| head`) ends the
//! output quietly instead of turning into an error.

use std::io::{self, Write};

use anyhow::Context;

/// Writes `text` to standard output as is.
pub fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing standard output"),
    }
}

/// Writes a JSON body from the server as it came, ending in a newline.
pub fn json_text(text: &str) -> anyhow::Result<()> {
    if text.ends_with('\n') {
        out(text)
    } else {
        out(&format!("{text}\n"))
    }
}
