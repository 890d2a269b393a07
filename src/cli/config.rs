//! `kindsnap config`, `kindsnap completions SHELL`, `kindsnap man`.

use std::process::ExitCode;

use clap::CommandFactory;

use super::{Cli, Out, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kindsnap config
  kindsnap --config ci/kindsnap.toml config --json")]
pub struct Args {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The script calls kindsnap back while you type, so snapshot names, kinds \
and tags come from the repository the command line names (--repo, KINDSNAP_REPO, kindsnap.toml, \
./.kindsnap; local repositories only). Load it anew in each shell, so it always matches the \
installed kindsnap.

Examples:
  echo 'source <(kindsnap completions bash)' >> ~/.bashrc
  echo 'source <(kindsnap completions zsh)' >> ~/.zshrc
  echo 'kindsnap completions fish | source' >> ~/.config/fish/config.fish"
)]
pub struct CompletionArgs {
    shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kindsnap man | man -l -
  kindsnap man --out-dir /usr/local/share/man/man1")]
pub struct ManArgs {
    /// Write kindsnap.1 and one kindsnap-COMMAND.1 per subcommand here
    /// instead of printing kindsnap.1.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<std::path::PathBuf>,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let c = &settings.config;
    let file = c
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "kindsnap.toml".into());
    let mut rows = general_rows(settings, &file);
    rows.extend(datastore_rows(c, &file));
    rows.extend(kind_rows(c, &file));
    let mut out = Out::new();
    if args.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(k, v, f)| serde_json::json!({"setting": k, "value": v, "from": f}))
            .collect();
        out.json(&serde_json::Value::Array(v))?;
    } else {
        let mut table = vec![vec!["setting".to_string(), "value".into(), "from".into()]];
        table.extend(rows.into_iter().map(|(k, v, f)| vec![k, v, f]));
        for l in super::output::table(&table, 3) {
            out.line(l)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// One setting: its name, its value, and where the value came from.
type Row = (String, String, String);

/// Where a setting of the file came from: the file, or the default.
fn from_file(file: &str, set: bool) -> String {
    if set {
        file.to_string()
    } else {
        "default".into()
    }
}

/// The repository, source, target, ignore file and timeout.
fn general_rows(settings: &Settings, file: &str) -> Vec<Row> {
    let c = &settings.config;
    let from_file = |set: bool| from_file(file, set);
    vec![
        (
            "repo".into(),
            settings.repo.display().to_string(),
            match settings.repo_from {
                "kindsnap.toml" => file.to_string(),
                other => other.to_string(),
            },
        ),
        (
            "source".into(),
            c.source
                .as_deref()
                .map(kindsnap::connector::redact_location)
                .unwrap_or_else(|| "(none: give --from)".into()),
            from_file(c.source.is_some()),
        ),
        (
            "target".into(),
            c.target
                .as_deref()
                .map(kindsnap::connector::redact_location)
                .unwrap_or_else(|| "(none: give --to)".into()),
            from_file(c.target.is_some()),
        ),
        (
            "ignore_file".into(),
            c.ignore_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| ".snapshotignore, REPO/.snapshotignore".into()),
            from_file(c.ignore_file.is_some()),
        ),
        (
            "timeout".into(),
            kindsnap::net::seconds(settings.timeouts.answer),
            match settings.timeout_from {
                "kindsnap.toml" => file.to_string(),
                other => other.to_string(),
            },
        ),
    ]
}

/// The Datastore settings: request rate, read price, incremental reads,
/// restore ramp-up.
fn datastore_rows(c: &kindsnap::config::Config, file: &str) -> Vec<Row> {
    let from_file = |set: bool| from_file(file, set);
    vec![
        (
            "max_rps".into(),
            c.max_rps
                .map(|r| r.to_string())
                .unwrap_or_else(|| "(no limit)".into()),
            from_file(c.max_rps.is_some()),
        ),
        (
            "datastore_read_price".into(),
            format!(
                "${} per 100,000 entity reads",
                c.datastore_read_price
                    .unwrap_or(kindsnap::ops::snapshot::DEFAULT_READ_PRICE_PER_100K)
            ),
            from_file(c.datastore_read_price.is_some()),
        ),
        (
            "changed_property".into(),
            c.changed_property
                .clone()
                .unwrap_or_else(|| "(none: full reads)".into()),
            from_file(c.changed_property.is_some()),
        ),
        (
            "changed_margin".into(),
            format!(
                "{} s",
                c.changed_margin
                    .unwrap_or(kindsnap::connector::DEFAULT_CHANGED_MARGIN.as_secs())
            ),
            from_file(c.changed_margin.is_some()),
        ),
        (
            "full_every".into(),
            c.full_every
                .map(|n| n.to_string())
                .unwrap_or_else(|| "(never)".into()),
            from_file(c.full_every.is_some()),
        ),
        (
            "ramp_up".into(),
            c.ramp_up
                .clone()
                .unwrap_or_else(|| "500/50/5 in production, off for emulators".into()),
            from_file(c.ramp_up.is_some()),
        ),
    ]
}

/// Per-kind settings (`[kinds.Order] batch_size = 50`).
fn kind_rows(c: &kindsnap::config::Config, file: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for (kind, k) in &c.kinds {
        if let Some(b) = k.batch_size {
            rows.push((
                format!("kinds.{kind}.batch_size"),
                b.to_string(),
                file.to_string(),
            ));
        }
        if let Some(n) = k.concurrency {
            rows.push((
                format!("kinds.{kind}.concurrency"),
                n.to_string(),
                file.to_string(),
            ));
        }
        if let Some(p) = &k.changed_property {
            rows.push((
                format!("kinds.{kind}.changed_property"),
                p.clone(),
                file.to_string(),
            ));
        }
    }
    rows
}

pub fn completions(args: CompletionArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    super::complete::write_registration(args.shell, &mut out)?;
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    let cmd = without_help(Cli::command());
    let Some(dir) = args.out_dir else {
        clap_mangen::Man::new(cmd).render(&mut std::io::stdout().lock())?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let write = |name: &str, page: clap::Command| -> anyhow::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf)?;
        std::fs::write(&path, buf)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        Ok(())
    };
    // Pages for nested commands too (`kindsnap-tag-add(1)`), and none
    // for clap's `help` command, so every page a page names exists.
    let cmd = without_help(cmd);
    write("kindsnap", cmd.clone())?;
    write_pages(&cmd, "kindsnap", &write)
}

/// `cmd` and its subcommands without clap's `help` subcommand (man pages
/// do not document it; `kindsnap help` still works).
fn without_help(cmd: clap::Command) -> clap::Command {
    cmd.disable_help_subcommand(true)
        .mut_subcommands(without_help)
}

/// One page per subcommand, nested ones too (`kindsnap-tag-add.1`), each
/// with the version the top page has.
fn write_pages(
    cmd: &clap::Command,
    prefix: &str,
    write: &dyn Fn(&str, clap::Command) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    for sub in cmd.get_subcommands() {
        // A man page is named after the command it documents; the process
        // ends right after, so leaking the few names is harmless.
        let name: &'static str = Box::leak(format!("{prefix}-{}", sub.get_name()).into_boxed_str());
        write(
            name,
            sub.clone().name(name).version(env!("CARGO_PKG_VERSION")),
        )?;
        write_pages(sub, name, write)?;
    }
    Ok(ExitCode::SUCCESS)
}
