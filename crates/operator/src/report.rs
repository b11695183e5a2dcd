//! `ckb report`: the active-users rollups of one scope and definition as a table per day, and a chart of
//! daily and 30-day actives and of sign-ins, sign-ups and failures over time (SVG, drawn by `plotters` without
//! system fonts: the viewer renders the text).
//!
//! Every figure is exact, read from the table (summed over lanes): daily actives, new, retained, event counts,
//! month actives, rolling 7- and 30-day actives (from the day's window runs, `active_users::plan::rolling`), the
//! sticky factor (daily over 30-day), and each dimension value's actives of a day.

use std::collections::BTreeMap;

use active_users::activity::Definition;
use active_users::plan;
use active_users::store::{RollupStore, StoreError};
use chrono::{Datelike, NaiveDate};
use plotters::prelude::*;

/// One day of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct DayRow {
    /// The day.
    pub day: NaiveDate,
    /// Actives that day.
    pub active: i64,
    /// Actors first seen that day.
    pub new: i64,
    /// Of that day's actives, those active again within the next 7 days (complete 7 days later).
    pub retained7: i64,
    /// Distinct actives over the 7 days ending that day.
    pub rolling7: i64,
    /// Distinct actives over the 30 days ending that day.
    pub rolling30: i64,
    /// The day's event counters, by `<origin>.<counter>`.
    pub events: BTreeMap<String, i64>,
}

impl DayRow {
    /// Daily over 30-day actives.
    pub fn sticky(&self) -> Option<f64> {
        (self.rolling30 > 0).then(|| self.active as f64 / self.rolling30 as f64)
    }

    /// Of the day's actives, the share active again within 7 days.
    pub fn retention7(&self) -> Option<f64> {
        (self.active > 0).then(|| self.retained7 as f64 / self.active as f64)
    }

    /// An event counter: the trigger's count when the trigger saw any that day, else the user-activity log's,
    /// else a backfilled Pinpoint archive's (each origin counts on its own; they are never added).
    pub fn event(&self, counter: &str) -> i64 {
        let get = |origin: &str| self.events.get(&format!("{origin}.{counter}")).copied();
        get("trigger")
            .or_else(|| get("activity_log"))
            .or_else(|| get("pinpoint"))
            .or_else(|| get("app"))
            .unwrap_or(0)
    }

    /// Successful sign-ins over sign-ins and failures, from the user-activity log (the triggers never see a
    /// failed sign-in), else from a backfilled Pinpoint archive (`_userauth.sign_in` and `_userauth.auth_fail`).
    pub fn success_rate(&self) -> Option<f64> {
        ["activity_log", "pinpoint"].iter().find_map(|origin| {
            let get = |c: &str| {
                self.events
                    .get(&format!("{origin}.{c}"))
                    .copied()
                    .unwrap_or(0)
            };
            let (ok, failed) = (get("sign_ins"), get("auth_failures"));
            (ok + failed > 0).then(|| ok as f64 / (ok + failed) as f64)
        })
    }
}

/// Every day's counters of a scope over `from..=to`, summed over lanes.
pub async fn day_counters(
    store: &RollupStore,
    scope: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<BTreeMap<NaiveDate, BTreeMap<String, i64>>, StoreError> {
    let mut out = BTreeMap::new();
    for day in from.iter_days().take_while(|d| *d <= to) {
        out.insert(day, store.day_counters(scope, day).await?);
    }
    Ok(out)
}

/// The days `from..=to` of a scope and definition, with the month actives of `to`'s month up to `to`.
pub async fn rows(
    store: &RollupStore,
    definition: Definition,
    scope: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<(Vec<DayRow>, i64), StoreError> {
    let month_start = to.with_day(1).unwrap_or(to);
    let start = (from - chrono::Duration::days(29)).min(month_start);
    let counters = day_counters(store, scope, start, to).await?;
    let of = |day: NaiveDate| counters.get(&day).cloned().unwrap_or_default();
    let d = definition.as_str();
    let mut out = Vec::new();
    for day in from.iter_days().take_while(|x| *x <= to) {
        let c = of(day);
        let get = |attr: &str| c.get(&format!("{d}.{attr}")).copied().unwrap_or(0);
        out.push(DayRow {
            day,
            active: get("active"),
            new: get("new"),
            retained7: get("retained7"),
            rolling7: plan::rolling(definition, 7, day, of),
            rolling30: plan::rolling(definition, 30, day, of),
            events: c
                .iter()
                .filter(|(k, _)| {
                    Definition::ALL
                        .iter()
                        .all(|d| !k.starts_with(&format!("{}.", d.as_str())))
                })
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        });
    }
    let month = month_start
        .iter_days()
        .take_while(|x| *x <= to)
        .map(|x| {
            of(x)
                .get(&format!("{d}.month_active"))
                .copied()
                .unwrap_or(0)
        })
        .sum();
    Ok((out, month))
}

/// One dimension value's distinct actives on a day.
#[derive(Debug, Clone, PartialEq)]
pub struct Breakdown {
    /// `name=value`.
    pub dimension: String,
    /// Its actives that day.
    pub day: i64,
}

/// A definition's actives of `day` by every dimension value counted that day.
pub async fn breakdown(
    store: &RollupStore,
    definition: Definition,
    scope: &str,
    day: NaiveDate,
) -> Result<Vec<Breakdown>, StoreError> {
    let prefix = format!("{}|", definition.as_str());
    Ok(store
        .day_dimensions(scope, day)
        .await?
        .into_iter()
        .filter_map(|(k, n)| {
            Some(Breakdown {
                dimension: k.strip_prefix(&prefix)?.to_owned(),
                day: n,
            })
        })
        .collect())
}

/// The breakdown as a text table.
pub fn breakdown_table(rows: &[Breakdown]) -> String {
    let mut out = format!("{:<32} {:>8}\n", "dimension", "day");
    for r in rows {
        out.push_str(&format!("{:<32} {:>8}\n", r.dimension, r.day));
    }
    out
}

/// The rows as a text table.
pub fn table(rows: &[DayRow]) -> String {
    let pct = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{:.1}%", v * 100.0));
    let mut out = format!(
        "{:<10} {:>7} {:>6} {:>8} {:>8} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        "day",
        "active",
        "new",
        "7-day",
        "30-day",
        "sticky",
        "retained7",
        "sign-ins",
        "attempts",
        "sign-ups",
        "failures",
        "success"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<10} {:>7} {:>6} {:>8} {:>8} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            plan::day_label(r.day),
            r.active,
            r.new,
            r.rolling7,
            r.rolling30,
            pct(r.sticky()),
            pct(r.retention7()),
            r.event("sign_ins"),
            r.event("sign_in_attempts"),
            r.event("sign_ups"),
            r.events
                .get("activity_log.auth_failures")
                .copied()
                .unwrap_or(0),
            pct(r.success_rate()),
        ));
    }
    out
}

/// The series of the chart, with their colours: each colour is used by one series only.
pub const SERIES: &[(&str, RGBColor)] = &[
    ("daily active users", RGBColor(0x1F, 0x77, 0xB4)),
    ("30-day active users", RGBColor(0xFF, 0x7F, 0x0E)),
    ("sign-ins", RGBColor(0x2C, 0xA0, 0x2C)),
    ("sign-ups", RGBColor(0x94, 0x67, 0xBD)),
    ("authentication failures", RGBColor(0xD6, 0x27, 0x28)),
];

/// Why the chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("chart: {0}")]
pub struct ChartError(String);

/// An SVG of two charts: daily and 30-day actives; sign-ins, sign-ups and failures; one point per day.
pub fn chart_svg(title: &str, rows: &[DayRow]) -> Result<String, ChartError> {
    let e = |e: &dyn std::fmt::Display| ChartError(e.to_string());
    let values: Vec<Vec<f64>> = vec![
        rows.iter().map(|r| r.active as f64).collect(),
        rows.iter().map(|r| r.rolling30 as f64).collect(),
        rows.iter().map(|r| r.event("sign_ins") as f64).collect(),
        rows.iter().map(|r| r.event("sign_ups") as f64).collect(),
        rows.iter()
            .map(|r| {
                r.events
                    .get("activity_log.auth_failures")
                    .copied()
                    .unwrap_or(0) as f64
            })
            .collect(),
    ];
    let labels: Vec<String> = rows.iter().map(|r| plan::day_label(r.day)).collect();
    let n = i32::try_from(rows.len()).map_err(|x| e(&x))?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 800)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let (top, bottom) = root.split_vertically(400);
        for (area, caption, series) in [
            (&top, format!("{title}: active users"), 0..2),
            (
                &bottom,
                format!("{title}: sign-ins, sign-ups, failures"),
                2..5,
            ),
        ] {
            let max = values[series.clone()]
                .iter()
                .flatten()
                .fold(1.0f64, |m, v| m.max(*v));
            let mut chart = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 20))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0i32..(n - 1).max(1), 0f64..max * 1.1)
                .map_err(|x| e(&x))?;
            chart
                .configure_mesh()
                .x_labels(8)
                .x_label_formatter(&|i| {
                    usize::try_from(*i)
                        .ok()
                        .and_then(|i| labels.get(i).cloned())
                        .unwrap_or_default()
                })
                .draw()
                .map_err(|x| e(&x))?;
            for s in series {
                let (name, color) = SERIES[s];
                chart
                    .draw_series(LineSeries::new(
                        values[s]
                            .iter()
                            .enumerate()
                            .map(|(i, v)| (i32::try_from(i).unwrap_or(i32::MAX), *v)),
                        color.stroke_width(2),
                    ))
                    .map_err(|x| e(&x))?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(|x| e(&x))?;
        }
        root.present().map_err(|x| e(&x))?;
    }
    Ok(svg)
}

/// One day of an app's sessions and purchases (scope `app`), from the rollup's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct AppDay {
    /// The day.
    pub day: NaiveDate,
    /// Sessions started (`_session.start`), ended (first stops), engaged (over 10 s or 2 views, on their day).
    pub started: i64,
    pub ended: i64,
    pub engaged: i64,
    /// Stops without a duration.
    pub no_duration: i64,
    /// The median and p90 session duration of the day's stops, in seconds (the lower bound of their bucket).
    pub p50_s: Option<i64>,
    pub p90_s: Option<i64>,
    /// Session users that day.
    pub session_users: i64,
    /// Purchases, paying users, and purchases that added no revenue.
    pub purchases: i64,
    pub paying: i64,
    pub invalid: i64,
    /// Revenue (millionths of the unit) and units, per currency (`none`: no currency; `other`: not ISO 4217).
    pub revenue: BTreeMap<String, i64>,
    pub units: BTreeMap<String, i64>,
}

impl AppDay {
    /// The day from its counters.
    pub fn of(day: NaiveDate, c: &BTreeMap<String, i64>) -> Self {
        let get = |k: &str| c.get(k).copied().unwrap_or(0);
        let figures = active_users::handler::figures(c);
        let per = |prefix: &str| -> BTreeMap<String, i64> {
            c.iter()
                .filter_map(|(k, n)| Some((k.strip_prefix(prefix)?.to_owned(), *n)))
                .filter(|(_, n)| *n != 0)
                .collect()
        };
        Self {
            day,
            started: get("app.sessions"),
            ended: get("app.sessions_ended"),
            engaged: get(plan::ENGAGED_SESSIONS),
            no_duration: get(&format!(
                "app.{}",
                active_users::activity::SESSIONS_NO_DURATION
            )),
            p50_s: figures.get("app_session_p50_s").copied(),
            p90_s: figures.get("app_session_p90_s").copied(),
            session_users: get("session_users.active"),
            purchases: get("app.purchases"),
            paying: get("paying_users.active"),
            invalid: per(&format!(
                "app.{}",
                active_users::activity::PURCHASES_INVALID
            ))
            .values()
            .sum(),
            revenue: per(&format!("app.{}", active_users::activity::REVENUE_MICROS)),
            units: per(&format!("app.{}", active_users::activity::UNITS)),
        }
    }

    /// Sessions started per session user.
    pub fn sessions_per_user(&self) -> Option<f64> {
        (self.session_users > 0).then(|| self.started as f64 / self.session_users as f64)
    }

    /// Revenue of `currency` per session user (in units of the currency).
    pub fn revenue_per_user(&self, currency: &str) -> Option<f64> {
        (self.session_users > 0).then(|| {
            self.revenue.get(currency).copied().unwrap_or(0) as f64
                / 1e6
                / self.session_users as f64
        })
    }
}

/// The app's days `from..=to`.
pub async fn app_rows(
    store: &RollupStore,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<AppDay>, StoreError> {
    Ok(day_counters(store, "app", from, to)
        .await?
        .iter()
        .map(|(d, c)| AppDay::of(*d, c))
        .collect())
}

/// The app's days as a text table: sessions, then purchases and revenue per currency.
pub fn app_table(rows: &[AppDay]) -> String {
    let opt = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let mut out = format!(
        "{:<10} {:>8} {:>7} {:>8} {:>6} {:>6} {:>8} {:>9} {:>7} {:>8}  {}\n",
        "day",
        "sessions",
        "ended",
        "engaged",
        "p50 s",
        "p90 s",
        "per user",
        "purchases",
        "paying",
        "invalid",
        "revenue per currency (units) and per session user"
    );
    for r in rows {
        let revenue: Vec<String> = r
            .revenue
            .iter()
            .map(|(cur, micros)| {
                format!(
                    "{cur} {:.2} ({}, {:.4}/user)",
                    *micros as f64 / 1e6,
                    r.units.get(cur).copied().unwrap_or(0),
                    r.revenue_per_user(cur).unwrap_or(0.0)
                )
            })
            .collect();
        out.push_str(&format!(
            "{:<10} {:>8} {:>7} {:>8} {:>6} {:>6} {:>8} {:>9} {:>7} {:>8}  {}\n",
            plan::day_label(r.day),
            r.started,
            r.ended,
            r.engaged,
            opt(r.p50_s),
            opt(r.p90_s),
            r.sessions_per_user()
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}")),
            r.purchases,
            r.paying,
            r.invalid,
            revenue.join("; ")
        ));
    }
    out
}

/// One day's lifecycle of a definition in a scope, and its new-user retention.
#[derive(Debug, Clone, PartialEq)]
pub struct Stages {
    /// The day.
    pub day: NaiveDate,
    /// Active that day: new + returning + resurrecting.
    pub active: i64,
    pub new: i64,
    pub returning: i64,
    pub resurrecting: i64,
    /// Active the day before, not this day.
    pub dormant: i64,
    /// Of the day's new actors, those active 1, 7 and 30 days later.
    pub new_retained: [i64; 3],
}

impl Stages {
    /// The day from its counters.
    pub fn of(day: NaiveDate, definition: Definition, c: &BTreeMap<String, i64>) -> Self {
        let d = definition.as_str();
        let get = |k: &str| c.get(&format!("{d}.{k}")).copied().unwrap_or(0);
        Self {
            day,
            active: get("active"),
            new: get("new"),
            returning: get("returning"),
            resurrecting: get("resurrecting"),
            dormant: get("dormant"),
            new_retained: plan::NEW_USER_RETENTION.map(|n| get(&format!("new_retained{n}"))),
        }
    }
}

/// A definition's lifecycle in a scope over `from..=to`.
pub async fn lifecycle_rows(
    store: &RollupStore,
    definition: Definition,
    scope: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<Stages>, StoreError> {
    Ok(day_counters(store, scope, from, to)
        .await?
        .iter()
        .map(|(d, c)| Stages::of(*d, definition, c))
        .collect())
}

/// The lifecycle as a text table (dormant as a negative count, as the chart draws it).
pub fn lifecycle_table(rows: &[Stages]) -> String {
    let pct = |n: i64, of: i64| {
        if of > 0 {
            format!("{:.1}%", n as f64 * 100.0 / of as f64)
        } else {
            "-".to_owned()
        }
    };
    let mut out = format!(
        "{:<10} {:>7} {:>6} {:>9} {:>12} {:>8} {:>7} {:>7} {:>7}\n",
        "day",
        "active",
        "new",
        "returning",
        "resurrecting",
        "dormant",
        "new d1",
        "new d7",
        "new d30"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<10} {:>7} {:>6} {:>9} {:>12} {:>8} {:>7} {:>7} {:>7}\n",
            plan::day_label(r.day),
            r.active,
            r.new,
            r.returning,
            r.resurrecting,
            -r.dormant,
            pct(r.new_retained[0], r.new),
            pct(r.new_retained[1], r.new),
            pct(r.new_retained[2], r.new),
        ));
    }
    out
}

/// The lifecycle stages with their colours (PostHog's stacked lifecycle chart: the active stages above zero,
/// dormant below).
pub const STAGES: &[(&str, RGBColor)] = &[
    ("new", RGBColor(0x2C, 0xA0, 0x2C)),
    ("returning", RGBColor(0x1F, 0x77, 0xB4)),
    ("resurrecting", RGBColor(0xFF, 0x7F, 0x0E)),
    ("dormant", RGBColor(0xD6, 0x27, 0x28)),
];

/// An SVG of the lifecycle: per day a bar of new, returning and resurrecting stacked above zero, and dormant below.
pub fn lifecycle_svg(title: &str, rows: &[Stages]) -> Result<String, ChartError> {
    let e = |e: &dyn std::fmt::Display| ChartError(e.to_string());
    let labels: Vec<String> = rows.iter().map(|r| plan::day_label(r.day)).collect();
    let n = i32::try_from(rows.len()).map_err(|x| e(&x))?;
    let top = rows
        .iter()
        .map(|r| (r.new + r.returning + r.resurrecting) as f64)
        .fold(1.0f64, f64::max);
    let bottom = rows.iter().map(|r| r.dormant as f64).fold(1.0f64, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 450)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{title}: lifecycle per UTC day"),
                ("sans-serif", 20),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-1i32..n.max(1), -bottom * 1.1..top * 1.1)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&|i| {
                usize::try_from(*i)
                    .ok()
                    .and_then(|i| labels.get(i).cloned())
                    .unwrap_or_default()
            })
            .draw()
            .map_err(|x| e(&x))?;
        for (k, (name, color)) in STAGES.iter().enumerate() {
            let bars = rows.iter().enumerate().map(|(i, r)| {
                let x = i32::try_from(i).unwrap_or(i32::MAX);
                let stack = [r.new, r.returning, r.resurrecting];
                let (from, to) = if k < 3 {
                    let below: i64 = stack[..k].iter().sum();
                    (below as f64, (below + stack[k]) as f64)
                } else {
                    (-(r.dormant as f64), 0.0)
                };
                Rectangle::new([(x, from), (x + 1, to)], color.filled())
            });
            let color = *color;
            chart
                .draw_series(bars)
                .map_err(|x| e(&x))?
                .label(*name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(d: u32, active: i64) -> DayRow {
        DayRow {
            day: NaiveDate::from_ymd_opt(2026, 11, d).unwrap_or_default(),
            active,
            new: 1,
            retained7: active / 2,
            rolling7: 0,
            rolling30: active * 3,
            events: BTreeMap::from([
                ("trigger.sign_ins".to_owned(), active),
                ("activity_log.sign_ins".to_owned(), 9),
                ("activity_log.auth_failures".to_owned(), 1),
            ]),
        }
    }

    #[test]
    fn rates_and_origins() {
        let r = row(1, 10);
        assert_eq!(r.sticky(), Some(10.0 / 30.0));
        assert_eq!(r.retention7(), Some(0.5));
        assert_eq!(
            r.event("sign_ins"),
            10,
            "the trigger's count, not both origins added"
        );
        assert_eq!(r.success_rate(), Some(0.9));
        assert!(table(&[r]).contains("2026-11-01"));
    }

    #[test]
    fn an_app_day_reads_its_sessions_and_revenue_and_a_lifecycle_its_stages() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 3).unwrap_or_default();
        let c = BTreeMap::from([
            ("app.sessions".to_owned(), 10),
            ("app.sessions_ended".to_owned(), 8),
            ("app.engaged_sessions".to_owned(), 5),
            ("app.session_s.1".to_owned(), 4),
            ("app.session_s.12".to_owned(), 4),
            ("session_users.active".to_owned(), 4),
            ("app.purchases".to_owned(), 3),
            ("app.purchases_invalid.price".to_owned(), 1),
            ("app.revenue_micros.USD".to_owned(), 3_980_000),
            ("app.units.USD".to_owned(), 2),
            ("paying_users.active".to_owned(), 2),
            ("session_users.new".to_owned(), 2),
            ("session_users.returning".to_owned(), 1),
            ("session_users.resurrecting".to_owned(), 1),
            ("session_users.dormant".to_owned(), 3),
            ("session_users.new_retained7".to_owned(), 1),
        ]);
        let a = AppDay::of(day, &c);
        assert_eq!((a.started, a.ended, a.engaged), (10, 8, 5));
        assert_eq!((a.p50_s, a.p90_s), (Some(1), Some(12)));
        assert_eq!(a.sessions_per_user(), Some(2.5));
        assert_eq!((a.purchases, a.paying, a.invalid), (3, 2, 1));
        assert_eq!(a.revenue_per_user("USD"), Some(3.98 / 4.0));
        assert!(app_table(&[a]).contains("USD 3.98 (2, 0.9950/user)"));
        let s = Stages::of(day, Definition::SessionUsers, &c);
        assert_eq!(
            (
                s.active,
                s.new,
                s.returning,
                s.resurrecting,
                s.dormant,
                s.new_retained
            ),
            (4, 2, 1, 1, 3, [0, 1, 0])
        );
        assert!(lifecycle_table(std::slice::from_ref(&s)).contains("50.0%"));
        let svg = lifecycle_svg("app", &[s]).unwrap();
        for (name, _) in STAGES {
            assert!(svg.contains(name), "{name}");
        }
    }
}
