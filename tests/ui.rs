//! `kindsnap ui`: the real binary serving a real repository on a free
//! port, asked over real HTTP (a small HTTP/1.1 client on TcpStream, so
//! tests choose the Host header and cookies). Every page is checked
//! against what the CLI answers for the same question (`log --json`,
//! `diff --json`, `show --json`, `cat`), and so are the access rules.
//! The last test drives headless Chromium (Debian's chromium and
//! chromium-driver, scripts/chromium.sh) through the pages as a person
//! would, and saves screenshots under target/ui-screenshots/.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/s3.rs"]
mod s3;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Data, Work};
use serde::Deserialize;
use serde_json::Value as J;

// ---- a server and an HTTP client -------------------------------------------

struct Server {
    child: Child,
    /// host:port
    addr: String,
    /// The first line the server printed.
    banner: String,
    /// The rest of its output, kept open.
    _out: BufReader<std::process::ChildStdout>,
}

impl Server {
    fn start(w: &Work, extra: &[&str]) -> Server {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("kindsnap"));
        cmd.current_dir(w.dir.path())
            .arg("--repo")
            .arg(w.repo())
            .args(["ui", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("KINDSNAP_REPO")
            .env("KINDSNAP_CACHE_DIR", w.cache_dir());
        Server::spawn(cmd)
    }

    /// Run `cmd` (a `kindsnap … ui` command line) and read its address.
    fn spawn(mut cmd: Command) -> Server {
        let mut child = cmd
            .env_remove("KINDSNAP_UI_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kindsnap ui");
        let mut banner = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut banner).unwrap();
        let url = banner
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {banner:?}"));
        let addr = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        Server {
            child,
            addr,
            banner,
            _out: out,
        }
    }

    /// The server's port on 127.0.0.1 (whatever address it bound).
    fn local(&self) -> String {
        let port = self.addr.rsplit(':').next().unwrap();
        format!("127.0.0.1:{port}")
    }

    fn get(&self, path: &str) -> Resp {
        http(&self.local(), "GET", path, &[], None)
    }

    /// GET, requiring 200; returns the body.
    fn page(&self, path: &str) -> String {
        let r = self.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.body
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the server said.
        if std::thread::panicking() {
            let mut err = String::new();
            if let Some(mut e) = self.child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            eprintln!("kindsnap ui stderr:\n{err}");
        }
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request to `addr` (Host defaults to `addr`).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    s.write_all(req.as_bytes()).unwrap();
    // Read what the headers announce, not to the end: chromedriver keeps
    // connections open, and a server may reset one it is done with.
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut bytes = Vec::new();
    if let Some(n) = find("content-length") {
        bytes.resize(n.parse().unwrap(), 0);
        r.read_exact(&mut bytes).unwrap();
    } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&chunk[..n]);
        }
    } else {
        let _ = r.read_to_end(&mut bytes);
    }
    Resp {
        status,
        headers,
        body: String::from_utf8(bytes).expect("utf-8 body"),
    }
}

// ---- reading pages -----------------------------------------------------------

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// What a person reads: the page without tags (and without the SVG
/// titles and the head), whitespace collapsed.
fn text(html: &str) -> String {
    let body = html.split("<body>").nth(1).unwrap_or(html);
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    unescape(&out.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Every `href` of a page.
fn links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .map(|s| unescape(&s[..s.find('"').unwrap()]))
        .collect()
}

/// The text of the table row whose first cell is `first`.
fn row(html: &str, first: &str) -> String {
    html.split("<tr")
        .skip(1)
        .map(|r| r.split("</tr>").next().unwrap())
        .map(|r| text(&format!("<body>{}", &r[r.find('>').unwrap() + 1..])))
        .find(|t| t.starts_with(&format!("{first} ")))
        .unwrap_or_else(|| panic!("no row for {first} in {}", text(html)))
}

fn query(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ---- the repository ------------------------------------------------------------

const PEOPLE1: &str = r#"{"key":{"partitionId":{"projectId":"test"},"path":[{"kind":"Person","name":"alice"}]},"properties":{"email":{"stringValue":"alice@old.example"},"age":{"integerValue":"30"},"bio":{"stringValue":"likes tea","excludeFromIndexes":true},"friend":{"keyValue":{"partitionId":{"projectId":"test"},"path":[{"kind":"Person","name":"bob"}]}}}}
{"key":{"partitionId":{"projectId":"test"},"path":[{"kind":"Person","name":"bob"}]},"properties":{"email":{"stringValue":"bob@example"}}}
"#;

/// Three snapshots of one source: `day1`; `day2` (alice's email changes,
/// bob is removed, 300 generated entities change); `day3` (alice's age
/// changes, bob is back).
fn three_days() -> (Work, Data) {
    let w = Work::new();
    w.init();
    let mut data = Data::generate(600, 1);
    let write = |data: &Data, people: &str| {
        data.write_sorted(&w.path("gen.jsonl"));
        let mut all = std::fs::read_to_string(w.path("gen.jsonl")).unwrap();
        all.push_str(people);
        std::fs::write(w.path("data.jsonl"), all).unwrap();
    };
    write(&data, PEOPLE1);
    w.ok(&["snapshot", "--from", "jsonl:data.jsonl", "--name", "day1"]);
    data.mutate(2, 300, 5, 3);
    let day2 = PEOPLE1
        .replace("alice@old.example", "alice@new.example")
        .lines()
        .next()
        .unwrap()
        .to_string()
        + "\n";
    write(&data, &day2);
    w.ok(&["snapshot", "--from", "jsonl:data.jsonl", "--name", "day2"]);
    let day3 = PEOPLE1
        .replace("alice@old.example", "alice@new.example")
        .replace("\"30\"", "\"31\"");
    write(&data, &day3);
    w.ok(&["snapshot", "--from", "jsonl:data.jsonl", "--name", "day3"]);
    (w, data)
}

fn json(w: &Work, args: &[&str]) -> J {
    serde_json::from_str(&w.ok(args)).expect("json")
}

// ---- pages -------------------------------------------------------------------

#[test]
fn history_lists_what_log_lists_with_charts() {
    let (w, _) = three_days();
    let s = Server::start(&w, &[]);
    let html = s.page("/");
    let log = json(&w, &["log", "--json"]);
    for snap in log.as_array().unwrap() {
        let r = row(&html, snap["name"].as_str().unwrap());
        assert!(r.contains(&format!(" {} ", snap["entities"])), "{r}");
        assert!(r.contains(&snap["id"].as_str().unwrap()[..8]), "{r}");
        assert!(r.contains(snap["source"].as_str().unwrap()), "{r}");
    }
    // Newest first.
    let t = text(&html);
    let t = t.split("All snapshots").nth(1).unwrap();
    let at = |n: &str| t.find(&format!("{n} ")).unwrap();
    assert!(at("day3") < at("day2") && at("day2") < at("day1"));
    // Three charts, drawn on the server: no script anywhere.
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 3, "{html}");
    assert!(html.contains("<polyline"));
    assert!(!html.contains("<script"));
    let t = text(&html);
    for h in [
        "Entities per kind",
        "Bytes stored per snapshot",
        "Changed entities per kind",
    ] {
        assert!(t.contains(h), "{h}");
    }
    // The heat map's cells say what changed: day2's Person cell.
    assert!(html.contains("Person in day2 ("), "{html}");
    assert!(html.contains("): +0 ~1 -1</title>"), "{html}");
    // A second source: the page offers each, and shows one on request.
    w.write("other.jsonl", PEOPLE1);
    w.ok(&[
        "snapshot",
        "--from",
        "jsonl:other.jsonl",
        "--name",
        "other1",
    ]);
    let html = s.page("/");
    let t = text(&html);
    assert!(t.contains("Source: all · jsonl:"), "{t}");
    let other = format!("jsonl:{}", w.path("other.jsonl").display());
    let link = format!("/?source={}", query(&other));
    assert!(links(&html).contains(&link), "{link}");
    let t = text(&s.page(&link));
    let table = t.split("All snapshots").nth(1).unwrap();
    assert!(
        table.contains("other1 ") && !table.contains("day1 "),
        "{table}"
    );
    assert!(t.contains("1 snapshot of jsonl:"), "{t}");
    // Tags show beside the name, and the id does not change.
    let id = log[2]["id"].as_str().unwrap()[..8].to_string();
    w.ok(&["tag", "add", "audit", "day1"]);
    let r = row(&s.page("/"), "day1");
    assert!(r.contains("#audit") && r.contains(&id), "{r}");
}

#[test]
fn diff_page_gives_the_answers_of_diff_json() {
    let (w, _) = three_days();
    let s = Server::start(&w, &[]);
    let cli = json(&w, &["diff", "day1", "day2", "--json", "--props"]);
    let html = s.page("/diff?from=day1&to=day2");
    for k in cli["kinds"].as_array().unwrap() {
        let label = match k["namespace"].as_str().unwrap() {
            "" => k["kind"].as_str().unwrap().to_string(),
            ns => format!("{ns}/{}", k["kind"].as_str().unwrap()),
        };
        assert_eq!(
            row(&html, &label),
            format!(
                "{label} +{} -{} ~{} {}",
                k["added"], k["removed"], k["changed"], k["entities"]
            )
        );
    }
    // One kind, page by page: the keys and property changes of the CLI.
    let kinds = cli["kinds"].as_array().unwrap();
    let big = kinds
        .iter()
        .max_by_key(|k| k["changed"].as_u64().unwrap())
        .unwrap();
    let (ns, kind) = (
        big["namespace"].as_str().unwrap(),
        big["kind"].as_str().unwrap(),
    );
    let total = big["added"].as_u64().unwrap()
        + big["removed"].as_u64().unwrap()
        + big["changed"].as_u64().unwrap();
    assert!(total > 50, "the test needs a kind with more than one page");
    let expected: Vec<&J> = cli["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind && e["namespace"] == ns)
        .collect();
    let mut seen = Vec::new();
    let mut page = 1;
    loop {
        let url = format!("/diff?from=day1&to=day2&kind={kind}&ns={ns}&page={page}");
        let html = s.page(&url);
        let keys: Vec<String> = html
            .split("<a class=\"key\" href=\"")
            .skip(1)
            .map(|p| unescape(&p[p.find('>').unwrap() + 1..p.find("</a>").unwrap()]))
            .collect();
        assert!(keys.len() <= 50);
        seen.extend(keys);
        let next = html.contains("rel=\"next\"");
        assert_eq!(next, (seen.len() as u64) < total, "page {page}");
        if !next {
            break;
        }
        page += 1;
    }
    assert_eq!(page as u64, total.div_ceil(50));
    let want: Vec<String> = expected
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, want);
    // A changed entity's properties, old and new side by side.
    let html = s.page("/diff?from=day1&to=day2&kind=Person");
    let t = text(&html);
    assert!(
        t.contains("email \"alice@old.example\" \"alice@new.example\""),
        "{t}"
    );
    assert!(t.contains("- Person:bob"), "{t}");
    // Changed properties of the big kind match the CLI's.
    let html = s.page(&format!("/diff?from=day1&to=day2&kind={kind}&ns={ns}"));
    let t = text(&html);
    for e in expected
        .iter()
        .take(50)
        .filter(|e| e["change"] == "changed")
    {
        for p in e["properties"].as_array().unwrap() {
            assert!(t.contains(p["name"].as_str().unwrap()));
            if let Some(v) = p["new"]["integerValue"].as_str() {
                assert!(t.contains(v), "{v}");
            }
        }
    }
    // No differences.
    assert!(text(&s.page("/diff?from=day2&to=day2")).contains("No differences"));
}

#[test]
fn entity_page_shows_the_entity_and_its_history() {
    let (w, _) = three_days();
    let s = Server::start(&w, &[]);
    let html = s.page("/entity?snapshot=day3&key=Person:alice");
    let t = text(&html);
    // The table: property, type, indexed, value.
    assert!(t.contains("age integer yes 31"), "{t}");
    assert!(t.contains("bio string no \"likes tea\" unindexed"), "{t}");
    assert!(t.contains("email string yes \"alice@new.example\""), "{t}");
    // A reference is a link that works.
    let friend = "/entity?snapshot=day3&key=Person%3Abob";
    assert!(links(&html).contains(&friend.to_string()), "{html}");
    assert!(text(&s.page(friend)).contains("bob@example"));
    // The history is `log --key`'s, newest first.
    let h = json(&w, &["log", "--key", "Person:alice", "--json"]);
    let events: Vec<(String, String)> = h["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (
                e["change"].as_str().unwrap().to_string(),
                e["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [("changed", "day3"), ("changed", "day2"), ("added", "day1")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    for (change, name) in &events {
        assert!(
            t.contains(&format!("{change} in {name} ")),
            "{change} {name}: {t}"
        );
    }
    assert!(t.contains("age 30 31"), "{t}");
    // A key the snapshot does not hold: 404, with its history.
    let r = s.get("/entity?snapshot=day2&key=Person:bob");
    assert_eq!(r.status, 404);
    let t = text(&r.body);
    assert!(
        t.contains("does not hold this key") && t.contains("removed in day2"),
        "{t}"
    );
    // Namespaced keys and ancestors link to each other.
    let cli = json(&w, &["diff", "day1", "day2", "--json"]);
    let child = cli["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "Comment" && e["change"] == "changed")
        .expect("a changed comment");
    let (ns, key) = (
        child["namespace"].as_str().unwrap(),
        child["key"].as_str().unwrap(),
    );
    let html = s.page(&format!(
        "/entity?snapshot=day2&key={}&ns={}",
        query(key),
        query(ns)
    ));
    let parent = key.split('/').next().unwrap();
    let mut want = format!("/entity?snapshot=day2&key={}", query(parent));
    if !ns.is_empty() {
        want.push_str(&format!("&ns={ns}"));
    }
    assert!(links(&html).contains(&want), "{want} in {html}");
}

#[test]
fn snapshot_page_lists_kinds_and_a_restore_command() {
    let (w, _) = three_days();
    let s = Server::start(&w, &[]);
    let html = s.page("/snapshot/day2");
    let show = json(&w, &["show", "day2", "--json"]);
    for k in show["kinds"].as_array().unwrap() {
        let label = match k["namespace"].as_str().unwrap() {
            "" => k["kind"].as_str().unwrap().to_string(),
            ns => format!("{ns}/{}", k["kind"].as_str().unwrap()),
        };
        assert!(row(&html, &label).starts_with(&format!("{label} {} ", k["entities"])));
    }
    let repo = w.repo().display().to_string();
    let t = text(&html);
    assert!(
        t.contains(&format!(
            "kindsnap --repo {repo} restore day2 --to datastore://localhost:8081/dev"
        )),
        "{t}"
    );
    let t =
        text(&s.page("/snapshot/day2?to=sqlite%3Adev+copy.db&keys=uuid&kinds=Person&dry_run=1"));
    assert!(
        t.contains(&format!(
            "kindsnap --repo {repo} restore day2 --to 'sqlite:dev copy.db' --keys uuid --kinds Person --dry-run"
        )),
        "{t}"
    );
    // By id too.
    let id = show["id"].as_str().unwrap();
    assert!(text(&s.page(&format!("/snapshot/{}", &id[..12]))).contains("Snapshot day2"));
}

#[test]
fn every_link_resolves_and_bad_requests_say_why() {
    let (w, _) = three_days();
    let s = Server::start(&w, &[]);
    let mut todo: Vec<String> = vec![
        "/".into(),
        "/diff?from=day1&to=day3".into(),
        "/diff?from=day1&to=day2&kind=Person".into(),
        "/entity?snapshot=day3&key=Person:alice".into(),
        "/snapshot/day1".into(),
    ];
    let mut done = BTreeSet::new();
    // The pages above and everything they link to, one level deep.
    for depth in 0..2 {
        let mut next = Vec::new();
        for u in todo.drain(..) {
            if !done.insert(u.clone()) {
                continue;
            }
            let r = s.get(&u);
            assert_eq!(r.status, 200, "{u}: {}", text(&r.body));
            if depth == 0
                && r.header("content-type")
                    .unwrap_or("")
                    .starts_with("text/html")
            {
                next.extend(links(&r.body).into_iter().filter(|l| l.starts_with('/')));
            }
        }
        todo = next;
    }
    assert!(done.len() > 20, "{done:?}");
    let cases = [
        ("/snapshot/nope", 404, "snapshot `nope` not found"),
        ("/diff?from=nope&to=day1", 404, "snapshot `nope` not found"),
        (
            "/diff?from=day1&to=day2&kind=Persn",
            404,
            "did you mean `Person`",
        ),
        ("/diff?from=day1&to=day2&page=0", 400, "give a page number"),
        ("/entity?snapshot=day1&key=Person%3A", 400, "invalid key"),
        (
            "/entity?snapshot=day1&key=Persn:alice",
            404,
            "did you mean `Person`",
        ),
        ("/snapshot/day1?keys=maybe", 400, "choose `keep` or `uuid`"),
        ("/nowhere", 404, "no such page"),
    ];
    for (u, status, says) in cases {
        let r = s.get(u);
        assert_eq!(r.status, status, "{u}");
        assert!(text(&r.body).contains(says), "{u}: {}", text(&r.body));
    }
    // Read-only: nothing but GET.
    let r = http(&s.local(), "POST", "/", &[], Some("{}"));
    assert_eq!(r.status, 405);
    // Headers that keep pages to themselves.
    let r = s.get("/");
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
}

/// `--open` hands the printed address to the browser ($BROWSER here: a
/// script that writes down what it was given).
#[test]
fn open_hands_the_address_to_the_browser() {
    let (w, _) = three_days();
    let opened = w.path("opened.txt");
    let browser = w.write(
        "browser.sh",
        &format!("#!/bin/sh\necho \"$1\" > '{}'\n", opened.display()),
    );
    std::fs::set_permissions(
        &browser,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("kindsnap"));
    cmd.current_dir(w.dir.path())
        .arg("--repo")
        .arg(w.repo())
        .args([
            "ui",
            "--listen",
            "127.0.0.1:0",
            "--open",
            "--token",
            "open-token-0123456789",
        ])
        .env("BROWSER", &browser)
        .env("KINDSNAP_CACHE_DIR", w.cache_dir());
    let s = Server::spawn(cmd);
    let start = Instant::now();
    while !opened.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no browser was started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    let url = std::fs::read_to_string(&opened).unwrap();
    assert_eq!(
        url.trim(),
        format!("http://{}/?token=open-token-0123456789", s.addr)
    );
}

// ---- access ------------------------------------------------------------------

#[test]
fn loopback_server_answers_only_to_localhost() {
    let (w, _) = three_days();
    let s = Server::start(&w, &[]);
    assert!(s.banner.contains("http://127.0.0.1:"), "{}", s.banner);
    assert!(!s.banner.contains("token"));
    for host in ["localhost", "127.0.0.1", "[::1]"] {
        let port = s.addr.rsplit(':').next().unwrap();
        let h = format!("{host}:{port}");
        let r = http(&s.local(), "GET", "/", &[("Host", &h)], None);
        assert_eq!(r.status, 200, "{h}");
    }
    // A page elsewhere that resolved its own name to 127.0.0.1.
    let r = http(
        &s.local(),
        "GET",
        "/",
        &[("Host", "rebind.example:80")],
        None,
    );
    assert_eq!(r.status, 403);
    assert!(text(&r.body).contains("answers only to localhost"));
}

#[test]
fn a_token_is_needed_on_every_request_when_given() {
    let (w, _) = three_days();
    let token = "test-token-0123456789";
    let s = Server::start(&w, &["--token", token]);
    assert!(
        s.banner.contains(&format!("?token={token}")),
        "{}",
        s.banner
    );
    for path in ["/", "/static/style.css", "/snapshot/day1", "/nowhere"] {
        assert_eq!(s.get(path).status, 401, "{path}");
    }
    assert_eq!(s.get("/?token=wrong-token-0123456789").status, 401);
    // The token in the URL: a cookie, and the same URL without it.
    let r = s.get(&format!("/diff?from=day1&token={token}&to=day2"));
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/diff?from=day1&to=day2"));
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = http(
        &s.local(),
        "GET",
        "/diff?from=day1&to=day2",
        &[("Cookie", &pair)],
        None,
    );
    assert_eq!(r.status, 200);
    // The cookie of a server on another port does not count.
    let other = pair.replacen("kindsnap_ui_", "kindsnap_ui_1", 1);
    let r = http(&s.local(), "GET", "/", &[("Cookie", &other)], None);
    assert_eq!(r.status, 401);
    let bearer = format!("Bearer {token}");
    let r = http(&s.local(), "GET", "/", &[("Authorization", &bearer)], None);
    assert_eq!(r.status, 200);
    // With a token the Host rule is the token's business.
    let r = http(
        &s.local(),
        "GET",
        "/",
        &[("Authorization", &bearer), ("Host", "my-host.example:80")],
        None,
    );
    assert_eq!(r.status, 200);
}

#[test]
fn other_addresses_get_a_generated_token() {
    let (w, _) = three_days();
    // Every interface; the test only ever connects to 127.0.0.1.
    let s = Server::start(&w, &["--listen", "0.0.0.0:0"]);
    let token = s
        .banner
        .split("?token=")
        .nth(1)
        .unwrap_or_else(|| panic!("no token in {}", s.banner))
        .trim()
        .to_string();
    assert_eq!(token.len(), 32);
    assert_eq!(s.get("/").status, 401);
    assert_eq!(s.get(&format!("/?token={token}")).status, 303);
    let s2 = Server::start(&w, &["--listen", "0.0.0.0:0"]);
    assert!(!s2.banner.contains(&token), "tokens are generated anew");
    // Bad flags: one line each, exit 1.
    let err = w.fails(&["ui", "--listen", "8765"]);
    assert!(
        err.contains("--listen `8765`: give an address and a port"),
        "{err}"
    );
    let err = w.fails(&["ui", "--token", "short"]);
    assert!(err.contains("--token: use at least 16 characters"), "{err}");
    let busy = s.local();
    let err = w.fails(&["ui", "--listen", &busy]);
    assert!(err.contains(&format!("cannot listen on {busy}")), "{err}");
}

// ---- object storage ----------------------------------------------------------

/// The same pages over a repository on S3 (moto, tests/s3/setup.sh): a
/// snapshot another machine takes shows on the next load.
#[test]
fn pages_of_a_repository_on_object_storage() {
    let moto = s3::Moto::start();
    moto.create_bucket("bkt");
    let w = Work::new();
    let ks = |cache: &str| {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("kindsnap"));
        c.current_dir(w.dir.path())
            .args(["--repo", "s3://bkt/shop"])
            .env_remove("KINDSNAP_REPO")
            .env_remove("AWS_PROFILE")
            .env_remove("KINDSNAP_S3_ENDPOINT")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env(
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", moto.port),
            )
            .env("KINDSNAP_CACHE_DIR", w.path(cache));
        c
    };
    let ok = |cache: &str, args: &[&str]| {
        let out = ks(cache).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok("writer", &["init"]);
    w.write("data.jsonl", PEOPLE1);
    ok(
        "writer",
        &["snapshot", "--from", "jsonl:data.jsonl", "--name", "day1"],
    );
    w.write(
        "data.jsonl",
        &PEOPLE1.replace("alice@old.example", "alice@new.example"),
    );
    ok(
        "writer",
        &["snapshot", "--from", "jsonl:data.jsonl", "--name", "day2"],
    );
    let mut cmd = ks("viewer");
    cmd.args(["ui", "--listen", "127.0.0.1:0"]);
    let s = Server::spawn(cmd);
    assert!(
        s.banner.contains("s3://bkt/shop at http://127.0.0.1:"),
        "{}",
        s.banner
    );
    let t = text(&s.page("/"));
    assert!(t.contains("day2") && !t.contains("day3"), "{t}");
    let t = text(&s.page("/diff?from=day1&to=day2&kind=Person"));
    assert!(
        t.contains("email \"alice@old.example\" \"alice@new.example\""),
        "{t}"
    );
    let t = text(&s.page("/entity?snapshot=day2&key=Person:alice"));
    assert!(t.contains("changed in day2"), "{t}");
    let t = text(&s.page("/snapshot/day1"));
    assert!(
        t.contains("kindsnap --repo s3://bkt/shop restore day1"),
        "{t}"
    );
    // Another machine takes a snapshot; the page shows it.
    w.write("data.jsonl", &PEOPLE1.replace("\"30\"", "\"31\""));
    ok(
        "writer",
        &["snapshot", "--from", "jsonl:data.jsonl", "--name", "day3"],
    );
    assert!(text(&s.page("/")).contains("day3"));
}

// ---- log --key ---------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct History {
    namespace: String,
    kind: String,
    key: String,
    events: Vec<Event>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Event {
    id: String,
    name: String,
    time: String,
    source: String,
    parent: Option<String>,
    change: String,
    old: Option<String>,
    new: Option<String>,
    properties: Vec<Prop>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Prop {
    name: String,
    old: Option<J>,
    new: Option<J>,
}

/// `log --key`'s events agree with what `cat` reads in each snapshot.
#[test]
fn log_key_agrees_with_cat_in_every_snapshot() {
    let (w, _) = three_days();
    let log = json(&w, &["log", "--json"]);
    let names: Vec<String> = log
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    let cli = json(&w, &["diff", "day1", "day2", "--json"]);
    let mut keys: Vec<(String, String)> = vec![
        ("".into(), "Person:alice".into()),
        ("".into(), "Person:bob".into()),
    ];
    for e in cli["entries"].as_array().unwrap().iter().take(12) {
        keys.push((
            e["namespace"].as_str().unwrap().into(),
            e["key"].as_str().unwrap().into(),
        ));
    }
    for (ns, key) in keys {
        let mut args = vec!["log", "--key", &key, "--json"];
        if !ns.is_empty() {
            args.extend(["--namespace", &ns]);
        }
        let h: History = serde_json::from_str(&w.ok(&args)).unwrap();
        assert_eq!(
            (h.namespace.as_str(), h.key.as_str()),
            (ns.as_str(), key.as_str())
        );
        // The oracle: the entity as `cat` reads it in each snapshot.
        let mut before: Option<J> = None;
        let mut want = Vec::new();
        for n in &names {
            let mut args = vec!["cat", n, &key];
            if !ns.is_empty() {
                args.extend(["--namespace", &ns]);
            }
            let out = w.run(&args);
            let now: Option<J> = out
                .status
                .success()
                .then(|| serde_json::from_slice(&out.stdout).unwrap());
            let change = match (&before, &now) {
                (None, Some(_)) => Some("added"),
                (Some(_), None) => Some("removed"),
                (Some(a), Some(b)) if a != b => Some("changed"),
                _ => None,
            };
            if let Some(c) = change {
                want.push((n.clone(), c.to_string()));
            }
            before = now;
        }
        let got: Vec<(String, String)> = h
            .events
            .iter()
            .map(|e| (e.name.clone(), e.change.clone()))
            .collect();
        assert_eq!(got, want, "{ns}/{key}");
    }
    // Alice's email: old → new, in day2.
    let h: History =
        serde_json::from_str(&w.ok(&["log", "--key", "Person:alice", "--json"])).unwrap();
    let day2 = h.events.iter().find(|e| e.name == "day2").unwrap();
    let email = day2
        .properties
        .iter()
        .map(|p| (p.name.as_str(), p.old.clone(), p.new.clone()))
        .collect::<Vec<_>>();
    assert_eq!(
        email,
        vec![(
            "email",
            Some(serde_json::json!({"stringValue": "alice@old.example"})),
            Some(serde_json::json!({"stringValue": "alice@new.example"}))
        )]
    );
    assert!(day2.parent.is_some());
    // Text: newest first, each property old → new.
    let out = w.ok(&["log", "--key", "Person:alice"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("~ ") && lines[0].contains("day3") && lines[0].ends_with("changed"),
        "{out}"
    );
    assert!(
        out.contains("    email: \"alice@old.example\" → \"alice@new.example\""),
        "{out}"
    );
    // A key never held, and a misspelt kind.
    assert_eq!(
        w.ok(&["log", "--key", "Person:zed"]).trim(),
        "no snapshot holds Person:zed"
    );
    let err = w.fails(&["log", "--key", "Persn:alice"]);
    assert!(
        err.contains("kind `Persn` is not in any snapshot (did you mean `Person`?)"),
        "{err}"
    );
    let err = w.fails(&["log", "--key", "Person:"]);
    assert!(err.contains("invalid key `Person:`"), "{err}");
}

// ---- a real browser -------------------------------------------------------------

/// chromedriver on a free port, and one headless Chromium session.
struct Browser {
    driver: Child,
    addr: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: run scripts/chromium.sh (scripts/test.sh does)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // In a process group of its own, so that Drop ends Chromium with
        // it even when no session was made to close.
        let driver = Command::new("/usr/bin/chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr = format!("127.0.0.1:{port}");
        let start = Instant::now();
        while TcpStream::connect(&addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1600",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut b = Browser {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"].as_str().expect("session id").to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<J>) -> J {
        let body = body.map(|b| b.to_string());
        let r = http(&self.addr, method, path, &[], body.as_deref());
        let v: J = serde_json::from_str(&r.body).unwrap_or(J::Null);
        assert!(r.status < 300, "chromedriver {method} {path}: {}", r.body);
        v["value"].clone()
    }

    fn session(&self, method: &str, rest: &str, body: Option<J>) -> J {
        self.call(method, &format!("/session/{}{rest}", self.session), body)
    }

    fn go(&self, url: &str) {
        self.session("POST", "/url", Some(serde_json::json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.session("GET", "/url", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    fn text(&self) -> String {
        self.script("return document.body.innerText")
            .as_str()
            .unwrap()
            .to_string()
    }

    fn script(&self, js: &str) -> J {
        self.session(
            "POST",
            "/execute/sync",
            Some(serde_json::json!({"script": js, "args": []})),
        )
    }

    /// Click the first link whose text is `text`.
    fn click(&self, text: &str) {
        let e = self.session(
            "POST",
            "/element",
            Some(serde_json::json!({"using": "link text", "value": text})),
        );
        let id = e
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        self.session(
            "POST",
            &format!("/element/{id}/click"),
            Some(serde_json::json!({})),
        );
    }

    /// Console messages at the level of errors since the last call.
    fn errors(&self) -> Vec<String> {
        self.session(
            "POST",
            "/se/log",
            Some(serde_json::json!({"type": "browser"})),
        )
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["level"] == "SEVERE")
        .map(|m| m["message"].as_str().unwrap_or("").to_string())
        .collect()
    }

    /// The whole page as a PNG under target/ui-screenshots/.
    fn screenshot(&self, name: &str) -> std::path::PathBuf {
        use base64::Engine as _;
        let cdp = |cmd: &str, params: J| {
            self.session(
                "POST",
                "/goog/cdp/execute",
                Some(serde_json::json!({"cmd": cmd, "params": params})),
            )
        };
        cdp(
            "Emulation.clearDeviceMetricsOverride",
            serde_json::json!({}),
        );
        let h = self
            .script("return document.documentElement.scrollHeight")
            .as_u64()
            .unwrap_or(1600);
        // The viewport as tall as the page (headless windows do not grow).
        cdp(
            "Emulation.setDeviceMetricsOverride",
            serde_json::json!({"width": 1280, "height": h.clamp(600, 6000),
                               "deviceScaleFactor": 1, "mobile": false}),
        );
        let png = self.session("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"));
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http(
                &self.addr,
                "DELETE",
                &format!("/session/{}", self.session),
                &[],
                None,
            );
        }
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}

#[test]
fn a_browser_reads_history_diff_and_entity_pages() {
    let (w, _) = three_days();
    let token = "browser-token-0123456789";
    let s = Server::start(&w, &["--token", token]);
    let b = Browser::start();
    let base = format!("http://{}", s.local());
    // The printed address: the token becomes a cookie, the URL loses it.
    b.go(&format!("{base}/?token={token}"));
    assert_eq!(b.url(), format!("{base}/"));
    let t = looks_right(&b, &s, token, "history");
    for want in [
        "Snapshots",
        "day1",
        "day2",
        "day3",
        "Entities per kind",
        "Changed entities per kind",
    ] {
        assert!(t.contains(want), "history: {want} in {t}");
    }
    // History → the diff of day3 against day2 → a kind → an entity.
    b.click("diff");
    assert!(
        b.url()
            .starts_with(&format!("{base}/diff?from=day2&to=day3")),
        "{}",
        b.url()
    );
    b.click("Person");
    let t = looks_right(&b, &s, token, "diff");
    assert!(t.contains("Diff day2 → day3") && t.contains("age"), "{t}");
    b.click("Person:alice");
    let t = looks_right(&b, &s, token, "entity");
    for want in [
        "Person:alice",
        "Properties",
        "History",
        "changed in day2",
        "alice@old.example",
        "unindexed",
    ] {
        assert!(t.contains(want), "entity: {want} in {t}");
    }
    // A reference, followed.
    b.click("Person:bob");
    assert!(b.text().contains("bob@example"));
    // The console check can fail: a missing page is an error there.
    b.go(&format!("{base}/nowhere"));
    assert!(!b.errors().is_empty(), "a 404 shows in the console");
    b.go(&format!("{base}/snapshot/day2"));
    let t = looks_right(&b, &s, token, "snapshot");
    assert!(
        t.contains("kindsnap --repo") && t.contains("restore day2"),
        "{t}"
    );
}

/// Checks a page in the browser: no console errors, a screenshot, every
/// link on it answers 200 (asked over HTTP with the token as a header).
/// Returns the text a person sees.
fn looks_right(b: &Browser, s: &Server, token: &str, name: &str) -> String {
    let errors = b.errors();
    assert!(errors.is_empty(), "{name}: console errors {errors:?}");
    let shot = b.screenshot(name);
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "{name}: a blank page?"
    );
    let hrefs = b.script(
        "return Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))",
    );
    let bearer = format!("Bearer {token}");
    for h in hrefs.as_array().unwrap() {
        let h = h.as_str().unwrap();
        if h.starts_with('/') {
            let r = http(&s.local(), "GET", h, &[("Authorization", &bearer)], None);
            assert_eq!(r.status, 200, "{name}: link {h}");
        }
    }
    b.text()
}
