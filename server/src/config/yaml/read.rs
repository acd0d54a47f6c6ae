//! A serde deserializer over a `Doc`, reading every error of a file in one pass.
//!
//! - Scalars mean what serde_yaml 0.9 made of them (the loader's reader before this
//!   one): YAML 1.2 core-schema booleans (`true`/`false` only: `yes`, `on` are text),
//!   `~`/`null`/empty as null, decimal, `0x`, `0o`, `0b` integers, `.inf`/`.nan`;
//!   a field of text takes any scalar as written; `!tag` selects an enum variant.
//! - Every error is recorded where it arises, with the line of its node and the path
//!   to it (`tasks[0].retry: …`), into the reader's own list: each error, once.
//! - An unknown key of a struct is recorded (serde's own `unknown field` message,
//!   with the fields expected) and skipped; the struct reads on.
//! - A field marked `lenient` whose value is of the wrong type reads as absent, so that
//!   the rest of the file is still read (its error is recorded all the same). A
//!   required field cannot be absent: its error ends the reading of what holds it.
//! - Bounded: nesting past `MAX_DEPTH`, or aliases expanding to many times the size of
//!   the document, stop the reading with an error (no stack overflow, no alias bomb).

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path as FilePath;

use saphyr_parser::ScalarStyle;
use serde::de::{self, DeserializeOwned, Deserializer, Expected, Unexpected, Visitor};
use serde::Deserialize;

use super::access::{Entries, Items, Tagged, Untagged, KNOWN_KEY};
use super::scalar::{
    parse_bool, parse_f64, parse_int, parse_null, visit_scalar, BOOL, FLOAT, INT, NULL,
};
use super::{Doc, Kind};
use crate::config::ConfigError;

/// Deepest nesting read (serde_yaml's limit too). `job_files.max_depth` is checked
/// before parsing; this only keeps a raised one from overflowing the stack.
const MAX_DEPTH: usize = 128;

/// What reading a document gave: the value unless an error stopped the reading, and
/// every error, in the order found.
pub(in crate::config) struct Reading<T> {
    pub value: Option<T>,
    pub errors: Vec<ConfigError>,
    pub unreadable: Unreadable,
}

/// The paths of the values that could not be read (unknown keys aside).
#[derive(Debug, Default)]
pub(in crate::config) struct Unreadable(BTreeSet<String>);

impl Unreadable {
    /// Whether the value at `path` (`tasks[0].command`), or one inside it, could not be
    /// read: then a check that finds it missing says nothing more.
    pub fn contains(&self, path: &str) -> bool {
        let under = |open: char, after: char| {
            self.0
                .range(format!("{path}{open}")..format!("{path}{after}"))
                .next()
                .is_some()
        };
        self.0.contains(path) || under('.', '/') || under('[', '\\')
    }
}

/// Reads the document as a `T`, collecting every error.
pub(in crate::config) fn read<T: DeserializeOwned>(doc: &Doc<'_>, file: &FilePath) -> Reading<T> {
    let reader = Reader {
        doc,
        found: RefCell::new(Vec::new()),
        visits: Cell::new(0),
        max_visits: doc.nodes.len().saturating_mul(32).saturating_add(4096),
    };
    let top = Value {
        reader: &reader,
        id: doc.root,
        path: Path::Root,
        depth: 0,
        tagged: false,
    };
    let value = T::deserialize(top).ok();
    let mut unreadable = BTreeSet::new();
    let errors = reader
        .found
        .into_inner()
        .into_iter()
        .map(|found| {
            let path = found.path;
            let message = if path == "." {
                found.message
            } else {
                format!("{path}: {}", found.message)
            };
            if !found.unknown_key {
                unreadable.insert(found.value_path);
            }
            ConfigError::new(file, Some(found.line), message)
        })
        .collect();
    Reading {
        value,
        errors,
        unreadable: Unreadable(unreadable),
    }
}

/// Reads a field leniently, as `#[serde(default, deserialize_with = "lenient")]`: a
/// value of the wrong type leaves the field at its default, as if it were absent. The
/// error is not lost: `read` records every error where it arises. (Only for structs
/// read through `read`, which is all of the loader's.)
pub(in crate::config) fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(T::deserialize(deserializer).unwrap_or_default())
}

/// An error of the reading; `placed` once it is recorded with its node.
#[derive(Debug)]
pub(in crate::config) struct Error {
    pub(super) message: String,
    placed: bool,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<M: fmt::Display>(message: M) -> Self {
        Error {
            message: message.to_string(),
            placed: false,
        }
    }
}

/// An error with where it was found.
pub(super) struct Found {
    pub line: usize,
    /// Where it is reported: the value's path, or the struct's for an unknown key.
    pub path: String,
    /// The path of the value it concerns.
    pub value_path: String,
    pub message: String,
    pub unknown_key: bool,
}

pub(super) struct Reader<'d> {
    pub doc: &'d Doc<'d>,
    pub found: RefCell<Vec<Found>>,
    visits: Cell<usize>,
    max_visits: usize,
}

/// Where a value is, as serde_yaml wrote it: `tasks[0].retry.delay`.
#[derive(Clone, Copy)]
pub(super) enum Path<'a> {
    Root,
    Seq { parent: &'a Path<'a>, index: usize },
    Map { parent: &'a Path<'a>, key: &'a str },
    Unknown { parent: &'a Path<'a> },
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Parent<'a>(&'a Path<'a>);
        impl fmt::Display for Parent<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0 {
                    Path::Root => Ok(()),
                    path => write!(f, "{path}."),
                }
            }
        }
        match self {
            Path::Root => f.write_str("."),
            Path::Seq { parent, index } => write!(f, "{parent}[{index}]"),
            Path::Map { parent, key } => write!(f, "{}{key}", Parent(parent)),
            Path::Unknown { parent } => write!(f, "{}?", Parent(parent)),
        }
    }
}

/// One node being read.
#[derive(Clone, Copy)]
pub(super) struct Value<'r, 'p> {
    pub reader: &'r Reader<'r>,
    pub id: usize,
    pub path: Path<'p>,
    pub depth: usize,
    /// Inside an enum variant its tag selected (the tag is not read again).
    pub tagged: bool,
}

impl<'r, 'p> Value<'r, 'p> {
    pub(super) fn kind(&self) -> &'r Kind<'r> {
        &self.reader.doc.nodes[self.id].kind
    }

    fn tag(&self) -> Option<&'r str> {
        self.reader.doc.nodes[self.id].tag.as_deref()
    }

    pub(super) fn line(&self) -> usize {
        self.reader.doc.nodes[self.id].line
    }

    /// Records `error` at this node unless it already is.
    pub(super) fn place(&self, mut error: Error) -> Error {
        if !error.placed {
            error.placed = true;
            let path = self.path.to_string();
            self.reader.found.borrow_mut().push(Found {
                line: self.line(),
                value_path: path.clone(),
                path,
                message: error.message.clone(),
                unknown_key: false,
            });
        }
        error
    }

    /// Reads this node with `read`, aliases followed, errors placed.
    fn with<R>(self, read: impl FnOnce(Value<'r, 'p>) -> Result<R, Error>) -> Result<R, Error> {
        let visits = self.reader.visits.get() + 1;
        self.reader.visits.set(visits);
        if visits > self.reader.max_visits {
            return Err(self.place(de::Error::custom(
                "repetition limit exceeded (aliases repeat too much of the document)",
            )));
        }
        let value = match self.kind() {
            Kind::Alias(target) => Value {
                id: *target,
                ..self
            },
            _ => self,
        };
        read(value).map_err(|e| value.place(e))
    }

    /// A child node, one level deeper.
    pub(super) fn nested(&self, id: usize, path: Path<'p>) -> Result<Value<'r, 'p>, Error> {
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom("recursion limit exceeded"));
        }
        Ok(Value {
            reader: self.reader,
            id,
            path,
            depth: self.depth + 1,
            tagged: false,
        })
    }

    /// The scalar's text if it may be read as a value of core tag `tag`: plain, or a
    /// literal block tagged so.
    fn scalar_as(&self, tag: &str) -> Option<&'r str> {
        match self.kind() {
            Kind::Scalar {
                value,
                style: ScalarStyle::Plain,
            } => Some(value),
            Kind::Scalar {
                value,
                style: ScalarStyle::Literal,
            } if !self.tagged && self.tag() == Some(tag) => Some(value),
            _ => None,
        }
    }

    /// The variant name a `!tag` gives, outside a variant already tagged.
    fn enum_tag(&self) -> Option<&'r str> {
        if self.tagged {
            return None;
        }
        let rest = self.tag()?.strip_prefix('!')?;
        Some(if rest.is_empty() { "!" } else { rest })
    }

    fn is_empty_plain(&self) -> bool {
        matches!(self.kind(), Kind::Scalar { value, style: ScalarStyle::Plain } if value.is_empty())
    }

    pub(super) fn invalid_type(&self, expected: &dyn Expected) -> Error {
        match self.kind() {
            Kind::Seq(_) => de::Error::invalid_type(Unexpected::Seq, expected),
            Kind::Map(_) => de::Error::invalid_type(Unexpected::Map, expected),
            Kind::Alias(_) => de::Error::custom("unresolved alias"),
            Kind::Scalar { value, style } => {
                struct Refuse<'e>(&'e dyn Expected);
                impl Visitor<'_> for Refuse<'_> {
                    type Value = ();
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        self.0.fmt(f)
                    }
                }
                match visit_scalar(Refuse(expected), value, *style, self.tag(), false) {
                    Ok(()) => de::Error::custom("unexpected scalar"),
                    Err(e) => e,
                }
            }
        }
    }

    fn visit_seq<'de, V: Visitor<'de>>(
        self,
        visitor: V,
        items: &'r [usize],
    ) -> Result<V::Value, Error> {
        let mut seq = Items {
            parent: self,
            items,
            next: 0,
        };
        let value = visitor.visit_seq(&mut seq)?;
        if seq.next < items.len() {
            return Err(de::Error::invalid_length(
                items.len(),
                &ExpectedLen(seq.next),
            ));
        }
        Ok(value)
    }

    fn visit_map<'de, V: Visitor<'de>>(
        self,
        visitor: V,
        fields: Option<&'static [&'static str]>,
    ) -> Result<V::Value, Error> {
        let entries: &'r [(usize, usize)] = match self.kind() {
            Kind::Map(map) => &map.entries,
            _ => &[],
        };
        visitor.visit_map(Entries {
            parent: self,
            entries,
            next: 0,
            fields,
            value: None,
        })
    }

    fn deserialize_int<'de, V: Visitor<'de>, N>(
        self,
        visitor: V,
        parse: fn(&str) -> Option<N>,
        visit: fn(V, N) -> Result<V::Value, Error>,
    ) -> Result<V::Value, Error> {
        self.with(|v| match v.scalar_as(INT).and_then(parse) {
            Some(n) => visit(visitor, n),
            None => Err(v.invalid_type(&visitor)),
        })
    }
}

struct ExpectedLen(usize);

impl Expected for ExpectedLen {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.0 {
            1 => f.write_str("sequence of 1 element"),
            n => write!(f, "sequence of {n} elements"),
        }
    }
}

impl<'de, 'r, 'p> Deserializer<'de> for Value<'r, 'p> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.with(|v| {
            if let Some(tag) = v.enum_tag() {
                return visitor.visit_enum(Tagged { value: v, tag });
            }
            match v.kind() {
                Kind::Scalar { value, style } => {
                    visit_scalar(visitor, value, *style, v.tag(), v.tagged)
                }
                Kind::Seq(items) => v.visit_seq(visitor, items),
                Kind::Map(_) => v.visit_map(visitor, None),
                Kind::Alias(_) => Err(v.invalid_type(&visitor)),
            }
        })
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.with(|v| match v.scalar_as(BOOL).and_then(parse_bool) {
            Some(b) => visitor.visit_bool(b),
            None => Err(v.invalid_type(&visitor)),
        })
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_int(visitor, |t| parse_int(t, false), |v, n: i64| v.visit_i64(n))
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_int(
            visitor,
            |t| parse_int(t, false),
            |v, n: i128| v.visit_i128(n),
        )
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_int(visitor, |t| parse_int(t, false), |v, n: u64| v.visit_u64(n))
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_int(
            visitor,
            |t| parse_int(t, false),
            |v, n: u128| v.visit_u128(n),
        )
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.with(|v| match v.scalar_as(FLOAT).and_then(parse_f64) {
            Some(f) => visitor.visit_f64(f),
            None => Err(v.invalid_type(&visitor)),
        })
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.with(|v| match v.kind() {
            Kind::Scalar { value, .. } => visitor.visit_str(value),
            _ => Err(v.invalid_type(&visitor)),
        })
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        self.with(|_| {
            Err(de::Error::custom(
                "serialization and deserialization of bytes in YAML is not implemented",
            ))
        })
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.with(|v| {
            let some = match v.kind() {
                Kind::Scalar { value, style } => {
                    if *style != ScalarStyle::Plain {
                        true
                    } else if let Some(tag) = v.tag().filter(|_| !v.tagged) {
                        if tag != NULL {
                            true
                        } else if parse_null(value) {
                            false
                        } else {
                            return Err(de::Error::invalid_value(Unexpected::Str(value), &"null"));
                        }
                    } else {
                        !value.is_empty() && !parse_null(value)
                    }
                }
                _ => true,
            };
            if some {
                visitor.visit_some(v)
            } else {
                visitor.visit_none()
            }
        })
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.with(|v| match v.kind() {
            Kind::Scalar { value, style } => {
                let null = if *style != ScalarStyle::Plain {
                    false
                } else if let Some(tag) = v.tag().filter(|_| !v.tagged) {
                    tag == NULL && parse_null(value)
                } else {
                    value.is_empty() || parse_null(value)
                };
                if null {
                    visitor.visit_unit()
                } else {
                    Err(de::Error::invalid_value(Unexpected::Str(value), &"null"))
                }
            }
            _ => Err(v.invalid_type(&visitor)),
        })
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let inner = self.nested(self.id, self.path).map_err(|e| self.place(e))?;
        visitor.visit_newtype_struct(Value {
            tagged: self.tagged,
            ..inner
        })
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.with(|v| match v.kind() {
            Kind::Seq(items) => v.visit_seq(visitor, items),
            _ if v.is_empty_plain() => v.visit_seq(visitor, &[]),
            _ => Err(v.invalid_type(&visitor)),
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.with(|v| match v.kind() {
            Kind::Map(_) => v.visit_map(visitor, None),
            _ if v.is_empty_plain() => v.visit_map(visitor, None),
            _ => Err(v.invalid_type(&visitor)),
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == KNOWN_KEY {
            return self.with(|v| v.known_key(fields, visitor));
        }
        self.with(|v| match v.kind() {
            Kind::Map(_) => v.visit_map(visitor, Some(fields)),
            _ if v.is_empty_plain() => v.visit_map(visitor, Some(fields)),
            _ => Err(v.invalid_type(&visitor)),
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.with(|v| {
            if v.tagged {
                return match v.kind() {
                    Kind::Scalar { value, .. } if !value.is_empty() => {
                        visitor.visit_enum(Untagged(v))
                    }
                    _ => Err(de::Error::custom(
                        "deserializing nested enum from YAML is not supported yet",
                    )),
                };
            }
            if let Some(tag) = v.enum_tag() {
                return visitor.visit_enum(Tagged { value: v, tag });
            }
            match v.kind() {
                Kind::Scalar { .. } => visitor.visit_enum(Untagged(v)),
                Kind::Map(_) => Err(de::Error::invalid_type(
                    Unexpected::Map,
                    &"a YAML tag starting with '!'",
                )),
                Kind::Seq(_) => Err(de::Error::invalid_type(
                    Unexpected::Seq,
                    &"a YAML tag starting with '!'",
                )),
                Kind::Alias(_) => Err(v.invalid_type(&visitor)),
            }
        })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
