//! A job file and a `petit.yaml`: an error or a job, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let global = petit_server::config::GlobalConfig::default();
    let _ = petit_server::config::parse_job(&text, std::path::Path::new("fuzz.yaml"), &global);
    let _ = petit_server::config::GlobalConfig::parse(&text, std::path::Path::new("petit.yaml"));
});
