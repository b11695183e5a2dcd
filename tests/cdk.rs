//! The CDK construct (cdk/) against the SAM template it includes: the example app (cdk/examples/app.ts) is
//! type-checked and synthesized by `scripts/cdk-synth` (the Amplify Gen 2 recipe is type-checked there too), its
//! default stack is compared with what SAM's transform makes of infra/template.yaml resource by resource and IAM
//! statement by IAM statement, and the contract tests of tests/infra_contract.rs that read the deployed shape
//! (streams each role reads, the alarm key policy, the dashboard's and alarms' metrics) run on both of its stacks.
//! Needs `make cdk` and `make infra-tools` (`make test` runs both).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

/// The conditions that pick between a resource the bridge creates and one the app gives (`userPool`,
/// `sourceStream`, `appEventStream`): the construct decides them from its props, so that what it exposes is a
/// plain reference, and their parameters are not the stack's. Without the props they are true (the parameters
/// empty, as their defaults are); with them, false, and their resources are left out.
const DECIDED_BY_PROPS: &[(&str, &str)] = &[
    ("CreateUserPool", "ExistingUserPoolId"),
    ("CreateSourceStream", "SourceStreamArn"),
    ("CreateAppEventStream", "AppEventStreamArn"),
];

/// The differences a CDK app adds that are not the bridge's (docs/deploy-cdk.md, "Parity"): the bootstrap
/// version parameter and its rule (DefaultStackSynthesizer), each function's `Code` (an S3 asset of its zip instead
/// of SAM's build) and the asset metadata CDK puts on it.
const CDK_PARAMETERS: &[&str] = &["BootstrapVersion"];
const CDK_RULES: &[&str] = &["CheckBootstrapVersion"];

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

fn root() -> PathBuf {
    e2e::root()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What SAM's translator makes of a SAM template (scripts/sam-transform, pinned in .venv-sam).
fn sam_transform(template: &Path) -> Value {
    let python = root().join(".venv-sam/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make infra-tools`",
        python.display()
    );
    let out = Command::new(&python)
        .current_dir(root())
        .arg("scripts/sam-transform")
        .arg(template)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sam-transform failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The SAM template as the construct deploys it without `userPool`, `sourceStream` and `appEventStream`: the
/// conditions they decide true (`DECIDED_BY_PROPS`), their `Fn::If`s resolved, and their parameters gone.
fn with_decided_conditions(sam: &Value) -> Value {
    fn resolve(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                if let Some(Value::Array(b)) = m.get("Fn::If")
                    && DECIDED_BY_PROPS.iter().any(|(c, _)| b[0] == *c)
                {
                    return resolve(&b[1]);
                }
                Value::Object(m.iter().map(|(k, x)| (k.clone(), resolve(x))).collect())
            }
            Value::Array(l) => Value::Array(l.iter().map(resolve).collect()),
            other => other.clone(),
        }
    }
    let mut t = resolve(sam);
    for (condition, parameter) in DECIDED_BY_PROPS {
        t["Conditions"]
            .as_object_mut()
            .unwrap()
            .remove(*condition)
            .unwrap();
        t["Parameters"]
            .as_object_mut()
            .unwrap()
            .remove(*parameter)
            .unwrap();
        for section in ["Resources", "Outputs"] {
            for r in t[section].as_object_mut().unwrap().values_mut() {
                if r["Condition"] == *condition {
                    r.as_object_mut().unwrap().remove("Condition");
                }
            }
        }
    }
    t
}

fn transformed() -> &'static Value {
    static T: OnceLock<Value> = OnceLock::new();
    T.get_or_init(|| sam_transform(&root().join("infra/template.yaml")))
}

/// `scripts/cdk-synth OUT args...`: the templates' paths, or the script's output when it failed. One at a time:
/// each type-check writes cdk/dist.
fn cdk_synth(out: &str, args: &[&str]) -> Result<Vec<PathBuf>, String> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = root().join("target/cdk").join(out);
    let _ = std::fs::remove_dir_all(&dir);
    let output = Command::new("python3")
        .current_dir(root())
        .arg("scripts/cdk-synth")
        .arg(&dir)
        .args(args)
        .output()
        .unwrap();
    if !output.status.success() {
        return Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(PathBuf::from)
        .collect())
}

/// The example app's two stacks: the defaults, and the bridge in an app with its own pool, roles and streams.
struct Synth {
    defaults: Value,
    with_pool: Value,
}

fn stack(paths: &[PathBuf], name: &str) -> Value {
    let path = paths
        .iter()
        .find(|p| p.file_name().unwrap().to_str() == Some(&format!("{name}.template.json")))
        .unwrap_or_else(|| panic!("no stack {name} in {paths:?}"));
    read_json(path)
}

fn synthesized() -> &'static Synth {
    static S: OnceLock<Synth> = OnceLock::new();
    S.get_or_init(|| {
        let paths = cdk_synth("synth", &[]).unwrap_or_else(|e| panic!("cdk-synth failed:\n{e}"));
        Synth {
            defaults: stack(&paths, "BridgeDefaults"),
            with_pool: stack(&paths, "BridgeWithAppPool"),
        }
    })
}

fn resources(t: &Value) -> &serde_json::Map<String, Value> {
    t["Resources"].as_object().unwrap()
}

/// Every policy statement of a resource (IAM documents, key and bucket policies), both branches of an `Fn::If`.
fn statements(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(list)) = m.get("Statement") {
                for s in list {
                    match s.get("Fn::If") {
                        Some(b) => out.extend(
                            b.as_array().unwrap()[1..]
                                .iter()
                                .filter(|x| x.get("Effect").is_some())
                                .cloned(),
                        ),
                        None => out.push(s.clone()),
                    }
                }
            }
            m.values().for_each(|x| statements(x, out));
        }
        Value::Array(list) => list.iter().for_each(|x| statements(x, out)),
        _ => {}
    }
}

/// What a deployment is made of, one line each: every resource with its type, and every policy statement with
/// the resource that holds it.
fn inventory(t: &Value) -> BTreeSet<String> {
    let mut lines = BTreeSet::new();
    for (id, r) in resources(t) {
        lines.insert(format!("resource {id} {}", r["Type"].as_str().unwrap()));
        let mut found = Vec::new();
        statements(&r["Properties"], &mut found);
        for s in found {
            lines.insert(format!("statement {id} {s}"));
        }
    }
    lines
}

/// A resource as the comparison sees it: without its code and CDK's asset metadata (the explained differences).
fn comparable(r: &Value) -> Value {
    let mut r = r.clone();
    if r["Type"] == "AWS::Lambda::Function" {
        r["Properties"].as_object_mut().unwrap().remove("Code");
    }
    if let Some(m) = r.get_mut("Metadata").and_then(Value::as_object_mut) {
        m.retain(|k, _| !k.starts_with("aws:asset:"));
    }
    r
}

fn section<'a>(t: &'a Value, name: &str, leave_out: &[&str]) -> BTreeMap<&'a String, &'a Value> {
    t[name]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !leave_out.contains(&k.as_str()))
        .collect()
}

/// Every unexplained difference between the SAM deployment and the construct's: the inventories both ways, then
/// every resource, parameter, condition, rule and output that both have but that differ.
fn differences(sam: &Value, cdk: &Value) -> Vec<String> {
    let (a, b) = (inventory(sam), inventory(cdk));
    let mut out: Vec<String> = a
        .difference(&b)
        .map(|l| format!("only in the SAM template: {l}"))
        .chain(
            b.difference(&a)
                .map(|l| format!("only in the construct: {l}")),
        )
        .collect();
    for (id, r) in resources(sam) {
        if let Some(c) = resources(cdk).get(id)
            && comparable(r) != comparable(c)
        {
            out.push(format!("resource {id} differs"));
        }
    }
    for (name, cdk_extra) in [
        ("Parameters", CDK_PARAMETERS),
        ("Conditions", &[][..]),
        ("Rules", CDK_RULES),
        ("Outputs", &[][..]),
    ] {
        if section(sam, name, &[]) != section(cdk, name, cdk_extra) {
            out.push(format!("{name} differ"));
        }
    }
    out
}

#[test]
fn the_template_the_construct_includes_is_the_sam_transform_of_infra_template() {
    let shipped = root().join("cdk/template/bridge.template.json");
    assert!(
        shipped.exists(),
        "{} is missing: run `make cdk`",
        shipped.display()
    );
    assert!(
        &read_json(&shipped) == transformed(),
        "cdk/template/bridge.template.json is not what scripts/sam-transform makes of infra/template.yaml: run `make cdk`"
    );
}

#[test]
fn the_default_construct_deploys_what_the_sam_template_deploys() {
    let sam = &with_decided_conditions(transformed());
    let cdk = &synthesized().defaults;
    let diff = differences(sam, cdk);
    assert!(
        diff.is_empty(),
        "unexplained differences:\n{}",
        diff.join("\n")
    );
    // The inventory compared is the whole deployment: every resource type and statement of both paths.
    let lines = inventory(sam);
    let types: BTreeSet<&str> = resources(sam)
        .values()
        .map(|r| r["Type"].as_str().unwrap())
        .collect();
    for kind in [
        "AWS::Lambda::Function",
        "AWS::Lambda::EventSourceMapping",
        "AWS::IAM::Role",
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::Dashboard",
        "AWS::KinesisFirehose::DeliveryStream",
        "AWS::Glue::Table",
        "AWS::Athena::NamedQuery",
    ] {
        assert!(types.contains(kind), "the SAM template has no {kind}");
    }
    let statements = lines.iter().filter(|l| l.starts_with("statement ")).count();
    assert!(statements >= 30, "only {statements} statements compared");
    // Only the code differs: each function's zip is an asset of the stack.
    for (id, r) in resources(cdk) {
        if r["Type"] == "AWS::Lambda::Function" {
            let key = r["Properties"]["Code"]["S3Key"]
                .as_str()
                .unwrap_or_default();
            assert!(
                key.ends_with(".zip"),
                "{id}: code {}",
                r["Properties"]["Code"]
            );
            assert_ne!(
                r["Properties"]["Code"], sam["Resources"][id]["Properties"]["Code"],
                "{id}"
            );
        }
    }
}

/// The comparison itself: a resource or a statement on one side only, or a changed property, is reported.
#[test]
fn a_resource_or_statement_on_one_side_only_is_an_unexplained_difference() {
    let sam = transformed();
    assert!(differences(sam, sam).is_empty());
    let mut gained = sam.clone();
    gained["Resources"]["CohortQueue"] =
        serde_json::json!({"Type": "AWS::SQS::Queue", "Properties": {}});
    gained["Resources"]["SyncProcessorFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"Sid": "ReadCohorts", "Effect": "Allow", "Action": ["sqs:ReceiveMessage"], "Resource": {"Fn::GetAtt": ["CohortQueue", "Arn"]}}));
    let diff = differences(&gained, sam);
    assert!(
        diff.iter()
            .any(|d| d == "only in the SAM template: resource CohortQueue AWS::SQS::Queue"),
        "{diff:?}"
    );
    assert!(
        diff.iter().any(|d| d
            .starts_with("only in the SAM template: statement SyncProcessorFunctionRole")
            && d.contains("ReadCohorts")),
        "{diff:?}"
    );
    assert!(
        diff.iter()
            .any(|d| d == "resource SyncProcessorFunctionRole differs")
    );
    let diff = differences(sam, &gained);
    assert!(
        diff.iter()
            .any(|d| d == "only in the construct: resource CohortQueue AWS::SQS::Queue"),
        "{diff:?}"
    );
    let mut changed = sam.clone();
    changed["Resources"]["SyncProcessorFunction"]["Properties"]["MemorySize"] = 1024.into();
    assert_eq!(
        differences(sam, &changed),
        ["resource SyncProcessorFunction differs"]
    );
    let mut param = sam.clone();
    param["Parameters"]["CohortDays"] = serde_json::json!({"Type": "Number", "Default": 7});
    assert_eq!(differences(&param, sam), ["Parameters differ"]);
}

/// The template gains a function (as the cohort function will): the construct takes it with its role by
/// construction, and asks for its zip. The construct built from the older template lacks both, and the parity
/// comparison says so.
#[test]
fn a_function_the_template_gains_is_in_the_construct_and_needs_its_zip() {
    let dir = root().join("target/cdk/gained-source");
    std::fs::create_dir_all(&dir).unwrap();
    let source = std::fs::read_to_string(root().join("infra/template.yaml")).unwrap();
    let gained = source.replacen(
        "\nOutputs:\n",
        r#"
  CohortTestFunctionRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal:
              Service: lambda.amazonaws.com
            Action: sts:AssumeRole
      Policies:
        - PolicyName: cohort-test
          PolicyDocument:
            Version: "2012-10-17"
            Statement:
              - Sid: ReadRollup
                Effect: Allow
                Action:
                  - dynamodb:Query
                Resource: !GetAtt RollupTable.Arn

  CohortTestFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: cohort-test
    Properties:
      CodeUri: ..
      Handler: bootstrap
      Runtime: provided.al2023
      Architectures: [arm64]
      Role: !GetAtt CohortTestFunctionRole.Arn

Outputs:
"#,
        1,
    );
    assert_ne!(gained, source, "no Outputs section to insert before");
    let yaml = dir.join("template.yaml");
    std::fs::write(&yaml, gained).unwrap();
    let sam = sam_transform(&yaml);
    let json = dir.join("bridge.template.json");
    std::fs::write(&json, serde_json::to_vec(&sam).unwrap()).unwrap();
    let json = json.to_str().unwrap();

    // What the construct of the current template lacks.
    let sam = with_decided_conditions(&sam);
    let diff = differences(&sam, &synthesized().defaults);
    for lacking in [
        "only in the SAM template: resource CohortTestFunction AWS::Lambda::Function",
        "only in the SAM template: resource CohortTestFunctionRole AWS::IAM::Role",
    ] {
        assert!(diff.iter().any(|d| d == lacking), "{diff:?}");
    }
    assert!(
        diff.iter().any(|d| d
            .starts_with("only in the SAM template: statement CohortTestFunctionRole")
            && d.contains("ReadRollup")),
        "{diff:?}"
    );

    // The release's zips of the five functions, without the new one: the synth names the missing zip.
    let five = root().join("target/cdk/synth/functions");
    synthesized();
    let err = cdk_synth(
        "gained-without-zip",
        &[
            "--no-typecheck",
            "--template",
            json,
            "--functions",
            five.to_str().unwrap(),
        ],
    )
    .expect_err("a function without its zip must fail the synth");
    assert!(err.contains("cohort-test.zip"), "{err}");

    // With a zip for every binary: the new function and its statements are there, the same as SAM's.
    let paths = cdk_synth("gained", &["--no-typecheck", "--template", json]).unwrap();
    let cdk = stack(&paths, "BridgeDefaults");
    let diff = differences(&sam, &cdk);
    assert!(diff.is_empty(), "{diff:?}");
    assert!(resources(&cdk).contains_key("CohortTestFunction"));
}

fn both() -> [(&'static str, &'static Value); 2] {
    let s = synthesized();
    [
        ("BridgeDefaults", &s.defaults),
        ("BridgeWithAppPool", &s.with_pool),
    ]
}

fn actions(s: &Value) -> Vec<&str> {
    match &s["Action"] {
        Value::String(a) => vec![a.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn statement_resources(s: &Value) -> Vec<&Value> {
    match &s["Resource"] {
        Value::Array(list) => list.iter().collect(),
        one => vec![one],
    }
}

/// tests/infra_contract.rs `each_consumer_may_read_only_the_stream_it_consumes`, on the synthesized stacks: with
/// the app's own streams, each role reads exactly the stream its mapping consumes.
#[test]
fn each_consumer_may_read_only_the_stream_it_consumes() {
    for (stack, t) in both() {
        let all = resources(t);
        let mut consumers = 0;
        for (name, f) in all
            .iter()
            .filter(|(_, r)| r["Type"] == "AWS::Lambda::Function")
        {
            let sources: Vec<&Value> = all
                .values()
                .filter(|r| r["Type"] == "AWS::Lambda::EventSourceMapping")
                .filter(|r| r["Properties"]["FunctionName"]["Ref"] == name.as_str())
                .map(|r| &r["Properties"]["EventSourceArn"])
                .collect();
            let role = f["Properties"]["Role"]["Fn::GetAtt"][0].as_str().unwrap();
            let mut found = Vec::new();
            statements(&all[role]["Properties"], &mut found);
            let reads: Vec<&Value> = found
                .iter()
                .filter(|s| actions(s).iter().any(|a| KINESIS_READS.contains(a)))
                .collect();
            if sources.is_empty() {
                assert!(
                    reads.is_empty(),
                    "{stack}: {name} consumes no stream but may read one"
                );
                continue;
            }
            assert!(
                !reads.is_empty(),
                "{stack}: {name}: its role cannot read its source"
            );
            for s in reads {
                for resource in statement_resources(s) {
                    assert!(
                        sources.contains(&resource),
                        "{stack}: {name} may read {resource}, which it does not consume ({sources:?})"
                    );
                }
            }
            consumers += 1;
        }
        assert_eq!(consumers, 4, "{stack}");
    }
}

#[test]
fn the_bridges_roles_have_no_managed_policy_and_no_wildcard_resource() {
    for (stack, t) in both() {
        for (name, r) in resources(t) {
            let kind = r["Type"].as_str().unwrap();
            if !kind.starts_with("AWS::IAM::") {
                continue;
            }
            let managed = &r["Properties"]["ManagedPolicyArns"];
            assert!(
                managed.is_null() || managed.as_array().is_some_and(Vec::is_empty),
                "{stack}: {name}: managed policies {managed}"
            );
            let mut found = Vec::new();
            statements(&r["Properties"], &mut found);
            for s in found {
                for resource in statement_resources(&s) {
                    assert_ne!(resource.as_str(), Some("*"), "{stack}: {name}: {s}");
                }
            }
        }
    }
}

/// tests/infra_contract.rs `alarm_emails_go_through_a_key_cloudwatch_may_use`, on the synthesized stacks.
#[test]
fn alarm_emails_go_through_a_key_cloudwatch_may_use() {
    for (stack, t) in both() {
        let topics: Vec<&Value> = resources(t)
            .values()
            .filter(|r| r["Type"] == "AWS::SNS::Topic")
            .collect();
        assert_eq!(topics.len(), 1, "{stack}: one alarm topic");
        let key_id = topics[0]["Properties"]["KmsMasterKeyId"]["Ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{stack}: the topic's key is not the stack's"));
        let key = &t["Resources"][key_id];
        assert_eq!(key["Type"], "AWS::KMS::Key");
        let grants: Vec<&Value> = key["Properties"]["KeyPolicy"]["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["Principal"]["Service"] == "cloudwatch.amazonaws.com")
            .collect();
        assert_eq!(grants.len(), 1, "{stack}: one grant to CloudWatch");
        for needed in ["kms:Decrypt", "kms:GenerateDataKey*"] {
            assert!(
                actions(grants[0]).contains(&needed),
                "{stack}: lacks {needed}"
            );
        }
        let source = grants[0]["Condition"]["ArnLike"]["aws:SourceArn"].to_string();
        assert!(
            source.contains(":alarm:"),
            "{stack}: the grant is not limited to the stack's alarms: {source}"
        );
    }
    // With a name prefix too: CloudFormation names the alarms after the stack, and the grant names the stack.
    for (stack, t) in both() {
        for (name, alarm) in resources(t)
            .iter()
            .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        {
            assert!(
                alarm["Properties"]["AlarmName"].is_null(),
                "{stack}: {name} is named"
            );
        }
        assert!(
            t.to_string().contains(":alarm:${AWS::StackName}-*"),
            "{stack}: the grant does not name the stack's alarms"
        );
    }
    assert!(
        synthesized()
            .with_pool
            .to_string()
            .contains("bridge-sync-processor"),
        "the name prefix is not in the names"
    );
}

/// tests/infra_contract.rs `every_custom_metric_alarm_watches_a_metric_the_code_emits`, on the synthesized stacks.
#[test]
fn every_custom_metric_alarm_watches_a_metric_the_code_emits() {
    for (stack, t) in both() {
        let mut watched = 0;
        for (name, alarm) in resources(t)
            .iter()
            .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        {
            let p = &alarm["Properties"];
            if p["Namespace"].as_str() != Some(bridge_core::telemetry::METRICS_NAMESPACE) {
                continue;
            }
            let metric = p["MetricName"].as_str().unwrap();
            let function = p["Dimensions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["Name"] == "Function")
                .and_then(|d| d["Value"].as_str())
                .unwrap_or_else(|| panic!("{stack}: {name}: no literal Function dimension"));
            let emitted = e2e::EMITTED_METRICS
                .iter()
                .find(|(f, _)| *f == function)
                .unwrap_or_else(|| panic!("{stack}: {name}: no function {function} in metrics"));
            assert!(
                emitted.1.contains(&metric),
                "{stack}: {name}: {function} does not emit {metric}"
            );
            watched += 1;
        }
        assert!(watched >= 2, "{stack}: {watched}");
    }
}

/// tests/infra_contract.rs `the_dashboard_reads_only_what_the_rollup_publishes_...`, on the synthesized stacks.
#[test]
fn the_dashboard_reads_only_what_the_rollup_publishes() {
    for (stack, t) in both() {
        let dashboards: Vec<&Value> = resources(t)
            .values()
            .filter(|r| r["Type"] == "AWS::CloudWatch::Dashboard")
            .collect();
        assert_eq!(dashboards.len(), 1, "{stack}");
        let body = &dashboards[0]["Properties"]["DashboardBody"]["Fn::Sub"];
        let body = body.as_str().or_else(|| body[0].as_str()).unwrap();
        let read = e2e::assert_dashboard_reads_only_published(body, stack);
        assert!(read >= 40, "{stack}: {read}");
    }
}

/// A condition or rule may read parameters only: a prop given as a reference to the app's resources is decided
/// by the construct, never left in a condition.
#[test]
fn conditions_and_rules_read_parameters_only() {
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("Ref") {
                    out.push(r);
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(l) => l.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    for (stack, t) in both() {
        for name in ["Conditions", "Rules"] {
            let mut found = Vec::new();
            refs(&t[name], &mut found);
            for r in found {
                assert!(
                    r.starts_with("AWS::") || t["Parameters"].get(r).is_some(),
                    "{stack}: {name} read {r}, which is not a parameter"
                );
            }
        }
    }
}

/// The app gives the pool and the streams: exactly the SAM resources under the conditions those props decide are
/// left out, every other one is there, and the rest of the conditions stay parameters of the stack.
#[test]
fn an_app_that_gives_its_pool_and_streams_gets_every_other_resource() {
    let sam = transformed();
    let cdk = &synthesized().with_pool;
    for (id, r) in resources(sam) {
        let condition = r["Condition"].as_str().unwrap_or_default();
        let dropped = DECIDED_BY_PROPS.iter().any(|(c, _)| *c == condition);
        assert_eq!(
            !resources(cdk).contains_key(id),
            dropped,
            "{id} (condition {condition:?})"
        );
        if let Some(c) = resources(cdk).get(id) {
            assert_eq!(c["Type"], r["Type"], "{id}");
        }
    }
    let conditions = cdk["Conditions"].as_object().unwrap();
    for (condition, parameter) in DECIDED_BY_PROPS {
        assert!(!conditions.contains_key(*condition), "{condition}");
        assert!(cdk["Parameters"].get(*parameter).is_none(), "{parameter}");
    }
    // AttributeHashKeySecretArn was not given: whether to generate a key stays a deploy-time choice.
    assert!(conditions.contains_key("HasHashKeySecretArn"));
    assert!(cdk["Parameters"].get("AttributeHashKeySecretArn").is_some());
    assert!(
        cdk["Parameters"].get("BatchSize").is_none(),
        "set by the app"
    );
}

/// The app's pool gets the template's triggers (its own LambdaConfig), Cognito may invoke the forwarder for that
/// pool, and the app's identity pool roles may put app events on the app's stream.
#[test]
fn the_apps_pool_gets_the_triggers_and_its_roles_may_write_app_events() {
    let sam = transformed();
    let t = &synthesized().with_pool;
    let all = resources(t);
    let (pool_id, pool) = all
        .iter()
        .find(|(_, r)| r["Type"] == "AWS::Cognito::UserPool")
        .unwrap();
    assert_ne!(pool_id, "UserPool", "the app's pool, not the template's");
    assert_eq!(
        pool["Properties"]["LambdaConfig"],
        sam["Resources"]["UserPool"]["Properties"]["LambdaConfig"]
    );
    let permission = &all["AuthTriggerInvokePermission"]["Properties"];
    assert_eq!(permission["Principal"], "cognito-idp.amazonaws.com");
    assert!(
        permission["SourceArn"]
            .to_string()
            .contains(&format!("{{\"Ref\":\"{pool_id}\"}}")),
        "{}",
        permission["SourceArn"]
    );
    let role_ref = |prefix: &str| {
        let id = all
            .iter()
            .find(|(id, r)| id.starts_with(prefix) && r["Type"] == "AWS::IAM::Role")
            .unwrap()
            .0;
        serde_json::json!([{"Ref": id}])
    };
    assert_eq!(
        all["AppEventWriterPolicy"]["Properties"]["Roles"],
        role_ref("AuthenticatedRole")
    );
    assert_eq!(
        all["AppEventGuestWriterPolicy"]["Properties"]["Roles"],
        role_ref("GuestRole")
    );
    let app_stream = all
        .iter()
        .find(|(id, _)| id.starts_with("AppEventStream") && id.as_str() != "AppEventsStream")
        .unwrap()
        .0;
    let mut found = Vec::new();
    statements(&all["AppEventWriterPolicy"]["Properties"], &mut found);
    assert_eq!(found.len(), 1);
    assert_eq!(
        actions(&found[0]),
        ["kinesis:PutRecord", "kinesis:PutRecords"]
    );
    assert_eq!(
        found[0]["Resource"],
        serde_json::json!({"Fn::GetAtt": [app_stream, "Arn"]})
    );
}

/// The Amplify Gen 2 recipe's backend, synthesized outside `ampx` by scripts/cdk-synth: the bridge sits in
/// Amplify's auth stack, with Amplify's pool (the template's triggers on it) and signed-in role, its functions
/// named by the short prefix, and the root stack reads the app event stream from it for amplify_outputs.json.
#[test]
fn the_amplify_recipe_puts_the_bridge_in_the_auth_stack() {
    synthesized();
    let dir = root().join("target/cdk/synth/amplify/cdk.out");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    let named = |f: &dyn Fn(&str) -> bool| {
        let found: Vec<&PathBuf> = files
            .iter()
            .filter(|p| f(p.file_name().unwrap().to_str().unwrap()))
            .collect();
        assert_eq!(found.len(), 1, "{files:?}");
        read_json(found[0])
    };
    let auth = named(&|n| n.contains("auth") && n.ends_with(".nested.template.json"));
    let top = named(&|n| n.starts_with("amplify-") && n.ends_with(".template.json"));
    let all = resources(&auth);
    let (_, pool) = all
        .iter()
        .find(|(_, r)| r["Type"] == "AWS::Cognito::UserPool")
        .unwrap();
    assert_eq!(
        pool["Properties"]["LambdaConfig"],
        transformed()["Resources"]["UserPool"]["Properties"]["LambdaConfig"]
    );
    let roles = all["AppEventWriterPolicy"]["Properties"]["Roles"].to_string();
    assert!(roles.contains("authenticatedUserRole"), "{roles}");
    assert!(
        all["AppEventGuestWriterPolicy"]["Condition"].is_string(),
        "guests may not write"
    );
    let name = all["AuthTriggerForwarderFunction"]["Properties"]["FunctionName"].to_string();
    assert!(
        name.contains("ckb") && name.contains("AWS::StackId"),
        "{name}"
    );
    let outputs = top["Outputs"].to_string();
    assert!(
        outputs.contains("appEvents") && outputs.contains("AppEventSourceStream"),
        "{outputs}"
    );
}

/// `build: 'source'` loads cargo-lambda-cdk's bundler by its module path (it is not exported from the package's
/// index): the pinned version still has it there, with the options the construct passes. A synth with it builds
/// every function (cargo-lambda, zig), which `make package` covers for SAM; it is not run here.
#[test]
fn the_source_build_finds_cargo_lambda_cdks_bundler() {
    let out = Command::new("node")
        .current_dir(root().join("cdk"))
        .args([
            "-e",
            "const { Bundling } = require('cargo-lambda-cdk/lib/bundling'); \
             const d = require('fs').readFileSync(require.resolve('cargo-lambda-cdk/lib/bundling.d.ts'), 'utf8'); \
             if (typeof Bundling.bundle !== 'function') throw new Error('no Bundling.bundle'); \
             for (const o of ['manifestPath', 'binaryName', 'architecture']) if (!d.includes(`readonly ${o}`)) throw new Error(`no ${o}`);",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
