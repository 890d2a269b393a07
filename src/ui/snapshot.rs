//! `/snapshot/NAME[?to=TARGET&keys=keep|uuid&kinds=K,…&dry_run=1]`: one
//! snapshot's kinds with their sizes (`ops::stats::snapshot_stats`,
//! headers and the index only) and a `kindsnap restore` command line for
//! the chosen target, to copy. The page itself never restores anything.

use axum::extract::{Path, Query, State};
use maud::{html, Markup};
use serde::Deserialize;

use kindsnap::ops::stats::{snapshot_stats, SnapshotStats};
use kindsnap::repo::manifest::{self, SnapshotInfo};
use kindsnap::repo::Repository;

use super::page::{self, bytes, kind_label};
use super::{App, PageError};

const DEFAULT_TARGET: &str = "datastore://localhost:8081/dev";

#[derive(Debug, Deserialize)]
pub struct Params {
    to: Option<String>,
    keys: Option<String>,
    kinds: Option<String>,
    dry_run: Option<String>,
}

struct View {
    snapshots: Vec<SnapshotInfo>,
    info: SnapshotInfo,
    stats: SnapshotStats,
}

pub async fn page(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(p): Query<Params>,
) -> Result<Markup, PageError> {
    let v = app.read(move |o| gather(&o.repo, &name)).await?;
    let keys = match p.keys.as_deref().unwrap_or("keep") {
        k @ ("keep" | "uuid") => k,
        other => {
            return Err(PageError::bad_request(format!(
                "keys `{other}`: choose `keep` or `uuid`"
            )))
        }
    };
    let restore = Restore {
        repo: &app.0.repo_arg,
        to: p
            .to
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or(DEFAULT_TARGET),
        keys,
        kinds: p.kinds.as_deref().map(str::trim).unwrap_or(""),
        dry_run: p.dry_run.is_some(),
    };
    Ok(render(&v, &restore))
}

fn gather(repo: &Repository, name: &str) -> Result<View, PageError> {
    let (snapshots, _) = manifest::list(repo)?;
    let info = manifest::resolve(&snapshots, name)?;
    let stats = snapshot_stats(repo, &info.id.to_hex())?;
    Ok(View {
        snapshots,
        info,
        stats,
    })
}

/// The restore the form describes.
struct Restore<'a> {
    repo: &'a str,
    to: &'a str,
    keys: &'a str,
    kinds: &'a str,
    dry_run: bool,
}

impl Restore<'_> {
    /// The command line, each argument quoted for a POSIX shell.
    fn command(&self, snapshot: &str) -> String {
        let mut args = vec![
            "kindsnap", "--repo", self.repo, "restore", snapshot, "--to", self.to,
        ];
        if self.keys != "keep" {
            args.extend(["--keys", self.keys]);
        }
        if !self.kinds.is_empty() {
            args.extend(["--kinds", self.kinds]);
        }
        if self.dry_run {
            args.push("--dry-run");
        }
        args.iter()
            .map(|a| {
                shlex::try_quote(a)
                    .map(|q| q.into_owned())
                    .unwrap_or_else(|_| format!("'{}'", a.replace('\0', "")))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn render(v: &View, r: &Restore) -> Markup {
    let sref = page::reference(&v.info, &v.snapshots);
    let s = &v.stats;
    let parent = v
        .info
        .parent
        .and_then(|p| {
            kindsnap::repo::manifest::logical_ids(&v.snapshots)
                .get(&p)
                .copied()
        })
        .and_then(|p| v.snapshots.iter().find(|i| i.logical == p));
    let pref = parent.map(|p| page::reference(p, &v.snapshots));
    let body = html! {
        h1 { "Snapshot " (v.info.name) }
        table.facts {
            tr { th { "id" } td { code { (s.id) } } }
            @if !v.info.tags.is_empty() {
                tr { th { "tags" } td { (v.info.tags.join(", ")) } }
            }
            tr { th { "time" } td { (page::time(v.info.time_us)) " UTC" } }
            tr { th { "source" } td { (s.source) } }
            tr { th { "parent" } td {
                @match (parent, &pref) {
                    (Some(p), Some(pr)) => {
                        a href=(page::snapshot_url(pr)) { (p.name) }
                        " · " a href=(page::url("/diff", &[("from", pr), ("to", &sref)])) { "what changed since" }
                    },
                    _ => span.muted { "none (the first snapshot of its source)" },
                }
                @if s.keyframe { span.muted { " · stored in full" } }
            } }
            tr { th { "entities" } td { (s.entities) } }
            tr { th { "size" } td { (bytes(s.raw_bytes)) " raw, about " (bytes(s.stored_bytes_estimate)) " stored" } }
            tr { th { "added to the repository" } td { (bytes(s.pack_bytes_added + s.manifest_bytes)) } }
        }
        (kinds(v, &sref, pref.as_deref()))
        (restore_form(r, &sref))
        h2 { "Look up an entity" }
        form.pick method="get" action="/entity" {
            input type="hidden" name="snapshot" value=(sref);
            label { "key " input type="text" name="key" placeholder="User:alice/Post:7" required; }
            label { " namespace " input type="text" name="ns" placeholder="(default)"; }
            " " button type="submit" { "Show" }
        }
    };
    page::layout(&format!("Snapshot {}", v.info.name), body)
}

fn kinds(v: &View, sref: &str, pref: Option<&str>) -> Markup {
    html! {
        h2 { "Kinds" }
        table.list {
            thead { tr {
                th { "kind" } th.num { "entities" } th.num { "raw bytes" } th.num { "stored (est.)" }
                th.num { "changes" } th.num { "bytes added" }
            } }
            tbody {
                @for k in v.stats.kinds.iter().filter(|k| k.entities > 0 || k.removed > 0) {
                    tr {
                        td { (kind_label(&k.namespace, &k.kind)) }
                        td.num { (k.entities) }
                        td.num { (bytes(k.raw_bytes)) }
                        td.num { (bytes(k.stored_bytes_estimate)) }
                        td.num {
                            @match pref {
                                Some(p) if k.added + k.changed + k.removed > 0 => {
                                    a href=(kind_diff_url(p, sref, &k.namespace, &k.kind)) {
                                        span.add { "+" (k.added) } " " span.chg { "~" (k.changed) } " " span.del { "-" (k.removed) }
                                    }
                                },
                                Some(_) => span.muted { "none" },
                                None => span.muted { "first" },
                            }
                        }
                        td.num { (bytes(k.bytes_added)) }
                    }
                }
            }
        }
    }
}

fn kind_diff_url(from: &str, to: &str, ns: &str, kind: &str) -> String {
    let mut pairs = vec![("from", from), ("to", to), ("kind", kind)];
    if !ns.is_empty() {
        pairs.push(("ns", ns));
    }
    page::url("/diff", &pairs)
}

fn restore_form(r: &Restore, sref: &str) -> Markup {
    html! {
        h2 { "Restore" }
        p.muted { "This page writes nothing: choose a target, then copy the command and run it." }
        form.pick method="get" action=(page::snapshot_url(sref)) {
            label { "to " input type="text" name="to" value=(r.to) size="40"; }
            label { " keys "
                select name="keys" {
                    option value="keep" selected[r.keys == "keep"] { "keep" }
                    option value="uuid" selected[r.keys == "uuid"] { "uuid" }
                }
            }
            label { " kinds " input type="text" name="kinds" value=(r.kinds) placeholder="all"; }
            label { " " input type="checkbox" name="dry_run" value="1" checked[r.dry_run]; " dry run" }
            " " button type="submit" { "Update" }
        }
        pre.command { code { (r.command(sref)) } }
    }
}

#[cfg(test)]
mod tests {
    use super::Restore;

    #[test]
    fn commands_quote_what_a_shell_would_split() {
        let r = Restore {
            repo: "/srv/my repo",
            to: "sqlite:dev.db",
            keys: "uuid",
            kinds: "User,Post",
            dry_run: true,
        };
        assert_eq!(
            r.command("day1"),
            "kindsnap --repo '/srv/my repo' restore day1 --to sqlite:dev.db --keys uuid --kinds 'User,Post' --dry-run"
        );
        let r = Restore {
            repo: "s3://b/p",
            to: "jsonl:$(rm -rf x).jsonl",
            keys: "keep",
            kinds: "",
            dry_run: false,
        };
        assert_eq!(
            r.command("day1"),
            "kindsnap --repo s3://b/p restore day1 --to 'jsonl:$(rm -rf x).jsonl'"
        );
    }
}
