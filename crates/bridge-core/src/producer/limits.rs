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

/// Splits entries into requests within [`MAX_RECORDS_PER_REQUEST`] and [`MAX_BYTES_PER_REQUEST`] (each size
/// already within [`MAX_RECORD_BYTES`]), keeping order within each partition key. Entries are
/// `(partition key, group, size)` in input order. A key's consecutive entries of one group (the outputs of one
/// source record) form a run and may share a request; a key's later run always goes in a later request than its
/// earlier one, so that it can wait behind a failure of the earlier one.
///
/// Each key is a chain of runs; a request can take the front run of every key. When they do not all fit, the
/// keys with the most runs left go first (Hu's longest-chain-first: with one entry per run it reaches the floor
/// `max(⌈entries / 500⌉, runs of the busiest key)`), and among keys with as many runs left, entries go in input
/// order. So with one run per key (plain [`super::Producer::send`]) requests are input-order slices, as before;
/// filling in input order alone left the busiest key's chain for the last requests. Once an entry of a key stays
/// out of a request, so do that key's later entries. Returns each request as indices into `entries`, in input
/// order.
pub fn plan_ordered_requests(entries: &[(&str, usize, usize)]) -> Vec<Vec<usize>> {
    use std::collections::{HashMap, VecDeque};
    // Per key, in order of first appearance: its runs (entry indices) and the group of its last entry.
    let mut chains: Vec<(VecDeque<VecDeque<usize>>, usize)> = Vec::new();
    let mut chain_of: HashMap<&str, usize> = HashMap::new();
    for (i, &(key, group, _)) in entries.iter().enumerate() {
        let c = *chain_of.entry(key).or_insert_with(|| {
            chains.push((VecDeque::new(), group));
            chains.len() - 1
        });
        let (runs, last) = &mut chains[c];
        match runs.back_mut() {
            Some(run) if *last == group => run.push_back(i),
            _ => runs.push_back(VecDeque::from([i])),
        }
        *last = group;
    }
    let mut requests = Vec::new();
    loop {
        // Chains by runs left, longest first.
        let mut levels: Vec<usize> = chains
            .iter()
            .map(|(runs, _)| runs.len())
            .filter(|&n| n > 0)
            .collect();
        if levels.is_empty() {
            return requests;
        }
        levels.sort_unstable_by(|a, b| b.cmp(a));
        levels.dedup();
        let (mut request, mut bytes) = (Vec::new(), 0);
        // Chains judged at a higher level: they have had their one run's chance in this request.
        let mut seen: Vec<bool> = vec![false; chains.len()];
        for level in levels {
            // The front runs of this level's chains, entry by entry in input order.
            let mut front: Vec<(usize, usize)> = chains
                .iter()
                .enumerate()
                .filter(|(c, (runs, _))| runs.len() == level && !seen[*c])
                .flat_map(|(c, (runs, _))| runs[0].iter().map(move |&i| (i, c)))
                .collect();
            front.sort_unstable();
            let mut out: Vec<bool> = vec![false; chains.len()];
            for &(_, c) in &front {
                seen[c] = true;
            }
            for (i, c) in front {
                let size = entries[i].2;
                let full = !request.is_empty()
                    && (request.len() == MAX_RECORDS_PER_REQUEST
                        || bytes + size > MAX_BYTES_PER_REQUEST);
                if out[c] || full {
                    out[c] = true;
                    continue;
                }
                request.push(i);
                bytes += size;
                let runs = &mut chains[c].0;
                if let Some(run) = runs.front_mut() {
                    run.pop_front();
                    if run.is_empty() {
                        runs.pop_front();
                    }
                }
            }
            if request.len() == MAX_RECORDS_PER_REQUEST {
                break;
            }
        }
        request.sort_unstable();
        requests.push(request);
    }
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

    /// Each key's runs in strictly later requests, each run's entries in order, every entry once.
    fn assert_ordered(entries: &[(&str, usize, usize)], plan: &[Vec<usize>]) {
        let mut at = vec![usize::MAX; entries.len()];
        for (r, request) in plan.iter().enumerate() {
            assert!(request.len() <= MAX_RECORDS_PER_REQUEST);
            assert!(request.iter().map(|&i| entries[i].2).sum::<usize>() <= MAX_BYTES_PER_REQUEST);
            for &i in request {
                assert_eq!(at[i], usize::MAX, "entry {i} twice");
                at[i] = r;
            }
        }
        assert!(at.iter().all(|&r| r != usize::MAX), "every entry planned");
        for (j, &(key, group, _)) in entries.iter().enumerate() {
            if let Some(i) = (0..j).rev().find(|&i| entries[i].0 == key) {
                if entries[i].1 == group {
                    assert!(at[i] <= at[j], "{key}: a run's entries in order");
                } else {
                    assert!(at[i] < at[j], "{key}: a later run in a later request");
                }
            }
        }
    }

    #[test]
    fn the_busiest_keys_go_first_and_the_plan_reaches_the_floor() {
        // 3,000 records of 1,000 identities, 1 to 3 outputs each: the shape of `make bench`'s event. Filling
        // requests in input order alone took 13 requests for its 5,230 outputs, where 11 hold them.
        let mut total = (0, 0);
        for seed in 0..20 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let keys: Vec<String> = (0..1_000).map(|k| format!("id-{k}")).collect();
            let mut entries: Vec<(&str, usize, usize)> = Vec::new();
            for record in 0..3_000 {
                let k = rng.usize(0..1_000);
                for _ in 0..rng.usize(1..=3) {
                    entries.push((keys[k].as_str(), record, 300));
                }
            }
            let plan = plan_ordered_requests(&entries);
            assert_ordered(&entries, &plan);
            let busiest = keys
                .iter()
                .map(|k| {
                    let groups: std::collections::BTreeSet<usize> =
                        entries.iter().filter(|e| e.0 == k).map(|e| e.1).collect();
                    groups.len()
                })
                .max()
                .unwrap_or(0);
            let floor = entries.len().div_ceil(MAX_RECORDS_PER_REQUEST).max(busiest);
            total = (total.0 + plan.len(), total.1 + floor);
            // Runs of up to 3 entries can leave a request a few entries short of 500: at most one more.
            assert!(
                plan.len() <= floor + 1,
                "seed {seed}: {} requests, floor {floor}",
                plan.len()
            );
        }
        // Measured: every seed at its floor (the input-order fill needed up to 2 more per seed).
        assert!(total.0 <= total.1 + 2, "{total:?}");
        // One entry per run: exactly the floor (Hu's algorithm is optimal for chains of unit jobs).
        for seed in 0..20 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let keys: Vec<String> = (0..50).map(|k| format!("id-{k}")).collect();
            let entries: Vec<(&str, usize, usize)> = (0..5_000)
                .map(|i| {
                    let k = if rng.u8(0..100) < 40 {
                        rng.usize(0..2)
                    } else {
                        rng.usize(0..50)
                    };
                    (keys[k].as_str(), i, 10)
                })
                .collect();
            let plan = plan_ordered_requests(&entries);
            assert_ordered(&entries, &plan);
            let busiest = keys
                .iter()
                .map(|k| entries.iter().filter(|e| e.0 == k).count())
                .max()
                .unwrap_or(0);
            assert_eq!(
                plan.len(),
                entries.len().div_ceil(MAX_RECORDS_PER_REQUEST).max(busiest),
                "seed {seed}"
            );
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
