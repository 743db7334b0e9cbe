//! Real CDP clients from npm, Playwright (`connectOverCDP`) and Puppeteer (`connect`), drive
//! browser sessions through agentbox's proxy against pages served on loopback: they click,
//! fill and evaluate, a download lands in the agent's filesystem, and a screenshot through
//! the API decodes at its reported size without disturbing the client's own viewport.

use base64::Engine;
use serde_json::{Value, json};

use crate::browser_support::{
    DOWNLOAD_BODY, Pages, browser_server, create_session, run_cdp_client, session_route,
};

/// Decodes a PNG completely; returns its size.
fn decoded_png_size(image_b64: &str) -> (u32, u32) {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(image_b64)
        .expect("the screenshot is base64");
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("the screenshot is a PNG");
    let mut pixels = vec![0; decoder.output_buffer_size().expect("a sane PNG size")];
    let frame = decoder
        .next_frame(&mut pixels)
        .expect("the screenshot decodes");
    (frame.width, frame.height)
}

fn check_client_result(result: &Value, download: &str) {
    assert_eq!(result["text"], "hello agentbox", "{result}");
    assert_eq!(result["sum"], 42, "{result}");
    // The client's viewport is the one it set, before and after the API's screenshot.
    assert_eq!(result["innerBefore"], json!([640, 360]), "{result}");
    assert_eq!(result["innerAfter"], json!([640, 360]), "{result}");
    let shot = &result["shot"];
    assert_eq!(
        (shot["width"].as_u64(), shot["height"].as_u64()),
        (Some(640), Some(360))
    );
    let image = shot["image"].as_str().expect("a base64 image");
    assert_eq!(decoded_png_size(image), (640, 360));
    assert_eq!(result["suggested"], download, "{result}");
    assert!(result["failure"].is_null(), "{result}");
    assert_eq!(result["file"]["path"], format!("/downloads/{download}"));
    assert_eq!(result["file"]["content"], DOWNLOAD_BODY);
}

fn drive(client_name: &str, connect_over_http: bool) {
    let server = browser_server(&[]);
    let client = server.client();
    let pages = Pages::serve();
    let session = create_session(&client, json!({}));
    let id = session["session_id"].as_str().unwrap().to_string();
    let ws_url = session["ws_url"].as_str().unwrap().to_string();
    assert!(
        ws_url.starts_with(&server.url.replace("http://", "ws://")),
        "{ws_url}"
    );
    let connect_url = if connect_over_http {
        ws_url.replacen("ws://", "http://", 1)
    } else {
        ws_url.clone()
    };
    let download = format!("report-{client_name}.csv");
    let result = run_cdp_client(
        client_name,
        &[
            ("AGENTBOX_URL", &server.url),
            ("AGENTBOX_KEY", &server.key),
            ("SESSION_ID", &id),
            ("CONNECT_URL", &connect_url),
            ("PAGE_URL", &format!("{}/form/{download}", pages.base)),
            ("DOWNLOAD_NAME", &download),
        ],
    );
    check_client_result(&result, &download);

    // The download is a file of the agent's like any other.
    let listing = client.names("/downloads");
    assert!(listing.contains(&download), "{listing:?}");
    assert_eq!(
        client.read(&format!("/downloads/{download}")),
        DOWNLOAD_BODY.as_bytes()
    );
    // The client's messages kept the session active, and it closed its connection.
    let shown = client.req("GET", &session_route(&id, "")).call().ok();
    assert_eq!(shown["status"], "running");
    assert_ne!(shown["last_activity_at"], session["last_activity_at"]);
    client
        .req("DELETE", &session_route(&id, ""))
        .call()
        .expect_2xx();
}

#[test]
fn playwright_drives_a_session_over_http_discovery() {
    drive("playwright", true);
}

#[test]
fn puppeteer_drives_a_session_over_its_ws_url() {
    drive("puppeteer", false);
}
