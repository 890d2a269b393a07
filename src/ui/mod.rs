//! `kindsnap ui`: a read-only web server over a repository. Four pages,
//! each at a stable URL: the history of snapshots with charts (`/`), a
//! diff by kind (`/diff`), one entity with its history (`/entity`) and one
//! snapshot with a restore command to copy (`/snapshot/NAME`).
//!
//! It is a second front end beside `cli/`, and like it only glue: every
//! answer comes from `ops/` and `repo/manifest.rs`, run on tokio's
//! blocking threads. It must never write to the repository (every route
//! is a GET; the restore page only prints a command line) and never load
//! anything from elsewhere: pages are HTML rendered here (maud), charts
//! are inline SVG, the style sheet and icon are compiled into the binary,
//! and there is no script at all, which the Content-Security-Policy
//! header enforces. `auth.rs` holds the access rules (docs/ui.md).

mod auth;
mod charts;
mod diff;
mod entity;
mod history;
mod page;
mod snapshot;

use std::future::Future;
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kindsnap::repo::Repository;

pub use auth::{generate_token, validate_token, Access};

/// What the server needs: the repository, how people name it on a
/// command line, and who may ask.
pub struct Options {
    pub repo: Repository,
    /// The `--repo` argument restore command lines carry (an absolute
    /// path or the object-storage URL).
    pub repo_arg: String,
    pub access: Access,
}

/// The state every handler shares.
#[derive(Clone)]
struct App(Arc<Options>);

/// Serve until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    options: Arc<Options>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(options))
        .with_graceful_shutdown(shutdown)
        .await
}

fn router(options: Arc<Options>) -> Router {
    let app = App(options);
    Router::new()
        .route("/", get(history::page))
        .route("/diff", get(diff::page))
        .route("/entity", get(entity::page))
        .route("/snapshot/{name}", get(snapshot::page))
        .route("/static/style.css", get(style))
        .route("/static/icon.svg", get(icon))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::check,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app)
}

const STYLE: &str = include_str!("assets/style.css");
const ICON: &str = include_str!("assets/icon.svg");

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}

fn asset(mime: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

async fn not_found() -> PageError {
    PageError {
        status: StatusCode::NOT_FOUND,
        message: "no such page; the history of snapshots is at /".into(),
    }
}

/// No script, nothing from elsewhere, no framing, no referrer (a token in
/// a URL never leaves in a Referer header); pages are not cached, since a
/// new snapshot changes them.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    let csp = "default-src 'none'; style-src 'self'; img-src 'self'; \
               form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

/// A page that could not be made: its status and the one-line reason,
/// shown on an error page.
#[derive(Debug)]
struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    fn bad_request(message: impl Into<String>) -> PageError {
        PageError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<kindsnap::Error> for PageError {
    fn from(e: kindsnap::Error) -> PageError {
        use kindsnap::Error as E;
        let status = match &e {
            E::UnknownSnapshot { .. } | E::UnknownKind { .. } | E::NotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            E::BadKey { .. } | E::AmbiguousSnapshot { .. } | E::BadArgument(_) => {
                StatusCode::BAD_REQUEST
            }
            E::Locked { .. } | E::Timeout { .. } | E::RemoteUnreachable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        PageError {
            status,
            message: format!("{e:#}"),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("error");
        let body = page::layout(
            title,
            maud::html! {
                h1 { (title) }
                p.error { (self.message) }
                p { a href="/" { "Back to the history of snapshots" } }
            },
        );
        (self.status, body).into_response()
    }
}

impl App {
    /// Run a read of the repository on a blocking thread (the library is
    /// synchronous, and on object storage it runs its own runtime).
    async fn read<T, F>(&self, f: F) -> Result<T, PageError>
    where
        T: Send + 'static,
        F: FnOnce(&Options) -> Result<T, PageError> + Send + 'static,
    {
        let app = self.clone();
        tokio::task::spawn_blocking(move || f(&app.0))
            .await
            .map_err(|e| PageError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("the page's reader stopped: {e}"),
            })?
    }
}
