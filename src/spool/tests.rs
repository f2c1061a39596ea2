//! Unit tests of the spool as a whole: append, read, recover, ack, delete, on_full.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::record::{self, Record};
use super::store::test_dir;
use super::*;

const NOW: Duration = Duration::ZERO;

fn cfg(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 20,
        segment_bytes: 4096,
        max_record_bytes: 2048,
        on_full: OnFull::DropOldest,
        fsync_interval: Duration::from_millis(50),
        fsync_every: 0,
        cursor_interval: Duration::from_secs(3600),
        drain_timeout: Duration::from_secs(5),
        ..SpoolConfig::default()
    }
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("out-{i}")).collect()
}

fn body(i: u64) -> Vec<u8> {
    format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat((i % 97) as usize)).into_bytes()
}

fn append_n(s: &Spool, from: u64, to: u64) {
    for i in from..=to {
        assert_eq!(s.append(1000 + i, &format!("id-{i}"), &body(i)).unwrap(), Appended::Stored { pos: i });
    }
}

fn read_all(r: &mut SpoolReader) -> Vec<Record> {
    let mut out = Vec::new();
    while let Some(rec) = r.next(NOW).unwrap() {
        out.push(rec);
    }
    out
}

fn positions(recs: &[Record]) -> Vec<u64> {
    recs.iter().map(|r| r.pos).collect()
}

fn segment_files(dir: &Path) -> Vec<u64> {
    segment::list(dir).unwrap().into_iter().map(|(p, _)| p).collect()
}

#[test]
fn round_trip_across_segments() {
    let dir = test_dir("roundtrip");
    let s = Spool::open(&cfg(&dir), &names(1)).unwrap();
    append_n(&s, 1, 200);
    assert!(segment_files(&dir).len() > 3, "small segments roll over");
    let recs = read_all(&mut s.reader(0));
    assert_eq!(positions(&recs), (1..=200).collect::<Vec<_>>());
    for r in &recs {
        assert_eq!(r.time_ms, 1000 + r.pos);
        assert_eq!(r.id, format!("id-{}", r.pos));
        assert_eq!(r.body, body(r.pos));
    }
    assert_eq!(s.stats().appended, 200);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let (_, seg) = segment::list(&dir).unwrap().remove(0);
    assert_eq!((mode(&seg), mode(&cursor::path(&dir, "out-0"))), (0o600, 0o600));
}

#[test]
fn a_new_spool_dir_is_private() {
    let root = test_dir("private");
    let dir = root.join("a/b");
    let _s = Spool::open(&cfg(&dir), &names(1)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
}

#[test]
fn reader_waits_for_new_records() {
    let dir = test_dir("wait");
    let s = Spool::open(&cfg(&dir), &names(1)).unwrap();
    let mut r = s.reader(0);
    assert!(r.next(Duration::from_millis(20)).unwrap().is_none());
    let s2 = s.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        append_n(&s2, 1, 1);
    });
    let rec = r.next(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(rec.pos, 1);
    t.join().unwrap();
}

#[test]
fn torn_tail_is_truncated_on_recovery() {
    let dir = test_dir("torn");
    {
        let s = Spool::open(&cfg(&dir), &names(1)).unwrap();
        append_n(&s, 1, 10);
    }
    // A crash in the middle of a write: the first 40 bytes of the next frame (3 events): the
    // header is whole, so the loss is known to be 3 events.
    let (_, last) = segment::list(&dir).unwrap().pop().unwrap();
    let mut raw = Vec::new();
    for i in 11..=13 {
        frame::push_inner(&mut raw, 0, &format!("id-{i}"), &body(i));
    }
    let mut f = Vec::new();
    frame::Encoder::new(Compression::Zstd, 1).encode(&mut f, 11, 3, &raw);
    std::fs::OpenOptions::new().append(true).open(&last).unwrap().write_all(&f[..40]).unwrap();

    let s = Spool::open(&cfg(&dir), &names(1)).unwrap();
    let st = s.stats();
    assert_eq!((st.recovered_truncated_bytes, st.recovered_lost, st.loss_notices), (40, 3, 1));
    // The cut is announced in band at once, before any new event.
    let recs = read_all(&mut s.reader(0));
    assert_eq!(positions(&recs), (1..=11).collect::<Vec<_>>());
    let v: serde_json::Value = serde_json::from_slice(&recs[10].body).unwrap();
    assert_eq!(v["loss"]["kind"], "spool_dropped");
    assert_eq!(
        (v["loss"]["reason"].as_str(), v["loss"]["count"].as_u64(), v["loss"]["bytes"].as_u64()),
        (Some("torn_tail"), Some(3), Some(40))
    );
    assert_eq!(s.append(0, "next", b"{}").unwrap(), Appended::Stored { pos: 12 });
}

/// The first frame of a v2 segment and the offsets of its frames.
fn frame_offsets(data: &[u8]) -> Vec<usize> {
    assert_eq!(data[..8], segment::MAGIC);
    let mut at = 8;
    let mut out = Vec::new();
    while at < data.len() {
        out.push(at);
        at += frame::Header::parse(&data[at..], 1 << 24).unwrap().total_len();
    }
    out
}

#[test]
fn crc_corruption_in_older_segment_is_reported_with_path_and_offset() {
    let dir = test_dir("crc");
    {
        let s = Spool::open(&cfg(&dir), &names(1)).unwrap();
        append_n(&s, 1, 100);
    }
    let segs = segment::list(&dir).unwrap();
    let (first, path) = segs[0].clone();
    // Offset of the third frame (one event each: every append commits), then flip a byte in it.
    let data = std::fs::read(&path).unwrap();
    let off3 = frame_offsets(&data)[2];
    let mut bad = data.clone();
    bad[off3 + 40] ^= 0x01;
    std::fs::write(&path, &bad).unwrap();

    let s = Spool::open(&cfg(&dir), &names(1)).unwrap();
    let mut r = s.reader(0);
    assert_eq!(r.next(NOW).unwrap().unwrap().pos, first);
    assert_eq!(r.next(NOW).unwrap().unwrap().pos, first + 1);
    match r.next(NOW) {
        Err(SpoolError::Corrupt { path: p, offset, reason }) => {
            assert_eq!(p, path);
            assert_eq!(offset, off3 as u64);
            assert!(reason.contains("CRC"), "{reason}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // The reader continues with the next segment; the rest of the bad one is counted as skipped.
    let rest = read_all(&mut r);
    let second_first = segs[1].0;
    assert_eq!(rest.first().unwrap().pos, second_first);
    assert_eq!(rest.last().unwrap().pos, 100);
    assert_eq!(s.stats().corrupt_skipped, second_first - (first + 2));
    // A second output finding the same damage does not count it again; one in-band notice.
    let mut r2 = s.reader(0);
    while r2.next(NOW).is_err() || r2.next_pos() < 100 {}
    assert_eq!(s.stats().corrupt_skipped, second_first - (first + 2));
    s.append(5, "after", b"{}").unwrap();
    let notice = read_all(&mut r).into_iter().find(|r| r.id.starts_with("auditrelay-loss-corrupt")).unwrap();
    assert_eq!(loss_count(&notice), Some(second_first - (first + 2)));
    assert_eq!(s.stats().loss_notices, 1);
}

#[test]
fn corruption_in_last_segment_is_cut_at_recovery() {
    let dir = test_dir("crclast");
    {
        let s = Spool::open(&cfg(&dir), &names(1)).unwrap();
        append_n(&s, 1, 5);
    }
    let (_, path) = segment::list(&dir).unwrap().pop().unwrap();
    let mut data = std::fs::read(&path).unwrap();
    let len = data.len();
    data[len - 3] ^= 0xFF;
    std::fs::write(&path, &data).unwrap();
    let last_len = (data.len() - *frame_offsets(&data).last().unwrap()) as u64;
    let s = Spool::open(&cfg(&dir), &names(1)).unwrap();
    assert_eq!((s.stats().recovered_truncated_bytes, s.stats().recovered_lost), (last_len, 1));
    // 1..=4 kept, 5 cut, and the notice of the cut takes position 5 (the cut one was never acked).
    let recs = read_all(&mut s.reader(0));
    assert_eq!(positions(&recs), vec![1, 2, 3, 4, 5]);
    assert_eq!(loss_count(&recs[4]), Some(1));
}

#[test]
fn cursors_persist_and_restart_resends_unacked() {
    let dir = test_dir("cursor");
    {
        let s = Spool::open(&cfg(&dir), &names(2)).unwrap();
        append_n(&s, 1, 10);
        s.ack(0, 4);
        s.ack(1, 9);
        s.flush().unwrap();
        s.ack(0, 6); // acked but never persisted: a crash loses only this knowledge
    }
    let s = Spool::open(&cfg(&dir), &names(2)).unwrap();
    assert_eq!(s.stats().acked, vec![("out-0".into(), 4), ("out-1".into(), 9)]);
    assert_eq!(positions(&read_all(&mut s.reader(0))), (5..=10).collect::<Vec<_>>());
    assert_eq!(positions(&read_all(&mut s.reader(1))), vec![10]);
}

#[test]
fn ack_never_goes_backwards_nor_past_the_end() {
    let dir = test_dir("ackmono");
    let s = Spool::open(&cfg(&dir), &names(1)).unwrap();
    append_n(&s, 1, 3);
    s.ack(0, 2);
    s.ack(0, 1);
    assert_eq!(s.acked(0), 2);
    s.ack(0, 99);
    assert_eq!(s.acked(0), 3);
}

#[test]
fn segment_deleted_only_after_every_output_acked_it() {
    let dir = test_dir("delete");
    let s = Spool::open(&cfg(&dir), &names(2)).unwrap();
    append_n(&s, 1, 200);
    let before = segment_files(&dir);
    assert!(before.len() > 3);
    s.ack(0, 200);
    s.flush().unwrap();
    assert_eq!(segment_files(&dir), before, "output 1 has acked nothing");
    // Output 1 acks up to the middle of the third segment: the first two go.
    let mid = before[2] + 1;
    s.ack(1, mid);
    s.flush().unwrap();
    assert_eq!(segment_files(&dir), before[2..].to_vec());
    s.ack(1, 200);
    s.flush().unwrap();
    // The active segment always stays.
    assert_eq!(segment_files(&dir), vec![*before.last().unwrap()]);
    assert_eq!(s.stats().bytes, std::fs::metadata(segment::path(&dir, *before.last().unwrap())).unwrap().len());
}

#[test]
fn positions_acknowledged_before_a_power_cut_are_not_reused() {
    let dir = test_dir("gap");
    {
        let s = Spool::open(&cfg(&dir), &names(1)).unwrap();
        append_n(&s, 1, 5);
    }
    // The receiver acknowledged up to 8, but 6..=8 never reached the disk.
    cursor::store(&dir, "out-0", 8).unwrap();
    let s = Spool::open(&cfg(&dir), &names(1)).unwrap();
    assert_eq!(s.append(0, "new", b"{}").unwrap(), Appended::Stored { pos: 9 });
    assert_eq!(positions(&read_all(&mut s.reader(0))), vec![9]);
}

#[test]
fn a_second_process_cannot_open_the_same_spool() {
    let dir = test_dir("lock");
    let _s = Spool::open(&cfg(&dir), &names(1)).unwrap();
    let e = Spool::open(&cfg(&dir), &names(1)).err().unwrap();
    assert!(matches!(e, SpoolError::Locked { .. }), "{e}");
}

#[test]
fn oversize_event_and_long_id_are_refused_and_counted() {
    let dir = test_dir("oversize");
    let s = Spool::open(&cfg(&dir), &names(1)).unwrap();
    let e = s.append(0, "big", &vec![b'x'; 4000]).unwrap_err();
    assert!(matches!(e, SpoolError::TooLarge { .. }), "{e}");
    assert!(matches!(s.append(0, &"i".repeat(300), b"{}").unwrap_err(), SpoolError::IdTooLong { .. }));
    assert_eq!(s.stats().dropped_oversize, 1);
}

fn small(dir: &Path, on_full: OnFull) -> SpoolConfig {
    SpoolConfig { max_bytes: 3 * 4096, on_full, ..cfg(dir) }
}

fn loss_count(r: &Record) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    v.get("loss")?.get("count")?.as_u64()
}

#[test]
fn on_full_drop_oldest_bounds_bytes_counts_and_announces() {
    let dir = test_dir("dropoldest");
    let s = Spool::open(&small(&dir, OnFull::DropOldest), &names(1)).unwrap();
    for i in 1..=300 {
        assert!(matches!(s.append(i, &format!("id-{i}"), &body(i)).unwrap(), Appended::Stored { .. }));
        let st = s.stats();
        assert!(st.bytes <= 3 * 4096, "bytes {} over the bound", st.bytes);
    }
    let st = s.stats();
    assert!(st.dropped_oldest > 0);
    let recs = read_all(&mut s.reader(0));
    // Notices can be dropped too (they count as dropped records); the last one carries the total.
    let notices: Vec<&Record> = recs.iter().filter(|r| loss_count(r).is_some()).collect();
    let last_total =
        serde_json::from_slice::<serde_json::Value>(&notices.last().unwrap().body).unwrap()["loss"]["total"].as_u64();
    assert_eq!(last_total, Some(st.dropped_oldest), "the total is announced");
    let events: Vec<&Record> = recs.iter().filter(|r| loss_count(r).is_none()).collect();
    assert_eq!(recs.len() as u64 + st.dropped_oldest, 300 + st.loss_notices, "every record is read or counted");
    assert_eq!(events.last().unwrap().id, "id-300");
    assert!(events.windows(2).all(|w| w[0].pos < w[1].pos));
}

#[test]
fn on_full_drop_newest_refuses_counts_and_announces_when_space_returns() {
    let dir = test_dir("dropnewest");
    let s = Spool::open(&small(&dir, OnFull::DropNewest), &names(1)).unwrap();
    let mut stored = 0u64;
    let mut dropped = 0u64;
    for i in 1..=300 {
        match s.append(i, &format!("id-{i}"), &body(i)).unwrap() {
            Appended::Stored { .. } => stored += 1,
            Appended::Dropped => dropped += 1,
        }
    }
    assert!(dropped > 0);
    assert_eq!(s.stats().dropped_newest, dropped);
    // The receiver catches up: space returns, the notice goes in before the next event.
    let mut r = s.reader(0);
    let recs = read_all(&mut r);
    assert_eq!(recs.len() as u64, stored);
    assert!(recs.iter().all(|r| loss_count(r).is_none()));
    s.ack(0, recs.last().unwrap().pos);
    s.flush().unwrap();
    assert!(matches!(s.append(0, "after", b"{}").unwrap(), Appended::Stored { .. }));
    let tail = read_all(&mut r);
    assert_eq!(tail.len(), 2);
    assert_eq!(loss_count(&tail[0]), Some(dropped));
    assert!(tail[0].id.starts_with("auditrelay-loss-"));
    assert_eq!(tail[1].id, "after");
    assert_eq!(s.stats().loss_notices, 1);
}

#[test]
fn on_full_block_waits_for_acks_and_loses_nothing() {
    let dir = test_dir("block");
    let s = Spool::open(&small(&dir, OnFull::Block), &names(1)).unwrap();
    // A slow consumer thread acking what it read.
    let s2 = s.clone();
    let consumer = std::thread::spawn(move || {
        let mut r = s2.reader(0);
        let mut got = Vec::new();
        while got.len() < 300 {
            std::thread::sleep(Duration::from_millis(1));
            if let Some(rec) = r.next(Duration::from_secs(5)).unwrap() {
                got.push(rec.pos);
                if got.len() % 20 == 0 {
                    s2.ack(0, rec.pos);
                }
            }
        }
        s2.ack(0, *got.last().unwrap());
        got
    });
    for i in 1..=300 {
        assert_eq!(s.append(i, &format!("id-{i}"), &body(i)).unwrap(), Appended::Stored { pos: i });
        assert!(s.stats().bytes <= 3 * 4096);
    }
    let got = consumer.join().unwrap();
    assert_eq!(got, (1..=300).collect::<Vec<_>>());
    let st = s.stats();
    assert_eq!((st.dropped_newest, st.dropped_oldest, st.loss_notices), (0, 0, 0));
}

#[test]
fn a_reader_skips_segments_dropped_under_it() {
    let dir = test_dir("dropunder");
    let s = Spool::open(&small(&dir, OnFull::DropOldest), &names(1)).unwrap();
    append_n(&s, 1, 10);
    let mut r = s.reader(0);
    assert_eq!(r.next(NOW).unwrap().unwrap().pos, 1);
    for i in 11..=300 {
        s.append(i, &format!("id-{i}"), &body(i)).unwrap();
    }
    let rest = read_all(&mut r);
    assert!(rest.first().unwrap().pos > 10, "the reader jumped over the dropped segments");
    assert_eq!(rest.last().map(|r| r.id.as_str()), Some("id-300"));
}

#[test]
fn a_blocked_append_gives_up_when_interrupted() {
    let dir = test_dir("interrupt");
    let s = Spool::open(&small(&dir, OnFull::Block), &names(1)).unwrap();
    let mut i = 0;
    // Fill it: with nobody acking, the next append would block forever.
    while s.stats().bytes + 200 < 3 * 4096 {
        i += 1;
        s.append(i, "x", &body(i)).unwrap();
    }
    let s2 = s.clone();
    let t = std::thread::spawn(move || {
        let mut j = 10_000;
        loop {
            j += 1;
            if let Err(e) = s2.append(j, "y", &body(j)) {
                return e;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!t.is_finished(), "blocked while full");
    s.interrupt();
    assert!(matches!(t.join().unwrap(), SpoolError::Interrupted));
    // Nothing was dropped: block never loses.
    assert_eq!((s.stats().dropped_oldest, s.stats().dropped_newest), (0, 0));
}

#[test]
fn inspect_reports_segments_bytes_and_cursors_while_locked() {
    let dir = test_dir("inspect");
    let s = Spool::open(&cfg(&dir), &names(2)).unwrap();
    append_n(&s, 1, 50);
    s.ack(1, 7);
    s.flush().unwrap();
    let i = inspect(&dir).unwrap();
    assert_eq!(i.bytes, s.stats().bytes);
    assert_eq!(i.segments, s.stats().segments);
    assert_eq!(i.oldest_pos, 1);
    assert_eq!(i.cursors, vec![("out-0".to_string(), 0), ("out-1".to_string(), 7)]);
}

#[test]
fn staged_events_reach_readers_only_at_commit_and_in_one_batch() {
    let dir = test_dir("stage");
    let s = Spool::open(&cfg(&dir), &names(1)).unwrap();
    let mut r = s.reader(0);
    for i in 1..=5 {
        assert_eq!(s.stage(i, &format!("id-{i}"), &body(i)).unwrap(), Appended::Stored { pos: i });
    }
    assert!(r.next(NOW).unwrap().is_none(), "staged events are not visible before commit");
    assert_eq!(s.stats().last_pos, 5, "positions are assigned at stage time");
    s.commit().unwrap();
    let mut got = Vec::new();
    let n = r.next_batch(NOW, 100, &mut |rec, _| got.push((rec.pos, rec.id.to_string()))).unwrap();
    assert_eq!(n, 5);
    assert_eq!(got, (1..=5).map(|i| (i, format!("id-{i}"))).collect::<Vec<_>>());
    // Across a segment roll (4 KiB segments), a batch still comes out whole and in order.
    for i in 6..=200 {
        s.stage(i, &format!("id-{i}"), &body(i)).unwrap();
    }
    s.commit().unwrap();
    let mut pos = Vec::new();
    while r.next_batch(NOW, 64, &mut |rec, _| pos.push(rec.pos)).unwrap() > 0 {}
    assert_eq!(pos, (6..=200).collect::<Vec<_>>());
    assert!(segment_files(&dir).len() > 1);
}

/// A reader that keeps up takes each frame the writer still has in memory (the same bytes, not a
/// decompressed copy); one that falls further behind than the frames kept reads the file; both
/// get every record once, in order, with the bytes that were appended.
#[test]
fn caught_up_readers_share_the_writers_frames_and_late_ones_read_the_file() {
    let dir = test_dir("recent");
    let s = Spool::open(&cfg(&dir), &names(2)).unwrap();
    let (mut near, mut far) = (s.reader(0), s.reader(1));
    let mut shared_frames = Vec::new();
    let mut near_got = Vec::new();
    for batch in 0..12u64 {
        for i in batch * 3 + 1..=batch * 3 + 3 {
            s.stage(i, &format!("id-{i}"), &body(i)).unwrap();
        }
        s.commit().unwrap();
        near.next_batch(NOW, 100, &mut |rec, frame| {
            let frame = frame.expect("a v2 frame");
            assert!(frame.range_of(rec.body).is_some());
            shared_frames.push(std::sync::Arc::as_ptr(frame) as usize);
            near_got.push((rec.pos, rec.id.to_string(), rec.body.to_vec()));
        })
        .unwrap();
    }
    let expected: Vec<_> = (1..=36).map(|i| (i, format!("id-{i}"), body(i))).collect();
    assert_eq!(near_got, expected);
    let recent: Vec<usize> = s.inner.lock().recent.iter().map(|r| std::sync::Arc::as_ptr(&r.raw) as usize).collect();
    assert!(recent.contains(shared_frames.last().unwrap()), "the last frame came from the writer's memory");
    let mut far_got = Vec::new();
    let mut far_frames = Vec::new();
    while far
        .next_batch(NOW, 100, &mut |rec, frame| {
            far_frames.push(std::sync::Arc::as_ptr(frame.unwrap()) as usize);
            far_got.push((rec.pos, rec.id.to_string(), rec.body.to_vec()));
        })
        .unwrap()
        > 0
    {}
    assert_eq!(far_got, expected);
    assert!(!recent.contains(&far_frames[0]), "the first frames were read from the file");
    assert!(recent.contains(far_frames.last().unwrap()), "then it caught up with the writer's");
}

/// Segments in the v1 format (uncompressed records, `.log`), written with the v1 encoder that
/// [`record`] keeps, are read after the upgrade, from the cursor on; new events go to v2 segments.
#[test]
fn v1_segments_are_read_after_the_upgrade() {
    let dir = test_dir("v1upgrade");
    std::fs::create_dir_all(&dir).unwrap();
    let mut seg = Vec::new();
    for i in 1..=5 {
        record::encode(&mut seg, i, 1000 + i, &format!("id-{i}"), &body(i));
    }
    std::fs::write(segment::path_v1(&dir, 1), &seg).unwrap();
    let mut seg = Vec::new();
    for i in 6..=9 {
        record::encode(&mut seg, i, 1000 + i, &format!("id-{i}"), &body(i));
    }
    // The last v1 segment ends in a torn record: cut at recovery, announced.
    let mut torn = Vec::new();
    record::encode(&mut torn, 10, 1010, "id-10", &body(10));
    seg.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(segment::path_v1(&dir, 6), &seg).unwrap();
    cursor::store(&dir, "out-0", 3).unwrap();

    let s = Spool::open(&cfg(&dir), &names(1)).unwrap();
    assert_eq!(s.stats().recovered_lost, 1);
    let recs = read_all(&mut s.reader(0));
    assert_eq!(positions(&recs), (4..=10).collect::<Vec<_>>());
    for r in &recs[..6] {
        assert_eq!((r.time_ms, r.id.clone(), r.body.clone()), (1000 + r.pos, format!("id-{}", r.pos), body(r.pos)));
    }
    assert_eq!(loss_count(&recs[6]), Some(1));
    append_n(&s, 11, 12);
    let mut r = s.reader(0);
    assert_eq!(positions(&read_all(&mut r)), (4..=12).collect::<Vec<_>>());
    let files: Vec<String> = segment::list(&dir)
        .unwrap()
        .iter()
        .map(|(_, p)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[0].ends_with(".log") && files[1].ends_with(".log") && files[2].ends_with(".v2"), "{files:?}");
    // Acknowledging everything deletes the old segments like any other.
    s.ack(0, 12);
    s.flush().unwrap();
    assert_eq!(segment_files(&dir), vec![10]);
}

/// Frames are compressed and a commit is one frame: 200 similar events take far less than their
/// JSON, and every codec reads back the same.
#[test]
fn each_codec_stores_a_commit_as_one_compressed_frame() {
    for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let dir = test_dir("codec");
        let c = SpoolConfig { compression: codec, segment_bytes: 1 << 19, max_bytes: 1 << 20, ..cfg(&dir) };
        let s = Spool::open(&c, &names(1)).unwrap();
        let json = |i: u64| {
            format!("{{\"records\":[{{\"type\":\"SYSCALL\",\"fields\":{{\"pid\":\"{}\",\"exe\":\"/usr/bin/true\",\"key\":\"exec\"}}}}]}}", 3000 + i)
        };
        for i in 1..=200 {
            s.stage(i, &format!("boot:1796118282.{i:03}:{i}"), json(i).as_bytes()).unwrap();
        }
        s.commit().unwrap();
        let st = s.stats();
        let raw: u64 = (1..=200).map(|i| json(i).len() as u64).sum();
        if codec == Compression::None {
            assert!(st.disk_bytes_written > raw, "{codec}");
        } else {
            assert!(st.disk_bytes_written * 4 < raw, "{codec}: {} of {raw}", st.disk_bytes_written);
        }
        let recs = read_all(&mut s.reader(0));
        assert_eq!(recs.len(), 200);
        assert_eq!(recs[41].body, json(42).into_bytes());
        // One frame: the segment holds the magic and one header.
        let data = std::fs::read(&segment::list(&dir).unwrap()[0].1).unwrap();
        assert_eq!(frame_offsets(&data).len(), 1, "{codec}");
    }
}

/// A reader that resumes at its cursor skips whole frames it has acknowledged and starts inside
/// the frame that holds the cursor.
#[test]
fn a_cursor_inside_a_frame_resumes_at_the_next_record() {
    let dir = test_dir("midframe");
    {
        let s = Spool::open(&cfg(&dir), &names(1)).unwrap();
        for batch in 0..4u64 {
            for i in 1..=10 {
                let pos = batch * 10 + i;
                s.stage(pos, &format!("id-{pos}"), &body(pos)).unwrap();
            }
            s.commit().unwrap();
        }
        s.ack(0, 23);
        s.flush().unwrap();
    }
    let s = Spool::open(&cfg(&dir), &names(1)).unwrap();
    let recs = read_all(&mut s.reader(0));
    assert_eq!(positions(&recs), (24..=40).collect::<Vec<_>>());
    assert_eq!(recs[0].body, body(24));
}

/// The figures the status display shows: bytes, events, unacknowledged events, age.
#[test]
fn stats_expose_events_unacked_and_oldest_age() {
    let dir = test_dir("statsfig");
    let s = Spool::open(&cfg(&dir), &names(2)).unwrap();
    let now = super::store::now_ms_for_tests();
    for i in 1..=30u64 {
        // Event times an hour ago, one per second.
        s.append(now - 3_600_000 + i * 1000, &format!("id-{i}"), &body(i)).unwrap();
    }
    s.ack(0, 30);
    s.ack(1, 9);
    let st = s.stats();
    assert_eq!((st.events, st.unacked_events, st.max_bytes), (30, 21, 1 << 20));
    let age = st.oldest_unacked_age.unwrap().as_secs();
    // Event 10 is 3590 s old; samples are at most a second apart and never younger.
    assert!((3590..=3592).contains(&age), "{age}");
    assert!(st.bytes > 0 && st.full_in.is_none());
    s.ack(1, 30);
    assert_eq!((s.stats().unacked_events, s.stats().oldest_unacked_age), (0, None));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 40, ..Default::default() })]

    /// A crash tears the last segment anywhere (cut at any byte, or one byte flipped in what is
    /// left): after recovery, readers get exactly a prefix of what was written, every record equal
    /// to what was written (never a corrupt one as valid), and the cut is counted and announced.
    #[test]
    fn a_torn_or_flipped_tail_never_yields_a_corrupt_record(
        batches in proptest::collection::vec(1..12u64, 1..10),
        codec in 0..3usize,
        cut in proptest::prelude::any::<u64>(),
        flip in proptest::prelude::any::<Option<(u64, u8)>>(),
    ) {
        let dir = test_dir("tornmodel");
        let c = SpoolConfig { compression: [Compression::None, Compression::Lz4, Compression::Zstd][codec], ..cfg(&dir) };
        let mut n = 0;
        {
            let s = Spool::open(&c, &names(1)).unwrap();
            for b in &batches {
                for _ in 0..*b {
                    n += 1;
                    s.stage(1000 + n, &format!("id-{n}"), &body(n)).unwrap();
                }
                s.commit().unwrap();
            }
        }
        let (_, last) = segment::list(&dir).unwrap().pop().unwrap();
        let mut data = std::fs::read(&last).unwrap();
        let boundaries = frame_offsets(&data);
        let cut_at = (cut % (data.len() as u64 + 1)) as usize;
        // A cut at a frame boundary (or before the first frame) looks like a file that was never
        // longer: the fsync window of a power cut, not detectable, nothing to announce.
        let detectable = flip.is_some_and(|(_, x)| x != 0 && cut_at > 0)
            || (cut_at > 8 && cut_at < data.len() && !boundaries.contains(&cut_at));
        data.truncate(cut_at);
        if let Some((at, x)) = flip {
            if !data.is_empty() && x != 0 {
                let i = (at % data.len() as u64) as usize;
                data[i] ^= x;
            }
        }
        std::fs::write(&last, &data).unwrap();
        let s = Spool::open(&c, &names(1)).unwrap();
        let mut r = s.reader(0);
        let mut got = Vec::new();
        loop {
            match r.next(NOW) {
                Ok(Some(rec)) => got.push(rec),
                Ok(None) => break,
                Err(_) => {}
            }
        }
        let (events, notices): (Vec<Record>, Vec<Record>) = got.into_iter().partition(|r| r.id.starts_with("id-"));
        for (i, rec) in events.iter().enumerate() {
            let want = i as u64 + 1;
            proptest::prop_assert_eq!((rec.pos, rec.time_ms, &rec.id, &rec.body), (want, 1000 + want, &format!("id-{want}"), &body(want)));
        }
        let st = s.stats();
        if detectable && (events.len() as u64) < n {
            proptest::prop_assert!(st.recovered_lost > 0 || st.corrupt_skipped > 0, "{st:?}");
            proptest::prop_assert_eq!(notices.len(), 1);
            let v: serde_json::Value = serde_json::from_slice(&notices[0].body).unwrap();
            let count = v["loss"]["count"].as_u64().unwrap();
            // Exact when the headers survived, "at least one" when not; never more than was lost.
            proptest::prop_assert!(count >= 1 && count <= n - events.len() as u64, "{v} of {} lost", n - events.len() as u64);
        }
    }
}
