//! Schema v2's interpretation of events the real kernel sends `auditrelay run` (issue 8): an exec
//! with an argument the kernel splits across EXECVE records, a connect to 127.0.0.1, and a file
//! create, each checked member by member against what the test itself did.

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{marker, Daemon, KernelGuard, TempDir};
use serde_json::Value;

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

fn has_key(v: &Value, key: &str) -> bool {
    strings(&v["keys"]).iter().any(|k| k == key)
}

#[test]
fn exec_connect_and_create_are_decoded() {
    let guard = KernelGuard::take();
    let dir = TempDir::new("enrich");
    let (exec_key, net_key, file_key) = (marker("x"), marker("n"), marker("f"));
    let watched = dir.path("watched");
    std::fs::create_dir_all(&watched).expect("watched dir");
    let rules = format!(
        "-a always,exit -F arch=b64 -S execve -F pid!={me} -k {exec_key}\n\
         -a always,exit -F arch=b64 -S connect -F pid={me} -k {net_key}\n\
         -w {} -p wa -k {file_key}\n",
        watched.display(),
        me = std::process::id(),
    );
    let config = dir.config_with_rules(&rules, "");
    let mut daemon = Daemon::start(&["run", "--config", &config]);
    daemon.wait_registered(Duration::from_secs(10));
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname").trim().to_string();

    // An exec whose second argument (with a space, so hex) is split across records.
    let head = marker("split arg");
    let long = format!("{head} {}", "y".repeat(12_000));
    let out = Command::new("/bin/echo").arg(&long).arg("tail").output().expect("run echo");
    assert!(out.status.success());
    let exec = daemon
        .wait_for(Duration::from_secs(15), |v| has_key(v, &exec_key) && strings(&v["process"]["argv"]).contains(&long))
        .expect("exec event with the reassembled split argument");
    assert_eq!(strings(&exec["process"]["argv"]), vec!["/bin/echo".to_string(), long.clone(), "tail".into()]);
    assert_eq!(exec["process"]["argc"], 3);
    assert!(exec["process"].get("argv_incomplete").is_none(), "{}", exec["process"]);
    assert!(
        exec["records"].as_array().unwrap().iter().any(|r| r["fields"].get("a1_len").is_some()),
        "the kernel did split it"
    );
    let sc = &exec["syscall"];
    assert_eq!(
        (sc["name"].as_str(), sc["arch"].as_str(), sc["number"].as_u64()),
        (Some("execve"), Some("x86_64"), Some(59))
    );
    assert_eq!((sc["success"].as_bool(), sc["exit"].as_i64()), (Some(true), Some(0)));
    assert!(sc.get("exit_name").is_none());
    assert_eq!(exec["process"]["comm"], "echo");
    assert!(exec["process"]["exe"].as_str().is_some_and(|e| e.ends_with("/echo")), "{}", exec["process"]);
    assert_eq!(strings(&exec["process"]["title"]).first().map(String::as_str), Some("/bin/echo"));
    assert_eq!(exec["process"]["ppid"].as_u64(), Some(u64::from(std::process::id())));
    assert_eq!(exec["host"], hostname.as_str());
    assert_eq!(exec["user"]["uid"], 0, "tests run as root");
    let paths = exec["file"]["paths"].as_array().expect("PATH records decoded");
    assert!(paths
        .iter()
        .any(|p| p["name"] == "/bin/echo" && p["mode_symbolic"].as_str().is_some_and(|m| m.starts_with("-r"))));

    // A connect to 127.0.0.1:<port>, from this process.
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let _conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let net = daemon
        .wait_for(Duration::from_secs(15), |v| {
            has_key(v, &net_key) && v["network"].as_array().is_some_and(|n| n.iter().any(|a| a["port"] == port))
        })
        .expect("connect event");
    assert_eq!(net["syscall"]["name"], "connect");
    let addr = net["network"].as_array().unwrap().iter().find(|a| a["port"] == port).unwrap();
    assert_eq!((addr["family"].as_str(), addr["address"].as_str()), (Some("inet"), Some("127.0.0.1")));

    // A file created in the watched directory.
    let name = marker("created");
    std::fs::write(watched.join(&name), b"x").expect("create");
    let created = daemon
        .wait_for(Duration::from_secs(15), |v| {
            has_key(v, &file_key)
                && v["file"]["paths"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p["name"].as_str().is_some_and(|n| n.ends_with(&name)) && p["nametype"] == "CREATE")
                })
        })
        .expect("create event");
    let p = created["file"]["paths"].as_array().unwrap().iter().find(|p| p["nametype"] == "CREATE").unwrap();
    assert!(p["mode_symbolic"].as_str().is_some_and(|m| m.starts_with('-')), "{p}");
    assert!(p["mode"].as_str().is_some_and(|m| m.starts_with("0100")), "{p}");
    assert_eq!(p["ouid"], 0);
    assert!(p["inode"].as_u64().is_some());
    assert_eq!(created["syscall"]["success"], true);

    let (exit, _) = daemon.terminate();
    assert!(exit.success(), "exit status {exit}");
    assert_eq!(guard.status().pid, 0, "unregistered");
}
