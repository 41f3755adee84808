use super::*;

fn limits(segment_bytes: u64) -> Limits {
    Limits {
        segment_bytes,
        max_bytes: None,
        max_age_ms: None,
    }
}

fn append_n(log: &Log, from: u64, n: u64, ts: u64) {
    for i in from..from + n {
        let body = format!("message {i}");
        let (o, _) = log.append(ts + i, None, body.as_bytes());
        assert_eq!(o, i);
    }
}

fn read_all(log: &Log, from: u64) -> Vec<(u64, String)> {
    let mut cur = Cursor::at(from);
    let mut out = Vec::new();
    loop {
        let batch = log.read(&mut cur, 7, 1 << 20).expect("read");
        if batch.is_empty() {
            return out;
        }
        out.extend(
            batch
                .into_iter()
                .map(|r| (r.offset, String::from_utf8_lossy(&r.message).into_owned())),
        );
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-log-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn appends_become_readable_when_flushed_and_roll_into_segments() {
    let log = Log::open(None, limits(200)).expect("open");
    append_n(&log, 0, 20, 1000);
    assert_eq!(log.written(), 0);
    assert!(read_all(&log, 0).is_empty());
    log.flush().expect("flush");
    assert_eq!((log.written(), log.durable()), (20, 20));
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 20);
    assert_eq!(all[13], (13, "message 13".to_string()));
    assert!(log.stats().segments > 3, "{:?}", log.stats());
    assert_eq!(read_all(&log, 17).first().map(|r| r.0), Some(17));
    assert_eq!(log.offset_at(1005).expect("seek"), 5);
    assert_eq!(log.offset_at(5000).expect("seek"), 20);
    assert_eq!(log.last_chunk(), 0);
}

#[test]
fn retention_drops_whole_old_segments() {
    let log = Log::open(None, limits(200)).expect("open");
    append_n(&log, 0, 40, 1000);
    log.flush().expect("flush");
    let before = log.stats();
    log.set_limits(Limits {
        max_bytes: Some(400),
        ..limits(200)
    });
    log.retain(None);
    let after = log.stats();
    assert!(
        after.bytes <= 400 && after.first > 0,
        "{before:?} {after:?}"
    );
    // A reader behind the first offset moves up to it.
    assert_eq!(read_all(&log, 0).first().map(|r| r.0), Some(after.first));
    log.set_limits(Limits {
        max_age_ms: Some(10),
        ..limits(200)
    });
    log.retain(Some(1_000_000));
    assert_eq!(log.stats().segments, 1, "the active segment stays");
}

#[test]
fn reopening_keeps_everything_and_cuts_a_torn_tail() {
    let dir = temp_dir("torn");
    {
        let log = Log::open(Some(dir.clone()), limits(300)).expect("open");
        append_n(&log, 0, 30, 1000);
        log.flush().expect("flush");
    }
    // A crash in the middle of the next write: half a record at the end of the last segment.
    let mut last: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    last.sort();
    let last = last.pop().expect("a segment");
    let mut torn = Vec::new();
    segment::encode(&mut torn, 30, 2000, None, b"never confirmed");
    let mut bytes = std::fs::read(&last).expect("read");
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&last, &bytes).expect("write");
    let log = Log::open(Some(dir.clone()), limits(300)).expect("reopen");
    assert_eq!(log.next_offset(), 30);
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 30);
    assert!(all.iter().enumerate().all(|(i, r)| r.0 == i as u64));
    append_n(&log, 30, 5, 3000);
    log.flush().expect("flush");
    assert_eq!(read_all(&log, 28).len(), 7);
    drop(log);
    let log = Log::open(Some(dir.clone()), limits(300)).expect("reopen");
    assert_eq!(read_all(&log, 0).len(), 35);
    assert_eq!(log.offset_at(3032).expect("seek"), 32);
    log.delete();
    assert!(!dir.exists());
}

#[test]
fn sealed_segments_hold_no_file_descriptors() {
    let open_fds = || std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let dir = temp_dir("fds");
    let before = open_fds();
    let log = Log::open(Some(dir.clone()), limits(100)).expect("open");
    append_n(&log, 0, 300, 1000);
    log.flush().expect("flush");
    assert!(log.stats().segments >= 100, "{:?}", log.stats());
    assert!(
        open_fds() < before + 50,
        "{} fds for {} segments",
        open_fds() - before,
        log.stats().segments
    );
    assert_eq!(read_all(&log, 0).len(), 300);
    drop(log);
    let log = Log::open(Some(dir.clone()), limits(100)).expect("reopen");
    assert!(open_fds() < before + 50);
    assert_eq!(read_all(&log, 150).len(), 150);
    log.delete();
}
