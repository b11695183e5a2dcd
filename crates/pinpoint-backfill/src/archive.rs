//! Amazon Data Firehose's S3 objects, read as they really are: one object's bytes in, the records it
//! holds out, each with its byte offset.
//!
//! Pure: no I/O, no clock. Nothing here panics, whatever the bytes, and no byte is lost: every byte of
//! the decompressed data is in exactly one [`Piece`], or is whitespace between pieces (or the UTF-8
//! BOM at the very start).
//!
//! # What the rules rest on
//!
//! - **Keys.** Firehose names an object `<evaluated prefix><suffix>`, the suffix being
//!   `<stream name>-<stream version>-<year>-<month>-<day>-<hour>-<minute>-<second>-<uuid><file extension>`.
//!   Without a custom prefix the evaluated prefix is the time prefix `YYYY/MM/dd/HH`, in UTC unless the
//!   stream sets a `CustomTimeZone`; a custom prefix replaces it and may hold `!{timestamp:...}`
//!   expressions (e.g. Hive-style `year=!{timestamp:yyyy}/month=!{timestamp:MM}/...`), evaluated at
//!   the arrival time of the oldest record in the object. Sources: "Configure Amazon S3 object name
//!   format", <https://docs.aws.amazon.com/firehose/latest/dev/s3-object-name.html>, and "Understand
//!   custom prefixes for Amazon S3 objects", <https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html>.
//! - **File extension.** Of the suffix only the extension can change: by default Firehose appends `.gz`
//!   for GZIP compression (`.zip`, `.snappy`, `.parquet`, `.orc` for the others), and a custom extension
//!   may replace it (s3-object-name.html, its file-extension table). So [`decode`] goes by the bytes,
//!   the GZIP magic `1f 8b` (RFC 1952), never by the key.
//! - **Gzip members.** A gzip file is a series of members (RFC 1952, 2.2). Producers that gzip each
//!   record themselves (CloudWatch Logs does, before Firehose: vectordotdev/vector pull request 7700)
//!   leave objects of many members, so [`decode`] reads them all.
//! - **Delimiters.** "By default, Firehose concatenates data without any delimiters"; a newline after
//!   each record comes only with the `AppendDelimiterToRecord` processor. Sources: "Understand data
//!   delivery in Amazon Data Firehose", <https://docs.aws.amazon.com/firehose/latest/dev/basic-deliver.html>,
//!   and the API's `Processor`, <https://docs.aws.amazon.com/firehose/latest/APIReference/API_Processor.html>.
//! - **Error output.** `!{firehose:error-output-type}` evaluates to one of `processing-failed`,
//!   `AmazonOpenSearchService-failed`, `splunk-failed`, `format-conversion-failed`,
//!   `http-endpoint-failed` (s3-prefixes.html); older guides name `elasticsearch-failed` there and an
//!   `elasticsearch_failed/` folder (the archived guide, <https://github.com/awsdocs/amazon-kinesis-data-firehose-developer-guide>,
//!   `doc_source/s3-prefixes.md` and `doc_source/basic-deliver.md`). With no `ErrorOutputPrefix`,
//!   failed records go to `<prefix><error-output-type>/YYYY/MM/dd/HH/`; a custom one must hold the
//!   error-output-type expression and may put it anywhere, a slash after it or not (the guide's own
//!   example `myErrorPrefix/year=2018/month=07/day=06/hour=23/processing-failed` glues the object name
//!   to it). Lambda transformation failures land in the `processing-failed` folder
//!   (<https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-failure-handling.html>), and
//!   OpenSearch failures under `AmazonOpenSearchService-failed/` (the API's
//!   `AmazonopensearchserviceDestinationConfiguration`, `S3BackupMode`).
//!
//! # Decoding ([`decode`])
//!
//! GZIP when the object starts with `1f 8b`, every member read; anything else is taken as stored
//! (a ZIP, Snappy-framed, Parquet or ORC signature is named in [`Decoded::error`], as those are not
//! read here). Never more than `max_bytes` bytes come out: past it, the first `max_bytes` are kept and
//! [`Decoded::error`] says so. A corrupt or truncated stream keeps every byte decoded before the fault.
//!
//! # Splitting ([`split`])
//!
//! Records are JSON objects, back to back (`{...}{...}`) or with JSON whitespace (space, tab, LF, CR,
//! so also CRLF) between them; a UTF-8 BOM at the very start is skipped. A value is read with a JSON
//! grammar automaton (its nesting on a heap stack, so depth costs no recursion); a complete object is
//! then parsed by `serde_json` (which also checks numbers, UTF-8 and its nesting limit of 128), and
//! becomes a [`Piece::Record`] only if that succeeds. Everything else is [`Piece::Damaged`], with a reason.
//!
//! A *record start* is a `{` whose next non-whitespace byte is `"` or `}`. Resynchronization:
//!
//! 1. A byte that cannot start a JSON value is junk up to the next record start.
//! 2. A complete value that is not an object (an array, a number, ...) is damaged as a whole, except
//!    a string ending in `{` (a quote out of place made a record's `{"` its end): damaged up to that
//!    `{`. A value that breaks off is damaged up to the first record start after its first byte.
//! 3. An object that breaks off at byte `x` (bad syntax, or the end of the input) is damaged up to:
//!    - when `x` is a record start or the end, and an object value ended just before `x`: that
//!      value's `{` (a record cut after `:`, `[` or `,` swallows the next record as a value:
//!      `{"a":{"b":2}{"c":3}` gives `{"b":2}` back);
//!    - else `x` itself when it is a record start (`{"a":1,{"b":2}`);
//!    - else the `{` that ended the string just before `x`, when that string ended in `{` (a record
//!      cut inside a string takes the next record's `{"` as the string's end: `{"a":"tru{"b":2}`);
//!    - else, reading on by brackets and quotes only, the bracket that closes the object (an
//!      unescaped quote, a stray byte) or a record start after `}` or a line break (`}{"`, `}\n{"`),
//!      whichever comes first;
//!    - else (the input ends first) the next record start after `x`.
//!
//! Each step moves forward, or steps back over bytes no later step goes back over again (one
//! string's closing `{"`, or the one object value given back), and the reading-on of rule 3 runs to
//! the end of the input at most once per split (after that, rule 3 takes the next record start at
//! once), so splitting is linear in the input. Damaged stretches that touch (only whitespace between
//! them) are given as one piece, so junk cannot multiply pieces.
//!
//! The limits, by design: a record cut right after one of its own object values gives that value as
//! a record (`{"a":1,"b":{"c":2}` then `{"d":3}` gives `{"c":2}` and `{"d":3}`); a good record right
//! after a damaged one is lost when a string in it holds a record start the rules pick (`"{}"`, or a
//! string ending in `{`); a cut record followed by one whose first key begins with `,`, `:` or `}`
//! can read as one object.
//!
//! # Keys ([`classify`])
//!
//! An object is [`KeyKind::Error`] when its key starts with one of the team's error prefixes (the
//! literal part before any `!{`), or when a segment of it (the part after any `=`) starts with one of
//! Firehose's error-output types above. Otherwise it is data, and its hour is read from the four path
//! segments just before the object name: `YYYY/MM/DD/HH` or `year=YYYY/month=MM/day=DD/hour=HH`.

use std::fmt;
use std::io::{ErrorKind, Read};

use chrono::{NaiveDate, NaiveDateTime};
use flate2::read::MultiGzDecoder;

/// The GZIP magic bytes (RFC 1952, ID1 ID2).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The UTF-8 byte order mark.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
/// How much compressed data is decoded per read.
const CHUNK: usize = 64 * 1024;

/// How an object's bytes were stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// As they are: the object does not start with the GZIP magic bytes.
    Plain,
    /// GZIP (one or more members), told by its magic bytes `1f 8b`.
    Gzip,
}

/// An object's bytes, decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// How the object was stored.
    pub encoding: Encoding,
    /// The decompressed bytes: all of them, or those before a fault or the size limit.
    pub bytes: Vec<u8>,
    /// What went wrong, if anything: the size limit, a corrupt or truncated stream (and after how many
    /// decompressed bytes), or a compressed format this does not read.
    pub error: Option<String>,
}

/// Decompresses one object's bytes.
///
/// Detects GZIP by its magic bytes (1f 8b), not by the key's extension (Firehose adds `.gz` only by
/// default and teams rename); decompresses ALL gzip members (a concatenation of members is valid
/// gzip); never holds more than `max_bytes` decompressed bytes (a decompression bomb): over it,
/// `bytes` holds the first `max_bytes` and `error` says so; a corrupt or truncated gzip stream keeps
/// every byte decoded before the fault in `bytes` and says what failed and after how many
/// decompressed bytes in `error`.
pub fn decode(raw: &[u8], max_bytes: usize) -> Decoded {
    if !raw.starts_with(&GZIP_MAGIC) {
        let kept = raw.len().min(max_bytes);
        let error = if raw.len() > max_bytes {
            Some(over_limit(max_bytes, "the object"))
        } else {
            unread_format(raw).map(|format| {
                format!("not GZIP: the bytes start like {format}, which is not read here; given as stored")
            })
        };
        return Decoded {
            encoding: Encoding::Plain,
            bytes: raw[..kept].to_vec(),
            error,
        };
    }
    let mut decoder = MultiGzDecoder::new(raw);
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let mut error = None;
    loop {
        match decoder.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = max_bytes - bytes.len();
                if n > room {
                    bytes.extend_from_slice(&buf[..room]);
                    error = Some(over_limit(max_bytes, "the decompressed data"));
                    break;
                }
                bytes.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                error = Some(format!(
                    "the GZIP stream is corrupt or truncated: {e} (after {} decompressed bytes, which are kept)",
                    bytes.len()
                ));
                break;
            }
        }
    }
    Decoded {
        encoding: Encoding::Gzip,
        bytes,
        error,
    }
}

/// The message for data over `max_bytes`.
fn over_limit(max_bytes: usize, what: &str) -> String {
    format!(
        "{what} is larger than the limit of {max_bytes} bytes (a decompression bomb?); only the first {max_bytes} bytes are kept"
    )
}

/// Names a compressed or columnar format Firehose can write that is not read here, by its signature.
fn unread_format(raw: &[u8]) -> Option<&'static str> {
    if raw.starts_with(b"PK\x03\x04") {
        Some("ZIP")
    } else if raw.starts_with(b"\xff\x06\x00\x00sNaPpY") {
        Some("Snappy (framed)")
    } else if raw.starts_with(b"PAR1") {
        Some("Parquet")
    } else if raw.starts_with(b"ORC") {
        Some("ORC")
    } else {
        None
    }
}

/// One piece of an object's decompressed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// One JSON object record: `offset` is its first byte's position in the decompressed bytes.
    Record {
        /// Where the record starts in the decompressed bytes.
        offset: usize,
        /// The record: valid JSON (`serde_json::from_slice::<serde_json::Value>` gives an object).
        bytes: &'a [u8],
    },
    /// Bytes that are not a readable JSON object record (garbage between records, an object that does
    /// not parse, a record cut short at the end), with the reason; `offset` as above.
    Damaged {
        /// Where the damaged stretch starts in the decompressed bytes.
        offset: usize,
        /// The damaged stretch (never empty; it neither starts nor ends with whitespace).
        bytes: &'a [u8],
        /// What is wrong with it, and where.
        reason: String,
    },
}

impl<'a> Piece<'a> {
    /// Where the piece starts in the decompressed bytes.
    pub fn offset(&self) -> usize {
        match self {
            Piece::Record { offset, .. } | Piece::Damaged { offset, .. } => *offset,
        }
    }

    /// The piece's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        match self {
            Piece::Record { bytes, .. } | Piece::Damaged { bytes, .. } => bytes,
        }
    }
}

/// Splits decompressed bytes into records and damaged stretches, in order (see the module docs for
/// the rules and how damage is resynchronized); linear in the input.
pub fn split(bytes: &[u8]) -> Split<'_> {
    let pos = if bytes.starts_with(UTF8_BOM) {
        UTF8_BOM.len()
    } else {
        0
    };
    Split {
        b: bytes,
        pos,
        lexical_spent: false,
        damaged: None,
        ready: None,
    }
}

/// The pieces of some decompressed bytes, in order: see [`split`].
pub struct Split<'a> {
    /// The decompressed bytes.
    b: &'a [u8],
    /// Where reading goes on.
    pos: usize,
    /// Whether a reading-on (rule 3) has already run to the end of the input.
    lexical_spent: bool,
    /// Damaged stretches read but not given yet (they merge while they touch).
    damaged: Option<Pending>,
    /// A record found right after a damaged stretch: given after it.
    ready: Option<Piece<'a>>,
}

impl fmt::Debug for Split<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Split")
            .field("len", &self.b.len())
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

/// A damaged stretch not given yet.
struct Pending {
    start: usize,
    end: usize,
    reason: String,
    /// How many more damaged stretches merged into it.
    more: usize,
}

/// What one step of the splitter found.
enum Step {
    Record { start: usize, end: usize },
    Damaged { start: usize, end: usize, why: Why },
}

/// Why a stretch is damaged (turned into words only for the first of merged stretches).
enum Why {
    /// A byte that cannot start a JSON value.
    NotJson,
    /// A complete JSON value that is not an object.
    NotObject(Kind),
    /// A complete object `serde_json` rejects.
    Unparsable(serde_json::Error),
    /// A value that breaks off.
    Broken(Broken),
}

impl<'a> Iterator for Split<'a> {
    type Item = Piece<'a>;

    fn next(&mut self) -> Option<Piece<'a>> {
        if let Some(p) = self.ready.take() {
            return Some(p);
        }
        loop {
            self.pos = skip_ws(self.b, self.pos);
            if self.pos >= self.b.len() {
                return self.damaged.take().map(|d| self.finish(d));
            }
            match self.step() {
                Step::Record { start, end } => {
                    let record = Piece::Record {
                        offset: start,
                        bytes: &self.b[start..end],
                    };
                    return match self.damaged.take() {
                        Some(d) => {
                            self.ready = Some(record);
                            Some(self.finish(d))
                        }
                        None => Some(record),
                    };
                }
                Step::Damaged { start, end, why } => {
                    let end = trim_ws_end(self.b, start, end);
                    match &mut self.damaged {
                        Some(d) => {
                            d.end = end;
                            d.more += 1;
                        }
                        None => {
                            let reason = self.reason(start, end, self.pos, why);
                            self.damaged = Some(Pending {
                                start,
                                end,
                                reason,
                                more: 0,
                            });
                        }
                    }
                }
            }
        }
    }
}

impl std::iter::FusedIterator for Split<'_> {}

impl<'a> Split<'a> {
    /// Reads one piece at `self.pos` (a non-whitespace byte) and moves `self.pos` past it.
    fn step(&mut self) -> Step {
        let b = self.b;
        let start = self.pos;
        let first = b[start];
        let (end, why) = if !starts_value(first) {
            (next_record_start(b, start + 1), Why::NotJson)
        } else {
            match scan(b, start) {
                Scan::Complete {
                    end,
                    kind: Kind::Object,
                    ..
                } => match serde_json::from_slice::<serde_json::Value>(&b[start..end]) {
                    Ok(serde_json::Value::Object(_)) => {
                        self.pos = end;
                        return Step::Record { start, end };
                    }
                    Ok(_) => (end, Why::NotObject(Kind::Object)),
                    Err(e) => (end, Why::Unparsable(e)),
                },
                // A string ending in `{`: the `{` may start a record (a quote out of place before it).
                Scan::Complete {
                    kind,
                    brace: Some(brace),
                    ..
                } => (brace, Why::NotObject(kind)),
                Scan::Complete { end, kind, .. } => (end, Why::NotObject(kind)),
                Scan::Broken(broken) => {
                    let end = if first == b'{' {
                        self.resync(start, &broken)
                    } else {
                        next_record_start(b, start + 1)
                    };
                    (end, Why::Broken(broken))
                }
            }
        };
        self.pos = end;
        Step::Damaged { start, end, why }
    }

    /// Where reading goes on after an object starting at `start` broke off (rule 3).
    fn resync(&mut self, start: usize, broken: &Broken) -> usize {
        let b = self.b;
        let x = broken.at;
        if is_record_start(b, x) || x >= b.len() {
            // A record cut short may have swallowed the next one as a member's value: give the
            // object value that ended right before the break back as a record of its own.
            if let Some(object) = broken.object_before.filter(|o| is_record_start(b, *o)) {
                return object;
            }
            if x < b.len() {
                return x;
            }
        }
        if x < b.len()
            && let Some(brace) = broken.brace_restart
        {
            return brace;
        }
        if !self.lexical_spent {
            match read_on(b, start, x, broken.depth, broken.in_string) {
                ReadOn::Closed(end) | ReadOn::Boundary(end) => return end,
                ReadOn::Eof => self.lexical_spent = true,
            }
        }
        next_record_start(b, x + 1)
    }

    /// Words for why `b[start..end]` is damaged; reading resumed at `resume`.
    fn reason(&self, start: usize, end: usize, resume: usize, why: Why) -> String {
        let b = self.b;
        let mut reason = match why {
            Why::NotJson => format!(
                "{} byte(s) that are not JSON where a record should start (the first is {}); skipped to the next record start",
                end - start,
                show_byte(b, start)
            ),
            Why::NotObject(kind) => format!(
                "a JSON {} where a record should be: records are JSON objects",
                kind.name()
            ),
            Why::Unparsable(e) => format!("a JSON object that does not parse: {e}"),
            Why::Broken(broken) => {
                let what = if b[start] == b'{' {
                    "the record"
                } else {
                    "a value that is not an object (records are JSON objects)"
                };
                let mut s = if broken.at >= b.len() {
                    format!(
                        "{what} is cut short: the input ends inside it ({} bracket(s) open{})",
                        broken.depth,
                        if broken.in_string {
                            ", inside a string"
                        } else {
                            ""
                        }
                    )
                } else {
                    format!(
                        "{what} is not valid JSON at its byte {} (offset {}): expected {}, found {}",
                        broken.at - start,
                        broken.at,
                        broken.expected,
                        show_byte(b, broken.at)
                    )
                };
                if b[start] == b'{'
                    && let Err(e) = serde_json::from_slice::<serde_json::Value>(&b[start..end])
                {
                    s.push_str(&format!(" (serde_json: {e})"));
                }
                s
            }
        };
        if resume < b.len() {
            reason.push_str(&format!("; reading resumes at offset {resume}"));
        }
        reason
    }

    /// The piece for a damaged stretch.
    fn finish(&self, d: Pending) -> Piece<'a> {
        let mut reason = d.reason;
        if d.more > 0 {
            reason.push_str(&format!(
                "; and {} more damaged stretch(es) right after it, up to offset {}",
                d.more, d.end
            ));
        }
        Piece::Damaged {
            offset: d.start,
            bytes: &self.b[d.start..d.end],
            reason,
        }
    }
}

/// Whitespace JSON allows between tokens (RFC 8259): space, tab, line feed, carriage return.
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// The first non-whitespace position at or after `p` (or the length).
fn skip_ws(b: &[u8], mut p: usize) -> usize {
    while p < b.len() && is_ws(b[p]) {
        p += 1;
    }
    p
}

/// The end of `b[start..end]` without its trailing whitespace.
fn trim_ws_end(b: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && is_ws(b[end - 1]) {
        end -= 1;
    }
    end
}

/// Whether `c` can start a JSON value.
fn starts_value(c: u8) -> bool {
    matches!(
        c,
        b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n'
    )
}

/// A record start: a `{` whose next non-whitespace byte is `"` or `}`.
fn is_record_start(b: &[u8], p: usize) -> bool {
    b.get(p) == Some(&b'{') && matches!(b.get(skip_ws(b, p + 1)), Some(b'"' | b'}'))
}

/// The first record start at or after `from`, or the length.
fn next_record_start(b: &[u8], from: usize) -> usize {
    let mut p = from;
    while p < b.len() {
        if is_record_start(b, p) {
            return p;
        }
        p += 1;
    }
    b.len()
}

/// A byte, for a message.
fn show_byte(b: &[u8], at: usize) -> String {
    match b.get(at) {
        None => "the end of the input".to_string(),
        Some(&c) if c.is_ascii_graphic() => format!("'{}'", c as char),
        Some(&c) => format!("byte 0x{c:02x}"),
    }
}

/// The kind of a complete JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
    String,
    Number,
    Literal,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Object => "object",
            Kind::Array => "array",
            Kind::String => "string",
            Kind::Number => "number",
            Kind::Literal => "literal (true, false or null)",
        }
    }
}

/// What [`scan`] found from a value's first byte.
enum Scan {
    /// A complete value, `end` just past it; `brace` is set for a string whose content ends in `{`
    /// (and spaces): the start of a record a quote out of place turned into a string's end.
    Complete {
        end: usize,
        kind: Kind,
        brace: Option<usize>,
    },
    /// The bytes stop being JSON.
    Broken(Broken),
}

/// Where and how a value stops being JSON.
struct Broken {
    /// The offending byte (the length when the input ends first).
    at: usize,
    /// What the grammar wanted there.
    expected: &'static str,
    /// Brackets open at `at`.
    depth: usize,
    /// Whether `at` is inside a string.
    in_string: bool,
    /// The `{` that ended the last string, when only whitespace followed that string up to `at`.
    brace_restart: Option<usize>,
    /// The start of the object value that ended just before `at` (only whitespace between).
    object_before: Option<usize>,
}

/// The grammar automaton's states.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// A value must start.
    Value,
    /// Just after `[`: a value or `]`.
    ArrayFirst,
    /// Just after `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value in a container: `,` or its closing bracket.
    After,
    /// In a string (a key or not).
    Str { key: bool },
    /// After a backslash in a string.
    Escape { key: bool },
    /// In the hex digits of `\u`.
    Hex { key: bool, left: u8 },
    /// In a number (checked loosely: serde_json checks it).
    Number,
    /// In `true`, `false` or `null`, `at` bytes matched.
    Literal { word: &'static [u8], at: usize },
}

/// The grammar automaton reading one value.
struct Scanner {
    /// Open containers, innermost last: (is an object, where it opened).
    stack: Vec<(bool, usize)>,
    state: State,
    /// In a string: a `{` followed only by spaces so far.
    brace_in_string: Option<usize>,
    /// The last string ended in `{` (and spaces), and only whitespace followed it.
    brace_restart: Option<usize>,
    /// An object value just closed (its start), and only whitespace followed it.
    object_before: Option<usize>,
}

impl Scanner {
    fn broken(&self, at: usize, expected: &'static str) -> Scan {
        Scan::Broken(Broken {
            at,
            expected,
            depth: self.stack.len(),
            in_string: matches!(
                self.state,
                State::Str { .. } | State::Escape { .. } | State::Hex { .. }
            ),
            brace_restart: self.brace_restart,
            object_before: self.object_before,
        })
    }

    fn complete(end: usize, kind: Kind) -> Scan {
        Scan::Complete {
            end,
            kind,
            brace: None,
        }
    }

    /// Closes the innermost container at `p`; the complete value when it was the outermost.
    fn close(&mut self, p: usize) -> Option<Scan> {
        let (object, open) = self.stack.pop()?;
        if self.stack.is_empty() {
            let kind = if object { Kind::Object } else { Kind::Array };
            return Some(Self::complete(p + 1, kind));
        }
        self.state = State::After;
        self.object_before = object.then_some(open);
        None
    }

    /// Reads the structural (non-string, non-whitespace) byte `c` at `p`.
    fn structural(&mut self, p: usize, c: u8) -> Option<Scan> {
        let state = self.state;
        match (state, c) {
            (State::ArrayFirst, b']') => return self.close_at(p),
            (State::Value | State::ArrayFirst, _) => match c {
                b'{' => self.open(true, p, State::ObjectFirst),
                b'[' => self.open(false, p, State::ArrayFirst),
                b'"' => self.string(false),
                b'-' | b'0'..=b'9' => self.state = State::Number,
                b't' => {
                    self.state = State::Literal {
                        word: b"true",
                        at: 1,
                    }
                }
                b'f' => {
                    self.state = State::Literal {
                        word: b"false",
                        at: 1,
                    }
                }
                b'n' => {
                    self.state = State::Literal {
                        word: b"null",
                        at: 1,
                    }
                }
                _ if state == State::ArrayFirst => return Some(self.broken(p, "a value or ']'")),
                _ => return Some(self.broken(p, "a value")),
            },
            (State::ObjectFirst | State::Key, b'"') => self.string(true),
            (State::ObjectFirst, b'}') => return self.close_at(p),
            (State::ObjectFirst, _) => return Some(self.broken(p, "a key (a string) or '}'")),
            (State::Key, _) => return Some(self.broken(p, "a key (a string)")),
            (State::Colon, b':') => self.state = State::Value,
            (State::Colon, _) => return Some(self.broken(p, "':' after a key")),
            (State::After, _) => {
                let in_object = self.stack.last().is_some_and(|(object, _)| *object);
                match c {
                    b',' => self.state = if in_object { State::Key } else { State::Value },
                    b'}' if in_object => return self.close_at(p),
                    b']' if !in_object => return self.close_at(p),
                    _ if in_object => {
                        return Some(self.broken(p, "',' or '}' after an object member"));
                    }
                    _ => return Some(self.broken(p, "',' or ']' after an array element")),
                }
            }
            _ => {}
        }
        self.brace_restart = None;
        self.object_before = None;
        None
    }

    fn close_at(&mut self, p: usize) -> Option<Scan> {
        self.brace_restart = None;
        self.object_before = None;
        self.close(p)
    }

    fn open(&mut self, object: bool, p: usize, state: State) {
        self.stack.push((object, p));
        self.state = state;
    }

    fn string(&mut self, key: bool) {
        self.brace_in_string = None;
        self.state = State::Str { key };
    }
}

/// Reads one JSON value starting at `start` (a byte [`starts_value`] accepts) with a grammar
/// automaton whose nesting lives on a heap stack.
fn scan(b: &[u8], start: usize) -> Scan {
    let mut s = Scanner {
        stack: Vec::new(),
        state: State::Value,
        brace_in_string: None,
        brace_restart: None,
        object_before: None,
    };
    let mut p = start;
    while p < b.len() {
        let c = b[p];
        match s.state {
            State::Str { key } => match c {
                b'"' => {
                    s.brace_restart = s.brace_in_string.take();
                    s.object_before = None;
                    if s.stack.is_empty() {
                        return Scan::Complete {
                            end: p + 1,
                            kind: Kind::String,
                            brace: s.brace_restart,
                        };
                    }
                    s.state = if key { State::Colon } else { State::After };
                }
                b'\\' => {
                    s.brace_in_string = None;
                    s.state = State::Escape { key };
                }
                0x00..=0x1f => {
                    return s.broken(p, "string content (a control byte must be escaped)");
                }
                b'{' => s.brace_in_string = Some(p),
                b' ' => {}
                _ => s.brace_in_string = None,
            },
            State::Escape { key } => match c {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                    s.state = State::Str { key }
                }
                b'u' => s.state = State::Hex { key, left: 4 },
                _ => return s.broken(p, "an escape (one of \"\\/bfnrtu) after a backslash"),
            },
            State::Hex { key, left } => {
                if !c.is_ascii_hexdigit() {
                    return s.broken(p, "four hex digits after \\u");
                }
                s.state = if left <= 1 {
                    State::Str { key }
                } else {
                    State::Hex {
                        key,
                        left: left - 1,
                    }
                };
            }
            State::Number => {
                if !matches!(c, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                    if s.stack.is_empty() {
                        return Scanner::complete(p, Kind::Number);
                    }
                    // The byte after the number: read it as what follows a value.
                    s.state = State::After;
                    continue;
                }
            }
            State::Literal { word, at } => {
                if word.get(at) != Some(&c) {
                    return s.broken(p, "the rest of true, false or null");
                }
                if at + 1 < word.len() {
                    s.state = State::Literal { word, at: at + 1 };
                } else if s.stack.is_empty() {
                    return Scanner::complete(p + 1, Kind::Literal);
                } else {
                    s.state = State::After;
                }
            }
            _ if is_ws(c) => {}
            _ => {
                if let Some(done) = s.structural(p, c) {
                    return done;
                }
            }
        }
        p += 1;
    }
    if s.state == State::Number && s.stack.is_empty() {
        return Scanner::complete(b.len(), Kind::Number);
    }
    s.broken(b.len(), "more input")
}

/// Where reading on by brackets and quotes stopped (rule 3).
enum ReadOn {
    /// Just past the bracket that closes the object.
    Closed(usize),
    /// At a record start that follows `}` or a line break.
    Boundary(usize),
    /// The input ended first.
    Eof,
}

/// Reads on from `x` (where an object starting at `start` broke off, `depth` brackets open, inside a
/// string or not) by brackets, quotes and escapes only, for the object's end or a clear boundary.
fn read_on(b: &[u8], start: usize, x: usize, mut depth: usize, mut in_string: bool) -> ReadOn {
    // The last non-whitespace byte before `x`, and whether a line break follows it.
    let mut last = 0u8;
    let mut line_break = false;
    let mut q = x.min(b.len());
    while q > start {
        q -= 1;
        if is_ws(b[q]) {
            line_break |= b[q] == b'\n';
        } else {
            last = b[q];
            break;
        }
    }
    let mut escaped = false;
    let mut p = x;
    while p < b.len() {
        let c = b[p];
        if c == b'{' && (last == b'}' || line_break) && is_record_start(b, p) {
            return ReadOn::Boundary(p);
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
        } else {
            match c {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return ReadOn::Closed(p + 1);
                    }
                }
                _ => {}
            }
        }
        if is_ws(c) {
            line_break |= c == b'\n';
        } else {
            last = c;
            line_break = false;
        }
        p += 1;
    }
    ReadOn::Eof
}

/// What a key in the archive is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A data object; `hour` is the UTC hour its key names when it follows Firehose's default layout
    /// `<prefix>YYYY/MM/DD/HH/<stream>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid>[.gz]` (or a custom prefix
    /// that ends in such a date path, plain or Hive-style `year=2026/month=10/day=29/hour=13/`), None
    /// when it does not. (The hour is UTC unless the stream was given a `CustomTimeZone`.)
    Data {
        /// The hour the key's date path names.
        hour: Option<NaiveDateTime>,
    },
    /// An object under a Firehose error output prefix: records Firehose could not deliver or process
    /// (skipped and counted, never read as events).
    Error,
}

/// Firehose's own error output folder names: the values of `!{firehose:error-output-type}`, and the
/// older OpenSearch (Elasticsearch) names.
const FIREHOSE_ERROR_TYPES: &[&str] = &[
    "processing-failed",
    "AmazonOpenSearchService-failed",
    "splunk-failed",
    "format-conversion-failed",
    "http-endpoint-failed",
    "elasticsearch-failed",
    "elasticsearch_failed",
];

/// Classifies `key` found under the listed prefix `prefix`.
///
/// `error_prefixes` are the team's error output prefixes (a `!{...}` expression in one ends its
/// literal part, which is matched against the key and against the key after `prefix`); Firehose's own
/// error output types (`processing-failed`, `AmazonOpenSearchService-failed`, `splunk-failed`,
/// `format-conversion-failed`, `http-endpoint-failed`, and the older `elasticsearch-failed` /
/// `elasticsearch_failed`) are recognized at the start of any path segment (or of its value after
/// `=`), since an error prefix may put them anywhere and need not end in `/`. Keys ending in `/`
/// (folder markers) and zero-byte objects are for the caller: this only classifies.
pub fn classify(prefix: &str, key: &str, error_prefixes: &[String]) -> KeyKind {
    let relative = key.strip_prefix(prefix);
    for error_prefix in error_prefixes {
        let literal = error_prefix
            .split("!{")
            .next()
            .unwrap_or_default()
            .trim_start_matches('/');
        if !literal.is_empty()
            && (key.starts_with(literal) || relative.is_some_and(|r| r.starts_with(literal)))
        {
            return KeyKind::Error;
        }
    }
    let segments: Vec<&str> = key.split('/').collect();
    let is_error_segment = |segment: &str| {
        let value = segment.rsplit('=').next().unwrap_or(segment);
        FIREHOSE_ERROR_TYPES.iter().any(|t| {
            value
                .get(..t.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(t))
        })
    };
    if segments.iter().any(|s| is_error_segment(s)) {
        return KeyKind::Error;
    }
    let dirs = &segments[..segments.len().saturating_sub(1)];
    KeyKind::Data {
        hour: hour_of(dirs),
    }
}

/// The hour named by the last four directory segments, `YYYY/MM/DD/HH` or Hive-style.
fn hour_of(dirs: &[&str]) -> Option<NaiveDateTime> {
    let last = dirs.get(dirs.len().checked_sub(4)?..)?;
    let mut values = [0u32; 4];
    for ((segment, (name, width)), value) in last
        .iter()
        .zip([("year", 4), ("month", 2), ("day", 2), ("hour", 2)])
        .zip(values.iter_mut())
    {
        let digits = match segment.split_once('=') {
            Some((k, v)) if k.eq_ignore_ascii_case(name) => v,
            Some(_) => return None,
            None => segment,
        };
        if digits.len() != width || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        *value = digits.parse().ok()?;
    }
    let [year, month, day, hour] = values;
    NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?.and_hms_opt(hour, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use proptest::prelude::*;
    use proptest::test_runner::RngSeed;
    use serde_json::{Value, json};
    use std::io::Write;

    fn pieces(b: &[u8]) -> Vec<Piece<'_>> {
        split(b).collect()
    }

    /// The records' (offset, bytes).
    fn records(b: &[u8]) -> Vec<(usize, &[u8])> {
        split(b)
            .filter_map(|p| match p {
                Piece::Record { offset, bytes } => Some((offset, bytes)),
                Piece::Damaged { .. } => None,
            })
            .collect()
    }

    /// The damaged pieces' (offset, bytes, reason).
    fn damaged(b: &[u8]) -> Vec<(usize, &[u8], String)> {
        split(b)
            .filter_map(|p| match p {
                Piece::Damaged {
                    offset,
                    bytes,
                    reason,
                } => Some((offset, bytes, reason)),
                Piece::Record { .. } => None,
            })
            .collect()
    }

    fn texts(b: &[u8]) -> Vec<String> {
        records(b)
            .into_iter()
            .map(|(_, r)| String::from_utf8_lossy(r).into_owned())
            .collect()
    }

    /// The invariants: pieces in order, not overlapping, their bytes the input's at their offsets,
    /// every byte outside them whitespace (or the BOM at the start), no piece empty or with whitespace
    /// at its ends, every record a JSON object.
    fn check(input: &[u8]) -> Result<Vec<Piece<'_>>, String> {
        let ps = pieces(input);
        let mut covered = if input.starts_with(UTF8_BOM) { 3 } else { 0 };
        let mut total = covered;
        for p in &ps {
            let (offset, bytes) = (p.offset(), p.bytes());
            if offset < covered {
                return Err(format!("piece at {offset} overlaps or is out of order"));
            }
            if input.get(offset..offset + bytes.len()) != Some(bytes) {
                return Err(format!("piece at {offset}: bytes are not the input's"));
            }
            if let Some(c) = input[covered..offset].iter().find(|c| !is_ws(**c)) {
                return Err(format!("byte {c:#x} before {offset} is in no piece"));
            }
            if bytes.is_empty() || is_ws(bytes[0]) || is_ws(bytes[bytes.len() - 1]) {
                return Err(format!(
                    "piece at {offset} is empty or has whitespace at an end"
                ));
            }
            if let Piece::Record { bytes, .. } = p {
                match serde_json::from_slice::<Value>(bytes) {
                    Ok(Value::Object(_)) => {}
                    other => return Err(format!("record at {offset} is not an object: {other:?}")),
                }
            }
            total += input[covered..offset].len() + bytes.len();
            covered = offset + bytes.len();
        }
        if let Some(c) = input[covered..].iter().find(|c| !is_ws(**c)) {
            return Err(format!("trailing byte {c:#x} is in no piece"));
        }
        total += input.len() - covered;
        if total != input.len() {
            return Err("pieces plus whitespace do not add up to the input".into());
        }
        Ok(ps)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn event(i: usize) -> String {
        format!(
            r#"{{"event_type":"_session.start","event_timestamp":{},"arrival_timestamp":{},"attributes":{{"n":"{i}","pad":"{}"}},"client":{{"client_id":"c-{i}"}}}}"#,
            1_700_000_000_000u64 + i as u64,
            1_700_000_000_500u64 + i as u64,
            "x".repeat(i % 17)
        )
    }

    // ---- decode ----

    #[test]
    fn plain_bytes_are_kept_as_they_are() {
        let raw = br#"{"a":1}{"b":2}"#;
        let d = decode(raw, 1 << 20);
        assert_eq!(d.encoding, Encoding::Plain);
        assert_eq!(d.bytes, raw);
        assert_eq!(d.error, None);
    }

    #[test]
    fn gzip_is_told_by_its_magic_not_the_key() {
        let data = br#"{"a":1}{"b":2}"#;
        let d = decode(&gzip(data), 1 << 20);
        assert_eq!(d.encoding, Encoding::Gzip);
        assert_eq!(d.bytes, data);
        assert_eq!(d.error, None);
        // A plain object whose key says `.gz`: decode never sees the key, the bytes say plain.
        let d = decode(data, 1 << 20);
        assert_eq!(d.encoding, Encoding::Plain);
        assert_eq!(d.bytes, data);
        let key =
            "2026/10/29/13/my-stream-1-2026-10-29-13-05-01-1a2b3c4d-aaaa-bbbb-cccc-0123456789ab.gz";
        assert!(matches!(
            classify("", key, &[]),
            KeyKind::Data { hour: Some(_) }
        ));
    }

    #[test]
    fn every_gzip_member_is_read() {
        let mut raw = gzip(b"{\"a\":1}\n");
        raw.extend(gzip(b"{\"b\":2}\n"));
        raw.extend(gzip(b""));
        raw.extend(gzip(b"{\"c\":3}"));
        let d = decode(&raw, 1 << 20);
        assert_eq!(d.error, None);
        assert_eq!(d.bytes, b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}");
        assert_eq!(texts(&d.bytes), [r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#]);
    }

    #[test]
    fn a_truncated_gzip_keeps_what_came_before_the_cut() {
        let data: String = (0..3000).map(event).collect();
        let raw = gzip(data.as_bytes());
        let cut = &raw[..raw.len() * 6 / 10];
        let d = decode(cut, 64 << 20);
        assert_eq!(d.encoding, Encoding::Gzip);
        let error = d.error.clone().unwrap();
        assert!(error.contains("corrupt or truncated"), "{error}");
        assert!(
            error.contains(&format!("after {} decompressed bytes", d.bytes.len())),
            "{error}"
        );
        assert!(
            d.bytes.len() > data.len() / 3,
            "{} bytes kept",
            d.bytes.len()
        );
        assert!(data.as_bytes().starts_with(&d.bytes));
        let ps = check(&d.bytes).unwrap();
        let recs = records(&d.bytes);
        assert!(recs.len() > 1000);
        for (i, (_, r)) in recs.iter().enumerate() {
            assert_eq!(*r, event(i).as_bytes());
        }
        // At most the record the cut went through is damaged, at the end.
        assert!(ps.len() - recs.len() <= 1);
        if let Some(Piece::Damaged { reason, .. }) = ps.last() {
            assert!(reason.contains("cut short"), "{reason}");
        }
    }

    #[test]
    fn a_truncated_second_member_keeps_the_first() {
        let mut raw = gzip(b"{\"a\":1}");
        let second = gzip(b"{\"b\":2}");
        raw.extend_from_slice(&second[..second.len() - 5]);
        let d = decode(&raw, 1 << 20);
        assert!(d.bytes.starts_with(b"{\"a\":1}"));
        assert!(d.error.is_some());
        assert_eq!(texts(&d.bytes)[0], r#"{"a":1}"#);
    }

    #[test]
    fn corrupt_gzip_says_so() {
        let mut raw = gzip(b"{\"a\":1}");
        let n = raw.len();
        raw[12..n - 8].iter_mut().for_each(|b| *b = 0xff);
        let d = decode(&raw, 1 << 20);
        assert_eq!(d.encoding, Encoding::Gzip);
        assert!(d.error.unwrap().contains("corrupt or truncated"));
        // Only the magic: a header cut short.
        let d = decode(&GZIP_MAGIC, 1 << 20);
        assert_eq!(d.encoding, Encoding::Gzip);
        assert!(d.bytes.is_empty());
        assert!(d.error.unwrap().contains("after 0 decompressed bytes"));
        // Garbage after a whole member: the member's bytes stay, the garbage is reported.
        let mut raw = gzip(b"{\"a\":1}");
        raw.extend_from_slice(b"trailing junk");
        let d = decode(&raw, 1 << 20);
        assert_eq!(d.bytes, b"{\"a\":1}");
        assert!(d.error.is_some());
    }

    #[test]
    fn decompression_is_capped() {
        let bomb = gzip(&vec![b' '; 8 << 20]);
        assert!(bomb.len() < 64 << 10);
        let d = decode(&bomb, 1 << 20);
        assert_eq!(d.bytes.len(), 1 << 20);
        assert!(d.error.unwrap().contains("limit of 1048576 bytes"));
        // Exactly at the limit is fine.
        let d = decode(&gzip(&[b'x'; 1000]), 1000);
        assert_eq!((d.bytes.len(), d.error), (1000, None));
        let d = decode(&gzip(&[b'x'; 1001]), 1000);
        assert_eq!(d.bytes.len(), 1000);
        assert!(d.error.is_some());
        // Plain objects are capped too.
        let d = decode(b"{\"a\":1}", 3);
        assert_eq!(
            (d.encoding, d.bytes.as_slice()),
            (Encoding::Plain, &b"{\"a"[..])
        );
        assert!(d.error.unwrap().contains("limit of 3 bytes"));
        let d = decode(&gzip(b"abc"), 0);
        assert!(d.bytes.is_empty() && d.error.is_some());
    }

    #[test]
    fn formats_not_read_here_are_named() {
        let d = decode(b"PK\x03\x04rest", 100);
        assert_eq!(d.encoding, Encoding::Plain);
        assert!(d.error.unwrap().contains("ZIP"));
        assert!(
            decode(b"\xff\x06\x00\x00sNaPpY..", 100)
                .error
                .unwrap()
                .contains("Snappy")
        );
        assert!(decode(b"PAR1....", 100).error.unwrap().contains("Parquet"));
        assert_eq!(decode(b"", 100).error, None);
    }

    // ---- split: delimiters ----

    #[test]
    fn concatenated_records() {
        let b = br#"{"a":1}{"b":{"c":[1,2]}}{"d":"x"}"#;
        assert_eq!(
            records(b),
            [
                (0, &br#"{"a":1}"#[..]),
                (7, &br#"{"b":{"c":[1,2]}}"#[..]),
                (24, &br#"{"d":"x"}"#[..])
            ]
        );
        check(b).unwrap();
    }

    #[test]
    fn newline_delimited_records_and_crlf() {
        let b = b"{\"a\":1}\n{\"b\":2}\n";
        assert_eq!(records(b), [(0, &b"{\"a\":1}"[..]), (8, &b"{\"b\":2}"[..])]);
        let b = b"{\"a\":1}\r\n{\"b\":2}\r\n";
        assert_eq!(records(b), [(0, &b"{\"a\":1}"[..]), (9, &b"{\"b\":2}"[..])]);
        assert_eq!(check(b).unwrap().len(), 2);
    }

    #[test]
    fn mixed_whitespace_and_a_bom() {
        let b = b"\xEF\xBB\xBF \t{\"a\":1} \r\n\t {\"b\":2}{\"c\":3}\n\n\r\n";
        assert_eq!(
            records(b),
            [
                (5, &b"{\"a\":1}"[..]),
                (17, &b"{\"b\":2}"[..]),
                (24, &b"{\"c\":3}"[..])
            ]
        );
        assert_eq!(check(b).unwrap().len(), 3);
        // A BOM anywhere else is damage.
        let b = b"{\"a\":1}\xEF\xBB\xBF{\"b\":2}";
        assert_eq!(texts(b), [r#"{"a":1}"#, r#"{"b":2}"#]);
        assert_eq!(damaged(b)[0].1, b"\xEF\xBB\xBF");
    }

    #[test]
    fn empty_and_blank_inputs() {
        assert!(pieces(b"").is_empty());
        assert!(pieces(b" \n\r\t").is_empty());
        assert!(pieces(UTF8_BOM).is_empty());
        assert_eq!(records(b"{}"), [(0, &b"{}"[..])]);
        assert_eq!(texts(b"{}{}\n{ }"), ["{}", "{}", "{ }"]);
    }

    #[test]
    fn tricky_strings_stay_inside_their_record() {
        let b =
            br#"{"a":"{","b":"}","c":"\"","d":"\\","e":"}{","f":"}{\"g\":1}","h":"\\\"}{"}{"z":1}"#;
        let recs = records(b);
        assert_eq!(recs.len(), 2);
        let v: Value = serde_json::from_slice(recs[0].1).unwrap();
        assert_eq!(v["e"], "}{");
        assert_eq!(v["f"], r#"}{"g":1}"#);
        assert_eq!(recs[1], (b.len() - 7, &br#"{"z":1}"#[..]));
        assert!(damaged(b).is_empty());
    }

    #[test]
    fn pretty_printed_records() {
        let a = serde_json::to_string_pretty(&json!({"a": [{"b": 1}, {"c": {"d": []}}], "e": {}}))
            .unwrap();
        let b = format!("{a}{a}\n{a}");
        assert_eq!(texts(b.as_bytes()), [a.as_str(), a.as_str(), a.as_str()]);
    }

    // ---- split: damage ----

    #[test]
    fn a_truncated_last_record() {
        let b = br#"{"a":1}{"b":{"c":"unfinish"#;
        let ps = check(b).unwrap();
        assert_eq!(texts(b), [r#"{"a":1}"#]);
        assert_eq!(ps.len(), 2);
        let Piece::Damaged {
            offset,
            bytes,
            reason,
        } = &ps[1]
        else {
            panic!("{ps:?}")
        };
        assert_eq!((*offset, *bytes), (7, &br#"{"b":{"c":"unfinish"#[..]));
        assert!(reason.contains("cut short"), "{reason}");
        assert!(reason.contains("inside a string"), "{reason}");
        assert!(reason.contains("serde_json: EOF"), "{reason}");
    }

    #[test]
    fn a_truncated_record_followed_by_good_ones() {
        let good = [event(1), event(2), event(3)];
        let cut = &event(0)[..40]; // inside a string
        for sep in ["", "\n", "\r\n", " "] {
            let b = format!("{cut}{sep}{}{sep}{}{sep}{}", good[0], good[1], good[2]);
            assert_eq!(
                texts(b.as_bytes()),
                good,
                "sep {sep:?}: {:?}",
                pieces(b.as_bytes())
            );
            let d = damaged(b.as_bytes());
            assert_eq!(d.len(), 1);
            assert_eq!(d[0].1, cut.as_bytes());
            check(b.as_bytes()).unwrap();
        }
        // Cut outside strings, at every kind of place.
        for cut in [
            r#"{"a":1"#,
            r#"{"a":1,"#,
            r#"{"a":"#,
            r#"{"a""#,
            r#"{"a":tr"#,
            r#"{"a":[1,2"#,
            r#"{"a":["#,
            r#"{"a":[1,"#,
            r#"{"a":12."#,
            r#"{"a":"x\"#,
            r#"{"a":"x\u00"#,
            r#"{"#,
        ] {
            for sep in ["", "\n"] {
                let b = format!("{cut}{sep}{}{sep}{}", good[0], good[1]);
                assert_eq!(
                    texts(b.as_bytes()),
                    good[..2],
                    "{b}: {:?}",
                    pieces(b.as_bytes())
                );
                assert_eq!(damaged(b.as_bytes())[0].1, cut.as_bytes());
            }
        }
    }

    #[test]
    fn a_swallowed_record_is_given_back() {
        let good = event(1);
        // Cut after ':' (or '[' or ','), then a good record at the very end.
        for cut in [r#"{"a":"#, r#"{"a":["#, r#"{"a":[1,"#] {
            let b = format!("{cut}{good}");
            assert_eq!(texts(b.as_bytes()), [good.as_str()], "{b}");
            assert_eq!(damaged(b.as_bytes())[0].1, cut.as_bytes());
        }
        // The price: a record cut right after an object value of its own gives that value.
        let b = format!(r#"{{"a":{{"b":1}}{good}"#);
        assert_eq!(texts(b.as_bytes()), [r#"{"b":1}"#, good.as_str()]);
        assert_eq!(damaged(b.as_bytes())[0].1, br#"{"a":"#);
        let b = r#"{"a":1}{"b":{"c":2}"#;
        assert_eq!(texts(b.as_bytes()), [r#"{"a":1}"#, r#"{"c":2}"#]);
    }

    #[test]
    fn garbage_between_records() {
        let b = b"{\"a\":1}xyz{\"b\":2}  ## \n{\"c\":3}";
        assert_eq!(texts(b), [r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#]);
        let d = damaged(b);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].0, d[0].1), (7, &b"xyz"[..]));
        assert!(
            d[0].2.contains("not JSON") && d[0].2.contains("'x'"),
            "{}",
            d[0].2
        );
        assert_eq!((d[1].0, d[1].1), (19, &b"##"[..]));
        // A stray byte, before, between and after.
        let b = b"\x00{\"a\":1}\x07{\"b\":2}]";
        assert_eq!(texts(b), [r#"{"a":1}"#, r#"{"b":2}"#]);
        assert_eq!(damaged(b).len(), 3);
        check(b).unwrap();
    }

    #[test]
    fn binary_junk_between_records() {
        let mut b = b"{\"a\":1}".to_vec();
        b.extend_from_slice(b"\x8b\x1f\x00{\x01\"\x02}{\xff\"\xfe");
        b.extend_from_slice(b"{\"b\":2}\n{\"c\":3}");
        assert_eq!(texts(&b), [r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#]);
        let d = damaged(&b);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].1, b"\x8b\x1f\x00{\x01\"\x02}{\xff\"\xfe");
        check(&b).unwrap();
    }

    #[test]
    fn a_stray_byte_inside_a_record() {
        let b = br#"{"a":1,X"b":{"c":2}}{"d":3}"#;
        assert_eq!(texts(b), [r#"{"d":3}"#]);
        let d = damaged(b);
        assert_eq!(d[0].1, br#"{"a":1,X"b":{"c":2}}"#);
        assert!(
            d[0].2.contains("expected a key (a string), found 'X'"),
            "{}",
            d[0].2
        );
    }

    #[test]
    fn an_unescaped_quote_then_good_records() {
        // An even number of stray quotes: the brackets still close where the record ends.
        for sep in ["", "\n"] {
            let b = format!(r#"{{"a":"say "hi" now","n":{{"m":1}}}}{sep}{{"c":2}}{sep}{{"d":3}}"#);
            assert_eq!(texts(b.as_bytes()), [r#"{"c":2}"#, r#"{"d":3}"#], "{b}");
            assert_eq!(
                damaged(b.as_bytes())[0].1,
                br#"{"a":"say "hi" now","n":{"m":1}}"#
            );
        }
        // An odd number: quotes and strings swap; the next `}{"` or line break ends the damage.
        for sep in ["", "\n", "\r\n"] {
            let b = format!(r#"{{"a":"x"y","b":{{"c":"}}"}}}}{sep}{{"c":2}}{sep}{{"d":"}}{{"}}"#);
            assert_eq!(texts(b.as_bytes()), [r#"{"c":2}"#, r#"{"d":"}{"}"#], "{b}");
            let d = damaged(b.as_bytes());
            assert_eq!(d.len(), 1);
            assert!(d[0].2.contains("found 'y'"), "{}", d[0].2);
        }
    }

    #[test]
    fn objects_that_do_not_parse() {
        for bad in [
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":01}"#,
            r#"{"a":1.2.3}"#,
            r#"{"a":[1}"#,
            r#"{"a":nul}"#,
            r#"{1:2}"#,
            r#"{"a":1e999}"#,
        ] {
            let b = format!("{bad}\n{{\"ok\":true}}");
            assert_eq!(texts(b.as_bytes()), [r#"{"ok":true}"#], "{bad}");
            let d = damaged(b.as_bytes());
            assert_eq!(d.len(), 1, "{bad}: {d:?}");
            assert_eq!(d[0].1, bad.as_bytes());
        }
        // Invalid UTF-8 in a string.
        let b = b"{\"a\":\"\xff\"}{\"b\":1}";
        assert_eq!(texts(b), [r#"{"b":1}"#]);
        assert!(damaged(b)[0].2.contains("does not parse"));
    }

    #[test]
    fn values_that_are_not_objects() {
        let b = b"[1,2]{\"a\":1}\n42\n\"s\"\ntrue\n{\"b\":2}";
        assert_eq!(texts(b), [r#"{"a":1}"#, r#"{"b":2}"#]);
        let d = damaged(b);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].1, b"[1,2]");
        assert!(d[0].2.contains("a JSON array"), "{}", d[0].2);
        // Touching damaged stretches are one piece.
        assert_eq!(d[1].1, b"42\n\"s\"\ntrue");
        assert!(
            d[1].2.contains("a JSON number") && d[1].2.contains("2 more"),
            "{}",
            d[1].2
        );
        // A top-level array of objects is not read into: records are objects.
        assert!(records(br#"[{"a":1},{"b":2}]"#).is_empty());
        // A broken one gives back the records after it.
        let b = br#"[1, {"a":1}
{"b":2}"#;
        assert_eq!(texts(b), [r#"{"a":1}"#, r#"{"b":2}"#]);
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let n = 100_000;
        let mut b = b"{\"a\":".to_vec();
        b.extend(std::iter::repeat_n(b'[', n));
        b.extend(std::iter::repeat_n(b']', n));
        b.extend_from_slice(b"}\n{\"b\":1}");
        let d = damaged(&b);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].1.len(), b.len() - 8);
        assert!(d[0].2.contains("recursion limit"), "{}", d[0].2);
        assert_eq!(texts(&b), [r#"{"b":1}"#]);
        // Never closed.
        let b: Vec<u8> = std::iter::once(b'{')
            .chain(b"\"a\":".iter().copied().cycle().take(4 * n))
            .collect();
        check(&b).unwrap();
        let b = [b"{\"a\":".as_slice(), &vec![b'['; n]].concat();
        assert_eq!(check(&b).unwrap().len(), 1);
        // Within serde_json's limit, a deep record is a record.
        let b = format!("{{\"a\":{}1{}}}", "[".repeat(100), "]".repeat(100));
        assert_eq!(records(b.as_bytes()).len(), 1);
    }

    #[test]
    fn linear_on_worst_cases() {
        let n = 2 << 20;
        let cases: Vec<Vec<u8>> = vec![
            vec![b'{'; n],
            vec![b'"'; n],
            vec![b'['; n],
            b"{\"".repeat(n / 2),
            b"{\"{".repeat(n / 3),
            b"}{\"".repeat(n / 3),
            b"{\"a\":\"b\"c".repeat(n / 9),
            b"[\"{\"".repeat(n / 4),
            b"{\"a\":\"{\",".repeat(n / 9),
            b"\\\"{".repeat(n / 3),
            b"{ ".repeat(n / 2),
            b"{}".repeat(n / 2),
            [b"{\"a\":\"".as_slice(), &b"}{\"".repeat(n / 3)].concat(),
            [b"{".as_slice(), &b" ".repeat(n), b"x"].concat(),
        ];
        for b in &cases {
            let ps = check(b).unwrap();
            assert!(ps.len() <= b.len());
        }
    }

    #[test]
    fn reasons_are_specific() {
        let d = damaged(br#"{"a":1 "b":2}"#);
        assert!(
            d[0].2.contains(
                "at its byte 7 (offset 7): expected ',' or '}' after an object member, found '\"'"
            ),
            "{}",
            d[0].2
        );
        let d = damaged(b"{\"a\":\"x\ny\"}\n{\"b\":1}");
        assert!(d[0].2.contains("control byte"), "{}", d[0].2);
        assert!(d[0].2.contains("reading resumes at offset"), "{}", d[0].2);
    }

    // ---- classify ----

    fn hour(y: i32, m: u32, d: u32, h: u32) -> KeyKind {
        KeyKind::Data {
            hour: NaiveDate::from_ymd_opt(y, m, d).and_then(|d| d.and_hms_opt(h, 0, 0)),
        }
    }

    const NAME: &str = "my-stream-1-2026-10-29-13-05-01-1a2b3c4d-aaaa-bbbb-cccc-0123456789ab";

    #[test]
    fn default_layout() {
        let key = format!("2026/10/29/13/{NAME}.gz");
        assert_eq!(classify("", &key, &[]), hour(2026, 10, 29, 13));
        assert_eq!(classify("2026/10/", &key, &[]), hour(2026, 10, 29, 13));
        let key = format!("2026/10/29/13/{NAME}");
        assert_eq!(classify("", &key, &[]), hour(2026, 10, 29, 13));
    }

    #[test]
    fn custom_and_hive_prefixes() {
        let key = format!("pinpoint/events/2026/10/29/13/{NAME}.gz");
        assert_eq!(
            classify("pinpoint/events/", &key, &[]),
            hour(2026, 10, 29, 13)
        );
        let key = format!("pinpoint/year=2026/month=10/day=29/hour=13/{NAME}.gz");
        assert_eq!(classify("pinpoint/", &key, &[]), hour(2026, 10, 29, 13));
        let key = format!("pinpoint/YEAR=2026/Month=10/day=29/hour=00/{NAME}");
        assert_eq!(classify("pinpoint/", &key, &[]), hour(2026, 10, 29, 0));
    }

    #[test]
    fn keys_without_an_hour() {
        for key in [
            format!("pinpoint/{NAME}.gz"),
            format!("{NAME}.gz"),
            format!("2026/10/29/{NAME}"),
            format!("2026/13/29/13/{NAME}"),
            format!("2026/02/30/13/{NAME}"),
            format!("2026/10/29/24/{NAME}"),
            format!("26/10/29/13/{NAME}"),
            format!("2026/10/29/13/extra/{NAME}"),
            format!("year=2026/month=10/day=29/minute=13/{NAME}"),
            "data.json".to_string(),
            String::new(),
        ] {
            assert_eq!(
                classify("", &key, &[]),
                KeyKind::Data { hour: None },
                "{key}"
            );
        }
        // A folder marker is classified like any key.
        assert_eq!(classify("", "2026/10/29/13/", &[]), hour(2026, 10, 29, 13));
    }

    #[test]
    fn firehose_error_outputs() {
        for key in [
            format!("processing-failed/2026/10/29/13/{NAME}"),
            format!("pinpoint/processing-failed/2026/10/29/13/{NAME}.gz"),
            format!("pinpoint/format-conversion-failed/2026/10/29/13/{NAME}"),
            format!("AmazonOpenSearchService-failed/2026/10/29/13/{NAME}"),
            format!("elasticsearch-failed/2026/10/29/13/{NAME}"),
            format!("elasticsearch_failed/2026/10/29/13/{NAME}"),
            format!("splunk-failed/{NAME}"),
            format!("http-endpoint-failed/2026/10/29/13/{NAME}"),
            format!("myPrefix/result=processing-failed/2018/08/03/{NAME}"),
            format!("myErrorPrefix/year=2018/month=07/day=06/hour=23/processing-failed{NAME}"),
        ] {
            assert_eq!(classify("", &key, &[]), KeyKind::Error, "{key}");
        }
        assert_eq!(
            classify("pinpoint/", &format!("pinpoint/2026/10/29/13/{NAME}"), &[]),
            hour(2026, 10, 29, 13)
        );
    }

    #[test]
    fn team_error_prefixes() {
        let prefixes = vec!["errors/".to_string()];
        let key = format!("errors/processing-failed/2026/10/29/13/{NAME}");
        assert_eq!(classify("", &key, &prefixes), KeyKind::Error);
        let key = format!("errors/2026/10/29/13/{NAME}");
        assert_eq!(classify("", &key, &prefixes), KeyKind::Error);
        // Relative to the listed prefix too.
        let key = format!("pinpoint/errors/2026/10/29/13/{NAME}");
        assert_eq!(classify("pinpoint/", &key, &prefixes), KeyKind::Error);
        // An expression ends the literal part.
        let prefixes =
            vec!["fh-errors/!{firehose:error-output-type}/!{timestamp:yyyy}/".to_string()];
        assert_eq!(
            classify("", &format!("fh-errors/x/{NAME}"), &prefixes),
            KeyKind::Error
        );
        // A prefix that is only an expression matches nothing by itself.
        let prefixes = vec!["!{firehose:error-output-type}/".to_string()];
        let key = format!("2026/10/29/13/{NAME}");
        assert_eq!(classify("", &key, &prefixes), hour(2026, 10, 29, 13));
        // Data keys are untouched by error prefixes that do not match.
        let prefixes = vec!["errors/".to_string()];
        let key = format!("pinpoint/2026/10/29/13/{NAME}.gz");
        assert_eq!(
            classify("pinpoint/", &key, &prefixes),
            hour(2026, 10, 29, 13)
        );
    }

    // ---- properties ----

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 300,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(0x5EED_F12E),
            ..ProptestConfig::default()
        }
    }

    fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![
                "a", "Z", " ", "{", "}", "}{", "{\"", "\"", "\\", "\\\"", "\n", "\r\n", "\t",
                "\u{1}", "é", "😀", "[", "]", ":", ",", "{}", "\u{feff}",
            ]),
            0..6,
        )
        .prop_map(|v| v.concat())
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1_000_000i32..1_000_000).prop_map(|n| Value::from(f64::from(n) / 4.0)),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((text(), inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn object() -> impl Strategy<Value = (Value, bool)> {
        (
            prop::collection::vec((text(), value()), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            any::<bool>(),
        )
    }

    fn separator() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "", "", "\n", "\r\n", " ", "\t", "\n\n", " \r\n\t ", "\r",
        ])
    }

    /// Joins objects (pretty when asked) with separators; the input and each object's offset.
    fn join(objects: &[(Value, bool)], seps: &[&str], bom: bool) -> (Vec<u8>, Vec<usize>) {
        let mut b = if bom { UTF8_BOM.to_vec() } else { Vec::new() };
        let mut offsets = Vec::new();
        for (i, (v, pretty)) in objects.iter().enumerate() {
            b.extend_from_slice(seps[i % seps.len()].as_bytes());
            offsets.push(b.len());
            let s = if *pretty {
                serde_json::to_vec_pretty(v)
            } else {
                serde_json::to_vec(v)
            };
            b.extend(s.unwrap());
        }
        b.extend_from_slice(seps[objects.len() % seps.len()].as_bytes());
        (b, offsets)
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn generated_records_come_back_in_order(
            objects in prop::collection::vec(object(), 0..8),
            seps in prop::collection::vec(separator(), 1..10),
            bom in any::<bool>(),
        ) {
            let (b, offsets) = join(&objects, &seps, bom);
            let ps = check(&b).map_err(TestCaseError::fail)?;
            prop_assert_eq!(ps.len(), objects.len());
            for ((p, (v, _)), offset) in ps.iter().zip(&objects).zip(&offsets) {
                let Piece::Record { offset: at, bytes } = p else {
                    return Err(TestCaseError::fail(format!("{p:?}")));
                };
                prop_assert_eq!(at, offset);
                prop_assert_eq!(&serde_json::from_slice::<Value>(bytes).unwrap(), v);
            }
        }

        #[test]
        fn any_bytes_split_cleanly(b in prop::collection::vec(
            prop_oneof![
                any::<u8>(),
                prop::sample::select(b"{}[]\":,\\ \n\r\t0123456789-.eEtruefalsnx".to_vec()),
            ],
            0..400,
        )) {
            check(&b).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn json_like_fragments_split_cleanly(parts in prop::collection::vec(
            prop::sample::select(vec![
                "{", "}", "[", "]", "\"", "\"a\"", ":", ",", "1", "-2.5e3", "true", "nul", " ", "\n",
                "\\", "\\u12", "{\"k\":", "}{\"", "{}", "\"x{\"", "\u{1}", "\u{feff}", "é", "\r\n",
            ]),
            0..60,
        )) {
            check(parts.concat().as_bytes()).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn a_damaged_chunk_loses_no_good_record(
            objects in prop::collection::vec(object(), 1..6),
            seps in prop::collection::vec(separator(), 1..6),
            chunk in prop::collection::vec(
                any::<u8>().prop_filter("no braces or quotes", |c| !matches!(c, b'{' | b'}' | b'"')),
                1..40,
            ),
            at in any::<prop::sample::Index>(),
        ) {
            let (good, offsets) = join(&objects, &seps, false);
            // Insert the chunk at a gap between records (or before the first, or after the last).
            let gaps: Vec<usize> = offsets.iter().copied().chain([good.len()]).collect();
            let gap = gaps[at.index(gaps.len())];
            let mut b = good[..gap].to_vec();
            b.extend_from_slice(&chunk);
            b.extend_from_slice(&good[gap..]);
            let ps = check(&b).map_err(TestCaseError::fail)?;
            let recs: Vec<(usize, Value)> = ps
                .iter()
                .filter_map(|p| match p {
                    Piece::Record { offset, bytes } => Some((*offset, serde_json::from_slice(bytes).unwrap())),
                    Piece::Damaged { .. } => None,
                })
                .collect();
            let want: Vec<(usize, Value)> = objects
                .iter()
                .zip(&offsets)
                .map(|((v, _), o)| (if *o >= gap { o + chunk.len() } else { *o }, v.clone()))
                .collect();
            prop_assert_eq!(recs, want);
        }
    }
}
