//! `/`: the snapshots, newest first, and three charts over them. Reads
//! manifest headers only (as `kindsnap log` does), never a database.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use maud::{html, Markup};
use serde::Deserialize;

use kindsnap::repo::manifest::{self, KindInfo, Manifest, SnapshotInfo};

use super::charts::{self, Series};
use super::page::{self, bytes, kind_label};
use super::{App, PageError};

#[derive(Debug, Deserialize)]
pub struct Params {
    /// Only the snapshots of this source.
    source: Option<String>,
}

/// One snapshot with its per-kind totals.
struct Row {
    info: SnapshotInfo,
    kinds: Vec<KindInfo>,
    reference: String,
    /// How links name its parent, when the parent is listed.
    parent: Option<String>,
}

struct History {
    location: String,
    sources: Vec<String>,
    /// Oldest first.
    rows: Vec<Row>,
    unreadable: usize,
}

pub async fn page(State(app): State<App>, Query(p): Query<Params>) -> Result<Markup, PageError> {
    let source = p.source.filter(|s| !s.is_empty());
    let wanted = source.clone();
    let h = app
        .read(move |o| gather(&o.repo, wanted.as_deref()))
        .await?;
    Ok(render(&h, source.as_deref()))
}

fn gather(repo: &kindsnap::repo::Repository, source: Option<&str>) -> Result<History, PageError> {
    let _lock = repo.lock_shared()?;
    let (infos, bad) = manifest::list(repo)?;
    let mut sources: Vec<String> = infos.iter().map(|i| i.source.clone()).collect();
    sources.sort();
    sources.dedup();
    let by_id: std::collections::HashMap<_, _> = infos.iter().map(|i| (i.id, i)).collect();
    let replacements = manifest::replacement_map(&infos);
    let mut rows = Vec::new();
    for info in &infos {
        if source.is_some_and(|s| s != info.source) {
            continue;
        }
        let kinds = Manifest::open(repo, &info.id)?.kinds()?;
        let parent = info
            .parent
            .map(|p| replacements.get(&p).copied().unwrap_or(p))
            .and_then(|p| by_id.get(&p))
            .map(|p| page::reference(p, &infos));
        rows.push(Row {
            reference: page::reference(info, &infos),
            info: info.clone(),
            kinds,
            parent,
        });
    }
    Ok(History {
        location: repo.location(),
        sources,
        rows,
        unreadable: bad.len(),
    })
}

fn render(h: &History, source: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Snapshots" }
        p.muted {
            (h.location) " · " (h.rows.len()) " snapshot" @if h.rows.len() != 1 { "s" }
            @if let Some(s) = source { " of " code { (s) } }
        }
        @if h.unreadable > 0 {
            p.error { (h.unreadable) " snapshot manifest(s) cannot be read; `kindsnap check` says why" }
        }
        @if h.sources.len() > 1 {
            p.sources {
                "Source: "
                @if source.is_none() { strong { "all" } } @else { a href="/" { "all" } }
                @for s in &h.sources {
                    " · "
                    @if source == Some(s.as_str()) { strong { (s) } }
                    @else { a href=(page::url("/", &[("source", s)])) { (s) } }
                }
            }
        }
        @if h.rows.is_empty() {
            p { "No snapshots yet: " code { "kindsnap snapshot --from SOURCE" } " takes one." }
        } @else {
            (charts_section(&h.rows))
            (table(&h.rows))
        }
    };
    page::layout("History", body)
}

/// Dates under the columns; times as well when the snapshots span less
/// than three days.
fn axis_labels(rows: &[Row]) -> Vec<String> {
    let span = match (rows.first(), rows.last()) {
        (Some(a), Some(b)) => b.info.time_us - a.info.time_us,
        _ => 0,
    };
    const DAYS_3: i64 = 3 * 86_400 * 1_000_000;
    rows.iter()
        .map(|r| {
            let t = page::time(r.info.time_us);
            if span >= DAYS_3 {
                t[..10].to_string()
            } else {
                t[5..16].to_string()
            }
        })
        .collect()
}

/// Per (namespace, kind): its values over the rows, by `f`.
fn per_kind(rows: &[Row], f: impl Fn(&KindInfo) -> u64) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        for k in &r.kinds {
            let v = out
                .entry(kind_label(&k.namespace, &k.kind))
                .or_insert_with(|| vec![0; rows.len()]);
            v[i] = f(k);
        }
    }
    out
}

/// The `keep` largest series by `score`, and what the rest sum to at the
/// end (how many kinds, how many entities): summed into one line they
/// would dwarf the lines shown.
fn top(
    mut all: Vec<Series>,
    keep: usize,
    score: impl Fn(&Series) -> u64,
) -> (Vec<Series>, usize, u64) {
    all.sort_by_key(|s| std::cmp::Reverse(score(s)));
    if all.len() <= keep {
        return (all, 0, 0);
    }
    let rest = all.split_off(keep);
    let last = rest
        .iter()
        .map(|s| s.values.last().copied().unwrap_or(0))
        .sum();
    (all, rest.len(), last)
}

fn charts_section(rows: &[Row]) -> Markup {
    let labels = axis_labels(rows);
    let max = |s: &Series| s.values.iter().copied().max().unwrap_or(0);
    let entities: Vec<Series> = per_kind(rows, |k| k.entities)
        .into_iter()
        .map(|(label, values)| Series { label, values })
        .collect();
    let (entities, others, others_now) = top(entities, 8, max);
    let entity_titles: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let parts: Vec<String> = entities
                .iter()
                .map(|s| format!("{}: {}", s.label, s.values[i]))
                .collect();
            format!(
                "{} ({})\n{}",
                r.info.name,
                page::time(r.info.time_us),
                parts.join("\n")
            )
        })
        .collect();
    let stored: Vec<u64> = rows
        .iter()
        .map(|r| r.info.bytes_added + r.info.manifest_bytes)
        .collect();
    let stored_titles: Vec<String> = rows
        .iter()
        .zip(&stored)
        .map(|(r, b)| {
            format!(
                "{} ({}): {} stored",
                r.info.name,
                page::time(r.info.time_us),
                bytes(*b)
            )
        })
        .collect();
    html! {
        section.charts {
            h2 { "Entities per kind" }
            (charts::lines(&entities, &labels, &entity_titles))
            ul.legend {
                @for (k, s) in entities.iter().enumerate() {
                    li { (charts::swatch(k)) " " (s.label) " " span.muted { (s.values.last().copied().unwrap_or(0)) } }
                }
                @if others > 0 { li.muted { "and " (others) " smaller kinds (" (others_now) " entities)" } }
            }
            h2 { "Bytes stored per snapshot" }
            p.muted { "What each snapshot added to the repository: new packs and its manifest (tall bars are keyframes and big changes)." }
            (charts::bars(&stored, &labels, &stored_titles, &bytes))
            h2 { "Changed entities per kind" }
            p.muted { "Added, changed and removed entities against the parent snapshot; darker is more (log scale). Hover a cell for the counts." }
            (heat_map(rows, &labels))
        }
    }
}

fn heat_map(rows: &[Row], labels: &[String]) -> Markup {
    // A first snapshot of a source has no parent to differ from: its
    // column stays empty (the table says "first").
    let mut changes = per_kind(rows, |k| k.added + k.changed + k.removed);
    for (i, r) in rows.iter().enumerate() {
        if r.parent.is_none() {
            changes.values_mut().for_each(|v| v[i] = 0);
        }
    }
    let total = |s: &Series| s.values.iter().sum::<u64>();
    let mut series: Vec<Series> = changes
        .into_iter()
        .map(|(label, values)| Series { label, values })
        .filter(|s| total(s) > 0)
        .collect();
    if series.is_empty() {
        return charts::none("no entity has changed yet");
    }
    series.sort_by_key(|s| std::cmp::Reverse(total(s)));
    let shown = series.len().min(20);
    let hidden = series.len() - shown;
    series.truncate(shown);
    let tip = |r: usize, i: usize| {
        let row = &rows[i];
        let label = &series[r].label;
        let k = row
            .kinds
            .iter()
            .find(|k| &kind_label(&k.namespace, &k.kind) == label);
        let (a, c, d) = k
            .map(|k| (k.added, k.changed, k.removed))
            .unwrap_or_default();
        format!(
            "{label} in {} ({}): +{a} ~{c} -{d}",
            row.info.name,
            page::date(row.info.time_us)
        )
    };
    html! {
        (charts::heat(&series, labels, &tip))
        @if hidden > 0 { p.muted { "and " (hidden) " kinds with fewer changes" } }
    }
}

fn table(rows: &[Row]) -> Markup {
    html! {
        h2 { "All snapshots" }
        table.list {
            thead { tr {
                th { "name" } th { "time (UTC)" } th { "source" }
                th.num { "entities" } th.num { "bytes added" } th.num { "changes" } th {}
            } }
            tbody {
                @for r in rows.iter().rev() {
                    @let (a, c, d) = r.kinds.iter().fold((0, 0, 0), |s, k| (s.0 + k.added, s.1 + k.changed, s.2 + k.removed));
                    tr {
                        td {
                            a href=(page::snapshot_url(&r.reference)) { (r.info.name) } " " span.id { (r.info.logical.short()) }
                            @for t in &r.info.tags { " " span.id { "#" (t) } }
                        }
                        td { (page::time(r.info.time_us)) }
                        td.source { (r.info.source) }
                        td.num { (r.info.entities) }
                        td.num { (bytes(r.info.bytes_added + r.info.manifest_bytes)) }
                        td.num {
                            @if r.parent.is_some() {
                                span.add { "+" (a) } " " span.chg { "~" (c) } " " span.del { "-" (d) }
                            } @else { span.muted { "first" } }
                        }
                        td {
                            @if let Some(p) = &r.parent {
                                a href=(page::url("/diff", &[("from", p), ("to", &r.reference)])) { "diff" }
                            }
                        }
                    }
                }
            }
        }
    }
}
