//! A real S3-compatible server (moto's server mode, installed from PyPI by
//! tests/s3/setup.sh) as a process on a free port, and a TCP proxy in
//! front of it that can cut every connection and refuse new ones — the
//! endpoint going down mid-operation and coming back, with the objects
//! kept (a restarted moto would forget them).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Moto {
    child: Child,
    pub port: u16,
}

fn moto_server() -> PathBuf {
    if let Some(p) = std::env::var_os("KINDSNAP_MOTO_SERVER") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/s3-venv/bin/moto_server");
    assert!(
        p.exists(),
        "moto is missing: run tests/s3/setup.sh (scripts/test.sh does)"
    );
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "moto did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Moto {
    pub fn start() -> Moto {
        Self::start_with(&[])
    }

    /// Start with extra environment (e.g. INITIAL_NO_AUTH_ACTION_COUNT=0,
    /// which makes moto check credentials).
    pub fn start_with(env: &[(&str, &str)]) -> Moto {
        let port = free_port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        wait_listening(port);
        Moto { child, port }
    }

    /// An unsigned request (moto accepts them for writes); returns the status.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> u16 {
        http(self.port, method, path, body).0
    }

    pub fn create_bucket(&self, bucket: &str) {
        assert_eq!(self.request("PUT", &format!("/{bucket}"), b""), 200);
    }

    /// Object keys under `prefix` in `bucket`.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (_, body) = http(
            self.port,
            "GET",
            &format!("/{bucket}?list-type=2&max-keys=10000&prefix={prefix}"),
            b"",
        );
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    http_with(port, method, path, body, "")
}

/// As an S3 client would send it: moto (without INITIAL_NO_AUTH_ACTION_COUNT)
/// does not check signatures, but answers 403 to a request without any
/// `Authorization` that reads or overwrites an existing object.
pub fn http_signed(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    http_with(
        port,
        method,
        path,
        body,
        "Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0\r\n",
    )
}

fn http_with(port: u16, method: &str, path: &str, body: &[u8], extra: &str) -> (u16, String) {
    let (status, body) = http_bytes(port, method, path, body, extra);
    (status, String::from_utf8_lossy(&body).to_string())
}

/// [`http_signed`] with the answer's body as bytes (objects' contents).
pub fn http_signed_bytes(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    http_bytes(
        port,
        method,
        path,
        body,
        "Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0\r\n",
    )
}

fn http_bytes(port: u16, method: &str, path: &str, body: &[u8], extra: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/octet-stream\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let head_end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(resp.len());
    let head = String::from_utf8_lossy(&resp[..head_end]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, resp[head_end..].to_vec())
}

/// A TCP proxy to `target`. `trip` names a byte string (e.g. the request
/// line of a manifest upload): when a client sends it, the proxy goes down
/// at once — every connection cut, new ones refused — until `up()`.
pub struct Proxy {
    pub port: u16,
    down: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    trip: Arc<Mutex<Option<Vec<u8>>>>,
    pub tripped: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = Proxy {
            port,
            down: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            trip: Arc::new(Mutex::new(None)),
            tripped: Arc::new(AtomicBool::new(false)),
        };
        let (down, conns, trip, tripped) = (
            p.down.clone(),
            p.conns.clone(),
            p.trip.clone(),
            p.tripped.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if down.load(Ordering::SeqCst) {
                    // Refused: closed straight away.
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                {
                    let mut c = conns.lock().unwrap();
                    c.push(client.try_clone().unwrap());
                    c.push(server.try_clone().unwrap());
                }
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (down2, conns2, trip2, tripped2) =
                    (down.clone(), conns.clone(), trip.clone(), tripped.clone());
                // client → server, watching for the trip string
                std::thread::spawn(move || {
                    let (mut from, mut to) = (client, server);
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut tail: Vec<u8> = Vec::new();
                    loop {
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        tail.extend_from_slice(&buf[..n]);
                        let hit = trip2
                            .lock()
                            .unwrap()
                            .as_ref()
                            .is_some_and(|t| tail.windows(t.len()).any(|w| w == t.as_slice()));
                        if hit {
                            tripped2.store(true, Ordering::SeqCst);
                            down2.store(true, Ordering::SeqCst);
                            for c in conns2.lock().unwrap().drain(..) {
                                let _ = c.shutdown(Shutdown::Both);
                            }
                            break;
                        }
                        let keep = tail.len().saturating_sub(256);
                        tail.drain(..keep);
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Both);
                });
                // server → client
                std::thread::spawn(move || {
                    let (mut from, mut to) = (s2, c2);
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Both);
                });
            }
        });
        p
    }

    /// Go down when a client sends `needle`.
    pub fn trip_on(&self, needle: &str) {
        *self.trip.lock().unwrap() = Some(needle.as_bytes().to_vec());
    }

    pub fn up(&self) {
        *self.trip.lock().unwrap() = None;
        self.down.store(false, Ordering::SeqCst);
    }
}
