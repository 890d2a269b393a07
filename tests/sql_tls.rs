//! PostgreSQL over TLS, through the real binary, against a private server
//! with `ssl=on` that accepts only TLS (`hostssl` in pg_hba.conf): a CA
//! and the server's certificate (for `localhost` only) are made here with
//! Debian's openssl. Snapshot and restore through `verify-full` with
//! `sslrootcert`, `verify-ca`, `require` and libpq's `PGSSL*` variables,
//! a client certificate (`cert` authentication); a wrong CA, a host name
//! the certificate is not for, and `disable` each fail with one line
//! saying which check failed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod sql_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::Work;
use sql_support::{give_to_server, Server, PASSWORD};

struct Tls {
    server: Server,
    /// The CA that signed the server's and the client's certificates.
    ca: PathBuf,
    /// Another CA, which signed nothing the server shows.
    other_ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

static TLS: OnceLock<Tls> = OnceLock::new();

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate `NAME.crt`/`NAME.key` for `cn` (and `san`, if any)
/// signed by the CA `ca`.
fn make_cert(dir: &Path, ca: &str, name: &str, cn: &str, san: Option<&str>) {
    let (key, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    let subj = format!("/CN={cn}");
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &subj,
        ],
    );
    let ext = format!("{name}.ext");
    // Extensions make a version 3 certificate (rustls takes no other).
    let san = san.map_or(String::new(), |s| format!("subjectAltName={s}\n"));
    std::fs::write(dir.join(&ext), format!("basicConstraints=CA:FALSE\n{san}")).unwrap();
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &crt,
            "-extfile",
            &ext,
        ],
    );
}

fn ca(dir: &Path, name: &str) {
    let (key, crt, subj) = (
        format!("{name}.key"),
        format!("{name}.crt"),
        format!("/CN=kindsnap test {name}"),
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-subj",
            &subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

fn tls() -> &'static Tls {
    TLS.get_or_init(|| {
        let certs = tempfile::Builder::new()
            .prefix("kindsnap-tls-")
            .tempdir()
            .unwrap()
            .keep();
        ca(&certs, "ca");
        ca(&certs, "other");
        make_cert(&certs, "ca", "server", "localhost", Some("DNS:localhost"));
        make_cert(&certs, "ca", "client", "certuser", None);
        let server = sql_support::start(&|data, _| {
            for f in ["server.crt", "server.key", "ca.crt"] {
                std::fs::copy(certs.join(f), data.join(f)).unwrap();
                give_to_server(&data.join(f));
            }
            // TLS only: a plain connection over TCP finds no entry.
            let hba = "local all all trust\n\
                       hostssl all certuser 127.0.0.1/32 cert\n\
                       hostssl all all 127.0.0.1/32 scram-sha-256\n";
            std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
            give_to_server(&data.join("pg_hba.conf"));
            vec![
                "ssl=on".into(),
                "ssl_cert_file=server.crt".into(),
                "ssl_key_file=server.key".into(),
                "ssl_ca_file=ca.crt".into(),
            ]
        });
        server.psql("postgres", "CREATE ROLE certuser LOGIN SUPERUSER");
        Tls {
            server,
            ca: certs.join("ca.crt"),
            other_ca: certs.join("other.crt"),
            client_cert: certs.join("client.crt"),
            client_key: certs.join("client.key"),
        }
    })
}

impl Tls {
    /// A new database holding two rows; its URL through `host` with
    /// `params`.
    fn db(&self, prefix: &str) -> String {
        let url = self.server.create_db(prefix);
        self.server.psql(
            &url,
            "CREATE TABLE t (id int PRIMARY KEY, name text); INSERT INTO t VALUES (1, 'a'), (2, 'b');",
        );
        url.rsplit('/').next().unwrap().to_string()
    }

    fn url(&self, host: &str, db: &str, params: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@{host}:{}/{db}?{params}",
            self.server.port
        )
    }
}

fn one_line(err: &str) {
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
}

#[test]
fn verify_full_snapshots_and_restores_and_require_connects() {
    let t = tls();
    let db = t.db("tls_src");
    let w = Work::new();
    w.init();
    let full = format!("sslmode=verify-full&sslrootcert={}", t.ca.display());
    w.ok(&[
        "snapshot",
        "--from",
        &t.url("localhost", &db, &full),
        "--name",
        "s",
    ]);
    let dst = t
        .server
        .create_db("tls_dst")
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    w.ok(&["restore", "s", "--to", &t.url("localhost", &dst, &full)]);
    assert_eq!(
        t.server.psql(
            &t.server.url(&dst),
            "SELECT string_agg(id || name, ',' ORDER BY id) FROM t"
        ),
        "1a,2b"
    );
    // require: encrypted, no certificate check (any host name, no CA).
    t.server
        .psql(&t.server.url(&db), "UPDATE t SET name = 'c' WHERE id = 2");
    w.ok(&[
        "snapshot",
        "--from",
        &t.url("127.0.0.1", &db, "sslmode=require"),
        "--name",
        "r",
    ]);
    let d = w.ok(&["diff", "s", "r", "--json"]);
    assert!(d.contains("\"changed\""), "{d}");
    // The default (prefer) takes TLS when the server offers it.
    w.ok(&[
        "snapshot",
        "--from",
        &t.url("127.0.0.1", &db, ""),
        "--name",
        "p",
    ]);
    // verify-ca checks the CA but not the name.
    let ca_only = format!("sslmode=verify-ca&sslrootcert={}", t.ca.display());
    w.ok(&[
        "snapshot",
        "--from",
        &t.url("127.0.0.1", &db, &ca_only),
        "--name",
        "ca",
    ]);
    // libpq's variables, as psql reads them.
    let out = w
        .ks()
        .args([
            "snapshot",
            "--from",
            &t.url("localhost", &db, ""),
            "--name",
            "env",
        ])
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", &t.ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A client certificate, for `cert` authentication (no password).
    let cert_url = format!(
        "postgres://certuser@localhost:{}/{db}?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        t.server.port,
        t.ca.display(),
        t.client_cert.display(),
        t.client_key.display()
    );
    w.ok(&["snapshot", "--from", &cert_url, "--name", "cert"]);
    let d = w.ok(&["diff", "r", "cert", "--json"]);
    assert!(!d.contains("\"changed\""), "{d}");
}

#[test]
fn each_failed_check_says_which_in_one_line() {
    let t = tls();
    let db = t.db("tls_bad");
    let w = Work::new();
    w.init();
    let wrong_ca = format!("sslmode=verify-full&sslrootcert={}", t.other_ca.display());
    let err = w.fails(&["snapshot", "--from", &t.url("localhost", &db, &wrong_ca)]);
    assert!(err.contains("certificate is not trusted"), "{err}");
    assert!(err.contains("other.crt"), "{err}");
    one_line(&err);
    // The certificate is for localhost, not 127.0.0.1.
    let full = format!("sslmode=verify-full&sslrootcert={}", t.ca.display());
    let err = w.fails(&["snapshot", "--from", &t.url("127.0.0.1", &db, &full)]);
    assert!(err.contains("not issued for host `127.0.0.1`"), "{err}");
    assert!(err.contains("sslmode=verify-ca"), "{err}");
    one_line(&err);
    let err = w.fails(&[
        "snapshot",
        "--from",
        &t.url("localhost", &db, "sslmode=disable"),
    ]);
    assert!(err.contains("no encryption"), "{err}");
    assert!(err.contains("accepts only TLS"), "{err}");
    one_line(&err);
    let err = w.fails(&[
        "snapshot",
        "--from",
        &t.url("localhost", &db, "sslmode=verify-full"),
    ]);
    assert!(err.contains("needs the CA certificate"), "{err}");
    one_line(&err);
    let err = w.fails(&[
        "snapshot",
        "--from",
        &t.url("localhost", &db, "sslmode=strict"),
    ]);
    assert!(err.contains("sslmode `strict` is not one of"), "{err}");
    one_line(&err);
}

#[test]
fn require_refuses_a_server_without_tls() {
    // The plain test server has ssl off.
    let pg = sql_support::server();
    let w = Work::new();
    w.init();
    let url = format!("{}?sslmode=require", pg.url("postgres"));
    let err = w.fails(&["snapshot", "--from", &url]);
    assert!(err.contains("the server does not support TLS"), "{err}");
    one_line(&err);
    // prefer falls back to plain.
    w.ok(&["snapshot", "--from", &pg.url("postgres")]);
}

/// libpq's other ways to name the CA and the client certificate:
/// `sslrootcert=system` (the system's CAs; `SSL_CERT_FILE` stands in for
/// the system store here), and the default files in `~/.postgresql`.
/// A client key encrypted with a password is refused with the command
/// that decrypts it.
#[test]
fn system_roots_and_default_files_work_as_in_psql() {
    let t = tls();
    let db = t.db("tls_defaults");
    let w = Work::new();
    w.init();
    let run = |url: &str, name: &str, env: &[(&str, &Path)]| {
        let mut cmd = w.ks();
        cmd.args(["snapshot", "--from", url, "--name", name]);
        cmd.env_remove("PGSSLMODE").env_remove("PGSSLROOTCERT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    // system: verify-full by default, against the system's store.
    let out = run(
        &t.url("localhost", &db, "sslrootcert=system"),
        "system",
        &[("SSL_CERT_FILE", &t.ca)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // … which does not hold this server's CA.
    let out = run(
        &t.url("localhost", &db, "sslrootcert=system"),
        "system2",
        &[("SSL_CERT_FILE", &t.other_ca)],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("not trusted") && err.contains("system"),
        "{err}"
    );
    one_line(&err);
    let err = w.fails(&[
        "snapshot",
        "--from",
        &t.url("localhost", &db, "sslmode=require&sslrootcert=system"),
    ]);
    assert!(
        err.contains("may not be used with sslrootcert=system"),
        "{err}"
    );
    one_line(&err);

    // ~/.postgresql/root.crt, postgresql.crt and postgresql.key.
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".postgresql");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(&t.ca, dir.join("root.crt")).unwrap();
    let out = run(
        &t.url("localhost", &db, "sslmode=verify-full"),
        "home",
        &[("HOME", home.path())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(&t.client_cert, dir.join("postgresql.crt")).unwrap();
    std::fs::copy(&t.client_key, dir.join("postgresql.key")).unwrap();
    let cert_url = format!(
        "postgres://certuser@localhost:{}/{db}?sslmode=verify-full",
        t.server.port
    );
    let out = run(&cert_url, "homecert", &[("HOME", home.path())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A client key encrypted with a password.
    let enc = dir.join("encrypted.key");
    openssl(
        &dir,
        &[
            "pkey",
            "-in",
            t.client_key.to_str().unwrap(),
            "-aes256",
            "-passout",
            "pass:secret",
            "-out",
            enc.to_str().unwrap(),
        ],
    );
    let url = format!(
        "{cert_url}&sslrootcert={}&sslcert={}&sslkey={}",
        t.ca.display(),
        t.client_cert.display(),
        enc.display()
    );
    let err = w.fails(&["snapshot", "--from", &url]);
    assert!(err.contains("encrypted with a password"), "{err}");
    assert!(err.contains("openssl pkey"), "{err}");
    one_line(&err);
}
