//! A wrapper around any [`BarStore`] that forwards every call and fails the ones a test
//! chooses (neon's `UnreliableWrapper` is the model).
//!
//! Tests of the application layer need a store that fails at one exact point — the second
//! load, the commit of the secondary copy, every stage from the third on — and otherwise
//! behaves exactly like the real adapter underneath, so that what happens after the
//! failure (fallbacks, retries, what is left stored) is the real behaviour. One wrapper
//! does that for every adapter instead of a hand-written forwarding store per test.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use barvault_domain::{Bars, SeriesKey};

use crate::context::OpContext;
use crate::error::{IoStep, StorageError};
use crate::metadata::FileMetadata;
use crate::store::{
    BarStore, Capabilities, FileInfo, LoadOptions, Loaded, Persisted, PutOptions, Revision, Rows, StagedWrite,
};

/// The calls of a [`BarStore`] that can be failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Load,
    FileInfo,
    Stage,
    /// [`StagedWrite::commit`] of a write staged through the wrapper.
    Commit,
    List,
    Remove,
    Append,
}

/// The error an injected failure returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// An OS error with this `errno`.
    Io(i32),
    /// [`StorageError::VersionConflict`]: another writer changed the series.
    Conflict,
    /// [`StorageError::Corrupt`]: the stored data is damaged.
    Corrupt,
}

impl Injected {
    fn error(self, op: Op, series: Option<&SeriesKey>) -> StorageError {
        let path = series.map_or_else(|| "<store>".to_string(), SeriesKey::relative_stem);
        match self {
            Injected::Io(errno) => {
                let step = match op {
                    Op::Load | Op::FileInfo => IoStep::Read,
                    Op::Stage => IoStep::WriteTemp,
                    Op::Commit => IoStep::Rename,
                    Op::List => IoStep::List,
                    Op::Remove => IoStep::Remove,
                    Op::Append => IoStep::Append,
                };
                StorageError::io(step, path, std::io::Error::from_raw_os_error(errno))
            }
            Injected::Conflict => StorageError::version_conflict(path, "injected by the unreliable wrapper"),
            Injected::Corrupt => {
                StorageError::Corrupt { path: path.into(), reason: "injected by the unreliable wrapper".into() }
            }
        }
    }
}

#[derive(Debug)]
struct Rule {
    op: Op,
    /// The first matching call (from 1) that fails.
    nth: u64,
    /// How many matching calls fail from `nth` on (`u64::MAX`: every one).
    count: u64,
    series: Option<SeriesKey>,
    error: Injected,
    seen: u64,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    calls: HashMap<Op, u64>,
    injected: u64,
    /// Loads that skipped leading rows, and stages of revisions that skip stored rows.
    loads_skipping: u64,
    stages_skipping: u64,
}

impl State {
    fn check(&mut self, op: Op, series: Option<&SeriesKey>) -> Result<(), StorageError> {
        *self.calls.entry(op).or_default() += 1;
        let mut hit = None;
        for rule in &mut self.rules {
            if rule.op != op || rule.series.as_ref().is_some_and(|s| Some(s) != series) {
                continue;
            }
            rule.seen += 1;
            let fails = rule.seen >= rule.nth && rule.seen - rule.nth < rule.count;
            if fails && hit.is_none() {
                hit = Some(rule.error);
            }
        }
        match hit {
            Some(error) => {
                self.injected += 1;
                tracing::debug!(?op, ?error, "injected store failure");
                Err(error.error(op, series))
            }
            None => Ok(()),
        }
    }
}

/// Forwards every call to `inner`, failing those its rules match.
#[derive(Clone)]
pub struct UnreliableStore {
    inner: Arc<dyn BarStore>,
    state: Arc<Mutex<State>>,
    /// Reads `Rows::From` as `Rows::All`, as a store without tail reads does.
    no_tail_reads: bool,
}

impl fmt::Debug for UnreliableStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnreliableStore").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl UnreliableStore {
    pub fn new(inner: Arc<dyn BarStore>) -> Self {
        Self { inner, state: Arc::default(), no_tail_reads: false }
    }

    /// The wrapped store without its tail reads: `Rows::From` reads every row, and the
    /// capability is not declared (how a caller behaves with a store that has none).
    pub fn without_tail_reads(mut self) -> Self {
        self.no_tail_reads = true;
        self
    }

    /// Loads so far that returned rows after skipped ones (a tail read served).
    pub fn loads_skipping_rows(&self) -> u64 {
        self.state().loads_skipping
    }

    /// Stages so far of revisions that skip stored rows.
    pub fn stages_skipping_rows(&self) -> u64 {
        self.state().stages_skipping
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, op: Op, nth: u64, count: u64, series: Option<SeriesKey>, error: Injected) -> &Self {
        self.state().rules.push(Rule { op, nth: nth.max(1), count, series, error, seen: 0 });
        self
    }

    /// Fails the `nth` call (from 1, counted from now) of `op`.
    pub fn fail_once(&self, op: Op, nth: u64, error: Injected) -> &Self {
        self.add(op, nth, 1, None, error)
    }

    /// Fails `count` calls of `op` from the `nth` on.
    pub fn fail_times(&self, op: Op, nth: u64, count: u64, error: Injected) -> &Self {
        self.add(op, nth, count, None, error)
    }

    /// Fails every call of `op` from the `nth` on.
    pub fn fail_from(&self, op: Op, nth: u64, error: Injected) -> &Self {
        self.add(op, nth, u64::MAX, None, error)
    }

    /// Fails the `nth` call of `op` on `series` only.
    pub fn fail_series(&self, op: Op, series: &SeriesKey, nth: u64, error: Injected) -> &Self {
        self.add(op, nth, 1, Some(series.clone()), error)
    }

    /// Removes every rule (call counts are kept).
    pub fn heal(&self) {
        self.state().rules.clear();
    }

    /// Calls of `op` so far, failed ones included.
    pub fn calls(&self, op: Op) -> u64 {
        self.state().calls.get(&op).copied().unwrap_or(0)
    }

    /// Calls failed on purpose so far.
    pub fn injected(&self) -> u64 {
        self.state().injected
    }

    fn check(&self, op: Op, series: Option<&SeriesKey>) -> Result<(), StorageError> {
        self.state().check(op, series)
    }
}

/// A staged write of the wrapped store, whose commit the wrapper's rules can fail (the
/// staged write is then dropped, i.e. discarded, as a real failed commit leaves nothing).
#[derive(Debug)]
struct UnreliableStaged {
    inner: Box<dyn StagedWrite>,
    series: SeriesKey,
    state: Arc<Mutex<State>>,
}

#[async_trait]
impl StagedWrite for UnreliableStaged {
    async fn commit(self: Box<Self>, ctx: &OpContext) -> Result<Persisted, StorageError> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).check(Op::Commit, Some(&self.series))?;
        self.inner.commit(ctx).await
    }
}

#[async_trait]
impl BarStore for UnreliableStore {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        let caps = self.inner.capabilities();
        Capabilities { tail_reads: caps.tail_reads && !self.no_tail_reads, ..caps }
    }

    async fn load(
        &self,
        series: &SeriesKey,
        options: &LoadOptions,
        ctx: &OpContext,
    ) -> Result<Option<Loaded>, StorageError> {
        self.check(Op::Load, Some(series))?;
        let loaded = match (self.no_tail_reads, options.rows) {
            (true, Rows::From(_)) => self.inner.load(series, &options.clone().rows(Rows::All), ctx).await?,
            _ => self.inner.load(series, options, ctx).await?,
        };
        if loaded.as_ref().is_some_and(|l| l.skipped > 0) {
            self.state().loads_skipping += 1;
        }
        Ok(loaded)
    }

    async fn file_info(&self, series: &SeriesKey, ctx: &OpContext) -> Result<Option<FileInfo>, StorageError> {
        self.check(Op::FileInfo, Some(series))?;
        self.inner.file_info(series, ctx).await
    }

    async fn stage(
        &self,
        series: &SeriesKey,
        revision: &Revision,
        options: &PutOptions,
        ctx: &OpContext,
    ) -> Result<Box<dyn StagedWrite>, StorageError> {
        self.check(Op::Stage, Some(series))?;
        let inner = self.inner.stage(series, revision, options, ctx).await?;
        if revision.skipped > 0 {
            self.state().stages_skipping += 1;
        }
        Ok(Box::new(UnreliableStaged { inner, series: series.clone(), state: Arc::clone(&self.state) }))
    }

    async fn list(&self, ctx: &OpContext) -> Result<Vec<SeriesKey>, StorageError> {
        self.check(Op::List, None)?;
        self.inner.list(ctx).await
    }

    async fn remove(&self, series: &SeriesKey, ctx: &OpContext) -> Result<bool, StorageError> {
        self.check(Op::Remove, Some(series))?;
        self.inner.remove(series, ctx).await
    }

    async fn append(
        &self,
        series: &SeriesKey,
        bars: &Bars,
        record: &FileMetadata,
        ctx: &OpContext,
    ) -> Result<Option<Persisted>, StorageError> {
        self.check(Op::Append, Some(series))?;
        self.inner.append(series, bars, record, ctx).await
    }
}
