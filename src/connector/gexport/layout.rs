//! What a managed export's folder holds, found by listing it:
//!
//! ```text
//! 2026-11-20T03:00:00_12345/
//!   2026-11-20T03:00:00_12345.overall_export_metadata
//!   all_namespaces/all_kinds/all_namespaces_all_kinds.export_metadata
//!   all_namespaces/all_kinds/output-0 … output-N
//! ```
//!
//! or, for an export filtered by kind or namespace, one folder per
//! (namespace, kind): `all_namespaces/kind_Order/`, `default_namespace/…`,
//! `namespace_shop/kind_Order/`. Data files are the `output-N` of folders
//! that hold an `.export_metadata` file (Google writes it when the folder
//! is complete). Every metadata file's checksums are verified; the data
//! files' records are found by reading them, not from the metadata, so a
//! change in the metadata's undocumented fields cannot hide data.

use super::files::Folder;
use super::log::{LogError, LogReader};
use crate::error::{Error, Result};
use crate::net::Timeouts;

pub const OVERALL_SUFFIX: &str = ".overall_export_metadata";
pub const FOLDER_SUFFIX: &str = ".export_metadata";

/// A resolved export.
pub struct Export {
    pub folder: Folder,
    pub files: Vec<DataFile>,
    /// Where the dated exports of this series live: the folder's parent.
    pub series: String,
    /// The entity filter the export was taken with, from its folder names
    /// (`kinds=Order,User namespaces=-,shop`); empty for a full export.
    pub filter: String,
}

#[derive(Debug, Clone)]
pub struct DataFile {
    pub rel: String,
    pub size: u64,
}

fn bad(location: &str, why: impl Into<String>) -> Error {
    Error::BadLocation {
        spec: format!("datastore-export:{location}"),
        why: why.into(),
    }
}

/// Find the export at `location`: its folder or its overall metadata file.
pub fn resolve(location: &str, timeouts: &Timeouts) -> Result<Export> {
    let location = location.trim_end_matches('/');
    if location.is_empty() {
        return Err(bad(
            location,
            "give the export's folder or its .overall_export_metadata file",
        ));
    }
    let (dir, named) = match location.strip_suffix(OVERALL_SUFFIX) {
        Some(_) => match location.rsplit_once('/') {
            Some((dir, file)) => (dir.to_string(), Some(file.to_string())),
            None => (".".to_string(), Some(location.to_string())),
        },
        None => (location.to_string(), None),
    };
    let folder = Folder::open(&dir, timeouts)?;
    if let Folder::Local(p) = &folder {
        if !p.is_dir() {
            return Err(bad(location, "no such folder"));
        }
    }
    let listing = folder.list()?;
    let metadata = match named {
        Some(name) => {
            if !listing.iter().any(|(rel, _)| rel == &name) {
                return Err(bad(location, "no such file"));
            }
            name
        }
        None => find_overall(location, &listing)?,
    };
    verify_log(&folder, &metadata)?;
    let files = data_files(&folder, &listing)?;
    let series = match &folder {
        Folder::Local(p) => {
            let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            abs.parent().unwrap_or(&abs).display().to_string()
        }
        Folder::Remote(r) => {
            let url = r.url();
            let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
            match rest.rsplit_once('/') {
                Some((parent, _)) => format!("{}://{parent}", &url[..url.len() - rest.len() - 3]),
                None => url.to_string(),
            }
        }
    };
    let filter = filter_of(&files);
    Ok(Export {
        folder,
        files,
        series,
        filter,
    })
}

fn find_overall(location: &str, listing: &[(String, u64)]) -> Result<String> {
    let top: Vec<&String> = listing
        .iter()
        .map(|(rel, _)| rel)
        .filter(|rel| !rel.contains('/') && rel.ends_with(OVERALL_SUFFIX))
        .collect();
    match top.as_slice() {
        [one] => Ok(one.to_string()),
        [] => {
            let nested: Vec<String> = listing
                .iter()
                .filter_map(|(rel, _)| {
                    let (dir, file) = rel.rsplit_once('/')?;
                    (file.ends_with(OVERALL_SUFFIX) && !dir.contains('/')).then(|| dir.to_string())
                })
                .collect();
            Err(match nested.first() {
                Some(first) => bad(
                    location,
                    format!(
                        "this folder holds {} exports, not one; name one, as in `datastore-export:{location}/{first}` (docs/guide.md loops over them)",
                        nested.len()
                    ),
                ),
                None => bad(
                    location,
                    "no DATE.overall_export_metadata here; give the folder `gcloud datastore export` wrote, or its .overall_export_metadata file",
                ),
            })
        }
        many => Err(bad(
            location,
            format!(
                "{} .overall_export_metadata files here; name one of them",
                many.len()
            ),
        )),
    }
}

/// Read a metadata file through, checking every checksum.
fn verify_log(folder: &Folder, rel: &str) -> Result<()> {
    let bytes = folder.read_all(rel)?;
    let mut r = LogReader::new(bytes.as_slice());
    let mut records = 0;
    loop {
        match r.next_record() {
            Ok(Some(_)) => records += 1,
            Ok(None) if records > 0 => return Ok(()),
            Ok(None) => {
                return Err(Error::ExportData {
                    file: folder.show(rel),
                    offset: 0,
                    message:
                        "the metadata file is empty; the export did not finish (take it again)"
                            .into(),
                })
            }
            Err(LogError::Io(e)) => return Err(Error::io("reading", folder.show(rel))(e)),
            Err(LogError::Damaged { offset, why }) => {
                return Err(Error::ExportData {
                    file: folder.show(rel),
                    offset,
                    message: format!("{why}; the metadata file is damaged (take the export again)"),
                })
            }
        }
    }
}

/// The `output-N` files of every folder that holds an `.export_metadata`,
/// folder by folder, by N.
fn data_files(folder: &Folder, listing: &[(String, u64)]) -> Result<Vec<DataFile>> {
    let mut dirs = std::collections::BTreeSet::new();
    for (rel, _) in listing {
        if let Some((dir, file)) = rel.rsplit_once('/') {
            if file.ends_with(FOLDER_SUFFIX) && !file.ends_with(OVERALL_SUFFIX) {
                verify_log(folder, rel)?;
                dirs.insert(dir.to_string());
            }
        }
    }
    let mut files: Vec<(String, u64, String, u64)> = Vec::new();
    for (rel, size) in listing {
        let Some((dir, file)) = rel.rsplit_once('/') else {
            continue;
        };
        let Some(n) = file
            .strip_prefix("output-")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if !dirs.contains(dir) {
            return Err(Error::ExportData {
                file: folder.show(rel),
                offset: 0,
                message: format!(
                    "its folder has no {FOLDER_SUFFIX} file: the export did not finish; take it again"
                ),
            });
        }
        files.push((dir.to_string(), n, rel.clone(), *size));
    }
    files.sort();
    Ok(files
        .into_iter()
        .map(|(_, _, rel, size)| DataFile { rel, size })
        .collect())
}

/// `kinds=… namespaces=…` from the folder names of a filtered export.
fn filter_of(files: &[DataFile]) -> String {
    let mut kinds = std::collections::BTreeSet::new();
    let mut namespaces = std::collections::BTreeSet::new();
    for f in files {
        let mut parts = f.rel.split('/');
        let (Some(ns), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match ns {
            "all_namespaces" => {}
            "default_namespace" => {
                namespaces.insert("-".to_string());
            }
            other => {
                namespaces.insert(
                    other
                        .strip_prefix("namespace_")
                        .unwrap_or(other)
                        .to_string(),
                );
            }
        }
        if let Some(k) = kind.strip_prefix("kind_") {
            kinds.insert(k.to_string());
        }
    }
    let mut out = Vec::new();
    if !kinds.is_empty() {
        out.push(format!(
            "kinds={}",
            kinds.into_iter().collect::<Vec<_>>().join(",")
        ));
    }
    if !namespaces.is_empty() {
        out.push(format!(
            "namespaces={}",
            namespaces.into_iter().collect::<Vec<_>>().join(",")
        ));
    }
    out.join(" ")
}
