//! Micro benchmarks of the hot paths: entity encode/decode/hash, JSON
//! parsing, the external sort, pack writing, and a whole incremental
//! snapshot (the streaming merge) of an in-memory source.
//!
//! `cargo bench --bench core`; the end-to-end comparison with other tools
//! is `benches/compare.sh`.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use kindsnap::connector::EntitySource;
use kindsnap::ids::EntityHash;
use kindsnap::model::{codec, json, Entity};
use kindsnap::ops::snapshot::{snapshot, SnapshotOptions};
use kindsnap::progress::NoProgress;
use kindsnap::repo::index::Index;
use kindsnap::repo::pack::PackWriter;
use kindsnap::repo::Repository;
use kindsnap::sort::Sorter;

fn line(i: u64, version: u64) -> String {
    format!(
        concat!(
            r#"{{"key":{{"partitionId":{{"projectId":"bench"}},"path":[{{"kind":"Post","id":"{i}"}}]}},"#,
            r#""properties":{{"title":{{"stringValue":"Post number {i} about things"}},"#,
            r#""body":{{"stringValue":"{body}","excludeFromIndexes":true}},"#,
            r#""views":{{"integerValue":"{v}"}},"score":{{"doubleValue":0.25}},"#,
            r#""at":{{"timestampValue":"2026-01-02T03:04:05.123456Z"}},"#,
            r#""author":{{"keyValue":{{"partitionId":{{"projectId":"bench"}},"path":[{{"kind":"User","name":"user{u}"}}]}}}},"#,
            r#""tags":{{"arrayValue":{{"values":[{{"stringValue":"a"}},{{"stringValue":"b"}}]}}}}}}}}"#
        ),
        i = i,
        v = version,
        u = i % 97,
        body = "lorem ipsum dolor sit amet ".repeat(30)
    )
}

struct VecSource(Vec<String>);

impl EntitySource for VecSource {
    fn source_id(&self) -> String {
        "bench:vec".into()
    }
    fn for_each(
        &mut self,
        f: &mut dyn FnMut(Entity, u64) -> kindsnap::Result<()>,
    ) -> kindsnap::Result<()> {
        for (i, l) in self.0.iter().enumerate() {
            f(json::entity_from_json(l).expect("valid"), i as u64)?;
        }
        Ok(())
    }
    fn describe(&self, origin: u64) -> String {
        format!("line {origin}")
    }
}

fn model(c: &mut Criterion) {
    let text = line(42, 1);
    let entity = json::entity_from_json(&text).expect("valid");
    let mut buf = Vec::new();
    codec::encode(&mut entity.clone(), &mut buf);
    let mut g = c.benchmark_group("entity");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("parse_json", |b| {
        b.iter(|| json::entity_from_json(black_box(&text)).expect("valid"))
    });
    g.bench_function("encode_cbor", |b| {
        let mut out = Vec::new();
        b.iter_batched(
            || entity.clone(),
            |mut e| codec::encode(&mut e, &mut out),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("decode_cbor", |b| {
        b.iter(|| codec::decode(black_box(&buf)).expect("valid"))
    });
    g.bench_function("hash", |b| b.iter(|| codec::hash(black_box(&buf))));
    g.finish();
}

fn sort(c: &mut Criterion) {
    let n = 100_000u64;
    let keys: Vec<Vec<u8>> = (0..n)
        .map(|i| ((i * 2_654_435_761) % n).to_be_bytes().to_vec())
        .collect();
    let mut g = c.benchmark_group("sort");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.bench_function("100k_keys_in_memory", |b| {
        let dir = tempfile::tempdir().expect("tmp");
        b.iter(|| {
            let mut s = Sorter::new(dir.path(), 64 << 20);
            let gid = s.groups.intern("", "Post");
            for (i, k) in keys.iter().enumerate() {
                s.push(gid, i as u64, EntityHash::of(k), k, 100)
                    .expect("push");
            }
            let mut sorted = s.finish().expect("finish");
            while sorted.next_record().expect("next").is_some() {}
        })
    });
    g.finish();
}

fn pack(c: &mut Criterion) {
    let bodies: Vec<Vec<u8>> = (0..10_000u64)
        .map(|i| {
            let mut e = json::entity_from_json(&line(i, 1)).expect("valid");
            let mut out = Vec::new();
            codec::encode(&mut e, &mut out);
            out
        })
        .collect();
    let total: usize = bodies.iter().map(|b| b.len()).sum();
    let mut g = c.benchmark_group("pack");
    g.throughput(Throughput::Bytes(total as u64));
    g.sample_size(10);
    g.bench_function("write_10k_entities", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("tmp");
                let repo = Repository::init(&dir.path().join("r")).expect("init");
                (dir, repo)
            },
            |(_dir, repo)| {
                let index = Index::open(&repo.index_path(), true).expect("index");
                let mut w = PackWriter::new(&repo, &index, "", "Post").expect("writer");
                for b in &bodies {
                    w.add(codec::hash(b), b).expect("add");
                }
                w.finish().expect("finish")
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn merge(c: &mut Criterion) {
    let n = 20_000u64;
    let day1: Vec<String> = (0..n).map(|i| line(i, 1)).collect();
    // Day 2: 1% changed.
    let day2: Vec<String> = (0..n)
        .map(|i| line(i, if i % 100 == 7 { 2 } else { 1 }))
        .collect();
    let mut g = c.benchmark_group("snapshot");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.bench_function("incremental_20k_1pct_changed", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("tmp");
                let repo = Repository::init(&dir.path().join("r")).expect("init");
                let opts = SnapshotOptions {
                    name: Some("day1".into()),
                    ..Default::default()
                };
                snapshot(&repo, &mut VecSource(day1.clone()), &opts, &NoProgress).expect("day1");
                (dir, repo, VecSource(day2.clone()))
            },
            |(_dir, repo, mut src)| {
                let opts = SnapshotOptions {
                    name: Some("day2".into()),
                    ..Default::default()
                };
                snapshot(&repo, &mut src, &opts, &NoProgress).expect("day2")
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, model, sort, pack, merge);
criterion_main!(benches);
