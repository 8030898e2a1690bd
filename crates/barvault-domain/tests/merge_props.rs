//! Properties of `merge` and `RawBars::into_bars`, checked against a naive reference model:
//! a map from timestamp to row, filled batch after batch in arrival order with the cell
//! rule of `MergePolicy` (the winner's value unless missing, then the loser's; a NaN
//! volume is missing).

use std::collections::{BTreeMap, BTreeSet};

use barvault_domain::{Bars, DomainError, ExtraColumn, MergePolicy, MergeStats, RawBars, merge};
use proptest::prelude::*;

const POLICIES: [MergePolicy; 3] = [MergePolicy::KeepLast, MergePolicy::KeepFirst, MergePolicy::ErrorOnConflict];
const EXTRA_NAMES: [&str; 2] = ["adj_close", "open_interest"];

/// One row as the model sees it: core bits and the extra cells that are present.
#[derive(Debug, Clone, PartialEq)]
struct ModelRow {
    core: [u64; 5],
    cells: BTreeMap<String, u64>,
}

/// The reference: rows by timestamp and the set of extra columns seen.
#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    columns: BTreeSet<String>,
    rows: BTreeMap<i64, ModelRow>,
}

#[derive(Debug)]
struct ModelConflict;

impl Model {
    /// Feeds rows in arrival order; an existing timestamp is combined under `policy`.
    fn apply(
        &mut self,
        columns: &[String],
        rows: impl IntoIterator<Item = (i64, ModelRow)>,
        policy: MergePolicy,
    ) -> Result<(), ModelConflict> {
        self.columns.extend(columns.iter().cloned());
        for (ts, new) in rows {
            let Some(old) = self.rows.get_mut(&ts) else {
                self.rows.insert(ts, new);
                continue;
            };
            let nan = |bits: u64| f64::from_bits(bits).is_nan();
            if policy == MergePolicy::ErrorOnConflict {
                let cell_clash = new.cells.iter().any(|(c, v)| old.cells.get(c).is_some_and(|o| o != v));
                let volume_clash = old.core[4] != new.core[4] && !nan(old.core[4]) && !nan(new.core[4]);
                if old.core[..4] != new.core[..4] || volume_clash || cell_clash {
                    return Err(ModelConflict);
                }
            }
            let (winner, loser) = if policy == MergePolicy::KeepLast { (new, old.clone()) } else { (old.clone(), new) };
            let mut cells = loser.cells;
            cells.extend(winner.cells);
            // A NaN volume is missing, like an absent cell.
            let mut core = winner.core;
            if nan(core[4]) {
                core[4] = loser.core[4];
            }
            *old = ModelRow { core, cells };
        }
        Ok(())
    }

    fn from_bars(bars: &Bars) -> Self {
        let mut m = Model::default();
        m.apply(&names(bars), rows(bars), MergePolicy::KeepLast).expect("keep-last never conflicts");
        m
    }

    fn to_bars(&self) -> Bars {
        let ts: Vec<i64> = self.rows.keys().copied().collect();
        let core = |k: usize| self.rows.values().map(|r| f64::from_bits(r.core[k])).collect::<Vec<_>>();
        let extras = self
            .columns
            .iter()
            .map(|c| {
                let values = self.rows.values().map(|r| r.cells.get(c).map(|b| f64::from_bits(*b))).collect();
                ExtraColumn::new(c, values).expect("model column names are valid")
            })
            .collect();
        Bars::new(ts, core(0), core(1), core(2), core(3), core(4), extras).expect("model rows are sorted")
    }
}

fn names(bars: &Bars) -> Vec<String> {
    bars.extras().iter().map(|e| e.name().to_string()).collect()
}

fn row_at(bars: &Bars, i: usize) -> ModelRow {
    ModelRow {
        core: [bars.open()[i], bars.high()[i], bars.low()[i], bars.close()[i], bars.volume()[i]].map(f64::to_bits),
        cells: bars.extras().iter().filter_map(|e| Some((e.name().to_string(), e.values()[i]?.to_bits()))).collect(),
    }
}

fn rows(bars: &Bars) -> Vec<(i64, ModelRow)> {
    (0..bars.len()).map(|i| (bars.timestamps()[i], row_at(bars, i))).collect()
}

fn raw_rows(raw: &RawBars) -> Vec<(i64, ModelRow)> {
    (0..raw.len())
        .map(|i| {
            let core = [raw.open[i], raw.high[i], raw.low[i], raw.close[i], raw.volume[i]].map(f64::to_bits);
            let cells =
                raw.extras.iter().filter_map(|e| Some((e.name().to_string(), e.values()[i]?.to_bits()))).collect();
            (raw.ts[i], ModelRow { core, cells })
        })
        .collect()
}

/// The reference result of `merge(existing, new, policy)`.
fn reference_merge(existing: &Bars, new: &Bars, policy: MergePolicy) -> Option<Bars> {
    let mut m = Model::from_bars(existing);
    m.apply(&names(new), rows(new), policy).ok()?;
    Some(m.to_bars())
}

/// Values from a small pool so batches often agree, plus signed zeros and NaN.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => prop::sample::select(vec![1.0, 2.0, 0.0, -0.0, -37.63, 1e300, 5e-324, f64::NAN]),
        1 => any::<f64>(),
    ]
}

type GenRow = (i64, [f64; 5], [Option<f64>; 2]);

fn gen_row() -> impl Strategy<Value = GenRow> {
    (0i64..24, prop::array::uniform5(value()), prop::array::uniform2(prop::option::weighted(0.6, value())))
}

/// Which extras a batch carries.
fn gen_columns() -> impl Strategy<Value = [bool; 2]> {
    prop::array::uniform2(any::<bool>())
}

fn build_raw(columns: [bool; 2], rows: &[GenRow]) -> RawBars {
    let mut raw = RawBars::with_capacity(rows.len());
    for (ts, c, _) in rows {
        raw.push(*ts, c[0], c[1], c[2], c[3], c[4]);
    }
    for (k, name) in EXTRA_NAMES.iter().enumerate() {
        if columns[k] {
            let values = rows.iter().map(|r| r.2[k]).collect();
            raw.extras.push(ExtraColumn::new(name, values).expect("valid name"));
        }
    }
    raw
}

/// A sorted, unique batch (rows deduplicated by timestamp, first wins).
fn bars() -> impl Strategy<Value = Bars> {
    (gen_columns(), prop::collection::vec(gen_row(), 0..14)).prop_map(|(columns, mut rows)| {
        rows.sort_by_key(|r| r.0);
        rows.dedup_by_key(|r| r.0);
        let (bars, folded) = build_raw(columns, &rows).into_bars(MergePolicy::KeepLast).expect("unique rows");
        assert_eq!(folded, 0);
        bars
    })
}

/// A decoder's view: unsorted, with repeated timestamps.
fn raw_bars() -> impl Strategy<Value = RawBars> {
    (gen_columns(), prop::collection::vec(gen_row(), 0..20)).prop_map(|(columns, rows)| build_raw(columns, &rows))
}

fn assert_sorted_unique(b: &Bars) -> Result<(), TestCaseError> {
    prop_assert!(b.timestamps().windows(2).all(|w| w[0] < w[1]), "not strictly increasing: {:?}", b.timestamps());
    Ok(())
}

fn assert_stats_consistent(existing: &Bars, new: &Bars, result: &Bars, s: &MergeStats) -> Result<(), TestCaseError> {
    prop_assert_eq!(s.existing_rows, existing.len());
    prop_assert_eq!(s.new_rows, new.len());
    prop_assert_eq!(s.result_rows, result.len());
    prop_assert_eq!(s.result_rows, s.existing_rows + s.rows_added);
    prop_assert_eq!(s.duplicates_removed, s.new_rows - s.rows_added);
    prop_assert_eq!(s.unchanged, result == existing, "unchanged must mean result == existing");
    let before = Model::from_bars(existing);
    let after = Model::from_bars(result);
    let changed = before.rows.iter().filter(|(ts, row)| after.rows.get(ts) != Some(row)).count();
    prop_assert_eq!(s.rows_changed, changed, "rows_changed counts stored rows whose values differ");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn output_sorted_unique_and_keeps_every_timestamp(a in bars(), b in bars()) {
        for policy in POLICIES {
            let Ok((out, stats)) = merge(&a, &b, policy) else { continue };
            assert_sorted_unique(&out)?;
            let want: BTreeSet<i64> = a.timestamps().iter().chain(b.timestamps()).copied().collect();
            let got: BTreeSet<i64> = out.timestamps().iter().copied().collect();
            prop_assert_eq!(got, want, "{}: a timestamp of an input is missing", policy);
            let want_cols: BTreeSet<String> = names(&a).into_iter().chain(names(&b)).collect();
            prop_assert_eq!(names(&out).into_iter().collect::<BTreeSet<_>>(), want_cols);
            assert_stats_consistent(&a, &b, &out, &stats)?;
        }
    }

    #[test]
    fn merge_with_itself_is_identity(a in bars()) {
        for policy in POLICIES {
            let (out, stats) = merge(&a, &a, policy).expect("a batch never conflicts with itself");
            prop_assert_eq!(&out, &a);
            prop_assert!(stats.unchanged, "{}: merge(x, x) reports a change", policy);
            prop_assert_eq!((stats.rows_added, stats.rows_changed, stats.duplicates_removed), (0, 0, a.len()));
        }
    }

    #[test]
    fn merging_a_stored_subset_changes_nothing(a in bars(), lo in 0usize..14, len in 0usize..14) {
        let sub = a.slice_rows(lo, lo + len);
        for policy in POLICIES {
            let (out, stats) = merge(&a, &sub, policy).expect("a subset never conflicts");
            prop_assert_eq!(&out, &a);
            prop_assert!(stats.unchanged);
        }
    }

    #[test]
    fn merge_agrees_with_reference(a in bars(), b in bars()) {
        for policy in POLICIES {
            let got = merge(&a, &b, policy);
            match (reference_merge(&a, &b, policy), got) {
                (Some(want), Ok((out, _))) => prop_assert_eq!(out, want, "{}", policy),
                (None, Err(DomainError::Conflict { .. })) => {}
                (want, got) => prop_assert!(false, "{}: reference {:?} but merge gave {:?}", policy, want, got),
            }
        }
    }

    #[test]
    fn keep_first_never_alters_stored_cells(a in bars(), b in bars()) {
        let (out, stats) = merge(&a, &b, MergePolicy::KeepFirst).expect("keep-first never conflicts");
        let after = Model::from_bars(&out);
        for (ts, row) in Model::from_bars(&a).rows {
            let kept = &after.rows[&ts];
            prop_assert_eq!(&kept.core[..4], &row.core[..4]);
            // A stored NaN volume is a missing one, which the new row may fill.
            if !f64::from_bits(row.core[4]).is_nan() {
                prop_assert_eq!(kept.core[4], row.core[4]);
            }
            for (c, v) in &row.cells {
                prop_assert_eq!(kept.cells.get(c), Some(v));
            }
        }
        // Only filled gaps can change a stored row.
        prop_assert!(stats.rows_changed <= stats.duplicates_removed);
    }

    #[test]
    fn error_on_conflict_accepts_exactly_the_agreeing_batches(a in bars(), b in bars()) {
        let strict = merge(&a, &b, MergePolicy::ErrorOnConflict);
        let first = merge(&a, &b, MergePolicy::KeepFirst).expect("keep-first never conflicts");
        let last = merge(&a, &b, MergePolicy::KeepLast).expect("keep-last never conflicts");
        match strict {
            // With no conflict both winners give every cell the same value.
            Ok((out, stats)) => {
                prop_assert_eq!(&out, &first.0);
                prop_assert_eq!(&out, &last.0);
                prop_assert_eq!(stats, first.1);
            }
            Err(DomainError::Conflict { .. }) => prop_assert_ne!(&first.0, &last.0, "conflict reported on agreeing data"),
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }

    #[test]
    fn keep_last_is_associative(a in bars(), b in bars(), c in bars()) {
        let p = MergePolicy::KeepLast;
        let left = merge(&merge(&a, &b, p).expect("keep-last").0, &c, p).expect("keep-last").0;
        let right = merge(&a, &merge(&b, &c, p).expect("keep-last").0, p).expect("keep-last").0;
        prop_assert_eq!(left, right);
    }

    #[test]
    fn into_bars_folds_duplicates_like_the_reference(raw in raw_bars()) {
        let unique: BTreeSet<i64> = raw.ts.iter().copied().collect();
        let cols: Vec<String> = raw.extras.iter().map(|e| e.name().to_string()).collect();
        for policy in POLICIES {
            let mut model = Model::default();
            let want = model.apply(&cols, raw_rows(&raw), policy).ok().map(|()| model.to_bars());
            match (want, raw.clone().into_bars(policy)) {
                (Some(want), Ok((bars, folded))) => {
                    assert_sorted_unique(&bars)?;
                    prop_assert_eq!(bars, want, "{}", policy);
                    prop_assert_eq!(folded, raw.len() - unique.len());
                }
                (None, Err(DomainError::Conflict { .. })) => {}
                (want, got) => prop_assert!(false, "{}: reference {:?} but into_bars gave {:?}", policy, want, got),
            }
        }
    }

    #[test]
    fn into_bars_then_merge_equals_one_big_batch(a in raw_bars(), b in raw_bars()) {
        // Two decoded files merged equal the concatenation decoded at once (keep-last).
        let p = MergePolicy::KeepLast;
        let (ab, _) = a.clone().into_bars(p).expect("keep-last");
        let (bb, _) = b.clone().into_bars(p).expect("keep-last");
        let merged = merge(&ab, &bb, p).expect("keep-last").0;
        let mut model = Model::default();
        let cols = |r: &RawBars| r.extras.iter().map(|e| e.name().to_string()).collect::<Vec<_>>();
        model.apply(&cols(&a), raw_rows(&a), p).expect("keep-last");
        model.apply(&cols(&b), raw_rows(&b), p).expect("keep-last");
        prop_assert_eq!(merged, model.to_bars());
    }
}
