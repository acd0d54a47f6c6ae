//! Schedules (cron, `@every`, shorthands) and durations.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = petit_server::core::Schedule::parse(&text, chrono_tz::Tz::Europe__Paris);
    let _ = petit_server::core::schedule::parse_duration(&text);
});
