//! Colour, only where a person reads it: a terminal, with `NO_COLOR` unset; each
//! [`Tone`] of the vocabulary as an ANSI colour.

use std::io::IsTerminal;

use crate::vocab::Tone;

/// The SGR parameters of a tone; `None` for no colour.
fn sgr(tone: Tone) -> Option<&'static str> {
    match tone {
        Tone::Good => Some("32"),
        Tone::Bad => Some("31"),
        Tone::Warn => Some("33"),
        Tone::Active => Some("36"),
        Tone::Dim => Some("2"),
        Tone::Plain => None,
    }
}

/// Whether stdout should get colour: it is a terminal, and `NO_COLOR` is unset or
/// empty (<https://no-color.org>).
pub fn color_enabled() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `text` wrapped in the tone's escape codes when `enabled`, else as is.
pub fn paint(text: &str, tone: Tone, enabled: bool) -> String {
    match sgr(tone).filter(|_| enabled) {
        Some(sgr) => format!("\x1b[{sgr}m{text}\x1b[0m"),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paint_only_when_enabled() {
        let cases = [
            (Tone::Good, false, "ok"),
            (Tone::Good, true, "\x1b[32mok\x1b[0m"),
            (Tone::Dim, true, "\x1b[2mok\x1b[0m"),
            (Tone::Plain, true, "ok"),
        ];
        for (tone, enabled, want) in cases {
            assert_eq!(paint("ok", tone, enabled), want, "{tone:?}");
        }
    }
}
