//! How the reader walks collections and enums: the items of a sequence, the entries
//! of a mapping (a struct's unknown keys recorded and skipped), a struct read from a
//! mapping already being visited (`StructFromMap`), and enum variants named by a
//! scalar or a `!tag`.

use std::fmt;

use serde::de::value::StrDeserializer;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Unexpected,
    VariantAccess, Visitor,
};
use serde::Deserialize;

use super::read::{Error, Found, Path, Value};
use super::Kind;

/// The items of a sequence.
pub(super) struct Items<'r, 'p> {
    pub parent: Value<'r, 'p>,
    pub items: &'r [usize],
    pub next: usize,
}

impl<'de> SeqAccess<'de> for Items<'_, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some(&id) = self.items.get(self.next) else {
            return Ok(None);
        };
        let index = self.next;
        self.next += 1;
        let path = Path::Seq {
            parent: &self.parent.path,
            index,
        };
        let item = self
            .parent
            .nested(id, path)
            .map_err(|e| self.parent.place(e))?;
        seed.deserialize(item).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.next)
    }
}

/// The entries of a mapping; those of a struct whose key is none of `fields` are
/// recorded as unknown and skipped.
pub(super) struct Entries<'r, 'p> {
    pub parent: Value<'r, 'p>,
    pub entries: &'r [(usize, usize)],
    pub next: usize,
    pub fields: Option<&'static [&'static str]>,
    /// The value of the key last read, and that key's text.
    pub value: Option<(usize, Option<&'r str>)>,
}

impl<'r> Entries<'r, '_> {
    fn key_text(&self, id: usize) -> Option<&'r str> {
        let nodes = &self.parent.reader.doc.nodes;
        let id = match nodes[id].kind {
            Kind::Alias(target) => target,
            _ => id,
        };
        match &nodes[id].kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }
}

impl<'de> MapAccess<'de> for Entries<'_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        loop {
            let Some(&(key, value)) = self.entries.get(self.next) else {
                return Ok(None);
            };
            self.next += 1;
            let text = self.key_text(key);
            if let (Some(fields), Some(text)) = (self.fields, text) {
                if !fields.contains(&text) {
                    let error: Error = de::Error::unknown_field(text, fields);
                    let parent = self.parent.path.to_string();
                    let value_path = match parent.as_str() {
                        "." => text.to_string(),
                        parent => format!("{parent}.{text}"),
                    };
                    self.parent.reader.found.borrow_mut().push(Found {
                        line: self.parent.reader.doc.nodes[key].line,
                        path: parent,
                        value_path,
                        message: error.message,
                        unknown_key: true,
                    });
                    continue;
                }
            }
            self.value = Some((value, text));
            let key = self
                .parent
                .nested(key, self.parent.path)
                .map_err(|e| self.parent.place(e))?;
            return seed.deserialize(key).map(Some);
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        let (id, key) = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value was read before its key"))?;
        let path = match key {
            Some(key) => Path::Map {
                parent: &self.parent.path,
                key,
            },
            None => Path::Unknown {
                parent: &self.parent.path,
            },
        };
        let value = self
            .parent
            .nested(id, path)
            .map_err(|e| self.parent.place(e))?;
        seed.deserialize(value)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() - self.next)
    }
}

/// The name `StructFromMap` asks a key to be read as: the key's text if it is one of
/// the fields, else nothing (and the key is recorded as unknown).
pub(super) const KNOWN_KEY: &str = "$petit::config::known_key";

impl<'r> Value<'r, '_> {
    pub(super) fn known_key<'de, V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let Kind::Scalar { value: key, .. } = self.kind() else {
            return Err(self.invalid_type(&"a field name"));
        };
        if fields.contains(&key.as_ref()) {
            return visitor.visit_some(StrDeserializer::<Error>::new(key));
        }
        let error: Error = de::Error::unknown_field(key, fields);
        let path = self.path.to_string();
        self.reader.found.borrow_mut().push(Found {
            line: self.line(),
            value_path: match path.as_str() {
                "." => key.to_string(),
                parent => format!("{parent}.{key}"),
            },
            path,
            message: error.message,
            unknown_key: true,
        });
        visitor.visit_none()
    }
}

/// Reads a struct from a mapping that is being visited (a `StrOrMap`'s), its keys
/// checked like those of any struct: serde's `MapAccessDeserializer` would forget the
/// fields the struct has. Each key is asked for as a `KNOWN_KEY`, which only `read`'s
/// deserializer answers (any other fails, rather than let an unknown key through).
pub(in crate::config) struct StructFromMap<A>(pub A);

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
        visitor.visit_map(KnownKeys {
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

/// The entries of a struct's mapping whose keys are among `fields`.
struct KnownKeys<A> {
    map: A,
    fields: &'static [&'static str],
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for KnownKeys<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        struct Probe(&'static [&'static str]);
        impl<'de> DeserializeSeed<'de> for Probe {
            type Value = Option<String>;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
                d.deserialize_struct(KNOWN_KEY, self.0, ProbeVisitor)
            }
        }
        struct ProbeVisitor;
        impl<'de> Visitor<'de> for ProbeVisitor {
            type Value = Option<String>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_none<E: de::Error>(self) -> Result<Option<String>, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
                String::deserialize(d).map(Some)
            }
        }
        loop {
            match self.map.next_key_seed(Probe(self.fields))? {
                None => return Ok(None),
                Some(None) => {
                    self.map.next_value::<de::IgnoredAny>()?;
                }
                Some(Some(key)) => {
                    return seed
                        .deserialize(de::value::StringDeserializer::<A::Error>::new(key))
                        .map(Some)
                }
            }
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// An enum variant named by a `!tag`; the node tagged is its content.
pub(super) struct Tagged<'r, 'p> {
    pub value: Value<'r, 'p>,
    pub tag: &'r str,
}

impl<'de, 'r, 'p> EnumAccess<'de> for Tagged<'r, 'p> {
    type Error = Error;
    type Variant = Value<'r, 'p>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), Error> {
        let variant = seed.deserialize(StrDeserializer::<Error>::new(self.tag))?;
        Ok((
            variant,
            Value {
                tagged: true,
                ..self.value
            },
        ))
    }
}

impl<'de> VariantAccess<'de> for Value<'_, '_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        <()>::deserialize(self)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_struct("", fields, visitor)
    }
}

/// A unit variant named by a scalar.
pub(super) struct Untagged<'r, 'p>(pub Value<'r, 'p>);

impl<'de, 'r, 'p> EnumAccess<'de> for Untagged<'r, 'p> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self), Error> {
        let name = Value {
            tagged: false,
            ..self.0
        };
        Ok((seed.deserialize(name)?, self))
    }
}

impl<'de> VariantAccess<'de> for Untagged<'_, '_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value, Error> {
        Err(de::Error::invalid_type(
            Unexpected::UnitVariant,
            &"newtype variant",
        ))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, Error> {
        Err(de::Error::invalid_type(
            Unexpected::UnitVariant,
            &"tuple variant",
        ))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Error> {
        Err(de::Error::invalid_type(
            Unexpected::UnitVariant,
            &"struct variant",
        ))
    }
}
