//! `kindsnap log`

use std::process::ExitCode;

use kindsnap::ops;

use kindsnap::ops::diff::Change;

use super::output::{bytes, escape, table, time_at, Paint};
use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kindsnap log
  kindsnap log --json | jq -r '.[0].id'
  kindsnap log --key User:alice          every snapshot that added, changed
                                         or removed User:alice, and how")]
pub struct Args {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
    /// One entity's history instead: the snapshots in which the key was
    /// added, changed or removed, with each property old → new.
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Namespace of --key [default: the default namespace].
    #[arg(long, default_value = "", hide_default_value = true, requires = "key")]
    namespace: String,
    /// Only snapshots that carry TAG (`kindsnap tag`); repeatable: any
    /// of them.
    #[arg(add = super::complete::tag(), long, value_name = "TAG", conflicts_with = "key")]
    tag: Vec<String>,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    if let Some(key) = &args.key {
        return history(key, &args, settings);
    }
    let repo = settings.open_repo()?;
    let mut log = ops::read::log(&repo)?;
    if !args.tag.is_empty() {
        log.snapshots
            .retain(|s| s.tags.iter().any(|t| args.tag.contains(t)));
    }
    let mut out = if args.json { Out::new() } else { Out::paged() };
    if args.json {
        out.json(&serde_json::to_value(&log.snapshots)?)?;
    } else if log.snapshots.is_empty() {
        out.line("no snapshots yet; `kindsnap snapshot --from SOURCE` takes one")?;
    } else {
        let mut rows = vec![vec![
            "id".to_string(),
            "name".into(),
            "time".into(),
            "source".into(),
            "entities".into(),
            "added".into(),
        ]];
        // A tags column only once some snapshot has a tag.
        let tagged = log.snapshots.iter().any(|s| !s.tags.is_empty());
        if tagged {
            rows[0].insert(2, "tags".into());
        }
        for s in &log.snapshots {
            let mut row = vec![
                s.id[..8].to_string(),
                s.name.clone(),
                time_at(s.time_us, settings.local_time),
                s.source.clone(),
                s.entities.to_string(),
                bytes(s.bytes_added),
            ];
            if tagged {
                row.insert(2, s.tags.join(","));
            }
            rows.push(row);
        }
        for l in table(&rows, if tagged { 5 } else { 4 }) {
            out.line(l.trim_end())?;
        }
    }
    out.flush()?;
    for u in &log.unreadable {
        eprintln!(
            "kindsnap: warning: snapshot {} cannot be read: {}",
            &u.id[..8],
            super::output::escape(&u.why)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `kindsnap log --key K`: one entity's history.
fn history(key: &str, args: &Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    use kindsnap::model::json::value_to_json;
    let repo = settings.open_repo()?;
    let h = kindsnap::ops::history::entity_history(&repo, &args.namespace, key)?;
    let mut out = Out::new();
    if args.json {
        let events: Vec<serde_json::Value> = h
            .events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "id": e.snapshot.logical.to_hex(),
                    "name": e.snapshot.name,
                    "time": kindsnap::model::json::format_timestamp(e.snapshot.time_us),
                    "source": e.snapshot.source,
                    "parent": e.parent.map(|p| p.to_hex()),
                    "change": e.change,
                    "old": e.old.map(|x| x.to_hex()),
                    "new": e.new.map(|x| x.to_hex()),
                    "properties": e.properties.iter().map(|p| serde_json::json!({
                        "name": p.name,
                        "old": p.old.as_ref().map(value_to_json),
                        "new": p.new.as_ref().map(value_to_json),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        out.json(&serde_json::json!({
            "namespace": h.namespace,
            "kind": h.kind,
            "key": h.key,
            "events": events,
        }))?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let paint = Paint::new(settings.color);
    if h.events.is_empty() {
        out.line(format!("no snapshot holds {}", escape(&h.key)))?;
    }
    // Newest first, as `log` lists snapshots.
    for e in h.events.iter().rev() {
        let (mark, what) = match e.change {
            Change::Added => (paint.green("+"), "added"),
            Change::Removed => (paint.red("-"), "removed"),
            Change::Changed => (paint.yellow("~"), "changed"),
        };
        out.raw(&format!(
            "{mark} {}  {}  {}  {what}",
            e.snapshot.logical.short(),
            escape(&e.snapshot.name),
            time_at(e.snapshot.time_us, settings.local_time),
        ))?;
        for p in &e.properties {
            let show = |v: &Option<kindsnap::model::Value>| {
                v.as_ref()
                    .map(super::diff::short)
                    .unwrap_or_else(|| "(absent)".into())
            };
            out.raw(&format!(
                "    {}: {} → {}",
                escape(&p.name),
                paint.red(&escape(&show(&p.old))),
                paint.green(&escape(&show(&p.new)))
            ))?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
