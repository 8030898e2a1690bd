//! f64 <-> text with exact round trips.

/// 2^53: below it every integral f64 is an exact i64 and prints the same as an integer.
const EXACT_INT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Appends `v` in the shortest text that parses back to the same bits and that every
/// reader types as a float.
///
/// Integral values below 2^53 print as integers with `.0` (`1500.0`, `-0.0` for negative
/// zero): without the point pandas and polars read a column of whole numbers (volumes,
/// round futures prices) as int64, where the Parquet copy and every other reader give
/// float64. Values that are exactly a decimal of at most 8 fraction digits print in plain
/// form (`4500.25`, `0.00000871`); everything else in ryu's shortest round-trip form
/// (`1e300`, `1e-9`, `0.3333333333333333`, `1e16`). NaN, +inf and -inf print as `NaN`,
/// `inf` and `-inf`; a NaN's sign and payload are not kept. The same value always gives
/// the same text.
pub fn write_f64(v: f64, out: &mut Vec<u8>) {
    if v.is_nan() || v.abs() >= EXACT_INT_LIMIT {
        return write_f64_general(v, out);
    }
    // Below 2^53 the conversion truncates exactly, so this is `v == v.trunc()` without a
    // call to libm's `trunc`; integers (volumes) are printed here as the general path
    // prints them, without its checks.
    if (v as i64) as f64 == v {
        return write_integral(v, out);
    }
    match fixed_grid_decimal(v) {
        Grid::Decimal { mantissa, fraction_digits } => push_grid_decimal(v < 0.0, mantissa, fraction_digits, out),
        Grid::NotShort => write_ryu(v, out),
        Grid::Unknown => write_f64_general(v, out),
    }
}

/// The path [`write_f64`] had before its fast path, and still takes for what the fast path
/// does not decide; the fast path must print exactly what this prints.
fn write_f64_general(v: f64, out: &mut Vec<u8>) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"inf" } else { b"-inf" });
    } else if v == v.trunc() && v.abs() < EXACT_INT_LIMIT {
        write_integral(v, out);
    } else if !write_short_decimal(v, out) {
        write_ryu(v, out);
    }
}

/// An integral `v` with `|v| < 2^53`: its integer digits and `.0`.
#[inline]
fn write_integral(v: f64, out: &mut Vec<u8>) {
    if v == 0.0 && v.is_sign_negative() {
        return out.extend_from_slice(b"-0.0");
    }
    // Exact: |v| < 2^53 and integral.
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(v as i64).as_bytes());
    out.extend_from_slice(b".0");
}

fn write_ryu(v: f64, out: &mut Vec<u8>) {
    let mut buf = ryu::Buffer::new();
    out.extend_from_slice(buf.format_finite(v).as_bytes());
}

/// What [`fixed_grid_decimal`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grid {
    /// `|v|` is the double nearest to `mantissa / 10^fraction_digits`, in lowest terms.
    Decimal { mantissa: u64, fraction_digits: usize },
    /// No decimal of at most 8 fraction digits gives `v`: ryu's form is the answer.
    NotShort,
    /// Not decided here.
    Unknown,
}

/// Below 2^23 the gap between doubles is at most 2^-30 < 10^-8 / 2, and below 2^30 at most
/// 2^-23 < 10^-6 / 2.
const GRID8_LIMIT: f64 = 8_388_608.0;
const GRID6_LIMIT: f64 = 1_073_741_824.0;

/// The fast path of [`write_short_decimal`] for a finite, non-integral `v`: one multiply, one
/// division and a few integer steps instead of a loop over 1 to 8 digits.
///
/// Why the answer is the loop's own, byte for byte. Take `|v| < 2^23` and the grid `10^8`
/// (`2^23 <= |v| < 2^30` and `10^6` is the same argument):
/// - `m = round(|v| * 10^8)` is an integer below 2^50, exact in f64, and `m / 10^8 == |v|`
///   in f64 says that `|v|` is the double nearest to the decimal `m / 10^8` (one correctly
///   rounded division of exact operands). Trailing zeros stripped, that is `m' / 10^k`.
/// - No decimal with fewer than `k` (or any other decimal with at most 8) fraction digits
///   rounds to `|v|`: two such decimals differ by at least 10^-8, and two values that round
///   to the same double differ by at most one gap between doubles, below 10^-8 here. So the
///   loop rejects every `j < k` and, at `k`, finds `|v| * 10^k` within `m' * 2^-52 < 1/4`
///   of `m'` (two roundings, `m' < 2^50`): its rounding gives `m'`, its closeness check
///   passes and its division check is the one above. It prints `m'` with `k` digits.
/// - When `m / 10^8 != |v|`, no decimal of at most 8 fraction digits rounds to `|v|` (if
///   `d` did, `|v| * 10^8` would be within 1/4 of `d * 10^8`, which `round` would find), so
///   the loop would find nothing either and ryu decides. On the `10^6` grid a failure says
///   nothing about 7 or 8 digits, so the loop decides.
fn fixed_grid_decimal(v: f64) -> Grid {
    let a = v.abs();
    let (scale, digits) = if a < GRID8_LIMIT {
        (1e8, 8)
    } else if a < GRID6_LIMIT {
        (1e6, 6)
    } else {
        return Grid::Unknown;
    };
    // Exact: below 2^50, so adding 0.5 and truncating is rounding (half up). Signed
    // conversions are single instructions on x86-64, unsigned ones are not.
    let m = (a * scale + 0.5) as i64;
    if m == 0 || m as f64 / scale != a {
        return if digits == 8 { Grid::NotShort } else { Grid::Unknown };
    }
    // Constant divisors throughout (a branch per grid, the strip steps unrolled): the
    // compiler turns each into a multiply and a shift, where a divisor it cannot see is a
    // hardware division, and those were most of this function's time.
    let m = m.unsigned_abs();
    let integral = if digits == 8 { m.is_multiple_of(100_000_000) } else { m.is_multiple_of(1_000_000) };
    if integral {
        // An integer: the caller prints those before asking.
        return Grid::Unknown;
    }
    // At most `digits - 1` <= 7 trailing zeros: strip 4, 2 and 1 (three steps, not seven).
    let (mut mantissa, mut fraction_digits) = (m, digits);
    if mantissa.is_multiple_of(10_000) {
        mantissa /= 10_000;
        fraction_digits -= 4;
    }
    if mantissa.is_multiple_of(100) {
        mantissa /= 100;
        fraction_digits -= 2;
    }
    if mantissa.is_multiple_of(10) {
        mantissa /= 10;
        fraction_digits -= 1;
    }
    Grid::Decimal { mantissa, fraction_digits }
}

/// Powers of ten up to the most fraction digits the fast path tries; all exact in f64.
const POW10: [f64; 9] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8];

/// Writes `v` as `m / 10^k` with the fewest fraction digits `k` (1 to 8) that give back
/// exactly `v`; false when there is none (then ryu decides).
///
/// Prices are mostly short decimals (`4500.25`, `20.559999`), and this is several times
/// cheaper than ryu for them. Exactness: `m` and `10^k` are exact f64s, so `m / 10^k` in
/// f64 is the correctly rounded quotient, the same value a correct parser gives for the
/// text; the check `m / 10^k == v` is therefore the round-trip guarantee itself.
fn write_short_decimal(v: f64, out: &mut Vec<u8>) -> bool {
    for (k, &p) in POW10.iter().enumerate().skip(1) {
        let scaled = v * p;
        // `v` is finite, so `scaled` is finite or infinite, never NaN.
        if scaled.abs() >= EXACT_INT_LIMIT {
            return false;
        }
        let m = scaled.round();
        // Cheap filter before the division: v * 10^k is within a few ulps of an integer.
        if (scaled - m).abs() > scaled.abs() * (4.0 * f64::EPSILON) || m / p != v || m == 0.0 {
            continue;
        }
        // Exact: |m| < 2^53 and integral.
        push_decimal(v < 0.0, (m as i64).unsigned_abs(), k, out);
        return true;
    }
    false
}

/// [`push_decimal`] for what [`fixed_grid_decimal`] finds (`m < 2^50`, `1 <= k <= 8`):
/// the digits are laid out right to left in a stack buffer and appended with one copy,
/// instead of three small copies and a formatter call per number.
#[inline]
fn push_grid_decimal(negative: bool, mut m: u64, k: usize, out: &mut Vec<u8>) {
    // At most 1 + 16 + 1 + 8 bytes: `m < 2^50` has at most 16 digits.
    let mut buf = [0u8; 32];
    let mut i = buf.len();
    // Two digits per division by 100, as `itoa` does: half the divisions of one at a time.
    let pair = |buf: &mut [u8; 32], i: &mut usize, two: u64| {
        let d = two as usize * 2;
        *i -= 2;
        buf[*i..*i + 2].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
    };
    let mut fraction = k;
    while fraction >= 2 {
        pair(&mut buf, &mut i, m % 100);
        m /= 100;
        fraction -= 2;
    }
    if fraction == 1 {
        i -= 1;
        buf[i] = b'0' + (m % 10) as u8;
        m /= 10;
    }
    i -= 1;
    buf[i] = b'.';
    while m >= 100 {
        pair(&mut buf, &mut i, m % 100);
        m /= 100;
    }
    if m >= 10 {
        pair(&mut buf, &mut i, m);
    } else {
        i -= 1;
        buf[i] = b'0' + m as u8;
    }
    if negative {
        i -= 1;
        buf[i] = b'-';
    }
    out.extend_from_slice(&buf[i..]);
}

/// "00" to "99", two bytes each.
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// Writes `[-]m / 10^k` in plain decimal form with exactly `k` fraction digits.
fn push_decimal(negative: bool, m: u64, k: usize, out: &mut Vec<u8>) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(m).as_bytes();
    if negative {
        out.push(b'-');
    }
    match digits.len().checked_sub(k) {
        Some(int_len) if int_len > 0 => {
            let (int, frac) = digits.split_at(int_len);
            out.extend_from_slice(int);
            out.push(b'.');
            out.extend_from_slice(frac);
        }
        _ => {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', k.saturating_sub(digits.len())));
            out.extend_from_slice(digits);
        }
    }
}

/// Parses a number cell (surrounding ASCII spaces ignored): decimal or exponent form,
/// an optional sign, `NaN`/`inf`/`infinity` in any case. `None` when it is not a number.
#[inline]
pub fn parse_f64(text: &[u8]) -> Option<f64> {
    let s = text.trim_ascii();
    if let Some(v) = parse_plain_decimal(s) {
        return Some(v);
    }
    parse_f64_general(s)
}

/// Everything but the plain decimals, out of line so that the hot path inlines small.
#[inline(never)]
fn parse_f64_general(s: &[u8]) -> Option<f64> {
    match fast_float2::parse::<f64, _>(s) {
        Ok(v) => Some(v),
        // Quoted thousands separators (`"24,212"`) are common in spreadsheet exports.
        Err(_) if has_thousands_groups(s) => {
            let digits: Vec<u8> = s.iter().copied().filter(|&b| b != b',').collect();
            fast_float2::parse::<f64, _>(&digits).ok()
        }
        Err(_) => None,
    }
}

/// Powers of ten that are exact in f64 (10^22 is the last).
const EXACT_POW10: [f64; 16] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];

/// `[-]digits[.digits]` with at most 15 digits, the shape of nearly every price and volume:
/// the digits form an exact integer `m` < 2^53 and `m / 10^k` is one correctly rounded
/// division (Clinger's fast path), so this is exact and several times cheaper than a general
/// parser. Anything else returns `None` for the general parser.
#[inline]
fn parse_plain_decimal(s: &[u8]) -> Option<f64> {
    let (negative, body) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut point: Option<usize> = None;
    for &b in body {
        let d = b.wrapping_sub(b'0');
        if d < 10 {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
            digits += 1;
        } else if b == b'.' && point.is_none() {
            point = Some(digits);
        } else {
            return None;
        }
    }
    if digits == 0 || digits > 15 {
        return None;
    }
    let scale = EXACT_POW10.get(digits - point.unwrap_or(digits))?;
    // Exact: mantissa < 10^15 < 2^53 (and the signed conversion is the cheaper instruction).
    let v = mantissa as i64 as f64 / scale;
    Some(if negative { -v } else { v })
}

/// 10^0 to 10^19, all exact in f64 (up to 10^22 are).
const POW10_19: [f64; 20] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19];

/// Reads `-?d+(\.d+)?` (at most 19 digits, forming an integer of at most 2^53) at the start
/// of `s`, for the decoder's one-pass row parser: the value and the count of bytes read, or
/// `None` when the text there is not that shape.
///
/// The value is bit for bit what [`parse_f64`] gives for the bytes read: the digits form an
/// integer `m <= 2^53` and the fraction digits a `k <= 19`, so `m` and `10^k` are exact and
/// `m / 10^k` is one correctly rounded division (Clinger's fast path). Up to 15 digits that
/// is `parse_plain_decimal`'s very computation; from 16, the correctly rounded value of the
/// decimal that fast-float2 returns. The sign is applied after, as both do (`-0` is -0.0).
/// The caller checks that the byte after is a field end.
#[inline]
pub(crate) fn decimal_prefix(s: &[u8]) -> Option<(f64, usize)> {
    let negative = s.first() == Some(&b'-');
    let start = usize::from(negative);
    let mut i = start;
    let mut m: u64 = 0;
    // A word-at-a-time (SWAR) digit reader measured slower here: fields are short.
    while let Some(d) = s.get(i).map(|b| b.wrapping_sub(b'0')).filter(|&d| d < 10) {
        m = m.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    let int_digits = i - start;
    let mut k = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let frac_start = i;
        while let Some(d) = s.get(i).map(|b| b.wrapping_sub(b'0')).filter(|&d| d < 10) {
            m = m.wrapping_mul(10).wrapping_add(u64::from(d));
            i += 1;
        }
        k = i - frac_start;
        if k == 0 {
            return None;
        }
    }
    // 19 digits cannot wrap a u64; more may have, so they are refused before `m` is trusted.
    if int_digits == 0 || int_digits + k > 19 || m > 1 << 53 {
        return None;
    }
    // Exact: m <= 2^53 (and the signed conversion is the cheaper instruction).
    let v = m as i64 as f64 / POW10_19.get(k)?;
    Some((if negative { -v } else { v }, i))
}

/// `[sign]d{1,3}(,ddd)+[.…]`: commas only as strict thousands separators, so a decimal
/// comma such as `1,5` is never silently read as 15.
fn has_thousands_groups(s: &[u8]) -> bool {
    let unsigned = s.strip_prefix(b"-").or_else(|| s.strip_prefix(b"+")).unwrap_or(s);
    let int_len = unsigned.iter().position(|&b| b == b'.' || b == b'e' || b == b'E').unwrap_or(unsigned.len());
    let Some(int_part) = unsigned.get(..int_len) else { return false };
    let mut groups = int_part.split(|&b| b == b',');
    let first_ok = groups.next().is_some_and(|g| (1..=3).contains(&g.len()) && g.iter().all(u8::is_ascii_digit));
    let mut rest = 0;
    for g in groups {
        if g.len() != 3 || !g.iter().all(u8::is_ascii_digit) {
            return false;
        }
        rest += 1;
    }
    first_ok && rest > 0 && !unsigned.get(int_len..).unwrap_or_default().contains(&b',')
}

/// Cells that mean "no value" in an optional column (pandas' default NA spellings that
/// are not also float spellings: `NaN` stays a value so that it round-trips).
const MISSING_TOKENS: [&[u8]; 9] = [b"", b"N/A", b"n/a", b"NA", b"<NA>", b"#N/A", b"NULL", b"null", b"None"];

/// Whether a cell is one of the spellings of "no value" (an empty cell among them).
pub(crate) fn is_missing(text: &[u8]) -> bool {
    MISSING_TOKENS.contains(&text.trim_ascii())
}

/// Why an extra-column cell was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotANumber;

/// Parses a cell of an optional column: a missing marker gives `None`. Barchart's
/// `%Chg` (`+5.40%`, kept as 5.4) and `unch` (0) in change columns are accepted too.
pub(crate) fn parse_extra(text: &[u8]) -> Result<Option<f64>, NotANumber> {
    let s = text.trim_ascii();
    if MISSING_TOKENS.contains(&s) {
        return Ok(None);
    }
    if let Some(v) = parse_f64(s) {
        return Ok(Some(v));
    }
    if s.eq_ignore_ascii_case(b"unch") {
        return Ok(Some(0.0));
    }
    match s.strip_suffix(b"%") {
        Some(pct) if !pct.is_empty() => parse_f64(pct).map(Some).ok_or(NotANumber),
        _ => Err(NotANumber),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: f64) -> String {
        let mut out = Vec::new();
        write_f64(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_shortest_exact_forms() {
        assert_eq!(text(1500.0), "1500.0");
        assert_eq!(text(100.0), "100.0");
        assert_eq!(text(-3.0), "-3.0");
        assert_eq!(text(0.0), "0.0");
        assert_eq!(text(-0.0), "-0.0");
        assert_eq!(text(0.00000871), "0.00000871");
        assert_eq!(text(0.000000001), "1e-9");
        assert_eq!(text(4500.25), "4500.25");
        assert_eq!(text(-0.05), "-0.05");
        assert_eq!(text(0.3333333333333333), "0.3333333333333333");
        assert_eq!(text(123456.12345678), "123456.12345678");
        assert_eq!(text(1e300), "1e300");
        assert_eq!(text(0.1), "0.1");
        assert_eq!(text(20.559999), "20.559999");
        assert_eq!(text(f64::NAN), "NaN");
        assert_eq!(text(f64::INFINITY), "inf");
        assert_eq!(text(f64::NEG_INFINITY), "-inf");
        assert_eq!(text(9_007_199_254_740_991.0), "9007199254740991.0");
        assert_eq!(text(1e16), "1e16");
        assert_eq!(parse_f64(text(9_007_199_254_740_992.0).as_bytes()), Some(9_007_199_254_740_992.0));
        assert_eq!(text(f64::MIN_POSITIVE / 2.0).parse::<f64>().unwrap(), f64::MIN_POSITIVE / 2.0);
    }

    #[test]
    fn short_decimals_are_as_short_as_ryu() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let k = (state % 9) as i32;
            let v = (state >> 20) as f64 / 10f64.powi(k) * if state & 1 == 0 { 1.0 } else { -1.0 };
            let ours = text(v);
            assert_eq!(ours.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{ours}");
            let theirs = ryu::Buffer::new().format(v).to_string();
            assert!(significant(&ours).len() <= significant(&theirs).len(), "{ours} longer than ryu's {theirs}");
        }
    }

    /// The significant digits of a decimal text: no sign, point, exponent or padding zeros.
    fn significant(s: &str) -> String {
        let mantissa = s.split(['e', 'E']).next().unwrap_or_default();
        let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
        digits.trim_matches('0').to_string()
    }

    fn general(v: f64) -> String {
        let mut out = Vec::new();
        write_f64_general(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// The double nearest to `[-]m * 10^e`, as a correct parser reads the text.
    fn decimal(negative: bool, m: u64, e: i32) -> f64 {
        format!("{}{m}e{e}", if negative { "-" } else { "" }).parse().unwrap()
    }

    #[test]
    fn digit_pairs_are_00_to_99() {
        for n in 0..100usize {
            assert_eq!(&DIGIT_PAIRS[2 * n..2 * n + 2], format!("{n:02}").as_bytes());
        }
    }

    #[test]
    fn fast_path_edges_print_as_the_general_path() {
        let mut values = vec![0.0, -0.0, 26188.0, -26188.0, 0.5, -0.5, 1e-8, 1.5e-8, 0.00000871, 0.1, 0.3, 1.0 / 3.0];
        for limit in [GRID8_LIMIT, GRID6_LIMIT, EXACT_INT_LIMIT, 2f64.powi(50), 2f64.powi(52)] {
            let mut below = limit;
            let mut above = limit;
            for _ in 0..64 {
                below = below.next_down();
                above = above.next_up();
                values.extend([below, above, -below, -above, below - 0.5, above + 0.25, limit - 1e-6, limit + 1e-6]);
            }
        }
        for k in 1..=9 {
            for m in [1u64, 5, 9, 99_999_999, 838_860_799_999_999, 1_073_741_823_999_999] {
                values.extend([decimal(false, m, -k), decimal(true, m, -k)]);
            }
        }
        values.extend([f64::MIN_POSITIVE, 5e-324, f64::MAX, 1e300, 1e-300, 123456.12345678, 20.559999]);
        // Integers and decimals whose digit count steps at a power of ten.
        for p in 0..16 {
            let t = 10f64.powi(p);
            values.extend([t, t - 1.0, -t, 1.0 - t, t + 0.5, t - 0.5, -(t + 0.25), t / 1e8, (t - 1.0) / 1e8]);
        }
        for v in values {
            assert_eq!(text(v), general(v), "{v:e} ({:#x})", v.to_bits());
        }
    }

    #[test]
    fn parses_what_it_writes_bit_exactly() {
        for v in [0.0, -0.0, 1.0, -1.5, 0.00000871, 1e300, -1e-300, 5e-324, f64::MAX, f64::MIN, 1.0 / 3.0] {
            assert_eq!(parse_f64(text(v).as_bytes()).map(f64::to_bits), Some(v.to_bits()), "{v}");
        }
        assert!(parse_f64(b"NaN").unwrap().is_nan());
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"inf"), Some(f64::INFINITY));
    }

    #[test]
    fn plain_decimal_path_agrees_with_the_std_parser() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let digits = (state % 16) as usize + 1;
            let mut text: String = format!("{:016}", state >> 4).chars().take(digits).collect();
            let point = (state >> 60) as usize % (digits + 1);
            text.insert(point, '.');
            if state & 1 == 1 {
                text.insert(0, '-');
            }
            let expected = text.parse::<f64>().ok().map(f64::to_bits);
            assert_eq!(parse_f64(text.as_bytes()).map(f64::to_bits), expected, "{text}");
        }
        assert_eq!(parse_plain_decimal(b"1234567890123456"), None, "16 digits go to the general parser");
        assert_eq!(parse_f64(b"1234567890123456.7"), Some(1_234_567_890_123_456.7));
        assert_eq!(parse_plain_decimal(b"-0").map(f64::to_bits), Some((-0.0f64).to_bits()));
        assert_eq!(parse_plain_decimal(b"."), None);
        assert_eq!(parse_plain_decimal(b"1.2.3"), None);
    }

    #[test]
    fn parses_tolerant_forms() {
        assert_eq!(parse_f64(b" 1.5 "), Some(1.5));
        assert_eq!(parse_f64(b"+0.72"), Some(0.72));
        assert_eq!(parse_f64(b"1E3"), Some(1000.0));
        assert_eq!(parse_f64(b"24,212"), Some(24212.0));
        assert_eq!(parse_f64(b"1,234,567.5"), Some(1_234_567.5));
        assert_eq!(parse_f64(b"-1,000"), Some(-1000.0));
        for bad in [&b""[..], b"-", b"1.5x", b"abc", b",", b"1,", b",1", b"1 2", b"\xff", b"1,5", b"1,2345", b"1.000,5"]
        {
            assert_eq!(parse_f64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn extras_know_missing_markers_and_barchart_forms() {
        assert_eq!(parse_extra(b""), Ok(None));
        assert_eq!(parse_extra(b"  "), Ok(None));
        assert_eq!(parse_extra(b"N/A"), Ok(None));
        assert!(parse_extra(b"NaN").unwrap().unwrap().is_nan());
        assert_eq!(parse_extra(b"+5.40%"), Ok(Some(5.4)));
        assert_eq!(parse_extra(b"unch"), Ok(Some(0.0)));
        assert_eq!(parse_extra(b"%"), Err(NotANumber));
        assert_eq!(parse_extra(b"abc"), Err(NotANumber));
    }

    /// Price-like values: a decimal of up to 10 fraction digits and up to 16 significant
    /// digits, so that exact short decimals, near misses and values beyond the grids all occur.
    fn price_like() -> impl proptest::strategy::Strategy<Value = f64> {
        use proptest::prelude::*;
        (any::<bool>(), 0u64..10_000_000_000_000_000, 0i32..=10, 0u32..17).prop_map(|(negative, m, k, keep)| {
            let m = m % 10u64.pow(keep);
            decimal(negative, m, -k)
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 20_000, ..Default::default() })]

        #[test]
        fn fast_path_prints_as_the_general_path_for_any_double(bits in proptest::prelude::any::<u64>()) {
            let v = f64::from_bits(bits);
            proptest::prop_assert_eq!(text(v), general(v));
        }

        #[test]
        fn fast_path_prints_as_the_general_path_for_price_like_decimals(v in price_like()) {
            proptest::prop_assert_eq!(text(v), general(v));
        }

        #[test]
        fn fast_path_prints_as_the_general_path_at_any_scale(
            negative in proptest::prelude::any::<bool>(),
            m in 0u64..100_000_000_000,
            e in -40i32..=25,
        ) {
            let v = decimal(negative, m, e);
            proptest::prop_assert_eq!(text(v), general(v));
            let (up, down) = (v.next_up(), v.next_down());
            proptest::prop_assert_eq!(text(up), general(up));
            proptest::prop_assert_eq!(text(down), general(down));
        }
    }

    /// `[-]int[.frac]`, or `[-]int.` when `frac` is `Some("")`.
    fn decimal_text(negative: bool, int: &str, frac: Option<&str>) -> String {
        let sign = if negative { "-" } else { "" };
        match frac {
            Some(frac) => format!("{sign}{int}.{frac}"),
            None => format!("{sign}{int}"),
        }
    }

    /// `m` with a point `k` digits from its right (zero-padded on the left as needed).
    fn with_point(negative: bool, m: u64, k: usize) -> String {
        let digits = format!("{m:0>width$}", width = k + 1);
        let (int, frac) = digits.split_at(digits.len() - k);
        decimal_text(negative, int, (k > 0).then_some(frac))
    }

    /// Decimals of every length around the fast path's limits: 1 to 25 digits on each side,
    /// zeros, values next to 2^53, 17 to 20 significant digits, trailing zeros.
    fn decimal_strings() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let two53 = 1u64 << 53;
        prop_oneof![
            4 => (any::<bool>(), "[0-9]{1,25}", proptest::option::of("[0-9]{0,25}"))
                .prop_map(|(n, int, frac)| decimal_text(n, &int, frac.as_deref())),
            2 => (any::<bool>(), "[1-9][0-9]{0,6}", "[0-9]{0,7}", 0usize..20)
                .prop_map(|(n, int, frac, zeros)| decimal_text(n, &int, Some(&format!("{frac}{}", "0".repeat(zeros))))),
            2 => (any::<bool>(), two53 - 20..=two53 + 20, 0usize..20).prop_map(|(n, m, k)| with_point(n, m, k)),
            2 => (any::<bool>(), 10u64.pow(16)..u64::MAX, 0usize..21).prop_map(|(n, m, k)| with_point(n, m, k)),
            2 => (any::<bool>(), 0u64..1_000_000_000, 0usize..12).prop_map(|(n, m, k)| with_point(n, m, k)),
            1 => prop::sample::select(vec!["0", "-0", "0.0", "-0.0", "00", "-00.000", "0.0000000000000000000001"])
                .prop_map(str::to_string),
        ]
    }

    #[test]
    fn decimal_prefix_reads_the_common_shapes() {
        let read = |s: &str| decimal_prefix(s.as_bytes());
        assert_eq!(read("100.03,87741"), Some((100.03, 6)));
        assert_eq!(read("87741\r\n"), Some((87741.0, 5)));
        assert_eq!(read("-0").map(|(v, n)| (v.to_bits(), n)), Some(((-0.0f64).to_bits(), 2)));
        assert_eq!(read("9007199254740992"), Some((9_007_199_254_740_992.0, 16)));
        assert_eq!(read("1234.567890123456"), Some((1_234.567_890_123_456, 17)));
        assert_eq!(read("0.00000000000000001"), Some((1e-17, 19)));
        // Stops at the first byte that is not part of the shape; the caller checks it.
        assert_eq!(read("1e5"), Some((1.0, 1)));
        for declined in ["", "-", ".5", "5.", "5.,", "+1", " 1", "nan", "9007199254740993", "0.1234567890123456789"] {
            assert_eq!(read(declined), None, "{declined:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 20_000, ..Default::default() })]

        /// Declined, or exactly `parse_f64`'s bits; and accepted whenever it is 15 digits or
        /// fewer in the shape (so the fast path is not vacuous).
        #[test]
        fn decimal_prefix_is_parse_f64_or_declines(s in decimal_strings(), tail in "[,\r\n]?[0-9a-z.,]{0,9}") {
            let expected = parse_f64(s.as_bytes()).map(f64::to_bits);
            let shaped = !s.ends_with('.');
            let digits = s.bytes().filter(u8::is_ascii_digit).count();
            match decimal_prefix(s.as_bytes()) {
                Some((v, n)) => {
                    proptest::prop_assert_eq!(n, s.len());
                    proptest::prop_assert_eq!(Some(v.to_bits()), expected, "{}", s);
                }
                None => proptest::prop_assert!(!shaped || digits > 15, "declined {}", s),
            }
            // What follows never changes the value of what was read.
            let followed = format!("{s}{tail}");
            if let Some((v, n)) = decimal_prefix(followed.as_bytes()) {
                let read = followed.get(..n).unwrap_or_default();
                proptest::prop_assert_eq!(parse_f64(read.as_bytes()).map(f64::to_bits), Some(v.to_bits()), "{}", read);
            }
        }

        #[test]
        fn decimal_prefix_of_any_bytes_is_parse_f64_of_what_it_read(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![6 => b'0'..=b'9', 1 => proptest::strategy::Just(b'-'),
                    1 => proptest::strategy::Just(b'.'), 1 => proptest::prelude::any::<u8>()],
                0..30),
        ) {
            if let Some((v, n)) = decimal_prefix(&bytes) {
                let read = bytes.get(..n).unwrap_or_default();
                proptest::prop_assert_eq!(parse_f64(read).map(f64::to_bits), Some(v.to_bits()), "{:?}", read);
                // The byte after cannot continue a number that `parse_f64` would read differently.
                proptest::prop_assert!(!bytes.get(n).is_some_and(u8::is_ascii_digit));
            }
        }
    }
}
