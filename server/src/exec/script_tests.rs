//! The quoting of placeholders in scripts: where each one stands, what it becomes, and
//! (when the interpreters are installed) what real `sh`, `bash`, `dash` and `python3`
//! make of hostile values: the literal value, and nothing executed.

use std::collections::BTreeMap;
use std::process::Command;

use super::*;
use crate::core::job::Template;
use crate::exec::substitute::{substitute_script, Scope};

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn finds_the_script_argument() {
    let shell = |index| {
        Some(ScriptArg {
            index,
            offset: 0,
            lang: Lang::Shell,
        })
    };
    let python = |index, offset| {
        Some(ScriptArg {
            index,
            offset,
            lang: Lang::Python,
        })
    };
    let cases: &[(&str, &[&str], Option<ScriptArg>)] = &[
        ("sh", &["-c", "echo"], shell(1)),
        ("/bin/bash", &["-ec", "echo", "zero", "one"], shell(1)),
        ("bash", &["-xc", "echo"], shell(1)),
        ("bash", &["-euo", "pipefail", "-c", "echo"], shell(3)),
        ("bash", &["-o", "pipefail", "-c", "echo"], shell(3)),
        ("bash", &["-c", "-e", "echo"], shell(2)),
        ("bash", &["--norc", "--rcfile", "f", "-c", "echo"], shell(4)),
        ("dash", &["-c", "--", "echo"], shell(2)),
        ("zsh", &["-c", "echo"], shell(1)),
        ("ksh", &["+x", "-c", "echo"], shell(2)),
        ("sh", &["script.sh", "-c"], None),
        ("sh", &["-e", "script.sh"], None),
        ("sh", &["-c"], None),
        ("bash", &[], None),
        ("/usr/bin/env", &["bash", "-c", "echo"], shell(2)),
        ("env", &["-i", "A=1", "sh", "-c", "echo"], shell(4)),
        ("python3", &["-c", "print(1)"], python(1, 0)),
        ("python3.12", &["-u", "-c", "print(1)"], python(2, 0)),
        ("python", &["-uc", "print(1)"], python(1, 0)),
        ("python3", &["-cprint(1)"], python(0, 2)),
        ("python3", &["-W", "ignore", "-c", "x"], python(3, 0)),
        ("python3", &["-m", "http.server", "-c", "x"], None),
        ("python3", &["script.py", "-c", "x"], None),
        ("pypy3", &["-c", "x"], python(1, 0)),
        ("echo", &["-c", "x"], None),
        ("pythonic", &["-c", "x"], None),
        ("shx", &["-c", "x"], None),
    ];
    for (program, argv, want) in cases {
        assert_eq!(
            script_arg(program, &args(argv)),
            *want,
            "{program} {argv:?}"
        );
    }
}

/// The context of the single `@` of each shell template (it marks the hole).
fn shell_context(template: &str) -> Context {
    let at = template.find('@').expect("a hole");
    let script = template.replacen('@', "", 1);
    contexts(Lang::Shell, &script, &[at]).remove(0)
}

#[test]
fn shell_contexts() {
    use Context::*;
    let cases: &[(&str, Context)] = &[
        ("echo @", ShellUnquoted),
        ("echo x@y", ShellUnquoted),
        ("echo '@'", ShellSingle),
        ("echo 'a b @ c'", ShellSingle),
        ("echo \"@\"", ShellDouble),
        ("echo \"it's @\"", ShellDouble),
        ("echo $'a\\n@'", ShellDollarSingle),
        ("echo \"$(echo @)\"", ShellUnquoted),
        ("echo \"$(echo \"@\")\"", ShellDouble),
        ("echo \"$(echo ')' \"@\")\"", ShellDouble),
        ("echo \"$( (echo a) ; echo @)\"", ShellUnquoted),
        ("echo $(echo \"a\") \"@\"", ShellDouble),
        ("# it's\necho @", ShellUnquoted),
        ("echo a # it's @", ShellComment),
        ("echo a#b '@'", ShellSingle),
        ("echo $# '@'", ShellSingle),
        ("echo $((1 + @))", ShellArith),
        ("((x = @))", ShellArith),
        ("echo $((1 << 2)) @", ShellUnquoted),
        ("cat <<< @", ShellUnquoted),
        ("echo \\\"@", ShellUnquoted),
        ("echo \\@", Unsupported("right after a backslash")),
        ("echo \"\\@\"", Unsupported("right after a backslash")),
        (
            "echo `echo @`",
            Unsupported("inside backticks (write $(...) instead)"),
        ),
        (
            "echo ${X:-@}",
            Unsupported("inside a shell ${...} expansion"),
        ),
        (
            "echo \"${X:-@}\"",
            Unsupported("inside a shell ${...} expansion"),
        ),
        ("echo ${X} @", ShellUnquoted),
        ("echo \"${X}\" '@'", ShellSingle),
        ("echo ${#X} @", ShellUnquoted),
        (
            "cat <<EOF\n@\nEOF",
            Unsupported(
                "inside a here-document (read the exported $PETIT_PARAM_… variable instead)",
            ),
        ),
        (
            "cat <<'EOF'\na @\nEOF\necho",
            Unsupported(
                "inside a here-document (read the exported $PETIT_PARAM_… variable instead)",
            ),
        ),
        ("cat <<EOF\nit's\nEOF\necho \"@\"", ShellDouble),
        ("cat <<-\"E F\"\n\tx\n\tE F\necho '@'", ShellSingle),
        ("cat <<EOF; echo '@'\nbody\nEOF", ShellSingle),
        (
            "x=$(case a in a) echo;; esac); echo @",
            Unsupported("after a `case` inside $(...) (use an if, or a function)"),
        ),
        ("case a in a) echo \"@\";; esac", ShellDouble),
        ("echo ')' \"(\" @", ShellUnquoted),
    ];
    for (template, want) in cases {
        assert_eq!(shell_context(template), *want, "{template:?}");
    }
}

fn python_context(template: &str) -> Context {
    let at = template.find('@').expect("a hole");
    let script = template.replacen('@', "", 1);
    contexts(Lang::Python, &script, &[at]).remove(0)
}

#[test]
fn python_contexts() {
    use Context::*;
    let string = |quote, triple, prefix: &str| {
        PyString(super::PyString {
            quote,
            triple,
            prefix: prefix.to_string(),
            bytes: prefix.to_ascii_lowercase().contains('b'),
            formatted: prefix.to_ascii_lowercase().contains('f'),
        })
    };
    let cases: &[(&str, Context)] = &[
        ("print(@)", PyCode),
        ("x = @ # it's", PyCode),
        ("# it's @", PyCode),
        ("print('@')", string('\'', false, "")),
        ("print(\"a @ b\")", string('"', false, "")),
        ("print(r'@')", string('\'', false, "r")),
        ("print(Rb'@')", string('\'', false, "Rb")),
        ("print(f'{x} @')", string('\'', false, "f")),
        ("x = a or'@'", string('\'', false, "")),
        ("print('''a\n@''')", string('\'', true, "")),
        (
            "print(\"\"\"it's \"@\"\"\")",
            Unsupported("right after a quote inside a triple-quoted string"),
        ),
        ("print('it\\'s') ; print(@)", PyCode),
        ("print('\\@')", Unsupported("right after a backslash")),
        (
            "print(f'{@}')",
            Unsupported("inside an f-string's {...} field"),
        ),
        (
            "print(f'{x:{@}}')",
            Unsupported("inside an f-string's {...} field"),
        ),
        ("print(f'{{@}}')", string('\'', false, "f")),
        ("print(f'{\"}\"}', @)", PyCode),
        ("print(f\"{'a'}\" + '@')", string('\'', false, "")),
    ];
    for (template, want) in cases {
        assert_eq!(python_context(template), *want, "{template:?}");
    }
}

/// Values meant to break out of whatever quoting surrounds them.
const HOSTILE: &[&str] = &[
    "$(touch PWNED)",
    "`touch PWNED`",
    "; touch PWNED",
    "'; touch PWNED; '",
    "\"; touch PWNED; \"",
    "\\",
    "a\\'b",
    "line one\nline two; touch PWNED",
    "ünïcødé ✓ 𝄞",
    "",
    " spaced  out ",
    "$HOME ${HOME} $((1+1)) !! * ?",
    "'\"'\"",
    "\"+__import__('os').system('touch PWNED')+\"",
    "'+__import__('os').system('touch PWNED')+'",
    "\\'); __import__('os').system('touch PWNED') #",
    "{x} {{",
];

#[test]
fn renders_literals() {
    let cases: &[(Context, &str, &str)] = &[
        (Context::ShellUnquoted, "a'b", r"'a'\''b'"),
        (Context::ShellUnquoted, "", "''"),
        (Context::ShellSingle, "a'b", r"a'\''b"),
        (Context::ShellDouble, "$x", "\"'$x'\""),
        (Context::ShellDollarSingle, "x", "''x'$'"),
        (Context::ShellComment, "a\nb", "'a b'"),
        (Context::ShellArith, "-42", "-42"),
        (
            Context::PyCode,
            "a'\"\\\n\u{e9}\u{1d11e}",
            r#"('a\'\"\\\n\xe9\U0001d11e')"#,
        ),
        (
            Context::PyString(PyString {
                quote: '"',
                triple: false,
                prefix: "rb".into(),
                bytes: true,
                formatted: false,
            }),
            "é'",
            r#"" b'\xc3\xa9\'' rb""#,
        ),
    ];
    for (context, value, want) in cases {
        assert_eq!(
            render(context, value).as_deref(),
            Ok(*want),
            "{context:?} {value:?}"
        );
    }
    for value in ["1.5", "", "-", "1+1", "a[$(touch PWNED)]"] {
        assert!(render(&Context::ShellArith, value).is_err(), "{value}");
    }
    for value in HOSTILE {
        let literal = render(&Context::PyCode, value).unwrap();
        let inner = &literal[2..literal.len() - 2];
        assert!(
            !inner.contains(['\'', '"', '\n', '\r'])
                || inner.contains("\\'")
                || inner.contains("\\\""),
            "{literal}"
        );
        assert!(literal.is_ascii(), "{literal}");
    }
}

/// Runs `program args` in a fresh directory; `None` when the program is not installed.
/// Returns stdout and whether anything appeared in the directory.
fn run(program: &str, argv: &[String]) -> Option<(String, bool)> {
    let dir = tempfile::tempdir().unwrap();
    let out = match Command::new(program)
        .args(argv)
        .current_dir(dir.path())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("{program}: {e}"),
    };
    let created = std::fs::read_dir(dir.path()).unwrap().next().is_some();
    Some((String::from_utf8_lossy(&out.stdout).into_owned(), created))
}

fn substituted(program: &str, argv: &[&str], value: &str) -> Vec<String> {
    let argv = args(argv);
    let script = script_arg(program, &argv).expect("a script argument");
    let config = BTreeMap::from([("x".to_string(), value.to_string())]);
    let outputs = BTreeMap::new();
    let scope = Scope {
        config: &config,
        outputs: &outputs,
        run_id: "r",
        job_id: "j",
    };
    let mut argv = argv;
    let template = Template::parse(argv[script.index].as_str());
    argv[script.index] = substitute_script(&template, script, &scope).unwrap();
    argv
}

#[test]
fn real_shells_print_the_value_and_run_nothing() {
    // Each script prints the value between brackets, once.
    // Each with what it prints for a value.
    type Printed = fn(&str) -> String;
    let scripts: &[(&str, Printed)] = &[
        ("printf '[%s]' ${params.x}", |v| format!("[{v}]")),
        ("printf '[%s]' \"${params.x}\"", |v| format!("[{v}]")),
        ("printf '[%s]' '${params.x}'", |v| format!("[{v}]")),
        ("printf '[%s]' \"a${params.x}b\"", |v| format!("[a{v}b]")),
        ("printf '[%s]' \"$(printf %s \"${params.x}\")\"", |v| {
            // Command substitution drops trailing newlines.
            format!("[{}]", v.trim_end_matches('\n'))
        }),
        ("x=${params.x}; printf '[%s]' \"$x\"", |v| format!("[{v}]")),
        ("printf '[%s]' it\\'s${params.x} # ${params.x} it's", |v| {
            format!("[it's{v}]")
        }),
    ];
    let shells: &[(&str, &[&str])] = &[
        ("sh", &["-c"]),
        ("bash", &["-euo", "pipefail", "-c"]),
        ("dash", &["-ec"]),
        ("zsh", &["-c"]),
    ];
    // All scripts in one, one line each: one process per shell and value.
    let script: String = scripts.iter().map(|(s, _)| format!("{s}\n")).collect();
    let mut ran = 0;
    for (shell, options) in shells {
        for value in HOSTILE {
            let mut argv = options.to_vec();
            argv.push(&script);
            let argv = substituted(shell, &argv, value);
            let Some((stdout, created)) = run(shell, &argv) else {
                continue;
            };
            ran += 1;
            let want: String = scripts.iter().map(|(_, want)| want(value)).collect();
            assert_eq!(stdout, want, "{shell} {argv:?}");
            assert!(!created, "{shell} {argv:?} created a file");
        }
    }
    assert!(ran > 0, "no shell found");
    // `$'...'` exists in bash, zsh and ksh.
    for value in HOSTILE {
        let argv = substituted("bash", &["-c", "printf '[%s]' $'\\t${params.x}'"], value);
        if let Some((stdout, created)) = run("bash", &argv) {
            assert_eq!(stdout, format!("[\t{value}]"), "{argv:?}");
            assert!(!created);
        }
    }
}

#[test]
fn real_python_prints_the_value_and_runs_nothing() {
    let scripts: &[&str] = &[
        "import sys; sys.stdout.write('[' + ${params.x} + ']')",
        "import sys; sys.stdout.write('[${params.x}]')",
        "import sys; sys.stdout.write(\"[${params.x}]\")",
        "import sys; sys.stdout.write('''[${params.x}]''')",
        "import sys; sys.stdout.write(r'[${params.x}]')",
        "import sys; x = 1; sys.stdout.write(f'[${params.x}]{{}}'[:-2])",
        "import sys; sys.stdout.write(b'[${params.x}]'.decode())",
        "import sys  # it's ${params.x}\nsys.stdout.write('[' + ${params.x} + ']')",
    ];
    let script = scripts.join("\n");
    for value in HOSTILE {
        let argv = substituted("python3", &["-c", &script], value);
        let Some((stdout, created)) = run("python3", &argv) else {
            return;
        };
        assert_eq!(
            stdout,
            format!("[{value}]").repeat(scripts.len()),
            "{argv:?}"
        );
        assert!(!created, "{argv:?} created a file");
    }
}

#[test]
fn linear_in_nesting_and_placeholders() {
    // 100,000 nested `$(` with a placeholder in each: quadratic work would not finish.
    let n = 100_000;
    let script = "$(".repeat(n) + &")".repeat(n);
    let holes: Vec<usize> = (0..n).map(|i| 2 * i + 2).collect();
    let found = contexts(Lang::Shell, &script, &holes);
    assert_eq!(found.len(), n);
    assert_eq!(found[n - 1], Context::ShellUnquoted);
    let script = "f'{".repeat(n);
    let holes: Vec<usize> = (0..n).map(|i| 3 * i + 3).collect();
    assert_eq!(contexts(Lang::Python, &script, &holes).len(), n);
}
