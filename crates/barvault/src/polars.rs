//! Bars ↔ polars DataFrame (feature `polars`); written by the polars task.
