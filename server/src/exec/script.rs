//! Which argument of a command is a script (`sh|bash|dash|zsh|ksh … -c SCRIPT`,
//! `python3 -c SCRIPT`, a `type: python` task with `inline: true`), where each
//! placeholder stands in it (`shell.rs`, `python.rs`), and the quoted literal of that
//! language a value becomes there, so that a value is data, never code.

use std::path::Path;

use super::{python, shell};

/// The language of a script argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Shell,
    Python,
}

impl Lang {
    pub fn name(self) -> &'static str {
        match self {
            Lang::Shell => "shell script",
            Lang::Python => "Python script",
        }
    }
}

/// The argument of a command line that holds a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptArg {
    /// Index into the arguments (argv without the program).
    pub index: usize,
    /// Bytes of the argument before the script (`-c` in Python's `-cSCRIPT`).
    pub offset: usize,
    pub lang: Lang,
}

/// A string literal of a Python script, as opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyString {
    pub quote: char,
    pub triple: bool,
    /// As written (`rb`, `F`...), to reopen the string with.
    pub prefix: String,
    pub bytes: bool,
    pub formatted: bool,
}

/// Where a placeholder stands in a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Context {
    ShellUnquoted,
    ShellSingle,
    ShellDollarSingle,
    ShellDouble,
    ShellComment,
    /// Inside `$((...))`: only an integer can be substituted there.
    ShellArith,
    PyCode,
    PyString(PyString),
    /// A place the lexer cannot vouch for: substituting there is refused, with why.
    Unsupported(&'static str),
}

const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "ash", "yash",
];

/// The script argument of `program args…`, if the program is a shell or Python given
/// one with `-c`. `env [NAME=VALUE…] PROGRAM …` is looked through.
pub fn script_arg<S: AsRef<str>>(program: &str, args: &[S]) -> Option<ScriptArg> {
    let name = Path::new(program).file_name()?.to_str()?;
    if name == "env" {
        let skip = args
            .iter()
            .map(AsRef::as_ref)
            .take_while(|&a| a == "-i" || a == "-" || is_assignment(a))
            .count();
        let (program, rest) = args[skip..].split_first()?;
        return script_arg(program.as_ref(), rest).map(|s| ScriptArg {
            index: s.index + skip + 1,
            ..s
        });
    }
    if SHELLS.contains(&name) {
        return shell_script(args);
    }
    let version = name
        .strip_prefix("python")
        .or_else(|| name.strip_prefix("pypy"))?;
    if version.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return python_script(args);
    }
    None
}

fn is_assignment(arg: &str) -> bool {
    match arg.split_once('=') {
        Some((name, _)) => {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// POSIX shells: with `c` among the options, the script is the first operand. Options
/// `o`/`O` (`-o pipefail`, `-euo pipefail`) and bash's `--rcfile`/`--init-file` take
/// the next argument.
fn shell_script<S: AsRef<str>>(args: &[S]) -> Option<ScriptArg> {
    let mut has_c = false;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_ref();
        if arg == "--" || arg == "-" {
            i += 1;
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            if matches!(long, "rcfile" | "init-file") {
                i += 1;
            }
        } else if (arg.starts_with('-') || arg.starts_with('+')) && arg.len() > 1 {
            for c in arg[1..].chars() {
                match c {
                    'c' => has_c = true,
                    'o' | 'O' => i += 1,
                    _ => {}
                }
            }
        } else {
            break;
        }
        i += 1;
    }
    (has_c && i < args.len()).then_some(ScriptArg {
        index: i,
        offset: 0,
        lang: Lang::Shell,
    })
}

/// Python: `-c` ends the options and takes the rest of its argument or the next one;
/// `-m`, a script path or `-` mean no inline script; `-W`/`-X` take a value.
fn python_script<S: AsRef<str>>(args: &[S]) -> Option<ScriptArg> {
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_ref();
        if arg == "--" || arg == "-" || !arg.starts_with('-') {
            return None;
        }
        if arg.starts_with("--") {
            if arg == "--check-hash-based-pycs" {
                i += 1;
            }
            i += 1;
            continue;
        }
        for (at, c) in arg.char_indices().skip(1) {
            let rest = at + c.len_utf8();
            match c {
                'c' if rest < arg.len() => {
                    return Some(ScriptArg {
                        index: i,
                        offset: rest,
                        lang: Lang::Python,
                    })
                }
                'c' => {
                    return (i + 1 < args.len()).then_some(ScriptArg {
                        index: i + 1,
                        offset: 0,
                        lang: Lang::Python,
                    })
                }
                'm' => return None,
                'W' | 'X' => {
                    if rest == arg.len() {
                        i += 1;
                    }
                    break;
                }
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// The context of each hole (ascending byte offsets) of a script in `lang`.
pub fn contexts(lang: Lang, script: &str, holes: &[usize]) -> Vec<Context> {
    match lang {
        Lang::Shell => shell::contexts(script, holes),
        Lang::Python => python::contexts(script, holes),
    }
}

/// What `value` becomes at a placeholder in `context`: a quoted literal of the
/// script's language (for a shell's "..." or a Python string: the string closed, the
/// literal, the string reopened), or why it cannot be substituted there.
pub fn render(context: &Context, value: &str) -> Result<String, String> {
    Ok(match context {
        Context::ShellUnquoted => single_quoted(value),
        Context::ShellSingle => value.replace('\'', r"'\''"),
        Context::ShellDollarSingle => format!("'{}$'", single_quoted(value)),
        Context::ShellDouble => format!("\"{}\"", single_quoted(value)),
        // A comment ends at a line break: none may reach it.
        Context::ShellComment => single_quoted(&value.replace(['\n', '\r'], " ")),
        Context::ShellArith => {
            let digits = value.strip_prefix('-').unwrap_or(value);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "the value {value:?} is not an integer, and inside a shell arithmetic \
                     expression a value is evaluated as code"
                ));
            }
            value.to_string()
        }
        // In parentheses, so that no quote written beside it merges with its own.
        Context::PyCode => format!("({})", python::str_literal(value)),
        Context::PyString(s) => {
            let quotes = if s.triple { 3 } else { 1 };
            let close: String = std::iter::repeat_n(s.quote, quotes).collect();
            let literal = if s.bytes {
                python::bytes_literal(value)
            } else {
                python::str_literal(value)
            };
            // Spaced, so that no quote of the string merges with the literal's (`''`
            // beside `'` would open a triple-quoted string).
            format!("{close} {literal} {}{close}", s.prefix)
        }
        Context::Unsupported(why) => return Err(format!("it stands {why}")),
    })
}

/// POSIX single quotes: everything literal, `'` written `'\''`.
fn single_quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
#[path = "script_tests.rs"]
mod tests;
