//! `kindsnap snapshot --from SOURCE`

use std::path::PathBuf;
use std::process::ExitCode;

use kindsnap::connector;
use kindsnap::filter::KindFilter;
use kindsnap::ops::snapshot::{self, SnapshotOptions};

use super::output::{bytes, kind_label, table};
use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Sources:
  datastore://HOST:PORT/PROJECT   the emulator or a dev server (plain HTTP)
  datastore:PROJECT               Cloud Datastore / Firestore in Datastore mode
                                  (Application Default Credentials)
  datastore:                      $DATASTORE_EMULATOR_HOST, $DATASTORE_PROJECT_ID
  sqlite:FILE                     a SQLite database (or a bare *.sqlite3/*.db path)
  postgres://USER:PASS@HOST:PORT/DB   a PostgreSQL database (docs/sql.md)
  jsonl:FILE                      Datastore v1 JSON, one entity per line
  datastore-export:PATH           a `gcloud datastore export` folder (or its
                                  .overall_export_metadata file), local or
                                  gs://BUCKET/PREFIX, s3://BUCKET/PREFIX
  (append ?database=NAME for a named Datastore database)

Examples:
  kindsnap snapshot --from datastore:acme-prod --name daily
  kindsnap snapshot --from datastore://localhost:8081/dev --kinds Order,User
  kindsnap snapshot --from datastore:acme-prod --read-time 2026-11-20T00:00:00Z
  kindsnap snapshot --from datastore:acme-prod --changed-property updated
  kindsnap snapshot --from sqlite:db.sqlite3 --name before-migration
  kindsnap snapshot --from postgres://app@localhost/app
  kindsnap snapshot --from jsonl:entities.jsonl --json
  kindsnap snapshot --from datastore-export:gs://acme-backups/2026-11-20T03:00:00_12345 --name 2026-11-20
  kindsnap snapshot                  the `source` in kindsnap.toml")]
pub struct Args {
    /// Where to read entities (see Sources below) [default: `source` in
    /// kindsnap.toml].
    #[arg(long, value_name = "SOURCE")]
    from: Option<String>,
    /// Name of the snapshot [default: the UTC time].
    #[arg(long)]
    name: Option<String>,
    /// Reuse a name that already exists (the name then means the new snapshot).
    #[arg(long)]
    force: bool,
    /// Tag the snapshot (repeatable; `kindsnap tag` changes tags later).
    #[arg(add = super::complete::tag(), long, value_name = "TAG")]
    tag: Vec<String>,
    /// Only these kinds (comma-separated).
    #[arg(add = super::complete::kind(), long, alias = "kind", value_delimiter = ',', value_name = "KIND,…")]
    kinds: Option<Vec<String>>,
    /// An extra ignore file (gitignore syntax over `namespace/Kind`).
    #[arg(long, value_name = "FILE")]
    ignore_file: Option<PathBuf>,
    /// Datastore: only these namespaces (comma-separated; `-` is the
    /// default namespace; `--namespace` also works) [default: all].
    #[arg(long, alias = "namespace", value_name = "NS,…")]
    namespaces: Option<String>,
    /// Datastore: read every kind as of this RFC 3339 time (a consistent
    /// point-in-time snapshot, where the server supports it).
    #[arg(long, value_name = "TIME")]
    read_time: Option<String>,
    /// Datastore: queries in flight at once, over kinds and the key ranges
    /// big kinds are split into [default: 8].
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Datastore: send at most N requests per second (all together) [default:
    /// `max_rps` in kindsnap.toml, else no limit].
    #[arg(long, value_name = "N")]
    max_rps: Option<f64>,
    /// Datastore: read only the entities whose PROPERTY (a timestamp every
    /// write sets, e.g. ndb `auto_now=True`) is later than the parent
    /// snapshot's read time minus the margin; carry the rest from the
    /// parent [default: `changed_property` in kindsnap.toml].
    #[arg(long, value_name = "PROPERTY")]
    changed_property: Option<String>,
    /// How far before the parent's read time the changed reads start, for
    /// clock skew and commits in flight: seconds, or with a unit (`90s`,
    /// `5m`, `1h`) [default: `changed_margin`, else 5m].
    #[arg(long, value_name = "DURATION", value_parser = parse_margin)]
    changed_margin: Option<std::time::Duration>,
    /// Read every entity even where only what changed could be read
    /// (the parent still names what changed).
    #[arg(long)]
    full: bool,
    /// Record this RFC 3339 time instead of now (importing old dumps in
    /// date order, so that `@DATE` and `forget` see their real dates).
    #[arg(long, value_name = "TIME")]
    time: Option<String>,
    /// Read every entity afresh instead of skipping the lines of a JSON
    /// Lines file that are unchanged since the parent snapshot.
    #[arg(long)]
    no_cache: bool,
    /// datastore-export: skip damaged records (each is reported on
    /// stderr; the exit code is then 3) instead of stopping at the first.
    #[arg(long)]
    tolerate: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let mut repo = settings.open_repo()?;
    let from = location(&args, settings)?;
    if args.tolerate && !from.starts_with("datastore-export:") {
        anyhow::bail!("--tolerate applies to datastore-export sources only");
    }
    let mut source = connector::open_source(&from, &settings.remote)?;
    source.set_tolerate(args.tolerate);
    source.set_kind_options(&settings.config.kind_options());
    let mut changed = settings.config.changed_property();
    if let Some(p) = &args.changed_property {
        if !from.starts_with("datastore:") {
            anyhow::bail!("--changed-property applies to datastore sources only");
        }
        changed.default = Some(p.clone());
    }
    if let Some(m) = args.changed_margin {
        changed.margin = m;
    }
    source.set_changed_property(&changed);
    let json = args.json;
    let opts = options(args, settings, &repo)?;
    if !opts.tags.is_empty() {
        // Tags live in manifest headers that older builds reject.
        repo.require_format(kindsnap::repo::TAGS_FORMAT_VERSION)?;
    }
    let report = snapshot::snapshot(&repo, source.as_mut(), &opts, &settings.progress())?;
    if report.existed && !opts.tags.is_empty() {
        // A rerun found the snapshot published already: it still gets
        // the tags asked for (its id stays).
        kindsnap::ops::tag::tag(&mut repo, &[report.id.to_hex()], &opts.tags, &[])?;
    }
    // `--tolerate` (exports): each damaged record skipped, and exit 3.
    let skipped = source.skipped();
    for s in &skipped {
        eprintln!(
            "kindsnap: skipped a damaged record: {}",
            super::output::escape(s)
        );
    }
    let done = match skipped.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(3),
    };
    if settings.quiet {
        return Ok(done);
    }
    let mut out = Out::new();
    if json {
        // The snapshot's tags after this run (a rerun keeps earlier ones).
        let tags = kindsnap::ops::find_snapshot(&repo, &report.id.to_hex())?.tags;
        print_json(&mut out, &report, &source.source_id(), &tags)?;
    } else {
        print_text(&mut out, &report, settings.started)?;
    }
    out.flush()?;
    Ok(done)
}

/// The source location, with the Datastore flags (and `max_rps` from
/// kindsnap.toml) appended as its parameters.
fn location(args: &Args, settings: &Settings) -> anyhow::Result<String> {
    let Some(mut from) = args.from.clone().or_else(|| settings.config.source.clone()) else {
        anyhow::bail!(
            "no source: give --from (e.g. --from datastore://localhost:8081/dev) or set `source` in kindsnap.toml"
        );
    };
    let params = [
        ("namespaces", args.namespaces.clone()),
        ("read_time", args.read_time.clone()),
        ("concurrency", args.concurrency.map(|c| c.to_string())),
        ("max_rps", args.max_rps.map(|c| c.to_string())),
    ];
    for (name, value) in params {
        if let Some(v) = value {
            if !from.starts_with("datastore:") {
                anyhow::bail!(
                    "--{} applies to datastore sources only",
                    name.replace('_', "-")
                );
            }
            from.push(if from.contains('?') { '&' } else { '?' });
            from.push_str(&format!("{name}={v}"));
        }
    }
    if let Some(rps) = settings.config.max_rps {
        if from.starts_with("datastore:") && !from.contains("max_rps=") {
            from.push(if from.contains('?') { '&' } else { '?' });
            from.push_str(&format!("max_rps={rps}"));
        }
    }
    Ok(from)
}

fn options(
    args: Args,
    settings: &Settings,
    repo: &kindsnap::repo::Repository,
) -> anyhow::Result<SnapshotOptions> {
    let ignore_files = vec![
        PathBuf::from(".snapshotignore"),
        repo.root().join(".snapshotignore"),
    ];
    let required: Vec<PathBuf> = args.ignore_file.into_iter().collect();
    let filter = KindFilter::new(args.kinds.as_deref(), &ignore_files, &required)?;
    let mut opts = SnapshotOptions {
        name: args.name,
        force: args.force,
        filter,
        time_us: match &args.time {
            Some(t) => Some(kindsnap::model::json::parse_timestamp(t).map_err(|_| {
                anyhow::anyhow!("--time {t}: give an RFC 3339 time such as 2026-10-01T00:00:00Z")
            })?),
            None => None,
        },
        cache_dir: (!args.no_cache).then(|| settings.cache_dir.clone()),
        full: args.full,
        full_every: settings.config.full_every,
        read_price_per_100k: settings
            .config
            .datastore_read_price
            .unwrap_or(snapshot::DEFAULT_READ_PRICE_PER_100K),
        cancel: settings.cancel.clone(),
        tags: {
            let mut t = args.tag.clone();
            t.sort();
            t.dedup();
            t
        },
        ..Default::default()
    };
    for t in &opts.tags {
        kindsnap::ops::tag::validate_tag(t)?;
    }
    // Memory for the external sort (bytes); mostly for tests and tuning.
    if let Some(b) = std::env::var("KINDSNAP_SORT_BUDGET")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.sort_budget = b;
    }
    // Without --time, the snapshot's time may come from the hidden
    // KINDSNAP_NOW (RFC 3339 or microseconds since the epoch), for tests of
    // time-based retention and of the daily loops in docs/guide.md.
    if let Some(now) = std::env::var("KINDSNAP_NOW")
        .ok()
        .filter(|_| opts.time_us.is_none())
    {
        let us = match now.parse::<i64>() {
            Ok(us) => us,
            Err(_) => kindsnap::model::json::parse_timestamp(&now)
                .map_err(|e| anyhow::anyhow!("KINDSNAP_NOW: {e}"))?,
        };
        opts.time_us = Some(us);
    }
    Ok(opts)
}

fn print_json(
    out: &mut Out,
    report: &snapshot::SnapshotReport,
    source: &str,
    tags: &[String],
) -> anyhow::Result<()> {
    // The library's report, and the source's identity and the tags
    // beside it.
    let mut v = serde_json::to_value(report)?;
    v["source"] = serde_json::Value::String(source.to_string());
    v["tags"] = serde_json::to_value(tags)?;
    out.json(&v)?;
    Ok(())
}

fn print_text(
    out: &mut Out,
    report: &snapshot::SnapshotReport,
    started: std::time::Instant,
) -> anyhow::Result<()> {
    if report.existed {
        out.line(format!(
            "snapshot `{}` ({}) already exists with identical content; nothing to do",
            report.name,
            report.id.short()
        ))?;
        return Ok(());
    }
    let parent = match &report.parent {
        Some((id, name)) => format!("parent {name} ({})", id.short()),
        None => "no parent: full snapshot".to_string(),
    };
    out.line(format!(
        "snapshot {} ({}), {parent}",
        report.name,
        report.id.short()
    ))?;
    for l in table(&kind_rows(report), 1) {
        out.line(l)?;
    }
    out.line(format!(
        "repository grew by {} (manifest {}){}",
        bytes(report.bytes_added),
        bytes(report.manifest_bytes),
        super::output::took(started)
    ))?;
    if !report.skipped_kinds.is_empty() {
        out.line(format!(
            "skipped (ignored or not selected): {}",
            report.skipped_kinds.join(", ")
        ))?;
    }
    for w in &report.warnings {
        out.line(format!("warning: {}", super::output::escape(w)))?;
    }
    print_read_modes(out, report)
}

/// How each kind was read, when changed reads were asked for; notes.
fn print_read_modes(out: &mut Out, report: &snapshot::SnapshotReport) -> anyhow::Result<()> {
    use kindsnap::connector::KindRead;
    for k in &report.kinds {
        let label = kind_label(&k.namespace, &k.kind);
        match &k.read {
            Some(KindRead::Incremental {
                property,
                changed,
                looked_up,
                carried,
            }) => out.line(format!(
                "{label}: read what changed ({property}): {changed} changed, {looked_up} looked up, {carried} carried from the parent"
            ))?,
            Some(KindRead::Full { why }) => out.line(format!("{label}: read in full: {why}"))?,
            None => {}
        }
    }
    if let Some(info) = &report.read_info {
        for n in &info.notes {
            out.line(format!("note: {n}"))?;
        }
    }
    Ok(())
}

/// `--changed-margin`: seconds, or a number with `s`, `m` or `h`.
fn parse_margin(text: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = match text
        .trim()
        .char_indices()
        .find(|(_, c)| c.is_ascii_alphabetic())
    {
        Some((i, _)) => text.trim().split_at(i),
        None => (text.trim(), "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}`: give seconds, or minutes as `5m`, hours as `1h`"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("`{text}`: the unit is s, m or h")),
    };
    if secs > 7 * 86_400 {
        return Err(format!("`{text}`: at most 7 days"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// The per-kind table: header, one row per kind, the total; read costs
/// for sources that bill reads.
fn kind_rows(report: &snapshot::SnapshotReport) -> Vec<Vec<String>> {
    let mut rows = vec![vec![
        "kind".to_string(),
        "entities".into(),
        "new".into(),
        "changed".into(),
        "removed".into(),
        "bytes added".into(),
    ]];
    for k in &report.kinds {
        rows.push(vec![
            kind_label(&k.namespace, &k.kind),
            k.entities.to_string(),
            k.added.to_string(),
            k.changed.to_string(),
            k.removed.to_string(),
            bytes(k.bytes_added),
        ]);
    }
    let sum = |f: fn(&snapshot::KindReport) -> u64| report.kinds.iter().map(f).sum::<u64>();
    rows.push(vec![
        "total".into(),
        report.entities.to_string(),
        sum(|k| k.added).to_string(),
        sum(|k| k.changed).to_string(),
        sum(|k| k.removed).to_string(),
        bytes(sum(|k| k.bytes_added)),
    ]);
    if report.reads.is_some() {
        rows[0].extend([
            "entity reads".into(),
            "small ops".into(),
            "est. cost".into(),
        ]);
        for (row, k) in rows[1..].iter_mut().zip(&report.kinds) {
            let r = k.reads.unwrap_or_default();
            row.extend([
                r.entity_reads.to_string(),
                r.small_ops.to_string(),
                usd(r.estimated_usd),
            ]);
        }
        if let (Some(total), Some(row)) = (report.reads, rows.last_mut()) {
            row.extend([
                total.entity_reads.to_string(),
                total.small_ops.to_string(),
                usd(total.estimated_usd),
            ]);
        }
    }
    rows
}

/// A cost estimate: cents are too coarse for a few hundred reads.
fn usd(v: f64) -> String {
    if v == 0.0 {
        "$0".into()
    } else if v < 0.01 {
        format!("${v:.6}")
    } else {
        format!("${v:.2}")
    }
}
