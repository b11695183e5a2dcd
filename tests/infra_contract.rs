//! The deployment contract: what the functions need at run time, checked against infra/template.yaml. The
//! required variables come from each function's code (`REQUIRED_ENV`), so the list is never typed twice.

#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

use serde_yaml_ng::Value;

/// Each function binary and the variables its `Config::from_env` requires.
const REQUIRED: &[(&str, &[&str])] = &[("sync-processor", sync_processor::config::REQUIRED_ENV)];

fn template() -> Value {
    let path = e2e::root().join("infra/template.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A value without its CloudFormation short-form tag (`!Ref x` -> `x`).
fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => &t.value,
        other => other,
    }
}

fn resources_of_type<'a>(t: &'a Value, kind: &str) -> Vec<(String, &'a Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(name, r)| (name.as_str().unwrap().to_owned(), r))
        .collect()
}

fn function_for_binary<'a>(t: &'a Value, binary: &str) -> &'a Value {
    let found: Vec<_> = resources_of_type(t, "AWS::Serverless::Function")
        .into_iter()
        .filter(|(_, f)| f["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(binary))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one function builds binary {binary}"
    );
    found[0].1
}

#[test]
fn every_kinesis_event_source_reports_batch_item_failures_and_has_an_on_failure_destination() {
    let t = template();
    let mut sources = 0;
    for (name, function) in resources_of_type(&t, "AWS::Serverless::Function") {
        let Some(events) = function["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (event, e) in events
            .iter()
            .filter(|(_, e)| e["Type"].as_str() == Some("Kinesis"))
        {
            let p = &e["Properties"];
            let at = format!("{name}.{}", event.as_str().unwrap());
            let types: Vec<&str> = p["FunctionResponseTypes"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert!(
                types.contains(&"ReportBatchItemFailures"),
                "{at}: FunctionResponseTypes lacks ReportBatchItemFailures"
            );
            assert!(
                !untag(&p["DestinationConfig"]["OnFailure"]["Destination"]).is_null(),
                "{at}: no OnFailure destination"
            );
            assert_eq!(
                p["BisectBatchOnFunctionError"].as_bool(),
                Some(true),
                "{at}: BisectBatchOnFunctionError"
            );
            assert!(
                !p["MaximumRetryAttempts"].is_null(),
                "{at}: MaximumRetryAttempts must be set (the default retries forever)"
            );
            sources += 1;
        }
    }
    for (name, mapping) in resources_of_type(&t, "AWS::Lambda::EventSourceMapping") {
        let p = &mapping["Properties"];
        let types: Vec<&str> = p["FunctionResponseTypes"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(types.contains(&"ReportBatchItemFailures"), "{name}");
        assert!(
            !untag(&p["DestinationConfig"]["OnFailure"]["Destination"]).is_null(),
            "{name}"
        );
        sources += 1;
    }
    assert!(
        sources >= REQUIRED.len(),
        "found {sources} Kinesis event sources"
    );
}

#[test]
fn every_variable_a_function_requires_is_set_by_the_template() {
    let t = template();
    for (binary, required) in REQUIRED {
        let function = function_for_binary(&t, binary);
        let local = function["Properties"]["Environment"]["Variables"].as_mapping();
        let global = t["Globals"]["Function"]["Environment"]["Variables"].as_mapping();
        for var in *required {
            let set = [local, global]
                .into_iter()
                .flatten()
                .any(|vars| vars.get(*var).is_some_and(|v| !untag(v).is_null()));
            assert!(
                set,
                "{binary}: the template does not set {var}, which Config::from_env requires"
            );
        }
    }
}

#[test]
fn functions_are_arm64_al2023_with_json_logs_built_by_cargo_lambda() {
    let t = template();
    for (binary, _) in REQUIRED {
        let f = function_for_binary(&t, binary);
        assert_eq!(
            f["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{binary}"
        );
        assert_eq!(
            f["Properties"]["Runtime"].as_str(),
            Some("provided.al2023"),
            "{binary}"
        );
        assert_eq!(
            f["Properties"]["Architectures"][0].as_str(),
            Some("arm64"),
            "{binary}"
        );
        assert_eq!(
            f["Properties"]["LoggingConfig"]["LogFormat"].as_str(),
            Some("JSON"),
            "{binary}"
        );
    }
}
