//! Property: persisting any sequence of overlapping batches through the real dual manager
//! stores exactly the keep-last fold of the domain's `merge`, in both formats.

mod common;

use std::collections::BTreeMap;

use barvault::{Bars, CsvCodec, MergePolicy, ParquetCodec, PersistOptions, Scope, StorageFactory};
use barvault_domain::{ExtraColumn, merge};
use barvault_fs::FileStore;
use barvault_ports::conformance::{BASE_NS, DAY_NS, stock};
use proptest::prelude::*;

/// One batch: per day offset, the row's price and an optional extra value.
type Batch = BTreeMap<i64, (f64, Option<f64>)>;

fn to_bars(batch: &Batch, with_extra: bool) -> Bars {
    let ts: Vec<i64> = batch.keys().map(|d| BASE_NS + d * DAY_NS).collect();
    let p: Vec<f64> = batch.values().map(|v| v.0).collect();
    let extras = if with_extra {
        vec![ExtraColumn::new("adj_close", batch.values().map(|v| v.1).collect()).unwrap()]
    } else {
        vec![]
    };
    let high = p.iter().map(|x| x * 1.5).collect();
    let low = p.iter().map(|x| x / 1.5).collect();
    let volume = p.iter().map(|x| (x * 1000.0).floor()).collect();
    Bars::new(ts, p.clone(), high, low, p, volume, extras).unwrap()
}

fn batch() -> impl Strategy<Value = (Batch, bool)> {
    let value = (0.01f64..10_000.0, proptest::option::of(-1e6f64..1e6));
    (prop::collection::btree_map(0i64..40, value, 1..25), any::<bool>())
}

fn cases() -> u32 {
    if std::env::var_os("BARVAULT_SLOW_TESTS").is_some() { 64 } else { 6 }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn dual_store_holds_the_keep_last_fold(batches in prop::collection::vec(batch(), 1..6)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let manager = StorageFactory::create_storage(&common::config(dir.path())).unwrap();
            let (s, ctx) = (stock("PROP"), common::ctx());
            let mut expected = Bars::empty();
            let mut writes = 0;
            for (b, extra) in &batches {
                let bars = to_bars(b, *extra);
                let receipt = manager.persist(&bars, &s, PersistOptions::default(), &ctx).await.unwrap();
                let (next, stats) = merge(&expected, &bars, MergePolicy::KeepLast).unwrap();
                prop_assert_eq!(receipt.written, !stats.unchanged);
                prop_assert_eq!(receipt.rows_written, next.len());
                writes += usize::from(receipt.written);
                expected = next;
            }
            prop_assert_eq!(common::served(&manager, &s).await, Some(expected.clone()));
            let csv = FileStore::new(dir.path(), CsvCodec).unwrap();
            let parquet = FileStore::new(dir.path(), ParquetCodec::default()).unwrap();
            prop_assert_eq!(common::load(&csv, &s).await, Some(expected.clone()));
            prop_assert_eq!(common::load(&parquet, &s).await, Some(expected));
            let vault = common::vault(dir.path());
            let report = vault.verify(Scope::All, true).await.unwrap();
            prop_assert!(report.is_clean(), "{:#?}", report.issues);
            let listed = vault.list(None, None, &ctx).await.unwrap();
            prop_assert_eq!(listed[0].generation, writes as u64);
            Ok(())
        })?;
    }
}
