//! A private PostgreSQL server for the SQL tests: Debian's binaries
//! (installed by scripts/postgres.sh), a fresh data directory in a temp
//! dir, a free port on 127.0.0.1, run as `nobody` when the tests run as
//! root (PostgreSQL refuses to run as root). One server per test binary,
//! one database per test. The server is started under a small shell
//! watchdog that gets SIGTERM when the test process exits
//! (`setpriv --pdeathsig`), stops the server and deletes the directory.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "kindsnap-test";

pub struct Server {
    pub port: u16,
    pub bin: PathBuf,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

pub fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .find(|d| d.join("initdb").exists() && d.join("postgres").exists())
        .expect("PostgreSQL server binaries are missing; run scripts/postgres.sh")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `cmd` as `nobody` when we are root.
fn as_postgres_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn server() -> &'static Server {
    SERVER.get_or_init(|| start(&|_, _| Vec::new()))
}

/// Start a server; `setup` gets the data directory and the server's
/// directory after initdb and returns extra `-c` settings.
pub fn start(setup: &dyn Fn(&Path, &Path) -> Vec<String>) -> Server {
    let bin = bin_dir();
    let dir = tempfile::Builder::new()
        .prefix("kindsnap-pg-")
        .tempdir()
        .unwrap()
        .keep();
    let data = dir.join("data");
    let pw = dir.join("pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    if is_root() {
        for p in [&dir, &pw] {
            std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
        }
    }
    let out = as_postgres_user(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"])
        .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
        .arg(format!("--pwfile={}", pw.display()))
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let extra: String = setup(&data, &dir)
        .iter()
        .map(|c| format!(" -c '{c}'"))
        .collect();
    let port = free_port();
    let user = if is_root() {
        "setpriv --reuid=65534 --regid=65534 --clear-groups --"
    } else {
        ""
    };
    // The watchdog: started with a parent-death signal from a thread that
    // lives as long as the process (the signal follows the creating
    // thread), it stops the server and removes the directory on SIGTERM.
    let script = format!(
        "{user} '{postgres}' -D '{data}' -p {port} -k '{dir}' -c listen_addresses=127.0.0.1 \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100{extra} \
         >'{dir}/log' 2>&1 & pid=$!; \
         trap 'kill -INT $pid; wait $pid; rm -rf \"{dir}\"; exit 0' TERM INT; \
         wait $pid",
        postgres = bin.join("postgres").display(),
        data = data.display(),
        dir = dir.display(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "TERM", "--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .spawn();
        let _ = tx.send(child.map(|_| ()));
        loop {
            std::thread::park();
        }
    });
    rx.recv().unwrap().expect("start postgres");
    let server = Server { port, bin };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = Command::new(server.bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            break;
        }

        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
            panic!("postgres did not start on port {port}:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// Make the server's files the server's user's (`nobody` when we are
/// root), private.
pub fn give_to_server(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    if is_root() {
        std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
    }
}

impl Server {
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// A new, empty database; returns its URL.
    pub fn create_db(&self, prefix: &str) -> String {
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Run SQL in `db` (a name or a URL) with psql; returns its unaligned
    /// output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let url = if db.contains("://") {
            db.to_string()
        } else {
            self.url(db)
        };
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &url])
            .args(["-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }
}

/// Run SQL on a SQLite file.
pub fn sqlite(path: &Path, sql: &str) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(sql).unwrap();
}

/// The first column of the first row, as text (`NULL`, blobs in hex).
pub fn sqlite_one(path: &Path, sql: &str) -> String {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row(sql, [], |r| {
        Ok(match r.get_ref(0)? {
            rusqlite::types::ValueRef::Null => "NULL".to_string(),
            rusqlite::types::ValueRef::Integer(i) => i.to_string(),
            rusqlite::types::ValueRef::Real(f) => f.to_string(),
            rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
            rusqlite::types::ValueRef::Blob(b) => hex::encode(b),
        })
    })
    .unwrap()
}
