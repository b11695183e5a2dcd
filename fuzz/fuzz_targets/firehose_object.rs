//! Firehose archive objects: `decode` and `split` on any bytes never panic, `decode` keeps to its size
//! limit, and `split` puts every byte in exactly one piece or in the whitespace between pieces (or the
//! BOM at the start), in order, with every record a JSON object.
#![no_main]

use pinpoint_backfill::archive::{Piece, decode, split};

/// The decompressed-size limit: small, so a bomb costs the fuzzer nothing.
const MAX_BYTES: usize = 1 << 20;

fn is_ws(c: &u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// The coverage invariant.
fn check(input: &[u8]) {
    let mut covered = if input.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    for piece in split(input) {
        let (offset, bytes) = (piece.offset(), piece.bytes());
        assert!(
            offset >= covered,
            "pieces out of order or overlapping at {offset}"
        );
        assert_eq!(
            input.get(offset..offset + bytes.len()),
            Some(bytes),
            "piece at {offset}"
        );
        assert!(
            input[covered..offset].iter().all(is_ws),
            "bytes before {offset} are in no piece"
        );
        assert!(!bytes.is_empty(), "empty piece at {offset}");
        if let Piece::Record { bytes, .. } = piece {
            assert!(
                matches!(
                    serde_json::from_slice::<serde_json::Value>(bytes),
                    Ok(serde_json::Value::Object(_))
                ),
                "record at {offset} is not a JSON object"
            );
        }
        covered = offset + bytes.len();
    }
    assert!(
        input[covered..].iter().all(is_ws),
        "trailing bytes in no piece"
    );
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let decoded = decode(data, MAX_BYTES);
    assert!(decoded.bytes.len() <= MAX_BYTES);
    check(data);
    check(&decoded.bytes);
});
