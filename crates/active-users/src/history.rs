//! One actor's history: the item that decides, without reading anything else, whether an activity is the actor's
//! first of a day, of a month, ever, and which retention cohorts and rolling windows it completes. One item per
//! (group, actor): `auth` holds the authenticating definition (user subs), `app` the session definitions (installs
//! and devices). Pure: the store reads and writes it (`crate::store`), the planner moves it (`crate::plan`).
//!
//! **What it holds**, per (definition, scope) key: a bitmap of active days per year (one bit a day, 48 bytes a
//! year) and the first day seen; the event ids that made a day active (so their repeats count once without an
//! event marker), kept for the replay window; the latest day's dimension values; and per lane, the last change
//! that lane wrote and the position it wrote it for ([`Undo`]).
//!
//! **Exactly once, by position.** A lane counts what a batch changes only in its commit (the lane's counters and
//! its position, in one transaction). A history written by a batch that then failed before its commit still holds
//! that batch's change, tagged with a position past the lane's commit: the lane subtracts its own uncommitted
//! change ([`History::without_uncommitted`]) and plans the batch again from there, so the redelivery counts it once.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate};

use crate::activity::Definition;
use crate::lane::Position;

/// A (definition, scope) key of a history.
pub type Key = (Definition, String);

/// Bytes of one year's bitmap: 12 months of 32 bits.
pub const YEAR_BYTES: usize = 48;

/// The days an actor was active, as one bitmap per year.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Days {
    years: BTreeMap<i32, [u32; 12]>,
}

impl Days {
    /// Whether `day` is set.
    pub fn has(&self, day: NaiveDate) -> bool {
        self.years
            .get(&day.year())
            .is_some_and(|m| m[day.month0() as usize] & (1 << day.day0()) != 0)
    }

    /// Sets `day`; whether it was new.
    pub fn set(&mut self, day: NaiveDate) -> bool {
        let month = &mut self.years.entry(day.year()).or_default()[day.month0() as usize];
        let bit = 1 << day.day0();
        let new = *month & bit == 0;
        *month |= bit;
        new
    }

    /// Clears `day`.
    pub fn clear(&mut self, day: NaiveDate) {
        if let Some(m) = self.years.get_mut(&day.year()) {
            m[day.month0() as usize] &= !(1 << day.day0());
            if m.iter().all(|b| *b == 0) {
                self.years.remove(&day.year());
            }
        }
    }

    /// Whether any day in `from..=to` is set, `except` aside.
    pub fn any_in(&self, from: NaiveDate, to: NaiveDate, except: NaiveDate) -> bool {
        from.iter_days()
            .take_while(|d| *d <= to)
            .any(|d| d != except && self.has(d))
    }

    /// Whether any other day of `day`'s calendar month is set.
    pub fn other_in_month(&self, day: NaiveDate) -> bool {
        self.years
            .get(&day.year())
            .is_some_and(|m| m[day.month0() as usize] & !(1 << day.day0()) != 0)
    }

    /// The years that have days.
    pub fn year_count(&self) -> usize {
        self.years.len()
    }

    /// The bytes stored: per year, its number (i32, little-endian) and 12 months of u32.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.years.len() * (4 + YEAR_BYTES));
        for (year, months) in &self.years {
            out.extend_from_slice(&year.to_le_bytes());
            for m in months {
                out.extend_from_slice(&m.to_le_bytes());
            }
        }
        out
    }

    /// Reads [`Days::to_bytes`]; `None` when the bytes are not whole years.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(4 + YEAR_BYTES) {
            return None;
        }
        let mut years = BTreeMap::new();
        for chunk in bytes.chunks(4 + YEAR_BYTES) {
            let year = i32::from_le_bytes(chunk.get(..4)?.try_into().ok()?);
            let mut months = [0u32; 12];
            for (i, m) in months.iter_mut().enumerate() {
                let at = 4 + i * 4;
                *m = u32::from_le_bytes(chunk.get(at..at + 4)?.try_into().ok()?);
            }
            years.insert(year, months);
        }
        Some(Self { years })
    }
}

/// What one lane's last write changed in a history, and for which position: enough to take it back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Undo {
    /// The position of the last record of the batch (chunk) that wrote it.
    pub position: Position,
    /// When the invocation that wrote it ended at the latest (its deadline, unix seconds): past it, a change its
    /// lane has not committed never will be by that invocation.
    pub until: i64,
    /// Days it set.
    pub days: Vec<(Key, NaiveDate)>,
    /// First days it set: (key, what it was before, what it set).
    pub first: Vec<(Key, Option<NaiveDate>, NaiveDate)>,
    /// Event ids it recorded as counted: (day, id).
    pub counted: Vec<(NaiveDate, String)>,
    /// Per key, the dimension state it replaced, and the digest of the one it set ([`Dims::digest`]).
    pub dims: Vec<(Key, Option<Dims>, String)>,
    /// Sessions it changed: (session id, what it was before, what it set).
    pub sessions: Vec<(String, Option<Session>, Option<Session>)>,
}

impl Undo {
    /// Whether it changed nothing.
    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
            && self.first.is_empty()
            && self.counted.is_empty()
            && self.dims.is_empty()
            && self.sessions.is_empty()
    }
}

/// What an install's history remembers of one of its sessions, to count it ended once (whatever its stops' ids) and
/// engaged once (Clickstream's definition: longer than 10 s, or at least 2 screen or page views).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    /// The day it counts on: its start's (`session.start`), else the day of the first of its events seen.
    pub day: NaiveDate,
    /// Its first view's event id (16 hex digits of its hash), until it is engaged: a repeat of it is not a second.
    pub first_view: Option<String>,
    /// Counted engaged.
    pub engaged: bool,
    /// Counted ended (its first stop).
    pub ended: bool,
}

/// The dimension values an actor showed in one (definition, scope) on its latest active day: `<name>=<value>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dims {
    /// The day.
    pub day: Option<NaiveDate>,
    /// The values.
    pub values: BTreeSet<String>,
}

impl Dims {
    /// A short digest of the state (stored in an undo record instead of the state itself).
    pub fn digest(&self) -> String {
        let day = self.day.map(|d| d.to_string()).unwrap_or_default();
        let mut parts: Vec<&str> = vec![&day];
        parts.extend(self.values.iter().map(String::as_str));
        bridge_core::envelope::event_id(&parts)[..16].to_owned()
    }
}

/// Seconds by which clocks of two invocations may disagree: a lane's uncommitted change is taken over only that
/// long after its invocation's deadline.
pub const CLOCK_SKEW_SECONDS: i64 = 60;

/// One actor's history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The stored version (0: not stored yet); a write expects it unchanged.
    pub version: u64,
    /// Active days per (definition, scope).
    pub days: BTreeMap<Key, Days>,
    /// First day seen per (definition, scope).
    pub first: BTreeMap<Key, NaiveDate>,
    /// Per day, the event ids (their first 16 hex digits) that made the day active and were counted with it.
    pub counted: BTreeMap<NaiveDate, BTreeSet<String>>,
    /// Per (definition, scope), the latest day's dimension values.
    pub dims: BTreeMap<Key, Dims>,
    /// The install's sessions on their way to engaged, by id (16 hex digits of its hash): at most
    /// `crate::plan::SESSIONS_PER_ACTOR`, the latest by (day, id).
    pub sessions: BTreeMap<String, Session>,
    /// Per lane, its last write.
    pub undo: BTreeMap<String, Undo>,
}

impl History {
    /// The history as it was before `lane`'s write for a position past `committed`: the lane's own uncommitted
    /// change taken back (another lane's changes stay).
    pub fn without_uncommitted(&self, lane: &str, committed: &Position) -> Self {
        let mut h = self.clone();
        let Some(undo) = h.undo.remove(lane) else {
            return h;
        };
        if undo.position <= *committed {
            h.undo.insert(lane.to_owned(), undo);
            return h;
        }
        h.take_back(&undo);
        h
    }

    /// The history as `lane` plans over it, given every writing lane's committed position (`committed`, which
    /// must hold each lane of [`History::undo`]): its own uncommitted change taken back; another lane's record
    /// dropped when that lane committed it (nothing needs it any more), or taken back when its invocation is over
    /// (`now` past its `until` by [`CLOCK_SKEW_SECONDS`]) without committing it. A change another lane may still
    /// commit is waited for: `Err(that lane)`. Planning over it could count against a day that never counts
    /// (a `new` moved off a day never counted as new, a month never counted).
    pub fn settled(
        &self,
        lane: &str,
        committed: &BTreeMap<String, Position>,
        now: i64,
    ) -> Result<Self, String> {
        let own = committed.get(lane).cloned().unwrap_or_default();
        let mut h = self.without_uncommitted(lane, &own);
        let others: Vec<String> = h.undo.keys().filter(|l| *l != lane).cloned().collect();
        for other in others {
            let Some(position) = committed.get(&other) else {
                return Err(other);
            };
            let Some(undo) = h.undo.remove(&other) else {
                continue;
            };
            if undo.position <= *position {
                continue;
            }
            if now > undo.until.saturating_add(CLOCK_SKEW_SECONDS) {
                h.take_back(&undo);
                continue;
            }
            return Err(other);
        }
        Ok(h)
    }

    /// Takes back what `undo` changed.
    fn take_back(&mut self, undo: &Undo) {
        let h = self;
        for (key, day) in &undo.days {
            if let Some(days) = h.days.get_mut(key) {
                days.clear(*day);
            }
        }
        h.days.retain(|_, d| d.year_count() > 0);
        for (key, before, set) in undo.first.iter().rev() {
            if h.first.get(key) == Some(set) {
                match before {
                    Some(b) => h.first.insert(key.clone(), *b),
                    None => h.first.remove(key),
                };
            }
        }
        for (day, id) in &undo.counted {
            if let Some(ids) = h.counted.get_mut(day) {
                ids.remove(id);
                if ids.is_empty() {
                    h.counted.remove(day);
                }
            }
        }
        for (id, before, set) in undo.sessions.iter().rev() {
            if h.sessions.get(id) == set.as_ref() {
                match before {
                    Some(b) => h.sessions.insert(id.clone(), b.clone()),
                    None => h.sessions.remove(id),
                };
            }
        }
        for (key, before, set) in undo.dims.iter().rev() {
            if h.dims.get(key).map(Dims::digest).as_ref() == Some(set) {
                match before {
                    Some(b) => h.dims.insert(key.clone(), b.clone()),
                    None => h.dims.remove(key),
                };
            }
        }
    }

    /// Drops counted ids of days before `oldest` (past the replay window) and undo records of lanes committed
    /// long ago are kept (one per lane: bounded by the lanes that ever wrote this actor).
    pub fn prune(&mut self, oldest: NaiveDate) {
        self.counted.retain(|day, _| *day >= oldest);
    }
}

/// Days before `day`, as a date (saturating at chrono's range).
pub fn minus(day: NaiveDate, days: i64) -> NaiveDate {
    day.checked_sub_signed(chrono::Duration::days(days))
        .unwrap_or(NaiveDate::MIN)
}

/// Days after `day`, as a date (saturating at chrono's range).
pub fn plus(day: NaiveDate, days: i64) -> NaiveDate {
    day.checked_add_signed(chrono::Duration::days(days))
        .unwrap_or(NaiveDate::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, day).unwrap()
    }

    #[test]
    fn days_set_test_and_round_trip_through_bytes() {
        let mut days = Days::default();
        assert!(days.set(d(11, 3)));
        assert!(!days.set(d(11, 3)));
        assert!(days.set(d(1, 31)));
        assert!(days.set(NaiveDate::from_ymd_opt(2025, 12, 31).unwrap()));
        assert!(days.has(d(11, 3)) && !days.has(d(11, 4)));
        assert!(days.other_in_month(d(11, 20)) && !days.other_in_month(d(11, 3)));
        assert!(days.any_in(d(11, 1), d(11, 5), d(11, 4)));
        assert!(!days.any_in(d(11, 1), d(11, 5), d(11, 3)));
        let bytes = days.to_bytes();
        assert_eq!(bytes.len(), 2 * (4 + YEAR_BYTES));
        assert_eq!(Days::from_bytes(&bytes), Some(days.clone()));
        assert_eq!(Days::from_bytes(&bytes[1..]), None);
        days.clear(NaiveDate::from_ymd_opt(2025, 12, 31).unwrap());
        assert_eq!(days.year_count(), 1);
    }

    #[test]
    fn a_lanes_uncommitted_change_is_taken_back_and_a_committed_one_kept() {
        let key: Key = (Definition::Authenticating, "pool=p".into());
        let mut h = History::default();
        h.days.entry(key.clone()).or_default().set(d(11, 1));
        h.first.insert(key.clone(), d(11, 1));
        // Lane L then set Nov 2 and moved the first day back to Oct 30 for position 7.
        h.days.entry(key.clone()).or_default().set(d(11, 2));
        h.first.insert(key.clone(), d(10, 30));
        h.days.entry(key.clone()).or_default().set(d(10, 30));
        h.counted.entry(d(11, 2)).or_default().insert("abc".into());
        h.undo.insert(
            "L".into(),
            Undo {
                position: Position::new("7", 0),
                until: 1_793_000_120,
                days: vec![(key.clone(), d(11, 2)), (key.clone(), d(10, 30))],
                first: vec![(key.clone(), Some(d(11, 1)), d(10, 30))],
                counted: vec![(d(11, 2), "abc".into())],
                dims: Vec::new(),
                sessions: Vec::new(),
            },
        );
        let before = h.without_uncommitted("L", &Position::new("6", 0));
        assert!(before.days[&key].has(d(11, 1)));
        assert!(!before.days[&key].has(d(11, 2)) && !before.days[&key].has(d(10, 30)));
        assert_eq!(before.first[&key], d(11, 1));
        assert!(before.counted.is_empty());
        assert!(before.undo.is_empty());
        // Committed (the lane's position reached 7): nothing is taken back.
        assert_eq!(h.without_uncommitted("L", &Position::new("7", 0)), h);
        // Another lane's write is not ours to take back.
        assert_eq!(h.without_uncommitted("M", &Position::new("0", 0)), h);
    }
}
