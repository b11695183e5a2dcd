//! From a batch's activities to the writes that make the rollups exact: markers written once, with a condition,
//! and the counters they move. Pure: the store reads what exists and carries the writes out.
//!
//! **Layout** (one table, `pk` and `sk` strings):
//! - `active#<definition>#<scope>#<YYYY-MM-DD>` / actor: the actor was active that day (daily actives);
//! - `active#<definition>#<scope>#<YYYY-MM>` / actor: active that calendar month (month-to-date actives);
//! - `first#<definition>#<scope>` / actor, with `day`: the first day the actor was seen (new users);
//! - `retained#<definition>#<scope>#<YYYY-MM-DD>` / actor: the actor, active that day, was active again within
//!   the next 7 days (7-day retention of that day's cohort, Pinpoint's definition);
//! - `event#<event id>` / `-`: the event was counted (a redelivered event counts once); expires after a while;
//! - `count#<scope>` / `<YYYY-MM-DD>` or `<YYYY-MM>`: counters `<definition>.active`, `<definition>.new`,
//!   `<definition>.retained7`, `<origin>.<counter>`;
//! - `sketch#<definition>#<scope>#<dimension>` / `<YYYY-MM-DD>`: a HyperLogLog sketch of the day's actors,
//!   `all` or one `name=value` dimension (see [`crate::sketch`]);
//! - `dims#<definition>#<scope>` / `-`: the set of `name=value` dimensions that have sketches.
//!
//! A counter moves in the same transaction as the marker that justifies it, so a counter is exactly the
//! number of its markers; at most one marker write per (actor, period), never one per event.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;

use crate::activity::{Activity, Definition};

/// An item's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Partition key.
    pub pk: String,
    /// Sort key.
    pub sk: String,
}

impl Key {
    fn new(pk: String, sk: impl Into<String>) -> Self {
        Self { pk, sk: sk.into() }
    }
}

/// `YYYY-MM-DD`.
pub fn day_label(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// `YYYY-MM`.
pub fn month_label(day: NaiveDate) -> String {
    day.format("%Y-%m").to_string()
}

/// The daily marker of an actor.
pub fn day_marker(definition: Definition, scope: &str, day: NaiveDate, actor: &str) -> Key {
    Key::new(
        format!("active#{}#{scope}#{}", definition.as_str(), day_label(day)),
        actor,
    )
}

/// The calendar-month marker of an actor.
pub fn month_marker(definition: Definition, scope: &str, day: NaiveDate, actor: &str) -> Key {
    Key::new(
        format!(
            "active#{}#{scope}#{}",
            definition.as_str(),
            month_label(day)
        ),
        actor,
    )
}

/// The first-seen marker of an actor.
pub fn first_marker(definition: Definition, scope: &str, actor: &str) -> Key {
    Key::new(format!("first#{}#{scope}", definition.as_str()), actor)
}

/// Days after a cohort's day within which a return counts for 7-day retention.
pub const RETENTION_DAYS: i64 = 7;

/// The retention marker of an actor in a day's cohort.
pub fn retained_marker(definition: Definition, scope: &str, cohort: NaiveDate, actor: &str) -> Key {
    Key::new(
        format!(
            "retained#{}#{scope}#{}",
            definition.as_str(),
            day_label(cohort)
        ),
        actor,
    )
}

/// The counter attribute of a cohort's actors who came back within [`RETENTION_DAYS`].
pub fn retained_attr(definition: Definition) -> String {
    format!("{}.retained7", definition.as_str())
}

fn days_around(day: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    (-RETENTION_DAYS..=RETENTION_DAYS)
        .filter(|d| *d != 0)
        .filter_map(move |d| day.checked_add_signed(chrono::Duration::days(d)))
}

/// The marker of a counted event.
pub fn event_marker(event_id: &str) -> Key {
    Key::new(format!("event#{event_id}"), "-")
}

/// The counter item of a scope and period label.
pub fn counter_item(scope: &str, period: &str) -> Key {
    Key::new(format!("count#{scope}"), period)
}

/// The counter attribute of active actors by a definition.
pub fn active_attr(definition: Definition) -> String {
    format!("{}.active", definition.as_str())
}

/// The counter attribute of new actors by a definition.
pub fn new_attr(definition: Definition) -> String {
    format!("{}.new", definition.as_str())
}

/// The counter attribute of an event counter from an origin.
pub fn event_attr(origin: &str, counter: crate::activity::Counter) -> String {
    format!("{origin}.{}", counter.as_str())
}

/// The sketch item of a definition, scope, dimension (`all` or `name=value`) and day.
pub fn sketch_item(definition: Definition, scope: &str, dimension: &str, day: NaiveDate) -> Key {
    Key::new(
        format!("sketch#{}#{scope}#{dimension}", definition.as_str()),
        day_label(day),
    )
}

/// The item listing the dimension values (`name=value`) that have sketches, per definition and scope: a
/// string set, added to when a value's first sketch of a day is written.
pub fn dimension_index(definition: Definition, scope: &str) -> Key {
    Key::new(format!("dims#{}#{scope}", definition.as_str()), "-")
}

/// The definition, scope and dimension of a sketch item's key.
pub fn sketch_parts(key: &Key) -> Option<(&str, &str, &str)> {
    let mut parts = key.pk.splitn(4, '#');
    (parts.next() == Some("sketch")).then_some(())?;
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// What to write to a marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkerWrite {
    /// Create it, only if it does not exist; with a `day` attribute when given (first-seen markers).
    Create {
        /// The first day, for a first-seen marker.
        day: Option<String>,
    },
    /// Move a first-seen marker to an earlier day (a late event), only if it still holds `from`.
    MoveFirstDay {
        /// The day it holds.
        from: String,
        /// The earlier day.
        to: String,
    },
}

/// One conditional marker write and the counter moves it justifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The marker.
    pub marker: Key,
    /// What to write.
    pub write: MarkerWrite,
    /// (counter item, attribute, amount).
    pub increments: Vec<(Key, String, i64)>,
    /// The batch records (by index) that need it.
    pub records: Vec<usize>,
}

/// What the store knows of the markers a batch may need.
pub trait Known {
    /// Whether the marker exists.
    fn exists(&self, key: &Key) -> bool;
    /// The `day` of a first-seen marker that exists.
    fn first_day(&self, key: &Key) -> Option<String>;
}

impl Known for HashMap<Key, Option<String>> {
    fn exists(&self, key: &Key) -> bool {
        self.contains_key(key)
    }

    fn first_day(&self, key: &Key) -> Option<String> {
        self.get(key).cloned().flatten()
    }
}

/// Every marker the batch may write: what the store must read first.
pub fn markers_to_read(activities: &[(usize, Activity)]) -> BTreeSet<Key> {
    let mut keys = BTreeSet::new();
    for (_, a) in activities {
        if !a.counters.is_empty() {
            keys.insert(event_marker(&a.event_id));
        }
        for active in &a.actives {
            for scope in &a.scopes {
                keys.insert(day_marker(active.definition, scope, a.day, &active.actor));
                keys.insert(month_marker(active.definition, scope, a.day, &active.actor));
                keys.insert(first_marker(active.definition, scope, &active.actor));
                // For retention: the actor's days around this one, and the cohorts it may complete.
                for other in days_around(a.day) {
                    keys.insert(day_marker(active.definition, scope, other, &active.actor));
                }
                for cohort in days_around(a.day).filter(|c| *c < a.day).chain([a.day]) {
                    keys.insert(retained_marker(
                        active.definition,
                        scope,
                        cohort,
                        &active.actor,
                    ));
                }
            }
        }
    }
    keys
}

/// (definition, scope, actor).
type ActorKey = (Definition, String, String);

/// The marker writes of a batch, given what exists.
pub fn ops(activities: &[(usize, Activity)], known: &impl Known) -> Vec<Op> {
    let mut out: BTreeMap<Key, Op> = BTreeMap::new();
    let mut need = |marker: Key, write: MarkerWrite, increments: Vec<(Key, String, i64)>, i| {
        out.entry(marker.clone())
            .or_insert_with(|| Op {
                marker,
                write,
                increments,
                records: Vec::new(),
            })
            .records
            .push(i);
    };
    // First days per (definition, scope, actor): the earliest day of the batch.
    let mut first: BTreeMap<ActorKey, (NaiveDate, Vec<usize>)> = BTreeMap::new();
    // Days of the batch per (definition, scope, actor), each with its records.
    let mut batch_days: BTreeMap<ActorKey, BTreeMap<NaiveDate, Vec<usize>>> = BTreeMap::new();
    for (i, a) in activities {
        let event = event_marker(&a.event_id);
        if !a.counters.is_empty() && !known.exists(&event) {
            let increments = a
                .scopes
                .iter()
                .flat_map(|scope| {
                    a.counters.iter().map(move |c| {
                        (
                            counter_item(scope, &day_label(a.day)),
                            event_attr(&a.origin, *c),
                            1,
                        )
                    })
                })
                .collect();
            need(event, MarkerWrite::Create { day: None }, increments, *i);
        }
        for active in &a.actives {
            let d = active.definition;
            for scope in &a.scopes {
                let day = day_marker(d, scope, a.day, &active.actor);
                batch_days
                    .entry((d, scope.clone(), active.actor.clone()))
                    .or_default()
                    .entry(a.day)
                    .or_default()
                    .push(*i);
                if !known.exists(&day) {
                    let inc = vec![(counter_item(scope, &day_label(a.day)), active_attr(d), 1)];
                    need(day, MarkerWrite::Create { day: None }, inc, *i);
                }
                let month = month_marker(d, scope, a.day, &active.actor);
                if !known.exists(&month) {
                    let inc = vec![(counter_item(scope, &month_label(a.day)), active_attr(d), 1)];
                    need(month, MarkerWrite::Create { day: None }, inc, *i);
                }
                let entry = first
                    .entry((d, scope.clone(), active.actor.clone()))
                    .or_insert((a.day, Vec::new()));
                entry.0 = entry.0.min(a.day);
                entry.1.push(*i);
            }
        }
    }
    // 7-day retention: an active day X completes the cohorts of the actor's active days in X-7..X-1, and its own
    // cohort when the actor is active in X+1..X+7 (a late event can come after its return). Every active day of
    // the batch is judged, not only one whose day marker is new: a redelivery after a partial write (the day
    // marker written, the retention marker's transaction failed, throttled or its process killed) must still
    // write the retention marker. A retention marker that exists is skipped, so nothing counts twice.
    for ((d, scope, actor), days) in &batch_days {
        let active_on = |day: NaiveDate| {
            days.contains_key(&day) || known.exists(&day_marker(*d, scope, day, actor))
        };
        for (x, records) in days {
            let back = days_around(*x).filter(|c| c < x && active_on(*c));
            let own = days_around(*x)
                .any(|y| y > *x && active_on(y))
                .then_some(*x);
            for cohort in back.chain(own) {
                let marker = retained_marker(*d, scope, cohort, actor);
                if known.exists(&marker) {
                    continue;
                }
                let op = out.entry(marker.clone()).or_insert_with(|| Op {
                    marker,
                    write: MarkerWrite::Create { day: None },
                    increments: vec![(
                        counter_item(scope, &day_label(cohort)),
                        retained_attr(*d),
                        1,
                    )],
                    records: Vec::new(),
                });
                op.records.extend(records);
            }
        }
    }
    for ((d, scope, actor), (day, records)) in first {
        let marker = first_marker(d, &scope, &actor);
        let label = day_label(day);
        let op = if !known.exists(&marker) {
            Some(Op {
                marker,
                write: MarkerWrite::Create {
                    day: Some(label.clone()),
                },
                increments: vec![(counter_item(&scope, &label), new_attr(d), 1)],
                records,
            })
        } else {
            match known.first_day(&marker) {
                // A late event from before the day the actor was first seen: the actor is new on that day.
                Some(from) if label < from => Some(Op {
                    increments: vec![
                        (counter_item(&scope, &from), new_attr(d), -1),
                        (counter_item(&scope, &label), new_attr(d), 1),
                    ],
                    marker,
                    write: MarkerWrite::MoveFirstDay { from, to: label },
                    records,
                }),
                _ => None,
            }
        };
        if let Some(op) = op {
            out.insert(op.marker.clone(), op);
        }
    }
    out.into_values().collect()
}

/// The actors of a batch per sketch item: every active actor, under `all` and under each of its dimensions.
pub fn sketch_updates(
    activities: &[(usize, Activity)],
) -> BTreeMap<Key, (BTreeSet<String>, Vec<usize>)> {
    let mut out: BTreeMap<Key, (BTreeSet<String>, Vec<usize>)> = BTreeMap::new();
    for (i, a) in activities {
        for active in &a.actives {
            for scope in &a.scopes {
                let dims = std::iter::once("all".to_owned())
                    .chain(a.dimensions.iter().map(|(n, v)| format!("{n}={v}")));
                for dim in dims {
                    let entry = out
                        .entry(sketch_item(active.definition, scope, &dim, a.day))
                        .or_default();
                    entry.0.insert(active.actor.clone());
                    entry.1.push(*i);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::{Active, Counter};

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    fn sign_in(event_id: &str, sub: &str, d: u32) -> Activity {
        Activity {
            event_id: event_id.into(),
            day: day(d),
            scopes: vec!["pool=p/client=c".into(), "pool=p".into()],
            actives: vec![Active {
                definition: Definition::Authenticating,
                actor: sub.into(),
            }],
            dimensions: vec![("platform".into(), "ios".into())],
            counters: vec![Counter::SignIns],
            origin: "trigger".into(),
        }
    }

    fn total(ops: &[Op], item: &Key, attr: &str) -> i64 {
        ops.iter()
            .flat_map(|o| &o.increments)
            .filter(|(k, a, _)| k == item && a == attr)
            .map(|(_, _, n)| n)
            .sum()
    }

    #[test]
    fn repeats_in_a_batch_write_each_marker_once_and_count_each_user_once() {
        let batch: Vec<(usize, Activity)> = vec![
            (0, sign_in("e1", "alice", 3)),
            (1, sign_in("e2", "alice", 3)),
            (2, sign_in("e2", "alice", 3)), // the same event, delivered twice
            (3, sign_in("e3", "bob", 3)),
        ];
        let ops = ops(&batch, &HashMap::new());
        let pool_day = counter_item("pool=p", "2026-11-03");
        assert_eq!(total(&ops, &pool_day, "authenticating_users.active"), 2);
        assert_eq!(total(&ops, &pool_day, "authenticating_users.new"), 2);
        assert_eq!(total(&ops, &pool_day, "trigger.sign_ins"), 3);
        assert_eq!(
            total(
                &ops,
                &counter_item("pool=p", "2026-11"),
                "authenticating_users.active"
            ),
            2
        );
        // 3 events + 2 users x 2 scopes x (day, month, first) markers.
        assert_eq!(ops.len(), 3 + 12);
        let e2 = ops.iter().find(|o| o.marker == event_marker("e2")).unwrap();
        assert_eq!(e2.records, vec![1, 2]);
    }

    #[test]
    fn what_exists_is_not_written_again() {
        let batch = vec![(0, sign_in("e1", "alice", 3))];
        let mut known: HashMap<Key, Option<String>> = markers_to_read(&batch)
            .into_iter()
            .map(|k| (k, None))
            .collect();
        known.insert(
            first_marker(Definition::Authenticating, "pool=p", "alice"),
            Some("2026-11-01".into()),
        );
        known.insert(
            first_marker(Definition::Authenticating, "pool=p/client=c", "alice"),
            Some("2026-11-01".into()),
        );
        assert!(ops(&batch, &known).is_empty());
    }

    #[test]
    fn a_late_event_moves_the_first_day_back_and_the_new_user_with_it() {
        let batch = vec![(0, sign_in("e9", "alice", 2))];
        let mut known: HashMap<Key, Option<String>> = HashMap::new();
        let marker = first_marker(Definition::Authenticating, "pool=p", "alice");
        known.insert(marker.clone(), Some("2026-11-05".into()));
        let ops = ops(&batch, &known);
        let moved = ops.iter().find(|o| o.marker == marker).unwrap();
        assert_eq!(
            moved.write,
            MarkerWrite::MoveFirstDay {
                from: "2026-11-05".into(),
                to: "2026-11-02".into()
            }
        );
        assert_eq!(
            total(
                &ops,
                &counter_item("pool=p", "2026-11-05"),
                "authenticating_users.new"
            ),
            -1
        );
        assert_eq!(
            total(
                &ops,
                &counter_item("pool=p", "2026-11-02"),
                "authenticating_users.new"
            ),
            1
        );
        // It counts as active on its own day, not on the day it arrived.
        assert_eq!(
            total(
                &ops,
                &counter_item("pool=p", "2026-11-02"),
                "authenticating_users.active"
            ),
            1
        );
    }

    #[test]
    fn a_return_within_seven_days_retains_the_cohort_once_whatever_the_order() {
        let retained = |ops: &[Op], cohort: u32| {
            total(
                ops,
                &counter_item("pool=p", &day_label(day(cohort))),
                "authenticating_users.retained7",
            )
        };
        // Days 1, 3 and 12 in one batch: day 1's cohort is retained (day 3), day 3's is not (12 is 9 days on).
        let batch = vec![
            (0, sign_in("e1", "alice", 1)),
            (1, sign_in("e2", "alice", 3)),
            (2, sign_in("e3", "alice", 12)),
        ];
        let all = ops(&batch, &HashMap::new());
        assert_eq!(retained(&all, 1), 1);
        assert_eq!(retained(&all, 3), 0);
        assert_eq!(retained(&all, 12), 0);
        // The same days one batch at a time, the return first and the cohort's day late: the same result.
        let mut known: HashMap<Key, Option<String>> = HashMap::new();
        let mut moved = 0;
        for i in [1usize, 2, 0] {
            let one = vec![batch[i].clone()];
            let ops = ops(&one, &known);
            moved += retained(&ops, 1) + retained(&ops, 3) + retained(&ops, 12);
            for op in ops {
                known.insert(op.marker, None);
            }
        }
        assert_eq!(moved, 1);
        // A redelivery after a partial write: the day markers landed, the retention marker did not (its
        // transaction failed). The redelivered batch writes it, once.
        let mut partial = known.clone();
        partial.remove(&retained_marker(
            Definition::Authenticating,
            "pool=p",
            day(1),
            "alice",
        ));
        assert!(partial.contains_key(&day_marker(
            Definition::Authenticating,
            "pool=p",
            day(3),
            "alice"
        )));
        for one in [
            vec![batch[0].clone()],
            vec![batch[1].clone()],
            batch.clone(),
        ] {
            let redone = ops(&one, &partial);
            assert_eq!(retained(&redone, 1), 1, "{one:?}");
            assert_eq!(retained(&redone, 3) + retained(&redone, 12), 0);
        }
        // A redelivery moves nothing.
        let again = ops(&batch, &known);
        assert!(again.iter().all(|o| {
            o.increments
                .iter()
                .all(|(_, a, _)| !a.ends_with("retained7"))
        }));
    }

    #[test]
    fn sketches_get_every_actor_under_all_and_each_dimension() {
        let batch = vec![(0, sign_in("e1", "alice", 3)), (1, sign_in("e2", "bob", 3))];
        let updates = sketch_updates(&batch);
        let all = sketch_item(Definition::Authenticating, "pool=p", "all", day(3));
        let ios = sketch_item(Definition::Authenticating, "pool=p", "platform=ios", day(3));
        assert_eq!(updates[&all].0.len(), 2);
        assert_eq!(updates[&ios].0.len(), 2);
        assert_eq!(updates.len(), 4);
    }
}
