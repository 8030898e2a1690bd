//! Conformance suite (written by the memory/conformance task).
