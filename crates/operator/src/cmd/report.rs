//! `ckb report`: the active-users rollups as a table per day, and a chart (SVG) per scope (see
//! [`crate::report`]).
//!
//! `ckb report --table ROLLUP_TABLE [--scope SCOPE]... [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--out DIR]`.
//! Without `--scope`, every scope in the table (a Scan: fine locally; name the scope against a large table).
//! Without dates, the days that have counters; a scope with none in the range is left out.

use active_users::activity::Definition;
use active_users::store::RollupStore;
use chrono::NaiveDate;

/// `ckb report --help`.
pub const USAGE: &str = "\
usage: ckb report --table ROLLUP_TABLE [--scope SCOPE]... [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--out DIR]

The active-users rollups (the RollupTableName output) as a table per day on stdout, with the breakdown by
dimension of the last day, the lifecycle (new, returning, resurrecting, dormant) and new-user retention, and for
the app its sessions (started, ended, engaged, median and p90 duration) and revenue per currency; an SVG chart per
scope and definition, and a stacked lifecycle chart.

  --table NAME      the rollup table (required)
  --scope SCOPE     a scope, e.g. pool=us-east-1_EXAMPLE or app (repeatable; default: every scope, by a Scan)
  --from DAY        the first day (default: the scope's first day with counters)
  --to DAY          the last day (default: the scope's last day with counters)
  --out DIR         where the charts go (default: target/report)
";

/// What the command line says.
#[derive(Debug)]
pub struct Args {
    table: String,
    scopes: Vec<String>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    out: std::path::PathBuf,
}

/// Reads the arguments (after `report`).
pub fn parse(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        table: String::new(),
        scopes: Vec::new(),
        from: None,
        to: None,
        out: "target/report".into(),
    };
    let mut args = args;
    let date = |v: String| {
        NaiveDate::parse_from_str(&v, "%Y-%m-%d")
            .map_err(|e| format!("'{v}' is not a YYYY-MM-DD date: {e}"))
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--table" => a.table = value,
            "--scope" => a.scopes.push(value),
            "--from" => a.from = Some(date(value)?),
            "--to" => a.to = Some(date(value)?),
            "--out" => a.out = value.into(),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    if a.table.is_empty() {
        return Err("--table is required".into());
    }
    Ok(a)
}

/// Prints the tables and writes the charts.
pub async fn run(a: Args, sdk: &aws_config::SdkConfig) -> Result<(), String> {
    let store = RollupStore::on_dynamodb(
        aws_sdk_dynamodb::Client::new(sdk),
        &a.table,
        std::time::Duration::from_secs(86_400),
    );
    let all = store.scopes().await.map_err(|e| e.to_string())?;
    let scopes: Vec<String> = if a.scopes.is_empty() {
        all.keys().cloned().collect()
    } else {
        a.scopes.clone()
    };
    if scopes.is_empty() {
        return Err(format!("no rollups in {} yet", a.table));
    }
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    for scope in scopes {
        let days: Vec<NaiveDate> = all
            .get(&scope)
            .map(|d| d.iter().copied().collect())
            .unwrap_or_default();
        let (Some(first), Some(last)) = (days.first(), days.last()) else {
            continue;
        };
        let (from, to) = (a.from.unwrap_or(*first), a.to.unwrap_or(*last));
        // A scope with no counters in the range has nothing to show.
        if !days.iter().any(|d| (from..=to).contains(d)) {
            continue;
        }
        let definitions: &[Definition] = if scope == "app" {
            &[
                Definition::SessionUsers,
                Definition::SessionDevices,
                Definition::PayingUsers,
            ]
        } else {
            &[Definition::Authenticating]
        };
        for definition in definitions {
            let (rows, month) = crate::report::rows(&store, *definition, &scope, from, to)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "\n{scope}, {} ({from} to {to}; month to date {month})",
                definition.as_str()
            );
            print!("{}", crate::report::table(&rows));
            let by = crate::report::breakdown(&store, *definition, &scope, to)
                .await
                .map_err(|e| e.to_string())?;
            if !by.is_empty() {
                println!("by dimension, {to}:");
                print!("{}", crate::report::breakdown_table(&by));
            }
            let title = format!("{scope} {}", definition.as_str());
            let svg = crate::report::chart_svg(&title, &rows).map_err(|e| e.to_string())?;
            let file: String = format!("{scope}-{}", definition.as_str())
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let path = a.out.join(format!("{file}.svg"));
            std::fs::write(&path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("chart: {}", path.display());
            // The lifecycle (new, returning, resurrecting, dormant) and new-user retention, and its chart.
            let stages = crate::report::lifecycle_rows(&store, *definition, &scope, from, to)
                .await
                .map_err(|e| e.to_string())?;
            println!("lifecycle, {}:", definition.as_str());
            print!("{}", crate::report::lifecycle_table(&stages));
            let svg = crate::report::lifecycle_svg(&title, &stages).map_err(|e| e.to_string())?;
            let path = a.out.join(format!("{file}-lifecycle.svg"));
            std::fs::write(&path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("chart: {}", path.display());
        }
        if scope == "app" {
            let rows = crate::report::app_rows(&store, from, to)
                .await
                .map_err(|e| e.to_string())?;
            println!("\napp sessions and revenue ({from} to {to}):");
            print!("{}", crate::report::app_table(&rows));
        }
    }
    Ok(())
}
