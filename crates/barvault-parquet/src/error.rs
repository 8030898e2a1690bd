use std::io;

use arrow_schema::ArrowError;
use barvault_ports::CodecError;
use parquet::errors::ParquetError;

/// Finds an operating-system error inside a parquet/arrow error chain, if the failure was one.
fn io_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

/// A read failure: a genuine I/O error stays `Io` (a retry may help); anything else means
/// the bytes are not a readable Parquet file, which is `Corrupt` (a fallback copy may help).
pub(crate) fn from_parquet_on_read(e: ParquetError) -> CodecError {
    if let ParquetError::External(inner) = &e
        && let Some(io) = io_cause(inner.as_ref())
        && io.kind() != io::ErrorKind::UnexpectedEof
    {
        return CodecError::Io(io::Error::new(io.kind(), io.to_string()));
    }
    CodecError::Corrupt(format!("not a readable Parquet file: {e}"))
}

pub(crate) fn from_arrow_on_read(e: ArrowError) -> CodecError {
    match e {
        ArrowError::IoError(_, io) if io.kind() != io::ErrorKind::UnexpectedEof => CodecError::Io(io),
        ArrowError::ExternalError(inner) => match inner.downcast::<ParquetError>() {
            Ok(pq) => from_parquet_on_read(*pq),
            Err(other) => match io_cause(other.as_ref()) {
                Some(io) if io.kind() != io::ErrorKind::UnexpectedEof => {
                    CodecError::Io(io::Error::new(io.kind(), io.to_string()))
                }
                _ => CodecError::Corrupt(format!("not a readable Parquet file: {other}")),
            },
        },
        other => CodecError::Corrupt(format!("not a readable Parquet file: {other}")),
    }
}

/// A write failure: the sink failing is `Io`; anything else is reported as an I/O failure
/// of the encoder too, since `CodecError` has no encode variant and nothing was stored.
pub(crate) fn from_parquet_on_write(e: ParquetError) -> CodecError {
    if let ParquetError::External(inner) = &e
        && let Some(io) = io_cause(inner.as_ref())
    {
        return CodecError::Io(io::Error::new(io.kind(), io.to_string()));
    }
    CodecError::Io(io::Error::other(format!("parquet encoder failed: {e}")))
}
