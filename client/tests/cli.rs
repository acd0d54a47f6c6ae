//! Snapshots of petitctl's help texts and usage errors (`tests/cmd/*.toml`), so that the
//! command-line interface only changes on purpose. Refresh after a deliberate change
//! with `TRYCMD=overwrite cargo test -p petit-client --test cli`.

#[test]
fn cli() {
    trycmd::TestCases::new().case("tests/cmd/*.toml");
}
