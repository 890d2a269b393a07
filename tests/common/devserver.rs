//! The Datastore dev server (tests/devserver/server.py, Google's App Engine
//! datastore behind the v1 REST API) as a real process on a free port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct DevServer {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
    pub storage: PathBuf,
    _dir: tempfile::TempDir,
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("KINDSNAP_DEVSERVER_PYTHON") {
        return p.into();
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let p = root.join("target/devserver-venv/bin/python");
    assert!(
        p.exists(),
        "the dev server's virtualenv is missing: run tests/devserver/setup.sh (scripts/test.sh does)"
    );
    p
}

impl DevServer {
    /// Start with extra flags (`--fail-rate 0.1` …); persists to a file.
    pub fn start(args: &[&str]) -> DevServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = dir.path().join("ds.bin");
        let mut s = DevServer {
            child: None,
            port: 0,
            args: args.iter().map(|a| a.to_string()).collect(),
            storage,
            _dir: dir,
        };
        s.spawn(0);
        s
    }

    fn spawn(&mut self, port: u16) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/devserver/server.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(["--port", &port.to_string(), "--storage"])
            .arg(&self.storage)
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the dev server");
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).expect("read");
        let addr = line
            .trim()
            .strip_prefix("LISTENING http://")
            .unwrap_or_else(|| panic!("dev server said {line:?}"));
        self.port = addr.rsplit(':').next().unwrap().parse().unwrap();
        self.child = Some(child);
    }

    pub fn url(&self, project: &str) -> String {
        format!("datastore://127.0.0.1:{}/{project}", self.port)
    }

    /// SIGKILL the server.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port with the same storage.
    #[allow(dead_code)]
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port;
        self.spawn(port);
    }

    /// `POST /stats` (or `/stats/reset`, which zeroes the counters after
    /// answering): requests per method, the most in any second, and the
    /// reads billed per kind.
    #[allow(dead_code)]
    pub fn stats(&self, reset: bool) -> serde_json::Value {
        let path = if reset { "/stats/reset" } else { "/stats" };
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let (_, body) = resp.split_once("\r\n\r\n").unwrap();
        serde_json::from_str(body).unwrap()
    }

    /// POST a v1 API call; returns (HTTP status, JSON body).
    #[allow(dead_code)]
    pub fn call(
        &self,
        project: &str,
        method: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let body = body.to_string();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        write!(
            s,
            "POST /v1/projects/{project}:{method} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        (
            status,
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        self.kill();
    }
}
