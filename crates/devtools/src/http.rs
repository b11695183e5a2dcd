//! Just enough HTTP/1.1 for the local tools on loopback (the Runtime API, the Invoke API, the proxy): a request
//! or response head, and a body framed by Content-Length or chunked encoding.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// The first line and the headers of a request or response; `None` at the end of the stream.
pub(crate) async fn read_head<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> Option<(String, Vec<(String, String)>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).await.ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    Some((line.trim_end().to_owned(), headers))
}

/// Reads a body framed by Content-Length or chunked encoding (re-framed as Content-Length).
pub(crate) async fn read_body<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    headers: &[(String, String)],
    to_eof: bool,
) -> Option<Vec<u8>> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).await.ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = get("content-length") {
        body = vec![0; n.parse::<usize>().ok()?];
        reader.read_exact(&mut body).await.ok()?;
    } else if to_eof {
        reader.read_to_end(&mut body).await.ok()?;
    }
    Some(body)
}

/// One request: method, path and body.
pub(crate) async fn read_request<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> Option<(String, String, Vec<u8>)> {
    let (line, headers) = read_head(reader).await?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let body = read_body(reader, &headers, false).await?;
    Some((method, path, body))
}
