//! Links petitd with packed relative relocations (`-z pack-relative-relocs`, DT_RELR)
//! where the C library it will run on supports them.
//!
//! A position-independent executable carries one relocation per pointer in its data
//! (about 46,000 for petitd: vtables, string tables, descriptors), 24 bytes each in
//! `.rela.dyn`, which the loader reads at every start and which then stay resident:
//! 1.1 MB of petitd's 17 MB. DT_RELR packs them into a bitmap (20 KB here), the
//! format glibc reads since 2.36. A binary with DT_RELR needs the symbol version
//! `GLIBC_ABI_DT_RELR` and will not start on an older glibc, so the flag is given only
//! when building for the machine the build runs on and that machine's glibc defines
//! the version (cross builds and other C libraries keep the classic relocations).
//! `PETIT_RELR=0` turns it off, `PETIT_RELR=1` forces it on (a cross build for a known
//! glibc ≥ 2.36).
//!
//! It also lays out petitd's code so that what it runs sits together (`hot-text.txt`,
//! written by `hot-text.sh`): the functions of start-up, of the API's reads, then of
//! runs, ahead of the rest. The kernel maps a binary's code 64 KiB around each page
//! touched, so with the ~3,000 functions petitd runs spread over its 12 MB of code
//! nearly all of it was resident; together, they take 5 MiB. A linker script puts the
//! listed sections (`.text.NAME`; rustc and cc give each function its own) first in
//! an output section of their own, before `.text`; a name that no longer exists
//! matches nothing, a new function goes to `.text` as before. Release builds (and
//! benches) only, for Linux; `PETIT_HOT_TEXT=0` turns it off, and so does a mold link
//! (mold reads no `SECTIONS`).

use std::env;
use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=PETIT_RELR");
    let wanted = match env::var("PETIT_RELR").as_deref() {
        Ok("0") => false,
        Ok("1") => true,
        _ => native_glibc_has_relr(),
    };
    if wanted {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }

    println!("cargo:rerun-if-changed=hot-text.txt");
    println!("cargo:rerun-if-env-changed=PETIT_HOT_TEXT");
    if hot_text_wanted() {
        let list = std::fs::read_to_string("hot-text.txt").expect("server/hot-text.txt");
        let out = Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("hot-text.ld");
        std::fs::write(&out, hot_text_script(&list)).expect("write the hot-text linker script");
        println!("cargo:rustc-link-arg-bin=petitd=-Wl,-T,{}", out.display());
    }
}

fn hot_text_wanted() -> bool {
    if env::var("PETIT_HOT_TEXT").as_deref() == Ok("0")
        || env::var("PROFILE").as_deref() != Ok("release")
        || env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
    {
        return false;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    !flags.contains("mold")
}

/// The linker script: one output section `.text.hot` ahead of `.text`, holding the
/// listed functions tier by tier (`# tier:` lines part them). Within a tier they keep
/// the order the compiler emitted them in (one input section description a tier), so
/// that a function stays beside the callees it was compiled with. LLVM names a
/// function it expects to run rarely `.text.unlikely.NAME`, so each name is matched in
/// both forms. A line that is not a plain section-name pattern (letters, digits,
/// `_ . $ *`) is skipped.
fn hot_text_script(list: &str) -> String {
    let mut tiers: Vec<Vec<&str>> = vec![Vec::new()];
    for name in list.lines().map(str::trim) {
        if name.starts_with("# tier:") {
            tiers.push(Vec::new());
        }
        let plain = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.$*".contains(&b));
        if !name.is_empty() && plain {
            tiers.last_mut().expect("a tier").push(name);
        }
    }
    let mut script = String::from("SECTIONS {\n  .text.hot : {\n");
    for tier in tiers.iter().filter(|tier| !tier.is_empty()) {
        script.push_str("    *(\n");
        for name in tier {
            let _ = writeln!(script, "      .text.{name} .text.unlikely.{name}");
        }
        script.push_str("    )\n");
    }
    script.push_str("  }\n}\nINSERT BEFORE .text;\n");
    script
}

/// Whether the target is this machine's, a glibc one, and its glibc reads DT_RELR.
fn native_glibc_has_relr() -> bool {
    let target = env::var("TARGET").unwrap_or_default();
    let host = env::var("HOST").unwrap_or_default();
    if target != host || env::var("CARGO_CFG_TARGET_ENV").as_deref() != Ok("gnu") {
        return false;
    }
    // The build script runs on this glibc: its own mapping names the file, wherever
    // the distribution keeps it.
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return false;
    };
    let Some(libc) = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            path.rsplit('/')
                .next()
                .is_some_and(|name| name.starts_with("libc.so") || name.starts_with("libc-2."))
        })
    else {
        return false;
    };
    std::fs::read(libc).is_ok_and(|bytes| {
        const VERSION: &[u8] = b"GLIBC_ABI_DT_RELR";
        bytes.windows(VERSION.len()).any(|w| w == VERSION)
    })
}
