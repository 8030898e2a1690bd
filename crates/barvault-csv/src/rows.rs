//! Where the rows of an input are: the physical line of a data row, and the first
//! timestamp written with a UTC offset. Both read the input a second time, with csv's
//! reader, and only when asked (a rejected import names the lines of the rows it refused;
//! `--tz` must know that the input is naive), so the decoder's hot path stays as it is.

use crate::decode::{Fields, is_ignorable, line_of};
use crate::timestamp::has_utc_offset;

/// The 1-based physical line of each data row in `rows` (0-based, in file order: row `k`
/// is the `k`-th bar the decoder read from `input`), `None` for a row past the end.
/// Rows are counted as the decoder counts them: the header is not a row, and blank
/// records and Barchart's footer are skipped.
pub fn data_row_lines(input: &[u8], rows: &[usize]) -> Vec<Option<u64>> {
    let mut lines = vec![None; rows.len()];
    let Some(&last) = rows.iter().max() else { return lines };
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i]);
    let mut next = order.into_iter().peekable();
    each_data_record(input, |row, record| {
        while let Some(&i) = next.peek().filter(|&&i| rows[i] == row) {
            lines[i] = Some(line_of(input, record));
            next.next();
        }
        row < last
    });
    lines
}

/// The line and text of the first cell of `input` that is a timestamp (or time of day)
/// with an explicit UTC offset or `Z`; `None` when every timestamp is naive.
pub fn first_utc_offset(input: &[u8]) -> Option<(u64, String)> {
    let mut found = None;
    each_data_record(input, |_, record| {
        if let Some(cell) = record.fields().find(|c| has_utc_offset(c)) {
            found = Some((line_of(input, record), String::from_utf8_lossy(cell).into_owned()));
            return false;
        }
        true
    });
    found
}

/// Calls `each` with the index and record of every data row, in file order, while it
/// returns true.
fn each_data_record(input: &[u8], mut each: impl FnMut(usize, &csv::ByteRecord) -> bool) {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(input);
    let mut record = csv::ByteRecord::new();
    let mut header = true;
    let mut row = 0;
    // A record csv cannot read ends the walk: the decoder refused that input anyway.
    while reader.read_byte_record(&mut record).unwrap_or(false) {
        if std::mem::take(&mut header) || is_ignorable(&record) {
            continue;
        }
        if !each(row, &record) {
            return;
        }
        row += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_map_to_physical_lines_past_blank_lines_crlf_and_quotes() {
        let text = b"Date,Open,High,Low,Close,Volume,Note\r\n\
                     2024-01-01,1,1,1,1,1,\"2\r\n\"\r\n\
                     \r\n\
                     ,,,,,,\r\n\
                     2024-01-02,1,1,1,1,1,\r\n\
                     2024-01-03,1,1,1,1,1,\r\n\
                     Downloaded from Barchart.com as of 01-04-2024\r\n";
        assert_eq!(data_row_lines(text, &[2, 0, 1, 3]), vec![Some(7), Some(2), Some(6), None]);
        assert_eq!(data_row_lines(text, &[]), Vec::<Option<u64>>::new());
        let decoded = crate::CsvCodec.decode_bytes(text, None).unwrap();
        assert_eq!(decoded.len(), 3, "the decoder reads the same rows");
    }

    #[test]
    fn the_first_offset_is_found_with_its_line() {
        let naive = b"timestamp,open,high,low,close,volume\n2024-01-01 10:00:00,1,1,1,1,-1\n";
        assert_eq!(first_utc_offset(naive), None);
        let aware =
            b"timestamp,open,high,low,close,volume\n2024-01-01,1,1,1,1,1\n\n2024-01-02T00:00:00-05:00,1,1,1,1,1\n";
        assert_eq!(first_utc_offset(aware), Some((4, "2024-01-02T00:00:00-05:00".to_string())));
    }
}
