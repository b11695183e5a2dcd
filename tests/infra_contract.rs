//! The deployment contract: what the functions need at run time, checked against infra/template.yaml. The
//! required variables come from each function's code (`REQUIRED_ENV`), so the list is never typed twice.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use serde_yaml_ng::Value;

/// Each function binary and the variables its `Config::from_env` requires.
const REQUIRED: &[(&str, &[&str])] = devtools::deployment::REQUIRED_ENV;

/// The binaries that consume a Kinesis stream (the trigger forwarder is invoked by Cognito instead).
const KINESIS_CONSUMERS: &[&str] = &[
    "sync-processor",
    "auth-log-forwarder",
    "app-event-forwarder",
    "active-users",
];

/// Cognito waits this long for a user pool trigger, and the limit cannot be changed.
const COGNITO_TRIGGER_TIMEOUT_SECONDS: u64 = 5;

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
        sources >= KINESIS_CONSUMERS.len(),
        "found {sources} Kinesis event sources"
    );
    for binary in KINESIS_CONSUMERS {
        let f = function_for_binary(&t, binary);
        let has_source = f["Properties"]["Events"]
            .as_mapping()
            .is_some_and(|events| {
                events
                    .values()
                    .any(|e| e["Type"].as_str() == Some("Kinesis"))
            });
        assert!(has_source, "{binary}: no Kinesis event source");
    }
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

/// The logical id of the function that builds `binary`.
fn function_id_for_binary(t: &Value, binary: &str) -> String {
    resources_of_type(t, "AWS::Serverless::Function")
        .into_iter()
        .find(|(_, f)| f["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(binary))
        .map(|(name, _)| name)
        .unwrap()
}

/// The logical id a `!GetAtt X.Arn`, `!Ref X` or `Fn::GetAtt: [X, Arn]` value points at.
fn referenced_id(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) => match &t.value {
            Value::String(s) => Some(s.split('.').next().unwrap_or(s).to_owned()),
            Value::Sequence(parts) => parts.first().and_then(Value::as_str).map(str::to_owned),
            _ => None,
        },
        Value::Mapping(m) => m
            .get("Fn::GetAtt")
            .and_then(|g| g[0].as_str())
            .or_else(|| m.get("Ref").and_then(Value::as_str))
            .map(str::to_owned),
        _ => None,
    }
}

#[test]
fn the_trigger_forwarder_answers_within_cognitos_timeout_and_cognito_may_invoke_it() {
    let t = template();
    let f = function_for_binary(&t, "auth-trigger-forwarder");
    let timeout = f["Properties"]["Timeout"]
        .as_u64()
        .or_else(|| t["Globals"]["Function"]["Timeout"].as_u64())
        .expect("the trigger forwarder sets a literal Timeout (the 3 s default is not explicit)");
    assert!(
        timeout <= COGNITO_TRIGGER_TIMEOUT_SECONDS,
        "the trigger forwarder's Timeout is {timeout} s; Cognito waits {COGNITO_TRIGGER_TIMEOUT_SECONDS} s at most"
    );
    let id = function_id_for_binary(&t, "auth-trigger-forwarder");
    let permissions: Vec<_> = resources_of_type(&t, "AWS::Lambda::Permission")
        .into_iter()
        .filter(|(_, p)| {
            let p = &p["Properties"];
            p["Principal"].as_str() == Some("cognito-idp.amazonaws.com")
                && p["Action"].as_str() == Some("lambda:InvokeFunction")
                && referenced_id(&p["FunctionName"]).as_deref() == Some(id.as_str())
        })
        .collect();
    assert!(
        !permissions.is_empty(),
        "no AWS::Lambda::Permission lets cognito-idp.amazonaws.com invoke {id}"
    );
    for (name, p) in permissions {
        assert!(
            !untag(&p["Properties"]["SourceArn"]).is_null(),
            "{name}: a Cognito invoke permission must be scoped to the pool with SourceArn"
        );
    }
}

#[test]
fn every_custom_metric_alarm_watches_a_metric_the_code_emits() {
    let t = template();
    let mut watched = Vec::new();
    for (name, alarm) in resources_of_type(&t, "AWS::CloudWatch::Alarm") {
        let p = &alarm["Properties"];
        if p["Namespace"].as_str() != Some(bridge_core::telemetry::METRICS_NAMESPACE) {
            continue;
        }
        let metric = p["MetricName"].as_str().unwrap();
        let function = p["Dimensions"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|d| d["Name"].as_str() == Some("Function"))
            .and_then(|d| d["Value"].as_str())
            .unwrap_or_else(|| panic!("{name}: no literal Function dimension"));
        let emitted = e2e::EMITTED_METRICS
            .iter()
            .find(|(f, _)| *f == function)
            .unwrap_or_else(|| panic!("{name}: no function is named {function} in metrics"));
        assert!(
            emitted.1.contains(&metric),
            "{name}: {function} does not emit {metric}"
        );
        watched.push((function, metric));
    }
    for expected in [
        (
            auth_analytics::trigger_handler::FUNCTION_NAME,
            auth_analytics::trigger_handler::METRIC_EVENTS_SPILLED,
        ),
        (
            auth_analytics::log_handler::FUNCTION_NAME,
            auth_analytics::log_handler::METRIC_DEAD_LETTERED,
        ),
    ] {
        assert!(watched.contains(&expected), "no alarm on {expected:?}");
    }
}

#[test]
fn the_log_forwarder_may_write_its_dead_letters_and_nothing_else_in_the_bucket() {
    let t = template();
    let f = function_for_binary(&t, auth_analytics::log_handler::FUNCTION_NAME);
    let expected = format!(
        "${{BridgeBucket.Arn}}/{}{}/*",
        bridge_core::dead_letter::DEAD_LETTER_PREFIX,
        auth_analytics::log_handler::FUNCTION_NAME
    );
    let puts: Vec<&Value> = policy_statements(&t, f)
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| actions(s).contains(&"s3:PutObject"))
        .collect();
    assert_eq!(puts.len(), 1, "one s3:PutObject statement");
    assert_eq!(
        untag(&puts[0]["Resource"]).as_str(),
        Some(expected.as_str()),
        "the dead-letter prefix the code writes"
    );
}

/// The statements of the policies on a function's role (the function names its role: `Role: !GetAtt X.Arn`),
/// each with the condition it is under (`!If [cond, statement, !Ref AWS::NoValue]`), or `None` for an
/// unconditional one.
fn policy_statements<'a>(t: &'a Value, function: &Value) -> Vec<(Option<&'a str>, &'a Value)> {
    let role_id =
        referenced_id(&function["Properties"]["Role"]).expect("the function names its role");
    let role = &t["Resources"][role_id.as_str()];
    assert_eq!(role["Type"].as_str(), Some("AWS::IAM::Role"), "{role_id}");
    role["Properties"]["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|p| p["PolicyDocument"]["Statement"].as_sequence().unwrap())
        .map(|s| match s {
            Value::Tagged(t) if t.tag == "!If" => (t.value[0].as_str(), &t.value[1]),
            plain => (None, plain),
        })
        .collect()
}

/// A statement's actions, written as one string or a list.
fn actions(statement: &Value) -> Vec<&str> {
    match &statement["Action"] {
        Value::String(a) => vec![a.as_str()],
        Value::Sequence(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn a_function_given_the_hash_key_secret_may_read_exactly_that_secret() {
    let t = template();
    let mut given = 0;
    for binary in [
        auth_analytics::trigger_handler::FUNCTION_NAME,
        auth_analytics::log_handler::FUNCTION_NAME,
    ] {
        let f = function_for_binary(&t, binary);
        let vars = &f["Properties"]["Environment"]["Variables"];
        assert!(
            vars.get(auth_analytics::config::ENV_ATTRIBUTE_HASH_KEY)
                .is_none(),
            "{binary}: the key itself is never in the function's configuration"
        );
        let Some(var) = vars.get(auth_analytics::config::ENV_ATTRIBUTE_HASH_KEY_SECRET) else {
            continue;
        };
        given += 1;
        // !If [<condition>, <the secret>, !Ref AWS::NoValue]
        let (condition, secret) = (untag(var)[0].as_str(), &untag(var)[1]);
        let statements = policy_statements(&t, f);
        let secrets: Vec<_> = statements
            .iter()
            .filter(|(_, s)| {
                actions(s)
                    .iter()
                    .any(|a| a.starts_with("secretsmanager:") || *a == "*")
            })
            .collect();
        assert_eq!(secrets.len(), 1, "{binary}: one Secrets Manager statement");
        let (granted_under, statement) = secrets[0];
        assert_eq!(
            actions(statement),
            ["secretsmanager:GetSecretValue"],
            "{binary}: read only"
        );
        assert_eq!(
            &statement["Resource"], secret,
            "{binary}: may read the secret its environment names, and only that one"
        );
        assert_eq!(
            *granted_under, condition,
            "{binary}: the permission exists exactly when the variable is set"
        );
    }
    assert_eq!(given, 2, "both forwarders can hash attributes");
}

#[test]
fn every_kinesis_consumer_dead_letters_old_failures_before_the_event_source_drops_them() {
    let t = template();
    let default = |name: &str| t["Parameters"][name]["Default"].as_i64().unwrap();
    let give_up = default("DeadLetterAfterAgeSeconds");
    let max_age = default("MaximumRecordAgeInSeconds");
    assert!(
        give_up > 0 && (max_age == -1 || give_up < max_age),
        "DeadLetterAfterAgeSeconds ({give_up}) must stay below MaximumRecordAgeInSeconds ({max_age})"
    );
    for binary in KINESIS_CONSUMERS {
        let f = function_for_binary(&t, binary);
        let var = &f["Properties"]["Environment"]["Variables"]
            [bridge_core::pipeline::ENV_DEAD_LETTER_AFTER_AGE_SECONDS];
        assert_eq!(
            referenced_id(var).as_deref(),
            Some("DeadLetterAfterAgeSeconds"),
            "{binary}: {} is not set from the parameter",
            bridge_core::pipeline::ENV_DEAD_LETTER_AFTER_AGE_SECONDS
        );
    }
}

#[test]
fn apps_may_only_put_records_on_the_app_event_stream() {
    let t = template();
    let policies = resources_of_type(&t, "AWS::IAM::ManagedPolicy");
    let (_, writer) = policies
        .iter()
        .find(|(name, _)| name == "AppEventWriterPolicy")
        .expect("an AppEventWriterPolicy");
    let statements = writer["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(
        actions(&statements[0]),
        ["kinesis:PutRecord", "kinesis:PutRecords"]
    );
    let resource = serde_yaml_ng::to_string(&statements[0]["Resource"]).unwrap();
    assert!(
        resource.contains("AppEventSourceStream") && !resource.contains('*'),
        "the writer policy names the app event stream only: {resource}"
    );
    // Signed-in roles get it by default; guest roles only through a parameter of their own, on a policy that
    // exists only when that parameter names roles.
    let roles = serde_yaml_ng::to_string(&writer["Properties"]["Roles"]).unwrap();
    assert!(
        roles.contains("IdentityPoolAuthRoleNames") && !roles.contains("Guest"),
        "{roles}"
    );
    let (_, guest) = policies
        .iter()
        .find(|(name, _)| name == "AppEventGuestWriterPolicy")
        .expect("an AppEventGuestWriterPolicy");
    assert_eq!(guest["Condition"].as_str(), Some("HasGuestRoles"));
    assert_eq!(
        guest["Properties"]["PolicyDocument"],
        writer["Properties"]["PolicyDocument"]
    );
    assert_eq!(
        serde_yaml_ng::to_string(&guest["Properties"]["Roles"]).unwrap(),
        "!Ref IdentityPoolGuestRoleNames\n"
    );
    assert_eq!(
        t["Parameters"]["IdentityPoolGuestRoleNames"]["Default"].as_str(),
        Some("")
    );
    // The forwarder refuses KPL aggregates unless the deployer accepts them.
    let f = function_for_binary(&t, app_events::handler::FUNCTION_NAME);
    assert_eq!(
        serde_yaml_ng::to_string(
            &f["Properties"]["Environment"]["Variables"][bridge_core::pipeline::ENV_KPL_AGGREGATES]
        )
        .unwrap(),
        "!Ref AppEventAggregates\n"
    );
    assert_eq!(
        t["Parameters"]["AppEventAggregates"]["Default"].as_str(),
        Some("refuse")
    );
    // And the forwarder writes its own dead-letter prefix only.
    let f = function_for_binary(&t, app_events::handler::FUNCTION_NAME);
    let puts: Vec<String> = policy_statements(&t, f)
        .into_iter()
        .filter(|(_, s)| actions(s).contains(&"s3:PutObject"))
        .map(|(_, s)| serde_yaml_ng::to_string(&s["Resource"]).unwrap())
        .collect();
    assert_eq!(puts.len(), 1);
    assert!(
        puts[0].contains("dead-letter/app-event-forwarder/*"),
        "{}",
        puts[0]
    );
}

#[test]
fn the_trigger_forwarder_has_reserved_concurrency_that_a_consumer_burst_cannot_take() {
    let t = template();
    let f = function_for_binary(&t, auth_analytics::trigger_handler::FUNCTION_NAME);
    let reserved =
        serde_yaml_ng::to_string(&f["Properties"]["ReservedConcurrentExecutions"]).unwrap();
    assert!(
        reserved.contains("TriggerReservedConcurrency"),
        "the trigger's ReservedConcurrentExecutions comes from the parameter: {reserved}"
    );
    let default = t["Parameters"]["TriggerReservedConcurrency"]["Default"]
        .as_i64()
        .unwrap();
    assert!(default > 0, "reserved by default");
}

#[test]
fn the_sync_processor_may_write_its_dead_letters_and_large_payloads_and_nothing_else() {
    let t = template();
    let f = function_for_binary(&t, sync_processor::handler::FUNCTION_NAME);
    let resources: Vec<String> = policy_statements(&t, f)
        .into_iter()
        .filter(|(_, s)| actions(s).contains(&"s3:PutObject"))
        .flat_map(|(_, s)| {
            s["Resource"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|r| serde_yaml_ng::to_string(r).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(resources.len(), 2, "{resources:?}");
    let own = format!(
        "{}{}/*",
        bridge_core::dead_letter::DEAD_LETTER_PREFIX,
        sync_processor::handler::FUNCTION_NAME
    );
    assert!(resources[0].contains(&own), "{}", resources[0]);
    assert!(
        resources[1].contains(bridge_core::producer::LARGE_PAYLOAD_PREFIX),
        "{}",
        resources[1]
    );
}

#[test]
fn alarm_emails_go_through_a_key_cloudwatch_may_use() {
    let t = template();
    let topics = resources_of_type(&t, "AWS::SNS::Topic");
    assert!(!topics.is_empty(), "no alarm topic");
    for (name, topic) in topics {
        let key = &topic["Properties"]["KmsMasterKeyId"];
        assert!(
            !key.as_str().is_some_and(|k| k.starts_with("alias/aws/")),
            "{name}: an AWS managed key cannot let CloudWatch publish: {key:?}"
        );
        let key_id = referenced_id(key).unwrap_or_else(|| panic!("{name}: key {key:?}"));
        let key = &t["Resources"][key_id.as_str()];
        assert_eq!(key["Type"].as_str(), Some("AWS::KMS::Key"), "{key_id}");
        let grants: Vec<&Value> = key["Properties"]["KeyPolicy"]["Statement"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|s| s["Principal"]["Service"].as_str() == Some("cloudwatch.amazonaws.com"))
            .collect();
        assert_eq!(grants.len(), 1, "{key_id}: one grant to CloudWatch");
        let granted = actions(grants[0]);
        for needed in ["kms:Decrypt", "kms:GenerateDataKey*"] {
            assert!(granted.contains(&needed), "{key_id}: lacks {needed}");
        }
        assert!(
            !grants[0]["Condition"]["ArnLike"]["aws:SourceArn"].is_null(),
            "{key_id}: the grant is not limited to this stack's alarms"
        );
    }
}

/// The template as CloudFormation gets it: what SAM's translator (pinned in `.venv-sam`, installed by `make
/// infra-tools`) makes of it, through `scripts/sam-transform`. Roles and event source mappings SAM generates are
/// only visible here.
fn transformed() -> serde_json::Value {
    let root = e2e::root();
    let python = root.join(".venv-sam/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make infra-tools` (`make test` does)",
        python.display()
    );
    let out = std::process::Command::new(&python)
        .current_dir(&root)
        .args(["scripts/sam-transform", "infra/template.yaml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sam-transform failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every statement of an IAM role's or policy's documents, both branches of an `Fn::If` included.
fn iam_statements(resource: &serde_json::Value) -> Vec<&serde_json::Value> {
    let p = &resource["Properties"];
    let documents: Vec<&serde_json::Value> = p["Policies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|policy| &policy["PolicyDocument"])
        .chain(p.get("PolicyDocument"))
        .collect();
    let mut out = Vec::new();
    for doc in documents {
        for s in doc["Statement"].as_array().unwrap() {
            match s.get("Fn::If") {
                Some(branches) => out.extend(
                    branches.as_array().unwrap()[1..]
                        .iter()
                        .filter(|b| b.get("Effect").is_some()),
                ),
                None => out.push(s),
            }
        }
    }
    out
}

fn json_actions(statement: &serde_json::Value) -> Vec<&str> {
    match &statement["Action"] {
        serde_json::Value::String(a) => vec![a.as_str()],
        serde_json::Value::Array(list) => list.iter().filter_map(|a| a.as_str()).collect(),
        _ => Vec::new(),
    }
}

fn json_resources(statement: &serde_json::Value) -> Vec<&serde_json::Value> {
    match &statement["Resource"] {
        serde_json::Value::Array(list) => list.iter().collect(),
        one => vec![one],
    }
}

/// Reading a stream: what Lambda's event source mapping does with the function's role.
const KINESIS_READS: &[&str] = &[
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
    "kinesis:ListStreams",
    "kinesis:SubscribeToShard",
];

#[test]
fn deployed_roles_have_no_managed_policy_and_no_wildcard_resource() {
    let t = transformed();
    let mut checked = 0;
    for (name, r) in t["Resources"].as_object().unwrap() {
        let kind = r["Type"].as_str().unwrap();
        if ![
            "AWS::IAM::Role",
            "AWS::IAM::Policy",
            "AWS::IAM::ManagedPolicy",
        ]
        .contains(&kind)
        {
            continue;
        }
        let managed = &r["Properties"]["ManagedPolicyArns"];
        assert!(
            managed.is_null() || managed.as_array().is_some_and(Vec::is_empty),
            "{name}: managed policies {managed}"
        );
        for s in iam_statements(r) {
            for resource in json_resources(s) {
                assert_ne!(resource.as_str(), Some("*"), "{name}: {s}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} IAM resources");
}

#[test]
fn each_consumer_may_read_only_the_stream_it_consumes() {
    let t = transformed();
    let resources = t["Resources"].as_object().unwrap();
    let mut consumers = 0;
    for (name, f) in resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Lambda::Function")
    {
        let sources: Vec<&serde_json::Value> = resources
            .values()
            .filter(|r| r["Type"] == "AWS::Lambda::EventSourceMapping")
            .filter(|r| r["Properties"]["FunctionName"]["Ref"] == name.as_str())
            .map(|r| &r["Properties"]["EventSourceArn"])
            .collect();
        let role = f["Properties"]["Role"]["Fn::GetAtt"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: its role is not one of the stack's"));
        let reads: Vec<&serde_json::Value> = iam_statements(&resources[role])
            .into_iter()
            .filter(|s| json_actions(s).iter().any(|a| KINESIS_READS.contains(a)))
            .collect();
        if sources.is_empty() {
            assert!(
                reads.is_empty(),
                "{name} consumes no stream but may read one"
            );
            continue;
        }
        assert!(!reads.is_empty(), "{name}: its role cannot read its source");
        for s in reads {
            for resource in json_resources(s) {
                assert!(
                    sources.contains(&resource),
                    "{name} may read {resource}, which it does not consume ({sources:?})"
                );
            }
        }
        consumers += 1;
    }
    assert_eq!(consumers, KINESIS_CONSUMERS.len());
}

#[test]
fn large_payloads_outlive_the_warehouse_rows_that_point_at_them() {
    let t = template();
    let bucket = t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .find(|r| {
            r["Properties"]["LifecycleConfiguration"]["Rules"]
                .as_sequence()
                .is_some_and(|rules| {
                    rules.iter().any(|r| {
                        r["Prefix"].as_str() == Some(bridge_core::producer::LARGE_PAYLOAD_PREFIX)
                    })
                })
        })
        .expect("a lifecycle rule for large payloads");
    let rule = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["Prefix"].as_str() == Some(bridge_core::producer::LARGE_PAYLOAD_PREFIX))
        .unwrap();
    // `!If [WarehouseDelivery, Disabled, Enabled]`: never expired while the warehouse keeps pointer rows.
    let status = &rule["Status"];
    let Value::Tagged(tagged) = status else {
        panic!("the large-payload rule does not depend on the warehouse: {status:?}")
    };
    assert_eq!(tagged.tag, "!If");
    assert_eq!(tagged.value[0].as_str(), Some("WarehouseDelivery"));
    assert_eq!(tagged.value[1].as_str(), Some("Disabled"));
    // The warehouse itself expires no current object (only old versions), but Athena's query results, which are
    // copies, in the workgroup's output location.
    let warehouse =
        &t["Resources"]["WarehouseBucket"]["Properties"]["LifecycleConfiguration"]["Rules"];
    let results = untag(
        &t["Resources"]["WarehouseWorkGroup"]["Properties"]["WorkGroupConfiguration"]
            ["ResultConfiguration"]["OutputLocation"],
    )
    .as_str()
    .unwrap()
    .strip_prefix("s3://${WarehouseBucket}/")
    .expect("query results in the warehouse bucket");
    for r in warehouse.as_sequence().unwrap() {
        assert!(
            r["ExpirationInDays"].is_null() || r["Prefix"].as_str() == Some(results),
            "the warehouse expires rows: {r:?}"
        );
    }
}

#[test]
fn the_dashboard_reads_only_what_the_rollup_publishes_and_shows_each_days_highest_generation() {
    let t = template();
    let dashboards = resources_of_type(&t, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1);
    // `!Sub [body, {Pool: ...}]`: the body with its variables replaced by a placeholder is JSON.
    let body = match &dashboards[0].1["Properties"]["DashboardBody"] {
        Value::Tagged(t) => t.value[0].as_str().unwrap().to_owned(),
        other => panic!("DashboardBody is not a !Sub: {other:?}"),
    };
    let read = e2e::assert_dashboard_reads_only_published(&body, "template");
    assert!(read >= 40, "{read}");
}

/// The rollup's lanes are shards: its mappings never run two batches of one shard at once. Its replay window is
/// derived from the same stream retention and app event age the streams and the app event forwarder use.
#[test]
fn the_rollup_runs_one_batch_per_shard_and_its_replay_window_follows_the_streams() {
    let t = template();
    let f = function_for_binary(&t, active_users::handler::FUNCTION_NAME);
    for event in ["AuthEvents", "AppEvents"] {
        let props = &f["Properties"]["Events"][event]["Properties"];
        assert_eq!(props["ParallelizationFactor"].as_u64(), Some(1), "{event}");
        assert_eq!(
            serde_yaml_ng::to_string(&props["BatchSize"]).unwrap(),
            "!Ref RollupBatchSize\n"
        );
    }
    let vars = &f["Properties"]["Environment"]["Variables"];
    let by_ref = |v: &Value| serde_yaml_ng::to_string(v).unwrap();
    assert_eq!(
        by_ref(&vars[active_users::config::ENV_STREAM_RETENTION_HOURS]),
        "!Ref StreamRetentionHours\n"
    );
    assert_eq!(
        by_ref(&vars[active_users::config::ENV_APP_EVENT_MAX_PAST_DAYS]),
        "!Ref AppEventMaxPastDays\n"
    );
    let app = function_for_binary(&t, app_events::handler::FUNCTION_NAME);
    assert_eq!(
        by_ref(&app["Properties"]["Environment"]["Variables"]["APP_EVENT_MAX_PAST_DAYS"]),
        "!Ref AppEventMaxPastDays\n"
    );
    // The defaults give a replay window the function accepts.
    let default = |name: &str| t["Parameters"][name]["Default"].as_i64().unwrap();
    let minimum = active_users::Config::minimum_replay_days(
        default("StreamRetentionHours"),
        default("AppEventMaxPastDays"),
    );
    assert_eq!(
        minimum, 45,
        "30 days of app event age, 7 days (168 h) on each of two streams, a day"
    );
}

/// `scripts/catalog` (Python 3, standard library only) with these arguments, from the repository root.
fn run_catalog(args: &[&str]) -> std::process::Output {
    std::process::Command::new("python3")
        .current_dir(e2e::root())
        .arg("scripts/catalog")
        .args(args)
        .output()
        .expect("python3 runs scripts/catalog")
}

#[test]
fn the_catalog_in_the_template_and_tables_json_is_what_the_schemas_and_queries_give() {
    let out = run_catalog(&["--check"]);
    assert!(
        out.status.success(),
        "{} (`make catalog` writes them)",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_schema_or_query_changed_without_make_catalog_is_drift() {
    let root = e2e::root();
    let dir = std::env::temp_dir().join(format!("catalog-drift-{}", std::process::id()));
    let (schemas, queries) = (dir.join("schema"), dir.join("queries"));
    std::fs::create_dir_all(&schemas).unwrap();
    std::fs::create_dir_all(&queries).unwrap();
    let copy_all = |from: &std::path::Path, to: &std::path::Path, ext: &str| {
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) == Some(ext) {
                std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
            }
        }
    };
    copy_all(&root.join("events/schema"), &schemas, "json");
    copy_all(&root.join("queries"), &queries, "sql");
    let (schemas_arg, queries_arg) = (schemas.to_str().unwrap(), queries.to_str().unwrap());
    let check = || {
        run_catalog(&[
            "--check",
            "--schemas",
            schemas_arg,
            "--queries",
            queries_arg,
        ])
    };

    // The copies as they are: no drift, so what follows is the change's doing.
    let same = check();
    assert!(
        same.status.success(),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );

    // A new field in a schema: a column the template does not have.
    let auth = schemas.join("cognito-auth-event.v1.json");
    let text = std::fs::read_to_string(&auth).unwrap();
    let changed = text.replacen(
        r#""user_sub": {"#,
        r#""risk_score": { "type": "integer" }, "user_sub": {"#,
        1,
    );
    assert_ne!(
        changed, text,
        "the schema has a user_sub property to insert before"
    );
    std::fs::write(&auth, changed).unwrap();
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a new schema field went unnoticed");
    assert!(
        stderr.contains("infra/template.yaml") && stderr.contains("risk_score"),
        "the report names the file and the column: {stderr}"
    );
    std::fs::write(&auth, text).unwrap();

    // A saved query edited: its named query's text no longer matches.
    let sql = std::fs::read_dir(&queries)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().and_then(|e| e.to_str()) == Some("sql"))
        .expect("a query file");
    let mut text = std::fs::read_to_string(&sql).unwrap();
    text.push_str("-- edited\n");
    std::fs::write(&sql, text).unwrap();
    let out = check();
    assert!(!out.status.success(), "an edited query went unnoticed");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("-- edited"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The string of a `!Sub "..."` (or plain) value.
fn text_of(v: &Value) -> &str {
    untag(v).as_str().expect("a string or !Sub string")
}

/// A Firehose processor's parameter.
fn processor_parameter<'a>(processor: &'a Value, name: &str) -> Option<&'a str> {
    processor["Parameters"]
        .as_sequence()?
        .iter()
        .find(|p| p["ParameterName"].as_str() == Some(name))
        .and_then(|p| p["ParameterValue"].as_str())
}

/// The tables `scripts/catalog` listed for the DuckDB tests (queries/tables.json).
fn tables_json() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(e2e::root().join("queries/tables.json")).unwrap())
        .unwrap()
}

#[test]
fn every_warehouse_delivery_writes_by_the_events_day_where_its_table_reads() {
    let t = template();
    let deliveries = resources_of_type(&t, "AWS::KinesisFirehose::DeliveryStream");
    let tables = resources_of_type(&t, "AWS::Glue::Table");
    let listed = tables_json();
    let listed = listed["tables"].as_array().unwrap();
    assert_eq!(deliveries.len(), 3, "one delivery stream per record family");
    assert_eq!(
        tables.len(),
        deliveries.len(),
        "one table per delivery stream"
    );
    assert_eq!(
        listed.len(),
        tables.len(),
        "queries/tables.json lists every table"
    );
    let mut sources = Vec::new();
    for (name, d) in &deliveries {
        assert_eq!(d["Condition"].as_str(), Some("WarehouseDelivery"), "{name}");
        let s3 = &d["Properties"]["ExtendedS3DestinationConfiguration"];
        let prefix = s3["Prefix"].as_str().unwrap();
        let family = prefix
            .strip_suffix("dt=!{partitionKeyFromQuery:dt}/")
            .unwrap_or_else(|| panic!("{name}: {prefix} is not partitioned by the event's day"));
        assert_eq!(
            s3["DynamicPartitioningConfiguration"]["Enabled"].as_bool(),
            Some(true),
            "{name}"
        );
        let processors = s3["ProcessingConfiguration"]["Processors"]
            .as_sequence()
            .unwrap();
        let extraction = processors
            .iter()
            .find(|p| p["Type"].as_str() == Some("MetadataExtraction"))
            .unwrap_or_else(|| panic!("{name}: no MetadataExtraction processor"));
        assert_eq!(
            processor_parameter(extraction, "MetadataExtractionQuery"),
            Some("{dt: .timestamp[0:10]}"),
            "{name}: dt is the UTC day of the record's own timestamp"
        );
        assert_eq!(
            processor_parameter(extraction, "JsonParsingEngine"),
            Some("JQ-1.6"),
            "{name}"
        );
        assert!(
            processors
                .iter()
                .any(|p| p["Type"].as_str() == Some("AppendDelimiterToRecord")),
            "{name}: records are not put on lines of their own"
        );
        let errors = s3["ErrorOutputPrefix"].as_str().unwrap();
        assert!(
            errors.starts_with("errors/") && errors.contains("!{firehose:error-output-type}"),
            "{name}: records that cannot be partitioned go under errors/<error type>/, not {errors}"
        );
        assert_eq!(s3["CompressionFormat"].as_str(), Some("GZIP"), "{name}");
        assert!(
            s3["BufferingHints"]["SizeInMBs"].as_u64() >= Some(64),
            "{name}: dynamic partitioning needs a buffer of 64 MiB or more"
        );
        let location = format!("s3://${{WarehouseBucket}}/{family}");
        let readers: Vec<_> = tables
            .iter()
            .filter(|(_, table)| {
                text_of(&table["Properties"]["TableInput"]["StorageDescriptor"]["Location"])
                    == location
            })
            .collect();
        assert_eq!(readers.len(), 1, "{name}: one table reads {location}");
        let table_name = readers[0].1["Properties"]["TableInput"]["Name"]
            .as_str()
            .unwrap();
        let entry = listed
            .iter()
            .find(|e| e["name"] == table_name)
            .unwrap_or_else(|| panic!("queries/tables.json has no {table_name}"));
        assert_eq!(entry["prefix"], family, "{table_name}");
        sources.push(
            referenced_id(&d["Properties"]["KinesisStreamSourceConfiguration"]["KinesisStreamARN"])
                .unwrap(),
        );
    }
    sources.sort();
    assert_eq!(
        sources,
        ["AppEventsStream", "AuthEventsStream", "SyncChangesStream"],
        "every output stream is delivered once"
    );
}

#[test]
fn every_warehouse_table_projects_its_days_without_a_crawler() {
    let t = template();
    let tables = resources_of_type(&t, "AWS::Glue::Table");
    assert!(!tables.is_empty());
    for (name, table) in &tables {
        assert_eq!(
            table["Condition"].as_str(),
            Some("WarehouseDelivery"),
            "{name}"
        );
        assert_eq!(
            referenced_id(&table["Properties"]["DatabaseName"]).as_deref(),
            Some("WarehouseDatabase"),
            "{name}"
        );
        let input = &table["Properties"]["TableInput"];
        let storage = &input["StorageDescriptor"];
        assert_eq!(
            storage["SerdeInfo"]["SerializationLibrary"].as_str(),
            Some("org.openx.data.jsonserde.JsonSerDe"),
            "{name}"
        );
        assert_eq!(
            storage["InputFormat"].as_str(),
            Some("org.apache.hadoop.mapred.TextInputFormat"),
            "{name}"
        );
        let keys = input["PartitionKeys"].as_sequence().unwrap();
        assert_eq!(keys.len(), 1, "{name}: one partition key");
        assert_eq!(keys[0]["Name"].as_str(), Some("dt"), "{name}");
        assert_eq!(keys[0]["Type"].as_str(), Some("string"), "{name}");
        let p = &input["Parameters"];
        for (key, value) in [
            ("projection.enabled", "true"),
            ("projection.dt.type", "date"),
            ("projection.dt.format", "yyyy-MM-dd"),
            ("projection.dt.range", "2015-01-01,NOW"),
            ("projection.dt.interval", "1"),
            ("projection.dt.interval.unit", "DAYS"),
        ] {
            assert_eq!(p[key].as_str(), Some(value), "{name}: {key}");
        }
        // `${!dt}` is how `!Sub` writes a literal `${dt}`, the projected value.
        assert_eq!(
            text_of(&p["storage.location.template"]),
            format!("{}dt=${{!dt}}/", text_of(&storage["Location"])),
            "{name}: the projected days are the folders Firehose writes"
        );
    }
}

#[test]
fn each_saved_query_is_its_file_in_the_warehouse_workgroup() {
    let t = template();
    let named = resources_of_type(&t, "AWS::Athena::NamedQuery");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(e2e::root().join("queries"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "queries/*.sql");
    assert_eq!(
        named.len(),
        files.len(),
        "one named query per queries/*.sql"
    );
    for file in &files {
        let stem = file.file_stem().unwrap().to_str().unwrap();
        let (name, q) = named
            .iter()
            .find(|(_, q)| q["Properties"]["Name"].as_str() == Some(stem))
            .unwrap_or_else(|| panic!("no named query {stem}"));
        let p = &q["Properties"];
        assert_eq!(
            p["QueryString"].as_str(),
            Some(std::fs::read_to_string(file).unwrap().as_str()),
            "{name}: the text of {}",
            file.display()
        );
        assert_eq!(q["Condition"].as_str(), Some("WarehouseDelivery"), "{name}");
        assert_eq!(
            referenced_id(&p["Database"]).as_deref(),
            Some("WarehouseDatabase"),
            "{name}"
        );
        assert_eq!(
            referenced_id(&p["WorkGroup"]).as_deref(),
            Some("WarehouseWorkGroup"),
            "{name}"
        );
    }
}

#[test]
fn warehouse_queries_run_in_a_workgroup_that_caps_their_scan_and_keeps_their_results() {
    let t = template();
    let wg = &t["Resources"]["WarehouseWorkGroup"];
    assert_eq!(wg["Type"].as_str(), Some("AWS::Athena::WorkGroup"));
    assert_eq!(wg["Condition"].as_str(), Some("WarehouseDelivery"));
    let c = &wg["Properties"]["WorkGroupConfiguration"];
    assert_eq!(c["EnforceWorkGroupConfiguration"].as_bool(), Some(true));
    assert_eq!(c["PublishCloudWatchMetricsEnabled"].as_bool(), Some(true));
    assert_eq!(
        referenced_id(&c["BytesScannedCutoffPerQuery"]).as_deref(),
        Some("WarehouseQueryScanLimitBytes")
    );
    // Athena refuses a cutoff below 10,000,000 bytes (BytesScannedCutoffValue, min 10000000).
    let limit = &t["Parameters"]["WarehouseQueryScanLimitBytes"];
    let min = limit["MinValue"].as_u64().unwrap();
    assert!(min >= 10_000_000, "MinValue {min}");
    assert!(limit["Default"].as_u64().unwrap() >= min);
    let results = &c["ResultConfiguration"];
    assert_eq!(
        text_of(&results["OutputLocation"]),
        "s3://${WarehouseBucket}/athena-results/"
    );
    assert!(
        results["EncryptionConfiguration"]["EncryptionOption"]
            .as_str()
            .is_some()
    );
}

#[test]
fn the_warehouse_role_may_read_exactly_the_streams_it_delivers() {
    let t = template();
    let mut delivered: Vec<String> = resources_of_type(&t, "AWS::KinesisFirehose::DeliveryStream")
        .iter()
        .map(|(_, d)| {
            assert_eq!(
                referenced_id(&d["Properties"]["KinesisStreamSourceConfiguration"]["RoleARN"])
                    .as_deref(),
                Some("WarehouseDeliveryRole")
            );
            referenced_id(&d["Properties"]["KinesisStreamSourceConfiguration"]["KinesisStreamARN"])
                .unwrap()
        })
        .collect();
    delivered.sort();
    let role = &t["Resources"]["WarehouseDeliveryRole"];
    assert_eq!(role["Condition"].as_str(), Some("WarehouseDelivery"));
    let mut readable = Vec::new();
    for policy in role["Properties"]["Policies"].as_sequence().unwrap() {
        for s in policy["PolicyDocument"]["Statement"].as_sequence().unwrap() {
            if actions(s).iter().any(|a| a.starts_with("kinesis:")) {
                let resources = match &s["Resource"] {
                    Value::Sequence(list) => list.iter().collect(),
                    one => vec![one],
                };
                readable.extend(resources.into_iter().map(|r| referenced_id(r).unwrap()));
            }
        }
    }
    readable.sort();
    assert_eq!(readable, delivered);
}

/// The cohort function: built and run like the others, its variables set, run by its schedule one at a time, and
/// the template's default cohorts are the ones the code computes by default (and accepts).
#[test]
fn the_cohort_function_runs_on_its_schedule_with_the_defaults_the_code_accepts() {
    let t = template();
    let f = function_for_binary(&t, "cohorts");
    let p = &f["Properties"];
    assert_eq!(
        f["Metadata"]["BuildMethod"].as_str(),
        Some("rust-cargolambda")
    );
    assert_eq!(p["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(p["Architectures"][0].as_str(), Some("arm64"));
    assert_eq!(p["LoggingConfig"]["LogFormat"].as_str(), Some("JSON"));
    assert_eq!(p["ReservedConcurrentExecutions"].as_u64(), Some(1));
    let vars = p["Environment"]["Variables"].as_mapping().unwrap();
    for var in cohorts::config::REQUIRED_ENV {
        assert!(vars.get(*var).is_some_and(|v| !untag(v).is_null()), "{var}");
    }
    for (var, parameter) in [
        (cohorts::config::ENV_DEFINITIONS, "CohortDefinitions"),
        (cohorts::config::ENV_USER_PROPERTIES, "CohortUserProperties"),
    ] {
        assert_eq!(
            referenced_id(&vars[var]).as_deref(),
            Some(parameter),
            "{var}"
        );
    }
    let events: Vec<&Value> = p["Events"].as_mapping().unwrap().values().collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["Type"].as_str(), Some("Schedule"));
    assert_eq!(
        referenced_id(&events[0]["Properties"]["Schedule"]).as_deref(),
        Some("CohortSchedule")
    );
    let default = t["Parameters"]["CohortDefinitions"]["Default"]
        .as_str()
        .unwrap();
    assert_eq!(default, cohorts::definition::DEFAULT_DEFINITIONS);
    assert_eq!(cohorts::definition::parse(default).unwrap().len(), 4);
    // The cohort stream is made like every other stream the stack creates.
    let (cohort, other) = (
        &t["Resources"]["CohortStream"],
        &t["Resources"]["AppEventsStream"],
    );
    assert_eq!(cohort["Properties"], other["Properties"]);
    assert_eq!(
        referenced_id(&t["Outputs"]["CohortStreamName"]["Value"]).as_deref(),
        Some("CohortStream")
    );
}

/// The cohort function's role, as deployed: it reads the rollup table, writes only the membership items (partition
/// keys the code gives them), puts only on the cohort stream, and reads no stream.
#[test]
fn the_cohort_function_may_write_only_its_membership_items_and_its_stream() {
    let t = transformed();
    let resources = t["Resources"].as_object().unwrap();
    let role = resources["CohortsFunction"]["Properties"]["Role"]["Fn::GetAtt"][0]
        .as_str()
        .unwrap();
    let table = serde_json::json!({"Fn::GetAtt": ["RollupTable", "Arn"]});
    let leading = format!("{}*", cohorts::store::MEMBERSHIP_PREFIX);
    let mut writes = 0;
    for s in iam_statements(&resources[role]) {
        assert_eq!(s["Effect"], "Allow");
        for action in json_actions(s) {
            let resources = json_resources(s);
            match action {
                "dynamodb:Scan" | "dynamodb:Query" => assert_eq!(resources, vec![&table]),
                "dynamodb:PutItem" | "dynamodb:DeleteItem" | "dynamodb:BatchWriteItem" => {
                    assert_eq!(resources, vec![&table]);
                    assert_eq!(
                        s["Condition"],
                        serde_json::json!({"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [leading]}}),
                        "{s}"
                    );
                    writes += 1;
                }
                "kinesis:PutRecords" => assert_eq!(
                    resources,
                    vec![&serde_json::json!({"Fn::GetAtt": ["CohortStream", "Arn"]})]
                ),
                "logs:CreateLogStream" | "logs:PutLogEvents" => assert_eq!(
                    resources,
                    vec![&serde_json::json!({"Fn::GetAtt": ["CohortsLogGroup", "Arn"]})]
                ),
                other => panic!("the cohort function may {other}: {s}"),
            }
        }
    }
    assert_eq!(writes, 3);
}
