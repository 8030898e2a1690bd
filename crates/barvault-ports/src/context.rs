use barvault_domain::SeriesKey;

/// Per-operation context: the correlation id that ties every log line of one request together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpContext {
    correlation_id: String,
}

impl Default for OpContext {
    fn default() -> Self {
        Self::new()
    }
}

impl OpContext {
    /// A context with a fresh random (v4 UUID) correlation id.
    pub fn new() -> Self {
        Self { correlation_id: uuid::Uuid::new_v4().to_string() }
    }

    /// A context with the caller's correlation id, or a fresh one when `id` is `None` or blank.
    pub fn with_correlation_id(id: Option<&str>) -> Self {
        match id.map(str::trim) {
            Some(id) if !id.is_empty() => Self { correlation_id: id.to_string() },
            _ => Self::new(),
        }
    }

    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// A span for one public operation, recording the correlation id, instrument and period.
    pub fn span(&self, operation: &'static str, series: Option<&SeriesKey>) -> tracing::Span {
        match series {
            Some(s) => tracing::info_span!(
                "storage",
                operation,
                correlation_id = %self.correlation_id,
                instrument = %s.instrument,
                period = %s.period,
            ),
            None => {
                tracing::info_span!("storage", operation, correlation_id = %self.correlation_id)
            }
        }
    }
}
