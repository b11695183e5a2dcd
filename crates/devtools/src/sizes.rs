//! Record sizes as Kinesis bills them, for the demos' summaries (and the README's cost estimate).

/// Kinesis on-demand bills ingested data per record rounded up to 1 KiB.
pub const BILLING_UNIT: usize = 1024;

/// "N records of A-B bytes (median M), billed as K KiB": measured sizes and the billed data of a set of records.
pub fn summary(sizes: &[usize]) -> String {
    if sizes.is_empty() {
        return "no records".to_owned();
    }
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable();
    let billed: usize = sorted.iter().map(|s| s.div_ceil(BILLING_UNIT).max(1)).sum();
    format!(
        "{} records of {}-{} bytes (median {}), billed by Kinesis as {billed} KiB",
        sorted.len(),
        sorted[0],
        sorted[sorted.len() - 1],
        sorted[sorted.len() / 2],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_each_record_up_to_a_kib() {
        assert_eq!(
            summary(&[1025, 10, 700]),
            "3 records of 10-1025 bytes (median 700), billed by Kinesis as 4 KiB"
        );
        assert_eq!(summary(&[]), "no records");
    }
}
