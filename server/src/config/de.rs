//! Deserializers for the value shapes the YAML formats allow beyond plain serde
//! derives: scalars kept as text, hand-written durations and byte sizes, and fields
//! that take either a string or a mapping. Errors raised here go through the reader
//! (`yaml::read`), which attaches the line of the offending value.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::yaml::StructFromMap;
use crate::core::schedule::parse_duration;

/// A YAML scalar kept as its text: `1000` -> "1000", `true` -> "true".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ScalarText(pub String);

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = ScalarText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<ScalarText, E> {
                Ok(ScalarText(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// A duration written `90s`, `1h30m`, `500ms`, `2d`, or as a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DurationText(pub Duration);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = DurationText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 90s, 1h30m, 500ms or a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationText, E> {
                Ok(DurationText(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationText, E> {
                u64::try_from(v)
                    .map(|v| DurationText(Duration::from_secs(v)))
                    .map_err(|_| E::custom(format!("a duration cannot be negative ({v})")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationText, E> {
                Err(E::custom(format!(
                    "fractional durations are not supported ({v}); write e.g. 1500ms"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
                parse_duration(v).map(DurationText).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// A size in bytes: a number, or a number with a unit (`512KiB`, `1MiB`, `10MB`, `1GB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size in bytes such as 1048576, 512KiB or 1MiB")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("a size cannot be negative ({v})")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_byte_size(v).map(ByteSize).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

pub(super) fn parse_byte_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("size '{text}' does not start with a number"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "size '{text}': unknown unit '{other}' (use B, KB, KiB, MB, MiB, GB or GiB)"
            ))
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("size '{text}' is too large"))
}

/// A field written either as a plain string or as a mapping `M` (e.g. `schedule: "@daily"`
/// or `schedule: {cron: "@daily", timezone: Europe/Paris}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StrOrMap<M> {
    Str(String),
    Map(M),
}

impl<'de, M: Deserialize<'de>> Deserialize<'de> for StrOrMap<M> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EitherVisitor<M>(PhantomData<M>);
        impl<'de, M: Deserialize<'de>> Visitor<'de> for EitherVisitor<M> {
            type Value = StrOrMap<M>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a mapping")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StrOrMap<M>, E> {
                Ok(StrOrMap::Str(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<StrOrMap<M>, E> {
                Ok(StrOrMap::Str(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<StrOrMap<M>, A::Error> {
                // Not serde's `MapAccessDeserializer`: unknown fields of `M` are reported
                // like those of any other struct.
                M::deserialize(StructFromMap(map)).map(StrOrMap::Map)
            }
        }
        deserializer.deserialize_any(EitherVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::from_str;

    #[test]
    fn scalars_keep_their_text() {
        let cases = [
            ("1000", "1000"),
            ("true", "true"),
            ("1.5", "1.5"),
            ("-3", "-3"),
            ("'007'", "007"),
            ("hello world", "hello world"),
            ("yes", "yes"),
        ];
        for (yaml, want) in cases {
            let got: ScalarText = from_str(yaml).unwrap();
            assert_eq!(got.0, want, "{yaml}");
        }
        for yaml in ["[1, 2]", "{a: 1}", "~"] {
            let err = from_str::<ScalarText>(yaml).unwrap_err();
            assert!(
                err.contains("expected a string, number or boolean"),
                "{yaml}: {err}"
            );
        }
    }

    #[test]
    fn durations_and_sizes() {
        let durations = [
            ("60", 60_000),
            ("90s", 90_000),
            ("'1m30s'", 90_000),
            ("500ms", 500),
        ];
        for (yaml, millis) in durations {
            let got: DurationText = from_str(yaml).unwrap();
            assert_eq!(got.0, Duration::from_millis(millis), "{yaml}");
        }
        for (yaml, want) in [
            ("-1", "negative"),
            ("1.5", "fractional"),
            ("5x", "unknown unit"),
        ] {
            let err = from_str::<DurationText>(yaml).unwrap_err();
            assert!(err.contains(want), "{yaml}: {err}");
        }
        let sizes = [
            ("1048576", 1_048_576),
            ("1MiB", 1_048_576),
            ("512 KiB", 524_288),
            ("10MB", 10_000_000),
            ("2gib", 2 << 30),
            ("100B", 100),
        ];
        for (yaml, want) in sizes {
            let got: ByteSize = from_str(yaml).unwrap();
            assert_eq!(got.0, want, "{yaml}");
        }
        for (text, want) in [("MiB", "does not start"), ("5 parsecs", "unknown unit")] {
            let err = parse_byte_size(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
