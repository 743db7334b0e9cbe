//! What a new session may ask for: the page to open and the viewport.

use crate::flags::Viewport;
use crate::{Error, Result};

/// Accepts `http(s)://...` and `about:blank`: never a local file, never something Chromium
/// could read as a flag.
pub(super) fn check_url(url: &str) -> Result<&str> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    let allowed = url == "about:blank" || rest.is_some_and(|r| !r.is_empty());
    if !allowed || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::InvalidRequest(format!(
            "url must be an http:// or https:// URL (or about:blank), got {url:?}"
        )));
    }
    Ok(url)
}

pub(super) fn check_viewport(viewport: Viewport) -> Result<()> {
    let fits = |v: u32| (100..=4096).contains(&v);
    if !fits(viewport.width) || !fits(viewport.height) {
        return Err(Error::InvalidRequest(
            "viewport width and height must be between 100 and 4096".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_web_urls_open() {
        for good in [
            "http://127.0.0.1:8080/x",
            "https://example.com",
            "HTTPS://A.B",
            "about:blank",
        ] {
            assert!(check_url(good).is_ok(), "{good}");
        }
        for bad in [
            "file:///etc/passwd",
            "--remote-debugging-port=9222",
            "javascript:alert(1)",
            "http://",
            "http://a b",
            "chrome://settings",
            "",
        ] {
            assert!(
                matches!(check_url(bad), Err(Error::InvalidRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn viewports_stay_in_bounds() {
        assert!(check_viewport(Viewport::default()).is_ok());
        assert!(
            check_viewport(Viewport {
                width: 99,
                height: 600
            })
            .is_err()
        );
        assert!(
            check_viewport(Viewport {
                width: 800,
                height: 5000
            })
            .is_err()
        );
    }
}
