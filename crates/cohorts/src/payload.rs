//! The records put on the cohort stream, in the shape of Amplitude's Amazon Kinesis (Cohort) destination
//! (amplitude.com/docs/data/destination-catalog/amazon-kinesis-cohort): `cohort_name`, `cohort_id`, `in_cohort`,
//! `computed_time` (epoch seconds, as a string), `message_id`, `users` (`user_id`, `user_properties`). Pure.
//!
//! **Batches.** A run's joins (or leaves) of one cohort are sorted by user id and cut, in that order, into records
//! of at most [`MAX_USERS_PER_RECORD`] users and [`MAX_RECORD_BYTES`] bytes (data and partition key): a user is
//! never split across records. So the same changes always make the same records.
//!
//! **Message ids** are a hash of the cohort id, the as-of day, `in_cohort` and the record's user ids: a run that
//! put a record and then failed before recording the change puts the same record, with the same id, next time
//! (if the same users changed), and a consumer that keeps the ids it has applied drops the repeat.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

/// Users per record: Amplitude's own default batch of its cohort syncs (1,000 users a request;
/// amplitude.com/docs/partners/receiving-behavioral-cohorts).
pub const MAX_USERS_PER_RECORD: usize = 1_000;
/// Bytes of one record, data and partition key: Kinesis takes 1 MiB
/// ([`bridge_core::producer::MAX_RECORD_BYTES`]); a margin of 64 KiB is left.
pub const MAX_RECORD_BYTES: usize = bridge_core::producer::MAX_RECORD_BYTES - 64 * 1024;

/// One user of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// The actor: a user sub (`authenticating_users`), an install or user id (the app definitions).
    pub user_id: String,
    /// The allowed dimension values of the actor's latest day.
    pub user_properties: BTreeMap<String, String>,
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// The cohort's name.
    pub cohort_name: String,
    /// The cohort's id (also the record's partition key).
    pub cohort_id: String,
    /// Whether these users joined (`true`) or left (`false`).
    pub in_cohort: bool,
    /// The run's time, epoch seconds, as a string (Amplitude's choice: no float precision loss).
    pub computed_time: String,
    /// Deterministic id of the record.
    pub message_id: String,
    /// The users.
    pub users: Vec<User>,
}

/// The message id of a record: the cohort, the as-of day, the run's time (`computed_time`: the schedule's event
/// time, the same when Lambda retries that event), the direction and the users. A later run's change gets its own
/// id, so a consumer that drops ids it applied never drops a user's rejoin after a leave on one day.
pub fn message_id(
    cohort_id: &str,
    as_of: NaiveDate,
    computed_time: &str,
    in_cohort: bool,
    users: &[User],
) -> String {
    let day = as_of.format("%Y-%m-%d").to_string();
    let mut parts: Vec<&str> = vec![
        cohort_id,
        &day,
        computed_time,
        if in_cohort { "in" } else { "out" },
    ];
    parts.extend(users.iter().map(|u| u.user_id.as_str()));
    bridge_core::envelope::event_id(&parts)
}

/// The bytes of a JSON value, as serde_json writes it.
fn json_len<T: Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(0, |v| v.len())
}

/// Cuts `users` (sorted here by user id) into the records of one cohort and direction.
pub fn batches(
    cohort_name: &str,
    cohort_id: &str,
    in_cohort: bool,
    as_of: NaiveDate,
    computed_time: &str,
    mut users: Vec<User>,
) -> Vec<Message> {
    users.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    let empty = Message {
        cohort_name: cohort_name.to_owned(),
        cohort_id: cohort_id.to_owned(),
        in_cohort,
        computed_time: computed_time.to_owned(),
        // The id's length is fixed: a placeholder of its size.
        message_id: "0".repeat(32),
        users: Vec::new(),
    };
    // The record without users, and its partition key.
    let base = json_len(&empty) + cohort_id.len();
    let mut out = Vec::new();
    let mut current: Vec<User> = Vec::new();
    let mut size = base;
    for user in users {
        let entry = json_len(&user);
        // A comma before every user but the first.
        if !current.is_empty()
            && (current.len() == MAX_USERS_PER_RECORD || size + entry + 1 > MAX_RECORD_BYTES)
        {
            out.push(std::mem::take(&mut current));
            size = base;
        }
        size += entry + usize::from(!current.is_empty());
        current.push(user);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out.into_iter()
        .map(|users| Message {
            message_id: message_id(cohort_id, as_of, computed_time, in_cohort, &users),
            users,
            ..empty.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn user(i: usize, property_bytes: usize) -> User {
        User {
            user_id: format!("user-{i:06}"),
            user_properties: (0..8)
                .map(|p| (format!("p{p}"), "x".repeat(property_bytes)))
                .collect(),
        }
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
    }

    #[test]
    fn records_hold_at_most_the_user_cap_sorted_and_in_order() {
        let users: Vec<User> = (0..2_345).rev().map(|i| user(i, 0)).collect();
        let records = batches("n", "n-1", true, day(), "1", users);
        assert_eq!(
            records.iter().map(|r| r.users.len()).collect::<Vec<_>>(),
            vec![1_000, 1_000, 345]
        );
        let ids: Vec<&str> = records
            .iter()
            .flat_map(|r| r.users.iter().map(|u| u.user_id.as_str()))
            .collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(ids, sorted);
        assert_eq!(ids.len(), 2_345);
    }

    #[test]
    fn records_stay_under_the_byte_cap_with_every_user_whole() {
        // 8 properties of 200 bytes: about 1.7 KB a user, so the byte cap binds before the user cap.
        let users: Vec<User> = (0..1_500).map(|i| user(i, 200)).collect();
        let one = json_len(&users[0]);
        let records = batches("n", "n-1", false, day(), "1", users);
        assert!(records.len() >= 3, "{}", records.len());
        for r in &records {
            let bytes = serde_json::to_vec(r).unwrap().len() + r.cohort_id.len();
            assert!(bytes <= MAX_RECORD_BYTES, "{bytes}");
            // Full: one more user would not have fit (the last record aside).
            if r.users.len() < MAX_USERS_PER_RECORD && !std::ptr::eq(r, records.last().unwrap()) {
                assert!(bytes + one + 1 > MAX_RECORD_BYTES, "{bytes}");
            }
        }
        assert_eq!(records.iter().map(|r| r.users.len()).sum::<usize>(), 1_500);
    }

    #[test]
    fn message_ids_are_deterministic_and_differ_by_cohort_day_direction_and_users() {
        let users: Vec<User> = (0..3).map(|i| user(i, 1)).collect();
        let a = batches("n", "n-1", true, day(), "1", users.clone());
        // The same run (Lambda retrying the same scheduled event) in any user order: the same id.
        let b = batches(
            "n",
            "n-1",
            true,
            day(),
            "1",
            users.iter().rev().cloned().collect(),
        );
        assert_eq!(a[0].message_id, b[0].message_id);
        assert_eq!(a[0].message_id.len(), 32);
        let other = [
            message_id("n-2", day(), "1", true, &users),
            message_id("n-1", day().succ_opt().unwrap(), "1", true, &users),
            message_id("n-1", day(), "1", false, &users),
            message_id("n-1", day(), "1", true, &users[..2]),
            message_id("n-1", day(), "2", true, &users),
        ];
        for id in other {
            assert_ne!(id, a[0].message_id);
        }
        assert!(batches("n", "n-1", true, day(), "1", Vec::new()).is_empty());
    }

    #[test]
    fn the_record_has_amplitudes_field_names_and_types() {
        let mut u = user(1, 0);
        u.user_properties = BTreeMap::from([("platform".into(), "ios".into())]);
        let r = &batches(
            "active_7d",
            "active_7d-0a1b2c3d",
            true,
            day(),
            "1795132800",
            vec![u],
        )[0];
        let v = serde_json::to_value(r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"cohort_name": "active_7d", "cohort_id": "active_7d-0a1b2c3d", "in_cohort": true,
                "computed_time": "1795132800", "message_id": r.message_id,
                "users": [{"user_id": "user-000001", "user_properties": {"platform": "ios"}}]})
        );
    }

    /// Claim broken (docs/cohorts.md, "Exactly what is sent" and "Histories as stored": a change taken back moves a
    /// user in and, a run later, out again, "each move is still sent as a change, so the consumer ends where the
    /// table ends"; "a consumer that remembers the ids it applied drops the repeat").
    /// Input: cohort `new_7d-1`, as-of day 2026-11-20, user `u`: an hourly run sends `u` joining (a lane's
    /// uncommitted history change made `u` new), the next run of the day sends `u` leaving (the change was taken
    /// back), and a later run of the same day sends `u` joining again (its redelivery committed the day). The third
    /// record is a new change, but its message id is the first one's: the consumer the docs describe drops it as a
    /// repeat and ends with `u` out of the cohort, while the membership items (the table) say `u` is in.
    #[test]
    fn attack_a_rejoin_on_the_same_day_reuses_the_first_joins_message_id() {
        let u = || vec![user(7, 0)];
        let join = batches("new_7d", "new_7d-1", true, day(), "1795154400", u());
        let leave = batches("new_7d", "new_7d-1", false, day(), "1795158000", u());
        let rejoin = batches("new_7d", "new_7d-1", true, day(), "1795161600", u());
        // The consumer of the docs: applies a record unless it applied its message id before.
        let mut applied = std::collections::BTreeSet::new();
        let mut member = false;
        for r in [&join[0], &leave[0], &rejoin[0]] {
            if applied.insert(r.message_id.clone()) {
                member = r.in_cohort;
            }
        }
        assert!(
            member,
            "after join, leave, join of one day the consumer has the user out: the rejoin's id {} is the first \
             join's {}",
            rejoin[0].message_id, join[0].message_id
        );
    }
}
