//! Files auditrelay reads and obeys, and files it writes (issue 10, Security; src/file_trust.rs):
//! `run` as root refuses a config or rule file someone else could change, naming the file and
//! why; refuses a symlinked spool directory or file output path; creates what it writes 0600 (or
//! exactly the file output's `mode`) under umask 0077; never writes through a symlink. Root (the
//! tests chown files and run the daemon); the kernel lock for every case that starts `run`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{marker, Daemon, KernelGuard, TempDir};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

/// `auditrelay run --config <config>`, which must exit non-zero within 20 s; its stderr.
fn run_refused(config: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("auditrelay run did not refuse {} (still running after 20 s)", config.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "refused with a non-zero exit: {err}");
    err
}

#[test]
fn group_writable_config_is_refused_naming_it() {
    let _guard = KernelGuard::take();
    let dir = TempDir::new("trust-gw");
    let config = dir.path("auditrelay.toml");
    std::fs::write(&config, "").unwrap();
    chmod(&config, 0o664);
    let err = run_refused(&config);
    assert!(err.contains(&config.display().to_string()) && err.contains("writable by its group"), "{err}");
}

#[test]
fn config_owned_by_another_user_is_refused() {
    let _guard = KernelGuard::take();
    let dir = TempDir::new("trust-uid");
    let config = dir.path("auditrelay.toml");
    std::fs::write(&config, "").unwrap();
    std::os::unix::fs::chown(&config, Some(65534), None).unwrap();
    let err = run_refused(&config);
    assert!(err.contains(&config.display().to_string()) && err.contains("owned by uid 65534"), "{err}");
}

#[test]
fn config_in_a_directory_others_may_write_is_refused() {
    let _guard = KernelGuard::take();
    let dir = TempDir::new("trust-dir");
    let config = dir.path("auditrelay.toml");
    std::fs::write(&config, "").unwrap();
    chmod(&dir.0, 0o777);
    let err = run_refused(&config);
    assert!(err.contains(&format!("the directory {} above it", dir.0.display())), "{err}");
    assert!(err.contains("without the sticky bit"), "{err}");
    // With the sticky bit others cannot replace root's file: accepted (checked without running).
    chmod(&dir.0, 0o1777);
    auditrelay::file_trust::check_trusted(&config).unwrap();
}

#[test]
fn symlinked_config_is_checked_where_it_leads() {
    let dir = TempDir::new("trust-link");
    let real = dir.path("real.toml");
    std::fs::write(&real, "").unwrap();
    std::os::unix::fs::chown(&real, Some(65534), None).unwrap();
    let link = dir.path("auditrelay.toml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let e = auditrelay::file_trust::check_trusted(&link).unwrap_err().to_string();
    assert!(e.contains("owned by uid 65534"), "{e}");
}

/// A rule file others may write is not loaded: the daemon falls back (here to the embedded
/// rules, there being no last good set) and says which file and why.
#[test]
fn rule_file_others_may_write_is_not_loaded() {
    let _guard = KernelGuard::take();
    let dir = TempDir::new("trust-rules");
    let key = marker("trust-rules");
    let config = dir.config_with_rules(
        &format!("-a always,exit -F arch=b64 -S execve -k {key}\n"),
        &format!("cache_dir = {:?}\n", dir.path("cache").display().to_string()),
    );
    let rules = dir.path("test.rules");
    chmod(&rules, 0o666);
    let ready = common::Ready::new();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_auditrelay"));
    ready.pass_to(&mut cmd);
    let mut child =
        cmd.args(["run", "--config", &config]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    // Its stdout is not read here: a channel whose sender is gone.
    let mut daemon = Daemon { child, lines: std::sync::mpsc::channel().1, seen: Vec::new(), ready: Some(ready) };
    daemon.wait_registered(Duration::from_secs(10));
    let listed = || String::from_utf8_lossy(&Command::new("auditctl").arg("-l").output().unwrap().stdout).into_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listed().contains("key=exec") {
        assert!(Instant::now() < deadline, "the embedded rules were not loaded: {}", listed());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!listed().contains(&key), "the refused file's rule is not loaded");
    let (exit, _) = daemon.terminate();
    assert!(exit.success(), "exit status {exit}");
    let err = stderr.join().unwrap();
    assert!(
        err.contains(&format!("rule source {}: refused: writable by its group and others", rules.display())),
        "{err}"
    );
}

#[test]
fn symlinked_spool_dir_and_file_output_are_refused() {
    let _guard = KernelGuard::take();
    let dir = TempDir::new("trust-symlink");
    let real = dir.path("real");
    std::fs::create_dir(&real).unwrap();
    let spool = dir.path("spool");
    std::os::unix::fs::symlink(&real, &spool).unwrap();
    let config = dir.path("a.toml");
    std::fs::write(
        &config,
        format!("[spool]\ndir = {:?}\n[[output]]\ntype = \"stdout\"\n", spool.display().to_string()),
    )
    .unwrap();
    let err = run_refused(&config);
    assert!(err.contains(&spool.display().to_string()) && err.contains("spool directory is a symbolic link"), "{err}");

    let events = dir.path("events.jsonl");
    std::os::unix::fs::symlink("/etc/passwd", &events).unwrap();
    std::fs::write(
        &config,
        format!(
            "[spool]\ndir = {:?}\n[[output]]\ntype = \"file\"\npath = {:?}\n",
            real.display().to_string(),
            events.display().to_string()
        ),
    )
    .unwrap();
    let err = run_refused(&config);
    assert!(err.contains("file output path is a symbolic link (to /etc/passwd)"), "{err}");
}

/// What `run` creates: spool directory 0700, segments and cursors 0600, the file output exactly
/// its `mode` (0640 here, which umask 0077 alone would narrow to 0600), and under umask 0077 the
/// directories it creates without naming a mode (the rules cache, `create_dir_all`) are 0700.
#[test]
fn files_it_writes_are_root_only() {
    let _guard = KernelGuard::take();
    let dir = TempDir::new("trust-modes");
    let key = marker("trust-modes");
    let (spool, events) = (dir.path("spool"), dir.path("events.jsonl"));
    let config = dir.config_with_rules(
        &format!("-a always,exit -F arch=b64 -S execve -k {key}\n"),
        &format!(
            "cache_dir = {:?}\n[spool]\ndir = {:?}\ncursor_interval = \"100ms\"\n[[output]]\ntype = \"file\"\nname = \"f\"\npath = {:?}\nmode = 0o640\n",
            dir.path("cache/rules").display().to_string(),
            spool.display().to_string(),
            events.display().to_string()
        ),
    );
    let mut daemon = Daemon::start(&["run", "--config", &config]);
    daemon.wait_registered(Duration::from_secs(10));
    // Registration comes before the rules are loaded: exec again until one is audited.
    let arg = marker("trust-modes-exec");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&events).is_ok_and(|t| t.contains(&arg)) {
        assert!(Instant::now() < deadline, "event in the file output");
        assert!(Command::new("/bin/true").arg(&arg).status().unwrap().success());
        std::thread::sleep(Duration::from_millis(500));
    }
    let (exit, _) = daemon.terminate();
    assert!(exit.success(), "exit status {exit}");
    assert_eq!(mode_of(&events), 0o640, "file output: exactly its mode");
    assert_eq!(mode_of(&spool), 0o700, "spool directory");
    let mut files = 0;
    for entry in std::fs::read_dir(&spool).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode_of(&path), 0o600, "{}", path.display());
        files += 1;
    }
    assert!(files >= 3, "lock, a segment and the cursor at least ({files})");
    // The last good rules, kept because the configured set loaded.
    assert_eq!(mode_of(&dir.path("cache")), 0o700, "rules cache parent, created under umask 0077");
    assert_eq!(mode_of(&dir.path("cache/rules")), 0o700, "rules cache, created under umask 0077");
    assert_eq!(mode_of(&dir.path("cache/rules/last-good.rules")), 0o600);
}

/// A symlink planted where auditrelay writes its own files is an error, never a write through.
#[test]
fn own_files_are_never_written_through_a_symlink() {
    let dir = TempDir::new("trust-nofollow");
    let victim = dir.path("victim");
    std::fs::write(&victim, "untouched\n").unwrap();
    std::os::unix::fs::symlink(&victim, auditrelay::spool::cursor::path(&dir.0, "out")).unwrap();
    let e = auditrelay::spool::cursor::store(&dir.0, "out", 42).unwrap_err().to_string();
    assert!(e.contains("Too many levels of symbolic links") || e.contains("os error 40"), "{e}");
    // The rules cache: written via `<name>.tmp` and renamed; a link at the temporary name is refused.
    let cached = dir.path("rules.cache");
    std::os::unix::fs::symlink(&victim, cached.with_extension("tmp")).unwrap();
    assert!(auditrelay::rules::fetch::write_atomic(&cached, b"-w /etc/hosts\n").is_err());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
}
