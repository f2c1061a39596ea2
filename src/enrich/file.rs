//! PATH records: `name=… inode=… dev=fe:00 mode=0104755 ouid=0 ogid=0 nametype=NORMAL`.
//!
//! `mode` stays the octal text the kernel wrote (`0104755`, `audit_log_name`: `%#ho`), and gets
//! an `ls -l` rendering beside it with the set-id and sticky bits kept (`-rwsr-xr-x`): those bits
//! are what an auditor looks for. `ausearch -i` prints the same mode as `file,suid,755`.

/// `ls -l`'s ten characters for a `st_mode`: type, then rwx ×3 with s/S, s/S and t/T.
pub fn mode_symbolic(mode: u32) -> [u8; 10] {
    let kind = match mode & 0o170000 {
        0o100000 => b'-',
        0o040000 => b'd',
        0o120000 => b'l',
        0o020000 => b'c',
        0o060000 => b'b',
        0o010000 => b'p',
        0o140000 => b's',
        _ => b'?',
    };
    let mut out = [kind, b'-', b'-', b'-', b'-', b'-', b'-', b'-', b'-', b'-'];
    let rwx = [b'r', b'w', b'x'];
    for i in 0..9 {
        if mode & (0o400 >> i) != 0 {
            out[1 + i] = rwx[i % 3];
        }
    }
    let special = |out: &mut [u8; 10], bit: u32, at: usize, set: u8| {
        if mode & bit != 0 {
            out[at] = if out[at] == b'x' { set } else { set.to_ascii_uppercase() };
        }
    };
    special(&mut out, 0o4000, 3, b's');
    special(&mut out, 0o2000, 6, b's');
    special(&mut out, 0o1000, 9, b't');
    out
}

/// Parse the kernel's octal `mode=` text.
pub fn parse_mode(text: &[u8]) -> Option<u32> {
    if text.is_empty() || text.len() > 7 {
        return None;
    }
    let mut m = 0u32;
    for &c in text {
        let d = c.wrapping_sub(b'0');
        if d > 7 {
            return None;
        }
        m = m << 3 | u32::from(d);
    }
    (m <= 0o177777).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(mode: &str) -> String {
        String::from_utf8(mode_symbolic(parse_mode(mode.as_bytes()).unwrap()).to_vec()).unwrap()
    }

    #[test]
    fn renders_like_ls() {
        assert_eq!(sym("0100755"), "-rwxr-xr-x");
        assert_eq!(sym("0104755"), "-rwsr-xr-x");
        assert_eq!(sym("0104644"), "-rwSr--r--");
        assert_eq!(sym("0102755"), "-rwxr-sr-x");
        assert_eq!(sym("041777"), "drwxrwxrwt");
        assert_eq!(sym("041776"), "drwxrwxrwT");
        assert_eq!(sym("0120777"), "lrwxrwxrwx");
        assert_eq!(sym("020620"), "crw--w----");
        assert_eq!(sym("060660"), "brw-rw----");
        assert_eq!(sym("010600"), "prw-------");
        assert_eq!(sym("0140755"), "srwxr-xr-x");
        assert_eq!(sym("0644"), "?rw-r--r--");
        assert_eq!(parse_mode(b"0200000"), None);
        assert_eq!(parse_mode(b"09"), None);
    }
}
