//! Which files auditrelay trusts, and how it creates the files it writes.
//!
//! **Read and obeyed.** The config file and local rule sources decide what the kernel audits and
//! where events go: whoever can change one can switch auditing off, or point the trail elsewhere.
//! So when running as root auditrelay refuses (an error naming the file and why):
//! - a file not owned by root, or writable by its group or by others;
//! - a file whose directory, or any directory above it, is not owned by root or is writable by
//!   group or others without the sticky bit: whoever may write there may replace the file (with
//!   the sticky bit, as on /tmp, they may not rename or delete root's entries).
//!
//! Both the path as written and the path its symbolic links resolve to are checked. `run`
//! checks the config file ([`crate::config::Config::load`]) and every local rule file and rules.d
//! directory it loads (a refused rule source falls back like any unusable set:
//! [`crate::daemon`]'s rules module). `rules check` and `replay`, which anyone may run on their own
//! files, are not affected unless run as root.
//!
//! **Written.** Spool segments, the spool lock, cursors, the rules cache and file outputs are
//! created with mode 0600 (file outputs: their `mode`, default 0600, set exactly) under umask
//! 0077, which [`restrict_umask`] sets when `run` starts so that anything else it creates is
//! root's alone. They are opened with `O_NOFOLLOW` ([`NO_FOLLOW`]): a symbolic link planted in
//! their place is an error (ELOOP), never a write to wherever it points. A spool directory or file
//! output path that is itself a symbolic link is refused up front, naming the link and its target
//! ([`refuse_symlink`]).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Open flag for every file auditrelay writes (module docs).
pub const NO_FOLLOW: i32 = libc::O_NOFOLLOW;

/// A file auditrelay will not read (or write through), and why.
#[derive(Debug, thiserror::Error)]
#[error("{path}: refused: {why}")]
pub struct Untrusted {
    pub path: PathBuf,
    pub why: String,
}

/// umask 0077: nothing `run` creates is readable or writable by anyone but root.
pub fn restrict_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
}

/// Refuse `path` if it is a symbolic link (`what` names it in the message: "spool directory").
pub fn refuse_symlink(path: &Path, what: &str) -> Result<(), Untrusted> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::read_link(path).map(|t| t.display().to_string()).unwrap_or_else(|_| "?".into());
            Err(Untrusted {
                path: path.to_path_buf(),
                why: format!(
                    "the {what} is a symbolic link (to {target}); auditrelay never writes through a symlink, \
                     which whoever controls the link could point anywhere: give the real path"
                ),
            })
        }
        _ => Ok(()),
    }
}

/// What is wrong with an entry owned by `uid` with `mode`, if anything (module docs).
fn judge(is_dir: bool, uid: u32, mode: u32) -> Option<String> {
    let perms = mode & 0o7777;
    if uid != 0 {
        return Some(format!("owned by uid {uid}, not root: that user could change it"));
    }
    if perms & 0o022 == 0 {
        return None;
    }
    let who = match (perms & 0o020 != 0, perms & 0o002 != 0) {
        (true, true) => "its group and others",
        (true, false) => "its group",
        _ => "others",
    };
    if !is_dir {
        Some(format!("writable by {who} (mode {perms:04o}): they could change it; chmod go-w"))
    } else if perms & 0o1000 == 0 {
        Some(format!(
            "writable by {who} (mode {perms:04o}) without the sticky bit: they could replace the file in it; chmod go-w"
        ))
    } else {
        None
    }
}

/// What is wrong with the entry at `path` (as a directory above a checked file or not), if anything.
fn check_entry(path: &Path, above: bool) -> Option<String> {
    match std::fs::metadata(path) {
        Err(e) => Some(format!("cannot stat {}: {e}", path.display())),
        Ok(meta) => judge(above && meta.is_dir(), meta.uid(), meta.mode()),
    }
}

/// `path` and every directory above it.
fn check_chain(path: &Path) -> Option<String> {
    if let Some(why) = check_entry(path, false) {
        return Some(why);
    }
    path.ancestors()
        .skip(1)
        .filter(|d| !d.as_os_str().is_empty())
        .find_map(|dir| check_entry(dir, true).map(|why| format!("the directory {} above it is {why}", dir.display())))
}

/// Refuse a file (or directory) root would read and obey that someone else can change: the path
/// as written (made absolute) and, when symbolic links lead elsewhere, as resolved.
pub fn check_trusted(path: &Path) -> Result<(), Untrusted> {
    let refuse = |why: String| Untrusted { path: path.to_path_buf(), why };
    let absolute = std::path::absolute(path).map_err(|e| refuse(format!("cannot resolve: {e}")))?;
    if let Some(why) = check_chain(&absolute) {
        return Err(refuse(why));
    }
    let resolved = std::fs::canonicalize(path).map_err(|e| refuse(format!("cannot resolve: {e}")))?;
    if resolved != absolute {
        if let Some(why) = check_chain(&resolved) {
            return Err(refuse(format!("resolves to {}: {why}", resolved.display())));
        }
    }
    Ok(())
}

/// [`check_trusted`] only when this process runs as root (module docs).
pub fn check_trusted_as_root(path: &Path) -> Result<(), Untrusted> {
    if nix::unistd::geteuid().is_root() {
        check_trusted(path)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_change_a_file_decides() {
        assert_eq!(judge(false, 0, 0o100644), None);
        assert_eq!(judge(false, 0, 0o100600), None);
        assert!(judge(false, 1000, 0o100644).unwrap().contains("uid 1000"));
        assert!(judge(false, 0, 0o100664).unwrap().contains("its group"));
        assert!(judge(false, 0, 0o100646).unwrap().contains("writable by others"));
        assert!(judge(false, 0, 0o100666).unwrap().contains("its group and others"));
        assert_eq!(judge(true, 0, 0o040755), None);
        assert!(judge(true, 0, 0o040777).unwrap().contains("sticky"));
        assert_eq!(judge(true, 0, 0o041777), None, "/tmp: others cannot replace root's entries");
        assert!(judge(true, 1000, 0o041777).is_some());
    }

    #[test]
    fn symlinks_are_named_with_their_target() {
        let dir = std::env::temp_dir().join(format!("auditrelay-trust-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("spool");
        std::os::unix::fs::symlink("/elsewhere", &link).unwrap();
        let e = refuse_symlink(&link, "spool directory").unwrap_err().to_string();
        assert!(e.contains("spool directory is a symbolic link (to /elsewhere)"), "{e}");
        assert!(refuse_symlink(&dir, "spool directory").is_ok());
        assert!(refuse_symlink(&dir.join("missing"), "spool directory").is_ok(), "created later");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
