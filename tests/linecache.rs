//! The JSON Lines line cache: a daily snapshot parses only the lines that
//! changed since its parent, and is the very snapshot a full read makes.
//! Stale, damaged or lying caches never make a snapshot wrong.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use common::{Data, Work};

/// Two repositories fed the same files: one with the cache, one without.
struct Pair {
    cached: Work,
    full: Work,
}

impl Pair {
    fn new() -> Pair {
        let p = Pair {
            cached: Work::new(),
            full: Work::new(),
        };
        p.cached.init();
        p.full.init();
        p
    }

    /// Snapshot `text` as `name` in both; returns the lines the cached
    /// run took from its cache.
    fn snapshot(&self, text: &str, name: &str) -> u64 {
        std::fs::write(self.cached.path("cur.jsonl"), text).unwrap();
        std::fs::write(self.full.path("cur.jsonl"), text).unwrap();
        self.full.ok(&[
            "snapshot",
            "--no-cache",
            "--from",
            "jsonl:cur.jsonl",
            "--name",
            name,
        ]);
        let hits = cached_snapshot(&self.cached, name);
        self.same(name);
        hits
    }

    /// Both repositories hold the same snapshot `name`, byte for byte.
    fn same(&self, name: &str) {
        let export = |w: &Work| {
            let to = w.path("export.jsonl");
            w.ok(&["export", name, "--to", &format!("jsonl:{}", to.display())]);
            std::fs::read(&to).unwrap()
        };
        assert!(
            export(&self.cached) == export(&self.full),
            "snapshot {name} differs between the cached and the full read"
        );
        let show = |w: &Work| {
            let s = w.ok(&["show", name]);
            s.lines()
                .filter(|l| {
                    !l.starts_with("snapshot")
                        && !l.starts_with("source")
                        && !l.starts_with("time")
                        && !l.starts_with("parent")
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(show(&self.cached), show(&self.full), "show {name}");
        let diff = |w: &Work| w.ok(&["diff", "latest~1", "latest", "--keys"]);
        if name != "d1" {
            assert_eq!(diff(&self.cached), diff(&self.full), "diff to {name}");
        }
    }

    fn cache_file(&self) -> std::path::PathBuf {
        let lines = self.cached.cache_dir().join("lines");
        let repo = std::fs::read_dir(&lines)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let files: Vec<_> = std::fs::read_dir(&repo)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        assert_eq!(files.len(), 1, "one cache file per source: {files:?}");
        files[0].clone()
    }
}

/// `snapshot --from jsonl:cur.jsonl --name NAME` with the cache; returns
/// the lines it took from the cache (its `-vv` report).
fn cached_snapshot(w: &Work, name: &str) -> u64 {
    let out = w
        .ks()
        .args([
            "-vv",
            "snapshot",
            "--from",
            "jsonl:cur.jsonl",
            "--name",
            name,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "snapshot {name}: {stderr}");
    hits(&stderr)
}

fn hits(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| {
            let rest = l.split("line cache: ").nth(1)?;
            rest.split(' ').next()?.parse().ok()
        })
        .unwrap_or(0)
}

fn text(data: &Data, path: &std::path::Path, shuffled: Option<u64>) -> String {
    match shuffled {
        Some(seed) => data.write_shuffled(path, seed),
        None => data.write_sorted(path),
    }
    std::fs::read_to_string(path).unwrap()
}

/// Lines of `new` that are also lines of `old`.
fn unchanged(old: &str, new: &str) -> u64 {
    let old: HashSet<&str> = old.lines().collect();
    new.lines().filter(|l| old.contains(l)).count() as u64
}

#[test]
fn the_cache_skips_unchanged_lines_and_changes_nothing() {
    let p = Pair::new();
    let scratch = p.cached.path("gen.jsonl");
    let mut data = Data::generate(4000, 5);
    let day1 = text(&data, &scratch, None);
    assert_eq!(p.snapshot(&day1, "d1"), 0, "day 1 has no cache to use");

    // Changes, deletions and insertions spread over the file.
    data.mutate(7, 80, 30, 50);
    let day2 = text(&data, &scratch, None);
    let want = unchanged(&day1, &day2);
    assert!(want > 3800, "{want}");
    assert_eq!(
        p.snapshot(&day2, "d2"),
        want,
        "every unchanged line is a hit"
    );

    // The same file again: every line.
    let n = day2.lines().count() as u64;
    assert_eq!(p.snapshot(&day2, "d3"), n);

    // Blank lines and surrounding spaces are not changes.
    let padded: String = day2.lines().map(|l| format!("  {l}\n\n")).collect();
    assert_eq!(p.snapshot(&padded, "d4"), n);

    // A big block of new entities in the middle of the file.
    let mut lines: Vec<String> = day2.lines().map(String::from).collect();
    let mut extra = data.clone();
    extra.mutate(9, 0, 0, 3000);
    let added: Vec<String> = extra
        .lines
        .values()
        .filter(|l| !day2.contains(l.as_str()))
        .cloned()
        .collect();
    assert_eq!(added.len(), 3000);
    lines.splice(2000..2000, added);
    let day5 = lines.join("\n") + "\n";
    let got = p.snapshot(&day5, "d5");
    assert!(
        got >= n - 50,
        "the lines after the block are found again: {got} of {n}"
    );

    // A shuffled file: lines far from their old place are parsed again,
    // and the snapshot is still the same.
    let day6 = text(&data, &scratch, Some(3));
    p.snapshot(&day6, "d6");
}

#[test]
fn a_stale_or_damaged_cache_is_not_trusted() {
    let p = Pair::new();
    let scratch = p.cached.path("gen.jsonl");
    let mut data = Data::generate(3000, 8);
    let day1 = text(&data, &scratch, None);
    p.snapshot(&day1, "d1");
    let file = p.cache_file();

    // A snapshot without the cache: the cache still describes d1, not the
    // new parent, so the next snapshot must not use it.
    data.mutate(1, 100, 10, 10);
    let day2 = text(&data, &scratch, None);
    for w in [&p.cached, &p.full] {
        std::fs::write(w.path("cur.jsonl"), &day2).unwrap();
        w.ok(&[
            "snapshot",
            "--no-cache",
            "--from",
            "jsonl:cur.jsonl",
            "--name",
            "d2",
        ]);
    }
    p.same("d2");
    data.mutate(2, 100, 10, 10);
    let day3 = text(&data, &scratch, None);
    assert_eq!(
        p.snapshot(&day3, "d3"),
        0,
        "a cache of another snapshot is ignored"
    );
    assert_eq!(p.cache_file(), file, "the cache is rewritten in place");

    // Records overwritten in the middle: lines after them are parsed.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 5000] {
        *b ^= 0x5a;
    }
    std::fs::write(&file, &bytes).unwrap();
    data.mutate(3, 50, 10, 10);
    let day4 = text(&data, &scratch, None);
    p.snapshot(&day4, "d4");

    // Cut short, emptied, or not a cache at all.
    data.mutate(4, 50, 10, 10);
    let day5 = text(&data, &scratch, None);
    let len = std::fs::metadata(&file).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(len - 1000).unwrap();
    drop(f);
    assert_eq!(p.snapshot(&day5, "d5"), 0);
    std::fs::write(&file, b"").unwrap();
    assert_eq!(p.snapshot(&day5, "d6"), 0);
    std::fs::write(&file, vec![7u8; 4096]).unwrap();
    assert_eq!(p.snapshot(&day5, "d7"), 0);
    let n = day5.lines().count() as u64;
    assert_eq!(
        p.snapshot(&day5, "d8"),
        n,
        "and it is whole again after one run"
    );
}

#[test]
fn a_cached_line_whose_body_the_repository_lost_is_stored_again() {
    let w = Work::new();
    w.init();
    let data = Data::generate(3000, 12);
    // Keys in descending order, so that the parent's cursor cannot vouch
    // for them and the index is asked instead.
    let mut lines: Vec<&String> = data.lines.values().collect();
    lines.reverse();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(w.path("cur.jsonl"), &text).unwrap();
    w.ok(&["snapshot", "--from", "jsonl:cur.jsonl", "--name", "d1"]);
    let want = w.ok(&["cat", "d1", "User:user500"]);

    // Lose every pack; the rebuilt index knows no bodies.
    for dir in std::fs::read_dir(w.repo().join("packs")).unwrap() {
        std::fs::remove_dir_all(dir.unwrap().path()).unwrap();
    }
    let out = w.run(&["check", "--rebuild-index"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("rebuilt the index: 0 entities"), "{stdout}");
    assert_eq!(out.status.code(), Some(3), "the damage is reported");
    assert_eq!(cached_snapshot(&w, "d2"), 3000);
    assert_eq!(w.ok(&["cat", "d2", "User:user500"]), want);
    assert_eq!(w.ok(&["cat", "d1", "User:user500"]), want);
}
