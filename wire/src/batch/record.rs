//! The records inside a batch: the rkyv archive that follows the 80-byte header.
//!
//! The archive's root is `ArchivedVec<ArchivedRecord>`. [`Record`] and [`Header`] are the
//! owned forms (tests, tools); the builder serializes borrowed [`RecordRef`]s that archive
//! into the very same types, so it never allocates per record.

use rkyv::munge::munge;
use rkyv::rancor::{Fallible, Source};
use rkyv::ser::{Allocator, Writer};
use rkyv::string::StringResolver;
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::with::{ArchiveWith, Map, SerializeWith};
use rkyv::{Archive, Deserialize, Place, Serialize};

use crate::constants::NULL_MAP_HEADER_KEY;
use crate::with::{SliceAsVec, StrAsString};

/// One record as owned data.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Record {
    /// Offset relative to the batch's base offset (equals the record's index in the batch,
    /// except in a compacted batch, where deltas increase with gaps).
    pub offset_delta: u32,
    /// Timestamp relative to the batch's first timestamp.
    pub timestamp_delta_ms: i32,
    /// Optional key; `None` differs from an empty key.
    pub key: Option<Vec<u8>>,
    /// Value; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Application headers, in order; keys may repeat. In a batch with
    /// [`crate::constants::ATTR_NULL_HEADER_VALUES`] the last one is the null map (read
    /// through [`crate::RecordView::headers`], which hides it).
    pub headers: Vec<Header>,
}

/// One record header as owned data.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Header {
    /// UTF-8 key.
    pub key: String,
    /// Opaque value.
    pub value: Vec<u8>,
}

/// A record borrowed from the builder's arena; archives as [`ArchivedRecord`].
///
/// `Archive`/`Serialize` are written out by hand: rkyv's derive with `as = ..` cannot
/// normalize the `with` wrappers' archived types over a lifetime parameter.
pub(crate) struct RecordRef<'a> {
    pub(crate) offset_delta: u32,
    pub(crate) timestamp_delta_ms: i32,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) headers: HeaderList<'a>,
}

type OptionSliceResolver = Option<VecResolver>;

impl Archive for RecordRef<'_> {
    type Archived = ArchivedRecord;
    type Resolver = (OptionSliceResolver, OptionSliceResolver, VecResolver);

    fn resolve(&self, resolver: Self::Resolver, out: Place<ArchivedRecord>) {
        munge!(let ArchivedRecord { offset_delta, timestamp_delta_ms, key, value, headers } = out);
        self.offset_delta.resolve((), offset_delta);
        self.timestamp_delta_ms.resolve((), timestamp_delta_ms);
        Map::<SliceAsVec>::resolve_with(&self.key, resolver.0, key);
        Map::<SliceAsVec>::resolve_with(&self.value, resolver.1, value);
        HeaderListAsVec::resolve_with(&self.headers, resolver.2, headers);
    }
}

impl<S> Serialize<S> for RecordRef<'_>
where
    S: Fallible + Writer + Allocator + ?Sized,
    S::Error: Source,
{
    fn serialize(&self, s: &mut S) -> Result<Self::Resolver, S::Error> {
        Ok((
            Map::<SliceAsVec>::serialize_with(&self.key, s)?,
            Map::<SliceAsVec>::serialize_with(&self.value, s)?,
            HeaderListAsVec::serialize_with(&self.headers, s)?,
        ))
    }
}

/// A header borrowed from the builder's arena; archives as [`ArchivedHeader`].
#[derive(Clone, Copy)]
pub(crate) struct HeaderRef<'a> {
    pub(crate) key: &'a str,
    pub(crate) value: &'a [u8],
}

impl Archive for HeaderRef<'_> {
    type Archived = ArchivedHeader;
    type Resolver = (StringResolver, VecResolver);

    fn resolve(&self, resolver: Self::Resolver, out: Place<ArchivedHeader>) {
        munge!(let ArchivedHeader { key, value } = out);
        StrAsString::resolve_with(&self.key, resolver.0, key);
        SliceAsVec::resolve_with(&self.value, resolver.1, value);
    }
}

impl<S> Serialize<S> for HeaderRef<'_>
where
    S: Fallible + Writer + ?Sized,
    S::Error: Source,
{
    fn serialize(&self, s: &mut S) -> Result<Self::Resolver, S::Error> {
        Ok((
            StrAsString::serialize_with(&self.key, s)?,
            SliceAsVec::serialize_with(&self.value, s)?,
        ))
    }
}

/// Where a byte string lives in the builder's arena.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) len: u32,
}

impl Span {
    pub(crate) fn get(self, arena: &[u8]) -> &[u8] {
        &arena[self.start as usize..(self.start + self.len) as usize]
    }
}

/// A header's key and value spans.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderSpan {
    pub(crate) key: Span,
    pub(crate) value: Span,
}

/// The headers of one record: a run of [`HeaderSpan`]s over the arena, then the null map
/// when the batch has one ([`crate::constants::ATTR_NULL_HEADER_VALUES`]).
#[derive(Clone, Copy)]
pub(crate) struct HeaderList<'a> {
    pub(crate) arena: &'a [u8],
    pub(crate) spans: &'a [HeaderSpan],
    pub(crate) null_map: Option<&'a [u8]>,
}

impl<'a> HeaderList<'a> {
    fn len(&self) -> usize {
        self.spans.len() + usize::from(self.null_map.is_some())
    }

    fn iter(&self) -> impl ExactSizeIterator<Item = HeaderRef<'a>> + Clone + 'a {
        let (arena, spans, null_map) = (self.arena, self.spans, self.null_map);
        (0..self.len()).map(move |i| match spans.get(i) {
            Some(h) => HeaderRef {
                // The builder only stores keys it took from a `&str`.
                key: std::str::from_utf8(h.key.get(arena)).expect("header key stored from a str"),
                value: h.value.get(arena),
            },
            None => HeaderRef {
                key: NULL_MAP_HEADER_KEY,
                value: null_map.expect("the index past the headers is the null map's"),
            },
        })
    }
}

/// Archives a [`HeaderList`] as `ArchivedVec<ArchivedHeader>`.
pub(crate) struct HeaderListAsVec;

impl ArchiveWith<HeaderList<'_>> for HeaderListAsVec {
    type Archived = ArchivedVec<ArchivedHeader>;
    type Resolver = VecResolver;

    fn resolve_with(field: &HeaderList<'_>, resolver: VecResolver, out: Place<Self::Archived>) {
        ArchivedVec::resolve_from_len(field.len(), resolver, out);
    }
}

impl<S> SerializeWith<HeaderList<'_>, S> for HeaderListAsVec
where
    S: Fallible + Writer + Allocator + ?Sized,
    S::Error: Source,
{
    fn serialize_with(field: &HeaderList<'_>, s: &mut S) -> Result<VecResolver, S::Error> {
        ArchivedVec::<ArchivedHeader>::serialize_from_iter::<HeaderRef<'_>, _, _>(field.iter(), s)
    }
}

/// The root of a records archive built from spans: archives as `ArchivedVec<ArchivedRecord>`.
pub(crate) struct RecordList<'a> {
    pub(crate) arena: &'a [u8],
    pub(crate) records: &'a [RecordSpan],
    pub(crate) headers: &'a [HeaderSpan],
    /// Every record ends its headers with its null map.
    pub(crate) null_maps: bool,
}

/// A record's place in the builder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordSpan {
    /// Its index, except in a compacted batch (`BatchBuilder::append_at`).
    pub(crate) offset_delta: u32,
    pub(crate) timestamp_delta_ms: i32,
    pub(crate) key: Option<Span>,
    pub(crate) value: Option<Span>,
    pub(crate) headers_start: u32,
    pub(crate) headers_len: u32,
    /// Which headers are null (empty when none is); archived only in a batch with null maps.
    pub(crate) null_map: Span,
}

impl<'a> RecordList<'a> {
    fn iter(&self) -> impl ExactSizeIterator<Item = RecordRef<'a>> + Clone + 'a {
        let arena = self.arena;
        let headers = self.headers;
        let null_maps = self.null_maps;
        self.records.iter().map(move |r| RecordRef {
            offset_delta: r.offset_delta,
            timestamp_delta_ms: r.timestamp_delta_ms,
            key: r.key.map(|s| s.get(arena)),
            value: r.value.map(|s| s.get(arena)),
            headers: HeaderList {
                arena,
                spans: &headers
                    [r.headers_start as usize..(r.headers_start + r.headers_len) as usize],
                null_map: null_maps.then(|| r.null_map.get(arena)),
            },
        })
    }
}

impl Archive for RecordList<'_> {
    type Archived = ArchivedVec<ArchivedRecord>;
    type Resolver = VecResolver;

    fn resolve(&self, resolver: VecResolver, out: Place<Self::Archived>) {
        ArchivedVec::resolve_from_len(self.records.len(), resolver, out);
    }
}

impl<S> Serialize<S> for RecordList<'_>
where
    S: Fallible + Writer + Allocator + ?Sized,
    S::Error: Source,
{
    fn serialize(&self, s: &mut S) -> Result<VecResolver, S::Error> {
        ArchivedVec::<ArchivedRecord>::serialize_from_iter::<RecordRef<'_>, _, _>(self.iter(), s)
    }
}
