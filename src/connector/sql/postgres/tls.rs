//! TLS for PostgreSQL connections, with libpq's `sslmode` meanings.
//!
//! The options come from the URL's query (`sslmode`, `sslrootcert`,
//! `sslcert`, `sslkey`), else from libpq's environment variables
//! (`PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`) read at connect
//! time, else from libpq's default files when they exist
//! (`~/.postgresql/root.crt`, `~/.postgresql/postgresql.crt` with
//! `postgresql.key`), as psql finds them; they are taken out of the URL
//! before the `postgres` crate parses it (it knows only
//! `disable`/`prefer`/`require`). `sslrootcert=system` trusts the
//! system's CA store (as libpq 16: the default mode is then
//! `verify-full`, and weaker modes are refused). The handshake is rustls
//! (ring) through `tokio-postgres-rustls`.
//!
//! | mode | TLS | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it | no |
//! | `require` | always | no (as libpq: unless `sslrootcert` is given, then as `verify-ca`) |
//! | `verify-ca` | always | signed by `sslrootcert` |
//! | `verify-full` | always | signed by `sslrootcert` and issued for the host |
//!
//! Nothing here connects or prints; [`describe`] turns a failed
//! handshake into the one line saying which check failed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the CA certificates a server's certificate must chain to come
/// from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Roots {
    /// A PEM file of CA certificates.
    File(PathBuf),
    /// `sslrootcert=system`: the operating system's trusted CAs (honours
    /// `SSL_CERT_FILE` and `SSL_CERT_DIR`).
    System,
}

impl Roots {
    fn shown(&self) -> String {
        match self {
            Roots::File(p) => format!("`{}`", p.display()),
            Roots::System => "`system` (the system's trusted CAs)".into(),
        }
    }
}

/// How a connection uses TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsOptions {
    pub(crate) mode: SslMode,
    /// CA certificates the server's certificate must chain to.
    pub(crate) root_cert: Option<Roots>,
    /// A client certificate (PEM) and its key, for `cert` authentication.
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
}

impl TlsOptions {
    /// The mode the handshake follows: libpq treats `require` with a
    /// root certificate as `verify-ca`.
    pub(crate) fn effective(&self) -> SslMode {
        match self.mode {
            SslMode::Require if self.root_cert.is_some() => SslMode::VerifyCa,
            m => m,
        }
    }

    /// What the `postgres` crate negotiates: it only asks for TLS.
    pub(crate) fn negotiate(&self) -> postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        }
    }
}

/// Minimal percent-decoding of a URL query value (`%2F` in a path).
fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Take the TLS parameters out of `url`: the URL the `postgres` crate
/// parses, and the options (URL first, then `env`, libpq's variables).
/// `Err` says which value is wrong.
pub(crate) fn split(
    url: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, TlsOptions), String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let (mut mode, mut root_cert, mut cert, mut key) = (None, None, None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => mode = Some(decode(v)),
            "sslrootcert" => root_cert = Some(decode(v)),
            "sslcert" => cert = Some(decode(v)),
            "sslkey" => key = Some(decode(v)),
            _ => kept.push(pair),
        }
    }
    let given = |v: Option<String>, var: &str| v.or_else(|| env(var)).filter(|s| !s.is_empty());
    let mode = given(mode, "PGSSLMODE");
    let root_cert = given(root_cert, "PGSSLROOTCERT");
    let system = root_cert.as_deref() == Some("system");
    let mode = match mode.as_deref() {
        None if system => SslMode::VerifyFull,
        None => SslMode::Prefer,
        Some(m) => SslMode::parse(m).ok_or_else(|| {
            format!("sslmode `{m}` is not one of disable, prefer, require, verify-ca, verify-full")
        })?,
    };
    if system && mode != SslMode::VerifyFull {
        return Err(format!(
            "sslmode={} may not be used with sslrootcert=system (any certificate a public CA \
             issued would pass); use sslmode=verify-full, or give the CA's file as sslrootcert",
            mode.as_str()
        ));
    }
    // libpq's default files, used when they exist.
    let home = env("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    let default = |name: &str| {
        let path = home.as_ref()?.join(".postgresql").join(name);
        path.is_file().then_some(path)
    };
    let root_cert = match root_cert {
        Some(_) if system => Some(Roots::System),
        Some(p) => Some(Roots::File(PathBuf::from(p))),
        None if mode == SslMode::Disable => None,
        None => default("root.crt").map(Roots::File),
    };
    let (cert, key) = match (given(cert, "PGSSLCERT"), given(key, "PGSSLKEY")) {
        (None, None) if mode != SslMode::Disable => {
            match (default("postgresql.crt"), default("postgresql.key")) {
                (Some(c), Some(k)) => (Some(c), Some(k)),
                _ => (None, None),
            }
        }
        (c, k) => (c.map(PathBuf::from), k.map(PathBuf::from)),
    };
    let options = TlsOptions {
        mode,
        root_cert,
        cert,
        key,
    };
    if options.cert.is_some() != options.key.is_some() {
        return Err("sslcert and sslkey go together: give both (the client certificate and its key) or neither".into());
    }
    let url = match kept.is_empty() {
        true => base.to_string(),
        false => format!("{base}?{}", kept.join("&")),
    };
    Ok((url, options))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_roots(roots: &Roots) -> Result<RootCertStore, String> {
    let path = match roots {
        Roots::File(path) => path,
        Roots::System => return system_roots(),
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "sslrootcert `{}`: {e}; give a PEM file of CA certificates",
                path.display()
            )
        })?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "sslrootcert `{}` holds no usable CA certificate; give a PEM file of CA certificates",
            path.display()
        ));
    }
    Ok(roots)
}

/// The operating system's trusted CAs (`sslrootcert=system`).
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or("none found".to_string(), |e| e.to_string());
        return Err(format!(
            "sslrootcert=system: the system's CA store has no usable certificate ({why}); \
             install the CA certificates (Debian: ca-certificates) or set SSL_CERT_FILE"
        ));
    }
    Ok(roots)
}

/// A client key that is itself encrypted (`sslpassword` in libpq) cannot
/// be read by rustls: say so, with the command that decrypts it.
fn encrypted_key(key: &Path) -> Option<String> {
    let text = std::fs::read(key).ok()?;
    let head = String::from_utf8_lossy(&text[..text.len().min(4096)]).into_owned();
    (head.contains("ENCRYPTED PRIVATE KEY") || head.contains("Proc-Type: 4,ENCRYPTED")).then(|| {
        format!(
            "sslkey `{}` is encrypted with a password, which kindsnap cannot use (no \
             sslpassword); write a decrypted copy readable only by you: \
             openssl pkey -in {} -out KEY && chmod 600 KEY",
            key.display(),
            key.display()
        )
    })
}

/// The connector for `options`; `Err` is one line on a file it could not
/// use.
pub(crate) fn connector(options: &TlsOptions) -> Result<MakeRustlsConnect, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match options.effective() {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(Unchecked(provider())),
        mode => {
            let given = options.root_cert.as_ref().ok_or_else(|| {
                format!(
                    "sslmode={} needs the CA certificate that signed the server's: add \
                     sslrootcert=FILE to the URL (or set PGSSLROOTCERT, or put it in \
                     ~/.postgresql/root.crt), or sslrootcert=system for a server whose \
                     certificate a public CA issued",
                    mode.as_str()
                )
            })?;
            let roots = read_roots(given)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(roots.into(), provider())
                .build()
                .map_err(|e| format!("sslrootcert {}: {e}", given.shown()))?;
            match mode {
                SslMode::VerifyCa => Arc::new(AnyName(webpki)),
                _ => webpki,
            }
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("sslcert `{}`: {e}", cert.display()))?;
            if let Some(why) = encrypted_key(key) {
                return Err(why);
            }
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("sslkey `{}`: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                format!("sslcert/sslkey: {e}; give a PEM certificate and its own key")
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// Why a handshake failed, in words and with the fix, when it is TLS's
/// doing; `None` otherwise.
pub(crate) fn describe(e: &postgres::Error, options: &TlsOptions, host: &str) -> Option<String> {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if s.to_string() == "server does not support TLS" {
            return Some(format!(
                "the server does not support TLS, and sslmode={} requires it; enable ssl on \
                 the server, or connect with sslmode=prefer or disable",
                options.mode.as_str()
            ));
        }
        let inner = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>());
        if let Some(tls) = inner.or_else(|| s.downcast_ref::<rustls::Error>()) {
            return Some(rustls_why(tls, options, host));
        }
        src = s.source();
    }
    None
}

fn rustls_why(e: &rustls::Error, options: &TlsOptions, host: &str) -> String {
    let root = options
        .root_cert
        .as_ref()
        .map_or("the given CA".into(), Roots::shown);
    match e {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "TLS: the server's certificate is not issued for host `{host}` (sslmode=verify-full); \
             connect by the name in the certificate, or use sslmode=verify-ca to check only the CA"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => format!(
            "TLS: the server's certificate is not trusted: it is not signed by sslrootcert {root}; \
             give the CA certificate that signed the server's as sslrootcert"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "TLS: the server's certificate has expired; renew it on the server".into(),
        other => {
            format!("TLS handshake failed: {other}; check sslmode, sslrootcert, sslcert and sslkey")
        }
    }
}

/// `prefer` and `require` without a root certificate: libpq encrypts but
/// checks no certificate. The handshake's signatures are still verified.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the name is not
/// checked.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn url_parameters_are_taken_out_and_win_over_the_environment() {
        let env = |v: &str| match v {
            "PGSSLMODE" => Some("require".to_string()),
            "PGSSLROOTCERT" => Some("/env/ca.pem".to_string()),
            _ => None,
        };
        let (url, o) = split(
            "postgres://u@h/db?sslmode=verify-full&connect_timeout=5&sslrootcert=%2Ftmp%2Fca.pem",
            &env,
        )
        .unwrap();
        assert_eq!(url, "postgres://u@h/db?connect_timeout=5");
        assert_eq!(o.mode, SslMode::VerifyFull);
        assert_eq!(o.root_cert, Some(Roots::File(PathBuf::from("/tmp/ca.pem"))));
        let (url, o) = split("postgres://u@h/db", &env).unwrap();
        assert_eq!(url, "postgres://u@h/db");
        assert_eq!(o.mode, SslMode::Require);
        assert_eq!(
            o.effective(),
            SslMode::VerifyCa,
            "require with a CA is verify-ca"
        );
        let (_, o) = split("postgres://u@h/db", &none).unwrap();
        assert_eq!((o.mode, o.effective()), (SslMode::Prefer, SslMode::Prefer));
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let e = split("postgres://h/db?sslmode=verify", &none).unwrap_err();
        assert!(e.contains("sslmode `verify`"), "{e}");
        let e = split("postgres://h/db?sslcert=/c.pem", &none).unwrap_err();
        assert!(e.contains("give both"), "{e}");
        let o = split("postgres://h/db?sslmode=verify-full", &none)
            .unwrap()
            .1;
        let e = connector(&o).err().unwrap();
        assert!(e.contains("sslrootcert=FILE"), "{e}");
        let e = split("postgres://h/db?sslmode=require&sslrootcert=system", &none).unwrap_err();
        assert!(e.contains("may not be used with sslrootcert=system"), "{e}");
    }

    #[test]
    fn system_roots_default_to_verify_full() {
        let (_, o) = split("postgres://h/db?sslrootcert=system", &none).unwrap();
        assert_eq!(
            (o.mode, o.root_cert),
            (SslMode::VerifyFull, Some(Roots::System))
        );
    }

    /// libpq's files in `~/.postgresql` are used when they exist, and
    /// never with `sslmode=disable`; given values win.
    #[test]
    fn default_files_under_home_are_used_when_present() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join(".postgresql");
        std::fs::create_dir(&dir).unwrap();
        let h = home.path().display().to_string();
        let env = |v: &str| (v == "HOME").then(|| h.clone());
        let (_, o) = split("postgres://h/db", &env).unwrap();
        assert_eq!((o.root_cert, o.cert), (None, None), "no files, no defaults");
        for f in ["root.crt", "postgresql.crt", "postgresql.key"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let (_, o) = split("postgres://h/db?sslmode=require", &env).unwrap();
        assert_eq!(o.root_cert, Some(Roots::File(dir.join("root.crt"))));
        assert_eq!(o.effective(), SslMode::VerifyCa, "as libpq, with root.crt");
        assert_eq!(o.cert, Some(dir.join("postgresql.crt")));
        assert_eq!(o.key, Some(dir.join("postgresql.key")));
        let (_, o) = split("postgres://h/db?sslmode=disable", &env).unwrap();
        assert_eq!((o.root_cert, o.cert), (None, None));
        let (_, o) = split("postgres://h/db?sslrootcert=/ca.pem", &env).unwrap();
        assert_eq!(o.root_cert, Some(Roots::File(PathBuf::from("/ca.pem"))));
    }
}
