//! Encoders from reassembled [`Output`](crate::reassemble::Output)s to bytes on the wire.
//!
//! Only the native JSON schema (v1, docs/schema.md) exists so far; other formats (go-audit
//! compatible, ECS, audit.log text) belong here beside it, each in its own file.

pub mod json;

pub use json::JsonWriter;
