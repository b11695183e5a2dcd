//! From a lane's batch of activities and the histories of their actors to what changes: the histories to write,
//! the counter deltas the lane commits, and the events whose counting waits on an event marker. Pure: the store
//! reads what exists and carries the writes out (`crate::store`).
//!
//! **Layout** (one table, `pk` and `sk` strings; `<lane>` is the lane's id, see [`crate::lane`]):
//! - `h#<group>#<actor>` / `-`: the actor's [`History`] (`auth`: a user sub; `app`: an install or a device);
//! - `ev#<event id>` / `-`: an event counted by marker (`by`: the lane and position that wrote it; expires after
//!   the replay window);
//! - `c#<scope>#<YYYY-MM-DD>` / `<lane>`: the lane's counters of that day (summed over lanes on read);
//! - `lane#<lane>` / `-`: the lane's committed position and the days it has not published yet;
//! - `lanedims#<lane>` / `-`: the dimension values the lane counts by name (capped; past it, `other`).
//!
//! **Counters of a day** (attributes of `c#…`): `<definition>.active` (actors whose first activity of the day this
//! was), `.new` (first ever), `.month_active` (first of the calendar month, on the day it happened: a month's sum
//! is its actives), `.retained7` (on the cohort's day: active that day and again within the next 7), `.w7` and
//! `.w30.<k>` (rolling windows: an actor's presence in day T's window, T-n+1..=T, that this day's activity adds
//! runs from this day for k+1 days; the rolling actives of T are the runs that start in T-n+1..=T and reach T,
//! [`rolling`]), `<origin>.<counter>` event counts, and `dim|<definition>|<name>=<value>` actives per dimension
//! value.
//!
//! Nothing is shared between lanes: every counter item has one writer, the lane; a history is written by the lanes
//! whose records carry its actor, which the streams' partition keys make one lane (a user sub on the auth event
//! stream, an install on the app event stream; only a device used by several installs is written by several
//! lanes, under an optimistic version check, never a transaction).

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

use crate::activity::{Activity, Definition};
use crate::history::{self, History, Undo, minus, plus};
use crate::lane::{LaneState, Position};

/// Days after a cohort's day within which a return counts for 7-day retention.
pub const RETENTION_DAYS: i64 = 7;
/// New-user retention: the days after an actor's first day on which being active counts
/// (`<definition>.new_retained<n>` on the first day).
pub const NEW_USER_RETENTION: [i64; 3] = [1, 7, 30];
/// The rolling windows, in days.
pub const WINDOWS: [(i64, &str); 2] = [(7, "w7"), (30, "w30")];
/// Distinct values a lane counts per (definition, scope, dimension); past it, `other`.
pub const DIMENSION_VALUES_CAP: usize = 100;
/// (definition, scope, dimension) slots one lane's registry holds; a value of a further slot counts as `other`.
pub const REGISTRY_SLOTS_CAP: usize = 256;
/// Values one lane's registry holds over all its slots; past it, new values count as `other`. With
/// [`REGISTRY_SLOTS_CAP`] and values kept as 16-digit tags, the registry item stays far under 400 KB
/// ([`registry_size_bound`]) whatever the values are.
pub const REGISTRY_VALUES_CAP: usize = 4_000;
/// The value counted past the cap.
pub const OTHER: &str = "other";
/// Scopes one history keeps per definition (a pool and its clients); an actor on more clients is counted in the
/// pool and in the first clients only (app clients are created by the pool's owner, not by users).
pub const SCOPES_PER_ACTOR: usize = 16;

/// Sessions an install's history remembers (the latest by day and id; 8 + 5 bytes each, 8 more until engaged).
pub const SESSIONS_PER_ACTOR: usize = 8;
/// Dimension values one history remembers, over all its (definition, scope)s, for their latest day; past it, an
/// actor's further values are not counted (a client sending a new app version with every event cannot grow the
/// item).
pub const DIMS_PER_ACTOR: usize = 64;
/// Lanes whose last write a history remembers ([`History::undo`]): a lane settles every other lane's record before
/// it writes ([`History::settled`]: committed ones dropped, uncommitted ones waited for or taken back), so a
/// history holds its last writer's record only; two with room (past it, another lane's record is dropped).
pub const UNDO_LANES: usize = 2;

/// The prefix of a day's dimension counters: `dim|<definition>|<name>=<value>` (actives with that value).
pub const DIM: &str = "dim|";

/// A history's key: (group, actor). Groups: `auth` (the authenticating definition), `app` (the session ones).
pub type ActorKey = (&'static str, String);

/// The group a definition's histories live in.
pub fn group(definition: Definition) -> &'static str {
    match definition {
        Definition::Authenticating => "auth",
        Definition::SessionUsers | Definition::SessionDevices | Definition::PayingUsers => "app",
    }
}

/// `YYYY-MM-DD`.
pub fn day_label(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// A lane item's counters: which item, by kind (`c`: a day's counters), scope and day.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Item {
    /// `c` or `d`.
    pub kind: char,
    /// The scope.
    pub scope: String,
    /// The day.
    pub day: NaiveDate,
}

impl Item {
    /// The item's partition key (its sort key is the lane).
    pub fn pk(&self) -> String {
        format!("{}#{}#{}", self.kind, self.scope, day_label(self.day))
    }
}

/// Counter moves, per item and attribute.
pub type Deltas = BTreeMap<Item, BTreeMap<String, i64>>;

fn add(deltas: &mut Deltas, kind: char, scope: &str, day: NaiveDate, attr: String, n: i64) {
    let v = deltas
        .entry(Item {
            kind,
            scope: scope.to_owned(),
            day,
        })
        .or_default()
        .entry(attr)
        .or_default();
    // Saturating: amounts (revenue) come from clients; a day's sum past i64 stays at its bound, never wraps.
    *v = v.saturating_add(n);
}

/// Adds `more` into `into`.
pub fn merge(into: &mut Deltas, more: &Deltas) {
    for (item, attrs) in more {
        let target = into.entry(item.clone()).or_default();
        for (attr, n) in attrs {
            let v = target.entry(attr.clone()).or_default();
            *v = v.saturating_add(*n);
        }
    }
}

/// An event whose counting waits on its marker: counted if this lane creates the marker (or wrote it for a
/// position it has not committed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerWait {
    /// The event's id.
    pub event_id: String,
    /// The record's position.
    pub position: Position,
    /// The record's index in the batch.
    pub record: usize,
    /// What counting it moves.
    pub deltas: Deltas,
}

/// What a batch changes.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The histories that change: the new state, and what this lane changed (for [`History::undo`]).
    pub histories: BTreeMap<ActorKey, History>,
    /// The counter moves the lane commits whatever the markers say.
    pub deltas: Deltas,
    /// Events counted only if their marker says so.
    pub markers: Vec<MarkerWait>,
    /// The lane's dimension registry, when it gained values.
    pub dimension_values: Option<BTreeMap<String, BTreeSet<String>>>,
    /// Records per history (for failing them should its write fail).
    pub records: BTreeMap<ActorKey, Vec<usize>>,
}

/// The rolling actives of `on` over a window of `n` days, from the `<definition>.w<n>.<k>` runs of the days
/// `on-n+1..=on` (`day_counters` gives each day's summed counters).
pub fn rolling(
    definition: Definition,
    n: i64,
    on: NaiveDate,
    day_counters: impl Fn(NaiveDate) -> BTreeMap<String, i64>,
) -> i64 {
    let prefix = format!("{}.w{n}.", definition.as_str());
    (0..n)
        .map(|back| {
            let start = minus(on, back);
            day_counters(start)
                .iter()
                .filter_map(|(attr, count)| {
                    let span: i64 = attr.strip_prefix(&prefix)?.parse().ok()?;
                    (span >= back).then_some(*count)
                })
                .sum::<i64>()
        })
        .sum()
}

/// The counted-id form of an event id: 64 bits of its hash (whatever the id looks like: a collision between two
/// events of one actor and day is a chance of one in 2^64 per pair).
pub fn short_id(event_id: &str) -> String {
    bridge_core::envelope::event_id(&["counted", event_id])[..16].to_owned()
}

/// The settings a plan needs.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Today (UTC): counted ids older than the replay window are dropped from histories.
    pub today: NaiveDate,
    /// The replay window, in days: how long a repeat of an event may come after it.
    pub replay_days: i64,
    /// Distinct dimension values per (definition, scope, dimension) and lane.
    pub dimension_values_cap: usize,
    /// When the invocation ends at the latest (unix seconds): stored with each history write
    /// ([`crate::history::Undo::until`]).
    pub until: i64,
}

/// The lane's dimension registry while planning: per slot (`<definition>|<scope>|<name>`) the tags
/// ([`value_tag`]) of the values it counts by name.
struct Registry {
    slots: BTreeMap<String, BTreeSet<String>>,
    values: usize,
    grew: bool,
    cap: usize,
}

impl Registry {
    fn new(slots: &BTreeMap<String, BTreeSet<String>>, cap: usize) -> Self {
        Self {
            values: slots.values().map(BTreeSet::len).sum(),
            slots: slots.clone(),
            grew: false,
            cap,
        }
    }

    /// The value as counted: itself when the registry holds it or takes it in, else [`OTHER`].
    fn admit<'v>(&mut self, slot: String, value: &'v str) -> &'v str {
        let tag = value_tag(value);
        let full = self.values >= REGISTRY_VALUES_CAP;
        let slots = self.slots.len();
        match self.slots.get_mut(&slot) {
            Some(tags) if tags.contains(&tag) => value,
            Some(tags) if tags.len() < self.cap && !full => {
                tags.insert(tag);
                self.values += 1;
                self.grew = true;
                value
            }
            None if slots < REGISTRY_SLOTS_CAP && !full && self.cap > 0 => {
                self.slots.insert(slot, BTreeSet::from([tag]));
                self.values += 1;
                self.grew = true;
                value
            }
            _ => OTHER,
        }
    }
}

/// A dimension value as the registry keeps it: 64 bits of its hash.
pub fn value_tag(value: &str) -> String {
    bridge_core::envelope::event_id(&["dimension", value])[..16].to_owned()
}

/// What one transition moves: a (definition, scope) of an actor newly active on `day`, given its days before.
fn transition(
    deltas: &mut Deltas,
    definition: Definition,
    scope: &str,
    day: NaiveDate,
    days: &history::Days,
    first: Option<NaiveDate>,
) -> Option<NaiveDate> {
    let d = definition.as_str();
    add(deltas, 'c', scope, day, format!("{d}.active"), 1);
    if !days.other_in_month(day) {
        add(deltas, 'c', scope, day, format!("{d}.month_active"), 1);
    }
    let new_first = match first {
        None => {
            add(deltas, 'c', scope, day, format!("{d}.new"), 1);
            Some(day)
        }
        Some(f) if day < f => {
            add(deltas, 'c', scope, f, format!("{d}.new"), -1);
            add(deltas, 'c', scope, day, format!("{d}.new"), 1);
            Some(day)
        }
        Some(_) => None,
    };
    // 7-day retention: the cohorts of the 7 days before that had not returned yet, and this day's own cohort if a
    // later day within 7 is already known (a late event).
    for back in 1..=RETENTION_DAYS {
        let cohort = minus(day, back);
        if days.has(cohort) && !days.any_in(plus(cohort, 1), plus(cohort, RETENTION_DAYS), day) {
            add(deltas, 'c', scope, cohort, format!("{d}.retained7"), 1);
        }
    }
    if days.any_in(plus(day, 1), plus(day, RETENTION_DAYS), day) {
        add(deltas, 'c', scope, day, format!("{d}.retained7"), 1);
    }
    // Rolling windows: the actor is in day T's window of n days when active in T-n+1..=T. This day adds the days
    // of day..day+n-1 that no other active day covered: one run, from after the last earlier coverage to before
    // the next active day.
    for (n, name) in WINDOWS {
        let start = (1..n)
            .find(|b| days.has(minus(day, *b)))
            .map_or(day, |b| plus(day, n - b));
        let end = (1..n)
            .find(|a| days.has(plus(day, *a)))
            .map_or(plus(day, n - 1), |a| plus(day, a - 1));
        if start <= end {
            let span = (end - start).num_days();
            add(deltas, 'c', scope, start, format!("{d}.{name}.{span}"), 1);
        }
    }
    let mut after = days.clone();
    after.set(day);
    lifecycle(
        deltas,
        d,
        scope,
        (days, first),
        (&after, new_first.or(first)),
        day,
    );
    new_first
}

/// An actor's lifecycle stage on a day (PostHog's, by day): `None` when it was neither active that day nor the
/// day before. `new` is the `.new` counter; the other three are counted as `<definition>.<stage>`.
pub fn stage(
    days: &history::Days,
    first: Option<NaiveDate>,
    on: NaiveDate,
) -> Option<&'static str> {
    let before = days.has(minus(on, 1)) && minus(on, 1) != on;
    if days.has(on) {
        Some(if first == Some(on) {
            "new"
        } else if before {
            "returning"
        } else {
            "resurrecting"
        })
    } else if before {
        Some("dormant")
    } else {
        None
    }
}

/// The lifecycle stages and new-user retention a newly active `day` moves: every stage that depends on it (its
/// own day's, the next day's, and the days of the first day before and after) is counted again from the history
/// before and after, the difference moved. New-user retention (`<definition>.new_retained<n>`, on the first day):
/// the actor's first day, and whether it was active `n` days later.
fn lifecycle(
    deltas: &mut Deltas,
    d: &str,
    scope: &str,
    before: (&history::Days, Option<NaiveDate>),
    after: (&history::Days, Option<NaiveDate>),
    day: NaiveDate,
) {
    let mut on: BTreeSet<NaiveDate> = BTreeSet::from([day, plus(day, 1)]);
    on.extend(before.1);
    on.extend(after.1);
    for when in &on {
        let (was, is) = (
            stage(before.0, before.1, *when),
            stage(after.0, after.1, *when),
        );
        if was == is {
            continue;
        }
        for (s, n) in [(was, -1), (is, 1)] {
            if let Some(s) = s.filter(|s| *s != "new") {
                add(deltas, 'c', scope, *when, format!("{d}.{s}"), n);
            }
        }
    }
    for first in before.1.into_iter().chain(after.1).collect::<BTreeSet<_>>() {
        for n in NEW_USER_RETENTION {
            let held = |(days, f): (&history::Days, Option<NaiveDate>)| {
                f == Some(first) && days.has(plus(first, n))
            };
            let moved = i64::from(held(after)) - i64::from(held(before));
            if moved != 0 {
                add(
                    deltas,
                    'c',
                    scope,
                    first,
                    format!("{d}.new_retained{n}"),
                    moved,
                );
            }
        }
    }
}

/// Plans a lane's batch. `histories` are the actors' histories as stored, with this lane's uncommitted change
/// already taken back; `activities` are the batch's records past the lane's committed position, in order.
pub fn plan(
    activities: &[(usize, Position, Activity)],
    histories: &BTreeMap<ActorKey, History>,
    lane: &LaneState,
    rules: &Rules,
) -> Plan {
    let mut out = Plan::default();
    let mut working: BTreeMap<ActorKey, History> = BTreeMap::new();
    let mut undo: BTreeMap<ActorKey, Undo> = BTreeMap::new();
    let mut registry = Registry::new(&lane.dimension_values, rules.dimension_values_cap);
    let last = activities
        .last()
        .map(|(_, p, _)| p.clone())
        .unwrap_or_default();
    // Events already waiting on their marker: a repeat in the same batch waits on nothing (the marker's writer is
    // the first, and only it counts).
    let mut waiting: BTreeSet<String> = BTreeSet::new();
    for (record, position, a) in activities {
        let mut transitioned_primary = false;
        let mut primary: Option<ActorKey> = None;
        let mut deltas = Deltas::new();
        for active in &a.actives {
            let key: ActorKey = (group(active.definition), active.actor.clone());
            primary.get_or_insert_with(|| key.clone());
            let h = working
                .entry(key.clone())
                .or_insert_with(|| histories.get(&key).cloned().unwrap_or_default());
            let u = undo.entry(key.clone()).or_default();
            out.records.entry(key.clone()).or_default().push(*record);
            let d = active.definition.as_str();
            let kept_scopes = h
                .days
                .keys()
                .filter(|(def, _)| *def == active.definition)
                .count();
            for scope in &a.scopes {
                let hk = (active.definition, scope.clone());
                if !h.days.contains_key(&hk) && kept_scopes >= SCOPES_PER_ACTOR {
                    continue;
                }
                let days = h.days.entry(hk.clone()).or_default();
                if !days.has(a.day) {
                    let first = h.first.get(&hk).copied();
                    let before = days.clone();
                    let new_first =
                        transition(&mut deltas, active.definition, scope, a.day, &before, first);
                    if let Some(days) = h.days.get_mut(&hk) {
                        days.set(a.day);
                    }
                    u.days.push((hk.clone(), a.day));
                    if let Some(f) = new_first {
                        h.first.insert(hk.clone(), f);
                        // One record per key: what it was before this lane's write, and what it is after.
                        match u.first.iter_mut().find(|(k, _, _)| *k == hk) {
                            Some(entry) => entry.2 = f,
                            None => u.first.push((hk.clone(), first, f)),
                        }
                    }
                    if primary.as_ref() == Some(&key) {
                        transitioned_primary = true;
                    }
                    // A new day for this (definition, scope): its dimension values count, even a late day's.
                    count_dims(&mut deltas, d, scope, a, h, u, &mut registry, true);
                } else {
                    count_dims(&mut deltas, d, scope, a, h, u, &mut registry, false);
                }
            }
        }
        // A session's stop counts once per session in the install's history (no event marker), when tracked.
        let mut by_session = false;
        if let Some(mark) = &a.session {
            let key: ActorKey = ("app", mark.install.clone());
            let h = working
                .entry(key.clone())
                .or_insert_with(|| histories.get(&key).cloned().unwrap_or_default());
            let u = undo.entry(key.clone()).or_default();
            if let Tracking::Tracked(true) = track_session(&mut deltas, a, mark, h, u) {
                let records = out.records.entry(key).or_default();
                if records.last() != Some(record) {
                    records.push(*record);
                }
            }
            // Tracked or not, a session's stop never counts by its event id: an untracked session may be one the
            // history counted and then dropped (its stop sent again must not count twice).
            by_session = mark.stop;
        }
        // The event's own counters: once per event id.
        if !a.counters.is_empty() && !by_session {
            let mut counted = Deltas::new();
            for scope in &a.scopes {
                count_event(&mut counted, a, scope);
            }
            let id = short_id(&a.event_id);
            let seen = primary.as_ref().is_some_and(|k| {
                working
                    .get(k)
                    .and_then(|h| h.counted.get(&a.day))
                    .is_some_and(|ids| ids.contains(&id))
            });
            if seen {
                // A repeat of the event that made the day active: counted with it already.
            } else if transitioned_primary && let Some(k) = &primary {
                // The event that made the day active is remembered in the history it changed: no marker.
                if let Some(h) = working.get_mut(k) {
                    h.counted.entry(a.day).or_default().insert(id.clone());
                }
                undo.entry(k.clone()).or_default().counted.push((a.day, id));
                merge(&mut deltas, &counted);
            } else if waiting.insert(a.event_id.clone()) {
                out.markers.push(MarkerWait {
                    event_id: a.event_id.clone(),
                    position: position.clone(),
                    record: *record,
                    deltas: counted,
                });
            }
        }
        merge(&mut out.deltas, &deltas);
    }
    let oldest = minus(rules.today, rules.replay_days);
    for (key, mut h) in working {
        let u = undo.remove(&key).unwrap_or_default();
        if u.is_empty() {
            continue;
        }
        h.prune(oldest);
        while h.undo.len() >= UNDO_LANES {
            let Some(other) = h.undo.keys().find(|l| **l != lane.lane).cloned() else {
                break;
            };
            h.undo.remove(&other);
        }
        h.undo.insert(
            lane.lane.clone(),
            Undo {
                position: last.clone(),
                until: rules.until,
                ..u
            },
        );
        out.histories.insert(key, h);
    }
    out.records.retain(|k, _| out.histories.contains_key(k));
    if registry.grew {
        out.dimension_values = Some(registry.slots);
    }
    out
}

/// The counter of engaged sessions (on the session's day).
pub const ENGAGED_SESSIONS: &str = "app.engaged_sessions";

/// Whether a session's history took an event in.
enum Tracking {
    /// The session is older than every one the full history remembers: not tracked (nothing of it counts).
    Untracked,
    /// Tracked; whether the history changed.
    Tracked(bool),
}

/// Takes an event of an install's session into the install's history: the session's first stop counts it ended (the
/// activity's counters and amounts: sessions ended, the duration bucket) whatever the stops' event ids; a second
/// distinct view or a duration over 10 s counts it engaged, once, on its day. The history keeps the install's latest
/// [`SESSIONS_PER_ACTOR`] sessions by (day, id); once full, a session older than all of them is not tracked (neither
/// its end nor its engagement counts, a documented limit), so a session dropped from the history never counts twice.
fn track_session(
    deltas: &mut Deltas,
    a: &Activity,
    mark: &crate::activity::SessionMark,
    h: &mut History,
    u: &mut Undo,
) -> Tracking {
    use crate::history::Session;
    let before = h.sessions.get(&mark.id).cloned();
    let mut after = before.clone().unwrap_or(Session {
        day: mark.day,
        ..Session::default()
    });
    if !after.engaged {
        if mark.long {
            after.engaged = true;
        } else if let Some(view) = &mark.view {
            match &after.first_view {
                Some(first) if first != view => after.engaged = true,
                Some(_) => {}
                None => after.first_view = Some(view.clone()),
            }
        }
        if after.engaged {
            after.first_view = None;
        }
    }
    after.ended |= mark.stop;
    if before.as_ref() == Some(&after) {
        return Tracking::Tracked(false);
    }
    if before.is_none() && h.sessions.len() >= SESSIONS_PER_ACTOR {
        let Some((oldest, state)) = h
            .sessions
            .iter()
            .min_by(|x, y| (x.1.day, x.0).cmp(&(y.1.day, y.0)))
            .map(|(k, v)| (k.clone(), v.clone()))
        else {
            return Tracking::Untracked;
        };
        if (after.day, &mark.id) < (state.day, &oldest) {
            return Tracking::Untracked;
        }
        h.sessions.remove(&oldest);
        note_session(u, &oldest, Some(state), None);
    }
    let was = before.clone().unwrap_or_default();
    for scope in &a.scopes {
        if after.engaged && !was.engaged {
            add(
                deltas,
                'c',
                scope,
                after.day,
                ENGAGED_SESSIONS.to_owned(),
                1,
            );
        }
        if after.ended && !was.ended {
            count_event(deltas, a, scope);
        }
    }
    h.sessions.insert(mark.id.clone(), after.clone());
    note_session(u, &mark.id, before, Some(after));
    Tracking::Tracked(true)
}

/// The event's own counters and amounts in `scope`, on its day: `<origin>.<counter>` by 1, `<origin>.<amount>`.
fn count_event(deltas: &mut Deltas, a: &Activity, scope: &str) {
    for c in &a.counters {
        add(
            deltas,
            'c',
            scope,
            a.day,
            format!("{}.{}", a.origin, c.as_str()),
            1,
        );
    }
    for (attr, n) in &a.amounts {
        add(
            deltas,
            'c',
            scope,
            a.day,
            format!("{}.{attr}", a.origin),
            *n,
        );
    }
}

/// Records a session change in the lane's undo record: the state before its first change, the latest after.
fn note_session(
    u: &mut Undo,
    id: &str,
    before: Option<crate::history::Session>,
    after: Option<crate::history::Session>,
) {
    match u.sessions.iter().position(|(k, _, _)| k == id) {
        // A session this write added and then dropped again: nothing to take back (the record stays at most two
        // per remembered session: the ones it replaced and the ones it set).
        Some(i) if u.sessions[i].1.is_none() && after.is_none() => {
            u.sessions.remove(i);
        }
        Some(i) => u.sessions[i].2 = after,
        None => u.sessions.push((id.to_owned(), before, after)),
    }
}

/// Counts the activity's dimension values for (definition, scope) on its day: each value once per actor and day.
/// The history remembers the latest day's values per (definition, scope); a late day's values count only when the
/// late day is new for the actor (`new_day`): values of an older day already active cannot be told apart
/// (documented limit).
#[allow(clippy::too_many_arguments)]
fn count_dims(
    deltas: &mut Deltas,
    definition: &str,
    scope: &str,
    a: &Activity,
    h: &mut History,
    u: &mut Undo,
    registry: &mut Registry,
    new_day: bool,
) {
    if a.dimensions.is_empty() {
        return;
    }
    let Some(hk) = crate::activity::Definition::ALL
        .into_iter()
        .find(|d| d.as_str() == definition)
        .map(|d| (d, scope.to_owned()))
    else {
        return;
    };
    let latest = h.dims.get(&hk).and_then(|d| d.day);
    if latest.is_some_and(|l| a.day < l) && !new_day {
        return;
    }
    let before = h.dims.get(&hk).cloned();
    let mut current = before.clone().unwrap_or_default();
    if latest.is_none_or(|l| a.day > l) {
        current = history::Dims {
            day: Some(a.day),
            values: BTreeSet::new(),
        };
    }
    let remember = current.day == Some(a.day);
    // The history's values of its other (definition, scope)s: the cap holds over the whole history.
    let elsewhere: usize = h
        .dims
        .iter()
        .filter(|(k, _)| **k != hk)
        .map(|(_, d)| d.values.len())
        .sum();
    for (name, value) in &a.dimensions {
        let value = registry.admit(format!("{definition}|{scope}|{name}"), value);
        let held = format!("{name}={value}");
        // The latest day's values count once per actor (within the cap); an older new day's always.
        let counts = if remember {
            if elsewhere + current.values.len() >= DIMS_PER_ACTOR && !current.values.contains(&held)
            {
                continue;
            }
            current.values.insert(held)
        } else {
            true
        };
        if counts {
            add(
                deltas,
                'c',
                scope,
                a.day,
                format!("{DIM}{definition}|{name}={value}"),
                1,
            );
        }
    }
    if before.as_ref() != Some(&current) {
        match u.dims.iter_mut().find(|(k, _, _)| *k == hk) {
            Some(entry) => entry.2 = current.digest(),
            None => u.dims.push((hk.clone(), before, current.digest())),
        }
        h.dims.insert(hk, current);
    }
}

/// The largest a history can grow, in bytes, by DynamoDB's item size rules (attribute names and values): with
/// every definition of its group in [`SCOPES_PER_ACTOR`] scopes of `scope_chars` bytes, `years` years of days,
/// the replay window's counted ids (one per scope and day), `dimensions` values (at most [`DIMS_PER_ACTOR`] over the whole
/// history) of `value_bytes` with names of up to 64 bytes, and `lanes` undo records each changing `undo_days`
/// days. Checked against DynamoDB's 400 KB item limit by the tests.
pub fn history_size_bound(
    years: usize,
    scope_chars: usize,
    replay_days: usize,
    dimensions: usize,
    value_bytes: usize,
    lanes: usize,
    undo_days: usize,
) -> usize {
    let keys = 3 * SCOPES_PER_ACTOR;
    let key_name = 22 + 1 + scope_chars;
    let days = keys * (key_name + years * (4 + history::YEAR_BYTES));
    let first = keys * (key_name + 10);
    // Counted ids: 12 bytes each (a day and 8 bytes of hash), one per (definition, scope) made active a day.
    let counted = 1 + 3 + replay_days * SCOPES_PER_ACTOR * 12;
    let held = 64 + 1 + value_bytes + 3;
    let dims = keys * (key_name + 16) + dimensions.min(DIMS_PER_ACTOR) * held;
    // Sessions: 8 bytes of id and at most 13 of state each; an undo record changes at most the remembered ones
    // and the ones they replaced, 8 + 2 x 14 bytes each.
    let sessions = 3 + SESSIONS_PER_ACTOR * 21;
    let undo_sessions = 3 + 2 * SESSIONS_PER_ACTOR * 36;
    let undo = lanes.min(UNDO_LANES)
        * (16
            + 40
            + undo_days * (key_name + 12)
            + keys * (key_name + 22)
            + 2 * dims
            + undo_sessions);
    64 + days + first + counted + dims + sessions + undo
}

/// The largest a lane's dimension registry can grow, in bytes: [`REGISTRY_SLOTS_CAP`] slot names of a definition,
/// a scope of `scope_chars` bytes and a 64-byte dimension name, and [`REGISTRY_VALUES_CAP`] tags.
pub fn registry_size_bound(scope_chars: usize) -> usize {
    let slot = 22 + 1 + scope_chars + 1 + 64 + 3;
    64 + REGISTRY_SLOTS_CAP * slot + REGISTRY_VALUES_CAP * (16 + 3)
}

#[cfg(test)]
mod tests;
