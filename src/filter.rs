//! Which kinds a snapshot takes: `--kinds`, `.snapshotignore` rules
//! (gitignore syntax over `namespace/Kind` paths, the default namespace
//! being the top level), and always-skipped internal `__…__` kinds.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Default)]
pub struct KindFilter {
    kinds: Option<HashSet<String>>,
    ignore: Option<Gitignore>,
    /// The ignore files that were read, for messages.
    pub ignore_files: Vec<PathBuf>,
}

impl KindFilter {
    /// `kinds`: only these kinds (any namespace), if given. `ignore_files`:
    /// read those that exist; `required` ones must exist.
    pub fn new(
        kinds: Option<&[String]>,
        ignore_files: &[PathBuf],
        required: &[PathBuf],
    ) -> Result<KindFilter> {
        let mut builder = GitignoreBuilder::new("");
        let mut used = Vec::new();
        for p in required {
            if !p.is_file() {
                return Err(Error::BadIgnore {
                    path: p.clone(),
                    why: "no such file".into(),
                });
            }
        }
        for p in ignore_files.iter().chain(required) {
            if p.is_file() {
                if let Some(e) = builder.add(p) {
                    return Err(Error::BadIgnore {
                        path: p.clone(),
                        why: e.to_string(),
                    });
                }
                used.push(p.clone());
            }
        }
        let ignore = if used.is_empty() {
            None
        } else {
            Some(builder.build().map_err(|e| Error::BadIgnore {
                path: used[0].clone(),
                why: e.to_string(),
            })?)
        };
        Ok(KindFilter {
            kinds: kinds.map(|k| k.iter().cloned().collect()),
            ignore,
            ignore_files: used,
        })
    }

    /// Internal Datastore kinds (`__kind__`, `__Stat_Total__` …) are never
    /// snapshotted.
    pub fn is_internal(kind: &str) -> bool {
        kind.starts_with("__") && kind.ends_with("__") && kind.len() >= 4
    }

    pub fn allows(&self, namespace: &str, kind: &str) -> bool {
        if Self::is_internal(kind) {
            return false;
        }
        // `--kinds` chooses tables; a SQL source writes the schema of the
        // chosen ones only, and a restore needs it (docs/sql.md).
        if let Some(k) = &self.kinds {
            if !k.contains(kind) && kind != crate::connector::sql::SCHEMA_KIND {
                return false;
            }
        }
        if let Some(gi) = &self.ignore {
            let path = if namespace.is_empty() {
                kind.to_string()
            } else {
                format!("{namespace}/{kind}")
            };
            if gi
                .matched_path_or_any_parents(Path::new(&path), false)
                .is_ignore()
            {
                return false;
            }
        }
        true
    }

    /// The `--kinds` list as stored in a manifest (sorted, comma-separated;
    /// empty for "all").
    pub fn kinds_key(&self) -> String {
        let mut v: Vec<&String> = self.kinds.iter().flatten().collect();
        v.sort();
        v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitignore_rules_over_namespace_paths() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(".snapshotignore");
        std::fs::write(&f, "/_*\nSession\ntenant2/\n!tenant2/Keep\n").unwrap();
        let filter = KindFilter::new(None, &[f], &[]).unwrap();
        assert!(!filter.allows("", "_Internal"));
        assert!(filter.allows("tenant1", "_Internal"));
        assert!(!filter.allows("", "Session"));
        assert!(!filter.allows("tenant1", "Session"));
        assert!(!filter.allows("tenant2", "Post"));
        assert!(filter.allows("", "Post"));
        assert!(!filter.allows("", "__kind__"));
    }

    #[test]
    fn kinds_list() {
        let filter = KindFilter::new(Some(&["B".into(), "A".into()]), &[], &[]).unwrap();
        assert!(filter.allows("x", "A"));
        assert!(!filter.allows("", "C"));
        assert_eq!(filter.kinds_key(), "A,B");
    }
}
