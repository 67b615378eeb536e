//! rkyv wrapper types that archive borrowed data into the same archived types as owned data.
//!
//! They let the batch builder serialize straight out of its byte arena (no `Vec` per key or
//! value) and let messages place batch bytes at a 16-byte boundary inside a body.

use rkyv::rancor::{Fallible, Source};
use rkyv::ser::{Allocator, Writer, WriterExt};
use rkyv::string::{ArchivedString, StringResolver};
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::with::{ArchiveWith, DeserializeWith, SerializeWith};
use rkyv::Place;

use crate::constants::BODY_ALIGN;

/// Archives `&[u8]` as `ArchivedVec<u8>` (what `Vec<u8>` archives as).
#[derive(Debug)]
pub struct SliceAsVec;

impl ArchiveWith<&[u8]> for SliceAsVec {
    type Archived = ArchivedVec<u8>;
    type Resolver = VecResolver;

    fn resolve_with(field: &&[u8], resolver: VecResolver, out: Place<ArchivedVec<u8>>) {
        ArchivedVec::resolve_from_len(field.len(), resolver, out);
    }
}

impl<S: Fallible + Writer + ?Sized> SerializeWith<&[u8], S> for SliceAsVec {
    fn serialize_with(field: &&[u8], s: &mut S) -> Result<VecResolver, S::Error> {
        // u8 needs no alignment: write the bytes where the writer stands.
        let pos = s.pos();
        s.write(field)?;
        Ok(VecResolver::from_pos(pos))
    }
}

/// Archives `&str` as `ArchivedString` (what `String` archives as).
#[derive(Debug)]
pub struct StrAsString;

impl ArchiveWith<&str> for StrAsString {
    type Archived = ArchivedString;
    type Resolver = StringResolver;

    fn resolve_with(field: &&str, resolver: StringResolver, out: Place<ArchivedString>) {
        ArchivedString::resolve_from_str(field, resolver, out);
    }
}

impl<S> SerializeWith<&str, S> for StrAsString
where
    S: Fallible + Writer + ?Sized,
    S::Error: Source,
{
    fn serialize_with(field: &&str, s: &mut S) -> Result<StringResolver, S::Error> {
        ArchivedString::serialize_from_str(field, s)
    }
}

/// Archives a `Vec<u8>` of record batches as `ArchivedVec<u8>` whose bytes start at a
/// 16-byte boundary of the archive, so the batches inside can be validated in place when the
/// body itself sits 16-byte aligned.
#[derive(Debug)]
pub struct AlignedBytes;

impl ArchiveWith<Vec<u8>> for AlignedBytes {
    type Archived = ArchivedVec<u8>;
    type Resolver = VecResolver;

    fn resolve_with(field: &Vec<u8>, resolver: VecResolver, out: Place<ArchivedVec<u8>>) {
        ArchivedVec::resolve_from_len(field.len(), resolver, out);
    }
}

impl<S: Fallible + Writer + Allocator + ?Sized> SerializeWith<Vec<u8>, S> for AlignedBytes {
    fn serialize_with(field: &Vec<u8>, s: &mut S) -> Result<VecResolver, S::Error> {
        let pos = s.align(BODY_ALIGN)?;
        s.write(field)?;
        Ok(VecResolver::from_pos(pos))
    }
}

impl<D: Fallible + ?Sized> DeserializeWith<ArchivedVec<u8>, Vec<u8>, D> for AlignedBytes {
    fn deserialize_with(field: &ArchivedVec<u8>, _: &mut D) -> Result<Vec<u8>, D::Error> {
        Ok(field.as_slice().to_vec())
    }
}

/// Archives batches held in pieces (`&[&[u8]]`, as a log's cache holds them) as
/// `ArchivedVec<u8>` exactly as [`AlignedBytes`] archives them joined: the pieces are written
/// back to back from a 16-byte boundary, without first being copied into one buffer.
#[derive(Debug)]
pub struct AlignedPieces;

impl ArchiveWith<&[&[u8]]> for AlignedPieces {
    type Archived = ArchivedVec<u8>;
    type Resolver = VecResolver;

    fn resolve_with(field: &&[&[u8]], resolver: VecResolver, out: Place<ArchivedVec<u8>>) {
        let len = field.iter().map(|p| p.len()).sum();
        ArchivedVec::resolve_from_len(len, resolver, out);
    }
}

impl<S: Fallible + Writer + ?Sized> SerializeWith<&[&[u8]], S> for AlignedPieces {
    fn serialize_with(field: &&[&[u8]], s: &mut S) -> Result<VecResolver, S::Error> {
        let pos = s.align(BODY_ALIGN)?;
        for piece in field.iter() {
            s.write(piece)?;
        }
        Ok(VecResolver::from_pos(pos))
    }
}
