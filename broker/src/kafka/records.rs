//! Kafka's v2 records: the part of a record batch after its 61-byte header, parsed and
//! encoded here rather than through the codec crate, whose `Record` keeps headers in a map
//! (a repeated key would keep only its last value) and sizes that map by the declared count.
//!
//! ```text
//!  record := length           varint   bytes after this field
//!            attributes       int8     unused, 0
//!            timestamp_delta  varlong  from the batch's first timestamp
//!            offset_delta     varint   from the batch's base offset
//!            key_length       varint   -1 = null key
//!            key              bytes
//!            value_length     varint   -1 = null value (a tombstone)
//!            value            bytes
//!            header_count     varint
//!            header_count × { key_length varint, key (UTF-8),
//!                             value_length varint (-1 = null value), value }
//! ```
//!
//! varint/varlong: zigzag, then base-128 groups low first with the high bit as continuation
//! (protobuf's), at most 5 / 10 bytes.
//!
//! Untrusted input: every length is checked against the bytes that remain before anything is
//! sliced, nothing is allocated by a length or a count (headers go one by one, as they are
//! parsed, into a vector the caller reuses), and a record must end exactly where its length
//! says. Errors are [`RecordError`]s; nothing here panics on input.

use bytes::{BufMut, BytesMut};

/// Why Kafka records did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes ended inside a field.
    #[error("records end inside a record's {what}")]
    Truncated {
        /// The field.
        what: &'static str,
    },
    /// A varint ran past its longest form.
    #[error("a record's {what} is a varint longer than {bytes_max} bytes")]
    VarintTooLong {
        /// The field.
        what: &'static str,
        /// 5 for a varint, 10 for a varlong.
        bytes_max: usize,
    },
    /// A length below -1 (or below 0 where null is not allowed).
    #[error("a record's {what} is {length}")]
    BadLength {
        /// The field.
        what: &'static str,
        /// What it said.
        length: i32,
    },
    /// A header key is not UTF-8.
    #[error("a record header key is not UTF-8")]
    HeaderKeyNotUtf8,
    /// The fields of a record did not end where its length said.
    #[error("a record of {length} bytes has {left} bytes after its headers")]
    LengthMismatch {
        /// The record's length field.
        length: usize,
        /// Bytes left over.
        left: usize,
    },
}

/// One parsed record; its headers are in the vector given to [`Records::next_record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// From the batch's first timestamp.
    pub timestamp_delta_ms: i64,
    /// From the batch's base offset.
    pub offset_delta: i32,
    /// `None` is a null key (not an empty one).
    pub key: Option<&'a [u8]>,
    /// `None` is a tombstone.
    pub value: Option<&'a [u8]>,
}

/// A header as parsed: its key and its value, `None` when null.
pub type Header<'a> = (&'a str, Option<&'a [u8]>);

/// Reads records one at a time from a batch's (decompressed) records section.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    /// The records in `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Records { rest: bytes }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The next record, its headers replacing the contents of `headers`; `None` at the end.
    pub fn next_record(
        &mut self,
        headers: &mut Vec<Header<'a>>,
    ) -> Result<Option<Record<'a>>, RecordError> {
        headers.clear();
        if self.rest.is_empty() {
            return Ok(None);
        }
        let length = varint(&mut self.rest, "length")?;
        let length = usize::try_from(length)
            .map_err(|_| RecordError::BadLength { what: "length", length })?;
        let mut r = take(&mut self.rest, length, "body")?;
        take(&mut r, 1, "attributes")?;
        let timestamp_delta_ms = varlong(&mut r, "timestamp delta")?;
        let offset_delta = varint(&mut r, "offset delta")?;
        let key = nullable_bytes(&mut r, "key")?;
        let value = nullable_bytes(&mut r, "value")?;
        let count = varint(&mut r, "header count")?;
        if count < 0 {
            return Err(RecordError::BadLength { what: "header count", length: count });
        }
        for _ in 0..count {
            // Each header takes at least two bytes, so the loop ends with the bytes even if
            // the count lies; nothing is reserved by it.
            let key_length = varint(&mut r, "header key length")?;
            let key_length = usize::try_from(key_length).map_err(|_| RecordError::BadLength {
                what: "header key length",
                length: key_length,
            })?;
            let key = take(&mut r, key_length, "header key")?;
            let key = std::str::from_utf8(key).map_err(|_| RecordError::HeaderKeyNotUtf8)?;
            let value = nullable_bytes(&mut r, "header value")?;
            headers.push((key, value));
        }
        if !r.is_empty() {
            return Err(RecordError::LengthMismatch { length, left: r.len() });
        }
        Ok(Some(Record { timestamp_delta_ms, offset_delta, key, value }))
    }
}

fn take<'a>(bytes: &mut &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
    let (head, tail) = bytes.split_at_checked(n).ok_or(RecordError::Truncated { what })?;
    *bytes = tail;
    Ok(head)
}

/// A length-prefixed byte string whose length -1 means null.
fn nullable_bytes<'a>(
    bytes: &mut &'a [u8],
    what: &'static str,
) -> Result<Option<&'a [u8]>, RecordError> {
    match varint(bytes, what)? {
        -1 => Ok(None),
        length if length < -1 => Err(RecordError::BadLength { what, length }),
        length => take(bytes, length as usize, what).map(Some),
    }
}

/// An unsigned base-128 number of at most `bytes_max` groups.
fn unsigned(bytes: &mut &[u8], what: &'static str, bytes_max: usize) -> Result<u64, RecordError> {
    let mut n = 0u64;
    for i in 0..bytes_max {
        let (&b, rest) = bytes.split_first().ok_or(RecordError::Truncated { what })?;
        *bytes = rest;
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err(RecordError::VarintTooLong { what, bytes_max })
}

fn varint(bytes: &mut &[u8], what: &'static str) -> Result<i32, RecordError> {
    // Five groups carry 35 bits; Kafka keeps the low 32 (as its Java reader does).
    let n = unsigned(bytes, what, 5)? as u32;
    Ok((n >> 1) as i32 ^ -((n & 1) as i32))
}

fn varlong(bytes: &mut &[u8], what: &'static str) -> Result<i64, RecordError> {
    let n = unsigned(bytes, what, 10)?;
    Ok((n >> 1) as i64 ^ -((n & 1) as i64))
}

fn put_unsigned(out: &mut BytesMut, mut n: u64) {
    while n >= 0x80 {
        out.put_u8((n as u8) | 0x80);
        n >>= 7;
    }
    out.put_u8(n as u8);
}

fn unsigned_len(n: u64) -> usize {
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

fn zigzag32(n: i32) -> u64 {
    u64::from(((n << 1) ^ (n >> 31)) as u32)
}

fn zigzag64(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

/// Bytes of a length-prefixed, nullable byte string.
fn nullable_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => unsigned_len(zigzag32(-1)),
        Some(b) => unsigned_len(zigzag32(b.len() as i32)) + b.len(),
    }
}

fn put_nullable(out: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => put_unsigned(out, zigzag32(-1)),
        Some(b) => {
            put_unsigned(out, zigzag32(b.len() as i32));
            out.put_slice(b);
        }
    }
}

/// Appends one record to `out`. Keys, values and headers must each be shorter than 2 GiB
/// (they come from a native batch, at most 16 MiB).
pub fn put_record<'h>(
    out: &mut BytesMut,
    record: &Record<'_>,
    headers: impl ExactSizeIterator<Item = Header<'h>> + Clone,
) {
    let count = headers.len() as i32;
    let mut length = 1
        + unsigned_len(zigzag64(record.timestamp_delta_ms))
        + unsigned_len(zigzag32(record.offset_delta))
        + nullable_len(record.key)
        + nullable_len(record.value)
        + unsigned_len(zigzag32(count));
    for (key, value) in headers.clone() {
        length += nullable_len(Some(key.as_bytes())) + nullable_len(value);
    }
    out.reserve(unsigned_len(zigzag32(length as i32)) + length);
    let start = out.len();
    put_unsigned(out, zigzag32(length as i32));
    let body = out.len();
    out.put_i8(0);
    put_unsigned(out, zigzag64(record.timestamp_delta_ms));
    put_unsigned(out, zigzag32(record.offset_delta));
    put_nullable(out, record.key);
    put_nullable(out, record.value);
    put_unsigned(out, zigzag32(count));
    for (key, value) in headers {
        put_nullable(out, Some(key.as_bytes()));
        put_nullable(out, value);
    }
    assert_eq!(out.len() - body, length, "record at {start} encoded to its computed length");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(record: &Record<'_>, headers: &[Header<'_>]) -> BytesMut {
        let mut out = BytesMut::new();
        put_record(&mut out, record, headers.iter().copied());
        out
    }

    #[test]
    fn varints_match_kafkas_zigzag_encoding() {
        // (value, bytes) pairs from Kafka's ByteUtilsTest.
        for (n, want) in [
            (0i32, &[0x00][..]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ] {
            let mut out = BytesMut::new();
            put_unsigned(&mut out, zigzag32(n));
            assert_eq!(&out[..], want, "{n}");
            assert_eq!(unsigned_len(zigzag32(n)), want.len());
            assert_eq!(varint(&mut &want[..], "n"), Ok(n));
        }
        for n in [0i64, -1, 1, i64::MAX, i64::MIN, 1 << 40, -(1 << 40)] {
            let mut out = BytesMut::new();
            put_unsigned(&mut out, zigzag64(n));
            assert_eq!(out.len(), unsigned_len(zigzag64(n)));
            assert_eq!(varlong(&mut &out[..], "n"), Ok(n));
        }
        let too_long = [0x80u8; 6];
        assert!(matches!(varint(&mut &too_long[..], "n"), Err(RecordError::VarintTooLong { .. })));
    }

    #[test]
    fn records_round_trip_with_repeated_keys_and_null_values() {
        let headers: Vec<Header<'_>> =
            vec![("k", Some(b"1")), ("k", None), ("k", Some(b"")), ("", None), ("é", Some(b"x"))];
        let record =
            Record { timestamp_delta_ms: -5, offset_delta: 3, key: None, value: Some(b"") };
        let mut bytes = encode(&record, &headers);
        let tombstone =
            Record { timestamp_delta_ms: 1 << 33, offset_delta: 4, key: Some(b""), value: None };
        bytes.extend_from_slice(&encode(&tombstone, &[]));
        let mut records = Records::new(&bytes);
        let mut got = Vec::new();
        assert_eq!(records.next_record(&mut got), Ok(Some(record)));
        assert_eq!(got, headers);
        assert_eq!(records.next_record(&mut got), Ok(Some(tombstone)));
        assert!(got.is_empty());
        assert_eq!(records.next_record(&mut got), Ok(None));
    }

    #[test]
    fn bad_records_are_errors_not_panics_or_allocations() {
        let record =
            Record { timestamp_delta_ms: 0, offset_delta: 0, key: Some(b"k"), value: Some(b"v") };
        let good = encode(&record, &[("h", Some(b"v"))]);
        let mut headers = Vec::new();
        // Every truncation is an error.
        for cut in 0..good.len() {
            let mut r = Records::new(&good[..cut]);
            let got = r.next_record(&mut headers);
            assert!(cut == 0 && got == Ok(None) || got.is_err(), "cut {cut}: {got:?}");
        }
        // A header count of i32::MAX with no headers behind it: an error, nothing reserved.
        let mut lying = BytesMut::new();
        let body_len = 1 + 1 + 1 + 1 + 1 + 5;
        put_unsigned(&mut lying, zigzag32(body_len));
        lying.put_slice(&[0, 0, 0, 1, 1]); // attributes, ts 0, offset 0, key null, value null
        put_unsigned(&mut lying, zigzag32(i32::MAX));
        let err = Records::new(&lying).next_record(&mut headers).unwrap_err();
        assert_eq!(err, RecordError::Truncated { what: "header key length" });
        assert!(headers.capacity() < 16, "reserved {}", headers.capacity());
        // Lengths below -1, a length longer than the bytes, bytes after the headers.
        let mut bad = BytesMut::new();
        put_unsigned(&mut bad, zigzag32(4));
        bad.put_slice(&[0, 0, 0]);
        put_unsigned(&mut bad, zigzag32(-2));
        assert!(matches!(
            Records::new(&bad).next_record(&mut headers),
            Err(RecordError::BadLength { what: "key", length: -2 })
        ));
        let mut long = BytesMut::new();
        put_unsigned(&mut long, zigzag32(1 << 30));
        assert!(Records::new(&long).next_record(&mut headers).is_err());
        let mut extra = good.clone();
        extra[0] += 2; // length + 1 (zigzag), one more byte behind the headers
        extra.put_u8(0);
        assert!(matches!(
            Records::new(&extra).next_record(&mut headers),
            Err(RecordError::LengthMismatch { left: 1, .. })
        ));
        let mut not_utf8 = encode(&record, &[("\u{7f}", None)]);
        let at = not_utf8.len() - 2;
        not_utf8[at] = 0xff;
        assert_eq!(
            Records::new(&not_utf8).next_record(&mut headers),
            Err(RecordError::HeaderKeyNotUtf8)
        );
    }
}
