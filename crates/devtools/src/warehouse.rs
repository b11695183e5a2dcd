//! The warehouse bucket's layout, as the template's Firehose delivery writes it (`EnableWarehouseDelivery`): per
//! record family a prefix, per event UTC day a `dt=YYYY-MM-DD/` partition (Firehose's dynamic partitioning on the
//! record's `timestamp`), objects of GZIP JSON lines. Written to a local folder for the embedded SQL engine
//! (`scripts/sql`): by the SQL tests from generated events, by the demo from what its streams carry.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use serde_json::Value;

/// The warehouse prefix of a record's family, by its `schema`.
pub fn prefix(schema: &str) -> Option<&'static str> {
    match schema {
        "app-event/v1" => Some("app-event/"),
        "cognito-auth-event/v1" => Some("cognito-auth-event/"),
        "cognito-sync-change/v1" => Some("cognito-sync-change/"),
        _ => None,
    }
}

/// Writes `docs` under `root` as Firehose delivers them: per family and event day, objects of at most
/// `per_object` records. Returns the GZIP bytes written per family prefix.
pub fn write(
    root: &Path,
    docs: &[Value],
    per_object: usize,
) -> Result<BTreeMap<&'static str, u64>, String> {
    let mut by: BTreeMap<(&'static str, String), Vec<&Value>> = BTreeMap::new();
    for d in docs {
        let schema = d["schema"].as_str().unwrap_or_default();
        let family = prefix(schema).ok_or_else(|| format!("no warehouse family for {schema:?}"))?;
        let dt = d["timestamp"]
            .as_str()
            .and_then(|t| t.get(..10))
            .ok_or_else(|| format!("a {schema} record without a timestamp"))?
            .to_owned();
        by.entry((family, dt)).or_default().push(d);
    }
    let mut bytes = BTreeMap::new();
    for ((family, dt), docs) in by {
        let dir = root.join(family).join(format!("dt={dt}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (n, chunk) in docs.chunks(per_object.max(1)).enumerate() {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            for d in chunk {
                serde_json::to_writer(&mut gz, d).map_err(|e| e.to_string())?;
                gz.write_all(b"\n").map_err(|e| e.to_string())?;
            }
            let body = gz.finish().map_err(|e| e.to_string())?;
            *bytes.entry(family).or_default() += body.len() as u64;
            let path = dir.join(format!("part-{n:04}.gz"));
            std::fs::write(&path, body).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(bytes)
}
