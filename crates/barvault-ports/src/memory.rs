//! In-memory adapters (written by the memory/conformance task).
