//! The rollup's storage, over a [`Table`] (DynamoDB, or the in-memory table of the tests and the benchmark): the
//! lanes' positions and counters, the actors' histories, the event markers, and the figures read back (summed
//! over lanes). See [`crate::plan`] for the layout.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike, NaiveDate};

use crate::activity::Definition;
use crate::history::{Days, Dims, History, Session, Undo};
use crate::lane::{LaneState, Position};
use crate::plan::{ActorKey, Deltas, Item as CounterItem, day_label};
use crate::table::{Expect, Item, Key, Table, TableError, TxWrite, Value};

/// A rollup read or write that did not happen.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("rollup table: {0}")]
pub struct StoreError(pub TableError);

impl StoreError {
    /// Whether a retry may succeed (else: dead letter).
    pub fn is_transient(&self) -> bool {
        self.0.is_transient()
    }
}

/// What a marker said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// This write created it: the event counts.
    Created,
    /// It exists, written by (lane, position).
    Exists(String, Position),
}

/// The rollup table.
#[derive(Debug, Clone)]
pub struct RollupStore {
    table: Arc<dyn Table>,
    marker_lifetime: Duration,
}

fn s(v: &str) -> Value {
    Value::S(v.to_owned())
}

fn key_item(key: &Key) -> Item {
    Item::from([("pk".to_owned(), s(&key.pk)), ("sk".to_owned(), s(&key.sk))])
}

fn get_s<'a>(item: &'a Item, attr: &str) -> Option<&'a str> {
    match item.get(attr) {
        Some(Value::S(v)) => Some(v),
        _ => None,
    }
}

fn list_s(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::L(items)) => items
            .iter()
            .filter_map(|i| match i {
                Value::S(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn list(items: impl IntoIterator<Item = String>) -> Value {
    Value::L(items.into_iter().map(Value::S).collect())
}

fn day(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// The short code of a definition in a history's keys (the item is written often: every byte is billed).
fn code(d: Definition) -> &'static str {
    match d {
        Definition::Authenticating => "au",
        Definition::SessionUsers => "su",
        Definition::SessionDevices => "sd",
        Definition::PayingUsers => "pu",
    }
}

fn of_code(s: &str) -> Option<Definition> {
    Definition::ALL.into_iter().find(|d| code(*d) == s)
}

/// `<code>|<scope>`.
fn hkey(k: &(Definition, String)) -> String {
    format!("{}|{}", code(k.0), k.1)
}

fn parse_hkey(s: &str) -> Option<(Definition, String)> {
    let (d, scope) = s.split_once('|')?;
    Some((of_code(d)?, scope.to_owned()))
}

/// Days as 4 bytes each (days from the common era, little-endian).
fn pack_days(days: impl IntoIterator<Item = NaiveDate>) -> Vec<u8> {
    days.into_iter()
        .flat_map(|d| d.num_days_from_ce().to_le_bytes())
        .collect()
}

fn unpack_days(bytes: &[u8]) -> Vec<NaiveDate> {
    bytes
        .chunks_exact(4)
        .filter_map(|c| {
            NaiveDate::from_num_days_from_ce_opt(i32::from_le_bytes(c.try_into().ok()?))
        })
        .collect()
}

/// Counted ids as 12 bytes each: the day (4) and the id's first 16 hex digits (8).
fn pack_counted<'a>(entries: impl IntoIterator<Item = (NaiveDate, &'a str)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (d, id) in entries {
        let Ok(bytes) = hex::decode(id) else { continue };
        if bytes.len() != 8 {
            continue;
        }
        out.extend_from_slice(&d.num_days_from_ce().to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

fn unpack_counted(bytes: &[u8]) -> Vec<(NaiveDate, String)> {
    bytes
        .chunks_exact(12)
        .filter_map(|c| {
            let d =
                NaiveDate::from_num_days_from_ce_opt(i32::from_le_bytes(c[..4].try_into().ok()?))?;
            Some((d, hex::encode(&c[4..])))
        })
        .collect()
}

/// A session's state in bytes: the day (i32, days from CE), flags (1: engaged, 2: ended, 4: a first view follows),
/// then the first view's 8 bytes.
fn pack_session(out: &mut Vec<u8>, s: &Session) {
    out.extend_from_slice(&s.day.num_days_from_ce().to_le_bytes());
    let view = s.first_view.as_ref().filter(|_| !s.engaged);
    out.push(u8::from(s.engaged) | u8::from(s.ended) << 1 | u8::from(view.is_some()) << 2);
    if let Some(id) = view {
        let mut b = hex::decode(id).unwrap_or_default();
        b.resize(8, 0);
        out.extend_from_slice(&b);
    }
}

/// Reads [`pack_session`] at the start of `b`: the state and the bytes it took.
fn unpack_session(b: &[u8]) -> Option<(Session, usize)> {
    let day =
        NaiveDate::from_num_days_from_ce_opt(i32::from_le_bytes(b.get(..4)?.try_into().ok()?))?;
    let flags = *b.get(4)?;
    if flags > 7 {
        return None;
    }
    let first_view = if flags & 4 != 0 {
        Some(hex::encode(b.get(5..13)?))
    } else {
        None
    };
    let taken = if first_view.is_some() { 13 } else { 5 };
    Some((
        Session {
            day,
            first_view,
            engaged: flags & 1 != 0,
            ended: flags & 2 != 0,
        },
        taken,
    ))
}

/// A history's sessions: per session its id's 8 bytes and its state.
fn pack_sessions(sessions: &BTreeMap<String, Session>) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, s) in sessions {
        let mut b = hex::decode(id).unwrap_or_default();
        b.resize(8, 0);
        out.extend_from_slice(&b);
        pack_session(&mut out, s);
    }
    out
}

fn unpack_sessions(mut b: &[u8]) -> BTreeMap<String, Session> {
    let mut out = BTreeMap::new();
    while b.len() >= 8 {
        let Some((s, n)) = unpack_session(&b[8..]) else {
            break;
        };
        out.insert(hex::encode(&b[..8]), s);
        b = &b[8 + n..];
    }
    out
}

/// An undo record's sessions: per change its id's 8 bytes, then before and after, each 0 (none) or 1 and a state.
fn pack_session_changes(changes: &[(String, Option<Session>, Option<Session>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, before, after) in changes {
        let mut b = hex::decode(id).unwrap_or_default();
        b.resize(8, 0);
        out.extend_from_slice(&b);
        for state in [before, after] {
            match state {
                None => out.push(0),
                Some(s) => {
                    out.push(1);
                    pack_session(&mut out, s);
                }
            }
        }
    }
    out
}

type SessionChange = (String, Option<Session>, Option<Session>);

fn unpack_session_changes(mut b: &[u8]) -> Vec<SessionChange> {
    let mut out = Vec::new();
    'changes: while b.len() >= 9 {
        let id = hex::encode(&b[..8]);
        let mut at = 8;
        let mut states = [None, None];
        for state in &mut states {
            match b.get(at) {
                Some(0) => at += 1,
                Some(1) => {
                    let Some((s, n)) = b.get(at + 1..).and_then(unpack_session) else {
                        break 'changes;
                    };
                    *state = Some(s);
                    at += 1 + n;
                }
                _ => break 'changes,
            }
        }
        let [before, after] = states;
        out.push((id, before, after));
        b = &b[at..];
    }
    out
}

fn dims_into(m: &mut BTreeMap<String, Value>, d: &Dims) {
    if let Some(day) = d.day {
        m.insert("x".into(), s(&day_label(day)));
    }
    if !d.values.is_empty() {
        m.insert("y".into(), list(d.values.iter().cloned()));
    }
}

fn dims_from(m: &BTreeMap<String, Value>) -> Option<Dims> {
    let day = match m.get("x") {
        Some(Value::S(x)) => day(x),
        _ => None,
    };
    let values: BTreeSet<String> = list_s(m.get("y")).into_iter().collect();
    (day.is_some() || !values.is_empty()).then_some(Dims { day, values })
}

/// The item of a history (version bumped: the write expects the one it read). Compact, since it is written on
/// every first activity of an actor's day: one map entry per (definition, scope) with its days, first day and
/// latest dimension values; counted ids and undo days packed in bytes.
pub fn history_item(key: &ActorKey, h: &History) -> Item {
    let mut item = key_item(&history_key(key));
    item.insert(
        "v".into(),
        Value::N(i64::try_from(h.version + 1).unwrap_or(i64::MAX)),
    );
    let keys: BTreeSet<&(Definition, String)> = h
        .days
        .keys()
        .chain(h.first.keys())
        .chain(h.dims.keys())
        .collect();
    let mut k = BTreeMap::new();
    for hk in keys {
        let mut m = BTreeMap::new();
        if let Some(d) = h.days.get(hk) {
            m.insert("d".to_owned(), Value::B(d.to_bytes()));
        }
        if let Some(f) = h.first.get(hk) {
            m.insert("f".to_owned(), s(&day_label(*f)));
        }
        if let Some(d) = h.dims.get(hk) {
            dims_into(&mut m, d);
        }
        k.insert(hkey(hk), Value::M(m));
    }
    item.insert("k".into(), Value::M(k));
    if !h.counted.is_empty() {
        item.insert(
            "c".into(),
            Value::B(pack_counted(h.counted.iter().flat_map(|(d, ids)| {
                ids.iter().map(move |id| (*d, id.as_str()))
            }))),
        );
    }
    if !h.sessions.is_empty() {
        item.insert("s".into(), Value::B(pack_sessions(&h.sessions)));
    }
    let mut undo = BTreeMap::new();
    for (lane, u) in &h.undo {
        let mut per_key: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        let mut days: BTreeMap<String, Vec<NaiveDate>> = BTreeMap::new();
        for (hk, d) in &u.days {
            days.entry(hkey(hk)).or_default().push(*d);
        }
        for (hk, ds) in days {
            per_key
                .entry(hk)
                .or_default()
                .insert("d".into(), Value::B(pack_days(ds)));
        }
        for (hk, before, set) in &u.first {
            let text = format!(
                "{}|{}",
                before.map(day_label).unwrap_or_else(|| "-".into()),
                day_label(*set)
            );
            per_key
                .entry(hkey(hk))
                .or_default()
                .insert("f".into(), s(&text));
        }
        for (hk, before, after) in &u.dims {
            let m = per_key.entry(hkey(hk)).or_default();
            m.insert("z".into(), s(after));
            match before {
                Some(b) => dims_into(m, b),
                None => {
                    m.insert("n".into(), Value::N(1));
                }
            }
        }
        let mut m = BTreeMap::from([
            ("p".to_owned(), s(&u.position.encode())),
            ("t".to_owned(), Value::N(u.until)),
            (
                "k".to_owned(),
                Value::M(per_key.into_iter().map(|(k, v)| (k, Value::M(v))).collect()),
            ),
        ]);
        if !u.counted.is_empty() {
            m.insert(
                "c".into(),
                Value::B(pack_counted(
                    u.counted.iter().map(|(d, id)| (*d, id.as_str())),
                )),
            );
        }
        if !u.sessions.is_empty() {
            m.insert("s".into(), Value::B(pack_session_changes(&u.sessions)));
        }
        undo.insert(lane.clone(), Value::M(m));
    }
    item.insert("u".into(), Value::M(undo));
    item
}

/// A history read from its item.
pub fn history_of(item: &Item) -> History {
    let mut h = History {
        version: match item.get("v") {
            Some(Value::N(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        },
        ..History::default()
    };
    if let Some(Value::M(keys)) = item.get("k") {
        for (k, v) in keys {
            let (Some(hk), Value::M(m)) = (parse_hkey(k), v) else {
                continue;
            };
            if let Some(Value::B(b)) = m.get("d")
                && let Some(d) = Days::from_bytes(b)
            {
                h.days.insert(hk.clone(), d);
            }
            if let Some(Value::S(f)) = m.get("f")
                && let Some(f) = day(f)
            {
                h.first.insert(hk.clone(), f);
            }
            if let Some(d) = dims_from(m) {
                h.dims.insert(hk, d);
            }
        }
    }
    if let Some(Value::B(b)) = item.get("c") {
        for (d, id) in unpack_counted(b) {
            h.counted.entry(d).or_default().insert(id);
        }
    }
    if let Some(Value::B(b)) = item.get("s") {
        h.sessions = unpack_sessions(b);
    }
    if let Some(Value::M(undo)) = item.get("u") {
        for (lane, u) in undo {
            let Value::M(u) = u else { continue };
            let Some(position) = u.get("p").and_then(|p| match p {
                Value::S(p) => Position::decode(p),
                _ => None,
            }) else {
                continue;
            };
            let mut rec = Undo {
                position,
                until: match u.get("t") {
                    Some(Value::N(t)) => *t,
                    _ => 0,
                },
                ..Undo::default()
            };
            if let Some(Value::M(keys)) = u.get("k") {
                for (k, v) in keys {
                    let (Some(hk), Value::M(m)) = (parse_hkey(k), v) else {
                        continue;
                    };
                    if let Some(Value::B(b)) = m.get("d") {
                        rec.days
                            .extend(unpack_days(b).into_iter().map(|d| (hk.clone(), d)));
                    }
                    if let Some(Value::S(f)) = m.get("f")
                        && let Some((before, set)) = f.split_once('|')
                        && let Some(set) = day(set)
                    {
                        rec.first.push((hk.clone(), day(before), set));
                    }
                    if let Some(Value::S(after)) = m.get("z") {
                        let before = if m.contains_key("n") {
                            None
                        } else {
                            Some(dims_from(m).unwrap_or_default())
                        };
                        rec.dims.push((hk.clone(), before, after.clone()));
                    }
                }
            }
            if let Some(Value::B(b)) = u.get("c") {
                rec.counted = unpack_counted(b);
            }
            if let Some(Value::B(b)) = u.get("s") {
                rec.sessions = unpack_session_changes(b);
            }
            h.undo.insert(lane.clone(), rec);
        }
    }
    h
}

/// The key of an actor's history.
pub fn history_key(key: &ActorKey) -> Key {
    Key::new(format!("h#{}#{}", key.0, key.1), "-")
}

fn lane_key(lane: &str) -> Key {
    Key::new(format!("lane#{lane}"), "-")
}

fn lane_dims_key(lane: &str) -> Key {
    Key::new(format!("lanedims#{lane}"), "-")
}

/// A lane's dimension registry as stored: `values`, a map of slot to its values' tags.
pub fn registry_item(lane: &str, values: &BTreeMap<String, BTreeSet<String>>) -> Item {
    let mut item = key_item(&lane_dims_key(lane));
    item.insert(
        "values".into(),
        Value::M(
            values
                .iter()
                .map(|(slot, v)| (slot.clone(), list(v.iter().cloned())))
                .collect(),
        ),
    );
    item
}

fn counter_key(item: &CounterItem, lane: &str) -> Key {
    Key::new(item.pk(), lane)
}

/// A counter item's commits (`ADD g 1` with every commit that moves it).
const GENERATION: &str = "g";

fn numbers(item: &Item) -> BTreeMap<String, i64> {
    item.iter()
        .filter_map(|(k, v)| match v {
            Value::N(n) if k != "v" && k != GENERATION => Some((k.clone(), *n)),
            _ => None,
        })
        .collect()
}

impl RollupStore {
    /// The store over `table`; event markers live `marker_lifetime` (the replay window).
    pub fn new(table: Arc<dyn Table>, marker_lifetime: Duration) -> Self {
        Self {
            table,
            marker_lifetime,
        }
    }

    /// The store on the DynamoDB table `table`.
    pub fn on_dynamodb(
        client: aws_sdk_dynamodb::Client,
        table: &str,
        marker_lifetime: Duration,
    ) -> Self {
        Self::new(
            Arc::new(crate::dynamo::Dynamo::new(client, table)),
            marker_lifetime,
        )
    }

    /// The table (its meter, in tests and the benchmark).
    pub fn table(&self) -> &Arc<dyn Table> {
        &self.table
    }

    /// The lane's committed state (strongly consistent: the lane's own last commit must be seen).
    pub async fn read_lane(&self, lane: &str) -> Result<LaneState, StoreError> {
        let keys = [lane_key(lane), lane_dims_key(lane)];
        let items = self
            .table
            .batch_get(&keys, true)
            .await
            .map_err(StoreError)?;
        let mut state = LaneState {
            lane: lane.to_owned(),
            ..LaneState::default()
        };
        for item in items {
            match get_s(&item, "pk") {
                Some(pk) if pk == keys[0].pk => {
                    state.position = get_s(&item, "pos").and_then(Position::decode);
                    state.pending = list_s(item.get("pending"));
                }
                Some(_) => {
                    if let Some(Value::M(m)) = item.get("values") {
                        state.dimension_values = m
                            .iter()
                            .map(|(slot, v)| (slot.clone(), list_s(Some(v)).into_iter().collect()))
                            .collect();
                    }
                }
                None => {}
            }
        }
        Ok(state)
    }

    /// The committed positions of `lanes` (strongly consistent; a lane that never committed is at the start).
    pub async fn read_positions(
        &self,
        lanes: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Position>, StoreError> {
        let keys: Vec<Key> = lanes.iter().map(|l| lane_key(l)).collect();
        let mut out: BTreeMap<String, Position> = lanes
            .iter()
            .map(|l| (l.clone(), Position::default()))
            .collect();
        for chunk in keys.chunks(100) {
            for item in self
                .table
                .batch_get(chunk, true)
                .await
                .map_err(StoreError)?
            {
                if let (Some(pk), Some(pos)) = (
                    get_s(&item, "pk"),
                    get_s(&item, "pos").and_then(Position::decode),
                ) && let Some(lane) = pk.strip_prefix("lane#")
                {
                    out.insert(lane.to_owned(), pos);
                }
            }
        }
        Ok(out)
    }

    /// The histories of `keys` that exist, eventually consistent: a stale one only makes its versioned write fail
    /// (and the batch read it again).
    pub async fn read_histories(
        &self,
        keys: &BTreeSet<ActorKey>,
    ) -> Result<BTreeMap<ActorKey, History>, StoreError> {
        let by_key: BTreeMap<String, ActorKey> = keys
            .iter()
            .map(|k| (history_key(k).pk, k.clone()))
            .collect();
        let wanted: Vec<Key> = keys.iter().map(history_key).collect();
        let items = self
            .table
            .batch_get(&wanted, false)
            .await
            .map_err(StoreError)?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let key = by_key.get(get_s(item, "pk")?)?;
                Some((key.clone(), history_of(item)))
            })
            .collect())
    }

    /// Writes a history over the version it was read at. A failed condition that finds exactly this write there is
    /// this write, applied, whose answer was lost (the SDK's resend then fails its condition): success.
    pub async fn write_history(&self, key: &ActorKey, h: &History) -> Result<(), StoreError> {
        let item = history_item(key, h);
        match self
            .table
            .put(item.clone(), Expect::Version(h.version))
            .await
        {
            Err(TableError::ConditionFailed(Some(current))) if *current == item => Ok(()),
            other => other.map_err(StoreError),
        }
    }

    /// Writes an event's marker for (lane, position), unless it exists.
    pub async fn put_marker(
        &self,
        event_id: &str,
        lane: &str,
        position: &Position,
    ) -> Result<Marker, StoreError> {
        let mut item = key_item(&Key::new(format!("ev#{event_id}"), "-"));
        item.insert("by".into(), s(&format!("{lane}|{}", position.encode())));
        let expires = chrono::Utc::now().timestamp()
            + i64::try_from(self.marker_lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        item.insert("expires_at".into(), Value::N(expires));
        match self.table.put(item, Expect::Absent).await {
            Ok(()) => Ok(Marker::Created),
            Err(TableError::ConditionFailed(Some(old))) => {
                let by = get_s(&old, "by").unwrap_or_default();
                let (l, p) = by.split_once('|').unwrap_or(("", ""));
                Ok(Marker::Exists(
                    l.to_owned(),
                    Position::decode(p).unwrap_or_default(),
                ))
            }
            Err(TableError::ConditionFailed(None)) => {
                // The item as it is did not come back: read it.
                let old = self
                    .table
                    .get(&Key::new(format!("ev#{event_id}"), "-"), true)
                    .await
                    .map_err(StoreError)?
                    .unwrap_or_default();
                let by = get_s(&old, "by").unwrap_or_default();
                let (l, p) = by.split_once('|').unwrap_or(("", ""));
                Ok(Marker::Exists(
                    l.to_owned(),
                    Position::decode(p).unwrap_or_default(),
                ))
            }
            Err(e) => Err(StoreError(e)),
        }
    }

    /// Commits a lane's counters and its new position in one transaction, over the position it read: the same
    /// batch can never commit twice. `pending` are the days to publish; `registry` the lane's dimension values when
    /// they grew.
    pub async fn commit(
        &self,
        lane: &LaneState,
        position: &Position,
        deltas: &Deltas,
        pending: &[String],
        registry: Option<&BTreeMap<String, BTreeSet<String>>>,
    ) -> Result<(), StoreError> {
        let mut writes: Vec<TxWrite> = deltas
            .iter()
            .filter(|(_, attrs)| attrs.values().any(|n| *n != 0))
            .map(|(item, attrs)| TxWrite::Add {
                key: counter_key(item, &lane.lane),
                // `g`: the item's commits, summed over lanes into a day's generation ([`RollupStore::day_totals`]).
                add: attrs
                    .iter()
                    .filter(|(_, n)| **n != 0)
                    .map(|(a, n)| (a.clone(), *n))
                    .chain([(GENERATION.to_owned(), 1)])
                    .collect(),
            })
            .collect();
        let mut item = key_item(&lane_key(&lane.lane));
        item.insert("pos".into(), s(&position.encode()));
        item.insert("pending".into(), list(pending.iter().cloned()));
        writes.push(TxWrite::Put {
            item,
            expect: Expect::Pos(lane.position.as_ref().map(Position::encode)),
        });
        if let Some(values) = registry {
            writes.push(TxWrite::Put {
                item: registry_item(&lane.lane, values),
                expect: Expect::Any,
            });
        }
        self.table.transact(writes).await.map_err(StoreError)
    }

    /// Items of the transaction a commit of `deltas` needs (the lane item and its registry included).
    pub fn commit_items(deltas: &Deltas) -> usize {
        deltas.len() + 2
    }

    /// Clears the lane's pending days once published, if the lane is still at `position`.
    pub async fn clear_pending(&self, lane: &str, position: &Position) -> Result<(), StoreError> {
        let mut item = key_item(&lane_key(lane));
        item.insert("pos".into(), s(&position.encode()));
        item.insert("pending".into(), Value::L(Vec::new()));
        match self
            .table
            .put(item, Expect::Pos(Some(position.encode())))
            .await
        {
            Ok(()) | Err(TableError::ConditionFailed(_)) => Ok(()),
            Err(e) => Err(StoreError(e)),
        }
    }

    /// A day's counters of a scope summed over every lane, and its generation: the commits that moved them, over
    /// every lane (it grows with each; two reads with one generation read the same figures). One strongly
    /// consistent Query.
    pub async fn day_totals(
        &self,
        scope: &str,
        on: NaiveDate,
    ) -> Result<(BTreeMap<String, i64>, i64), StoreError> {
        let pk = CounterItem {
            kind: 'c',
            scope: scope.to_owned(),
            day: on,
        }
        .pk();
        let (mut out, mut generation) = (BTreeMap::new(), 0);
        for item in self.table.query(&pk).await.map_err(StoreError)? {
            if let Some(Value::N(g)) = item.get(GENERATION) {
                generation += g;
            }
            for (attr, n) in numbers(&item) {
                *out.entry(attr).or_default() += n;
            }
        }
        out.retain(|_, n| *n != 0);
        Ok((out, generation))
    }

    /// A day's counters of a scope, summed over every lane.
    pub async fn day_counters(
        &self,
        scope: &str,
        on: NaiveDate,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        Ok(self.day_totals(scope, on).await?.0)
    }

    /// A day's actives per dimension value of a scope (`<definition>|<name>=<value>`), summed over every lane.
    pub async fn day_dimensions(
        &self,
        scope: &str,
        on: NaiveDate,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        Ok(self
            .day_totals(scope, on)
            .await?
            .0
            .into_iter()
            .filter_map(|(k, n)| Some((k.strip_prefix(crate::plan::DIM)?.to_owned(), n)))
            .collect())
    }

    /// Every scope with counters, and the days each has (a scan: reports and tests).
    pub async fn scopes(&self) -> Result<BTreeMap<String, BTreeSet<NaiveDate>>, StoreError> {
        let mut out: BTreeMap<String, BTreeSet<NaiveDate>> = BTreeMap::new();
        for pk in self.table.partitions("c#").await.map_err(StoreError)? {
            let rest = &pk[2..];
            if let Some((scope, d)) = rest.rsplit_once('#')
                && let Some(d) = day(d)
            {
                out.entry(scope.to_owned()).or_default().insert(d);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_round_trips_through_its_item_and_a_typical_one_is_one_write_unit() {
        let client = (
            Definition::Authenticating,
            "pool=us-east-1_EXAMPLE/client=exampleclient1".to_owned(),
        );
        let pool = (
            Definition::Authenticating,
            "pool=us-east-1_EXAMPLE".to_owned(),
        );
        let d = |n: u32| {
            NaiveDate::from_ymd_opt(2026, 10, 1).unwrap() + chrono::Duration::days(i64::from(n))
        };
        let mut h = History {
            version: 3,
            ..History::default()
        };
        // A daily user: every day of a month, the transitioning event of each day kept for the 31-day window.
        for n in 0..31 {
            for k in [&client, &pool] {
                h.days.entry(k.clone()).or_default().set(d(n));
            }
            h.counted
                .entry(d(n))
                .or_default()
                .insert(format!("{:016x}", 0xabcdef_u64 + u64::from(n)));
        }
        h.first.insert(client.clone(), d(0));
        h.first.insert(pool.clone(), d(0));
        let dims = Dims {
            day: Some(d(30)),
            values: BTreeSet::from([
                "platform=android".to_owned(),
                "app_version=2.4.1".to_owned(),
                "locale=en-US".to_owned(),
            ]),
        };
        h.dims.insert(client.clone(), dims.clone());
        h.dims.insert(pool.clone(), dims.clone());
        h.undo.insert(
            "0123456789abcdef".into(),
            Undo {
                position: Position::new(
                    "49590338271490256608559692540925702759324208523137515618",
                    0,
                ),
                until: 1_793_000_120,
                days: vec![(client.clone(), d(30)), (pool.clone(), d(30))],
                first: vec![],
                counted: vec![(d(30), format!("{:016x}", 0xabcdef_u64 + 30))],
                dims: vec![
                    (client.clone(), None, dims.digest()),
                    (pool.clone(), None, dims.digest()),
                ],
                sessions: Vec::new(),
            },
        );
        let key = ("auth", "4f3e2d1c-0000-4000-8000-000000000001".to_owned());
        let item = history_item(&key, &h);
        let back = history_of(&item);
        assert_eq!(back.version, 4);
        // The undo record comes back grouped by key.
        for u in h.undo.values_mut() {
            u.days.sort();
            u.dims.sort_by(|a, b| a.0.cmp(&b.0));
        }
        assert_eq!(History { version: 3, ..back }, h);
        let size = crate::table::item_size(&item);
        assert!(
            size <= 1024,
            "a daily user's history is {size} bytes: more than one write unit"
        );
    }

    #[test]
    fn an_installs_sessions_and_their_undo_round_trip_through_the_item() {
        let d = |n: u32| NaiveDate::from_ymd_opt(2026, 11, n).unwrap_or_default();
        let mut h = History {
            version: 1,
            ..History::default()
        };
        let one = Session {
            day: d(3),
            first_view: Some("00112233aabbccdd".into()),
            ended: true,
            ..Session::default()
        };
        let engaged = Session {
            day: d(4),
            engaged: true,
            ..Session::default()
        };
        h.sessions.insert("0123456789abcdef".into(), one.clone());
        h.sessions
            .insert("fedcba9876543210".into(), engaged.clone());
        h.undo.insert(
            "lane".into(),
            Undo {
                position: Position::new("12", 0),
                until: 1_793_000_120,
                sessions: vec![
                    (
                        "fedcba9876543210".into(),
                        Some(one.clone()),
                        Some(engaged.clone()),
                    ),
                    ("0123456789abcdef".into(), None, Some(one.clone())),
                    ("1111111111111111".into(), Some(engaged.clone()), None),
                ],
                ..Undo::default()
            },
        );
        let back = history_of(&history_item(&("app", "install-1".to_owned()), &h));
        assert_eq!(History { version: 1, ..back }, h);
        // Damaged bytes read as far as they go, never panic.
        for cut in 0..pack_session_changes(&h.undo["lane"].sessions).len() {
            let bytes = pack_session_changes(&h.undo["lane"].sessions);
            let _ = unpack_session_changes(&bytes[..cut]);
            let _ = unpack_sessions(&pack_sessions(&h.sessions)[..cut.min(20)]);
        }
    }
}
