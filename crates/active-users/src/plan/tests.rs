//! The planner against a brute-force count: generated activities (repeats, late events, redeliveries after a
//! failed commit) planned batch by batch over an in-memory table must give exactly the figures counted directly
//! from the set of (actor, day) facts, for every day: actives, new, month actives, 7-day retention, rolling 7- and
//! 30-day actives, and event counts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::*;
use crate::activity::{Active, Counter};

fn day(n: i64) -> NaiveDate {
    plus(NaiveDate::from_ymd_opt(2026, 10, 20).unwrap_or_default(), n)
}

fn sign_in(event_id: &str, sub: &str, d: NaiveDate) -> Activity {
    Activity {
        event_id: event_id.into(),
        day: d,
        scopes: vec!["pool=p/client=c".into(), "pool=p".into()],
        actives: vec![Active {
            definition: Definition::Authenticating,
            actor: sub.into(),
        }],
        dimensions: vec![(
            "platform".into(),
            if sub.len().is_multiple_of(2) {
                "ios"
            } else {
                "android"
            }
            .into(),
        )],
        counters: vec![Counter::SignIns],
        origin: "trigger".into(),
    }
}

fn failure(event_id: &str, d: NaiveDate) -> Activity {
    Activity {
        event_id: event_id.into(),
        day: d,
        scopes: vec!["pool=p".into()],
        actives: vec![],
        dimensions: vec![],
        counters: vec![Counter::AuthFailures],
        origin: "activity_log".into(),
    }
}

fn rules() -> Rules {
    Rules {
        today: day(60),
        replay_days: 400,
        dimension_values_cap: DIMENSION_VALUES_CAP,
    }
}

/// An in-memory table of one or more lanes: histories, markers, committed counters and positions.
#[derive(Default)]
struct Table {
    histories: BTreeMap<ActorKey, History>,
    markers: HashMap<String, (String, Position)>,
    totals: Deltas,
    lanes: BTreeMap<String, LaneState>,
    seq: u64,
}

impl Table {
    /// Runs one batch of `lane`; with `crash`, everything but the commit is written (then the batch must come
    /// again). Returns the positions of the batch's records, for a redelivery.
    fn run(&mut self, lane: &str, batch: &[(Position, Activity)], crash: bool) {
        let state = self
            .lanes
            .entry(lane.to_owned())
            .or_insert_with(|| LaneState {
                lane: lane.to_owned(),
                ..LaneState::default()
            })
            .clone();
        let committed = state.committed();
        let activities: Vec<(usize, Position, Activity)> = batch
            .iter()
            .enumerate()
            .filter(|(_, (p, _))| !state.has_committed(p))
            .map(|(i, (p, a))| (i, p.clone(), a.clone()))
            .collect();
        if activities.is_empty() {
            return;
        }
        let base: BTreeMap<ActorKey, History> = self
            .histories
            .iter()
            .map(|(k, h)| (k.clone(), h.without_uncommitted(lane, &committed)))
            .collect();
        let plan = plan(&activities, &base, &state, &rules());
        for (k, h) in plan.histories {
            self.histories.insert(k, h);
        }
        let mut deltas = plan.deltas.clone();
        for wait in &plan.markers {
            let mine = (lane.to_owned(), wait.position.clone());
            let counts = match self.markers.get(&wait.event_id) {
                None => {
                    self.markers.insert(wait.event_id.clone(), mine);
                    true
                }
                Some(by) => *by == mine && wait.position > committed,
            };
            if counts {
                merge(&mut deltas, &wait.deltas);
            }
        }
        if crash {
            return;
        }
        merge(&mut self.totals, &deltas);
        let lane_state = self.lanes.entry(lane.to_owned()).or_default();
        lane_state.position = activities.last().map(|(_, p, _)| p.clone());
        if let Some(values) = plan.dimension_values {
            lane_state.dimension_values = values;
        }
    }

    fn next_position(&mut self) -> Position {
        self.seq += 1;
        Position::new(&format!("{:020}", self.seq), 0)
    }

    /// A counter summed over its items, per day.
    fn counter(&self, scope: &str, attr: &str) -> BTreeMap<NaiveDate, i64> {
        let mut out = BTreeMap::new();
        for (item, attrs) in &self.totals {
            if item.kind == 'c'
                && item.scope == scope
                && let Some(n) = attrs.get(attr).filter(|n| **n != 0)
            {
                *out.entry(item.day).or_default() += n;
            }
        }
        out
    }

    fn rolling(&self, scope: &str, n: i64, on: NaiveDate) -> i64 {
        super::rolling(Definition::Authenticating, n, on, |d| {
            self.totals
                .get(&Item {
                    kind: 'c',
                    scope: scope.to_owned(),
                    day: d,
                })
                .cloned()
                .unwrap_or_default()
        })
    }
}

/// The figures counted directly from the facts: (actor, day) per scope, and distinct event ids.
struct Truth {
    facts: BTreeSet<(String, NaiveDate)>,
    failures: BTreeMap<NaiveDate, BTreeSet<String>>,
    sign_ins: BTreeMap<NaiveDate, BTreeSet<String>>,
}

impl Truth {
    fn actors_on(&self, d: NaiveDate) -> BTreeSet<&str> {
        self.facts
            .iter()
            .filter(|(_, x)| *x == d)
            .map(|(a, _)| a.as_str())
            .collect()
    }

    fn days_of(&self, actor: &str) -> BTreeSet<NaiveDate> {
        self.facts
            .iter()
            .filter(|(a, _)| a == actor)
            .map(|(_, d)| *d)
            .collect()
    }
}

fn check(table: &Table, truth: &Truth, scope: &str) {
    let count = |attr: &str| table.counter(scope, &format!("authenticating_users.{attr}"));
    let (active, new, month, retained) = (
        count("active"),
        count("new"),
        count("month_active"),
        count("retained7"),
    );
    let actors: BTreeSet<&str> = truth.facts.iter().map(|(a, _)| a.as_str()).collect();
    for n in -10..80 {
        let d = day(n);
        let on = truth.actors_on(d);
        assert_eq!(
            active.get(&d).copied().unwrap_or(0),
            on.len() as i64,
            "active {d}"
        );
        let firsts = actors
            .iter()
            .filter(|a| truth.days_of(a).first() == Some(&d))
            .count();
        assert_eq!(new.get(&d).copied().unwrap_or(0), firsts as i64, "new {d}");
        let kept = on
            .iter()
            .filter(|a| {
                truth
                    .days_of(a)
                    .iter()
                    .any(|x| *x > d && *x <= plus(d, RETENTION_DAYS))
            })
            .count();
        assert_eq!(
            retained.get(&d).copied().unwrap_or(0),
            kept as i64,
            "retained7 {d}"
        );
        for (w, name) in WINDOWS {
            let within = actors
                .iter()
                .filter(|a| truth.days_of(a).iter().any(|x| *x <= d && *x > minus(d, w)))
                .count();
            assert_eq!(table.rolling(scope, w, d), within as i64, "{name} {d}");
        }
        let sign_ins = table.counter(scope, "trigger.sign_ins");
        assert_eq!(
            sign_ins.get(&d).copied().unwrap_or(0),
            truth.sign_ins.get(&d).map_or(0, |s| s.len()) as i64,
            "sign-ins {d}"
        );
    }
    // A month's sum of month_active is its distinct actors.
    let mut per_month: BTreeMap<(i32, u32), BTreeSet<&str>> = BTreeMap::new();
    for (a, d) in &truth.facts {
        use chrono::Datelike;
        per_month
            .entry((d.year(), d.month()))
            .or_default()
            .insert(a);
    }
    for ((y, m), actors) in per_month {
        use chrono::Datelike;
        let sum: i64 = month
            .iter()
            .filter(|(d, _)| d.year() == y && d.month() == m)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(sum, actors.len() as i64, "month {y}-{m}");
    }
}

#[test]
fn generated_months_in_any_order_with_repeats_and_crashes_count_like_brute_force() {
    for seed in 0..24u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut events: Vec<Activity> = Vec::new();
        let mut truth = Truth {
            facts: BTreeSet::new(),
            failures: BTreeMap::new(),
            sign_ins: BTreeMap::new(),
        };
        for i in 0..300 {
            let d = day(rng.i64(0..70));
            if rng.u8(0..10) == 0 {
                let id = bridge_core::envelope::event_id(&["failure", &i.to_string()]);
                truth.failures.entry(d).or_default().insert(id.clone());
                events.push(failure(&id, d));
                continue;
            }
            let actor = format!("u{}", rng.u8(0..25));
            let id = bridge_core::envelope::event_id(&["sign-in", &i.to_string()]);
            truth.facts.insert((actor.clone(), d));
            truth.sign_ins.entry(d).or_default().insert(id.clone());
            events.push(sign_in(&id, &actor, d));
        }
        // Repeats (the same event again, later), then batches in an order that makes many events late.
        for _ in 0..60 {
            let again = events[rng.usize(0..events.len())].clone();
            events.push(again);
        }
        rng.shuffle(&mut events);
        let mut table = Table::default();
        let lanes = ["lane-a", "lane-b"];
        let mut i = 0;
        while i < events.len() {
            let n = rng.usize(1..20).min(events.len() - i);
            // An actor's events stay in one lane, as a partition key keeps them in one shard.
            let batch: Vec<Activity> = events[i..i + n].to_vec();
            for lane in lanes {
                let mine: Vec<(Position, Activity)> = batch
                    .iter()
                    .filter(|a| {
                        let key = a.actives.first().map_or("", |x| x.actor.as_str());
                        (key.len() % 2 == 0) == (lane == "lane-a")
                    })
                    .cloned()
                    .map(|a| (table.next_position(), a))
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                if rng.u8(0..4) == 0 {
                    table.run(lane, &mine, true);
                    // A redelivery of part of it first (Lambda may deliver less), then the whole batch.
                    let part = rng.usize(1..=mine.len());
                    table.run(lane, &mine[..part], rng.bool());
                }
                table.run(lane, &mine, false);
                // A redelivery after the commit changes nothing.
                if rng.u8(0..5) == 0 {
                    table.run(lane, &mine, false);
                }
            }
            i += n;
        }
        check(&table, &truth, "pool=p");
        let failures = table.counter("pool=p", "activity_log.auth_failures");
        for (d, ids) in &truth.failures {
            assert_eq!(
                failures.get(d).copied().unwrap_or(0),
                ids.len() as i64,
                "seed {seed}"
            );
        }
    }
}

#[test]
fn an_already_active_user_changes_no_history_and_its_sign_in_waits_on_a_marker() {
    let mut table = Table::default();
    let p1 = table.next_position();
    let (e1, e2) = (
        bridge_core::envelope::event_id(&["1"]),
        bridge_core::envelope::event_id(&["2"]),
    );
    table.run("L", &[(p1, sign_in(&e1, "alice", day(3)))], false);
    let before = table.histories.clone();
    let state = table.lanes["L"].clone();
    let p2 = table.next_position();
    let plan = plan(
        &[(0, p2, sign_in(&e2, "alice", day(3)))],
        &before,
        &state,
        &rules(),
    );
    assert!(plan.histories.is_empty(), "nothing to write but the marker");
    assert_eq!(plan.markers.len(), 1);
    assert!(plan.deltas.is_empty());
    // The first sign-in of the day was counted with the history it changed: its repeat waits on nothing.
    let p3 = table.next_position();
    let repeat = plan_of(&table, &[(p3, sign_in(&e1, "alice", day(3)))]);
    assert!(repeat.markers.is_empty() && repeat.deltas.is_empty() && repeat.histories.is_empty());
}

fn plan_of(table: &Table, batch: &[(Position, Activity)]) -> Plan {
    let activities: Vec<(usize, Position, Activity)> = batch
        .iter()
        .enumerate()
        .map(|(i, (p, a))| (i, p.clone(), a.clone()))
        .collect();
    plan(&activities, &table.histories, &table.lanes["L"], &rules())
}

#[test]
fn dimension_values_count_once_per_actor_and_day_and_past_the_cap_as_other() {
    let mut r = rules();
    r.dimension_values_cap = 2;
    let mut batch = Vec::new();
    for (i, (actor, platform)) in [
        ("a", "ios"),
        ("a", "ios"),
        ("b", "android"),
        ("c", "web"),
        ("a", "web"),
    ]
    .iter()
    .enumerate()
    {
        let mut s = sign_in(
            &bridge_core::envelope::event_id(&[&i.to_string()]),
            actor,
            day(1),
        );
        s.dimensions = vec![("platform".into(), (*platform).into())];
        batch.push((i, Position::new(&format!("{}", i + 1), 0), s));
    }
    let lane = LaneState {
        lane: "L".into(),
        ..LaneState::default()
    };
    let plan = plan(&batch, &BTreeMap::new(), &lane, &r);
    let dims = &plan.deltas[&Item {
        kind: 'c',
        scope: "pool=p".into(),
        day: day(1),
    }];
    assert_eq!(dims["dim|authenticating_users|platform=ios"], 1);
    assert_eq!(dims["dim|authenticating_users|platform=android"], 1);
    // web came third: past the cap of 2, it counts as other, once per actor (c, then a).
    assert_eq!(dims["dim|authenticating_users|platform=other"], 2);
    assert_eq!(
        plan.dimension_values.unwrap()["authenticating_users|pool=p|platform"].len(),
        2
    );
}

#[test]
fn the_largest_history_fits_an_item_by_far() {
    // Ten years of days in 16 scopes of two definitions of 128-character names, a year's replay window, as many
    // dimension values as it keeps of 128 characters, and as many lanes' undo records, each of 64 days.
    let bound = history_size_bound(10, 128, 366, 1_000, 128, 100, 64);
    assert!(bound < 400 * 1024, "{bound}");
}
