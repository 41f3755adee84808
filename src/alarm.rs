//! Memory and disk alarms, RabbitMQ style: a monitor samples the process's resident memory and
//! the data directory's free space once a second; while either is past its limit, connections
//! that publish are blocked (see `connection`), consumers go on, so the alarm can clear.
//! Before that, past the paging ratio of the memory limit, queues spill what they cannot page
//! to the store (`queue::spill`), as RabbitMQ pages at vm_memory_high_watermark_paging_ratio.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;

pub const MEMORY: u8 = 1;
pub const DISK: u8 = 2;

/// `--vm-memory-high-watermark`: a fraction of the machine's memory (RabbitMQ 3.10's default is
/// 0.4) or an absolute size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Watermark {
    Fraction(f64),
    Absolute(u64),
}

impl Default for Watermark {
    fn default() -> Self {
        Watermark::Fraction(0.4)
    }
}

impl FromStr for Watermark {
    type Err = String;

    /// `0.4` (a fraction, at most 1), or a size such as `256MiB`, `1GB`, `536870912`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.contains('.') || s.parse::<f64>().is_ok_and(|f| f <= 1.0) {
            let f: f64 = s
                .parse()
                .map_err(|_| format!("not a fraction or size: {s}"))?;
            if !(0.0..=1.0).contains(&f) {
                return Err(format!("a fraction must be between 0 and 1: {s}"));
            }
            return Ok(Watermark::Fraction(f));
        }
        parse_size(s).map(Watermark::Absolute)
    }
}

/// `50MB`, `1GiB`, `1000000`: kB/MB/GB are powers of 10, KiB/MiB/GiB of 2 (RabbitMQ's units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("not a size: {s}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err(format!("unknown unit in {s} (kB, MB, GB, KiB, MiB, GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size too large: {s}"))
}

/// The broker's alarms and their limits.
#[derive(Debug)]
pub struct Alarms {
    state: watch::Sender<u8>,
    /// Resident bytes above which the memory alarm is set.
    memory_limit: AtomicU64,
    /// Free bytes below which the disk alarm is set.
    pub disk_free_limit: u64,
    /// Memory is past `paging_ratio` of the limit: queues spill (`queue::SpillTo`).
    pub pressure: Arc<AtomicBool>,
    /// RabbitMQ's vm_memory_high_watermark_paging_ratio (0.5); above 1, only past the alarm.
    paging_ratio: f64,
    /// Last samples, for the management API.
    pub memory_used: AtomicU64,
    pub disk_free: AtomicU64,
    last: AtomicU8,
}

impl Alarms {
    pub fn new(watermark: Watermark, disk_free_limit: u64, paging_ratio: f64) -> Self {
        let a = Alarms {
            state: watch::Sender::new(0),
            pressure: Default::default(),
            paging_ratio,
            memory_limit: AtomicU64::new(0),
            disk_free_limit,
            memory_used: AtomicU64::new(0),
            disk_free: AtomicU64::new(u64::MAX),
            last: AtomicU8::new(0),
        };
        a.set_watermark(watermark);
        a
    }

    /// Change the memory limit at run time (rabbitmqctl set_vm_memory_high_watermark).
    pub fn set_watermark(&self, w: Watermark) {
        let limit = match w {
            Watermark::Absolute(b) => b,
            Watermark::Fraction(f) => (total_memory() as f64 * f) as u64,
        };
        self.memory_limit.store(limit, Ordering::Relaxed);
    }

    pub fn memory_limit(&self) -> u64 {
        self.memory_limit.load(Ordering::Relaxed)
    }

    /// The alarms in effect (`MEMORY | DISK`).
    pub fn active(&self) -> u8 {
        *self.state.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<u8> {
        self.state.subscribe()
    }

    /// Take one sample and raise or clear alarms.
    pub fn check(&self, data_dir: Option<&std::path::Path>) {
        let used = resident_memory();
        self.memory_used.store(used, Ordering::Relaxed);
        let mut on = 0;
        let pressure = used as f64 >= self.memory_limit() as f64 * self.paging_ratio;
        if self.pressure.swap(pressure, Ordering::Relaxed) != pressure {
            tracing::info!(
                memory_used = used,
                memory_limit = self.memory_limit(),
                "queues {} spilling messages to disk",
                if pressure { "start" } else { "stop" }
            );
        }
        if used > self.memory_limit() {
            on |= MEMORY;
        }
        if let Some(free) = data_dir.and_then(|d| fs2::available_space(d).ok()) {
            self.disk_free.store(free, Ordering::Relaxed);
            if free < self.disk_free_limit {
                on |= DISK;
            }
        }
        let was = self.last.swap(on, Ordering::Relaxed);
        if was != on {
            for (bit, what) in [(MEMORY, "memory"), (DISK, "disk")] {
                match (was & bit != 0, on & bit != 0) {
                    (false, true) => tracing::warn!(
                        resource = what,
                        memory_used = used,
                        memory_limit = self.memory_limit(),
                        "{what} resource limit alarm set; publishers are blocked"
                    ),
                    (true, false) => {
                        tracing::info!(resource = what, "{what} resource limit alarm cleared")
                    }
                    _ => {}
                }
            }
            self.state.send_replace(on);
        }
    }
}

/// RabbitMQ's reason text for connection.blocked.
pub fn reason(active: u8) -> String {
    let mut parts = Vec::new();
    if active & MEMORY != 0 {
        parts.push("low on memory");
    }
    if active & DISK != 0 {
        parts.push("low on disk");
    }
    parts.join(" & ")
}

/// Sample once a second while the alarms (the broker) live; `data_dir` is checked for space.
pub async fn monitor(alarms: Weak<Alarms>, data_dir: Option<PathBuf>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(a) = alarms.upgrade() else { return };
        a.check(data_dir.as_deref());
    }
}

fn meminfo_kib(file: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resident memory of this process, in bytes.
pub fn resident_memory() -> u64 {
    meminfo_kib("/proc/self/status", "VmRSS:").map_or(0, |k| k * 1024)
}

/// The machine's memory, or the cgroup's limit if lower (containers).
pub fn total_memory() -> u64 {
    let total = meminfo_kib("/proc/meminfo", "MemTotal:").map_or(u64::MAX, |k| k * 1024);
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    total.min(cgroup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_and_sizes() {
        assert_eq!("0.4".parse(), Ok(Watermark::Fraction(0.4)));
        assert_eq!("1".parse(), Ok(Watermark::Fraction(1.0)));
        assert_eq!("256MiB".parse(), Ok(Watermark::Absolute(256 << 20)));
        assert_eq!("2GB".parse(), Ok(Watermark::Absolute(2_000_000_000)));
        assert_eq!("536870912".parse(), Ok(Watermark::Absolute(536_870_912)));
        assert!("1.5".parse::<Watermark>().is_err());
        assert!("12XB".parse::<Watermark>().is_err());
        assert_eq!(parse_size("50MB"), Ok(50_000_000));
        assert_eq!(reason(MEMORY | DISK), "low on memory & low on disk");
    }
}
