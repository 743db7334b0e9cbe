//! Streaming uploads (`PUT` with a raw body) over a plain HTTP/1.1 connection.
//!
//! The request announces `Expect: 100-continue` and waits briefly before sending the body,
//! so a refusal decided from the headers alone (a bad key, a file over the server's size
//! limit, a quota) comes back as the server's error before any byte is sent. A refusal that
//! comes later, part way through the body, closes the connection under the client; the
//! response the server wrote before closing is still read and reported, rather than a bare
//! "broken pipe".

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail};

use super::encode;
use super::http::{self, CONNECT_TIMEOUT, Client, IO_TIMEOUT, USER_AGENT};

/// How long to wait for `100 Continue` (or an early refusal) before sending the body anyway.
const CONTINUE_WAIT: Duration = Duration::from_secs(1);
const BUFFER_BYTES: usize = 256 * 1024;
/// Upload responses are small JSON documents; anything past this is cut off.
const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Where a base URL points: what to connect to, the `Host` header, and the path prefix
/// every route is appended to.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub authority: String,
    pub connect: String,
    pub prefix: String,
}

/// Splits `http://host[:port][/prefix]` into a [`Target`].
pub fn parse_base(base: &str) -> anyhow::Result<Target> {
    let (scheme, rest) = base
        .split_once("://")
        .ok_or_else(|| anyhow!("invalid server URL {base}: no scheme"))?;
    if !scheme.eq_ignore_ascii_case("http") {
        bail!("invalid server URL {base}: this client speaks plain http only");
    }
    let (authority, prefix) = match rest.find('/') {
        Some(at) => (&rest[..at], rest[at..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        bail!("invalid server URL {base}: expected http://host[:port]");
    }
    // A port follows the last `:`, unless that colon is inside an IPv6 literal.
    let has_port = match authority.rfind(':') {
        Some(colon) => !authority[colon..].contains(']'),
        None => false,
    };
    let connect = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok(Target {
        authority: authority.to_owned(),
        connect,
        prefix: prefix.to_owned(),
    })
}

/// The request line and headers of an upload.
pub fn request_head(
    method: &str,
    target: &str,
    authority: &str,
    key: &str,
    len: Option<u64>,
) -> String {
    let framing = match len {
        Some(len) => format!("Content-Length: {len}"),
        None => "Transfer-Encoding: chunked".to_owned(),
    };
    format!(
        "{method} {target} HTTP/1.1\r\n\
         Host: {authority}\r\n\
         Authorization: Bearer {key}\r\n\
         User-Agent: {USER_AGENT}\r\n\
         Content-Type: application/octet-stream\r\n\
         {framing}\r\n\
         Expect: 100-continue\r\n\
         Connection: close\r\n\
         \r\n"
    )
}

/// The status line and the headers the client cares about.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub reason: String,
    pub content_length: Option<u64>,
    pub chunked: bool,
}

/// Parses a response head (everything up to, not including, the blank line).
pub fn parse_head(text: &str) -> anyhow::Result<Head> {
    let mut lines = text.split("\r\n").flat_map(|line| line.split('\n'));
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    let (true, Some(status)) = (version.starts_with("HTTP/1."), status) else {
        bail!("the server sent an invalid response: {status_line:?}");
    };
    let reason = parts.next().unwrap_or_default().to_owned();
    let mut head = Head {
        status,
        reason,
        content_length: None,
        chunked: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    Ok(head)
}

fn read_head(reader: &mut impl BufRead) -> anyhow::Result<Head> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            bail!("the server closed the connection without answering");
        }
        if line == "\r\n" || line == "\n" {
            if text.is_empty() {
                // Tolerate a stray blank line before the status line.
                continue;
            }
            return parse_head(&text);
        }
        text.push_str(&line);
        if text.len() > MAX_HEAD_BYTES {
            bail!("the server sent an oversized response head");
        }
    }
}

/// Reads a chunked body (RFC 9112 §7.1), ignoring extensions and trailers.
pub fn read_chunked(reader: &mut impl BufRead, limit: u64) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        let size_text = size_line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, then the final blank line.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let room = limit.saturating_sub(body.len() as u64);
        let mut chunk = Vec::new();
        reader.by_ref().take(size).read_to_end(&mut chunk)?;
        if (chunk.len() as u64) < size {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        chunk.truncate(usize::try_from(room).unwrap_or(usize::MAX));
        body.extend_from_slice(&chunk);
        let mut end = String::new();
        reader.read_line(&mut end)?;
    }
}

/// The body that follows `head`, framed by its length, by chunks, or by the connection
/// closing.
fn read_body(reader: &mut impl BufRead, head: &Head) -> io::Result<String> {
    let body = if head.chunked {
        read_chunked(reader, MAX_RESPONSE_BYTES)?
    } else {
        let limit = head
            .content_length
            .unwrap_or(MAX_RESPONSE_BYTES)
            .min(MAX_RESPONSE_BYTES);
        let mut body = Vec::new();
        reader.take(limit).read_to_end(&mut body)?;
        body
    };
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The final response: 1xx interim responses are skipped.
fn read_response(reader: &mut impl BufRead) -> anyhow::Result<(Head, String)> {
    loop {
        let head = read_head(reader)?;
        if !(100..200).contains(&head.status) {
            let body = read_body(reader, &head)?;
            return Ok((head, body));
        }
    }
}

/// A successful response's body, or the server's error.
fn into_result((head, body): (Head, String)) -> anyhow::Result<String> {
    if (200..300).contains(&head.status) {
        Ok(body)
    } else {
        Err(http::parse_error_body(head.status, &head.reason, &body).into())
    }
}

/// Which side of the body transfer failed.
enum SendError {
    /// Reading the local source.
    Local(io::Error),
    /// Writing to the server.
    Remote(io::Error),
}

fn send_body(stream: &TcpStream, body: &mut impl Read, chunked: bool) -> Result<(), SendError> {
    let mut out = BufWriter::with_capacity(BUFFER_BYTES + 16, stream);
    let mut buf = vec![0u8; BUFFER_BYTES];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SendError::Local(e)),
        };
        let written = if chunked {
            write!(out, "{n:x}\r\n")
                .and_then(|()| out.write_all(&buf[..n]))
                .and_then(|()| out.write_all(b"\r\n"))
        } else {
            out.write_all(&buf[..n])
        };
        written.map_err(SendError::Remote)?;
    }
    if chunked {
        out.write_all(b"0\r\n\r\n").map_err(SendError::Remote)?;
    }
    out.flush().map_err(SendError::Remote)
}

fn connect(address: &str) -> io::Result<TcpStream> {
    let addresses: Vec<SocketAddr> = address.to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name has no addresses");
    for address in addresses {
        match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Sends `body` as the raw body of `PUT route?query` and returns the response body. `len`
/// is announced as `Content-Length` when known (the body must then be exactly that long);
/// otherwise the body is sent chunked. Errors reading `body` come back as I/O errors of
/// their own, so the caller can tell a bad local file from a failed request.
pub fn put(
    client: &Client,
    route: &str,
    query: &[(&str, Option<&str>)],
    len: Option<u64>,
    mut body: impl Read,
) -> anyhow::Result<String> {
    let target = parse_base(client.base())?;
    let stream = connect(&target.connect).map_err(|e| client.connect_error(&e.to_string()))?;
    let io_failed = |e: io::Error| client.request_error(&e.to_string());
    stream.set_nodelay(true).map_err(io_failed)?;
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .map_err(io_failed)?;
    let mut reader = BufReader::new(stream.try_clone().map_err(io_failed)?);

    let head = request_head(
        "PUT",
        &encode::url(&target.prefix, route, query),
        &target.authority,
        client.key(),
        len,
    );
    (&stream).write_all(head.as_bytes()).map_err(io_failed)?;

    // Either the server answers at once (`100 Continue`, or a refusal), or it does not
    // know `Expect` and the body is sent after a short wait.
    stream
        .set_read_timeout(Some(CONTINUE_WAIT))
        .map_err(io_failed)?;
    let answered = match reader.fill_buf() {
        Ok(_) => true,
        Err(e) if is_timeout(&e) => false,
        Err(e) => return Err(io_failed(e)),
    };
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(io_failed)?;
    if answered {
        let head = read_head(&mut reader)?;
        if !(100..200).contains(&head.status) {
            let body = read_body(&mut reader, &head).map_err(io_failed)?;
            return into_result((head, body));
        }
    }

    match send_body(&stream, &mut body, len.is_none()) {
        Ok(()) => {}
        Err(SendError::Local(e)) => return Err(e.into()),
        Err(SendError::Remote(e)) => {
            // The server may have refused part way through and closed: its answer is
            // worth more than the broken pipe it left behind.
            return match read_response(&mut reader) {
                Ok(response) => into_result(response),
                Err(_) => Err(io_failed(e)),
            };
        }
    }
    read_response(&mut reader).and_then(into_result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn base_urls_split_into_connection_and_prefix() {
        assert_eq!(
            parse_base("http://127.0.0.1:8080").unwrap(),
            Target {
                authority: "127.0.0.1:8080".into(),
                connect: "127.0.0.1:8080".into(),
                prefix: String::new(),
            }
        );
        let t = parse_base("http://box.example/agentbox/").unwrap();
        assert_eq!(t.connect, "box.example:80");
        assert_eq!(t.prefix, "/agentbox");
        assert_eq!(parse_base("http://[::1]").unwrap().connect, "[::1]:80");
        assert_eq!(parse_base("http://[::1]:9").unwrap().connect, "[::1]:9");
        assert!(parse_base("https://box.example").is_err());
        assert!(parse_base("http://user:pw@box").is_err());
    }

    #[test]
    fn request_heads_announce_length_or_chunking() {
        let head = request_head("PUT", "/v1/x?path=/a%20b", "h:1", "abx_k", Some(5));
        assert!(head.starts_with("PUT /v1/x?path=/a%20b HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(head.contains("Authorization: Bearer abx_k\r\n"));
        assert!(head.contains("Content-Length: 5\r\n"));
        assert!(head.contains("Expect: 100-continue\r\n"));
        assert!(head.ends_with("\r\n\r\n"));
        let head = request_head("PUT", "/", "h", "k", None);
        assert!(head.contains("Transfer-Encoding: chunked\r\n"));
        assert!(!head.contains("Content-Length"));
    }

    #[test]
    fn response_heads_parse() {
        let head = parse_head(
            "HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\nContent-Length: 89\r\n",
        )
        .unwrap();
        assert_eq!(head.status, 413);
        assert_eq!(head.reason, "Payload Too Large");
        assert_eq!(head.content_length, Some(89));
        assert!(!head.chunked);
        let head = parse_head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n").unwrap();
        assert!(head.chunked);
        assert!(parse_head("SSH-2.0-OpenSSH").is_err());
    }

    #[test]
    fn chunked_bodies_decode() {
        let mut input = &b"4\r\nWiki\r\n6;ext=1\r\npedia \r\n0\r\nTrailer: x\r\n\r\n"[..];
        assert_eq!(read_chunked(&mut input, 100).unwrap(), b"Wikipedia ");
        let mut input = &b"4\r\nWiki\r\n0\r\n\r\n"[..];
        assert_eq!(read_chunked(&mut input, 2).unwrap(), b"Wi");
        let mut input = &b"zz\r\n"[..];
        assert!(read_chunked(&mut input, 100).is_err());
    }

    /// A one-connection server: reads the request head, then runs `answer`.
    fn serve_once(
        answer: impl FnOnce(&mut BufReader<TcpStream>, &mut TcpStream) + Send + 'static,
    ) -> (String, thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
            }
            answer(&mut reader, &mut stream);
        });
        (url, handle)
    }

    fn client(url: &str) -> Client {
        Client::new(&crate::cli::ServerArgs {
            url: url.to_owned(),
            key: Some("abx_test".to_owned()),
        })
        .unwrap()
    }

    #[test]
    fn an_early_refusal_is_reported_without_sending_the_body() {
        let (url, server) = serve_once(|_, stream| {
            let body = r#"{"error":{"code":"too_large","message":"upload too large"}}"#;
            write!(
                stream,
                "HTTP/1.1 413 Payload Too Large\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        });
        let client = client(&url);
        let body = io::repeat(b'x').take(10 << 20);
        let error = put(&client, "/up", &[], Some(10 << 20), body).unwrap_err();
        assert_eq!(error.to_string(), "too_large: upload too large");
        server.join().unwrap();
    }

    #[test]
    fn a_refusal_mid_body_is_reported_instead_of_the_broken_pipe() {
        let (url, server) = serve_once(|reader, stream| {
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
            let mut some = vec![0u8; 64 * 1024];
            reader.read_exact(&mut some).unwrap();
            let body = r#"{"error":{"code":"quota_exceeded","message":"over quota"}}"#;
            write!(
                stream,
                "HTTP/1.1 507 Insufficient Storage\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            stream.shutdown(std::net::Shutdown::Both).unwrap();
        });
        let client = client(&url);
        let body = io::repeat(b'x').take(64 << 20);
        let error = put(&client, "/up", &[], Some(64 << 20), body).unwrap_err();
        assert_eq!(error.to_string(), "quota_exceeded: over quota");
        server.join().unwrap();
    }

    #[test]
    fn chunked_uploads_arrive_whole() {
        let (url, server) = serve_once(|reader, stream| {
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
            let body = read_chunked(reader, u64::MAX).unwrap();
            assert_eq!(body.len(), 700_000);
            let reply = format!(r#"{{"size":{}}}"#, body.len());
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{reply}\r\n0\r\n\r\n",
                reply.len()
            )
            .unwrap();
        });
        let client = client(&url);
        let body = io::repeat(b'x').take(700_000);
        assert_eq!(
            put(&client, "/up", &[], None, body).unwrap(),
            r#"{"size":700000}"#
        );
        server.join().unwrap();
    }

    #[test]
    fn servers_that_ignore_expect_still_get_the_body() {
        let (url, server) = serve_once(|reader, stream| {
            let mut body = vec![0u8; 5];
            reader.read_exact(&mut body).unwrap();
            assert_eq!(body, b"hello");
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                .unwrap();
        });
        let client = client(&url);
        assert_eq!(
            put(&client, "/up", &[], Some(5), &b"hello"[..]).unwrap(),
            "{}"
        );
        server.join().unwrap();
    }
}
