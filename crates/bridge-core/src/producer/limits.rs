//! The PutRecords limits, as named constants, and planning requests within them.
//! Source of every limit: docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html

/// PutRecords takes at most 500 records per request.
pub const MAX_RECORDS_PER_REQUEST: usize = 500;
/// PutRecords takes at most 5 MiB per request, partition keys included.
pub const MAX_BYTES_PER_REQUEST: usize = 5 * 1024 * 1024;
/// One record, data plus partition key, is at most 1 MiB on a stream with default settings.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// A partition key has 1 to 256 Unicode characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Splits entries, in input order, into requests within [`MAX_RECORDS_PER_REQUEST`] and [`MAX_BYTES_PER_REQUEST`]
/// (each size already within [`MAX_RECORD_BYTES`]), keeping order within each partition key: entries are
/// `(partition key, group, size)` in input order, and a key's entries of different groups never share a request (a later group goes in a later
/// request, so it can wait behind a failure of an earlier one). A key's entries of one group (the outputs of one
/// source record) may share one. Once a key has an entry left for a later request, all its later entries are too;
/// other keys' entries fill the request meanwhile. Returns each request as indices into `entries`, in input order.
pub fn plan_ordered_requests(entries: &[(&str, usize, usize)]) -> Vec<Vec<usize>> {
    let mut requests = Vec::new();
    let mut remaining: Vec<usize> = (0..entries.len()).collect();
    while !remaining.is_empty() {
        let (mut request, mut rest) = (Vec::new(), Vec::new());
        let mut bytes = 0;
        let mut in_request: std::collections::HashMap<&str, usize> =
            std::collections::HashMap::new();
        let mut deferred: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for &i in &remaining {
            let (key, group, size) = entries[i];
            let full = !request.is_empty()
                && (request.len() == MAX_RECORDS_PER_REQUEST
                    || bytes + size > MAX_BYTES_PER_REQUEST);
            let behind = deferred.contains(key) || in_request.get(key).is_some_and(|g| *g != group);
            if full || behind {
                deferred.insert(key);
                rest.push(i);
                continue;
            }
            request.push(i);
            bytes += size;
            in_request.insert(key, group);
        }
        requests.push(request);
        remaining = rest;
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_plans_keep_each_keys_groups_in_separate_requests_in_order() {
        assert!(plan_ordered_requests(&[]).is_empty());
        // One group everywhere: the same as plan_requests.
        let same: Vec<(&str, usize, usize)> = (0..1001).map(|_| ("k", 0, 10)).collect();
        let lens: Vec<usize> = plan_ordered_requests(&same).iter().map(Vec::len).collect();
        assert_eq!(lens, vec![500, 500, 1]);
        // a's second record waits for the next request; b and c fill this one; a's third waits behind its second.
        let plan = plan_ordered_requests(&[
            ("a", 0, 1),
            ("a", 0, 1),
            ("b", 1, 1),
            ("a", 2, 1),
            ("c", 3, 1),
            ("a", 4, 1),
            ("b", 1, 1),
        ]);
        assert_eq!(plan, vec![vec![0, 1, 2, 4, 6], vec![3], vec![5]]);
        // Every key's entries come out in input order across the requests.
        let flat: Vec<usize> = plan.concat();
        for key in ["a", "b", "c"] {
            let order: Vec<usize> = flat
                .iter()
                .copied()
                .filter(|&i| {
                    [("a", [0, 1, 3, 5].as_slice()), ("b", &[2, 6]), ("c", &[4])]
                        .iter()
                        .any(|(k, ix)| *k == key && ix.contains(&i))
                })
                .collect();
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(order, sorted, "{key}");
        }
    }

    #[test]
    fn plan_respects_count_and_byte_limits() {
        let one_group = |sizes: &[usize]| -> Vec<Vec<usize>> {
            let entries: Vec<(&str, usize, usize)> = sizes.iter().map(|s| ("k", 0, *s)).collect();
            plan_ordered_requests(&entries)
        };
        let ranges = |plan: Vec<Vec<usize>>| -> Vec<(usize, usize)> {
            plan.iter().map(|r| (r[0], r[r.len() - 1] + 1)).collect()
        };
        assert!(one_group(&[]).is_empty());
        assert_eq!(
            ranges(one_group(&[10; 1001])),
            vec![(0, 500), (500, 1000), (1000, 1001)]
        );
        // Five records of 1 MiB fill a request exactly; the sixth starts the next.
        assert_eq!(
            ranges(one_group(&[MAX_RECORD_BYTES; 6])),
            vec![(0, 5), (5, 6)]
        );
        assert_eq!(
            ranges(one_group(&[MAX_RECORD_BYTES, 1, MAX_RECORD_BYTES * 4])),
            vec![(0, 2), (2, 3)]
        );
    }
}
