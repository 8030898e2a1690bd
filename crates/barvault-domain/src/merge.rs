use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::bars::{Bars, ExtraColumn};
use crate::error::DomainError;
use crate::time::format_timestamp;

/// How two rows with the same timestamp combine.
///
/// Cell rule, for every policy: the winning row gives each value it has; a value the
/// winner is missing (an extra column it lacks, an empty cell, or a NaN volume, which is
/// how a missing volume is held) comes from the other row. A missing value therefore never
/// erases a stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MergePolicy {
    /// The newer row wins (the seed's rule, pandas `duplicated(keep='last')`).
    #[default]
    KeepLast,
    /// The stored (earlier) row wins; new rows only fill gaps.
    KeepFirst,
    /// Equal timestamps must carry equal values; a difference is an error.
    ErrorOnConflict,
}

impl MergePolicy {
    pub const fn as_str(self) -> &'static str {
        match self {
            MergePolicy::KeepLast => "keep-last",
            MergePolicy::KeepFirst => "keep-first",
            MergePolicy::ErrorOnConflict => "error-on-conflict",
        }
    }
}

impl fmt::Display for MergePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MergePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep-last" | "keep_last" | "last" => Ok(MergePolicy::KeepLast),
            "keep-first" | "keep_first" | "first" => Ok(MergePolicy::KeepFirst),
            "error-on-conflict" | "error_on_conflict" | "error" => Ok(MergePolicy::ErrorOnConflict),
            _ => Err(format!("unknown merge policy {s:?} (expected keep-last, keep-first or error-on-conflict)")),
        }
    }
}

/// What a merge did, for receipts and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MergeStats {
    pub existing_rows: usize,
    pub new_rows: usize,
    pub result_rows: usize,
    /// Rows of `new` whose timestamp was already stored (folded into one row each).
    pub duplicates_removed: usize,
    /// Timestamps that were not stored before.
    pub rows_added: usize,
    /// Stored rows whose values differ after the merge.
    pub rows_changed: usize,
    /// The result equals `existing` exactly, so nothing needs writing.
    pub unchanged: bool,
}

impl MergeStats {
    /// Stored rows the write removed: none for a merge, the stored timestamps the new
    /// bars lack for a replace (see [`replace_stats`]).
    pub fn rows_removed(&self) -> usize {
        (self.existing_rows + self.rows_added).saturating_sub(self.result_rows)
    }
}

/// What replacing `existing` with `new` does, in the merge's vocabulary: timestamps of
/// `new` that were not stored are added, stored ones whose values differ (bit for bit, an
/// extra column one side lacks counting as missing there) are changed, and the rest are
/// kept (`duplicates_removed`); [`MergeStats::rows_removed`] counts the stored rows `new`
/// lacks.
pub fn replace_stats(existing: &Bars, new: &Bars) -> MergeStats {
    let names = union_names(existing, new);
    let (emap, nmap) = (column_map(&names, existing), column_map(&names, new));
    let value = |b: &Bars, map: &[Option<usize>], k: usize, row: usize| map[k].and_then(|m| b.extras[m].values()[row]);
    let same = |i: usize, j: usize| {
        core_cols(existing).iter().zip(core_cols(new)).all(|(a, b)| a[i].to_bits() == b[j].to_bits())
            && (0..names.len())
                .all(|k| value(existing, &emap, k, i).map(f64::to_bits) == value(new, &nmap, k, j).map(f64::to_bits))
    };
    let mut stats = MergeStats {
        existing_rows: existing.len(),
        new_rows: new.len(),
        result_rows: new.len(),
        unchanged: existing == new,
        ..MergeStats::default()
    };
    let (mut i, et) = (0, existing.timestamps());
    for (j, t) in new.timestamps().iter().enumerate() {
        i += et[i..].partition_point(|e| e < t);
        if et.get(i) == Some(t) {
            stats.duplicates_removed += 1;
            stats.rows_changed += usize::from(!same(i, j));
        } else {
            stats.rows_added += 1;
        }
    }
    stats
}

/// Merges `new` into `existing`. The result is sorted with unique timestamps and holds
/// every timestamp of both inputs; extra columns are the union of both sides.
pub fn merge(existing: &Bars, new: &Bars, policy: MergePolicy) -> Result<(Bars, MergeStats), DomainError> {
    let mut stats = MergeStats { existing_rows: existing.len(), new_rows: new.len(), ..MergeStats::default() };
    let names = union_names(existing, new);
    let same_columns = names.len() == existing.extras.len();
    if new.is_empty() && same_columns {
        stats.result_rows = existing.len();
        stats.unchanged = true;
        return Ok((existing.clone(), stats));
    }
    if existing.is_empty() && names.len() == new.extras.len() {
        // Nothing to combine with: the (already sorted, unique) batch is the result, shared.
        stats.rows_added = new.len();
        stats.result_rows = new.len();
        stats.unchanged = new.is_empty() && same_columns;
        return Ok((new.clone(), stats));
    }
    let emap = column_map(&names, existing);
    let nmap = column_map(&names, new);
    let mut out = Builder::new(&names, existing.len() + new.len());
    let (et, nt) = (&existing.ts, &new.ts);
    let (mut i, mut j) = (0, 0);
    // Rows that do not collide are copied in runs, column by column: a typical merge is a
    // long stored history followed by a short overlapping tail, so nearly every row is
    // part of one run.
    while i < et.len() || j < nt.len() {
        match (et.get(i).copied(), nt.get(j).copied()) {
            (Some(a), Some(b)) if a == b => {
                out.push(existing, i, &emap);
                stats.duplicates_removed += 1;
                if out.overlay(new, j, &nmap, policy)? {
                    stats.rows_changed += 1;
                }
                i += 1;
                j += 1;
            }
            (Some(a), b) if b.is_none_or(|b| a < b) => {
                let end = run_end(et, i, b);
                out.extend(existing, i..end, &emap);
                i = end;
            }
            // `existing` is used up, or its next row sorts after the next new one.
            (a, _) => {
                let end = run_end(nt, j, a);
                out.extend(new, j..end, &nmap);
                stats.rows_added += end - j;
                j = end;
            }
        }
    }
    let bars = out.finish();
    stats.result_rows = bars.len();
    stats.unchanged = stats.rows_added == 0 && stats.rows_changed == 0 && same_columns;
    Ok((bars, stats))
}

/// The end of the run of `ts` from `from` on that sorts before `bound` (all of the rest
/// without a bound): the first index at or after `from` whose timestamp is `>= bound`.
/// Gallops, so a run of length `r` costs `O(log r)` however long `ts` is.
fn run_end(ts: &[i64], from: usize, bound: Option<i64>) -> usize {
    let Some(bound) = bound else { return ts.len() };
    let (mut lo, mut step) = (from, 1);
    while let Some(&t) = ts.get(lo + step - 1) {
        if t >= bound {
            break;
        }
        lo += step;
        step *= 2;
    }
    let hi = (lo + step).min(ts.len());
    lo + ts[lo..hi].partition_point(|&t| t < bound)
}

/// Stable-sorts one batch and folds equal timestamps with `policy`, earlier rows first.
pub(crate) fn resolve_duplicates(bars: Bars, policy: MergePolicy) -> Result<(Bars, usize), DomainError> {
    let mut order: Vec<usize> = (0..bars.len()).collect();
    order.sort_by_key(|&i| bars.ts[i]);
    let names: Vec<String> = bars.extras.iter().map(|e| e.name().to_string()).collect();
    let map: Vec<Option<usize>> = (0..names.len()).map(Some).collect();
    let mut out = Builder::new(&names, bars.len());
    let mut folded = 0;
    for &row in &order {
        if out.ts.last() == Some(&bars.ts[row]) {
            out.overlay(&bars, row, &map, policy)?;
            folded += 1;
        } else {
            out.push(&bars, row, &map);
        }
    }
    Ok((out.finish(), folded))
}

fn union_names(a: &Bars, b: &Bars) -> Vec<String> {
    let mut names: Vec<String> = a.extras.iter().chain(&b.extras).map(|e| e.name().to_string()).collect();
    names.sort();
    names.dedup();
    names
}

/// For each union column, the index of that column in `side`, if it has it.
fn column_map(names: &[String], side: &Bars) -> Vec<Option<usize>> {
    names.iter().map(|n| side.extras.iter().position(|e| e.name() == n)).collect()
}

struct Builder {
    ts: Vec<i64>,
    core: [Vec<f64>; 5],
    extras: Vec<(String, Vec<Option<f64>>)>,
}

const CORE_NAMES: [&str; 5] = ["open", "high", "low", "close", "volume"];
/// The index of `volume` in [`CORE_NAMES`].
const VOLUME: usize = 4;

fn core_cols(b: &Bars) -> [&[f64]; 5] {
    [&b.open, &b.high, &b.low, &b.close, &b.volume]
}

impl Builder {
    fn new(names: &[String], capacity: usize) -> Self {
        Self {
            ts: Vec::with_capacity(capacity),
            core: std::array::from_fn(|_| Vec::with_capacity(capacity)),
            extras: names.iter().map(|n| (n.clone(), Vec::with_capacity(capacity))).collect(),
        }
    }

    fn push(&mut self, src: &Bars, row: usize, map: &[Option<usize>]) {
        self.ts.push(src.ts[row]);
        for (dst, col) in self.core.iter_mut().zip(core_cols(src)) {
            dst.push(col[row]);
        }
        for ((_, dst), m) in self.extras.iter_mut().zip(map) {
            dst.push(m.and_then(|m| src.extras[m].values()[row]));
        }
    }

    /// Appends rows `rows` of `src`, a column at a time.
    fn extend(&mut self, src: &Bars, rows: std::ops::Range<usize>, map: &[Option<usize>]) {
        self.ts.extend_from_slice(&src.ts[rows.clone()]);
        for (dst, col) in self.core.iter_mut().zip(core_cols(src)) {
            dst.extend_from_slice(&col[rows.clone()]);
        }
        for ((_, dst), m) in self.extras.iter_mut().zip(map) {
            match m {
                Some(m) => dst.extend_from_slice(&src.extras[*m].values()[rows.clone()]),
                None => dst.resize(dst.len() + rows.len(), None),
            }
        }
    }

    /// Combines row `row` of `src` (the later row) into the last output row (the earlier one).
    /// Returns whether the output row changed.
    fn overlay(
        &mut self,
        src: &Bars,
        row: usize,
        map: &[Option<usize>],
        policy: MergePolicy,
    ) -> Result<bool, DomainError> {
        let ts = src.ts[row];
        let last = self.ts.len() - 1;
        if policy == MergePolicy::ErrorOnConflict {
            for ((dst, col), name) in self.core.iter().zip(core_cols(src)).zip(CORE_NAMES) {
                let missing = name == "volume" && (dst[last].is_nan() || col[row].is_nan());
                if dst[last].to_bits() != col[row].to_bits() && !missing {
                    return Err(conflict(ts, name, dst[last], col[row]));
                }
            }
            for ((name, dst), m) in self.extras.iter().zip(map) {
                if let (Some(a), Some(b)) = (dst[last], m.and_then(|m| src.extras[m].values()[row]))
                    && a.to_bits() != b.to_bits()
                {
                    return Err(conflict(ts, name, a, b));
                }
            }
        }
        let later_wins = policy == MergePolicy::KeepLast;
        let mut changed = false;
        if later_wins {
            for (dst, col) in self.core.iter_mut().zip(core_cols(src)).take(VOLUME) {
                changed |= dst[last].to_bits() != col[row].to_bits();
                dst[last] = col[row];
            }
        }
        // A NaN volume is a missing one: like an empty extra cell, it never erases a value.
        let (earlier, later) = (self.core[VOLUME][last], src.volume[row]);
        let volume = match (later_wins, earlier.is_nan(), later.is_nan()) {
            (true, _, false) | (false, true, _) => later,
            _ => earlier,
        };
        changed |= volume.to_bits() != earlier.to_bits();
        self.core[VOLUME][last] = volume;
        for ((_, dst), m) in self.extras.iter_mut().zip(map) {
            let earlier = dst[last];
            let later = m.and_then(|m| src.extras[m].values()[row]);
            let v = if later_wins { later.or(earlier) } else { earlier.or(later) };
            changed |= v.map(f64::to_bits) != earlier.map(f64::to_bits);
            dst[last] = v;
        }
        Ok(changed)
    }

    fn finish(self) -> Bars {
        let [open, high, low, close, volume] = self.core;
        Bars {
            ts: self.ts.into(),
            open: open.into(),
            high: high.into(),
            low: low.into(),
            close: close.into(),
            volume: volume.into(),
            extras: self
                .extras
                .into_iter()
                .map(|(name, values)| ExtraColumn::new(&name, values).expect("names come from valid columns"))
                .collect(),
        }
    }
}

fn conflict(ts: i64, column: &str, existing: f64, new: f64) -> DomainError {
    DomainError::Conflict {
        timestamp: format_timestamp(ts),
        column: column.to_string(),
        existing: existing.to_string(),
        new: new.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gallop finds the same run end as a linear scan, for runs of every length up to
    /// past the end of a long column.
    #[test]
    fn run_end_matches_a_linear_scan() {
        let ts: Vec<i64> = (0..300).map(|i| i * 3).collect();
        for from in [0, 1, 7, 150, 299, 300] {
            for bound in (-2..=905).chain([i64::MIN, i64::MAX]) {
                let linear = (from..ts.len()).find(|&k| ts[k] >= bound).unwrap_or(ts.len());
                assert_eq!(run_end(&ts, from, Some(bound)).max(from), linear.max(from), "from {from}, bound {bound}");
            }
            assert_eq!(run_end(&ts, from, None), ts.len());
        }
    }
    use crate::bars::RawBars;

    fn bars(ts: &[i64], close: &[f64], adj: Option<&[Option<f64>]>) -> Bars {
        let n = ts.len();
        let extras = adj.map(|v| vec![ExtraColumn::new("adj_close", v.to_vec()).unwrap()]).unwrap_or_default();
        Bars::new(ts.to_vec(), vec![1.0; n], vec![9.0; n], vec![0.5; n], close.to_vec(), vec![10.0; n], extras).unwrap()
    }

    #[test]
    fn keep_last_takes_new_values_but_never_erases_stored_cells() {
        let old = bars(&[1, 2, 3], &[1.0, 2.0, 3.0], Some(&[Some(10.0), Some(20.0), None]));
        let new = bars(&[2, 3, 4], &[2.5, 3.5, 4.5], Some(&[None, Some(31.0), None]));
        let (out, stats) = merge(&old, &new, MergePolicy::KeepLast).unwrap();
        assert_eq!(out, bars(&[1, 2, 3, 4], &[1.0, 2.5, 3.5, 4.5], Some(&[Some(10.0), Some(20.0), Some(31.0), None])));
        assert_eq!(
            stats,
            MergeStats {
                existing_rows: 3,
                new_rows: 3,
                result_rows: 4,
                duplicates_removed: 2,
                rows_added: 1,
                rows_changed: 2,
                unchanged: false
            }
        );
        // A batch without the column keeps every stored value.
        let (out, _) = merge(&old, &bars(&[1], &[1.5], None), MergePolicy::KeepLast).unwrap();
        assert_eq!(out.extra("adj_close").unwrap().values(), &[Some(10.0), Some(20.0), None]);
        assert_eq!(out.close(), &[1.5, 2.0, 3.0]);
    }

    #[test]
    fn keep_first_only_fills_gaps() {
        let old = bars(&[1, 2], &[1.0, 2.0], Some(&[Some(10.0), None]));
        let new = bars(&[1, 2], &[7.0, 8.0], Some(&[Some(70.0), Some(80.0)]));
        let (out, stats) = merge(&old, &new, MergePolicy::KeepFirst).unwrap();
        assert_eq!(out, bars(&[1, 2], &[1.0, 2.0], Some(&[Some(10.0), Some(80.0)])));
        assert_eq!((stats.rows_changed, stats.rows_added, stats.unchanged), (1, 0, false));
    }

    #[test]
    fn conflicts_name_timestamp_column_and_both_values() {
        let old = bars(&[0], &[-37.63], None);
        let new = bars(&[0], &[-37.62], None);
        let err = merge(&old, &new, MergePolicy::ErrorOnConflict).unwrap_err();
        assert_eq!(
            err,
            DomainError::Conflict {
                timestamp: "1970-01-01T00:00:00Z".into(),
                column: "close".into(),
                existing: "-37.63".into(),
                new: "-37.62".into(),
            }
        );
        let old = bars(&[5], &[1.0], Some(&[Some(1.0)]));
        let new = bars(&[5], &[1.0], Some(&[Some(2.0)]));
        let err = merge(&old, &new, MergePolicy::ErrorOnConflict).unwrap_err();
        assert!(matches!(err, DomainError::Conflict { ref column, .. } if column == "adj_close"), "{err:?}");
    }

    #[test]
    fn conflict_is_bitwise_and_missing_is_not_a_conflict() {
        let nan = bars(&[1], &[f64::NAN], Some(&[None]));
        let (out, stats) = merge(&nan, &bars(&[1], &[f64::NAN], Some(&[Some(4.0)])), MergePolicy::ErrorOnConflict)
            .expect("NaN equals itself bitwise and a missing cell is filled");
        assert_eq!(out.extra("adj_close").unwrap().values(), &[Some(4.0)]);
        assert_eq!(stats.rows_changed, 1);
        let zero = bars(&[1], &[0.0], None);
        let neg_zero = bars(&[1], &[-0.0], None);
        assert!(merge(&zero, &neg_zero, MergePolicy::ErrorOnConflict).is_err(), "-0.0 and 0.0 differ in storage");
    }

    /// A NaN volume is missing: it fills from the other row under every policy and is
    /// never a conflict, while a stored NaN volume takes a new value.
    #[test]
    fn a_missing_volume_never_erases_a_stored_one() {
        let row = |ts: i64, close: f64, volume: f64| {
            Bars::new(vec![ts], vec![1.0], vec![9.0], vec![0.5], vec![close], vec![volume], vec![]).unwrap()
        };
        let stored = row(1, 2.0, 100.0);
        let (out, stats) = merge(&stored, &row(1, 3.0, f64::NAN), MergePolicy::KeepLast).unwrap();
        assert_eq!((out.close(), out.volume(), stats.rows_changed), (&[3.0][..], &[100.0][..], 1));
        let (out, stats) = merge(&stored, &row(1, 2.0, f64::NAN), MergePolicy::KeepLast).unwrap();
        assert_eq!((out.volume(), stats.unchanged), (&[100.0][..], true));
        let missing = row(1, 2.0, f64::NAN);
        for policy in [MergePolicy::KeepLast, MergePolicy::KeepFirst, MergePolicy::ErrorOnConflict] {
            let (out, stats) = merge(&missing, &row(1, 2.0, 7.0), policy).unwrap();
            assert_eq!((out.volume(), stats.rows_changed), (&[7.0][..], 1), "{policy}");
        }
        let (out, _) = merge(&stored, &row(1, 2.0, f64::NAN), MergePolicy::ErrorOnConflict).unwrap();
        assert_eq!(out.volume(), &[100.0]);
        assert!(merge(&stored, &row(1, 2.0, 7.0), MergePolicy::ErrorOnConflict).is_err());
    }

    #[test]
    fn replace_stats_count_added_changed_kept_and_removed() {
        let old = bars(&[1, 2, 3, 4], &[1.0, 2.0, 3.0, 4.0], Some(&[Some(1.0), None, None, None]));
        let new = bars(&[2, 3, 5], &[2.0, 3.5, 5.0], None);
        let stats = replace_stats(&old, &new);
        assert_eq!((stats.rows_added, stats.rows_changed, stats.duplicates_removed), (1, 1, 2));
        assert_eq!((stats.rows_removed(), stats.result_rows, stats.unchanged), (2, 3, false));
        assert!(replace_stats(&old, &old).unchanged);
        assert_eq!(replace_stats(&old, &old).rows_removed(), 0);
        let empty = replace_stats(&Bars::empty(), &new);
        assert_eq!((empty.rows_added, empty.rows_removed()), (3, 0));
        assert_eq!(merge(&old, &new, MergePolicy::KeepLast).unwrap().1.rows_removed(), 0);
    }

    #[test]
    fn empty_new_batch_is_unchanged_unless_it_brings_a_column() {
        let old = bars(&[1, 2], &[1.0, 2.0], None);
        let (out, stats) = merge(&old, &Bars::empty(), MergePolicy::KeepLast).unwrap();
        assert_eq!(out, old);
        assert!(stats.unchanged);
        let (out, stats) = merge(&old, &bars(&[], &[], Some(&[])), MergePolicy::KeepLast).unwrap();
        assert_eq!(out.column_names().last().map(String::as_str), Some("adj_close"));
        assert!(!stats.unchanged, "a new (empty) column changes the frame");
    }

    #[test]
    fn raw_duplicates_fold_in_file_order() {
        let mut raw = RawBars::default();
        for (ts, close) in [(3, 30.0), (1, 10.0), (3, 31.0), (2, 20.0), (3, 32.0)] {
            raw.push(ts, 1.0, 99.0, 0.0, close, 5.0);
        }
        let (last, folded) = raw.clone().into_bars(MergePolicy::KeepLast).unwrap();
        assert_eq!((last.timestamps(), last.close(), folded), (&[1, 2, 3][..], &[10.0, 20.0, 32.0][..], 2));
        let (first, _) = raw.clone().into_bars(MergePolicy::KeepFirst).unwrap();
        assert_eq!(first.close(), &[10.0, 20.0, 30.0]);
        assert!(matches!(raw.into_bars(MergePolicy::ErrorOnConflict), Err(DomainError::Conflict { .. })));
    }

    #[test]
    fn policies_parse_and_display() {
        for p in [MergePolicy::KeepLast, MergePolicy::KeepFirst, MergePolicy::ErrorOnConflict] {
            assert_eq!(p.to_string().parse::<MergePolicy>(), Ok(p));
        }
        assert_eq!("keep_first".parse::<MergePolicy>(), Ok(MergePolicy::KeepFirst));
        assert!("newest".parse::<MergePolicy>().is_err());
    }
}
