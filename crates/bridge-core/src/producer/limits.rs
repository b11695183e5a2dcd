//! The PutRecords limits, as named constants, and planning requests within them.
//! Source of every limit: docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html

use std::ops::Range;

/// PutRecords takes at most 500 records per request.
pub const MAX_RECORDS_PER_REQUEST: usize = 500;
/// PutRecords takes at most 5 MiB per request, partition keys included.
pub const MAX_BYTES_PER_REQUEST: usize = 5 * 1024 * 1024;
/// One record, data plus partition key, is at most 1 MiB on a stream with default settings.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// A partition key has 1 to 256 Unicode characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Splits entries of these sizes, in order, into requests within [`MAX_RECORDS_PER_REQUEST`] and
/// [`MAX_BYTES_PER_REQUEST`]. Each size must already be within [`MAX_RECORD_BYTES`].
pub fn plan_requests(sizes: &[usize]) -> Vec<Range<usize>> {
    let mut requests = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start
            && (i - start == MAX_RECORDS_PER_REQUEST || bytes + size > MAX_BYTES_PER_REQUEST)
        {
            requests.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < sizes.len() {
        requests.push(start..sizes.len());
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_respects_count_and_byte_limits() {
        assert!(plan_requests(&[]).is_empty());
        assert_eq!(
            plan_requests(&[10; 1001]),
            vec![0..500, 500..1000, 1000..1001]
        );
        // Five records of 1 MiB fill a request exactly; the sixth starts the next.
        assert_eq!(plan_requests(&[MAX_RECORD_BYTES; 6]), vec![0..5, 5..6]);
        assert_eq!(
            plan_requests(&[MAX_RECORD_BYTES, 1, MAX_RECORD_BYTES * 4]),
            vec![0..2, 2..3]
        );
    }
}
