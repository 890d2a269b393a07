//! The baseline for the Datastore benchmark (benches/datastore.sh): the
//! plainest client that does the same HTTP work as kindsnap, with the same
//! batch size and concurrency, and nothing else (no repository, no
//! hashing, no journal).
//!
//!   cargo bench --bench datastore_plain -- restore URL PROJECT FILE.jsonl [BATCH] [CONCURRENCY]
//!   cargo bench --bench datastore_plain -- scan URL PROJECT [CONCURRENCY]
//!
//! `restore` sends every line of FILE (Datastore v1 JSON entities with the
//! right project) as upserts in commits of BATCH; `scan` pages through every
//! kind of the default namespace with runQuery, CONCURRENCY kinds at once.
//! Prints `entities seconds entities/s`.

use std::io::BufRead;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn post(http: &reqwest::Client, url: &str, body: String) -> Res<Value> {
    let r = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = r.status();
    let bytes = r.bytes().await?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)).into());
    }
    Ok(serde_json::from_slice(&bytes)?)
}

async fn restore(base: &str, project: &str, file: &str, batch: usize, conc: usize) -> Res<u64> {
    let http = reqwest::Client::new();
    let url = format!("{base}/v1/projects/{project}:commit");
    let sem = Arc::new(tokio::sync::Semaphore::new(conc));
    let mut tasks = Vec::new();
    let mut n = 0u64;
    let mut body = Vec::new();
    let reader = std::io::BufReader::new(std::fs::File::open(file)?);
    let mut lines = reader.lines();
    loop {
        let line = lines.next().transpose()?;
        if let Some(l) = &line {
            if !l.trim().is_empty() {
                body.push(format!("{{\"upsert\":{l}}}"));
                n += 1;
            }
        }
        if body.len() >= batch || (line.is_none() && !body.is_empty()) {
            let text = format!(
                "{{\"mode\":\"NON_TRANSACTIONAL\",\"mutations\":[{}]}}",
                body.join(",")
            );
            body.clear();
            let permit = Arc::clone(&sem).acquire_owned().await?;
            let (http, url) = (http.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                let r = post(&http, &url, text).await;
                drop(permit);
                r
            }));
        }
        if line.is_none() {
            break;
        }
    }
    for t in tasks {
        t.await??;
    }
    Ok(n)
}

async fn scan(base: &str, project: &str, conc: usize) -> Res<u64> {
    let http = reqwest::Client::new();
    let url = format!("{base}/v1/projects/{project}:runQuery");
    let kinds = post(
        &http,
        &url,
        json!({"query": {"kind": [{"name": "__kind__"}]}}).to_string(),
    )
    .await?;
    let kinds: Vec<String> = kinds["batch"]["entityResults"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|r| {
            r["entity"]["key"]["path"][0]["name"]
                .as_str()
                .map(String::from)
        })
        .filter(|k| !k.starts_with("__"))
        .collect();
    let sem = Arc::new(tokio::sync::Semaphore::new(conc));
    let mut tasks = Vec::new();
    for kind in kinds {
        let (http, url, sem) = (http.clone(), url.clone(), Arc::clone(&sem));
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await?;
            let mut cursor: Option<String> = None;
            let mut n = 0u64;
            loop {
                let mut q = json!({"kind": [{"name": kind}]});
                if let Some(c) = &cursor {
                    q["startCursor"] = json!(c);
                }
                let r = post(&http, &url, json!({"query": q}).to_string()).await?;
                let b = &r["batch"];
                n += b["entityResults"].as_array().map(|a| a.len()).unwrap_or(0) as u64;
                cursor = b["endCursor"].as_str().map(String::from);
                if b["moreResults"] != "NOT_FINISHED" || cursor.is_none() {
                    return Res::Ok(n);
                }
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total)
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let usage = "usage: datastore_plain restore URL PROJECT FILE [BATCH] [CONCURRENCY] | scan URL PROJECT [CONCURRENCY]";
    if args.is_empty() {
        // `cargo bench` runs every bench target without arguments.
        eprintln!("{usage}");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let num = |i: usize, d: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
    let t = Instant::now();
    let n = match args[0].as_str() {
        "restore" if args.len() >= 4 => rt.block_on(restore(
            &args[1],
            &args[2],
            &args[3],
            num(4, 500),
            num(5, 4),
        ))?,
        "scan" if args.len() >= 3 => rt.block_on(scan(&args[1], &args[2], num(3, 4)))?,
        _ => return Err(usage.into()),
    };
    let s = t.elapsed().as_secs_f64();
    println!("{n} {s:.3} {:.0}", n as f64 / s);
    Ok(())
}
