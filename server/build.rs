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

use std::env;

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
