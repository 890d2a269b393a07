//! `kindsnap restore SNAP --to TARGET`

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use kindsnap::connector;
use kindsnap::ops::{self, restore as r};

use super::output::{kind_label, table};
use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Targets:
  datastore://HOST:PORT/PROJECT   the emulator or a dev server (plain HTTP)
  datastore:PROJECT               Cloud Datastore / Firestore in Datastore mode
  datastore:                      $DATASTORE_EMULATOR_HOST, $DATASTORE_PROJECT_ID
  sqlite:FILE                     a SQLite database (created if missing)
  postgres://USER:PASS@HOST:PORT/DB   a PostgreSQL database
  jsonl:FILE                      Datastore v1 JSON, one entity per line

Into kinds the target already holds entities of, say how: --merge (write
over them, keep the rest), --exact (afterwards exactly the snapshot) or
--clear (empty them first); without one, kindsnap refuses (--dry-run counts).

Exit codes: 0 done, 1 error (run again to resume), 3 done but --tolerate
skipped entities, 75 transient (run again later), 130 stopped by Ctrl-C (run
again to resume).

Examples:
  kindsnap restore latest --to jsonl:dev.jsonl
  kindsnap restore latest --to sqlite:dev.db --merge
  kindsnap restore friday --to datastore://localhost:8081/dev --keys uuid
  kindsnap restore latest --to datastore://localhost:8081/dev --kinds Post --with-references
  kindsnap restore latest --to jsonl:dev.jsonl --exact --yes --dry-run
  kindsnap restore latest --to jsonl:dev.jsonl --transform 'python3 scrub.py'
  kindsnap restore latest --to sqlite:restored.db
  kindsnap restore latest --to postgres://me:secret@localhost:5432/dev --exact --yes")]
pub struct Args {
    /// Snapshot: a name, an id prefix, `latest`, `latest~N`, or `@DATE`
    /// (the newest taken at or before 2026-11-20 or 2026-11-20T06:00:00Z).
    #[arg(add = super::complete::snap())]
    snapshot: String,
    /// Where to write (see Targets below) [default: `target` in
    /// kindsnap.toml].
    #[arg(long, value_name = "TARGET")]
    to: Option<String>,
    /// Only these kinds (comma-separated).
    #[arg(add = super::complete::kind(), long, alias = "kind", value_delimiter = ',', value_name = "KIND,…")]
    kinds: Option<Vec<String>>,
    /// Keep the original keys, or give every numeric id a uuid key name.
    #[arg(long, value_enum, default_value = "keep")]
    keys: KeysArg,
    /// Write the snapshot's entities over what the target holds and keep
    /// the rest (needed when the kinds on the target are not empty).
    #[arg(long, conflicts_with_all = ["exact", "clear"])]
    merge: bool,
    /// Afterwards the kinds on the target hold exactly the snapshot's
    /// entities (extras deleted).
    #[arg(long, conflicts_with = "clear")]
    exact: bool,
    /// Empty the kinds on the target first.
    #[arg(long)]
    clear: bool,
    /// Print the plan; write nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Skip (and report) entities the target rejects instead of stopping;
    /// exit code 3 if any were skipped.
    #[arg(long)]
    tolerate: bool,
    /// Don't ask before deleting (--exact, --clear).
    #[arg(long, short = 'y')]
    yes: bool,
    /// With --kinds: also every entity they reference, transitively.
    #[arg(long, requires = "kinds")]
    with_references: bool,
    /// Rewrite project A to B in keys and references (repeatable).
    #[arg(long, value_name = "A=B", value_parser = pair)]
    map_project: Vec<(String, String)>,
    /// Rewrite namespace A to B in keys and references (repeatable; `""`
    /// is the default namespace).
    #[arg(long, value_name = "A=B", value_parser = pair)]
    map_namespace: Vec<(String, String)>,
    /// Pipe every entity through this shell command (JSON Lines in, one
    /// line out per entity: the entity, or `null` to leave it out).
    #[arg(long, value_name = "COMMAND")]
    transform: Option<String>,
    /// Recreate the snapshot's recorded code as recorded: triggers,
    /// PostgreSQL functions, views and extensions, and any function calls
    /// in its table definitions. Without it a restore runs only statements
    /// that recreate the snapshot's own tables and types. Use it
    /// only for repositories whose writers you trust: they choose that
    /// code.
    #[arg(long)]
    trust_schema: bool,
    /// Datastore: START/PERCENT/MINUTES, START writes a second at first and
    /// PERCENT% more every MINUTES (Google's rule: `500/50/5`), or `off`
    /// [default: `ramp_up` in kindsnap.toml, else 500/50/5 for
    /// `datastore:PROJECT`, off for `datastore://` emulators].
    #[arg(long, value_name = "RULE")]
    ramp_up: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum KeysArg {
    Keep,
    Uuid,
}

fn pair(s: &str) -> Result<(String, String), String> {
    let (a, b) = s
        .split_once('=')
        .ok_or_else(|| format!("expected A=B, got `{s}`"))?;
    Ok((a.to_string(), b.to_string()))
}

/// `--ramp-up` (or `ramp_up` in kindsnap.toml) as the Datastore target's
/// `ramp_up=` parameter, unless the location sets one.
fn with_ramp_up(mut to: String, ramp: Option<&String>) -> anyhow::Result<String> {
    let Some(ramp) = ramp else { return Ok(to) };
    if !to.starts_with("datastore:") {
        anyhow::bail!("--ramp-up / ramp_up applies to datastore targets only");
    }
    if !to.contains("ramp_up=") {
        to.push(if to.contains('?') { '&' } else { '?' });
        to.push_str(&format!("ramp_up={ramp}"));
    }
    Ok(to)
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let repo = settings.open_repo()?;
    let info = ops::find_snapshot(&repo, &args.snapshot)?;
    let to = args
        .to
        .clone()
        .or_else(|| settings.config.target.clone())
        .ok_or_else(|| {
            anyhow::anyhow!("say where to restore with --to TARGET (or `target` in kindsnap.toml)")
        })?;
    let to = with_ramp_up(
        to,
        args.ramp_up.as_ref().or(settings.config.ramp_up.as_ref()),
    )?;
    let mut target = connector::open_target(&to, &settings.remote)?;
    let mut opts = r::RestoreOptions {
        kinds: args.kinds.clone(),
        keys: match args.keys {
            KeysArg::Keep => r::KeyMode::Keep,
            KeysArg::Uuid => r::KeyMode::Uuid,
        },
        mode: if args.exact {
            r::WriteMode::Exact
        } else if args.clear {
            r::WriteMode::Clear
        } else {
            r::WriteMode::Upsert
        },
        dry_run: args.dry_run,
        tolerate: args.tolerate,
        with_references: args.with_references,
        map_project: args.map_project.clone(),
        map_namespace: args.map_namespace.clone(),
        kind_options: settings.config.kind_options(),
        transform: args.transform.clone(),
        checkpoint_every: std::env::var("KINDSNAP_CHECKPOINT_EVERY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        trust_schema: args.trust_schema,
        cancel: settings.cancel.clone(),
        require_fresh: !(args.merge || args.exact || args.clear),
    };
    if (args.exact || args.clear) && !args.dry_run && !args.yes {
        confirm(&args, &to)?;
    }
    let progress = settings.progress();
    let report = match r::restore(&repo, &info, target.as_mut(), &opts, &progress) {
        // A live target and no mode chosen: ask, on a terminal.
        Err(kindsnap::Error::TargetHasData {
            target: shown,
            kinds,
        }) if !args.json && std::io::stdin().is_terminal() && std::io::stderr().is_terminal() => {
            opts.mode = ask_mode(&shown, &kinds)?;
            opts.require_fresh = false;
            let mut target = connector::open_target(&to, &settings.remote)?;
            r::restore(&repo, &info, target.as_mut(), &opts, &progress)?
        }
        other => other?,
    };
    let code = if report.rejected() > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    };
    if settings.quiet && !args.json {
        if report.rejected() > 0 {
            eprintln!(
                "kindsnap: {} rejected and skipped",
                super::output::count(report.rejected(), "entity")
            );
        }
        return Ok(code);
    }
    let mut out = Out::new();
    if args.json {
        out.json(&serde_json::to_value(&report)?)?;
        out.flush()?;
        return Ok(code);
    }
    // A PostgreSQL URL may carry a password; its target id does not.
    let shown = if matches!(
        connector::parse_location(&to),
        Ok(connector::Location::Postgres(_))
    ) {
        report.target.clone()
    } else {
        to.clone()
    };
    print_report(&mut out, &report, &info.name, &shown)?;
    if !report.dry_run {
        out.line(format!("done{}", super::output::took(settings.started)))?;
    }
    out.flush()?;
    Ok(code)
}

/// The target already holds entities of the kinds to restore: ask what to
/// do with them (choosing --exact or --clear here is the confirmation).
fn ask_mode(target: &str, kinds: &str) -> anyhow::Result<r::WriteMode> {
    let (target, kinds) = (super::output::escape(target), super::output::escape(kinds));
    eprint!(
        "{target} already holds entities of {kinds}.\n  \
         m  merge: write the snapshot over them and keep the rest\n  \
         e  exact: afterwards exactly the snapshot's entities (the others are deleted)\n  \
         c  clear: empty these kinds first\n\
         Restore how? [m/e/c; anything else cancels] "
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    match answer.trim() {
        "m" | "merge" => Ok(r::WriteMode::Upsert),
        "e" | "exact" => Ok(r::WriteMode::Exact),
        "c" | "clear" => Ok(r::WriteMode::Clear),
        _ => anyhow::bail!("cancelled; nothing was written"),
    }
}

fn confirm(args: &Args, to: &str) -> anyhow::Result<()> {
    let what = if args.exact {
        "--exact deletes the target's entities that are not in the snapshot"
    } else {
        "--clear deletes every entity of the restored kinds on the target first"
    };
    let kinds = args
        .kinds
        .as_ref()
        .map(|k| k.join(", "))
        .unwrap_or_else(|| "all the snapshot's kinds".into());
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "{what} ({to}: {kinds}); pass --yes to confirm (there is no terminal to ask on)"
        );
    }
    let (to, kinds) = (super::output::escape(to), super::output::escape(&kinds));
    eprint!("{what}.\n  target: {to}\n  kinds:  {kinds}\nContinue? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        anyhow::bail!("cancelled; nothing was written")
    }
}

fn print_report(out: &mut Out, r: &r::RestoreReport, name: &str, to: &str) -> anyhow::Result<()> {
    if let Some(from) = &r.resumed {
        out.line(format!("resumed an interrupted restore at {from}"))?;
    }
    let head = if r.dry_run {
        format!("plan: restore {name} into {to} (dry run: nothing written)")
    } else {
        format!("restored {name} into {to}")
    };
    out.line(head)?;
    let uuid = r.keys == r::KeyMode::Uuid;
    let mut header = vec![
        "kind".to_string(),
        if r.dry_run { "to write" } else { "written" }.into(),
        if r.dry_run { "to delete" } else { "deleted" }.into(),
    ];
    if uuid {
        header.extend(["refs rewritten".into(), "refs outside".into()]);
    } else {
        header.push("ids reserved".into());
    }
    header.extend(["rejected".into(), "dropped".into()]);
    let mut rows = vec![header];
    for k in &r.kinds {
        let mut row = vec![
            kind_label(&k.namespace, &k.kind),
            k.written.to_string(),
            k.deleted.to_string(),
        ];
        if uuid {
            row.extend([
                k.references_rewritten.to_string(),
                k.references_outside.to_string(),
            ]);
        } else {
            row.push(k.ids_reserved.to_string());
        }
        row.extend([k.rejected.to_string(), k.dropped.to_string()]);
        rows.push(row);
    }
    for l in table(&rows, 1) {
        out.line(l)?;
    }
    let existing: u64 = r.kinds.iter().filter_map(|k| k.existing).sum();
    if existing > 0 {
        out.line(format!(
            "the target holds {} of these kinds already: restore with --merge (write over \
             them, keep the rest), --exact (delete those not in the snapshot; --dry-run --exact \
             counts them) or --clear (delete all of them first)",
            super::output::count(existing, "entity")
        ))?;
    }
    if !uuid && r.kinds.iter().any(|k| k.ids_reserved > 0) {
        out.line(format!("ids reserved by: {}", r.reserve_method))?;
    }
    if uuid && !r.dry_run {
        out.line(format!(
            "uuid key names are recorded: `kindsnap keymap {to} KIND:ID` looks one up"
        ))?;
    }
    for w in &r.warnings {
        out.line(format!("warning: {w}"))?;
    }
    for j in &r.rejections {
        out.line(format!("rejected {}: {}", j.key, j.reason))?;
    }
    if r.rejected() > r.rejections.len() as u64 {
        out.line(format!(
            "… and {} more",
            super::output::count(r.rejected() - r.rejections.len() as u64, "rejection")
        ))?;
    }
    Ok(())
}
