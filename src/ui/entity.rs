//! `/entity?snapshot=S&key=K[&ns=N]`: one entity as a table (type,
//! indexed flag, value; keys link to their entities) and its history, as
//! `kindsnap log --key` gives it (`ops::history`).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;

use kindsnap::model::key::{self, PartitionId};
use kindsnap::model::Entity;
use kindsnap::ops::diff::Change;
use kindsnap::ops::history::{entity_history, EntityHistory};
use kindsnap::repo::manifest::{self, SnapshotInfo};
use kindsnap::repo::Repository;

use super::page::{self, kind_label};
use super::{App, PageError};

#[derive(Debug, Deserialize)]
pub struct Params {
    snapshot: Option<String>,
    key: Option<String>,
    #[serde(default)]
    ns: String,
}

struct View {
    snapshots: Vec<SnapshotInfo>,
    snapshot: SnapshotInfo,
    /// None: the key is not in the snapshot.
    entity: Option<Entity>,
    history: EntityHistory,
}

pub async fn page(State(app): State<App>, Query(p): Query<Params>) -> Result<Response, PageError> {
    let Some(key_text) = p.key.clone().filter(|k| !k.trim().is_empty()) else {
        return Ok(ask(p.snapshot.as_deref()).into_response());
    };
    let spec = p
        .snapshot
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "latest".into());
    let ns = p.ns.clone();
    let v = app
        .read(move |o| gather(&o.repo, &spec, &ns, &key_text))
        .await?;
    let status = if v.entity.is_some() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    Ok((status, render(&v, &p.ns)).into_response())
}

fn gather(repo: &Repository, spec: &str, ns: &str, key_text: &str) -> Result<View, PageError> {
    let (snapshots, _) = manifest::list(repo)?;
    let snapshot = manifest::resolve(&snapshots, spec)?;
    // The history first: it also says whether the kind exists at all.
    let history = entity_history(repo, ns, key_text)?;
    let entity = match kindsnap::ops::read::cat(repo, &snapshot.id.to_hex(), ns, key_text) {
        Ok((_, e)) => Some(e),
        Err(kindsnap::Error::NotFound { .. } | kindsnap::Error::UnknownKind { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(View {
        snapshots,
        snapshot,
        entity,
        history,
    })
}

/// The page without a key: a form that asks for one.
fn ask(snapshot: Option<&str>) -> Markup {
    page::layout(
        "Entity",
        html! {
            h1 { "Entity" }
            (lookup_form(snapshot.unwrap_or("latest"), "", ""))
        },
    )
}

fn lookup_form(snapshot: &str, ns: &str, key_text: &str) -> Markup {
    html! {
        form.pick method="get" action="/entity" {
            input type="hidden" name="snapshot" value=(snapshot);
            label { "key " input type="text" name="key" value=(key_text) placeholder="User:alice/Post:7" required; }
            label { " namespace " input type="text" name="ns" value=(ns) placeholder="(default)"; }
            " " button type="submit" { "Show" }
        }
    }
}

fn render(v: &View, ns: &str) -> Markup {
    let sref = page::reference(&v.snapshot, &v.snapshots);
    let title = format!("{} in {}", v.history.key, v.snapshot.name);
    let body = html! {
        h1 { (kind_label(ns, &v.history.key)) }
        p.muted {
            "in snapshot " a href=(page::snapshot_url(&sref)) { (v.snapshot.name) }
            " · " (page::time(v.snapshot.time_us))
            @if !ns.is_empty() { " · namespace " code { (ns) } }
        }
        (ancestors(&v.history.key, ns, &sref))
        @match &v.entity {
            Some(e) => (properties(e, &sref)),
            None => p.error { "Snapshot " (v.snapshot.name) " does not hold this key." },
        }
        (history(v))
        h2 { "Another key" }
        (lookup_form(&sref, ns, ""))
    };
    page::layout(&title, body)
}

/// Links to the entity's ancestors (`User:alice` for `User:alice/Post:7`).
fn ancestors(key_text: &str, ns: &str, sref: &str) -> Markup {
    let Ok(path) = key::parse_path(key_text) else {
        return html! {};
    };
    let partition = PartitionId {
        namespace: ns.to_string(),
        ..Default::default()
    };
    html! {
        @if path.len() > 1 {
            p { "Ancestors: "
                @for n in 1..path.len() {
                    @if n > 1 { " / " }
                    (page::key_link(&partition, &key::display_path(&path[..n]), sref))
                }
            }
        }
    }
}

fn properties(e: &Entity, sref: &str) -> Markup {
    html! {
        h2 { "Properties" }
        @if e.properties.is_empty() { p.muted { "(no properties)" } }
        @else {
            table.props.entity {
                thead { tr { th { "property" } th { "type" } th { "indexed" } th { "value" } } }
                tbody {
                    @for (name, v) in &e.properties {
                        tr {
                            th { (name) }
                            td.type { (v.type_name()) }
                            td { @if v.exclude_from_indexes { "no" } @else { "yes" } }
                            td { (page::value(v, sref)) }
                        }
                    }
                }
            }
        }
    }
}

fn history(v: &View) -> Markup {
    let ns = &v.history.namespace;
    let events = &v.history.events;
    html! {
        h2 { "History" }
        @if events.is_empty() { p.muted { "No snapshot holds this key." } }
        @else {
            p.muted { "Every snapshot in which it was added, changed or removed, newest first." }
            ol.history {
                @for e in events.iter().rev() {
                    @let r = page::reference(&e.snapshot, &v.snapshots);
                    @let parent = e.parent.and_then(|p| v.snapshots.iter().find(|s| s.logical == p));
                    @let (class, what) = match e.change {
                        Change::Added => ("add", "added"),
                        Change::Removed => ("del", "removed"),
                        Change::Changed => ("chg", "changed"),
                    };
                    li {
                        span class=(class) { (what) } " in "
                        a href=(page::entity_url(&r, ns, &v.history.key)) { (e.snapshot.name) }
                        span.muted { " · " (page::time(e.snapshot.time_us)) " · " (e.snapshot.source) }
                        @let pr = parent.map(|p| page::reference(p, &v.snapshots));
                        @if let (Some(p), Some(pr)) = (parent, &pr) {
                            " · " a href=(diff_url(pr, &r, &v.history.kind, ns)) { "diff against " (p.name) }
                        }
                        @let old_ref = pr.as_deref().unwrap_or(&r);
                        @if !e.properties.is_empty() {
                            table.props {
                                thead { tr { th { "property" } th { "old" } th { "new" } } }
                                tbody {
                                    @for pc in &e.properties {
                                        tr {
                                            th { (pc.name) }
                                            td.old { @match &pc.old { Some(x) => (page::value(x, old_ref)), None => span.null { "(absent)" } } }
                                            td.new { @match &pc.new { Some(x) => (page::value(x, &r)), None => span.null { "(absent)" } } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn diff_url(from: &str, to: &str, kind: &str, ns: &str) -> String {
    let mut pairs = vec![("from", from), ("to", to), ("kind", kind)];
    if !ns.is_empty() {
        pairs.push(("ns", ns));
    }
    page::url("/diff", &pairs)
}
