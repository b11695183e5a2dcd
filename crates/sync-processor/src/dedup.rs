//! The dedup rule for Cognito Sync changes (DESIGN.md §3.2).
//!
//! A change is identified by (identity pool, identity, dataset, key). Its high-water mark is the
//! `(syncCount, server lastModifiedDate)` of the newest change forwarded for that key. A dataset removal has
//! a mark of its own per (pool, identity, dataset): the removal's `(dataset syncCount, lastModifiedDate)`.
//!
//! A candidate change is classified against the key's mark `m` and the dataset's removal mark `r`:
//!
//! 1. If the candidate's server time is clearly before a known removal (`c.time + skew < r.time`), it belongs
//!    to a removed generation of the dataset: **stale**. A change stamped at, or up to the skew before, the
//!    removal is given the benefit of the doubt and judged by the rules below: if it was the old generation's,
//!    it was forwarded before with the same `event_id` and collapses downstream; if it was the new
//!    generation's, dropping it would be a silent loss.
//! 2. No mark: **forward**.
//! 3. Same sync count and the same server time: the same update again: **duplicate**. (Exactly the pairs that
//!    share an `event_id`, which hashes both; a same-count update with another time is judged below.)
//! 4. The mark predates a known removal and the candidate follows it (rule 1 passed): a new generation,
//!    whose sync counts may have started over: **forward**.
//! 5. Higher sync count and a server time not clearly older than the mark: the same generation, newer:
//!    **forward**.
//! 6. Sync count not higher, but a server time clearly later than the mark (by more than the skew): a new
//!    generation whose removal we never saw (the stream was off, or the removal was dead-lettered): **forward**.
//!    A plain high-water mark would drop this whole generation as stale, silently.
//! 7. Anything else is an older version of the key: **stale** (a bulk-publish replay that arrived after a
//!    newer live update, or an update of a removed generation with a higher sync count).
//!
//! Within one generation, Cognito raises the sync count by one per update and stamps the server time, so both
//! grow together; the skew allowance only keeps millisecond clock differences between Cognito's servers from
//! turning a newer update into a stale one. The cost of the rule: a dataset removed and re-created, and
//! written again, all within the skew, with its removal unseen, could be taken for the old generation.

use bridge_core::dedup::Mark;

/// How far Cognito servers' clocks may disagree, in ms, when comparing the times of two updates.
pub const SERVER_CLOCK_SKEW_MS: i64 = 1_000;

/// The longest dedup key kept readable; longer keys are hashed (a DynamoDB key is at most 2,048 bytes).
const MAX_READABLE_KEY_BYTES: usize = 1_024;

/// What to do with a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Newer than anything forwarded for its key.
    Forward,
    /// The same change again.
    Duplicate,
    /// Older than what was forwarded.
    Stale,
}

/// The dedup key of a record change.
pub fn record_key(pool: &str, identity: &str, dataset: &str, key: &str) -> String {
    bounded(format!("{pool}|{identity}|{dataset}|k:{key}"))
}

/// The dedup key of a dataset's removal mark.
pub fn dataset_key(pool: &str, identity: &str, dataset: &str) -> String {
    bounded(format!("{pool}|{identity}|{dataset}|dataset"))
}

fn bounded(key: String) -> String {
    if key.len() <= MAX_READABLE_KEY_BYTES {
        key
    } else {
        format!(
            "sha256:{}",
            bridge_core::envelope::sha256_hex(key.as_bytes())
        )
    }
}

/// Classifies a record change `c` against its key's mark and the dataset's removal mark.
pub fn classify_change(mark: Option<Mark>, removal: Option<Mark>, c: Mark) -> Verdict {
    if removal.is_some_and(|r| c.modified_ms + SERVER_CLOCK_SKEW_MS < r.modified_ms) {
        return Verdict::Stale;
    }
    let Some(m) = mark else {
        return Verdict::Forward;
    };
    if c == m {
        return Verdict::Duplicate;
    }
    if removal.is_some_and(|r| m.modified_ms <= r.modified_ms) {
        return Verdict::Forward;
    }
    if c.version > m.version && c.modified_ms + SERVER_CLOCK_SKEW_MS >= m.modified_ms {
        return Verdict::Forward;
    }
    if c.version <= m.version && c.modified_ms > m.modified_ms + SERVER_CLOCK_SKEW_MS {
        return Verdict::Forward;
    }
    Verdict::Stale
}

/// Classifies a dataset removal `c` against the dataset's removal mark: removals are ordered by server time.
pub fn classify_removal(removal: Option<Mark>, c: Mark) -> Verdict {
    match removal {
        None => Verdict::Forward,
        Some(r) if r == c => Verdict::Duplicate,
        Some(r) if c.modified_ms > r.modified_ms => Verdict::Forward,
        Some(_) => Verdict::Stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::*;

    const T: i64 = 1_700_000_000_000;
    fn m(version: i64, at: i64) -> Mark {
        Mark {
            version,
            modified_ms: at,
        }
    }

    #[test]
    fn first_change_is_forwarded_and_repeats_are_duplicates() {
        assert_eq!(classify_change(None, None, m(1, T)), Forward);
        assert_eq!(classify_change(Some(m(3, T)), None, m(3, T)), Duplicate);
    }

    #[test]
    fn higher_sync_count_is_newer_and_lower_is_stale() {
        assert_eq!(
            classify_change(Some(m(3, T)), None, m(4, T + 5_000)),
            Forward
        );
        // Clock skew between servers does not make a newer update stale.
        assert_eq!(classify_change(Some(m(3, T)), None, m(4, T - 400)), Forward);
        // A bulk-publish replay of an older version after the live update.
        assert_eq!(
            classify_change(Some(m(5, T)), None, m(4, T - 60_000)),
            Stale
        );
    }

    #[test]
    fn generation_after_a_seen_removal_is_forwarded_even_with_lower_counts() {
        let removal = Some(m(9, T + 10_000));
        assert_eq!(
            classify_change(Some(m(8, T)), removal, m(1, T + 10_001)),
            Forward
        );
        // A replay from the removed generation is stale, whatever its sync count.
        assert_eq!(
            classify_change(Some(m(1, T + 20_000)), removal, m(8, T)),
            Stale
        );
        assert_eq!(classify_change(None, removal, m(12, T + 8_999)), Stale);
    }

    #[test]
    fn a_change_within_the_skew_of_a_seen_removal_is_forwarded_not_lost() {
        let removal = Some(m(9, T + 10_000));
        // Stamped at the removal, or up to the skew before it: it may be the new generation's first update.
        assert_eq!(classify_change(None, removal, m(1, T + 10_000)), Forward);
        assert_eq!(classify_change(None, removal, m(1, T + 9_000)), Forward);
        assert_eq!(
            classify_change(Some(m(8, T)), removal, m(1, T + 9_500)),
            Forward
        );
        assert_eq!(classify_change(None, removal, m(1, T + 8_999)), Stale);
    }

    #[test]
    fn duplicates_are_exactly_the_changes_that_share_an_event_id() {
        // Same count and time: same event id, a duplicate.
        assert_eq!(classify_change(Some(m(3, T)), None, m(3, T)), Duplicate);
        // Same count, another time within the skew: another event id, so not a duplicate; within one
        // generation it cannot be newer, so it is stale, and never forwarded twice under two ids.
        assert_eq!(classify_change(Some(m(3, T)), None, m(3, T + 400)), Stale);
        assert_eq!(classify_change(Some(m(3, T)), None, m(3, T - 400)), Stale);
    }

    #[test]
    fn generation_after_an_unseen_removal_is_forwarded() {
        // Old generation reached sync count 8; the dataset was removed (we never saw it) and re-created.
        assert_eq!(
            classify_change(Some(m(8, T)), None, m(1, T + 3_600_000)),
            Forward
        );
        // Once the new generation's mark is in, the old generation's higher counts are stale.
        assert_eq!(
            classify_change(Some(m(1, T + 3_600_000)), None, m(8, T)),
            Stale
        );
        assert_eq!(
            classify_change(Some(m(2, T + 3_600_000)), None, m(7, T + 100)),
            Stale
        );
    }

    #[test]
    fn removals_are_ordered_by_server_time() {
        assert_eq!(classify_removal(None, m(3, T)), Forward);
        assert_eq!(classify_removal(Some(m(3, T)), m(3, T)), Duplicate);
        assert_eq!(classify_removal(Some(m(3, T)), m(1, T + 1)), Forward);
        assert_eq!(classify_removal(Some(m(3, T)), m(5, T - 1)), Stale);
    }

    #[test]
    fn keys_are_readable_and_bounded() {
        assert_eq!(record_key("p", "i", "d", "k"), "p|i|d|k:k");
        assert_eq!(dataset_key("p", "i", "d"), "p|i|d|dataset");
        let long = record_key("p", "i", "d", &"x".repeat(2_000));
        assert!(long.starts_with("sha256:") && long.len() == 71, "{long}");
        assert_ne!(
            record_key("p", "i", "d", "dataset"),
            dataset_key("p", "i", "d")
        );
    }
}
