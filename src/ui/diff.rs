//! `/diff?from=A&to=B[&kind=K][&ns=N][&page=P]`: what `kindsnap diff
//! --json` answers, on screen. Per-kind counts (equal digests skip a
//! kind, adjacent snapshots read change rows: `ops::diff`), the first keys
//! of each kind, and with `kind` one page of its keys with each changed
//! entity's properties old → new side by side.

use axum::extract::{Query, State};
use maud::{html, Markup};
use serde::Deserialize;

use kindsnap::ops::diff::{self as d, Change, DiffEntry, KindDiff, PropChange};
use kindsnap::repo::manifest::{self, SnapshotInfo};
use kindsnap::repo::store::Store;
use kindsnap::repo::Repository;

use super::page::{self, kind_label};
use super::{App, PageError};

/// Keys on one page of a kind.
const PAGE: usize = 50;
/// Keys shown per kind on the overview (no `kind`).
const PREVIEW: usize = 10;
/// Kinds previewed on the overview.
const PREVIEW_KINDS: usize = 12;

#[derive(Debug, Deserialize)]
pub struct Params {
    from: Option<String>,
    to: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    ns: String,
    page: Option<String>,
}

/// One differing key, with its property changes when it changed.
struct Item {
    entry: DiffEntry,
    properties: Vec<PropChange>,
}

/// The keys shown for one kind.
struct KindPage {
    kind: KindDiff,
    items: Vec<Item>,
    more: bool,
}

struct Diff {
    snapshots: Vec<SnapshotInfo>,
    a: SnapshotInfo,
    b: SnapshotInfo,
    kinds: Vec<KindDiff>,
    pages: Vec<KindPage>,
}

pub async fn page(State(app): State<App>, Query(p): Query<Params>) -> Result<Markup, PageError> {
    let page_no: u64 = match p.page.as_deref().filter(|s| !s.is_empty()) {
        None => 1,
        Some(s) => s.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
            PageError::bad_request(format!("page `{s}`: give a page number, 1 or more"))
        })?,
    };
    let kind = p.kind.clone().filter(|k| !k.is_empty());
    let (from, to, ns) = (p.from.clone(), p.to.clone(), p.ns.clone());
    let want = kind.clone();
    let diff = app
        .read(move |o| gather(&o.repo, from, to, want.as_deref(), &ns, page_no))
        .await?;
    let Some(diff) = diff else {
        return Ok(page::layout(
            "Diff",
            html! {
                h1 { "Diff" }
                p { "The repository has no two snapshots to compare yet." }
            },
        ));
    };
    Ok(render(&diff, kind.as_deref(), &p.ns, page_no))
}

/// `to` defaults to `latest`, `from` to its parent (or the snapshot
/// before it). None when there is nothing to compare.
fn resolve(
    infos: &[SnapshotInfo],
    from: Option<String>,
    to: Option<String>,
) -> Result<Option<(SnapshotInfo, SnapshotInfo)>, PageError> {
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let b = manifest::resolve(infos, nonempty(to).as_deref().unwrap_or("latest"));
    let b = match b {
        Ok(b) => b,
        Err(_) if infos.is_empty() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if let Some(f) = nonempty(from) {
        return Ok(Some((manifest::resolve(infos, &f)?, b)));
    }
    let parent = b
        .parent
        .and_then(|p| {
            kindsnap::repo::manifest::logical_ids(infos)
                .get(&p)
                .copied()
        })
        .and_then(|p| infos.iter().find(|i| i.logical == p));
    let before = infos.iter().rev().skip_while(|i| i.id != b.id).nth(1);
    Ok(parent.or(before).map(|a| (a.clone(), b)))
}

fn gather(
    repo: &Repository,
    from: Option<String>,
    to: Option<String>,
    kind: Option<&str>,
    ns: &str,
    page_no: u64,
) -> Result<Option<Diff>, PageError> {
    let (snapshots, _) = manifest::list(repo)?;
    let Some((a, b)) = resolve(&snapshots, from, to)? else {
        return Ok(None);
    };
    let opts = d::DiffOptions {
        kinds: kind.map(|k| vec![k.to_string()]),
        entries: false,
    };
    let (kinds, _) = d::diff(repo, &a, &b, &opts, &mut |_, _| Ok(()))?;
    let store = Store::open(repo)?;
    let mut pages = Vec::new();
    match kind {
        Some(k) => {
            if let Some(kd) = kinds.iter().find(|x| x.kind == k && x.namespace == ns) {
                let skip = (page_no - 1) * PAGE as u64;
                pages.push(kind_page(repo, &store, &a, &b, kd, skip, PAGE)?);
            }
        }
        None => {
            for kd in kinds.iter().take(PREVIEW_KINDS) {
                pages.push(kind_page(repo, &store, &a, &b, kd, 0, PREVIEW)?);
            }
        }
    }
    Ok(Some(Diff {
        snapshots,
        a,
        b,
        kinds,
        pages,
    }))
}

fn kind_page(
    repo: &Repository,
    store: &Store,
    a: &SnapshotInfo,
    b: &SnapshotInfo,
    kd: &KindDiff,
    skip: u64,
    take: usize,
) -> Result<KindPage, PageError> {
    let (entries, more) = d::entries_page(repo, a, b, &kd.namespace, &kd.kind, skip, take)?;
    let mut items = Vec::with_capacity(entries.len());
    for entry in entries {
        let properties = match (entry.change, entry.old, entry.new) {
            (Change::Changed, Some(o), Some(n)) => {
                d::diff_properties(&store.get(&o)?, &store.get(&n)?)
            }
            _ => Vec::new(),
        };
        items.push(Item { entry, properties });
    }
    Ok(KindPage {
        kind: kd.clone(),
        items,
        more,
    })
}

fn render(diff: &Diff, kind: Option<&str>, ns: &str, page_no: u64) -> Markup {
    let ra = page::reference(&diff.a, &diff.snapshots);
    let rb = page::reference(&diff.b, &diff.snapshots);
    let (ad, re, ch) = diff.kinds.iter().fold((0, 0, 0), |s, k| {
        (s.0 + k.added, s.1 + k.removed, s.2 + k.changed)
    });
    let body = html! {
        h1 { "Diff " a href=(page::snapshot_url(&ra)) { (diff.a.name) } " → " a href=(page::snapshot_url(&rb)) { (diff.b.name) } }
        p.muted {
            (page::time(diff.a.time_us)) " → " (page::time(diff.b.time_us))
            " · " a href=(page::url("/diff", &[("from", &rb), ("to", &ra)])) { "swap" }
        }
        (form(diff, &ra, &rb, kind))
        @if diff.kinds.is_empty() {
            p.same { "No differences" @if let Some(k) = kind { " in kind " code { (k) } } "." }
        } @else {
            p { (diff.kinds.len()) " kind" @if diff.kinds.len() != 1 { "s" } " differ: "
                span.add { (ad) " added" } ", " span.del { (re) " removed" } ", " span.chg { (ch) " changed" } }
            (counts(diff, &ra, &rb, kind, ns))
            @for p in &diff.pages { (kind_section(p, &ra, &rb, kind.is_some(), page_no)) }
            @if kind.is_none() && diff.kinds.len() > diff.pages.len() {
                p.muted { "Open a kind in the table above to see its keys." }
            }
        }
    };
    page::layout(&format!("Diff {} → {}", diff.a.name, diff.b.name), body)
}

fn form(diff: &Diff, ra: &str, rb: &str, kind: Option<&str>) -> Markup {
    let options = |chosen: &str| {
        html! {
            @for s in diff.snapshots.iter().rev() {
                @let r = page::reference(s, &diff.snapshots);
                option value=(r) selected[r == chosen] { (s.name) " · " (page::time(s.time_us)) }
            }
        }
    };
    html! {
        form.pick method="get" action="/diff" {
            label { "from " select name="from" { (options(ra)) } }
            label { " to " select name="to" { (options(rb)) } }
            label { " kind " input type="text" name="kind" value=(kind.unwrap_or("")) placeholder="all kinds"; }
            " " button type="submit" { "Compare" }
        }
    }
}

fn counts(diff: &Diff, ra: &str, rb: &str, kind: Option<&str>, ns: &str) -> Markup {
    html! {
        table.list {
            thead { tr { th { "kind" } th.num { "added" } th.num { "removed" } th.num { "changed" } th.num { "entities in " (diff.b.name) } } }
            tbody {
                @for k in &diff.kinds {
                    @let open = kind == Some(k.kind.as_str()) && ns == k.namespace;
                    tr class=[open.then_some("open")] {
                        td { a href=(kind_url(ra, rb, k, 1)) { (kind_label(&k.namespace, &k.kind)) } }
                        td.num { span class=[(k.added > 0).then_some("add")] { "+" (k.added) } }
                        td.num { span class=[(k.removed > 0).then_some("del")] { "-" (k.removed) } }
                        td.num { span class=[(k.changed > 0).then_some("chg")] { "~" (k.changed) } }
                        td.num { (k.entities) }
                    }
                }
            }
        }
    }
}

fn kind_url(ra: &str, rb: &str, k: &KindDiff, page_no: u64) -> String {
    let page_s = page_no.to_string();
    let mut pairs = vec![("from", ra), ("to", rb), ("kind", k.kind.as_str())];
    if !k.namespace.is_empty() {
        pairs.push(("ns", k.namespace.as_str()));
    }
    if page_no > 1 {
        pairs.push(("page", &page_s));
    }
    page::url("/diff", &pairs)
}

fn kind_section(p: &KindPage, ra: &str, rb: &str, opened: bool, page_no: u64) -> Markup {
    let k = &p.kind;
    let total = k.added + k.removed + k.changed;
    let pages = total.div_ceil(PAGE as u64).max(1);
    html! {
        section.kind {
            h2 {
                (kind_label(&k.namespace, &k.kind))
                span.muted { " · " (total) " differing key" @if total != 1 { "s" } }
                @if opened { span.muted { " · page " (page_no) " of " (pages) } }
            }
            ul.entries {
                @for it in &p.items { (item(it, &k.namespace, ra, rb)) }
            }
            @if opened {
                nav.pager {
                    @if page_no > 1 { a rel="prev" href=(kind_url(ra, rb, k, page_no - 1)) { "← previous" } }
                    @if p.more { a rel="next" href=(kind_url(ra, rb, k, page_no + 1)) { "next →" } }
                }
            } @else if p.more {
                p { a href=(kind_url(ra, rb, k, 1)) { "all " (total) " keys of " (k.kind) " →" } }
            }
        }
    }
}

fn item(it: &Item, ns: &str, ra: &str, rb: &str) -> Markup {
    let key = page::key_text(&it.entry.key);
    let (mark, class, snap) = match it.entry.change {
        Change::Added => ("+", "add", rb),
        Change::Removed => ("-", "del", ra),
        Change::Changed => ("~", "chg", rb),
    };
    html! {
        li {
            span class=(class) { (mark) } " "
            a.key href=(page::entity_url(snap, ns, &key)) { (key) }
            @if !it.properties.is_empty() {
                table.props {
                    thead { tr { th { "property" } th { "old (" (ra) ")" } th { "new (" (rb) ")" } } }
                    tbody {
                        @for pc in &it.properties {
                            tr {
                                th { (pc.name) }
                                td.old { @match &pc.old { Some(v) => (page::value(v, ra)), None => span.null { "(absent)" } } }
                                td.new { @match &pc.new { Some(v) => (page::value(v, rb)), None => span.null { "(absent)" } } }
                            }
                        }
                    }
                }
            }
        }
    }
}
