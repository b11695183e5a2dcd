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
//!
//! With a [`FaultPlan`] it is also the fault injector of the chaos runs (faults moto cannot produce), seeded so a
//! run can be repeated: per-entry `PutRecords` failures (it forwards only the entries it lets through and answers
//! with a correct partial-failure response: `FailedRecordCount`, per-entry `ErrorCode` and `ErrorMessage`),
//! throttling errors in each service's own shape (`ProvisionedThroughputExceededException` for Kinesis and
//! DynamoDB, `TooManyRequestsException` for cognito-idp, `SlowDown` for S3, `ThrottlingException` otherwise),
//! 5xx, latency, connection resets, and "applied, but the response lost" (forwarded, then the connection dropped
//! without an answer). A timeout is latency past
//! the client's own timeout.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncWriteExt, BufReader};

use crate::http::{read_body, read_head};
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

/// Which faults to inject, each a probability per request (per entry for `entry_failure`), from a seed.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// The seed of the plan's random choices.
    pub seed: u64,
    /// `PutRecords` entries failed with `ProvisionedThroughputExceededException` (the rest are stored).
    pub entry_failure: f64,
    /// Requests answered with the service's throttling error, not forwarded.
    pub throttle: f64,
    /// Requests answered with a 500, not forwarded.
    pub server_error: f64,
    /// Requests forwarded (applied) whose response is then lost: the connection drops without an answer.
    pub lost_response: f64,
    /// Connections reset before the request is forwarded.
    pub reset: f64,
    /// Requests delayed by `latency` before they are forwarded.
    pub slow: f64,
    /// The delay of a slow request.
    pub latency: std::time::Duration,
    /// Operations the plan applies to (`PutRecords`, `PutItem`, `S3 GET`...); empty: all.
    pub only: Vec<String>,
}

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Forward,
    Throttle,
    ServerError,
    LoseResponse,
    Reset,
    Slow,
}

struct Faults {
    plan: FaultPlan,
    rng: Mutex<fastrand::Rng>,
}

impl Faults {
    fn roll(&self) -> f64 {
        self.rng.lock().map_or(1.0, |mut r| r.f64())
    }

    fn decide(&self, op: &str) -> Action {
        let p = &self.plan;
        if !p.only.is_empty() && !p.only.iter().any(|o| o == op) {
            return Action::Forward;
        }
        let x = self.roll();
        let mut edge = 0.0;
        for (chance, action) in [
            (p.throttle, Action::Throttle),
            (p.server_error, Action::ServerError),
            (p.lost_response, Action::LoseResponse),
            (p.reset, Action::Reset),
            (p.slow, Action::Slow),
        ] {
            edge += chance;
            if x < edge {
                return action;
            }
        }
        Action::Forward
    }
}

type Response = (String, Vec<(String, String)>, Vec<u8>);

/// The code a JSON-protocol service throttles with: Kinesis and DynamoDB
/// `ProvisionedThroughputExceededException`, cognito-idp `TooManyRequestsException`, the others
/// `ThrottlingException`.
fn throttle_code(req: &Request) -> &'static str {
    match req.header("x-amz-target") {
        Some(t) if t.starts_with("Kinesis_") || t.starts_with("DynamoDB_") => {
            "ProvisionedThroughputExceededException"
        }
        Some(t) if t.starts_with("AWSCognitoIdentityProviderService.") => {
            "TooManyRequestsException"
        }
        _ => "ThrottlingException",
    }
}

/// The error answer of a throttle or a 500, in the request's protocol.
fn error_response(req: &Request, op: &str, throttle: bool) -> Response {
    if req.header("x-amz-target").is_none() {
        let (status, code) = if throttle {
            ("HTTP/1.1 503 Slow Down", "SlowDown")
        } else {
            ("HTTP/1.1 500 Internal Server Error", "InternalError")
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the fault proxy</Message><RequestId>fault</RequestId></Error>"
        );
        return (
            status.to_owned(),
            vec![("Content-Type".into(), "application/xml".into())],
            body.into_bytes(),
        );
    }
    let (status, kind) = if throttle {
        ("HTTP/1.1 400 Bad Request", throttle_code(req))
    } else {
        ("HTTP/1.1 500 Internal Server Error", "InternalFailure")
    };
    let body = serde_json::json!({"__type": kind, "message": format!("{op}: injected by the fault proxy")});
    (
        status.to_owned(),
        vec![
            ("Content-Type".into(), "application/x-amz-json-1.1".into()),
            ("x-amzn-ErrorType".into(), kind.to_owned()),
        ],
        body.to_string().into_bytes(),
    )
}

/// A `PutRecords` request with some entries failed: only the others are forwarded, and the answer lists every
/// entry in order, the failed ones with their error.
async fn put_records_partly(
    upstream: &str,
    req: &Request,
    faults: &Faults,
    injected: &Counts,
) -> Option<Response> {
    let mut doc: serde_json::Value = serde_json::from_slice(&req.body).ok()?;
    let entries = doc.get("Records")?.as_array()?.clone();
    let failed: Vec<bool> = entries
        .iter()
        .map(|_| faults.roll() < faults.plan.entry_failure)
        .collect();
    let kept: Vec<serde_json::Value> = entries
        .iter()
        .zip(&failed)
        .filter(|(_, f)| !**f)
        .map(|(e, _)| e.clone())
        .collect();
    let mut results: Vec<serde_json::Value> = Vec::new();
    let mut upstream_failed = 0;
    let mut answer_headers = vec![(
        "Content-Type".to_owned(),
        "application/x-amz-json-1.1".to_owned(),
    )];
    if !kept.is_empty() {
        doc["Records"] = serde_json::Value::Array(kept);
        let forwarded = Request {
            line: req.line.clone(),
            headers: req.headers.clone(),
            body: serde_json::to_vec(&doc).ok()?,
        };
        let (status, headers, body) = forward(upstream, &forwarded).await?;
        if !status.contains(" 200 ") {
            return Some((status, headers, body));
        }
        answer_headers = headers;
        let answer: serde_json::Value = serde_json::from_slice(&body).ok()?;
        upstream_failed = answer["FailedRecordCount"].as_u64().unwrap_or(0);
        results = answer["Records"].as_array()?.clone();
    }
    let mut upstream_results = results.into_iter();
    let mut merged = Vec::with_capacity(entries.len());
    let mut n_failed = 0u64;
    for f in &failed {
        if *f {
            n_failed += 1;
            injected.add("PutRecords entry failed".into());
            merged.push(serde_json::json!({"ErrorCode": "ProvisionedThroughputExceededException",
                "ErrorMessage": "Rate exceeded for shard shardId-000000000000 (injected by the fault proxy)"}));
        } else {
            merged.push(upstream_results.next()?);
        }
    }
    let body =
        serde_json::json!({"FailedRecordCount": upstream_failed + n_failed, "Records": merged});
    Some((
        "HTTP/1.1 200 OK".to_owned(),
        answer_headers,
        body.to_string().into_bytes(),
    ))
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
    /// Faults injected, by kind.
    pub injected: Arc<Counts>,
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
        Self::with_faults(upstream, mode, None).await
    }

    /// Like [`CountingProxy::start`], injecting the faults of `plan`.
    pub async fn with_faults(
        upstream: &str,
        mode: ClientConnections,
        plan: Option<FaultPlan>,
    ) -> std::io::Result<Self> {
        let faults = plan.map(|plan| {
            Arc::new(Faults {
                rng: Mutex::new(fastrand::Rng::with_seed(plan.seed)),
                plan,
            })
        });
        let injected = Arc::new(Counts::default());
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let counts = Arc::new(Counts::default());
        let connections = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (c, n, inj) = (counts.clone(), connections.clone(), injected.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (counts, upstream, faults, injected) =
                    (c.clone(), upstream.clone(), faults.clone(), inj.clone());
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
                        let op = req.operation();
                        counts.add(op.clone());
                        let action = faults.as_ref().map_or(Action::Forward, |f| f.decide(&op));
                        if action != Action::Forward {
                            injected.add(format!("{op} {action:?}"));
                        }
                        let answer = match action {
                            Action::Reset => return,
                            Action::Throttle => Some(error_response(&req, &op, true)),
                            Action::ServerError => Some(error_response(&req, &op, false)),
                            Action::LoseResponse => {
                                let _ = forward(&upstream, &req).await;
                                return;
                            }
                            Action::Slow | Action::Forward => {
                                if action == Action::Slow
                                    && let Some(f) = &faults
                                {
                                    tokio::time::sleep(f.plan.latency).await;
                                }
                                match &faults {
                                    Some(f) if op == "PutRecords" && f.plan.entry_failure > 0.0 => {
                                        put_records_partly(&upstream, &req, f, &injected).await
                                    }
                                    _ => forward(&upstream, &req).await,
                                }
                            }
                        };
                        let (status, headers, body) = answer.unwrap_or_else(|| {
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
            injected,
        })
    }
}
