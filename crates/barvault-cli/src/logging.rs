//! Log lines on standard error: text or one JSON object per line.
//!
//! Levels: errors only with `-q`, warnings by default, info with `-v`, debug with `-vv`,
//! trace with `-vvv`. Spans are always recorded (whatever the level), so a JSON line carries
//! the fields of the spans it happened in: `correlation_id`, `instrument`, `period`.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::LogFormat;

/// The most detailed level shown.
pub fn level(verbose: u8, quiet: bool) -> Level {
    match (quiet, verbose) {
        (true, _) => Level::ERROR,
        (false, 0) => Level::WARN,
        (false, 1) => Level::INFO,
        (false, 2) => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// Installs the global subscriber (once, at start-up).
pub fn init(format: LogFormat, verbose: u8, quiet: bool) {
    let max = level(verbose, quiet);
    let filter = filter_fn(move |meta| meta.is_span() || *meta.level() <= max);
    let layer = match format {
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_current_span(true)
            .with_span_list(true)
            .flatten_event(true)
            .boxed(),
    };
    // Only fails when a subscriber is already installed, which main never does twice.
    let _ = tracing_subscriber::registry().with(layer.with_filter(filter)).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_to_levels() {
        assert_eq!(level(0, false), Level::WARN);
        assert_eq!(level(1, false), Level::INFO);
        assert_eq!(level(2, false), Level::DEBUG);
        assert_eq!(level(5, false), Level::TRACE);
        assert_eq!(level(0, true), Level::ERROR);
    }
}
