//! A small Lambda Runtime API for running a function's real binary locally, as Lambda runs it: the binary is
//! started with `AWS_LAMBDA_RUNTIME_API` pointing here, asks for the next invocation, and posts its response or
//! error. One instance at a time, like one Lambda execution environment. A timeout kills the process and the next
//! invocation starts a fresh one (Lambda resets the environment too); a process that dies mid-invocation is a
//! crash. Loopback only.
//!
//! Endpoints (Lambda's "Runtime API"): `GET /2018-06-01/runtime/invocation/next`,
//! `POST /2018-06-01/runtime/invocation/{id}/response`, `POST /2018-06-01/runtime/invocation/{id}/error`,
//! `POST /2018-06-01/runtime/init/error`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::esm::{InvokeOutcome, Invoker};
use crate::http::read_request;

/// What the function posted.
#[derive(Debug)]
enum Reply {
    Response(Vec<u8>),
    Error(String),
}

#[derive(Debug)]
struct Invocation {
    id: String,
    body: Vec<u8>,
    deadline_ms: i64,
    reply: oneshot::Sender<Reply>,
}

#[derive(Debug)]
struct Shared {
    next: Mutex<mpsc::Receiver<Invocation>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    function_arn: String,
    /// When the running process was started, until it first asked for an invocation.
    spawned_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// Process start to its first `next` request, of the latest process.
    cold_start: std::sync::Mutex<Option<Duration>>,
}

/// A function binary behind a local Runtime API.
#[derive(Debug)]
pub struct LocalFunction {
    binary: PathBuf,
    env: Vec<(String, String)>,
    timeout: Duration,
    address: String,
    queue: mpsc::Sender<Invocation>,
    child: Mutex<Option<Child>>,
    counter: AtomicU64,
    name: String,
    shared: Arc<Shared>,
    metrics: Arc<std::sync::Mutex<BTreeMap<String, u64>>>,
    printed: Arc<std::sync::Mutex<Vec<Value>>>,
    /// The readers of every process's stdout: [`LocalFunction::stop`] waits until they have read it all.
    readers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The most JSON lines (other than EMF) a local function keeps of what it printed.
const MAX_PRINTED_LINES: usize = 100_000;

/// Why the local function could not start.
#[derive(Debug, thiserror::Error)]
#[error("local function: {0}")]
pub struct RuntimeError(String);

impl LocalFunction {
    /// Serves the Runtime API on a free loopback port for the binary at `binary`, run with `env` (on top of this
    /// process's environment) and stopped after `timeout` per invocation.
    pub async fn start(
        name: &str,
        binary: PathBuf,
        env: Vec<(String, String)>,
        timeout: Duration,
    ) -> Result<Arc<Self>, RuntimeError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| RuntimeError(format!("bind: {e}")))?;
        let address = listener
            .local_addr()
            .map_err(|e| RuntimeError(e.to_string()))?
            .to_string();
        let (tx, rx) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            next: Mutex::new(rx),
            waiting: Mutex::new(HashMap::new()),
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
            spawned_at: std::sync::Mutex::new(None),
            cold_start: std::sync::Mutex::new(None),
        });
        let served = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, served.clone()));
            }
        });
        Ok(Arc::new(Self {
            binary,
            env,
            timeout,
            address,
            queue: tx,
            child: Mutex::new(None),
            counter: AtomicU64::new(0),
            name: name.to_owned(),
            shared,
            metrics: Arc::new(std::sync::Mutex::new(BTreeMap::new())),
            printed: Arc::new(std::sync::Mutex::new(Vec::new())),
            readers: std::sync::Mutex::new(Vec::new()),
        }))
    }

    fn spawn(&self) -> Result<Child, RuntimeError> {
        let mut cmd = Command::new(&self.binary);
        cmd.env("AWS_LAMBDA_RUNTIME_API", &self.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", self.name),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Ok(mut at) = self.shared.spawned_at.lock() {
            *at = Some(std::time::Instant::now());
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| RuntimeError(format!("cannot start {}: {e}", self.binary.display())))?;
        // The function's stdout carries its EMF lines (one per invocation): their counters add up here. Its
        // other JSON lines (a trigger's spilled events, JSON logs) are kept, up to MAX_PRINTED_LINES.
        if let Some(stdout) = child.stdout.take() {
            let metrics = self.metrics.clone();
            let printed = self.printed.clone();
            let reader = tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if add_emf(&metrics, &line) {
                        continue;
                    }
                    if let Ok(doc @ Value::Object(_)) = serde_json::from_str::<Value>(&line)
                        && let Ok(mut kept) = printed.lock()
                        && kept.len() < MAX_PRINTED_LINES
                    {
                        kept.push(doc);
                    }
                }
            });
            if let Ok(mut readers) = self.readers.lock() {
                readers.retain(|r| !r.is_finished());
                readers.push(reader);
            }
        }
        Ok(child)
    }

    /// The totals of every EMF metric the function has printed so far.
    pub fn metrics(&self) -> BTreeMap<String, u64> {
        self.metrics.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// The JSON lines other than EMF that the function's processes have printed so far, in order.
    pub fn printed(&self) -> Vec<Value> {
        self.printed.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// The running process's id, if one is running.
    pub async fn pid(&self) -> Option<u32> {
        self.child.lock().await.as_ref().and_then(Child::id)
    }

    /// The latest process's cold start: from its start to its first request for an invocation.
    pub fn cold_start(&self) -> Option<Duration> {
        self.shared.cold_start.lock().ok().and_then(|c| *c)
    }

    /// Starts the process now, if none is running, so that it can be measured before its first invocation.
    pub async fn warm(&self) -> Result<(), RuntimeError> {
        let mut slot = self.child.lock().await;
        if slot.is_none() {
            *slot = Some(self.spawn()?);
        }
        Ok(())
    }

    /// Stops the running instance, if any, then waits until everything its processes printed has been read: after
    /// it, [`LocalFunction::metrics`] and [`LocalFunction::printed`] hold every line, however slow the readers were.
    pub async fn stop(&self) {
        if let Some(mut child) = self.child.lock().await.take() {
            let _ = child.kill().await;
        }
        let readers = self
            .readers
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        // Every process is gone (killed here, or on its timeout or crash), so each pipe ends.
        for reader in readers {
            let _ = reader.await;
        }
    }
}

#[async_trait]
impl Invoker for LocalFunction {
    async fn invoke(&self, event: Value) -> InvokeOutcome {
        let mut slot = self.child.lock().await;
        let running = match slot.take() {
            Some(mut c) => c.try_wait().ok().flatten().is_none().then_some(c),
            None => None,
        };
        let mut child = match running {
            Some(c) => c,
            None => match self.spawn() {
                Ok(c) => c,
                Err(e) => return InvokeOutcome::FunctionError(e.to_string()),
            },
        };
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let timeout_ms = i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX / 4);
        let invocation = Invocation {
            id: format!("local-{n:08}"),
            body: serde_json::to_vec(&event).unwrap_or_default(),
            deadline_ms: chrono::Utc::now().timestamp_millis() + timeout_ms,
            reply,
        };
        if self.queue.send(invocation).await.is_err() {
            return InvokeOutcome::FunctionError("the runtime API is gone".into());
        }
        let outcome = tokio::select! {
            answer = answer => match answer {
                Ok(Reply::Response(body)) => InvokeOutcome::Response(body),
                Ok(Reply::Error(e)) => InvokeOutcome::FunctionError(e),
                Err(_) => InvokeOutcome::Crash,
            },
            _ = child.wait() => InvokeOutcome::Crash,
            () = tokio::time::sleep(self.timeout) => InvokeOutcome::Timeout,
        };
        match outcome {
            InvokeOutcome::Response(_) | InvokeOutcome::FunctionError(_) => *slot = Some(child),
            // Lambda resets the environment after a timeout; a crashed process is gone.
            _ => {
                let _ = child.kill().await;
                // An invocation the dead process never took must not reach the next one; one it took is gone.
                while self.shared.next.lock().await.try_recv().is_ok() {}
                self.shared.waiting.lock().await.clear();
            }
        }
        outcome
    }
}

/// Adds an EMF line's declared metrics to `totals` and says whether it was one; any other line is left alone.
fn add_emf(totals: &std::sync::Mutex<BTreeMap<String, u64>>, line: &str) -> bool {
    if !line.contains("\"_aws\"") {
        return false;
    }
    let Ok(doc) = serde_json::from_str::<Value>(line) else {
        return false;
    };
    let Some(directives) = doc["_aws"]["CloudWatchMetrics"].as_array() else {
        return false;
    };
    let Ok(mut totals) = totals.lock() else {
        return true;
    };
    for metric in directives
        .iter()
        .filter_map(|d| d["Metrics"].as_array())
        .flatten()
    {
        if let Some(name) = metric["Name"].as_str() {
            *totals.entry(name.to_owned()).or_default() += doc[name].as_u64().unwrap_or(0);
        }
    }
    true
}

/// One connection from the runtime client (keep-alive: several requests).
async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let Some((method, path, body)) = read_request(&mut reader).await else {
            return;
        };
        // The invocation handed out on this request, should the process be gone before it gets it.
        let mut handed_out = None;
        let (status, headers, payload): (&str, Vec<(String, String)>, Vec<u8>) =
            match (method.as_str(), path.as_str()) {
                ("GET", "/2018-06-01/runtime/invocation/next") => {
                    if let (Ok(mut at), Ok(mut cold)) =
                        (shared.spawned_at.lock(), shared.cold_start.lock())
                        && let Some(started) = at.take()
                    {
                        *cold = Some(started.elapsed());
                    }
                    let next = shared.next.lock().await.recv().await;
                    let Some(inv) = next else { return };
                    handed_out = Some(inv.id.clone());
                    shared
                        .waiting
                        .lock()
                        .await
                        .insert(inv.id.clone(), inv.reply);
                    (
                        "200 OK",
                        vec![
                            ("Lambda-Runtime-Aws-Request-Id".into(), inv.id),
                            (
                                "Lambda-Runtime-Deadline-Ms".into(),
                                inv.deadline_ms.to_string(),
                            ),
                            (
                                "Lambda-Runtime-Invoked-Function-Arn".into(),
                                shared.function_arn.clone(),
                            ),
                            (
                                "Lambda-Runtime-Trace-Id".into(),
                                "Root=1-00000000-000000000000000000000000".into(),
                            ),
                        ],
                        inv.body,
                    )
                }
                ("POST", p) if p.starts_with("/2018-06-01/runtime/invocation/") => {
                    let rest = &p["/2018-06-01/runtime/invocation/".len()..];
                    let (id, kind) = rest.split_once('/').unwrap_or((rest, ""));
                    let reply = match kind {
                        "response" => Some(Reply::Response(body)),
                        "error" => Some(Reply::Error(String::from_utf8_lossy(&body).into_owned())),
                        _ => None,
                    };
                    match (reply, shared.waiting.lock().await.remove(id)) {
                        (Some(reply), Some(tx)) => {
                            let _ = tx.send(reply);
                            ("202 Accepted", Vec::new(), b"{}".to_vec())
                        }
                        _ => ("400 Bad Request", Vec::new(), b"{}".to_vec()),
                    }
                }
                ("POST", "/2018-06-01/runtime/init/error") => {
                    ("202 Accepted", Vec::new(), b"{}".to_vec())
                }
                _ => ("404 Not Found", Vec::new(), b"{}".to_vec()),
            };
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if write.write_all(head.as_bytes()).await.is_err()
            || write.write_all(&payload).await.is_err()
        {
            // A dead process's connection took it: dropping its reply makes the invocation a crash at once
            // (retried), instead of a wait for the timeout.
            if let Some(id) = handed_out {
                shared.waiting.lock().await.remove(&id);
            }
            return;
        }
    }
}

/// Serves Lambda's `Invoke` API (`POST /2015-03-31/functions/{name}/invocations`, request-response) on a free
/// loopback port for `functions` (by name), so that `aws lambda invoke --endpoint-url ...` reaches the local
/// binaries. Returns the endpoint URL. A function error answers 200 with `X-Amz-Function-Error: Unhandled`, as
/// Lambda does; a timeout or crash answers the same with Lambda's error shape; an unknown name answers 404.
/// The request's signature is not checked.
pub async fn serve_invoke_api(
    functions: BTreeMap<String, Arc<LocalFunction>>,
) -> Result<String, RuntimeError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| RuntimeError(format!("bind: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| RuntimeError(e.to_string()))?;
    let functions = Arc::new(functions);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let functions = functions.clone();
            tokio::spawn(async move {
                // One request per connection: the answer closes it.
                let (read, mut write) = stream.into_split();
                let mut reader = BufReader::new(read);
                let Some((method, path, body)) = read_request(&mut reader).await else {
                    return;
                };
                let (status, error, payload) = invoke_api(&functions, &method, &path, &body).await;
                let mut head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\nX-Amz-Executed-Version: $LATEST\r\n",
                    payload.len()
                );
                if error {
                    head.push_str("X-Amz-Function-Error: Unhandled\r\n");
                }
                head.push_str("\r\n");
                let _ = write.write_all(head.as_bytes()).await;
                let _ = write.write_all(&payload).await;
                let _ = write.shutdown().await;
            });
        }
    });
    Ok(format!("http://{address}"))
}

/// One `Invoke` request: (status line, function error, body).
async fn invoke_api(
    functions: &BTreeMap<String, Arc<LocalFunction>>,
    method: &str,
    path: &str,
    body: &[u8],
) -> (&'static str, bool, Vec<u8>) {
    let path = path.split('?').next().unwrap_or(path);
    let name = path
        .strip_prefix("/2015-03-31/functions/")
        .and_then(|rest| rest.strip_suffix("/invocations"))
        // A full ARN names the function after its last colon-separated part.
        .map(|name| name.rsplit(':').next().unwrap_or(name));
    let not_found = |what: String| {
        let doc = serde_json::json!({"Type": "User", "message": what});
        ("404 Not Found", false, doc.to_string().into_bytes())
    };
    let (Some(name), "POST") = (name, method) else {
        return not_found(format!("{method} {path} is not an Invoke request"));
    };
    let Some(function) = functions.get(name) else {
        return not_found(format!("Function not found: {name}"));
    };
    let event: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                let doc = serde_json::json!({"Type": "User", "message": format!("Could not parse request body into json: {e}")});
                return ("400 Bad Request", false, doc.to_string().into_bytes());
            }
        }
    };
    let error = |kind: &str, message: String| {
        let doc = serde_json::json!({"errorType": kind, "errorMessage": message});
        ("200 OK", true, doc.to_string().into_bytes())
    };
    match function.invoke(event).await {
        InvokeOutcome::Response(payload) => ("200 OK", false, payload),
        InvokeOutcome::FunctionError(e) => ("200 OK", true, e.into_bytes()),
        InvokeOutcome::Timeout => error("Sandbox.Timedout", "Task timed out".into()),
        InvokeOutcome::Crash => error("Runtime.ExitError", "the function's process exited".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_lines_add_up_and_other_lines_are_ignored() {
        let totals = std::sync::Mutex::new(BTreeMap::new());
        let line = r#"{"_aws":{"CloudWatchMetrics":[{"Metrics":[{"Name":"RecordsIn"},{"Name":"DeadLettered"}]}]},"RecordsIn":3,"DeadLettered":1}"#;
        assert!(add_emf(&totals, line));
        assert!(add_emf(&totals, line));
        assert!(!add_emf(&totals, "a log line"));
        assert!(!add_emf(&totals, r#"{"level":"INFO"}"#));
        assert!(!add_emf(&totals, r#"{"_aws":{}}"#));
        let totals = totals.into_inner().unwrap_or_default();
        assert_eq!(totals.get("RecordsIn"), Some(&6));
        assert_eq!(totals.get("DeadLettered"), Some(&2));
        assert_eq!(totals.len(), 2);
    }
}
