use super::*;
use std::collections::BTreeSet;

/// Open (again) in this process: sled lets go of its lock a tick after the last handle drops,
/// so a reopen right away can find it still held (a new process never does).
fn retry<T>(mut f: impl FnMut() -> StoreResult<T>) -> T {
    for _ in 0..100 {
        match f() {
            Err(e) if e.kind == Kind::Locked => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            r => return r.expect("open"),
        }
    }
    f().expect("open")
}

fn open(dir: &Path, sync: bool) -> FileStore {
    retry(|| FileStore::open(dir, sync))
}

fn open_sled(dir: &Path, sync: bool) -> SledStore {
    retry(|| SledStore::open(dir, sync))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-files-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// Recover, and replay every queue's entries into the lists.
fn recovered(s: &FileStore) -> Recovered {
    let mut rec = s.recover().expect("recover");
    assert!(rec.lazy);
    let keys: Vec<QueueKey> = rec.queues.keys().cloned().collect();
    for q in keys {
        let mut all = Vec::new();
        s.replay_entries(&q, &mut |b| {
            all.extend_from_slice(b);
            Ok(())
        })
        .expect("replay");
        rec.queues.insert(q, all);
    }
    rec
}

fn key() -> QueueKey {
    QueueKey::from("/\0q")
}

/// A batch that puts positions `seqs` (message id = position + 1000, record "m<seq>").
fn puts(seqs: impl IntoIterator<Item = u64>) -> Batch {
    let mut b = Batch::default();
    for seq in seqs {
        let id = seq + 1000;
        b.index_puts.insert((key(), seq), id);
        b.messages.insert(id, format!("m{seq}").into_bytes());
        b.meta.insert(
            id,
            MessageMeta {
                size: 2,
                priority: (seq % 3) as u8,
                expiring: false,
            },
        );
    }
    b
}

fn acks(seqs: impl IntoIterator<Item = u64>) -> Batch {
    Batch {
        index_removes: seqs.into_iter().map(|s| (key(), s)).collect(),
        ..Batch::default()
    }
}

fn seq_set(entries: &[Entry]) -> BTreeSet<u64> {
    entries.iter().map(|e| e.seq).collect()
}

fn segment_files(dir: &Path) -> usize {
    let q = dir.join("queues").join(dir_name(key().as_str()));
    fs::read_dir(q)
        .map(|d| {
            d.filter(|f| {
                f.as_ref()
                    .is_ok_and(|f| f.file_name().to_string_lossy().ends_with(".seg"))
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn entries_and_records_come_back_after_a_reopen() {
    let dir = temp_dir("reopen");
    {
        let s = open(&dir, true);
        s.recover().expect("recover");
        s.commit(&puts(0..10)).expect("commit");
        s.commit(&acks([3, 4])).expect("commit");
        let got = s.read_range(&key(), 2, 6, 10, u64::MAX).expect("read");
        let seqs: Vec<u64> = got.iter().map(|(e, _)| e.seq).collect();
        assert_eq!(seqs, vec![2, 5, 6]);
        assert_eq!(got[1].1.as_deref(), Some(&b"m5"[..]));
        s.close();
    }
    let s = open(&dir, true);
    let rec = recovered(&s);
    let entries = &rec.queues[&key()];
    assert_eq!(
        seq_set(entries),
        (0..10).filter(|s| *s != 3 && *s != 4).collect()
    );
    let e7 = entries.iter().find(|e| e.seq == 7).expect("7");
    assert_eq!(e7.id, 1007);
    assert_eq!(e7.meta.map(|m| m.priority), Some(1));
    assert_eq!(
        s.read_entry(&key(), e7).expect("read").as_deref(),
        Some(&b"m7"[..])
    );
    s.close();
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_segment_goes_once_every_position_in_it_is_acked() {
    let dir = temp_dir("reclaim");
    let s = open(&dir, false);
    s.recover().expect("recover");
    s.commit(&puts(0..SEG * 2 + 5)).expect("commit");
    assert_eq!(segment_files(&dir), 3);
    s.commit(&acks(0..SEG - 1)).expect("ack");
    assert_eq!(
        segment_files(&dir),
        3,
        "one position of the first is still live"
    );
    s.commit(&acks([SEG - 1])).expect("ack");
    assert_eq!(segment_files(&dir), 2);
    // The newest segment stays even when empty: publishes still land in it.
    s.commit(&acks(SEG..SEG * 2 + 5)).expect("ack");
    assert_eq!(segment_files(&dir), 1);
    s.close();
    let s = open(&dir, false);
    assert!(recovered(&s).queues[&key()].is_empty());
    s.close();
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn recovery_cuts_a_torn_tail_and_keeps_what_came_before() {
    let dir = temp_dir("torn");
    let s = open(&dir, true);
    s.recover().expect("recover");
    s.commit(&puts(0..5)).expect("commit");
    s.close();
    let seg = queue::seg_path(&dir.join("queues").join(dir_name(key().as_str())), 0);
    let mut bytes = fs::read(&seg).expect("read");
    let whole = bytes.len();
    let mut half = Vec::new();
    format::encode_entry(&mut half, 5, 1005, &MessageMeta::default(), None, b"torn");
    bytes.extend_from_slice(&half[..half.len() / 2]);
    fs::write(&seg, &bytes).expect("tear");
    let s = open(&dir, true);
    let rec = recovered(&s);
    assert_eq!(seq_set(&rec.queues[&key()]), (0..5).collect());
    assert_eq!(fs::metadata(&seg).expect("stat").len() as usize, whole);
    // Appends continue after the cut.
    s.commit(&puts([5])).expect("commit");
    let got = s.index_range(&key(), 0, 100, 100).expect("read");
    assert_eq!(got.len(), 6);
    s.close();
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_dropped_queue_loses_its_files_and_a_namesake_starts_afresh() {
    let dir = temp_dir("drop");
    let s = open(&dir, false);
    s.recover().expect("recover");
    s.commit(&puts(0..3)).expect("commit");
    let mut b = puts([7]);
    b.dropped_queues.push(key());
    s.commit(&b).expect("drop and write again");
    assert_eq!(
        seq_set(&s.index_range(&key(), 0, 100, 100).expect("read")),
        [7].into()
    );
    s.close();
    let s = open(&dir, false);
    assert_eq!(seq_set(&recovered(&s).queues[&key()]), [7].into());
    s.close();
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_requeue_to_the_back_writes_the_record_again() {
    let dir = temp_dir("rewrite");
    let s = open(&dir, false);
    s.recover().expect("recover");
    s.commit(&puts([0])).expect("commit");
    let mut b = acks([0]);
    b.index_puts.insert((key(), 1), 1000);
    b.rewrites.insert(1000, b"m0".to_vec());
    s.commit(&b).expect("move");
    let got = s.read_range(&key(), 0, 10, 10, u64::MAX).expect("read");
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0.seq, got[0].1.as_deref()), (1, Some(&b"m0"[..])));
    s.close();
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_sled_directory_is_migrated_to_files() {
    let dir = temp_dir("migrate");
    {
        let old = open_sled(&dir, false);
        let mut b = puts(0..4);
        // An entry from before metadata: its record tells its size and priority.
        let legacy = crate::message::Message::new(
            "",
            "q",
            Default::default(),
            bytes::Bytes::from_static(b"legacy body"),
        );
        b.index_puts.insert((key(), 9), 77);
        b.messages.insert(77, crate::store::record::encode(&legacy));
        old.commit(&b).expect("commit");
        old.close();
    }
    let s = open(&dir, false);
    let rec = recovered(&s);
    let entries = &rec.queues[&key()];
    assert_eq!(seq_set(entries), [0, 1, 2, 3, 9].into());
    let e9 = entries.iter().find(|e| e.seq == 9).expect("9");
    assert_eq!(e9.meta.map(|m| m.size), Some(11));
    let r = s.read_entry(&key(), e9).expect("read").expect("record");
    assert_eq!(
        crate::store::record::decode(&r).map(|d| d.body),
        Some("legacy body".into())
    );
    s.close();
    // Sled let go of them: a second boot finds them in files only, once.
    let old = open_sled(&dir, false);
    assert!(old.recover().expect("recover").queues.is_empty());
    old.close();
    let s = open(&dir, false);
    assert_eq!(recovered(&s).queues[&key()].len(), 5);
    s.close();
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_position_acked_then_written_again_stays_live_across_a_restart() {
    // A queue whose newest positions were acked before a restart hands them out again.
    let dir = temp_dir("reuse");
    let s = open(&dir, false);
    s.recover().expect("recover");
    s.commit(&puts(0..5)).expect("commit");
    s.commit(&acks([3, 4])).expect("ack");
    let mut again = puts([3, 4]);
    for record in again.messages.values_mut() {
        *record = b"again".to_vec();
    }
    s.commit(&again).expect("write again");
    s.close();
    let s = open(&dir, false);
    let rec = recovered(&s);
    let entries = &rec.queues[&key()];
    assert_eq!(seq_set(entries), (0..5).collect());
    let e4 = entries.iter().find(|e| e.seq == 4).expect("4");
    assert_eq!(
        s.read_entry(&key(), e4).expect("read").as_deref(),
        Some(&b"again"[..])
    );
    s.commit(&acks([4])).expect("ack the new one");
    s.close();
    let s = open(&dir, false);
    assert_eq!(seq_set(&recovered(&s).queues[&key()]), (0..4).collect());
    s.close();
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn what_a_failed_write_left_is_cut_before_the_next() {
    let dir = temp_dir("failed");
    let s = open(&dir, false);
    s.recover().expect("recover");
    s.commit(&puts(0..3)).expect("commit");
    // A write that failed half-way (disk full) left bytes past the durable length.
    let seg = queue::seg_path(&dir.join("queues").join(dir_name(key().as_str())), 0);
    let mut bytes = fs::read(&seg).expect("read");
    bytes.extend_from_slice(&[0xAB; 37]);
    fs::write(&seg, &bytes).expect("garbage");
    s.commit(&puts(3..6)).expect("commit after");
    s.close();
    let s = open(&dir, false);
    assert_eq!(seq_set(&recovered(&s).queues[&key()]), (0..6).collect());
    s.close();
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_closed_store_refuses_commits() {
    // A stopped embedded broker's committer must not write into a directory another broker
    // opened since.
    let dir = temp_dir("closed");
    let s = open(&dir, false);
    s.recover().expect("recover");
    s.close();
    let e = s.commit(&puts([0])).expect_err("closed");
    assert_eq!(e.kind, Kind::Closed);
    assert_eq!(segment_files(&dir), 0);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_purge_deletes_whole_segments_without_writing_their_acks() {
    let dir = temp_dir("purge");
    let s = open(&dir, false);
    s.recover().expect("recover");
    s.commit(&puts(0..SEG * 3)).expect("commit");
    s.commit(&acks(0..SEG * 3)).expect("purge");
    assert_eq!(segment_files(&dir), 1, "the newest stays");
    let q = dir.join("queues").join(dir_name(key().as_str()));
    let ack_bytes: u64 = fs::read_dir(&q)
        .expect("list")
        .filter_map(|f| f.ok())
        .filter(|f| f.file_name().to_string_lossy().ends_with(".ack"))
        .map(|f| f.metadata().map_or(0, |m| m.len()))
        .sum();
    assert_eq!(
        ack_bytes,
        SEG * format::ACK as u64,
        "acks only for the newest segment"
    );
    // A position of a deleted segment written again lands in a fresh file.
    s.commit(&puts([5])).expect("write again");
    s.close();
    let s = open(&dir, false);
    assert_eq!(seq_set(&recovered(&s).queues[&key()]), [5].into());
    s.close();
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_read_back_stops_at_its_byte_budget() {
    let dir = temp_dir("budget");
    let s = open(&dir, false);
    s.recover().expect("recover");
    s.commit(&puts(0..100)).expect("commit");
    // Each entry's metadata says 2 bytes: a budget of 10 bytes gives 5, and at least one.
    assert_eq!(s.read_range(&key(), 0, 99, 100, 10).expect("read").len(), 5);
    assert_eq!(s.read_range(&key(), 0, 99, 100, 0).expect("read").len(), 1);
    s.close();
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_range_removal_deletes_whole_segments_and_acks_its_ends() {
    let dir = temp_dir("range");
    let s = open(&dir, false);
    s.recover().expect("recover");
    s.commit(&puts(0..SEG * 3 + 10)).expect("commit");
    let purge = Batch {
        range_removes: vec![(key(), 5, SEG * 2 + 3)],
        ..Batch::default()
    };
    s.commit(&purge).expect("purge");
    assert_eq!(segment_files(&dir), 3, "the middle one went whole");
    let q = dir.join("queues").join(dir_name(key().as_str()));
    assert!(
        !queue::ack_path(&q, 1).exists(),
        "no acks for a deleted segment"
    );
    let expected: BTreeSet<u64> = (0..5).chain(SEG * 2 + 4..SEG * 3 + 10).collect();
    assert_eq!(
        seq_set(
            &s.index_range(&key(), 0, u64::MAX, usize::MAX)
                .expect("read")
        ),
        expected
    );
    s.close();
    let s = open(&dir, false);
    assert_eq!(seq_set(&recovered(&s).queues[&key()]), expected);
    s.close();
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_length_is_cut_without_sizing_a_buffer_by_it() {
    let dir = temp_dir("damaged");
    let s = open(&dir, true);
    s.recover().expect("recover");
    s.commit(&puts(0..3)).expect("commit");
    s.close();
    let seg = queue::seg_path(&dir.join("queues").join(dir_name(key().as_str())), 0);
    let mut bytes = fs::read(&seg).expect("read");
    let whole = bytes.len();
    // A header that claims a record of almost 1 GiB, followed by a few bytes.
    let mut bad = Vec::new();
    format::encode_entry(&mut bad, 3, 1003, &MessageMeta::default(), None, b"x");
    bad[..4].copy_from_slice(&((1u32 << 30) - 1).to_be_bytes());
    bytes.extend_from_slice(&bad);
    fs::write(&seg, &bytes).expect("damage");
    let s = open(&dir, true);
    assert_eq!(seq_set(&recovered(&s).queues[&key()]), (0..3).collect());
    assert_eq!(fs::metadata(&seg).expect("stat").len() as usize, whole);
    s.close();
    let _ = fs::remove_dir_all(&dir);
}
