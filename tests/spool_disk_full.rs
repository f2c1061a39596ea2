//! A full disk under the spool (a 512 KiB tmpfs): the failing append is an error naming the segment
//! path, nothing accepted before it is lost, and once outputs acknowledge (which frees segments)
//! appends work again. Needs root for the mount, and fails without it (CI runs as root).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use auditrelay::spool::{Appended, OnFull, Spool, SpoolConfig, SpoolError};

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn cfg(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.join("spool"),
        // Far more than the filesystem holds: the disk fills before the spool bound.
        max_bytes: 64 << 20,
        segment_bytes: 64 << 10,
        max_record_bytes: 8 << 10,
        on_full: OnFull::DropOldest,
        fsync_interval: Duration::from_millis(100),
        fsync_every: 0,
        cursor_interval: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(5),
        ..SpoolConfig::default()
    }
}

#[test]
fn disk_full_is_an_error_naming_the_path_and_loses_nothing_accepted() {
    // Regression: this test used to return (pass) when not root, without testing anything.
    assert_eq!(unsafe { libc::geteuid() }, 0, "mounting the tmpfs needs root: run as root (tests/run-all.sh)");
    let dir = std::env::temp_dir().join(format!("auditrelay-diskfull-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ok = Command::new("mount").args(["-t", "tmpfs", "-o", "size=512k"]).arg("tmpfs").arg(&dir).status().unwrap();
    assert!(ok.success(), "mount tmpfs");
    let _mount = Mount(dir.clone());

    let spool = Spool::open(&cfg(&dir), &["out".to_string()]).unwrap();
    let body = vec![b'x'; 1000];
    let mut accepted = 0u64;
    let err = loop {
        match spool.append(accepted, &format!("ev-{}", accepted + 1), &body) {
            Ok(Appended::Stored { pos }) => {
                accepted += 1;
                assert_eq!(pos, accepted);
            }
            Ok(Appended::Dropped) => panic!("dropped before the disk was full"),
            Err(e) => break e,
        }
        assert!(accepted < 10_000, "the tmpfs never filled");
    };
    let msg = err.to_string();
    match &err {
        SpoolError::Write { path, source, events } => {
            assert!(path.starts_with(dir.join("spool")) && path.to_string_lossy().contains("seg-"), "{msg}");
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{msg}");
            assert_eq!(*events, 1, "only the event being appended is lost: {msg}");
        }
        other => panic!("expected an I/O error, got {other}"),
    }
    eprintln!("disk full after {accepted} events: {msg}");
    assert!(accepted > 100);

    // Everything accepted is readable, in order, nothing else.
    let mut r = spool.reader(0);
    let mut n = 0;
    while let Some(rec) = r.next(Duration::ZERO).unwrap() {
        n += 1;
        assert_eq!(rec.pos, n);
        assert_eq!(rec.body, body);
    }
    assert_eq!(n, accepted);

    // Still full: more appends fail, and fail cleanly.
    assert!(spool.append(0, "again", &body).is_err());

    // The output acknowledges everything; the cursor (written in place) persists on a full disk
    // and the segments go, so there is room again.
    spool.ack(0, accepted);
    spool.flush().unwrap();
    let Appended::Stored { pos: after } = spool.append(0, "after", &body).unwrap() else { panic!("dropped") };
    assert!(after > accepted);
    // The first failure lost 1 event; the second could not start a new segment (its header did not
    // fit) and lost the event; the loss notice was not staged then and stays due.
    assert_eq!(spool.stats().write_lost, 2, "every record of both failed writes is counted");

    // And a restart recovers exactly that state: first the in-band notice of what both failures
    // lost (with the total since start), then the event after.
    drop(r);
    drop(spool);
    let spool = Spool::open(&cfg(&dir), &["out".to_string()]).unwrap();
    let mut r = spool.reader(0);
    let notice = r.next(Duration::ZERO).unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&notice.body).unwrap();
    assert_eq!(v["loss"]["kind"], "spool_dropped", "{v}");
    assert_eq!(v["loss"]["reason"], "write_error", "{v}");
    assert_eq!((v["loss"]["count"].as_u64(), v["loss"]["total"].as_u64()), (Some(2), Some(2)), "{v}");
    let rec = r.next(Duration::ZERO).unwrap().unwrap();
    assert_eq!((rec.pos, rec.id.as_str()), (after, "after"));
}
