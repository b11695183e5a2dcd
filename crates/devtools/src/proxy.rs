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
//!
//! Random draws follow request arrival, which a busier machine reorders: what a test requires must not depend on
//! them. A plan's [`FaultPlan::schedule`] therefore guarantees each listed fault on the first matching request not
//! taken by an earlier listed one; the draws cover the rest. The proxy numbers every request it reads and logs which
//! one got which fault ([`CountingProxy::fault_log`]), so a run says what happened where. Its [`Tripwire`] holds the
//! next request unanswered and says so, so that a test can stop or kill a function while it certainly waits on one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

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

/// Which faults to inject, each a probability per request (per entry for `entry_failure`), from a seed, and
/// which of them must happen whatever the draws ([`FaultPlan::schedule`]).
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
    /// Faults that certainly happen, in order: each takes the first request that matches it and that no earlier
    /// entry took, whatever the draws would have chosen for it. The draws decide the other requests.
    pub schedule: Vec<Scheduled>,
}

/// What the proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `PutRecords` only: some entries failed with `ProvisionedThroughputExceededException`, the others stored.
    /// Scheduled, it fails the request's first entry; the draws decide the others.
    EntryFailed,
    /// Answered with the service's throttling error, not forwarded.
    Throttle,
    /// Answered with a 500, not forwarded.
    ServerError,
    /// Forwarded (applied), then the connection dropped without an answer.
    LoseResponse,
    /// The connection reset before the request is forwarded.
    Reset,
    /// Delayed by the plan's `latency`, then forwarded.
    Slow,
    /// Forwarded untouched. Scheduled after a fault on the same operation, it makes sure the request after that
    /// fault (for example the SDK's resend of a transaction whose answer was lost) gets through.
    Pass,
    /// Held unanswered by the [`Tripwire`] until the client goes away; not a plan's fault.
    Held,
}

/// A fault a plan guarantees: on the first request of `operation` (`None`: any operation the plan applies to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    /// The operation (`PutRecords`, `TransactWriteItems`, `S3 GET`...); `None` for any in the plan's scope.
    pub operation: Option<String>,
    /// The fault.
    pub fault: Fault,
}

impl Scheduled {
    /// `fault` on the first request of `operation` not taken by an earlier entry.
    pub fn on(operation: &str, fault: Fault) -> Self {
        Self {
            operation: Some(operation.to_owned()),
            fault,
        }
    }

    /// `fault` on the first request in the plan's scope not taken by an earlier entry.
    pub fn any(fault: Fault) -> Self {
        Self {
            operation: None,
            fault,
        }
    }
}

/// One request that got a fault: its number (the proxy counts every request it reads, from 1, in the order it
/// decides on them), its operation, the fault, whether the schedule chose it (else a draw or the tripwire), and
/// for [`Fault::EntryFailed`] the positions of the failed entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedFault {
    /// The request's number.
    pub request: u64,
    /// Its operation.
    pub operation: String,
    /// What it got.
    pub fault: Fault,
    /// Chosen by the plan's schedule, not drawn.
    pub scheduled: bool,
    /// The failed entries' positions ([`Fault::EntryFailed`] only).
    pub entries: Vec<usize>,
}

impl std::fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{} {} {:?}", self.request, self.operation, self.fault)?;
        if !self.entries.is_empty() {
            write!(f, " {:?}", self.entries)?;
        }
        if self.scheduled {
            write!(f, " (scheduled)")?;
        }
        Ok(())
    }
}

/// A fault log as one line per request, in request order.
pub fn describe(log: &[InjectedFault]) -> String {
    log.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The request the tripwire held: its number and operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRequest {
    /// The request's number.
    pub request: u64,
    /// Its operation.
    pub operation: String,
}

/// What the proxy decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Forward it (a `PutRecords` may still get drawn entry failures).
    Forward,
    /// Hold it unanswered (the tripwire).
    Hold,
    /// Inject this fault.
    Inject { fault: Fault, scheduled: bool },
}

/// The plan (if any), the draws, the schedule's progress, the tripwire and the log: one lock, so that request
/// numbers, schedule and draws follow one order.
#[derive(Debug)]
struct Faults {
    plan: Option<FaultPlan>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    rng: fastrand::Rng,
    requests: u64,
    taken: Vec<bool>,
    tripwire: Option<oneshot::Sender<HeldRequest>>,
    log: Vec<InjectedFault>,
}

impl Faults {
    fn new(plan: Option<FaultPlan>) -> Self {
        let (seed, entries) = plan.as_ref().map_or((0, 0), |p| (p.seed, p.schedule.len()));
        Self {
            plan,
            state: Mutex::new(State {
                rng: fastrand::Rng::with_seed(seed),
                requests: 0,
                taken: vec![false; entries],
                tripwire: None,
                log: Vec::new(),
            }),
        }
    }

    fn in_scope(plan: &FaultPlan, op: &str) -> bool {
        plan.only.is_empty() || plan.only.iter().any(|o| o == op)
    }

    /// Numbers the request and decides what it gets: held if the tripwire is armed, else the first untaken
    /// scheduled fault that matches it, else a draw.
    fn decide(&self, op: &str) -> (u64, Decision) {
        let Ok(mut state) = self.state.lock() else {
            return (0, Decision::Forward);
        };
        state.requests += 1;
        let request = state.requests;
        if let Some(tripwire) = state.tripwire.take() {
            state.log.push(InjectedFault {
                request,
                operation: op.to_owned(),
                fault: Fault::Held,
                scheduled: false,
                entries: Vec::new(),
            });
            // The armer may have stopped waiting; the request is held all the same.
            let _ = tripwire.send(HeldRequest {
                request,
                operation: op.to_owned(),
            });
            return (request, Decision::Hold);
        }
        let Some(plan) = &self.plan else {
            return (request, Decision::Forward);
        };
        let scheduled = plan.schedule.iter().enumerate().position(|(i, s)| {
            !state.taken[i]
                && s.operation
                    .as_deref()
                    .map_or_else(|| Self::in_scope(plan, op), |o| o == op)
                // Only a PutRecords has entries to fail.
                && (s.fault != Fault::EntryFailed || op == "PutRecords")
        });
        if let Some(i) = scheduled {
            state.taken[i] = true;
            let fault = plan.schedule[i].fault;
            // Entry failures are logged once their entries are chosen.
            if fault != Fault::EntryFailed {
                state.log.push(InjectedFault {
                    request,
                    operation: op.to_owned(),
                    fault,
                    scheduled: true,
                    entries: Vec::new(),
                });
            }
            return (
                request,
                Decision::Inject {
                    fault,
                    scheduled: true,
                },
            );
        }
        if !Self::in_scope(plan, op) {
            return (request, Decision::Forward);
        }
        let x = state.rng.f64();
        let mut edge = 0.0;
        for (chance, fault) in [
            (plan.throttle, Fault::Throttle),
            (plan.server_error, Fault::ServerError),
            (plan.lost_response, Fault::LoseResponse),
            (plan.reset, Fault::Reset),
            (plan.slow, Fault::Slow),
        ] {
            edge += chance;
            if x < edge {
                state.log.push(InjectedFault {
                    request,
                    operation: op.to_owned(),
                    fault,
                    scheduled: false,
                    entries: Vec::new(),
                });
                return (
                    request,
                    Decision::Inject {
                        fault,
                        scheduled: false,
                    },
                );
            }
        }
        (request, Decision::Forward)
    }

    /// Which of `n` entries fail: the first one if `first` (a scheduled entry failure), the others drawn.
    fn failed_entries(&self, n: usize, first: bool) -> Vec<bool> {
        let chance = self.plan.as_ref().map_or(0.0, |p| p.entry_failure);
        let Ok(mut state) = self.state.lock() else {
            return vec![false; n];
        };
        (0..n)
            .map(|i| {
                let drawn = state.rng.f64() < chance;
                (first && i == 0) || drawn
            })
            .collect()
    }

    fn record(&self, fault: InjectedFault) {
        if let Ok(mut state) = self.state.lock() {
            state.log.push(fault);
        }
    }

    fn log(&self) -> Vec<InjectedFault> {
        let mut log = self.state.lock().map(|s| s.log.clone()).unwrap_or_default();
        log.sort_by_key(|f| f.request);
        log
    }
}

/// Holds the next request the proxy reads, never answers it, and says which it was: a test that arms it before
/// invoking a function can stop or kill the function's process while it certainly waits on that request.
#[derive(Debug, Clone)]
pub struct Tripwire(Arc<Faults>);

impl Tripwire {
    /// Arms the tripwire (again, if it was armed and not yet tripped). The receiver gets the held request.
    pub fn arm(&self) -> oneshot::Receiver<HeldRequest> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut state) = self.0.state.lock() {
            state.tripwire = Some(tx);
        }
        rx
    }

    /// Disarms it if no request tripped it; says whether it was still armed.
    pub fn disarm(&self) -> bool {
        self.0
            .state
            .lock()
            .map(|mut s| s.tripwire.take().is_some())
            .unwrap_or(false)
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

/// A `PutRecords` request with some entries failed (the first one if `first`, the others drawn): only the others
/// are forwarded, and the answer lists every entry in order, the failed ones with their error.
async fn put_records_partly(
    upstream: &str,
    req: &Request,
    faults: &Faults,
    request: u64,
    first: bool,
    injected: &Counts,
) -> Option<Response> {
    let mut doc: serde_json::Value = serde_json::from_slice(&req.body).ok()?;
    let entries = doc.get("Records")?.as_array()?.clone();
    let failed = faults.failed_entries(entries.len(), first);
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
    // Logged once the answer carries the failures (an upstream error above answers instead).
    if n_failed > 0 {
        faults.record(InjectedFault {
            request,
            operation: "PutRecords".to_owned(),
            fault: Fault::EntryFailed,
            scheduled: first,
            entries: (0..failed.len()).filter(|&i| failed[i]).collect(),
        });
    }
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
    faults: Arc<Faults>,
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

    /// Every fault injected so far (and the request the tripwire held), in request order.
    pub fn fault_log(&self) -> Vec<InjectedFault> {
        self.faults.log()
    }

    /// The proxy's tripwire.
    pub fn tripwire(&self) -> Tripwire {
        Tripwire(self.faults.clone())
    }

    /// Like [`CountingProxy::start`], injecting the faults of `plan`.
    pub async fn with_faults(
        upstream: &str,
        mode: ClientConnections,
        plan: Option<FaultPlan>,
    ) -> std::io::Result<Self> {
        let faults = Arc::new(Faults::new(plan));
        let injected = Arc::new(Counts::default());
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let counts = Arc::new(Counts::default());
        let connections = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (c, n, inj, f) = (
            counts.clone(),
            connections.clone(),
            injected.clone(),
            faults.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (counts, upstream, faults, injected) =
                    (c.clone(), upstream.clone(), f.clone(), inj.clone());
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
                        let (request, decision) = faults.decide(&op);
                        let fault = match decision {
                            Decision::Hold => {
                                // Never answered: the client waits until it gives up or its process is gone.
                                let mut sink = [0u8; 1024];
                                while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
                                return;
                            }
                            Decision::Forward => None,
                            Decision::Inject { fault, .. } => Some(fault),
                        };
                        if let Some(fault) = fault
                            && !matches!(fault, Fault::Pass | Fault::EntryFailed)
                        {
                            injected.add(format!("{op} {fault:?}"));
                        }
                        let answer = match fault {
                            Some(Fault::Reset) => return,
                            Some(Fault::Throttle) => Some(error_response(&req, &op, true)),
                            Some(Fault::ServerError) => Some(error_response(&req, &op, false)),
                            Some(Fault::LoseResponse) => {
                                let _ = forward(&upstream, &req).await;
                                return;
                            }
                            _ => {
                                if fault == Some(Fault::Slow)
                                    && let Some(plan) = &faults.plan
                                {
                                    tokio::time::sleep(plan.latency).await;
                                }
                                // Entry failures are only ever scheduled at the request level.
                                let first = fault == Some(Fault::EntryFailed);
                                let entry_failures =
                                    faults.plan.as_ref().is_some_and(|p| p.entry_failure > 0.0);
                                // A scheduled pass goes through untouched, entries included.
                                let pass = fault == Some(Fault::Pass);
                                if op == "PutRecords" && !pass && (first || entry_failures) {
                                    put_records_partly(
                                        &upstream, &req, &faults, request, first, &injected,
                                    )
                                    .await
                                } else {
                                    forward(&upstream, &req).await
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
            faults,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(schedule: Vec<Scheduled>) -> FaultPlan {
        FaultPlan {
            seed: 1,
            schedule,
            ..FaultPlan::default()
        }
    }

    #[test]
    fn scheduled_faults_take_the_first_matching_requests_in_order() {
        let faults = Faults::new(Some(plan(vec![
            Scheduled::on("PutRecords", Fault::EntryFailed),
            Scheduled::any(Fault::Throttle),
            Scheduled::on("TransactWriteItems", Fault::LoseResponse),
            Scheduled::on("TransactWriteItems", Fault::Pass),
            Scheduled::any(Fault::ServerError),
        ])));
        let got: Vec<(u64, Decision)> = [
            "GetItem",
            "TransactWriteItems",
            "PutRecords",
            "TransactWriteItems",
            "GetItem",
            "PutRecords",
            "TransactWriteItems",
        ]
        .iter()
        .map(|op| faults.decide(op))
        .collect();
        let inject = |fault| Decision::Inject {
            fault,
            scheduled: true,
        };
        assert_eq!(
            got,
            vec![
                (1, inject(Fault::Throttle)),
                (2, inject(Fault::LoseResponse)),
                (3, inject(Fault::EntryFailed)),
                (4, inject(Fault::Pass)),
                (5, inject(Fault::ServerError)),
                // Every probability is zero: nothing else happens.
                (6, Decision::Forward),
                (7, Decision::Forward),
            ]
        );
        // A scheduled entry failure fails the first entry.
        assert_eq!(faults.failed_entries(3, true), vec![true, false, false]);
        faults.record(InjectedFault {
            request: 3,
            operation: "PutRecords".into(),
            fault: Fault::EntryFailed,
            scheduled: true,
            entries: vec![0],
        });
        let log: Vec<String> = faults.log().iter().map(ToString::to_string).collect();
        assert_eq!(
            log,
            [
                "#1 GetItem Throttle (scheduled)",
                "#2 TransactWriteItems LoseResponse (scheduled)",
                "#3 PutRecords EntryFailed [0] (scheduled)",
                "#4 TransactWriteItems Pass (scheduled)",
                "#5 GetItem ServerError (scheduled)",
            ]
        );
    }

    #[test]
    fn an_unscheduled_plan_draws_from_its_seed_and_stays_in_its_scope() {
        let draw = || {
            let faults = Faults::new(Some(FaultPlan {
                seed: 7,
                throttle: 0.5,
                only: vec!["PutRecords".into()],
                schedule: vec![Scheduled::any(Fault::ServerError)],
                ..FaultPlan::default()
            }));
            (0..40)
                .map(|i| faults.decide(if i % 2 == 0 { "PutRecords" } else { "GetItem" }))
                .collect::<Vec<_>>()
        };
        let first = draw();
        assert_eq!(first, draw(), "the same seed draws the same faults");
        // "Any" means any operation in the plan's scope: the first PutRecords, not the GetItem after it.
        assert_eq!(
            first[0].1,
            Decision::Inject {
                fault: Fault::ServerError,
                scheduled: true
            }
        );
        assert!(
            first
                .iter()
                .skip(1)
                .step_by(2)
                .all(|d| d.1 == Decision::Forward)
        );
        assert!(first.iter().any(|d| matches!(
            d.1,
            Decision::Inject {
                fault: Fault::Throttle,
                scheduled: false
            }
        )));
    }

    #[test]
    fn the_tripwire_holds_the_next_request_once_without_using_the_schedule() {
        let faults = Arc::new(Faults::new(Some(plan(vec![Scheduled::any(
            Fault::Throttle,
        )]))));
        let wire = Tripwire(faults.clone());
        let mut held = wire.arm();
        assert_eq!(faults.decide("PutRecords"), (1, Decision::Hold));
        assert_eq!(
            held.try_recv().ok(),
            Some(HeldRequest {
                request: 1,
                operation: "PutRecords".into()
            })
        );
        assert_eq!(
            faults.decide("PutRecords"),
            (
                2,
                Decision::Inject {
                    fault: Fault::Throttle,
                    scheduled: true
                }
            )
        );
        let _unused = wire.arm();
        assert!(wire.disarm(), "armed and not tripped");
        assert!(!wire.disarm());
        assert_eq!(faults.decide("PutRecords"), (3, Decision::Forward));
        assert_eq!(
            faults.log().iter().map(|f| f.fault).collect::<Vec<_>>(),
            [Fault::Held, Fault::Throttle]
        );
    }
}
