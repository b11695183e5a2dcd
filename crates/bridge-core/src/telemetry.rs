//! Logs (tracing, JSON when Lambda's log format says so) and CloudWatch embedded-metric-format counts.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The CloudWatch namespace every function's metrics go to.
pub const METRICS_NAMESPACE: &str = "CognitoKinesisBridge";

/// Sets up `tracing` once per cold start. Honours `AWS_LAMBDA_LOG_FORMAT=JSON` and `AWS_LAMBDA_LOG_LEVEL`.
pub fn init_logging() {
    lambda_runtime::tracing::init_default_subscriber();
}

/// Counters for one invocation, printed as one EMF line at its end.
#[derive(Debug, Default)]
pub struct Metrics {
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Fresh counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` to `name`.
    pub fn add(&self, name: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(name).or_default() += n;
        }
    }

    /// Adds one to `name`.
    pub fn incr(&self, name: &'static str) {
        self.add(name, 1);
    }

    /// The count of `name` so far (0 when never counted).
    pub fn get(&self, name: &str) -> u64 {
        self.counts
            .lock()
            .map_or(0, |c| c.get(name).copied().unwrap_or(0))
    }

    /// The counts as an EMF document for `function`, listing every name in `declared` (0 when not counted)
    /// so that dashboards see explicit zeros. `timestamp_ms` is the metric time.
    pub fn emf(
        &self,
        function: &str,
        declared: &[&'static str],
        timestamp_ms: i64,
    ) -> serde_json::Value {
        let mut doc = serde_json::Map::new();
        let metrics: Vec<_> = declared
            .iter()
            .map(|n| serde_json::json!({"Name": n, "Unit": "Count"}))
            .collect();
        doc.insert(
            "_aws".into(),
            serde_json::json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": METRICS_NAMESPACE,
                    "Dimensions": [["Function"]],
                    "Metrics": metrics,
                }],
            }),
        );
        doc.insert("Function".into(), function.into());
        for name in declared {
            doc.insert((*name).into(), self.get(name).into());
        }
        serde_json::Value::Object(doc)
    }

    /// Prints [`Metrics::emf`] as one line on stdout, where Lambda's log agent picks EMF up.
    pub fn flush(&self, function: &str, declared: &[&'static str]) {
        let now = chrono::Utc::now().timestamp_millis();
        println!("{}", self.emf(function, declared, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_lists_declared_metrics_with_zeros() {
        let m = Metrics::new();
        m.incr("RecordsIn");
        m.add("RecordsIn", 2);
        m.add("Ignored", 0);
        let doc = m.emf("sync-processor", &["RecordsIn", "DeadLettered"], 42);
        assert_eq!(doc["RecordsIn"], 3);
        assert_eq!(doc["DeadLettered"], 0);
        assert_eq!(doc["Function"], "sync-processor");
        assert_eq!(doc["_aws"]["Timestamp"], 42);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            METRICS_NAMESPACE
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Name"],
            "DeadLettered"
        );
        assert!(doc.get("Ignored").is_none());
    }
}
