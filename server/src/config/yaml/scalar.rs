//! What a scalar means, as serde_yaml 0.9 (the loader's reader before this one) made
//! of it: YAML 1.2 core-schema booleans (`true`/`false` in three casings: `yes`, `on`
//! are text), `~`/`null`/empty as null, decimal, `0x`, `0o`, `0b` integers with a sign
//! before the prefix, leading zeros as text (`007`), `.inf`/`.nan`, and a core tag
//! (`!!int '12'`) deciding before the form does.

use saphyr_parser::ScalarStyle;
use serde::de::{self, Unexpected, Visitor};

use super::read::Error;

pub(super) const BOOL: &str = "tag:yaml.org,2002:bool";
pub(super) const INT: &str = "tag:yaml.org,2002:int";
pub(super) const FLOAT: &str = "tag:yaml.org,2002:float";
pub(super) const NULL: &str = "tag:yaml.org,2002:null";

pub(super) fn parse_null(text: &str) -> bool {
    matches!(text, "null" | "Null" | "NULL" | "~")
}

pub(super) fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Leading zeros and digits (`007`): text, as YAML 1.2 says.
fn digits_but_not_number(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    digits.len() > 1 && digits.starts_with('0') && digits[1..].bytes().all(|b| b.is_ascii_digit())
}

/// An integer in base 16, 8 or 2 after `0x`, `0o`, `0b` (sign before the prefix), or 10.
pub(super) trait Int: Sized {
    fn radix(text: &str, radix: u32) -> Option<Self>;
    const SIGNED: bool;
}

macro_rules! int {
    ($($t:ty: $signed:expr),*) => {$(
        impl Int for $t {
            fn radix(text: &str, radix: u32) -> Option<Self> {
                <$t>::from_str_radix(text, radix).ok()
            }
            const SIGNED: bool = $signed;
        }
    )*};
}
int!(u64: false, i64: true, u128: false, i128: true);

/// `unsigned`: `-` is refused; `negative_only`: only negative numbers (serde_yaml reads
/// an untagged integer as unsigned first, then as negative).
pub(super) fn parse_int<N: Int>(text: &str, negative_only: bool) -> Option<N> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) if N::SIGNED => (true, rest),
        Some(_) => return None,
        None if negative_only => return None,
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if digits.starts_with(['+', '-']) {
        return None;
    }
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = digits.strip_prefix(prefix) {
            if rest.starts_with(['+', '-']) {
                return None;
            }
            let signed = if negative {
                format!("-{rest}")
            } else {
                rest.to_string()
            };
            if let Some(n) = N::radix(&signed, radix) {
                return Some(n);
            }
        }
    }
    if digits_but_not_number(text) {
        return None;
    }
    let signed = if negative {
        format!("-{digits}")
    } else {
        digits.to_string()
    };
    N::radix(&signed, 10)
}

pub(super) fn parse_f64(text: &str) -> Option<f64> {
    let unsigned = match text.strip_prefix('+') {
        Some(rest) if rest.starts_with(['+', '-']) => return None,
        Some(rest) => rest,
        None => text,
    };
    match unsigned {
        ".inf" | ".Inf" | ".INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" if unsigned == text => return Some(f64::NAN),
        _ => {}
    }
    unsigned.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// An untagged integer: unsigned, else negative, else wider.
fn visit_int<'de, V: Visitor<'de>>(visitor: V, text: &str) -> Result<Result<V::Value, Error>, V> {
    if let Some(n) = parse_int::<u64>(text, false) {
        return Ok(visitor.visit_u64(n));
    }
    if let Some(n) = parse_int::<i64>(text, true) {
        return Ok(visitor.visit_i64(n));
    }
    if let Some(n) = parse_int::<u128>(text, false) {
        return Ok(visitor.visit_u128(n));
    }
    if let Some(n) = parse_int::<i128>(text, true) {
        return Ok(visitor.visit_i128(n));
    }
    Err(visitor)
}

fn visit_untagged<'de, V: Visitor<'de>>(visitor: V, text: &str) -> Result<V::Value, Error> {
    if text.is_empty() || parse_null(text) {
        return visitor.visit_unit();
    }
    if let Some(b) = parse_bool(text) {
        return visitor.visit_bool(b);
    }
    let visitor = match visit_int(visitor, text) {
        Ok(result) => return result,
        Err(visitor) => visitor,
    };
    if !digits_but_not_number(text) {
        if let Some(f) = parse_f64(text) {
            return visitor.visit_f64(f);
        }
    }
    visitor.visit_str(text)
}

/// A scalar as a self-describing value: by its core tag, else plain scalars by their
/// form, else text.
pub(super) fn visit_scalar<'de, V: Visitor<'de>>(
    visitor: V,
    text: &str,
    style: ScalarStyle,
    tag: Option<&str>,
    tagged: bool,
) -> Result<V::Value, Error> {
    match tag.filter(|_| !tagged) {
        Some(BOOL) => match parse_bool(text) {
            Some(b) => visitor.visit_bool(b),
            None => Err(de::Error::invalid_value(
                Unexpected::Str(text),
                &"a boolean",
            )),
        },
        Some(INT) => match visit_int(visitor, text) {
            Ok(result) => result,
            Err(_) => Err(de::Error::invalid_value(
                Unexpected::Str(text),
                &"an integer",
            )),
        },
        Some(FLOAT) => match parse_f64(text) {
            Some(f) => visitor.visit_f64(f),
            None => Err(de::Error::invalid_value(Unexpected::Str(text), &"a float")),
        },
        Some(NULL) => match parse_null(text) {
            true => visitor.visit_unit(),
            false => Err(de::Error::invalid_value(Unexpected::Str(text), &"null")),
        },
        Some(t) if t.starts_with('!') && style == ScalarStyle::Plain => {
            visit_untagged(visitor, text)
        }
        None if style == ScalarStyle::Plain => visit_untagged(visitor, text),
        _ => visitor.visit_str(text),
    }
}
