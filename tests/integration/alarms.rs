//! Memory alarm against the real binary: a publish flood with no consumers ends in a blocked
//! publisher (connection.blocked, "low on memory") and a flat RSS; consumers keep working; when
//! the alarm clears the publisher gets connection.unblocked and goes on.

use crate::common::*;
use crate::process::{free_port, temp_dir, Warren};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren::codec::frame;

/// basic.publish of a 1 KiB transient message to queue `q` on channel 1.
fn publish_frames(q: &str) -> Vec<u8> {
    let mut m = vec![0, 60, 0, 40, 0, 0, 0, q.len() as u8];
    m.extend_from_slice(q.as_bytes());
    m.push(0);
    let mut out = frame(1, 1, &m);
    let mut h = vec![0, 60, 0, 0];
    h.extend_from_slice(&1024u64.to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&frame(2, 1, &h));
    out.extend_from_slice(&frame(3, 1, &[b'm'; 1024]));
    out
}

/// connection.blocked (Some(reason)) or connection.unblocked (None), as they arrive.
async fn watch_blocking(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    tx: tokio::sync::mpsc::UnboundedSender<Option<String>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while buf.len() >= 7 {
            let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
            if buf.len() < 8 + size {
                break;
            }
            let p = buf[7..7 + size].to_vec();
            buf.drain(..8 + size);
            match p.get(..4) {
                Some([0, 10, 0, 60]) => {
                    let n = usize::from(p[4]);
                    let _ = tx.send(Some(String::from_utf8_lossy(&p[5..5 + n]).into_owned()));
                }
                Some([0, 10, 0, 61]) => {
                    let _ = tx.send(None);
                }
                _ => {}
            }
        }
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            l.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .unwrap_or(0)
        / 1024
}

/// One management request as guest.
async fn http(
    mgmt: u16,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, String) {
    let a = warren::mgmt::client::Target::new(format!("127.0.0.1:{mgmt}"), Some("guest:guest"))
        .send(method, path, body.as_ref(), &[])
        .await
        .expect("management API");
    (a.status, a.body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_flood_is_blocked_by_the_memory_alarm_and_resumes() {
    if external() {
        return;
    }
    const WATERMARK_MIB: u64 = 96;
    let dir = temp_dir("alarm");
    let mgmt = free_port();
    let w = Warren::start(
        &dir,
        &[
            "--in-memory",
            "--mgmt-port",
            &mgmt.to_string(),
            "--vm-memory-high-watermark",
            &format!("{WATERMARK_MIB}MiB"),
        ],
    )
    .await;
    let (_c, ch) = channel_at(&w.url()).await;
    ops::declare(&ch, "flood").await;

    let mut r = Raw::open_at(&w.addr()).await;
    r.open_channel(1).await;
    let (rd, mut wr) = r.stream.into_split();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(watch_blocking(rd, tx));
    let batch: Vec<u8> = (0..64).flat_map(|_| publish_frames("flood")).collect();
    let flood = tokio::spawn(async move { while wr.write_all(&batch).await.is_ok() {} });
    let reason = tokio::time::timeout(Duration::from_secs(60), events.recv())
        .await
        .expect("blocked before a minute of flooding")
        .expect("event");
    assert_eq!(reason.as_deref(), Some("low on memory"));
    let rss = rss_mib(w.child.id());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = rss_mib(w.child.id());
    eprintln!("alarm: blocked at {rss} MiB (watermark {WATERMARK_MIB} MiB), {later} MiB 2 s later");
    assert!(
        later <= rss + 16,
        "RSS keeps growing while blocked: {rss} -> {later} MiB"
    );
    assert!(
        later < WATERMARK_MIB * 4,
        "RSS {later} MiB far past the watermark"
    );
    // Consumers are not blocked.
    let got = ops::get_within(&ch, "flood", true).await;
    assert!(
        got.is_some(),
        "a consumer still gets messages under the alarm"
    );
    // The health check reports the alarm as RabbitMQ's does.
    let health = http(mgmt, "GET", "/api/health/checks/alarms", None).await;
    assert_eq!(health.0, 503, "{health:?}");
    assert!(health.1.contains("\"resource\":\"memory\""), "{health:?}");
    // Raising the watermark clears the alarm: the publisher is told and reading resumes.
    let resp = http(
        mgmt,
        "PUT",
        "/api/warren/vm-memory-high-watermark",
        Some(serde_json::json!({"watermark": "0.9"})),
    )
    .await;
    assert_eq!(resp.0, 204, "{resp:?}");
    let next = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("unblocked in time")
        .expect("event");
    assert_eq!(next, None, "connection.unblocked");
    let health = http(mgmt, "GET", "/api/health/checks/alarms", None).await;
    assert_eq!(health.0, 200, "{health:?}");
    flood.abort();
    w.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_disk_blocks_publishers() {
    if external() {
        return;
    }
    // A filesystem with less free space than the disk_free_limit.
    let dir = temp_dir("alarm-disk");
    std::fs::create_dir_all(&dir).expect("dir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&dir)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a tmpfs here");
        return;
    }
    let w = Warren::start(&dir.join("data"), &["--disk-free-limit", "20MB"]).await;
    let mut r = Raw::open_at(&w.addr()).await;
    r.open_channel(1).await;
    let (rd, mut wr) = r.stream.into_split();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(watch_blocking(rd, tx));
    // The monitor samples once a second: publish until it has.
    let frames = publish_frames("nowhere");
    let flood = tokio::spawn(async move {
        while wr.write_all(&frames).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let reason = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("blocked")
        .expect("event");
    assert_eq!(reason.as_deref(), Some("low on disk"));
    flood.abort();
    w.stop().await;
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(&dir)
        .status();
    let _ = std::fs::remove_dir_all(&dir);
}
