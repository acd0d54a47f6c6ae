//! The standard `process_*` metrics of a Linux process, read from `/proc/self` at
//! scrape time: CPU time, resident and virtual memory, open and allowed file
//! descriptors, start time.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

#[derive(Debug)]
pub struct ProcessCollector {
    ticks_per_second: f64,
    page_size: f64,
    /// Seconds since the epoch at boot, for the start time.
    boot_time: Option<f64>,
}

impl ProcessCollector {
    pub fn new() -> ProcessCollector {
        use nix::unistd::{sysconf, SysconfVar};
        let ticks = sysconf(SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
        let page = sysconf(SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096);
        let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|stat| {
            stat.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        ProcessCollector {
            ticks_per_second: ticks as f64,
            page_size: page as f64,
            boot_time,
        }
    }
}

/// The fields of `/proc/self/stat` this collector uses.
#[derive(Debug, PartialEq)]
struct Stat {
    utime: u64,
    stime: u64,
    start_ticks: u64,
    vsize: u64,
    rss_pages: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) may hold spaces and parentheses,
/// so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field N is at index N - 3.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        start_ticks: field(22)?,
        vsize: field(23)?,
        rss_pages: field(24)?,
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        if let Some(stat) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .as_deref()
            .and_then(parse_stat)
        {
            let cpu = (stat.utime + stat.stime) as f64 / self.ticks_per_second;
            let metric = encoder.encode_descriptor(
                "process_cpu",
                "User and system CPU time spent",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            ConstCounter::new(cpu).encode(metric)?;
            let gauges = [
                (
                    "process_resident_memory",
                    "Resident memory size",
                    stat.rss_pages as f64 * self.page_size,
                ),
                (
                    "process_virtual_memory",
                    "Virtual memory size",
                    stat.vsize as f64,
                ),
            ];
            for (name, help, value) in gauges {
                let metric =
                    encoder.encode_descriptor(name, help, Some(&Unit::Bytes), MetricType::Gauge)?;
                ConstGauge::new(value).encode(metric)?;
            }
            if let Some(boot) = self.boot_time {
                let metric = encoder.encode_descriptor(
                    "process_start_time",
                    "Start time of the process since the Unix epoch",
                    Some(&Unit::Seconds),
                    MetricType::Gauge,
                )?;
                ConstGauge::new(boot + stat.start_ticks as f64 / self.ticks_per_second)
                    .encode(metric)?;
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            let metric = encoder.encode_descriptor(
                "process_open_fds",
                "Open file descriptors",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(dir.count() as i64).encode(metric)?;
        }
        if let Ok((soft, _)) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        {
            let metric = encoder.encode_descriptor(
                "process_max_fds",
                "Most open file descriptors allowed",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::try_from(soft).unwrap_or(i64::MAX)).encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let text = "1234 (petit d) (x) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 \
                    5000 123456789 4321 18446744073709551615 1 1 0 0 0 0 0 4096 17479 0 0 0 17 1 0 0";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                utime: 250,
                stime: 50,
                start_ticks: 5000,
                vsize: 123456789,
                rss_pages: 4321,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn reads_this_process() {
        let text = std::fs::read_to_string("/proc/self/stat").unwrap();
        let stat = parse_stat(&text).expect("this process's stat");
        assert!(stat.rss_pages > 0 && stat.vsize > 0);
    }
}
