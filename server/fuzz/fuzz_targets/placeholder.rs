//! The `${...}` lexer.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = petit_server::config::placeholder::tokens(&text);
});
