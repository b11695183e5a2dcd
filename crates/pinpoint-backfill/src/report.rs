//! What a run shows: a progress line while it runs (objects, records and bytes done, the rate and an ETA), and a
//! summary at the end: a table per event family (read, written, skipped, dead-lettered), the objects, the time
//! span covered and why records were skipped.

use std::fmt::Write as _;
use std::time::Duration;

use crate::map::{Counts, FAMILIES, Tally};
use crate::run::{EARLIER_COUNTS_READ, Outcome, Progress};

/// Bytes in a human unit.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A duration as `1h02m`, `3m05s` or `12s`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3_600 {
        format!("{}h{:02}m", s / 3_600, s / 60 % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The progress line: `objects 12/340 (3%) | records 120,340 | 45.2 MiB/1.2 GiB | 3.1 MiB/s | ETA 6m12s`. The
/// rate and the ETA are this run's bytes over its time (objects done by earlier runs are not counted in the rate).
pub fn progress_line(p: &Progress, elapsed: Duration) -> String {
    let pct = (p.bytes_done * 100)
        .checked_div(p.bytes_total)
        .unwrap_or(100);
    let mut line = format!(
        "objects {}/{} ({pct}%) | records {} | {}/{}",
        p.objects_done,
        p.objects_total,
        thousands(p.records),
        bytes(p.bytes_done),
        bytes(p.bytes_total)
    );
    let secs = elapsed.as_secs_f64();
    if p.bytes_this_run > 0 && secs > 0.0 {
        let rate = p.bytes_this_run as f64 / secs;
        let left = p.bytes_total.saturating_sub(p.bytes_done) as f64 / rate;
        let _ = write!(
            line,
            " | {}/s | ETA {}",
            bytes(rate as u64),
            duration(Duration::from_secs_f64(left.min(1e9)))
        );
    }
    line
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn table(out: &mut String, title: &str, counts: &Counts) {
    let _ = writeln!(out, "{title}");
    let _ = writeln!(
        out,
        "  {:<20} {:>12} {:>12} {:>12} {:>14}",
        "family", "read", "written", "skipped", "dead-lettered"
    );
    let row = |out: &mut String, name: &str, t: &Tally| {
        let _ = writeln!(
            out,
            "  {:<20} {:>12} {:>12} {:>12} {:>14}",
            name,
            thousands(t.read),
            thousands(t.written),
            thousands(t.skipped),
            thousands(t.dead_lettered)
        );
    };
    for f in FAMILIES {
        if let Some(t) = counts.families.get(f) {
            row(out, f, t);
        }
    }
    row(out, "all", &counts.total());
}

/// The summary printed at the end of a run.
pub fn summary(o: &Outcome) -> String {
    let mut out = String::new();
    let verb = if o.dry_run {
        "pinpoint-backfill (dry run: nothing was written; \"written\" is what would be)"
    } else {
        "pinpoint-backfill"
    };
    let _ = writeln!(out, "{verb}, run {}", o.run_id);
    table(&mut out, "this run:", &o.counts);
    if o.objects.done_earlier > 0 && o.earlier_not_read {
        let _ = writeln!(
            out,
            "finished by earlier runs: {} objects (more than {EARLIER_COUNTS_READ} checkpoints: their counts stay in \
             them, not read at each start)",
            o.objects.done_earlier
        );
    } else if o.objects.done_earlier > 0 {
        table(
            &mut out,
            "finished by earlier runs (from their checkpoints):",
            &o.earlier,
        );
    }
    let mut all = o.counts.clone();
    all.add(&o.earlier);
    // (With the earlier counts not read, the span and the reasons below are this run's.)
    match (&all.first, &all.last) {
        (Some(f), Some(l)) => {
            let _ = writeln!(out, "time span written: {f} .. {l}");
        }
        _ => {
            let _ = writeln!(out, "time span written: none");
        }
    }
    let b = &o.objects;
    let _ = writeln!(
        out,
        "objects: {} listed, {} data ({}), {} read by this run ({}), {} finished earlier, {} under an error \
         prefix (skipped), {} empty or folders, {} before --from by their key",
        b.listed,
        b.data,
        bytes(b.data_bytes),
        b.read,
        bytes(b.bytes_read),
        b.done_earlier,
        b.error_objects,
        b.empty,
        b.before_range
    );
    if b.archived > 0 {
        let _ = writeln!(
            out,
            "{} objects are in an archive storage class (Glacier, Deep Archive, an Intelligent-Tiering archive tier): \
             not read and not checkpointed; restore them and run again",
            b.archived
        );
    }
    if b.cut > 0 {
        let _ = writeln!(
            out,
            "{} objects are larger than --max-object-bytes: read up to it (the rest dead-lettered) and not \
             checkpointed; run again with a larger limit",
            b.cut
        );
    }
    if !all.notes.is_empty() {
        let _ = writeln!(out, "notes:");
        for (note, n) in &all.notes {
            let _ = writeln!(out, "  {:>10}  {note}", thousands(*n));
        }
    }
    if !all.skipped_why.is_empty() {
        let _ = writeln!(out, "skipped:");
        for (why, n) in &all.skipped_why {
            let _ = writeln!(out, "  {:>10}  {why}", thousands(*n));
        }
    }
    match &o.stopped {
        Some(why) => {
            let _ = writeln!(
                out,
                "stopped before the end ({why}): run the same command again to resume"
            );
        }
        None if !o.dry_run && o.objects.archived + o.objects.cut == 0 => {
            let _ = writeln!(out, "done: every data object is checkpointed");
        }
        None if !o.dry_run => {
            let _ = writeln!(
                out,
                "done, but for the archived or cut objects above: run again once they can be read"
            );
        }
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(duration(Duration::from_secs(3_725)), "1h02m");
        assert_eq!(duration(Duration::from_secs(185)), "3m05s");
    }

    #[test]
    fn the_progress_line_has_an_eta_from_this_runs_rate() {
        let p = Progress {
            objects_done: 3,
            objects_total: 10,
            bytes_done: 3 * 1024 * 1024,
            bytes_total: 10 * 1024 * 1024,
            bytes_this_run: 2 * 1024 * 1024,
            records: 12_000,
        };
        let line = progress_line(&p, Duration::from_secs(2));
        assert_eq!(
            line,
            "objects 3/10 (30%) | records 12,000 | 3.0 MiB/10.0 MiB | 1.0 MiB/s | ETA 7s"
        );
    }

    #[test]
    fn the_summary_has_a_row_per_family_and_the_span() {
        let mut o = Outcome::default();
        o.counts.family("_session.*").read = 5;
        o.counts.family("_session.*").written = 4;
        o.counts.family("_email.*").read = 2;
        o.counts.family("_email.*").skipped = 2;
        o.counts.span("2026-10-01T00:00:00.000Z");
        o.counts.span("2026-10-29T23:00:00.000Z");
        let s = summary(&o);
        assert!(s.contains("_session.*"), "{s}");
        assert!(s.contains("_email.*"), "{s}");
        assert!(
            s.contains("2026-10-01T00:00:00.000Z .. 2026-10-29T23:00:00.000Z"),
            "{s}"
        );
        assert!(s.contains("done: every data object is checkpointed"), "{s}");
    }
}
