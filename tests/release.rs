//! The fast parts of `make release` (docs/release.md): the deterministic zip writer, the SBOM against Cargo.lock,
//! the license check's SPDX rules, the function list read from the template, the release's template, and the
//! Serverless Application Repository metadata. The release build itself (minutes) is `make release-check`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

fn script(name: &str) -> Command {
    let mut c = Command::new(e2e::root().join("scripts").join(name));
    c.current_dir(e2e::root());
    c
}

fn run(mut c: Command) -> Output {
    let out = c.output().expect("the script runs");
    assert!(
        out.status.success(),
        "{c:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("release-test-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_file(path: &Path, bytes: &[u8], mode: u32, mtime: SystemTime) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

fn release_zip(out: &Path, epoch: u64, entries: &[(&str, &Path)]) -> Vec<u8> {
    let mut c = script("release");
    c.arg("zip").arg("--epoch").arg(epoch.to_string()).arg(out);
    for (name, path) in entries {
        c.arg(format!("{name}={}", path.display()));
    }
    run(c);
    fs::read(out).unwrap()
}

/// Each entry of a zip as Python's zipfile reads it: name, Unix mode, date_time, and its bytes' length.
fn zip_entries(path: &Path) -> Json {
    let code = "import json,sys,zipfile\n\
        z=zipfile.ZipFile(sys.argv[1])\n\
        print(json.dumps([[i.filename, i.external_attr>>16, list(i.date_time), i.create_system, \
        len(z.read(i))] for i in z.infolist()]))";
    let out = run({
        let mut c = Command::new("python3");
        c.arg("-c").arg(code).arg(path);
        c
    });
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_zip_writer_gives_the_same_bytes_whatever_the_files_times_modes_and_order() {
    let dir = scratch("zip");
    let body =
        b"\x7fELF not really a binary, but bytes to deflate: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let (a, b) = (dir.join("a"), dir.join("b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    let now = SystemTime::now();
    write_file(&a.join("bootstrap"), body, 0o600, now);
    write_file(&a.join("notes"), b"second entry", 0o644, now);
    write_file(
        &b.join("bootstrap"),
        body,
        0o755,
        now - Duration::from_secs(86_400 * 400),
    );
    write_file(
        &b.join("notes"),
        b"second entry",
        0o700,
        now - Duration::from_secs(3),
    );

    let epoch = 1_700_000_000; // 2023-11-14 22:13:20 UTC
    let first = release_zip(
        &dir.join("1.zip"),
        epoch,
        &[
            ("bootstrap", &a.join("bootstrap")),
            ("notes", &a.join("notes")),
        ],
    );
    let second = release_zip(
        &dir.join("2.zip"),
        epoch,
        &[
            ("notes", &b.join("notes")),
            ("bootstrap", &b.join("bootstrap")),
        ],
    );
    assert_eq!(
        first, second,
        "other mtimes, modes and argument order change nothing"
    );

    let entries = zip_entries(&dir.join("1.zip"));
    let expected = serde_json::json!([
        [
            "bootstrap",
            0o100755,
            [2023, 11, 14, 22, 13, 20],
            3,
            body.len()
        ],
        ["notes", 0o100755, [2023, 11, 14, 22, 13, 20], 3, 12],
    ]);
    assert_eq!(
        entries, expected,
        "sorted, executable, stamped with the epoch in UTC"
    );

    let later = release_zip(
        &dir.join("3.zip"),
        epoch + 2,
        &[("bootstrap", &a.join("bootstrap"))],
    );
    assert_ne!(
        later,
        release_zip(
            &dir.join("4.zip"),
            epoch,
            &[("bootstrap", &a.join("bootstrap"))]
        ),
        "the epoch is what dates the entries"
    );
    let _ = fs::remove_dir_all(&dir);
}

/// (name, version) -> checksum (None for workspace crates) of every package of Cargo.lock.
fn cargo_lock() -> BTreeMap<(String, String), Option<String>> {
    let text = fs::read_to_string(e2e::root().join("Cargo.lock")).unwrap();
    let mut out = BTreeMap::new();
    for block in text.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                l.strip_prefix(&format!("{key} = \""))
                    .and_then(|v| v.strip_suffix('"'))
                    .map(str::to_owned)
            })
        };
        out.insert(
            (field("name").unwrap(), field("version").unwrap()),
            field("checksum"),
        );
    }
    out
}

fn template() -> Yaml {
    let text = fs::read_to_string(e2e::root().join("infra/template.yaml")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

/// The Binary of every AWS::Serverless::Function, read with a YAML parser.
fn template_binaries(t: &Yaml) -> BTreeSet<String> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|r| {
            assert_eq!(
                r["Metadata"]["BuildMethod"].as_str(),
                Some("rust-cargolambda")
            );
            r["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn the_release_builds_the_functions_the_template_names() {
    let out = run({
        let mut c = script("release");
        c.arg("functions");
        c
    });
    let listed: BTreeSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let binaries = template_binaries(&template());
    assert!(binaries.contains("sync-processor") && binaries.len() >= 5);
    assert_eq!(listed, binaries);
}

#[test]
fn the_release_template_points_each_function_at_its_zip_and_the_sar_files_beside_it() {
    let dir = scratch("template");
    let path = dir.join("template.yaml");
    run({
        let mut c = script("release");
        c.arg("template").arg("--out").arg(&path);
        c
    });
    let packaged: Yaml = serde_yaml_ng::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let original = template();
    let functions = packaged["Resources"].as_mapping().unwrap();
    let mut seen = 0;
    for (name, r) in functions {
        if r["Type"].as_str() != Some("AWS::Serverless::Function") {
            assert_eq!(r, &original["Resources"][name.as_str().unwrap()]);
            continue;
        }
        seen += 1;
        let binary = r["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap();
        assert_eq!(
            r["Properties"]["CodeUri"].as_str(),
            Some(format!("functions/{binary}.zip").as_str())
        );
    }
    assert_eq!(seen, template_binaries(&original).len());
    let sar = &packaged["Metadata"]["AWS::ServerlessRepo::Application"];
    assert_eq!(sar["LicenseUrl"].as_str(), Some("LICENSE"));
    assert_eq!(sar["ReadmeUrl"].as_str(), Some("README.md"));
    assert_eq!(packaged["Parameters"], original["Parameters"]);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_sbom_lists_what_the_functions_compile_as_cargo_lock_pins_it() {
    let dir = scratch("sbom");
    let sbom = |name: &str| {
        let path = dir.join(name);
        run({
            let mut c = script("release");
            c.arg("sbom")
                .arg("--out")
                .arg(&path)
                .arg("--epoch")
                .arg("0");
            c
        });
        fs::read(path).unwrap()
    };
    let bytes = sbom("a.json");
    assert_eq!(bytes, sbom("b.json"), "the same input gives the same SBOM");
    let bom: Json = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.5");
    assert!(
        bom["serialNumber"]
            .as_str()
            .unwrap()
            .starts_with("urn:uuid:")
    );
    assert_eq!(bom["metadata"]["timestamp"], "1970-01-01T00:00:00Z");
    assert_eq!(
        bom["metadata"]["component"]["version"],
        env!("CARGO_PKG_VERSION")
    );

    let lock = cargo_lock();
    let mut scope = BTreeMap::new();
    for c in bom["components"].as_array().unwrap() {
        let (name, version) = (
            c["name"].as_str().unwrap().to_owned(),
            c["version"].as_str().unwrap().to_owned(),
        );
        let key = (name.clone(), version.clone());
        let checksum = lock
            .get(&key)
            .unwrap_or_else(|| panic!("{name} {version} is not in Cargo.lock"));
        assert_eq!(
            c["purl"].as_str(),
            Some(format!("pkg:cargo/{name}@{version}").as_str())
        );
        assert_eq!(c["bom-ref"], c["purl"]);
        match checksum {
            Some(sum) => assert_eq!(
                c["hashes"][0],
                serde_json::json!({"alg": "SHA-256", "content": sum})
            ),
            None => assert!(
                c.get("hashes").is_none(),
                "{name}: a workspace crate has no registry checksum"
            ),
        }
        let licenses = c["licenses"].as_array().unwrap();
        assert_eq!(licenses.len(), 1, "{name}: one license or one expression");
        assert!(
            licenses[0]["license"]["id"].is_string() || licenses[0]["expression"].is_string(),
            "{name}: {licenses:?}"
        );
        assert!(
            scope
                .insert(name, c["scope"].as_str().unwrap().to_owned())
                .is_none()
                || lock.keys().filter(|(n, _)| n == &key.0).count() > 1,
            "{}: listed twice",
            key.0
        );
    }
    for linked in [
        "sync-processor",
        "bridge-core",
        "lambda_runtime",
        "tokio",
        "aws-sdk-kinesis",
        "aws-lc-sys",
    ] {
        assert_eq!(
            scope.get(linked).map(String::as_str),
            Some("required"),
            "{linked} is linked into the functions"
        );
    }
    // Build scripts' tools and proc macros are compiled, not shipped.
    for build_time in ["cc", "serde_derive", "syn"] {
        assert_eq!(
            scope.get(build_time).map(String::as_str),
            Some("excluded"),
            "{build_time}"
        );
    }
    // Test-only crates (dev-dependencies, the tests and the local tools) are in no function.
    for absent in ["proptest", "e2e", "devtools", "tokio-test"] {
        assert!(!scope.contains_key(absent), "{absent} is not shipped");
    }
    // Every dependency edge joins two listed components.
    let refs: BTreeSet<&str> = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["bom-ref"].as_str().unwrap())
        .collect();
    for d in bom["dependencies"].as_array().unwrap().iter().skip(1) {
        assert!(refs.contains(d["ref"].as_str().unwrap()));
        for on in d["dependsOn"].as_array().unwrap() {
            assert!(refs.contains(on.as_str().unwrap()), "{on}");
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

fn metadata_with(packages: &[(&str, &str)]) -> Json {
    let packages: Vec<Json> = packages
        .iter()
        .map(|(name, license)| {
            serde_json::json!({
                "id": format!("registry+https://github.com/rust-lang/crates.io-index#{name}@1.0.0"),
                "name": name, "version": "1.0.0", "license": license, "license_file": null,
            })
        })
        .collect();
    serde_json::json!({"packages": packages, "workspace_members": []})
}

fn license_check(metadata: &Json) -> (bool, String) {
    let dir = scratch("licenses");
    let path = dir.join("metadata.json");
    fs::write(&path, metadata.to_string()).unwrap();
    let out = script("release-licenses")
        .arg("--metadata")
        .arg(&path)
        .arg("--no-npm")
        .output()
        .unwrap();
    let _ = fs::remove_dir_all(&dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_license_check_reads_spdx_expressions_against_the_allow_list() {
    let passing = [
        ("a", "MIT"),
        ("b", "MIT OR GPL-3.0-only"),
        ("c", "(MIT OR GPL-3.0-only) AND Apache-2.0"),
        ("d", "Apache-2.0 WITH LLVM-exception"),
        ("e", "MIT/Apache-2.0"),
        ("webpki-root-certs", "CDLA-Permissive-2.0"),
    ];
    let (ok, stderr) = license_check(&metadata_with(&passing));
    assert!(ok, "{stderr}");

    for (name, license) in [
        ("copyleft", "GPL-3.0-only"),
        ("both", "MIT AND GPL-3.0-only"),
        ("grouped", "(GPL-2.0-only OR LGPL-3.0-only) AND MIT"),
        ("with", "GPL-2.0-only WITH Classpath-exception-2.0"),
        ("malformed", "MIT OR"),
        // An exception pins the expression: a changed license fails until it is looked at again.
        ("webpki-root-certs", "CDLA-Sharing-1.0"),
    ] {
        let (ok, stderr) = license_check(&metadata_with(&[("fine", "MIT"), (name, license)]));
        assert!(!ok, "{name} with {license} passed");
        assert!(
            stderr.contains(&format!("crate {name} 1.0.0: license '{license}'")),
            "{stderr}"
        );
        assert!(!stderr.contains("crate fine"), "{stderr}");
    }
}

#[test]
fn every_dependency_of_the_workspace_and_the_js_client_is_allowed() {
    let out = run(script("release-licenses"));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("every license allowed"), "{stdout}");
    // Both ecosystems were read: hundreds of crates and the npm lockfile's packages.
    let counts: Vec<usize> = stdout
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        counts.len() == 2 && counts[0] > 100 && counts[1] > 50,
        "{stdout}"
    );
}

/// `[workspace.package] version` of Cargo.toml.
fn workspace_version() -> String {
    let text = fs::read_to_string(e2e::root().join("Cargo.toml")).unwrap();
    let section = text.split("[workspace.package]").nth(1).unwrap();
    section
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap()
        .to_owned()
}

fn matches(s: &str, allowed: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.chars().all(allowed)
}

#[test]
fn the_template_carries_the_serverless_application_repository_metadata() {
    let t = template();
    let app = &t["Metadata"]["AWS::ServerlessRepo::Application"];
    assert_eq!(
        app["SemanticVersion"].as_str(),
        Some(workspace_version().as_str()),
        "SemanticVersion is Cargo.toml's workspace version"
    );
    assert_eq!(app["SpdxLicenseId"].as_str(), Some("Apache-2.0"));
    let cargo = fs::read_to_string(e2e::root().join("Cargo.toml")).unwrap();
    assert!(cargo.contains("license = \"Apache-2.0\""));

    // The fields SAR requires, with its patterns and lengths.
    let name = app["Name"].as_str().unwrap();
    assert!(name.len() <= 140 && matches(name, |c| c.is_ascii_alphanumeric() || c == '-'));
    let description = app["Description"].as_str().unwrap();
    assert!(!description.is_empty() && description.chars().count() <= 256);
    let author = app["Author"].as_str().unwrap();
    assert!(
        author.len() <= 127
            && matches(author, |c| c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == '-')
            && !author.starts_with('-')
            && !author.ends_with('-')
            && !author.contains("--")
    );
    let labels = app["Labels"].as_sequence().unwrap();
    assert!(!labels.is_empty() && labels.len() <= 10);
    for l in labels {
        let l = l.as_str().unwrap();
        assert!(
            l.len() <= 127 && matches(l, |c| c.is_ascii_alphanumeric() || "+-_:/@".contains(c))
        );
    }
    for url in ["HomePageUrl", "SourceCodeUrl"] {
        assert!(app[url].as_str().unwrap().starts_with("https://"), "{url}");
    }
    // Local files until `sam package` uploads them; relative to the template's folder.
    let infra = e2e::root().join("infra");
    let license = fs::read_to_string(infra.join(app["LicenseUrl"].as_str().unwrap())).unwrap();
    assert!(license.contains("Apache License") && license.contains("Version 2.0, January 2004"));
    assert!(infra.join(app["ReadmeUrl"].as_str().unwrap()).is_file());
    // No intrinsic function anywhere in the block (SAR does not resolve them).
    let block = serde_yaml_ng::to_string(app).unwrap();
    assert!(!block.contains('!'), "{block}");
}
