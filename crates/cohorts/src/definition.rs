//! Cohort definitions: how they are written in the configuration (`name=rule:definition:days[:scope]`), their
//! stable ids, and the rules that decide, from one actor's history as stored, whether the actor is a member as of
//! a day. Pure: no I/O.
//!
//! **Rules**, for an as-of day `D` and `N` days (the window is `D-N+1..=D`, both ends included; days after `D`
//! are never looked at, so an as-of day in the past gives the answer it gave then, histories unchanged):
//! - `new`: the actor's first day (the earliest over the matching scopes) lies in the window;
//! - `active`: any day of the window is an active day (in any matching scope);
//! - `dormant`: the actor was first seen before the window, and no day of the window is active.
//!
//! **Ids.** A cohort's id is its name and the first 8 hex digits of a hash of its rule, definition, days and
//! scope (`active_7d-1a2b3c4d`): the same definition keeps its id across deployments, a changed one gets a new id,
//! so its first run sends its whole membership as joins instead of a diff against another definition's members.

use std::collections::BTreeSet;

use active_users::activity::Definition;
use active_users::history::{History, minus};
use chrono::NaiveDate;

/// The longest window a cohort may have, in days (a history's bitmaps cover every year it has days; a year is
/// what a dashboard's cohorts ask at most).
pub const MAX_DAYS: i64 = 366;
/// The longest cohort name.
pub const MAX_NAME_CHARS: usize = 64;
/// The most cohorts one deployment computes (each holds its members in memory during a run).
pub const MAX_COHORTS: usize = 32;

/// How membership is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// First day within the window.
    New,
    /// An active day within the window.
    Active,
    /// Seen before the window, no active day within it.
    Dormant,
}

impl Rule {
    /// Its name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Active => "active",
            Self::Dormant => "dormant",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::New, Self::Active, Self::Dormant]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// One configured cohort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cohort {
    /// Its name (`cohort_name`).
    pub name: String,
    /// The rule.
    pub rule: Rule,
    /// The activity definition whose days it reads.
    pub definition: Definition,
    /// The window, in days.
    pub days: i64,
    /// Only this scope of the definition (`pool=…`, `pool=…/client=…`, `app`); `None`: every scope.
    pub scope: Option<String>,
}

impl Cohort {
    /// The stable id (`cohort_id`): `<name>-<8 hex digits of the definition's hash>`.
    pub fn id(&self) -> String {
        let days = self.days.to_string();
        let hash = bridge_core::envelope::event_id(&[
            self.rule.as_str(),
            self.definition.as_str(),
            &days,
            self.scope.as_deref().unwrap_or(""),
        ]);
        format!("{}-{}", self.name, &hash[..8])
    }

    /// The history group whose actors it is about (`auth`: user subs; `app`: installs).
    pub fn group(&self) -> &'static str {
        active_users::plan::group(self.definition)
    }

    /// Whether the actor of `history` is a member as of `as_of`.
    pub fn admits(&self, history: &History, as_of: NaiveDate) -> bool {
        let from = minus(as_of, self.days - 1);
        // `any_in` leaves one day out; the day after the window is never in it.
        let after = as_of.succ_opt().unwrap_or(as_of);
        let keys = || {
            history
                .days
                .iter()
                .filter(|((d, scope), _)| *d == self.definition && self.scope_matches(scope))
        };
        let firsts = history
            .first
            .iter()
            .filter(|((d, scope), _)| *d == self.definition && self.scope_matches(scope))
            .map(|(_, f)| *f)
            .filter(|f| *f <= as_of);
        let active_in_window = || keys().any(|(_, days)| days.any_in(from, as_of, after));
        match self.rule {
            Rule::New => firsts.min().is_some_and(|f| f >= from),
            Rule::Active => active_in_window(),
            Rule::Dormant => firsts.min().is_some_and(|f| f < from) && !active_in_window(),
        }
    }

    fn scope_matches(&self, scope: &str) -> bool {
        self.scope.as_deref().is_none_or(|s| s == scope)
    }

    /// The actor's dimension values to show as `user_properties`: those named in `allowed`, from the matching
    /// scope whose latest day is the latest (the first such scope on a tie). `<name>=<value>` split at the first
    /// `=`.
    pub fn properties(
        &self,
        history: &History,
        allowed: &BTreeSet<String>,
    ) -> Vec<(String, String)> {
        if allowed.is_empty() {
            return Vec::new();
        }
        let mut best: Option<&active_users::history::Dims> = None;
        for ((d, scope), dims) in &history.dims {
            if *d != self.definition || !self.scope_matches(scope) {
                continue;
            }
            if best.is_none_or(|b| dims.day > b.day) {
                best = Some(dims);
            }
        }
        best.map(|dims| {
            dims.values
                .iter()
                .filter_map(|v| v.split_once('='))
                .filter(|(name, _)| allowed.contains(*name))
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default()
    }
}

/// The cohorts when none are configured: new in the last 7 days, active in the last 7, dormant for 14 (signed-in
/// users), paying in the last 30 (installs with a purchase).
pub const DEFAULT_DEFINITIONS: &str = "new_7d=new:authenticating_users:7,active_7d=active:authenticating_users:7,\
     dormant_14d=dormant:authenticating_users:14,paying_30d=active:paying_users:30";

/// Reads `name=rule:definition:days[:scope]`, comma-separated. The error says which entry and why.
pub fn parse(text: &str) -> Result<Vec<Cohort>, String> {
    let mut cohorts: Vec<Cohort> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let cohort = parse_one(entry).map_err(|why| format!("{entry:?}: {why}"))?;
        if cohorts.iter().any(|c| c.name == cohort.name) {
            return Err(format!(
                "{entry:?}: the name {:?} is used twice",
                cohort.name
            ));
        }
        cohorts.push(cohort);
    }
    if cohorts.is_empty() {
        return Err("no cohort is defined".into());
    }
    if cohorts.len() > MAX_COHORTS {
        return Err(format!("{} cohorts, at most {MAX_COHORTS}", cohorts.len()));
    }
    Ok(cohorts)
}

fn parse_one(entry: &str) -> Result<Cohort, String> {
    let (name, spec) = entry
        .split_once('=')
        .ok_or("expected name=rule:definition:days[:scope]")?;
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "the name must be 1 to {MAX_NAME_CHARS} of A-Z a-z 0-9 _ -"
        ));
    }
    let parts: Vec<&str> = spec.splitn(4, ':').map(str::trim).collect();
    let [rule, definition, days, rest @ ..] = parts.as_slice() else {
        return Err("expected name=rule:definition:days[:scope]".into());
    };
    let rule = Rule::parse(rule)
        .ok_or_else(|| format!("unknown rule {rule:?} (one of new, active, dormant)"))?;
    let definition = Definition::ALL
        .into_iter()
        .find(|d| d.as_str() == *definition)
        .ok_or_else(|| {
            let known: Vec<&str> = Definition::ALL.iter().map(|d| d.as_str()).collect();
            format!(
                "unknown definition {definition:?} (one of {})",
                known.join(", ")
            )
        })?;
    let days: i64 = days
        .parse()
        .ok()
        .filter(|d| (1..=MAX_DAYS).contains(d))
        .ok_or_else(|| format!("days {days:?} is not a number in 1..={MAX_DAYS}"))?;
    let scope = match rest.first() {
        Some(&"") => return Err("the scope is empty".into()),
        Some(s) => Some((*s).to_owned()),
        None => None,
    };
    Ok(Cohort {
        name: name.to_owned(),
        rule,
        definition,
        days,
        scope,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;
    use active_users::history::{Days, Dims};

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, day).unwrap()
    }

    fn cohort(rule: Rule, days: i64) -> Cohort {
        Cohort {
            name: "c".into(),
            rule,
            definition: Definition::Authenticating,
            days,
            scope: None,
        }
    }

    /// A history active on `days` of November in `scope`, first seen on the earliest.
    fn history(scope: &str, days: &[u32]) -> History {
        let mut h = History::default();
        add(&mut h, scope, days);
        h
    }

    fn add(h: &mut History, scope: &str, days: &[u32]) {
        let key = (Definition::Authenticating, scope.to_owned());
        let mut bits = Days::default();
        for x in days {
            bits.set(d(*x));
        }
        h.days.insert(key.clone(), bits);
        if let Some(first) = days.iter().min() {
            h.first.insert(key, d(*first));
        }
    }

    #[test]
    fn new_means_a_first_day_inside_the_window_as_of_day_included() {
        let c = cohort(Rule::New, 7);
        // Window of Nov 20 over 7 days: Nov 14..=20.
        assert!(c.admits(&history("pool=p", &[20]), d(20)));
        assert!(c.admits(&history("pool=p", &[14, 18]), d(20)));
        assert!(!c.admits(&history("pool=p", &[13, 20]), d(20)));
        // A first day after the as-of day is not known as of it.
        assert!(!c.admits(&history("pool=p", &[21]), d(20)));
        assert!(!c.admits(&History::default(), d(20)));
    }

    #[test]
    fn active_means_any_day_inside_the_window_and_nothing_after_it_counts() {
        let c = cohort(Rule::Active, 7);
        assert!(c.admits(&history("pool=p", &[1, 14]), d(20)));
        assert!(c.admits(&history("pool=p", &[20]), d(20)));
        assert!(!c.admits(&history("pool=p", &[13]), d(20)));
        assert!(!c.admits(&history("pool=p", &[13, 21]), d(20)));
        let one_day = cohort(Rule::Active, 1);
        assert!(one_day.admits(&history("pool=p", &[20]), d(20)));
        assert!(!one_day.admits(&history("pool=p", &[19]), d(20)));
    }

    #[test]
    fn dormant_means_seen_before_the_window_and_not_in_it() {
        let c = cohort(Rule::Dormant, 14);
        // Window of Nov 20 over 14 days: Nov 7..=20.
        assert!(c.admits(&history("pool=p", &[6]), d(20)));
        assert!(c.admits(&history("pool=p", &[1, 6]), d(20)));
        assert!(!c.admits(&history("pool=p", &[6, 7]), d(20)));
        assert!(!c.admits(&history("pool=p", &[6, 20]), d(20)));
        // Never seen before the window: not dormant (new users are not dormant ones).
        assert!(!c.admits(&history("pool=p", &[8]), d(20)));
        assert!(!c.admits(&History::default(), d(20)));
        // Activity after the as-of day is not known as of it.
        assert!(c.admits(&history("pool=p", &[6, 22]), d(20)));
    }

    #[test]
    fn scopes_are_united_unless_one_is_named() {
        let mut h = history("pool=p", &[1]);
        add(&mut h, "pool=p/client=a", &[19]);
        let active = cohort(Rule::Active, 7);
        assert!(active.admits(&h, d(20)));
        let pool_only = Cohort {
            scope: Some("pool=p".into()),
            ..active.clone()
        };
        assert!(!pool_only.admits(&h, d(20)));
        let dormant_pool = Cohort {
            scope: Some("pool=p".into()),
            ..cohort(Rule::Dormant, 14)
        };
        assert!(dormant_pool.admits(&h, d(20)));
        assert!(!cohort(Rule::Dormant, 14).admits(&h, d(20)));
        // Another definition's days are not this one's.
        let sessions = Cohort {
            definition: Definition::SessionUsers,
            ..active
        };
        assert!(!sessions.admits(&h, d(20)));
    }

    #[test]
    fn properties_are_the_allowed_names_of_the_latest_scope() {
        let mut h = history("pool=p", &[1]);
        let key = |s: &str| (Definition::Authenticating, s.to_owned());
        h.dims.insert(
            key("pool=p"),
            Dims {
                day: Some(d(1)),
                values: ["platform=ios", "locale=en-US"].map(String::from).into(),
            },
        );
        h.dims.insert(
            key("pool=p/client=a"),
            Dims {
                day: Some(d(3)),
                values: ["platform=android", "locale=de-DE", "app_version=a=b"]
                    .map(String::from)
                    .into(),
            },
        );
        let c = cohort(Rule::Active, 7);
        let allowed: BTreeSet<String> = ["platform", "app_version"].map(String::from).into();
        assert_eq!(
            c.properties(&h, &allowed),
            vec![
                ("app_version".to_owned(), "a=b".to_owned()),
                ("platform".to_owned(), "android".to_owned())
            ]
        );
        assert!(c.properties(&h, &BTreeSet::new()).is_empty());
        let pool_only = Cohort {
            scope: Some("pool=p".into()),
            ..c
        };
        assert_eq!(
            pool_only.properties(&h, &allowed),
            vec![("platform".to_owned(), "ios".to_owned())]
        );
    }

    #[test]
    fn definitions_parse_and_bad_ones_are_refused_with_the_reason() {
        let all = parse(
            "new_7d=new:authenticating_users:7, a=active:session_users:30:app,\
             d=dormant:authenticating_users:14:pool=us-east-1_X/client=c",
        )
        .unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].rule, Rule::New);
        assert_eq!(all[1].definition, Definition::SessionUsers);
        assert_eq!(all[1].scope.as_deref(), Some("app"));
        assert_eq!(all[2].scope.as_deref(), Some("pool=us-east-1_X/client=c"));
        for (bad, why) in [
            ("", "no cohort"),
            ("x", "expected name="),
            ("x=active:authenticating_users", "expected name="),
            ("x=sometimes:authenticating_users:7", "unknown rule"),
            ("x=active:nobody:7", "unknown definition"),
            ("x=active:authenticating_users:0", "1..=366"),
            ("x=active:authenticating_users:367", "1..=366"),
            ("x=active:authenticating_users:seven", "not a number"),
            ("x y=active:authenticating_users:7", "the name must be"),
            ("x=active:authenticating_users:7:", "scope is empty"),
            (
                "x=active:authenticating_users:7,x=new:authenticating_users:7",
                "used twice",
            ),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_default_cohorts_are_the_four_of_the_issue() {
        let all = parse(DEFAULT_DEFINITIONS).unwrap();
        let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["new_7d", "active_7d", "dormant_14d", "paying_30d"]);
        assert_eq!(all[3].definition, Definition::PayingUsers);
        assert_eq!(all[3].group(), "app");
        assert_eq!((all[2].rule, all[2].days), (Rule::Dormant, 14));
    }

    #[test]
    fn ids_are_stable_and_change_with_the_definition() {
        let a = parse("active_7d=active:authenticating_users:7").unwrap();
        let again = parse("active_7d = active:authenticating_users:7").unwrap();
        assert_eq!(a[0].id(), again[0].id());
        assert!(a[0].id().starts_with("active_7d-"), "{}", a[0].id());
        assert_eq!(a[0].id().len(), "active_7d-".len() + 8);
        for changed in [
            "active_7d=active:authenticating_users:8",
            "active_7d=new:authenticating_users:7",
            "active_7d=active:session_users:7",
            "active_7d=active:authenticating_users:7:pool=p",
        ] {
            assert_ne!(parse(changed).unwrap()[0].id(), a[0].id(), "{changed}");
        }
    }
}
