//! `kindsnap cat SNAP KEY|KIND`

use std::process::ExitCode;

use kindsnap::model::{json, Entity};
use kindsnap::ops;

use super::rows::{self, Format, Table};
use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Snapshots of SQLite and PostgreSQL print as a table (columns as \
headers, NULL shown, long values cut with …), others as Datastore v1 JSON; --format \
chooses.

Examples:
  kindsnap cat latest User:alice
  kindsnap cat friday User:alice/Order:12
  kindsnap cat latest Item:7 --namespace shop
  kindsnap cat latest product                every row of a kind (table for SQL)
  kindsnap cat latest product --format json  one entity per line (JSON Lines)"
)]
pub struct Args {
    /// Snapshot: a name, an id prefix, `latest`, `latest~N`, or `@DATE`
    /// (the newest taken at or before 2026-11-20 or 2026-11-20T06:00:00Z).
    #[arg(add = super::complete::snap())]
    snapshot: String,
    /// Key path, e.g. `Post:42`, `User:alice/Post:7`, `Post:"42"` (a
    /// name); or a kind alone (`Post`) for all its entities.
    #[arg(add = super::complete::kind())]
    key: String,
    /// Namespace of the key [default: the default namespace].
    #[arg(long, default_value = "", hide_default_value = true)]
    namespace: String,
    /// json or table [default: table for snapshots of SQL databases,
    /// json for the rest].
    #[arg(long, value_name = "FORMAT")]
    format: Option<Format>,
    /// With a kind: print at most N entities [default: all].
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let repo = settings.open_repo()?;
    if !args.key.contains(':') {
        return cat_kind(&repo, &args);
    }
    let (info, entity) = ops::read::cat(&repo, &args.snapshot, &args.namespace, &args.key)?;
    let mut out = Out::new();
    match rows::choose(args.format, &info.source) {
        Format::Json => out.raw(&json::entity_to_json_pretty(&entity))?,
        Format::Table => {
            let (header, row) = one_row(&entity);
            let mut t = Table::new(header);
            t.push(row);
            for l in t.flush() {
                out.line(l)?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// One entity as a header (`key`, then its properties) and a row.
fn one_row(e: &Entity) -> (Vec<String>, Vec<String>) {
    let mut header = vec!["key".to_string()];
    let mut row = vec![kindsnap::model::key::display_path(&e.key.path)];
    for (name, v) in &e.properties {
        header.push(name.clone());
        row.push(rows::cell(Some(v)));
    }
    (header, row)
}

/// `cat SNAP KIND`: every entity of the kind, as table rows (the columns
/// of the first entity) or as JSON Lines; paged on a terminal.
fn cat_kind(repo: &kindsnap::repo::Repository, args: &Args) -> anyhow::Result<ExitCode> {
    let info = ops::find_snapshot(repo, &args.snapshot)?;
    let format = rows::choose(args.format, &info.source);
    let mut out = Out::paged();
    let mut table: Option<(Table, Vec<String>)> = None;
    let mut printed = 0u64;
    let limit = args.limit.unwrap_or(u64::MAX);
    let mut emit = |e: Entity| -> kindsnap::Result<bool> {
        if printed >= limit {
            return Ok(false);
        }
        printed += 1;
        let lines = match format {
            Format::Json => vec![json::entity_to_json(&e).to_string()],
            Format::Table => {
                let (t, columns) = table.get_or_insert_with(|| {
                    let (header, _) = one_row(&e);
                    let columns = header[1..].to_vec();
                    (Table::new(header), columns)
                });
                let mut row = vec![kindsnap::model::key::display_path(&e.key.path)];
                row.extend(columns.iter().map(|c| rows::cell(e.properties.get(c))));
                t.push(row)
            }
        };
        for l in lines {
            out.line(l).map_err(kindsnap::Error::Output)?;
        }
        Ok(true)
    };
    ops::read::cat_kind(
        repo,
        &info.logical.to_hex(),
        &args.namespace,
        &args.key,
        &mut emit,
    )?;
    if let Some((mut t, _)) = table {
        for l in t.flush() {
            out.line(l)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
