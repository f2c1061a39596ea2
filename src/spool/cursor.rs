//! Per-output cursor files: the last position the output's receiver acknowledged.
//!
//! Written atomically (tmp file, fdatasync, rename, fsync dir) so a crash leaves either the old or
//! the new value, never a torn one.

use std::fs::File;
use std::io::Write;
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
    let tmp = dir.join(format!(".{PREFIX}{name}.tmp"));
    let mut f = File::create(&tmp).map_err(SpoolError::io(&tmp, "create"))?;
    f.write_all(format!("{pos}\n").as_bytes()).map_err(SpoolError::io(&tmp, "write"))?;
    f.sync_data().map_err(SpoolError::io(&tmp, "fdatasync"))?;
    std::fs::rename(&tmp, &p).map_err(SpoolError::io(&p, "rename"))?;
    sync_dir(dir)
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
