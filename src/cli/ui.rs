//! `kindsnap ui`: start the read-only web server (`src/ui/`) on the
//! repository, print its address, serve until Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Context};

use crate::ui::{self, Access};

use super::Settings;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Pages: / (history and charts), /diff?from=A&to=B[&kind=K],
/entity?snapshot=S&key=K, /snapshot/NAME (kinds, a restore command line).
The server only reads: nothing on it writes to the repository.

On a loopback address (the default) it answers requests for localhost only.
On any other address every request must carry a token: --token, or one
generated and printed; the printed address holds it (?token=…), and the
browser keeps it in a cookie. docs/ui.md has the details.

Examples:
  kindsnap ui --open
  kindsnap ui --listen 127.0.0.1:0            a free port
  kindsnap ui --listen 0.0.0.0:8765           prints a token to use"
)]
pub struct Args {
    /// Address and port to listen on (port 0: a free one). Any address
    /// but loopback needs a token.
    #[arg(long, default_value = "127.0.0.1:8765", value_name = "ADDR:PORT")]
    listen: String,
    /// Open the page in the default browser.
    #[arg(long)]
    open: bool,
    /// Require this token on every request: 16 or more letters, digits,
    /// `-` `.` `_` `~`. Without it, a non-loopback --listen gets a
    /// generated one.
    #[arg(
        long,
        env = "KINDSNAP_UI_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
}

/// `127.0.0.1:8765`, `[::1]:0`, `localhost:8765`.
fn parse_listen(text: &str) -> anyhow::Result<SocketAddr> {
    let bad = || {
        anyhow!("--listen `{text}`: give an address and a port, such as 127.0.0.1:8765 (port 0 picks a free one)")
    };
    if let Some(port) = text.strip_prefix("localhost:") {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| bad())
}

/// How a restore command line names this repository: its URL, or its
/// directory as an absolute path (the command may run elsewhere).
fn repo_arg(settings: &Settings) -> String {
    match settings.remote_url() {
        Some(url) => url.to_string(),
        None => std::path::absolute(&settings.repo)
            .unwrap_or_else(|_| settings.repo.clone())
            .display()
            .to_string(),
    }
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let addr = parse_listen(&args.listen)?;
    if let Some(t) = &args.token {
        ui::validate_token(t).map_err(|why| anyhow!("--token: {why}"))?;
    }
    let token = match args.token {
        Some(t) => Some(t),
        None if addr.ip().is_loopback() => None,
        None => Some(ui::generate_token()),
    };
    let repo = settings.open_repo()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the web server's runtime")?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| {
            anyhow!("cannot listen on {addr}: {e}; choose another address or port with --listen (port 0 picks a free one)")
        })?;
    let local = listener
        .local_addr()
        .context("reading the address listened on")?;
    let url = match &token {
        Some(t) => format!("http://{local}/?token={t}"),
        None => format!("http://{local}/"),
    };
    if !settings.quiet {
        // Written, not println!: a closed stdout (the reader of the
        // address went away) must not stop the server.
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "kindsnap ui: {} at {url}", repo.location());
        if token.is_some() && !local.ip().is_loopback() {
            let _ = writeln!(
                out,
                "(every request needs the token; a browser that opened this address keeps it in a cookie)"
            );
        }
        let _ = writeln!(out, "Ctrl-C stops it.");
        let _ = out.flush();
    }
    if args.open {
        if let Err(e) = opener::open_browser(&url) {
            eprintln!("kindsnap: warning: could not open a browser ({e}); open {url}");
        }
    }
    let options = Arc::new(ui::Options {
        repo,
        repo_arg: repo_arg(settings),
        access: Access::new(token, local.port()),
    });
    let cancel = settings.cancel.clone();
    let stopped = async move { cancel.cancelled().await };
    let res = rt.block_on(ui::serve(listener, Arc::clone(&options), stopped));
    // Dropped here, outside the runtime: a repository on object storage
    // owns a runtime of its own, which must not be dropped inside another.
    drop(rt);
    drop(options);
    res.context("serving")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_listen;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("127.0.0.1:8765").unwrap().to_string(),
            "127.0.0.1:8765"
        );
        assert_eq!(parse_listen("localhost:0").unwrap().port(), 0);
        assert!(parse_listen("[::1]:9").unwrap().ip().is_loopback());
        assert!(parse_listen("8765").is_err());
        assert!(parse_listen("example.com:80").is_err());
        assert!(parse_listen("localhost:99999").is_err());
    }
}
