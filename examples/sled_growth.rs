//! How sled's memory grows with the records it holds (issue 16's choice of message store):
//! inserts N values of V bytes (1 KiB: a whole record, as sled held them; 12: a record's
//! location in a segment file, as it holds them now) plus N 34-byte index entries (0: the index entries alone), flushing
//! every 1,000, and prints the process RSS six times on the way.
//!
//! cargo run --release --example sled_growth -- 3000000 64 1024   (records, cache MiB, V)

fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (n, cache_mib, size) = (arg(1, 3_000_000).max(6), arg(2, 64), arg(3, 1024));
    let dir = std::env::temp_dir().join(format!("sled-growth-{}", std::process::id()));
    let db = sled::Config::new()
        .path(&dir)
        .cache_capacity(cache_mib * 1024 * 1024)
        .flush_every_ms(Some(500))
        .open()?;
    let messages = db.open_tree("messages")?;
    let index = db.open_tree("index")?;
    let body = vec![7u8; size as usize];
    let entry = [3u8; 34];
    for i in 1..=n {
        let mut key = [0u8; 12];
        key[..8].copy_from_slice(&i.to_be_bytes());
        if size > 0 {
            messages.insert(key, &body[..])?;
        }
        index.insert(i.to_be_bytes(), &entry[..])?;
        if i.is_multiple_of(1000) {
            db.flush()?;
        }
        if i.is_multiple_of(n / 6) {
            println!("{i} records: RSS {} MiB", rss_mib());
        }
    }
    drop((messages, index, db));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
