//! Reading a YAML file into the raw structs while reporting every unknown field (the
//! usual typo), not just the first: serde's own error for each one, with its line and
//! the fields expected, while the rest of the file is still read so that its other
//! checks (schedule, DAG, placeholders…) run too. The file still fails to load.
//!
//! How: serde_yaml attaches the line and path of a mapping key to an error raised
//! while that key is visited, once it has consumed the key. So a wrapper around the
//! deserializer reads each key of a struct itself (the struct's fields come with
//! `deserialize_struct`), raises serde's `unknown_field` error there, records it, skips
//! the value and carries on where reading the entry would have left serde_yaml. This
//! relies on serde_yaml consuming a scalar before visiting it, which holds for 0.9, its
//! last version.
//!
//! Every struct read through here is strict, `deny_unknown_fields` or not. The structs
//! keep that attribute all the same: whatever does not go through here (plain
//! `serde_yaml::from_str`, a mapping deserialized some way not wrapped below) fails on
//! its first unknown field instead of accepting it.
//!
//! Other structural errors (bad YAML syntax, a wrong type, a missing field, which is
//! also what a typo in a required field leads to) still stop this parse: serde has no
//! value to carry on with. Unknown fields found before such an error are still
//! reported with it. (`bad_values` reads again past one-line values of a wrong type.)
//!
//! The errors found are kept in a thread-local while `parse` runs, as text: each nested
//! deserializer has an error type of its own as far as serde's traits tell (so the text
//! is all that can be kept of them), and `StrOrMap`, which deserializes a struct from a
//! mapping it is visiting, has no other way to reach the record.

use std::cell::RefCell;
use std::fmt;
use std::path::Path;

use serde::de::value::StringDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, MapAccess,
    SeqAccess, VariantAccess, Visitor,
};

use super::ConfigError;

thread_local! {
    /// The unknown fields found so far by the `parse` running on this thread (each
    /// serde_yaml error's text); `None` when none is running.
    static FOUND: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Keeps `error` if a `parse` is running; `false` if none is (then the caller fails).
fn record(error: &impl fmt::Display) -> bool {
    FOUND.with_borrow_mut(|found| match found {
        Some(found) => {
            found.push(error.to_string());
            true
        }
        None => false,
    })
}

/// Deserializes `text` (not blank) as `T`. Returns `T` unless a structural error stopped
/// the parse, and every error found: each unknown field, then that structural error.
pub(super) fn parse<T: DeserializeOwned>(text: &str, file: &Path) -> (Option<T>, Vec<ConfigError>) {
    /// Puts back what was running before, even if deserializing panics.
    struct Restore(Option<Vec<String>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FOUND.set(self.0.take());
        }
    }
    let restore = Restore(FOUND.replace(Some(Vec::new())));
    let result = T::deserialize(Wrap(serde_yaml::Deserializer::from_str(text)));
    let found = FOUND.take().unwrap_or_default();
    drop(restore);

    let mut errors: Vec<ConfigError> = found
        .iter()
        .map(|text| {
            let (message, line) = split_location(text);
            ConfigError::new(file, Some(line), message)
        })
        .collect();
    match result {
        Ok(value) => (Some(value), errors),
        Err(e) => {
            errors.push(yaml_error(file, &e));
            (None, errors)
        }
    }
}

/// serde_yaml's error with its line, the location suffix taken out of the message.
pub(super) fn yaml_error(file: &Path, error: &serde_yaml::Error) -> ConfigError {
    let message = error.to_string();
    let Some(location) = error.location() else {
        return ConfigError::new(file, None, message);
    };
    let suffix = format!(" at line {} column {}", location.line(), location.column());
    let message = message
        .strip_suffix(&suffix)
        .map(str::to_string)
        .unwrap_or(message);
    ConfigError::new(file, Some(location.line()), message)
}

/// The message and line of the text of an error raised while serde_yaml visited a key
/// (`… at line 7 column 30`), the line being what `yaml_error` would read from the
/// error itself. Such an error always has a position, but serde_yaml leaves out
/// line 1 column 1 when displaying it.
fn split_location(text: &str) -> (&str, usize) {
    text.rsplit_once(" at line ")
        .and_then(|(message, rest)| {
            let (line, column) = rest.split_once(" column ")?;
            column.parse::<usize>().ok()?;
            Some((message, line.parse().ok()?))
        })
        .unwrap_or((text, 1))
}

/// A deserializer, each nested one wrapped the same way, whose structs go through
/// `KnownFields`.
struct Wrap<D>(D);

/// Forwards `deserialize_*` methods taking only a visitor.
macro_rules! forward_deserialize {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method(Visit::new(visitor))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Wrap<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Visit::new(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Visit::new(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Visit::new(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_tuple_struct(name, len, Visit::new(visitor))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_struct(name, fields, Visit::with_fields(visitor, fields))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Visit::new(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// A visitor handing on wrapped accesses; `fields` when it reads a struct.
struct Visit<V> {
    visitor: V,
    fields: Option<&'static [&'static str]>,
}

impl<V> Visit<V> {
    fn new(visitor: V) -> Self {
        Visit {
            visitor,
            fields: None,
        }
    }

    fn with_fields(visitor: V, fields: &'static [&'static str]) -> Self {
        Visit {
            visitor,
            fields: Some(fields),
        }
    }
}

/// Forwards `visit_*` methods taking one plain value.
macro_rules! forward_visit {
    ($($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.visitor.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Visit<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.visitor.expecting(f)
    }

    forward_visit! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char)
        visit_str(&str) visit_borrowed_str(&'de str) visit_string(String)
        visit_bytes(&[u8]) visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_some(Wrap(deserializer))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(Wrap(deserializer))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(Seq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        match self.fields {
            Some(fields) => self.visitor.visit_map(KnownFields {
                map: Map(map),
                fields,
            }),
            None => self.visitor.visit_map(Map(map)),
        }
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_enum(Enum(data))
    }
}

/// A seed deserializing from a wrapped deserializer.
struct Seed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Wrap(deserializer))
    }
}

struct Seq<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct Map<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Seed(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct Enum<A>(A);

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Enum<A> {
    type Error = A::Error;
    type Variant = Variant<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(Seed(seed))?;
        Ok((value, Variant(variant)))
    }
}

struct Variant<A>(A);

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Visit::new(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0
            .struct_variant(fields, Visit::with_fields(visitor, fields))
    }
}

/// The entries of a struct's mapping, those whose key is not one of `fields` recorded
/// as errors and skipped (or, when no `parse` is running, failing as serde would).
struct KnownFields<A> {
    map: A,
    fields: &'static [&'static str],
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for KnownFields<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let mut unknown = false;
            let key = self.map.next_key_seed(KeyProbe {
                fields: self.fields,
                unknown: &mut unknown,
            });
            match key {
                Ok(Some(key)) => {
                    return seed
                        .deserialize(StringDeserializer::<A::Error>::new(key))
                        .map(Some)
                }
                Ok(None) => return Ok(None),
                // The key was read and only it: its value comes next.
                Err(e) if unknown && record(&e) => {
                    self.map.next_value::<IgnoredAny>()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.map.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// Reads a struct's key: the key if it is one of `fields`, else serde's unknown-field
/// error (raised while serde_yaml visits the key, so that it gets the key's line).
struct KeyProbe<'a> {
    fields: &'static [&'static str],
    unknown: &'a mut bool,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl Visitor<'_> for KeyProbe<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        if self.fields.contains(&key) {
            Ok(key.to_string())
        } else {
            *self.unknown = true;
            Err(E::unknown_field(key, self.fields))
        }
    }
}

/// Deserializes a struct from a mapping that is being visited, its fields checked like
/// those of any struct here (serde's `MapAccessDeserializer` would not know them).
pub(super) struct StructFromMap<A>(pub A);

impl<'de, A: MapAccess<'de>> Deserializer<'de> for StructFromMap<A> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_map(self.0)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        visitor.visit_map(KnownFields {
            map: self.0,
            fields,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
        identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    use crate::config::de::StrOrMap;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        name: String,
        #[serde(default)]
        inner: Vec<Inner>,
        either: Option<StrOrMap<Inner>>,
        tagged: Option<Tagged>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: u32,
        #[serde(rename = "type")]
        kind: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case", deny_unknown_fields)]
    enum Tagged {
        Plain,
        Both { x: u32 },
    }

    const FILE: &str = "/jobs/t.yaml";

    fn errors(text: &str) -> (Option<Outer>, Vec<(Option<usize>, String)>) {
        let (value, errors) = parse::<Outer>(text, Path::new(FILE));
        let errors = errors.into_iter().map(|e| (e.line, e.message)).collect();
        (value, errors)
    }

    #[test]
    fn every_unknown_field_is_reported_and_skipped() {
        let text = "\
name: n
nmae: typo
inner:
  - a: 1
    b: {deep: [1, 2]}
    type: t
  - {a: 2, c: 3}
either: {a: 3, d: 4}
tagged: !both {x: 1, y: 2}
";
        let (value, errors) = errors(text);
        assert_eq!(
            value,
            Some(Outer {
                name: "n".into(),
                inner: vec![
                    Inner {
                        a: 1,
                        kind: Some("t".into())
                    },
                    Inner { a: 2, kind: None }
                ],
                either: Some(StrOrMap::Map(Inner { a: 3, kind: None })),
                tagged: Some(Tagged::Both { x: 1 }),
            })
        );
        let want = [
            (
                Some(2),
                "unknown field `nmae`, expected one of `name`, `inner`, `either`, `tagged`",
            ),
            (
                Some(5),
                "inner[0]: unknown field `b`, expected `a` or `type`",
            ),
            (
                Some(7),
                "inner[1]: unknown field `c`, expected `a` or `type`",
            ),
            (Some(8), "either: unknown field `d`, expected `a` or `type`"),
            (Some(9), "tagged: unknown field `y`, expected `x`"),
        ];
        let got: Vec<(Option<usize>, &str)> =
            errors.iter().map(|(l, m)| (*l, m.as_str())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_structural_error_still_stops_the_parse() {
        let cases = [
            // Unknown fields before the error are kept.
            (
                "name: n\nextra: 1\ninner: [{a: x}]\n",
                vec![Some(2), Some(3)],
                "inner[0].a: invalid type: string \"x\"",
            ),
            (
                "inner: [{a: 1, zz: 2}]\n",
                vec![Some(1), Some(1)],
                "missing field `name`",
            ),
            (
                "name: n\ninner: [\n",
                vec![Some(3)],
                "did not find expected node content",
            ),
            // A key at line 1 column 1, which serde_yaml does not display.
            ("zz: 1\n", vec![Some(1), Some(1)], "missing field `name`"),
        ];
        for (text, lines, last) in cases {
            let (value, errors) = errors(text);
            assert!(value.is_none(), "{text}");
            assert_eq!(
                errors.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
                lines,
                "{text}: {errors:?}"
            );
            let message = &errors.last().unwrap().1;
            assert!(message.contains(last), "{text}: {message}");
        }
    }

    #[test]
    fn without_parse_the_first_unknown_field_fails() {
        // Outside `parse` nothing records, so `StructFromMap` fails as serde would.
        let err = serde_yaml::from_str::<Outer>("name: n\neither: {a: 1, d: 2}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "either: unknown field `d`, expected `a` or `type` at line 2 column 16"
        );
    }

    #[test]
    fn splits_the_location_off() {
        let cases = [
            ("a: bad at line 7 column 30", ("a: bad", 7)),
            ("bad", ("bad", 1)),
            ("odd at line x column 1", ("odd at line x column 1", 1)),
            (
                "at line 1 column 2 at line 3 column 4",
                ("at line 1 column 2", 3),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(split_location(text), want, "{text}");
        }
    }
}
