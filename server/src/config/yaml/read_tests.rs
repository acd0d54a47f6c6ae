use super::*;
use crate::config::de::StrOrMap;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Outer {
    name: String,
    #[serde(default, deserialize_with = "lenient")]
    inner: Vec<Inner>,
    #[serde(default, deserialize_with = "lenient")]
    either: Option<StrOrMap<Inner>>,
    #[serde(default, deserialize_with = "lenient")]
    tagged: Option<Tagged>,
    #[serde(default, deserialize_with = "lenient")]
    count: Option<u32>,
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

fn errors(text: &str) -> (Option<Outer>, Vec<(usize, String)>) {
    let doc = Doc::parse(text).unwrap();
    let reading = read::<Outer>(&doc, FilePath::new("/jobs/t.yaml"));
    let errors = reading
        .errors
        .into_iter()
        .map(|e| (e.line.unwrap(), e.message))
        .collect();
    (reading.value, errors)
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
            count: None,
        })
    );
    let want = [
        (
            2,
            "unknown field `nmae`, expected one of `name`, `inner`, `either`, `tagged`, \
             `count`",
        ),
        (5, "inner[0]: unknown field `b`, expected `a` or `type`"),
        (7, "inner[1]: unknown field `c`, expected `a` or `type`"),
        (8, "either: unknown field `d`, expected `a` or `type`"),
        (9, "tagged: unknown field `y`, expected `x`"),
    ];
    let got: Vec<(usize, &str)> = errors.iter().map(|(l, m)| (*l, m.as_str())).collect();
    assert_eq!(got, want);
}

#[test]
fn a_lenient_field_of_the_wrong_type_reads_as_absent() {
    let text = "name: n\ncount: many\ninner: [{a: x}]\ntagged: plain\n";
    let (value, errors) = errors(text);
    assert_eq!(
        value,
        Some(Outer {
            name: "n".into(),
            inner: vec![],
            either: None,
            tagged: Some(Tagged::Plain),
            count: None,
        })
    );
    assert_eq!(
        errors,
        [
            (
                2,
                "count: invalid type: string \"many\", expected u32".to_string()
            ),
            (
                3,
                "inner[0].a: invalid type: string \"x\", expected u32".to_string()
            ),
        ]
    );
}

#[test]
fn a_required_field_stops_the_reading() {
    let cases = [
        (
            "name: [n]\nextra: 1\n",
            vec![1],
            "name: invalid type: sequence",
        ),
        (
            "inner: [{a: 1, zz: 2}]\n",
            vec![1, 1],
            "missing field `name`",
        ),
        ("zz: 1\n", vec![1, 1], "missing field `name`"),
    ];
    for (text, lines, last) in cases {
        let (value, errors) = errors(text);
        assert!(value.is_none(), "{text}");
        let got: Vec<usize> = errors.iter().map(|(l, _)| *l).collect();
        assert_eq!(got, lines, "{text}: {errors:?}");
        assert!(
            errors.iter().any(|(_, m)| m.starts_with(last)),
            "{text}: {errors:?}"
        );
    }
}

#[test]
fn scalars_mean_what_serde_yaml_made_of_them() {
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(untagged)]
    enum Any {
        Null(()),
        Bool(bool),
        Int(i64),
        Uint(u64),
        Float(f64),
        Text(String),
    }
    let cases = [
        ("~", Any::Null(())),
        ("null", Any::Null(())),
        ("", Any::Null(())),
        ("true", Any::Bool(true)),
        ("False", Any::Bool(false)),
        ("yes", Any::Text("yes".into())),
        ("on", Any::Text("on".into())),
        ("off", Any::Text("off".into())),
        ("12", Any::Int(12)),
        ("0x1f", Any::Int(31)),
        ("0o17", Any::Int(15)),
        ("0b101", Any::Int(5)),
        ("-0x10", Any::Int(-16)),
        ("+7", Any::Int(7)),
        ("007", Any::Text("007".into())),
        ("1.5", Any::Float(1.5)),
        ("1e3", Any::Float(1000.0)),
        (".inf", Any::Float(f64::INFINITY)),
        ("1_000", Any::Text("1_000".into())),
        ("'12'", Any::Text("12".into())),
        ("\"true\"", Any::Text("true".into())),
        ("!!str 12", Any::Text("12".into())),
        ("!!int '12'", Any::Int(12)),
        ("2024-01-01", Any::Text("2024-01-01".into())),
    ];
    for (text, want) in cases {
        let doc = Doc::parse(text).unwrap();
        let got = read::<Any>(&doc, FilePath::new("x.yaml"));
        assert_eq!(got.value, Some(want), "{text:?}: {:?}", got.errors);
    }
    // Text fields take any scalar as written; numbers take only plain ones.
    let doc = Doc::parse("[5, true, ~, '7']").unwrap();
    let texts = read::<Vec<String>>(&doc, FilePath::new("x.yaml"));
    assert_eq!(
        texts.value,
        Some(vec!["5".into(), "true".into(), "~".into(), "7".into()])
    );
    let doc = Doc::parse("['7']").unwrap();
    let numbers = read::<Vec<u32>>(&doc, FilePath::new("x.yaml"));
    assert_eq!(
        numbers.errors[0].message,
        ".[0]: invalid type: string \"7\", expected u32"
    );
}

#[test]
fn aliases_are_read_and_bounded() {
    let doc = Doc::parse("name: &n x\ninner: [&i {a: 1}, *i]\neither: *n\n").unwrap();
    let reading = read::<Outer>(&doc, FilePath::new("x.yaml"));
    let outer = reading.value.unwrap();
    assert_eq!(outer.inner.len(), 2);
    assert_eq!(outer.either, Some(StrOrMap::Str("x".into())));

    // Nine times nine times... as many levels as needed: refused, quickly.
    let mut bomb = String::from("a: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for level in 1..12 {
        let prev = format!("*a{}", level - 1);
        let refs = [prev.as_str(); 9].join(", ");
        bomb.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    let doc = Doc::parse(&bomb).unwrap();
    let reading = read::<BTreeMapAny>(&doc, FilePath::new("x.yaml"));
    assert!(reading.value.is_none());
    assert!(reading.errors[0]
        .message
        .contains("repetition limit exceeded"));

    // Deep nesting is refused, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let doc = Doc::parse(&deep).unwrap();
    let reading = read::<serde_json::Value>(&doc, FilePath::new("x.yaml"));
    assert!(reading.errors[0]
        .message
        .contains("recursion limit exceeded"));
}

type BTreeMapAny = std::collections::BTreeMap<String, serde_json::Value>;

#[test]
fn unreadable_paths() {
    let doc = Doc::parse("name: n\ncount: x\ninner: [{a: 1}, {a: y}]\nzz: 1\n").unwrap();
    let reading = read::<Outer>(&doc, FilePath::new("x.yaml"));
    let unreadable = reading.unreadable;
    assert!(unreadable.contains("count"));
    assert!(unreadable.contains("inner"));
    assert!(unreadable.contains("inner[1]"));
    assert!(!unreadable.contains("inner[0]"));
    assert!(!unreadable.contains("name"));
    assert!(!unreadable.contains("zz"));
    assert!(!unreadable.contains("coun"));
}
