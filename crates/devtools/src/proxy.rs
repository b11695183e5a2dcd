//! A loopback HTTP/1.1 proxy between a function and the emulator, for the benchmark: it counts the AWS requests
//! by operation and chooses the connection behaviour the function sees.
//!
//! moto closes the connection after every response, so a function pointed at it pays a TCP connect (and the
//! client's connection setup) per request, which AWS's keep-alive endpoints do not cost. Through this proxy with
//! [`ClientConnections::KeepAlive`] the function keeps its connections (the proxy pays moto's connects itself, in
//! its own process); with [`ClientConnections::CloseEach`] it answers `Connection: close` as moto does. The
//! function's CPU can be measured both ways.
//!
//! Operations are named from `X-Amz-Target` (JSON protocols: Kinesis, DynamoDB, SQS, Secrets Manager, cognito-idp)
//! or, for S3's REST protocol, `S3 <method>`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with the function's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientConnections {
    /// Keep them open across requests (as AWS endpoints do).
    KeepAlive,
    /// Close each after its response (as moto does).
    CloseEach,
}

/// Requests seen, by operation.
#[derive(Debug, Default)]
pub struct Counts(Mutex<BTreeMap<String, u64>>);

impl Counts {
    /// The counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Starts counting from zero.
    pub fn reset(&self) {
        if let Ok(mut m) = self.0.lock() {
            m.clear();
        }
    }

    fn add(&self, op: String) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(op).or_default() += 1;
        }
    }
}

/// The proxy: its endpoint and its counts.
#[derive(Debug)]
pub struct CountingProxy {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// Requests seen, by operation.
    pub counts: Arc<Counts>,
    /// Client connections accepted.
    pub connections: Arc<std::sync::atomic::AtomicU64>,
}

/// One request as read: head lines (without the request line) and body.
struct Request {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn operation(&self) -> String {
        if let Some(target) = self.header("x-amz-target") {
            return target.rsplit('.').next().unwrap_or(target).to_owned();
        }
        let method = self.line.split_whitespace().next().unwrap_or("?");
        format!("S3 {method}")
    }
}

async fn read_head<R: tokio::io::AsyncRead + Unpin>(
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
async fn read_body<R: tokio::io::AsyncRead + Unpin>(
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
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = vec![0; n];
        reader.read_exact(&mut body).await.ok()?;
    } else if to_eof {
        reader.read_to_end(&mut body).await.ok()?;
    }
    Some(body)
}

fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "proxy-connection",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

async fn forward(
    upstream: &str,
    req: &Request,
) -> Option<(String, Vec<(String, String)>, Vec<u8>)> {
    let stream = TcpStream::connect(upstream).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (read, mut write) = stream.into_split();
    let mut head = format!("{}\r\n", req.line);
    for (k, v) in &req.headers {
        if !hop_by_hop(k) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        req.body.len()
    ));
    write.write_all(head.as_bytes()).await.ok()?;
    write.write_all(&req.body).await.ok()?;
    let mut reader = BufReader::new(read);
    let (status, headers) = read_head(&mut reader).await?;
    let head_request = req.line.starts_with("HEAD ");
    let body = if head_request {
        Vec::new()
    } else {
        read_body(&mut reader, &headers, true).await?
    };
    Some((status, headers, body))
}

impl CountingProxy {
    /// Proxies to `upstream` (`http://host:port`) on a free loopback port.
    pub async fn start(upstream: &str, mode: ClientConnections) -> std::io::Result<Self> {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let counts = Arc::new(Counts::default());
        let connections = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (c, n) = (counts.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (counts, upstream) = (c.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let (read, mut write) = stream.into_split();
                    let mut reader = BufReader::new(read);
                    while let Some((line, headers)) = read_head(&mut reader).await {
                        let Some(body) = read_body(&mut reader, &headers, false).await else {
                            return;
                        };
                        let req = Request {
                            line,
                            headers,
                            body,
                        };
                        counts.add(req.operation());
                        let (status, headers, body) =
                            forward(&upstream, &req).await.unwrap_or_else(|| {
                                ("HTTP/1.1 502 Bad Gateway".into(), Vec::new(), Vec::new())
                            });
                        let mut head = format!("{status}\r\n");
                        for (k, v) in &headers {
                            if !hop_by_hop(k) {
                                head.push_str(&format!("{k}: {v}\r\n"));
                            }
                        }
                        let close = mode == ClientConnections::CloseEach;
                        // A HEAD answer keeps the length of the body it describes.
                        let length = if req.line.starts_with("HEAD ") {
                            headers
                                .iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                                .map_or_else(|| "0".to_owned(), |(_, v)| v.clone())
                        } else {
                            body.len().to_string()
                        };
                        head.push_str(&format!(
                            "Content-Length: {length}\r\nConnection: {}\r\n\r\n",
                            if close { "close" } else { "keep-alive" }
                        ));
                        if write.write_all(head.as_bytes()).await.is_err()
                            || write.write_all(&body).await.is_err()
                            || close
                        {
                            let _ = write.shutdown().await;
                            return;
                        }
                    }
                });
            }
        });
        Ok(Self {
            endpoint,
            counts,
            connections,
        })
    }
}
