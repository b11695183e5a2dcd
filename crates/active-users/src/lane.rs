//! Lanes: the unit of exactly-once counting. A lane is one shard of one source stream: Lambda never runs two
//! invocations on one shard at once (the rollup's `ParallelizationFactor` stays 1) and hands its records in order,
//! so a lane's counters and its position have one writer. The position is the last record whose changes the lane
//! committed; a record at or below it, redelivered, changes nothing.

use bridge_core::envelope::SourceRef;

/// A record's place in its lane: its sequence number, and its user record within a KPL aggregate (0 for a plain
/// record). Ordered as Kinesis orders them (sequence numbers are decimal strings of growing value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Position {
    /// The sequence number.
    pub sequence: String,
    /// The user record within an aggregate.
    pub user_record: u32,
}

impl Position {
    /// A position.
    pub fn new(sequence: &str, user_record: u32) -> Self {
        Self {
            sequence: sequence.to_owned(),
            user_record,
        }
    }

    /// A record's position.
    pub fn of(source: &SourceRef) -> Self {
        Self::new(&source.sequence_number, source.user_record.unwrap_or(0))
    }

    /// As stored: `<sequence>/<user record>`.
    pub fn encode(&self) -> String {
        format!("{}/{}", self.sequence, self.user_record)
    }

    /// Reads [`Position::encode`].
    pub fn decode(s: &str) -> Option<Self> {
        let (seq, ur) = s.split_once('/')?;
        (!seq.is_empty() && seq.chars().all(|c| c.is_ascii_digit()))
            .then_some(())
            .and(ur.parse().ok())
            .map(|ur| Self::new(seq, ur))
    }

    fn rank(&self) -> (usize, &str, u32) {
        let trimmed = self.sequence.trim_start_matches('0');
        (trimmed.len(), trimmed, self.user_record)
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// The lane of a record: the first 16 hex digits of SHA-256 over its stream and shard.
pub fn lane_of(source: &SourceRef) -> String {
    let id = bridge_core::envelope::event_id(&["lane", &source.stream_arn, &source.shard_id]);
    id[..16].to_owned()
}

/// What a lane has committed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaneState {
    /// Its id.
    pub lane: String,
    /// The last record committed; `None` before the lane's first commit.
    pub position: Option<Position>,
    /// Days whose figures the lane committed but may not have published: `<scope>|<YYYY-MM-DD>`.
    pub pending: Vec<String>,
    /// The dimension values the lane counts per `<definition>|<scope>|<name>` (past the cap: `other`).
    pub dimension_values: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
}

impl LaneState {
    /// The committed position, or the lowest one.
    pub fn committed(&self) -> Position {
        self.position.clone().unwrap_or_default()
    }

    /// Whether a record at `p` is already committed (a redelivery).
    pub fn has_committed(&self, p: &Position) -> bool {
        self.position.as_ref().is_some_and(|c| p <= c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_as_kinesis_sequence_numbers_do() {
        let a = Position::new("9", 0);
        let b = Position::new("10", 0);
        let c = Position::new("10", 3);
        assert!(a < b && b < c);
        assert_eq!(Position::decode(&c.encode()), Some(c.clone()));
        assert_eq!(Position::decode("x/1"), None);
        assert_eq!(Position::decode("12"), None);
        let lane = LaneState {
            position: Some(b.clone()),
            ..LaneState::default()
        };
        assert!(lane.has_committed(&a) && lane.has_committed(&b) && !lane.has_committed(&c));
        assert!(!LaneState::default().has_committed(&a));
    }
}
