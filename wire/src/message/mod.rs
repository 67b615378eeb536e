//! Request, response and push bodies of protocol version 1.
//!
//! Every body is an rkyv archive of one of these types. Error codes travel as raw `u16`
//! (see [`crate::ErrorCode::from_u16`]) so that a client built against an older version still
//! validates a response that carries a newer code.

/// Declares a wire type with the derives every body type needs.
macro_rules! wire_type {
    ($(#[$m:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$m])*
        #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq, Default)]
        #[rkyv(derive(Debug))]
        #[cfg_attr(test, derive(proptest_derive::Arbitrary))]
        pub struct $name { $($body)* }
    };
    ($(#[$m:meta])* pub enum $name:ident { $($body:tt)* }) => {
        $(#[$m])*
        #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
        #[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
        #[cfg_attr(test, derive(proptest_derive::Arbitrary))]
        pub enum $name { $($body)* }
    };
}

/// Ties a body type to its api key (and, for bodies that carry batches, a size hint).
macro_rules! message {
    ($ty:ident, $key:ident) => {
        impl crate::Message for $ty {
            const API_KEY: crate::ApiKey = crate::ApiKey::$key;
        }
    };
    ($ty:ident, $key:ident, |$m:ident| $hint:expr) => {
        impl crate::Message for $ty {
            const API_KEY: crate::ApiKey = crate::ApiKey::$key;

            fn body_bytes_hint(&self) -> usize {
                let $m = self;
                256 + $hint
            }
        }
    };
}

pub mod ack_level;
pub mod auth;
pub mod committed_offsets;
pub mod delete_records;
pub mod error_body;
pub mod fetch;
pub mod group;
pub mod group_admin;
pub mod handshake;
pub mod key_query;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod producer_id;
pub mod stats;
pub mod subscribe;
pub mod table;
pub mod topic;
pub mod topic_config;

#[cfg(test)]
mod tests;
