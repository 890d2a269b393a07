//! `kindsnap export SNAP --to jsonl:FILE` or `--to datastore-export:DIR`

use std::process::ExitCode;

use kindsnap::connector::{self, gexport::ExportWriter, jsonl::JsonlSink};
use kindsnap::ops;

use super::{Out, Settings};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kindsnap export latest --to jsonl:all.jsonl
  kindsnap export friday --to jsonl:orders.jsonl --kinds Order,OrderLine
  kindsnap export friday --to datastore-export:exports/friday
      (a folder `gcloud datastore import exports/friday/friday.overall_export_metadata`
      loads, once copied to a bucket)")]
pub struct Args {
    /// Snapshot: a name, an id prefix, `latest`, `latest~N`, or `@DATE`
    /// (the newest taken at or before 2026-11-20 or 2026-11-20T06:00:00Z).
    #[arg(add = super::complete::snap())]
    snapshot: String,
    /// Where to write: `jsonl:FILE`, or `datastore-export:DIR` (Google's
    /// managed export format).
    #[arg(long, value_name = "TARGET")]
    to: String,
    /// Only these kinds (comma-separated).
    #[arg(add = super::complete::kind(), long, alias = "kind", value_delimiter = ',', value_name = "KIND,…")]
    kinds: Option<Vec<String>>,
}

pub fn run(args: Args, settings: &Settings) -> anyhow::Result<ExitCode> {
    let repo = settings.open_repo()?;
    let info = ops::find_snapshot(&repo, &args.snapshot)?;
    let (mut sink, path) = match connector::parse_location(&args.to)? {
        connector::Location::Jsonl(path) => (Sink::Jsonl(JsonlSink::create(&path)?), path),
        connector::Location::DatastoreExport(dir)
            if !kindsnap::repo::remote::is_remote_url(&dir) =>
        {
            let path = std::path::PathBuf::from(dir);
            (Sink::Export(ExportWriter::create(&path)?), path)
        }
        _ => anyhow::bail!(
            "export writes JSON Lines files (`--to jsonl:FILE`) or export folders on local disk (`--to datastore-export:DIR`); to write into {}, use `kindsnap restore`",
            args.to
        ),
    };
    let n = ops::export::export(
        &repo,
        &info,
        args.kinds.as_deref(),
        &settings.progress(),
        &mut |e| {
            settings.cancel.check()?;
            sink.write(&e)
        },
    )?;
    sink.finish()?;
    if !settings.quiet {
        let mut out = Out::new();
        out.line(format!(
            "exported {} of snapshot {} to {}",
            super::output::count(n, "entity"),
            info.name,
            path.display()
        ))?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Where `export` writes: a JSON Lines file or an export folder.
enum Sink {
    Jsonl(JsonlSink),
    Export(ExportWriter),
}

impl Sink {
    fn write(&mut self, e: &kindsnap::model::Entity) -> kindsnap::Result<()> {
        match self {
            Sink::Jsonl(s) => s.write(e),
            Sink::Export(s) => s.write(e),
        }
    }

    fn finish(self) -> kindsnap::Result<()> {
        match self {
            Sink::Jsonl(s) => s.finish(),
            Sink::Export(s) => s.finish(),
        }
    }
}
