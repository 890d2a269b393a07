//! `kindsnap clear --to TARGET [--kinds …]`: delete entities on a target.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use kindsnap::connector;

use super::output::{kind_label, table};
use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kindsnap clear --to datastore://localhost:8081/dev --kinds Post,Comment --yes
  kindsnap clear --to datastore://localhost:8081/dev")]
pub struct Args {
    /// The target: `datastore://HOST:PORT/PROJECT`, `datastore:PROJECT`, `jsonl:FILE` ….
    #[arg(long, value_name = "TARGET")]
    to: Option<String>,
    /// Only these kinds (comma-separated) [default: every kind on the target].
    #[arg(add = super::complete::kind(), long, alias = "kind", value_delimiter = ',', value_name = "KIND,…")]
    kinds: Option<Vec<String>>,
    /// Namespace of the kinds given with --kinds.
    #[arg(long, default_value = "", hide_default_value = true)]
    namespace: String,
    /// Don't ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let to = args
        .to
        .clone()
        .or_else(|| settings.config.target.clone())
        .ok_or_else(|| anyhow::anyhow!("say what to clear with --to TARGET"))?;
    let mut target = connector::open_target(&to, &settings.remote)?;
    // A PostgreSQL URL may carry a password; its target id does not.
    let to = if matches!(
        connector::parse_location(&to),
        Ok(connector::Location::Postgres(_))
    ) {
        target.target_id()
    } else {
        to
    };
    target.start(false)?;
    let kinds: Vec<(String, String)> = match &args.kinds {
        Some(ks) => ks
            .iter()
            .map(|k| (args.namespace.clone(), k.clone()))
            .collect(),
        None => target.list_kinds()?,
    };
    if kinds.is_empty() {
        if !settings.quiet {
            println!(
                "{} has no entities; nothing to clear",
                super::output::escape(&to)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let shown: Vec<String> = kinds.iter().map(|(n, k)| kind_label(n, k)).collect();
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "clear deletes every entity of {} on {to}; pass --yes to confirm (there is no terminal to ask on)",
                shown.join(", ")
            );
        }
        eprint!(
            "{}",
            super::output::escape(&format!(
                "Delete every entity of {} on {to}? [y/N] ",
                shown.join(", ")
            ))
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            anyhow::bail!("cancelled; nothing was deleted");
        }
    }
    let mut rows = vec![vec!["kind".to_string(), "deleted".into()]];
    for (ns, kind) in &kinds {
        let n = target.clear_kind(ns, kind)?;
        rows.push(vec![kind_label(ns, kind), n.to_string()]);
    }
    target.finish()?;
    if !settings.quiet {
        let mut out = Out::new();
        for l in table(&rows, 1) {
            out.line(l)?;
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
