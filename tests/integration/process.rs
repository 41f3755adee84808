//! The real `warren` binary: flags, data directory, and shutdown on SIGTERM.

use crate::common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A `warren` process on its own port and data directory.
pub struct Warren {
    pub child: std::process::Child,
    pub port: u16,
}

impl Warren {
    pub async fn start(dir: &std::path::Path, extra: &[&str]) -> Warren {
        // The broker picks its port and tells it in the ports file: a port picked here and
        // freed could be taken by another test's broker before this one binds it.
        let ports_file = dir.with_extension(format!("ports-{}", uniq("p")));
        let _ = std::fs::remove_file(&ports_file);
        let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["--port", "0", "--bind", "127.0.0.1"])
            .arg("--data-dir")
            .arg(dir)
            .arg("--ports-file")
            .arg(&ports_file)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn warren");
        for _ in 0..1000 {
            let port = std::fs::read_to_string(&ports_file)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["amqp"].as_u64())
                .and_then(|p| u16::try_from(p).ok());
            if let Some(port) = port {
                let _ = std::fs::remove_file(&ports_file);
                return Warren { child, port };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("warren exited before listening: {status}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("warren did not start listening");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    /// Wait for the process to exit; its exit code.
    pub async fn wait(&mut self) -> Option<i32> {
        for _ in 0..1000 {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.child.kill();
        None
    }

    pub async fn stop(mut self) {
        self.signal("-TERM");
        self.wait().await;
    }

    pub async fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Warren {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("warren-test-{}", uniq(tag)))
}

#[tokio::test]
async fn sigterm_closes_connections_with_320_and_exits_0() {
    if external() {
        return;
    }
    let dir = temp_dir("data");
    let mut w = Warren::start(&dir, &[]).await;
    assert!(dir.is_dir(), "the data directory is created");
    let mut raw = Raw::open_at(&w.addr()).await;
    raw.open_channel(1).await;
    w.signal("-TERM");
    assert_eq!(raw.expect_close().await, (0, 320, 0, 0));
    assert_eq!(w.wait().await, Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn startup_line_ports_file_and_await_startup() {
    if external() {
        return;
    }
    use std::io::{BufRead, BufReader};
    let dir = temp_dir("startup");
    let ports_file = dir.with_extension("ports");
    let mgmt = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["--port", "0", "--bind", "127.0.0.1", "--in-memory"])
        .args(["--mgmt-port", &mgmt.to_string()])
        .arg("--ports-file")
        .arg(&ports_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (line, log) = tokio::task::spawn_blocking(move || {
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("ports line");
        let mut log = String::new();
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            log.push_str(&l);
            log.push('\n');
            if l.contains("Server startup complete") {
                break;
            }
        }
        (first, log)
    })
    .await
    .expect("reader");
    let ports: serde_json::Value = serde_json::from_str(&line).expect("one JSON line");
    let amqp = ports["amqp"].as_u64().expect("amqp port");
    assert_ne!(amqp, 0, "the system's choice, not 0");
    assert_eq!(ports["management"].as_u64(), Some(u64::from(mgmt)));
    let written = std::fs::read_to_string(&ports_file).expect("ports file");
    assert_eq!(written.trim(), line.trim());
    assert!(log.contains("Server startup complete"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes when stderr is not a terminal"
    );
    // The broker serves on the chosen port.
    tokio::net::TcpStream::connect(("127.0.0.1", amqp as u16))
        .await
        .expect("amqp listening");
    let ctl = |args: &[&str], port: u16| {
        Command::new(env!("CARGO_BIN_EXE_warrenctl"))
            .args(["--port", &port.to_string()])
            .args(args)
            .output()
            .expect("warrenctl")
    };
    assert!(ctl(&["await_startup", "5"], mgmt).status.success());
    assert!(ctl(&["ping"], mgmt).status.success());
    assert!(
        !ctl(&["ping"], free_port()).status.success(),
        "nothing there: exit 1"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_file(&ports_file);
}

#[tokio::test]
async fn one_boot_path_for_the_binary_and_the_embedded_broker() {
    if external() {
        return;
    }
    // Definitions at boot, embedded: applied before the broker listens.
    let file = temp_dir("defs").with_extension("json");
    std::fs::write(
        &file,
        r#"{"exchanges":[{"name":"boot-x","vhost":"/","type":"fanout","durable":true,
            "auto_delete":false,"internal":false,"arguments":{}}],"queues":[],"bindings":[]}"#,
    )
    .expect("write");
    let b = warren::start(warren::Config {
        port: 0,
        definitions: Some(file.clone()),
        ..Default::default()
    })
    .await
    .expect("start");
    assert!(b
        .broker()
        .vhost("/")
        .and_then(|v| v.exchange("boot-x"))
        .is_some());
    b.shutdown().await;
    let _ = std::fs::remove_file(&file);
    // A taken management port: an error for an embedding that asked for it...
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let r = warren::start(warren::Config {
        port: 0,
        mgmt_port: Some(port),
        ..Default::default()
    })
    .await;
    assert!(r.is_err(), "embedded: the management port was asked for");
    // ...and a warning for the binary, which serves AMQP anyway.
    let dir = temp_dir("busy-mgmt");
    let w = Warren::start(&dir, &["--mgmt-port", &port.to_string()]).await;
    let mut raw = Raw::open_at(&w.addr()).await;
    raw.open_channel(1).await;
    w.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The warren binary with `flags` on an in-memory store; the ports it wrote to its ports file.
async fn spawn_for_ports(flags: &[&str]) -> (std::process::Child, serde_json::Value) {
    let ports_file = temp_dir("ports").with_extension("ports");
    let child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["--port", "0", "--bind", "127.0.0.1", "--in-memory"])
        .args(flags)
        .arg("--ports-file")
        .arg(&ports_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    for _ in 0..500 {
        line = std::fs::read_to_string(&ports_file).unwrap_or_default();
        if !line.trim().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = std::fs::remove_file(&ports_file);
    (
        child,
        serde_json::from_str(line.trim()).expect("ports line"),
    )
}

#[tokio::test]
async fn port_zero_everywhere_and_no_mgmt() {
    if external() {
        return;
    }
    let (mut child, ports) = spawn_for_ports(&["--mgmt-port", "0"]).await;
    let mgmt = ports["management"]
        .as_u64()
        .expect("a management port was picked");
    assert_ne!(mgmt, 0);
    let addr = format!("127.0.0.1:{mgmt}");
    let (status, _) = http_at(&addr, Some("guest:guest"), "GET", "/api/overview", None).await;
    assert_eq!(status, 200);
    let _ = child.kill();
    let _ = child.wait();
    // --no-mgmt: no management port at all.
    let (mut child, ports) = spawn_for_ports(&["--no-mgmt"]).await;
    assert_eq!(ports["management"], serde_json::Value::Null);
    let _ = child.kill();
    let _ = child.wait();
}
