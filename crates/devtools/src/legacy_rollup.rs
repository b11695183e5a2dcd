//! The rollup's previous design, kept only so that `make bench` measures its DynamoDB cost on the same workload
//! as the current one, from that design's own planning code (`active-users` before lanes: a conditional marker
//! per actor, day, month, first sight, retention cohort and counted event, each with its counter moves in a
//! transaction; markers read first, strongly consistent; HyperLogLog sketches read and rewritten per batch). Not
//! used by any function.
#![allow(missing_docs, clippy::missing_docs_in_private_items, dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;

use active_users::activity::{Activity, Definition};

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
pub fn event_attr(origin: &str, counter: active_users::activity::Counter) -> String {
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

/// Transactions of at most 100 items (markers plus the distinct counter items they move), as the previous store
/// packed them.
pub fn pack(ops: Vec<Op>) -> Vec<Vec<Op>> {
    let mut out: Vec<Vec<Op>> = Vec::new();
    let mut current: Vec<Op> = Vec::new();
    let mut counters: BTreeSet<Key> = BTreeSet::new();
    for op in ops {
        let new_counters: BTreeSet<&Key> = op
            .increments
            .iter()
            .map(|(k, _, _)| k)
            .filter(|k| !counters.contains(*k))
            .collect();
        if !current.is_empty() && current.len() + 1 + counters.len() + new_counters.len() > 100 {
            out.push(std::mem::take(&mut current));
            counters.clear();
        }
        counters.extend(op.increments.iter().map(|(k, _, _)| k.clone()));
        current.push(op);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// What the previous design's requests cost over a sequence of batches, by DynamoDB's rules: reads of every
/// marker a batch may need (BatchGetItem, strongly consistent: 1 unit each, found or not), each transaction's
/// items (2 write units each: markers and counter items are under 1 KB), and per sketch item touched a strongly
/// consistent read and, when it changes, a write of its size (HLL_4 at lg_k 14: about 4 bytes per actor in its
/// sparse modes, 8 KiB dense).
#[derive(Debug, Default)]
pub struct LegacyModel {
    markers: HashMap<Key, Option<String>>,
    sketches: HashMap<Key, BTreeSet<String>>,
    /// The metered costs.
    pub costs: active_users::table::Costs,
}

fn sketch_bytes(actors: usize) -> usize {
    (8 + 4 * actors).min(8 * 1024 + 40)
}

impl LegacyModel {
    /// Plans and "writes" one delivered batch.
    pub fn batch(&mut self, activities: &[(usize, Activity)]) {
        let wanted = markers_to_read(activities);
        let reads = wanted.len() as f64;
        self.costs.read_units += reads;
        *self.costs.requests.entry("BatchGetItem").or_default() +=
            wanted.len().div_ceil(100) as u64;
        let known: HashMap<Key, Option<String>> = wanted
            .into_iter()
            .filter_map(|k| self.markers.get(&k).map(|v| (k.clone(), v.clone())))
            .collect();
        let ops = ops(activities, &known);
        for group in pack(ops.clone()) {
            let counters: BTreeSet<&Key> = group
                .iter()
                .flat_map(|o| o.increments.iter().map(|(k, _, _)| k))
                .collect();
            self.costs.write_units += 2 * (group.len() + counters.len()) as u64;
            *self.costs.requests.entry("TransactWriteItems").or_default() += 1;
        }
        for op in ops {
            let day = match &op.write {
                MarkerWrite::Create { day } => day.clone(),
                MarkerWrite::MoveFirstDay { to, .. } => Some(to.clone()),
            };
            self.markers.insert(op.marker, day);
        }
        for (key, (actors, _)) in sketch_updates(activities) {
            let held = self.sketches.entry(key).or_default();
            let before = held.len();
            self.costs.read_units += sketch_bytes(before).div_ceil(4096).max(1) as f64;
            *self.costs.requests.entry("GetItem").or_default() += 1;
            held.extend(actors);
            if held.len() != before {
                self.costs.write_units += sketch_bytes(held.len()).div_ceil(1024) as u64;
                *self.costs.requests.entry("PutItem").or_default() += 1;
            }
        }
    }
}
