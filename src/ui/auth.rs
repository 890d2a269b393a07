//! Who may ask. Two rules (docs/ui.md):
//!
//! - Without a token (only allowed on a loopback address) a request must
//!   name a loopback host (`localhost`, `127.0.0.1`, `[::1]`): a web page
//!   elsewhere that points its own domain at 127.0.0.1 (DNS rebinding)
//!   gets 403, not the repository.
//! - With a token, every request carries it: `?token=T` in the URL (the
//!   server answers by setting a cookie and redirecting to the same URL
//!   without it, so links and bookmarks never hold it), the cookie, or an
//!   `Authorization: Bearer T` header. Anything else gets 401.
//!
//! Tokens are compared through their blake3 hashes, whose equality test
//! takes the same time wherever the two differ.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::{App, PageError};

/// Access rules for one server.
#[derive(Debug, Clone)]
pub struct Access {
    token: Option<String>,
    /// The cookie's name: one per port, so two servers on one host do not
    /// overwrite each other's.
    cookie: String,
}

impl Access {
    pub fn new(token: Option<String>, port: u16) -> Access {
        Access {
            token,
            cookie: format!("kindsnap_ui_{port}"),
        }
    }

    fn matches(&self, given: &str) -> bool {
        self.token
            .as_deref()
            .is_some_and(|t| blake3::hash(t.as_bytes()) == blake3::hash(given.as_bytes()))
    }

    fn cookie_matches(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .any(|(k, v)| k == self.cookie && self.matches(v))
    }

    fn bearer_matches(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| self.matches(t.trim()))
    }
}

/// A token someone chose: long enough to guess at no better than chance,
/// and made of characters that need no escaping in a URL or a cookie.
pub fn validate_token(token: &str) -> Result<(), String> {
    if token.len() < 16 {
        return Err("use at least 16 characters".into());
    }
    if !token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
    {
        return Err("use only letters, digits and - . _ ~".into());
    }
    Ok(())
}

/// A new random token: 128 bits, hex.
pub fn generate_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// True for `localhost`, `*.localhost` and loopback addresses, with or
/// without a port.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host),
    };
    let name = name.to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

pub(super) async fn check(State(app): State<App>, req: Request, next: Next) -> Response {
    let access = &app.0.access;
    if access.token.is_none() {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !loopback_host(host) {
            return PageError {
                status: StatusCode::FORBIDDEN,
                message: "this kindsnap ui answers only to localhost; open it as \
                          http://127.0.0.1:PORT/, or start it with --token to serve other hosts"
                    .into(),
            }
            .into_response();
        }
        return next.run(req).await;
    }
    if access.cookie_matches(req.headers()) || access.bearer_matches(req.headers()) {
        return next.run(req).await;
    }
    let query = req.uri().query().unwrap_or("");
    let given = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    match given {
        Some(t) if access.matches(&t) => {
            // Keep the token out of the address bar, history and links.
            let rest: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .filter(|(k, _)| k != "token")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let mut to = req.uri().path().to_string();
            if !rest.is_empty() {
                to.push('?');
                to.push_str(
                    &form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(rest)
                        .finish(),
                );
            }
            let cookie = format!("{}={t}; Path=/; HttpOnly; SameSite=Strict", access.cookie);
            let mut res = Redirect::to(&to).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            res
        }
        _ => PageError {
            status: StatusCode::UNAUTHORIZED,
            message: "this kindsnap ui needs its token: open the address `kindsnap ui` printed \
                      (it ends in ?token=…)"
                .into(),
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:8765",
            "127.0.0.1:80",
            "127.1.2.3",
            "[::1]:8765",
            "[::1]",
            "app.localhost:1",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "",
            "example.com",
            "evil.example:8765",
            "10.0.0.1:8765",
            "[::2]:1",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn tokens() {
        assert!(validate_token("short").is_err());
        assert!(validate_token("0123456789abcdef").is_ok());
        assert!(validate_token("0123456789abcdef;x=1").is_err());
        let t = generate_token();
        assert_eq!(t.len(), 32);
        assert!(validate_token(&t).is_ok());
        assert_ne!(t, generate_token());
        let a = Access::new(Some(t.clone()), 1);
        assert!(a.matches(&t));
        assert!(!a.matches("0123456789abcdef"));
        assert!(!Access::new(None, 1).matches(&t));
    }
}
