//! KPL-aggregated Kinesis records: one Kinesis record that carries many user records (the Kinesis Producer
//! Library, `aws-kinesis-agg`, Kinesis Agent with aggregation on).
//!
//! Format (awslabs/amazon-kinesis-producer, aggregation-format.md): the magic bytes `F3 89 9A C2`, then a proto2
//! `AggregatedRecord { repeated string partition_key_table = 1; repeated string explicit_hash_key_table = 2;
//! repeated Record records = 3; }` with `Record { required uint64 partition_key_index = 1; optional uint64
//! explicit_hash_key_index = 2; required bytes data = 3; repeated Tag tags = 4; }`, then the 16-byte MD5 of the
//! protobuf bytes. The protobuf is read here by hand (four fields; no code generation): every length and index is
//! checked against what is there, so a truncated or hostile aggregate is an error, never a panic.
//!
//! Unlike the KCL and `aws-kinesis-agg`, which pass a record with a bad checksum through as if it were not
//! aggregated, a record that starts with the magic bytes and fails a check is an error here: its bytes are not
//! what any of our producers meant, and the dead letter keeps them whole.

use md5::{Digest, Md5};

/// The four bytes an aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;

/// One user record of an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Its own partition key (from the aggregate's table).
    pub partition_key: String,
    /// Its explicit hash key, when it has one.
    pub explicit_hash_key: Option<String>,
    /// Its data.
    pub data: Vec<u8>,
}

/// Why an aggregated record cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("KPL-aggregated record: {0}")]
pub struct AggregateError(String);

/// Whether `data` claims to be an aggregate (starts with the magic bytes).
pub fn is_aggregated(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// The user records of an aggregated record, in order; `None` when `data` is not aggregated.
pub fn deaggregate(data: &[u8]) -> Option<Result<Vec<UserRecord>, AggregateError>> {
    if !is_aggregated(data) {
        return None;
    }
    Some(read(data))
}

fn bad(why: impl Into<String>) -> AggregateError {
    AggregateError(why.into())
}

fn read(data: &[u8]) -> Result<Vec<UserRecord>, AggregateError> {
    let body = &data[MAGIC.len()..];
    if body.len() < DIGEST_LEN {
        return Err(bad(format!(
            "truncated: {} bytes after the magic bytes, fewer than its 16-byte MD5",
            body.len()
        )));
    }
    let (message, digest) = body.split_at(body.len() - DIGEST_LEN);
    if Md5::digest(message).as_slice() != digest {
        return Err(bad(format!(
            "MD5 mismatch: the {}-byte message does not match its checksum (corrupt or truncated)",
            message.len()
        )));
    }
    let mut keys = Vec::new();
    let mut hash_keys = Vec::new();
    let mut raw_records = Vec::new();
    let mut r = Reader::new(message);
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, WIRE_LEN) => keys.push(utf8(r.bytes()?, "partition key")?),
            (2, WIRE_LEN) => hash_keys.push(utf8(r.bytes()?, "explicit hash key")?),
            (3, WIRE_LEN) => raw_records.push(r.bytes()?),
            _ => r.skip(wire)?,
        }
    }
    let mut out = Vec::with_capacity(raw_records.len());
    for (i, raw) in raw_records.into_iter().enumerate() {
        let (mut pk, mut ehk, mut payload) = (None, None, None);
        let mut r = Reader::new(raw);
        while let Some((field, wire)) = r.key()? {
            match (field, wire) {
                (1, WIRE_VARINT) => pk = Some(r.varint()?),
                (2, WIRE_VARINT) => ehk = Some(r.varint()?),
                (3, WIRE_LEN) => payload = Some(r.bytes()?),
                _ => r.skip(wire)?,
            }
        }
        let pk = pk.ok_or_else(|| bad(format!("user record {i} has no partition key index")))?;
        let partition_key = table(&keys, pk)
            .ok_or_else(|| {
                bad(format!(
                    "user record {i} names partition key {pk} of a table of {}",
                    keys.len()
                ))
            })?
            .to_owned();
        let explicit_hash_key = match ehk {
            None => None,
            Some(k) => Some(
                table(&hash_keys, k)
                    .ok_or_else(|| {
                        bad(format!(
                            "user record {i} names explicit hash key {k} of a table of {}",
                            hash_keys.len()
                        ))
                    })?
                    .to_owned(),
            ),
        };
        let data = payload.ok_or_else(|| bad(format!("user record {i} has no data")))?;
        out.push(UserRecord {
            partition_key,
            explicit_hash_key,
            data: data.to_vec(),
        });
    }
    if out.is_empty() {
        return Err(bad("it holds no user records"));
    }
    Ok(out)
}

fn table(t: &[String], index: u64) -> Option<&str> {
    usize::try_from(index)
        .ok()
        .and_then(|i| t.get(i))
        .map(String::as_str)
}

fn utf8(b: &[u8], what: &str) -> Result<String, AggregateError> {
    String::from_utf8(b.to_vec()).map_err(|_| bad(format!("a {what} is not UTF-8")))
}

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

/// A protobuf wire-format reader over a slice.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, at: 0 }
    }

    fn varint(&mut self) -> Result<u64, AggregateError> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = *self
                .buf
                .get(self.at)
                .ok_or_else(|| bad("truncated protobuf varint"))?;
            self.at += 1;
            if shift == 63 && byte > 1 {
                return Err(bad("protobuf varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad("protobuf varint longer than 10 bytes"))
    }

    /// The next field number and wire type, or `None` at the end.
    fn key(&mut self) -> Result<Option<(u64, u8)>, AggregateError> {
        if self.at >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let wire = u8::try_from(key & 7).unwrap_or(u8::MAX);
        Ok(Some((key >> 3, wire)))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], AggregateError> {
        let n = usize::try_from(n).map_err(|_| bad("protobuf length out of range"))?;
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| {
                bad(format!(
                    "truncated protobuf: a field of {n} bytes at offset {} of {}",
                    self.at,
                    self.buf.len()
                ))
            })?;
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn bytes(&mut self) -> Result<&'a [u8], AggregateError> {
        let n = self.varint()?;
        self.take(n)
    }

    fn skip(&mut self, wire: u8) -> Result<(), AggregateError> {
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_I64 => self.take(8).map(drop),
            WIRE_LEN => self.bytes().map(drop),
            WIRE_I32 => self.take(4).map(drop),
            other => Err(bad(format!("unsupported protobuf wire type {other}"))),
        }
    }
}

/// Encodes user records in the aggregation format (tests, the benchmark and the local tools; producers should
/// use the KPL or `aws-kinesis-agg`).
pub fn aggregate(records: &[UserRecord]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn field_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        varint(out, field << 3 | u64::from(WIRE_LEN));
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
    let mut keys: Vec<&str> = Vec::new();
    let mut hash_keys: Vec<&str> = Vec::new();
    let mut message = Vec::new();
    let mut bodies = Vec::new();
    for r in records {
        let pk = match keys.iter().position(|k| *k == r.partition_key) {
            Some(i) => i,
            None => {
                keys.push(&r.partition_key);
                keys.len() - 1
            }
        };
        let mut body = Vec::new();
        varint(&mut body, 1 << 3);
        varint(&mut body, pk as u64);
        if let Some(h) = &r.explicit_hash_key {
            let i = match hash_keys.iter().position(|k| *k == h) {
                Some(i) => i,
                None => {
                    hash_keys.push(h);
                    hash_keys.len() - 1
                }
            };
            varint(&mut body, 2 << 3);
            varint(&mut body, i as u64);
        }
        field_bytes(&mut body, 3, &r.data);
        bodies.push(body);
    }
    for k in &keys {
        field_bytes(&mut message, 1, k.as_bytes());
    }
    for k in &hash_keys {
        field_bytes(&mut message, 2, k.as_bytes());
    }
    for b in &bodies {
        field_bytes(&mut message, 3, b);
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&message);
    out.extend_from_slice(Md5::digest(&message).as_slice());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An aggregate around a hand-written protobuf `message`, with its right checksum.
    fn forged(message: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(message);
        out.extend_from_slice(Md5::digest(message).as_slice());
        out
    }

    fn user(pk: &str, data: &str) -> UserRecord {
        UserRecord {
            partition_key: pk.into(),
            explicit_hash_key: None,
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_plain_record_is_not_an_aggregate() {
        assert_eq!(deaggregate(b"{\"a\":1}"), None);
        assert_eq!(deaggregate(b""), None);
    }

    #[test]
    fn user_records_round_trip_with_shared_keys() {
        let records = vec![
            user("a", "one"),
            user("b", "two"),
            UserRecord {
                explicit_hash_key: Some("123".into()),
                ..user("a", "three")
            },
        ];
        let bytes = aggregate(&records);
        assert!(is_aggregated(&bytes));
        assert_eq!(deaggregate(&bytes), Some(Ok(records)));
    }

    #[test]
    fn corruption_and_truncation_are_errors_that_say_so() {
        let bytes = aggregate(&[user("a", "one"), user("b", "two")]);
        let mut flipped = bytes.clone();
        flipped[10] ^= 1;
        let e = deaggregate(&flipped)
            .and_then(Result::err)
            .map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("MD5 mismatch")),
            "{e:?}"
        );
        for cut in [4, 8, bytes.len() - 1] {
            let e = deaggregate(&bytes[..cut]).and_then(Result::err);
            assert!(e.is_some(), "cut at {cut}");
        }
        // A message whose checksum is right but whose protobuf is cut short.
        let e = deaggregate(&forged(&[0x0a, 0x05, b'a']))
            .and_then(Result::err)
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("truncated protobuf")),
            "{e:?}"
        );
    }

    #[test]
    fn a_key_index_outside_the_table_is_an_error() {
        // records { partition_key_index: 3, data: "x" } with an empty key table.
        let e = deaggregate(&forged(&[0x1a, 0x05, 0x08, 0x03, 0x1a, 0x01, b'x']))
            .and_then(Result::err)
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("partition key 3 of a table of 0")),
            "{e:?}"
        );
    }
}
