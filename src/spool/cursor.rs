//! Per-output cursor files: the last position the output's receiver acknowledged.
//!
//! Fixed width (20 digits + '\n'), overwritten in place with one `pwrite` at offset 0 and
//! `fdatasync`ed. In place, because a full disk must not stop cursors from moving (freeing space
//! needs the cursors that allow deleting segments; a tmp file + rename would need a new block).
//! A 21-byte write at offset 0 lies in one sector, which disks write atomically, so a crash leaves
//! the old or the new value. The file is created (and the directory fsynced) when the spool opens.

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::segment::sync_dir;
use super::SpoolError;

const PREFIX: &str = "cursor-";

/// Output names become file names: keep them to a safe alphabet (checked by output config).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.')
}

pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{PREFIX}{name}"))
}

/// The persisted cursor of `name`, `None` when the output has never acknowledged anything here.
pub fn load(dir: &Path, name: &str) -> Result<Option<u64>, SpoolError> {
    let p = path(dir, name);
    match std::fs::read_to_string(&p) {
        Ok(text) => text
            .trim_end_matches('\n')
            .parse()
            .map(Some)
            .map_err(|_| SpoolError::BadCursor { path: p, content: text.chars().take(40).collect() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SpoolError::Io { path: p, op: "read cursor", source: e }),
    }
}

/// Every cursor file in `dir` (name, position): used to never reuse an acknowledged position.
pub fn load_all(dir: &Path) -> Result<Vec<(String, u64)>, SpoolError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(SpoolError::io(dir, "read_dir"))? {
        let entry = entry.map_err(SpoolError::io(dir, "read_dir"))?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else { continue };
        if !valid_name(name) {
            continue;
        }
        if let Some(pos) = load(dir, name)? {
            out.push((name.to_string(), pos));
        }
    }
    Ok(out)
}

pub fn store(dir: &Path, name: &str, pos: u64) -> Result<(), SpoolError> {
    let p = path(dir, name);
    let existed = p.exists();
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(crate::file_trust::NO_FOLLOW)
        .open(&p)
        .map_err(SpoolError::io(&p, "open"))?;
    f.write_all_at(format!("{pos:020}\n").as_bytes(), 0).map_err(SpoolError::io(&p, "write"))?;
    f.sync_data().map_err(SpoolError::io(&p, "fdatasync"))?;
    if !existed {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_load_and_bad_content() {
        let dir = crate::spool::store::test_dir("cursor");
        assert_eq!(load(&dir, "relp-0").unwrap(), None);
        store(&dir, "relp-0", 41).unwrap();
        store(&dir, "relp-0", 42).unwrap();
        store(&dir, "file.main", 7).unwrap();
        assert_eq!(load(&dir, "relp-0").unwrap(), Some(42));
        assert_eq!(std::fs::read_to_string(path(&dir, "relp-0")).unwrap(), "00000000000000000042\n");
        let mut all = load_all(&dir).unwrap();
        all.sort();
        assert_eq!(all, vec![("file.main".to_string(), 7), ("relp-0".to_string(), 42)]);
        std::fs::write(path(&dir, "bad"), "x1\n").unwrap();
        let e = load(&dir, "bad").unwrap_err().to_string();
        assert!(e.contains("cursor-bad") && e.contains("x1"), "{e}");
    }

    #[test]
    fn names() {
        assert!(valid_name("relp-0"));
        assert!(valid_name("siem_main.1"));
        assert!(!valid_name(""));
        assert!(!valid_name("../x"));
        assert!(!valid_name(".hidden"));
        assert!(!valid_name("a b"));
    }
}
