//! No command exits 0 with entities missing. Bits are flipped through the
//! manifests of a four-snapshot chain (header and database alike) and
//! entries of the index are edited; every export then either fails or
//! gives exactly what it gave before, and `check --read-data` finds every
//! index edit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{Data, Rng, Work};
use rusqlite::Connection;

/// A repository with four snapshots (the last three deltas), and each
/// snapshot's export as bytes.
fn chain(w: &Work) -> Vec<(String, Vec<u8>)> {
    w.init();
    let mut data = Data::generate(3_000, 7);
    let mut out = Vec::new();
    for day in 1..=4u64 {
        if day > 1 {
            data.mutate(day, 60, 20, 30);
        }
        data.write_sorted(&w.path("cur.jsonl"));
        let name = format!("day{day}");
        w.ok(&[
            "snapshot",
            "--from",
            "jsonl:cur.jsonl",
            "--name",
            &name,
            "-q",
        ]);
        out.push((name.clone(), export_bytes(w, &name).expect("export")));
    }
    out
}

fn export_bytes(w: &Work, snap: &str) -> Option<Vec<u8>> {
    let file = w.path(&format!("x-{snap}.jsonl"));
    let _ = std::fs::remove_file(&file);
    let out = w.run(&["export", snap, "--to", &format!("jsonl:{}", file.display())]);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        // Mostly "snapshot … is damaged"; a flip in a header's name makes
        // the name unknown instead ("not found").
        assert!(
            err.lines().count() == 1 && (err.contains("damaged") || err.contains("not found")),
            "a failed export says what is wrong, on one line: {err}"
        );
        return None;
    }
    Some(std::fs::read(&file).unwrap())
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn a_flipped_bit_in_any_manifest_never_gives_partial_data() {
    let w = Work::new();
    let baseline = chain(&w);
    let manifests = files_in(&w.repo().join("snapshots"));
    assert_eq!(manifests.len(), 4);
    let mut rng = Rng::new(11);
    let (mut failed, mut intact) = (0, 0);
    for path in &manifests {
        let original = std::fs::read(path).unwrap();
        // The header (kind names, counts, digests, parent) and the
        // database behind it.
        let header_end = 12 + u32::from_le_bytes(original[8..12].try_into().unwrap()) as u64;
        let mut positions: Vec<u64> = (0..6).map(|_| 12 + rng.below(header_end - 12)).collect();
        positions
            .extend((0..6).map(|_| header_end + rng.below(original.len() as u64 - header_end)));
        for pos in positions {
            let mut bytes = original.clone();
            bytes[pos as usize] ^= 1 << rng.below(8);
            std::fs::write(path, &bytes).unwrap();
            for (name, want) in &baseline {
                match export_bytes(&w, name) {
                    None => failed += 1,
                    Some(got) => {
                        assert!(
                            &got == want,
                            "export of {name} exited 0 with other data after a flip at byte {pos} of {}",
                            path.display()
                        );
                        intact += 1;
                    }
                }
            }
        }
        std::fs::write(path, &original).unwrap();
    }
    // Every snapshot depends on day1's keyframe: most flips fail an export.
    assert!(failed > 0 && intact > 0, "failed {failed}, intact {intact}");
    for (name, want) in &baseline {
        assert_eq!(export_bytes(&w, name).as_ref(), Some(want), "{name}");
    }
}

#[test]
fn check_read_data_finds_every_edit_of_the_index() {
    let w = Work::new();
    let baseline = chain(&w);
    let index = w.repo().join("index").join("index.db");
    let saved = std::fs::read(&index).unwrap();
    let edits = [
        "UPDATE blocks SET off = off + 1 WHERE bid = (SELECT min(bid) FROM blocks)",
        "UPDATE blocks SET clen = clen - 1 WHERE bid = (SELECT max(bid) FROM blocks)",
        "UPDATE blocks SET raw = raw + 7 WHERE bid = (SELECT min(bid) FROM blocks)",
        "UPDATE entities SET off = off + 1 WHERE hash = (SELECT max(hash) FROM entities)",
        "UPDATE entities SET len = len - 1 WHERE hash = (SELECT min(hash) FROM entities)",
        "UPDATE entities SET bid = (SELECT max(bid) FROM blocks) \
         WHERE hash = (SELECT min(hash) FROM entities WHERE bid <> (SELECT max(bid) FROM blocks))",
        "UPDATE blocks SET pid = (SELECT max(pid) FROM packs) \
         WHERE bid = (SELECT min(bid) FROM blocks WHERE pid <> (SELECT max(pid) FROM packs))",
    ];
    for edit in edits {
        std::fs::write(&index, &saved).unwrap();
        let c = Connection::open(&index).unwrap();
        assert_eq!(c.execute(edit, []).unwrap(), 1, "{edit}");
        drop(c);
        let out = w.run(&["check", "--read-data"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(3), "{edit}: {stdout}");
        assert!(stdout.contains("--rebuild-index"), "{edit}: {stdout}");
        // Whatever the export does, it does not exit 0 with other data.
        for (name, want) in &baseline {
            if let Some(got) = export_bytes(&w, name) {
                assert!(&got == want, "{edit}: export of {name} differs");
            }
        }
        // The rebuilt index makes everything whole again.
        w.ok(&["check", "--rebuild-index"]);
        w.ok(&["check", "--read-data"]);
    }
    for (name, want) in &baseline {
        assert_eq!(export_bytes(&w, name).as_ref(), Some(want), "{name}");
    }
}
