//! Rule sources → numbered lines, with augenrules semantics for directories.
//!
//! A file is read line by line as `auditctl -R` reads it. A directory is read as augenrules builds
//! audit.rules from rules.d: its `*.rules` regular files in natural (`ls -v`) order, comments and
//! empty lines dropped, and the control lines hoisted the way augenrules' awk script does it — the
//! last `-D` (exactly `-D`), the last `-b` and the last `-f` go first in that order, every other line
//! keeps its order, and the last `-e` goes last. Each line keeps its origin (file and line number)
//! so errors point at the file the user wrote, not at a generated one. Sources larger than
//! [`MAX_SOURCE_BYTES`] are refused rather than read unbounded.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

/// Upper bound for one rules file (the largest public rule sets are ~100 KiB).
pub const MAX_SOURCE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceLine {
    pub path: PathBuf,
    /// 1-based line number in `path`.
    pub line: usize,
    pub text: String,
}

impl SourceLine {
    pub fn location(&self) -> String {
        format!("{}:{}", self.path.display(), self.line)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: larger than {MAX_SOURCE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: not valid UTF-8 at line {line}")]
    NotUtf8 { path: PathBuf, line: usize },
}

/// Lines of one file, in order, as written (blank and comment lines included).
pub fn read_file(path: &Path) -> Result<Vec<SourceLine>, SourceError> {
    let meta = std::fs::metadata(path).map_err(|source| SourceError::Read { path: path.to_path_buf(), source })?;
    if meta.len() > MAX_SOURCE_BYTES {
        return Err(SourceError::TooLarge { path: path.to_path_buf() });
    }
    let bytes = std::fs::read(path).map_err(|source| SourceError::Read { path: path.to_path_buf(), source })?;
    lines_of(path, &bytes)
}

pub fn lines_of(path: &Path, bytes: &[u8]) -> Result<Vec<SourceLine>, SourceError> {
    // A final newline ends the last line; it does not start another one.
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if body.is_empty() && bytes.len() <= 1 {
        return Ok(Vec::new());
    }
    body.split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, raw)| {
            let text =
                std::str::from_utf8(raw).map_err(|_| SourceError::NotUtf8 { path: path.to_path_buf(), line: i + 1 })?;
            Ok(SourceLine { path: path.to_path_buf(), line: i + 1, text: text.to_string() })
        })
        .collect()
}

/// `ls -v` order: digit runs compare as numbers, everything else byte-wise.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let dx = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let dy = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let nx = std::str::from_utf8(&x[..dx]).unwrap_or("0").trim_start_matches('0');
                let ny = std::str::from_utf8(&y[..dy]).unwrap_or("0").trim_start_matches('0');
                let ord = nx.len().cmp(&ny.len()).then_with(|| nx.cmp(ny));
                if ord != Ordering::Equal {
                    return ord;
                }
                x = &x[dx..];
                y = &y[dy..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

/// The `*.rules` regular files of a directory in augenrules order.
pub fn rules_files(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let rd = std::fs::read_dir(dir).map_err(|source| SourceError::Read { path: dir.to_path_buf(), source })?;
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| SourceError::Read { path: dir.to_path_buf(), source })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rules") && entry.path().is_file() {
            names.push(name);
        }
    }
    names.sort_by(|a, b| natural_cmp(a, b));
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

fn starts_with_opt(text: &str, opt: &str) -> bool {
    text.trim_start().starts_with(opt)
}

/// augenrules' awk: drop blanks and comments, hoist -D/-b/-f first and -e last.
pub fn augenrules_order(lines: Vec<SourceLine>) -> Vec<SourceLine> {
    let (mut minus_d, mut minus_b, mut minus_f, mut minus_e) = (None, None, None, None);
    let mut rest = Vec::new();
    for l in lines {
        let t = l.text.as_str();
        if t.is_empty() || t.trim_start().starts_with('#') {
            continue;
        }
        if starts_with_opt(t, "-e") {
            minus_e = Some(l);
        } else if t.trim() == "-D" {
            minus_d = Some(l);
        } else if starts_with_opt(t, "-f") {
            minus_f = Some(l);
        } else if starts_with_opt(t, "-b") {
            minus_b = Some(l);
        } else {
            rest.push(l);
        }
    }
    let mut out: Vec<SourceLine> = [minus_d, minus_b, minus_f].into_iter().flatten().collect();
    out.extend(rest);
    out.extend(minus_e);
    out
}

/// Lines of a file or of a rules.d-style directory.
pub fn read_path(path: &Path) -> Result<Vec<SourceLine>, SourceError> {
    if path.is_dir() {
        let mut all = Vec::new();
        for f in rules_files(path)? {
            all.extend(read_file(&f)?);
        }
        Ok(augenrules_order(all))
    } else {
        read_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_like_ls_v() {
        let mut v =
            vec!["10-base.rules", "9-x.rules", "99-finalize.rules", "30-stig.rules", "30-ospp-v42.rules", "02-a.rules"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            ["02-a.rules", "9-x.rules", "10-base.rules", "30-ospp-v42.rules", "30-stig.rules", "99-finalize.rules"]
        );
    }

    #[test]
    fn hoists_like_augenrules() {
        let p = Path::new("x.rules");
        let lines =
            lines_of(p, b"-e 2\n-w /etc/a\n# c\n\n-D\n-b 8192\n-f 1\n-w /etc/b\n-b 320\n-D -k x\n-e 1\n").unwrap();
        let ordered = augenrules_order(lines);
        let texts: Vec<&str> = ordered.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["-D", "-b 320", "-f 1", "-w /etc/a", "-w /etc/b", "-D -k x", "-e 1"]);
    }

    #[test]
    fn line_numbers_and_final_newline() {
        let l = lines_of(Path::new("f"), b"a\n\nb\n").unwrap();
        assert_eq!(l.iter().map(|l| (l.line, l.text.as_str())).collect::<Vec<_>>(), [(1, "a"), (2, ""), (3, "b")]);
        let l = lines_of(Path::new("f"), b"a").unwrap();
        assert_eq!(l.len(), 1);
        assert!(matches!(lines_of(Path::new("f"), b"ok\n\xff\n"), Err(SourceError::NotUtf8 { line: 2, .. })));
    }

    #[test]
    fn directory_reads_only_rules_files_in_order() {
        let dir = std::env::temp_dir().join(format!("auditrelay-src-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub.rules")).unwrap();
        std::fs::write(dir.join("10-b.rules"), "-w /etc/b\n-e 1\n").unwrap();
        std::fs::write(dir.join("9-a.rules"), "-D\n-w /etc/a\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "-w /etc/no\n").unwrap();
        let lines = read_path(&dir).unwrap();
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["-D", "-w /etc/a", "-w /etc/b", "-e 1"]);
        assert_eq!(lines[2].location(), format!("{}:1", dir.join("10-b.rules").display()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
