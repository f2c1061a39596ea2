//! The JSON values the ECS writer reads back (schema v2's members) and builds (PATH and SOCKADDR
//! objects from raw fields): a flat tree in one reused `Vec<Node>`, strings in the writer's arena.
//!
//! Why not `serde_json::Value`: a `Value` allocates per string, array and map; these nodes live in
//! vectors that are cleared and reused, so reading an event's members allocates nothing once they
//! have grown. Semantics kept from `Value` where the ECS document depends on them: a name written
//! twice in an object keeps its last value, and an object is written with its members sorted.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{push_int, push_str};

/// A byte range of the writer's arena ([`super::Scratch`]; always UTF-8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) start: u32,
    pub(super) end: u32,
}

/// A JSON value read back from a v2 member (or built from raw fields): scalars inline, strings in
/// the arena, arrays and objects as linked children.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Span),
    Arr,
    Obj,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Node {
    pub(super) kind: Kind,
    /// The member name inside an object (empty in arrays).
    pub(super) key: Span,
    pub(super) first: u32,
    pub(super) next: u32,
}

pub(super) const NONE: u32 = u32::MAX;

pub(super) fn at(arena: &[u8], s: Span) -> &[u8] {
    &arena[s.start as usize..s.end as usize]
}

/// Copy UTF-8 `bytes` into the arena.
pub(super) fn put(arena: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let start = arena.len() as u32;
    arena.extend_from_slice(bytes);
    Span { start, end: arena.len() as u32 }
}
pub(super) fn push_node(nodes: &mut Vec<Node>, kind: Kind, key: Span) -> u32 {
    nodes.push(Node { kind, key, first: NONE, next: NONE });
    (nodes.len() - 1) as u32
}

/// Append `child` to `parent`'s children; `last` is the previous child (NONE at first).
pub(super) fn link(nodes: &mut [Node], parent: u32, last: &mut u32, child: u32) {
    if *last == NONE {
        nodes[parent as usize].first = child;
    } else {
        nodes[*last as usize].next = child;
    }
    *last = child;
}

pub(super) fn children(nodes: &[Node], parent: u32) -> impl Iterator<Item = u32> + '_ {
    let mut cur = nodes[parent as usize].first;
    std::iter::from_fn(move || {
        let c = cur;
        if c == NONE {
            return None;
        }
        cur = nodes[c as usize].next;
        Some(c)
    })
}

/// The value of member `key` of object `obj` (the last one when written twice, as a map keeps).
pub(super) fn get(arena: &[u8], nodes: &[Node], obj: u32, key: &str) -> Option<u32> {
    if !matches!(nodes[obj as usize].kind, Kind::Obj) {
        return None;
    }
    children(nodes, obj).filter(|c| at(arena, nodes[*c as usize].key) == key.as_bytes()).last()
}

pub(super) fn as_str(nodes: &[Node], n: u32) -> Option<Span> {
    match nodes[n as usize].kind {
        Kind::Str(s) => Some(s),
        _ => None,
    }
}

pub(super) fn as_u64(nodes: &[Node], n: u32) -> Option<u64> {
    match nodes[n as usize].kind {
        Kind::U64(v) => Some(v),
        Kind::I64(v) => u64::try_from(v).ok(),
        _ => None,
    }
}

/// An integer, or a string holding one.
pub(super) fn as_int(arena: &[u8], nodes: &[Node], n: u32) -> Option<i64> {
    match nodes[n as usize].kind {
        Kind::U64(v) => i64::try_from(v).ok(),
        Kind::I64(v) => Some(v),
        Kind::Str(s) => std::str::from_utf8(at(arena, s)).ok()?.parse().ok(),
        _ => None,
    }
}

/// Children of `obj` in member-name order, a repeated name once (its last value): the order and
/// the choice of serde_json's map. Appended to `order` from `from`.
pub(super) fn sorted_members(arena: &[u8], nodes: &[Node], obj: u32, order: &mut Vec<u32>) {
    let from = order.len();
    order.extend(children(nodes, obj));
    order[from..].sort_by(|a, b| at(arena, nodes[*a as usize].key).cmp(at(arena, nodes[*b as usize].key)));
    let mut keep = from;
    for i in from..order.len() {
        let last_of_run = order
            .get(i + 1)
            .is_none_or(|n| at(arena, nodes[*n as usize].key) != at(arena, nodes[order[i] as usize].key));
        if last_of_run {
            order[keep] = order[i];
            keep += 1;
        }
    }
    order.truncate(keep);
}

/// `n` as serde_json writes a `Value`: compact, object members sorted.
pub(super) fn write_node(out: &mut Vec<u8>, arena: &[u8], nodes: &[Node], order: &mut Vec<u32>, n: u32) {
    match nodes[n as usize].kind {
        Kind::Null => out.extend_from_slice(b"null"),
        Kind::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Kind::U64(v) => push_int(out, v),
        Kind::I64(v) => push_int(out, v),
        // serde_json's own float formatting; writing into a Vec cannot fail.
        Kind::F64(v) => {
            let _ = serde_json::to_writer(&mut *out, &v);
        }
        Kind::Str(s) => push_str(out, at(arena, s)),
        Kind::Arr => {
            out.push(b'[');
            for (i, c) in children(nodes, n).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_node(out, arena, nodes, order, c);
            }
            out.push(b']');
        }
        Kind::Obj => {
            let from = order.len();
            sorted_members(arena, nodes, n, order);
            out.push(b'{');
            for i in from..order.len() {
                if i > from {
                    out.push(b',');
                }
                let c = order[i];
                push_str(out, at(arena, nodes[c as usize].key));
                out.push(b':');
                write_node(out, arena, nodes, order, c);
            }
            out.push(b'}');
            order.truncate(from);
        }
    }
}

/// Reads any JSON value into the tree.
pub(super) struct NodeSeed<'s> {
    pub(super) arena: &'s mut Vec<u8>,
    pub(super) nodes: &'s mut Vec<Node>,
    pub(super) key: Span,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = u32;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u32, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = u32;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<u32, E> {
        Ok(push_node(self.nodes, Kind::Null, self.key))
    }
    fn visit_bool<E>(self, v: bool) -> Result<u32, E> {
        Ok(push_node(self.nodes, Kind::Bool(v), self.key))
    }
    fn visit_u64<E>(self, v: u64) -> Result<u32, E> {
        Ok(push_node(self.nodes, Kind::U64(v), self.key))
    }
    fn visit_i64<E>(self, v: i64) -> Result<u32, E> {
        Ok(push_node(self.nodes, Kind::I64(v), self.key))
    }
    fn visit_f64<E>(self, v: f64) -> Result<u32, E> {
        Ok(push_node(self.nodes, Kind::F64(v), self.key))
    }
    fn visit_str<E>(self, v: &str) -> Result<u32, E> {
        let s = put(self.arena, v.as_bytes());
        Ok(push_node(self.nodes, Kind::Str(s), self.key))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u32, A::Error> {
        let NodeSeed { arena, nodes, key } = self;
        let me = push_node(nodes, Kind::Arr, key);
        let mut last = NONE;
        while let Some(c) =
            seq.next_element_seed(NodeSeed { arena: &mut *arena, nodes: &mut *nodes, key: Span::default() })?
        {
            link(nodes, me, &mut last, c);
        }
        Ok(me)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u32, A::Error> {
        let NodeSeed { arena, nodes, key } = self;
        let me = push_node(nodes, Kind::Obj, key);
        let mut last = NONE;
        while let Some(k) = map.next_key_seed(KeySeed { arena: &mut *arena })? {
            let c = map.next_value_seed(NodeSeed { arena: &mut *arena, nodes: &mut *nodes, key: k })?;
            link(nodes, me, &mut last, c);
        }
        Ok(me)
    }
}

struct KeySeed<'s> {
    arena: &'s mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Span;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Span, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Span;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E>(self, v: &str) -> Result<Span, E> {
        Ok(put(self.arena, v.as_bytes()))
    }
}
