//! Whole PostgreSQL schemas, through the real binary and a real server
//! (tests/sql_support): a schema written here with enum, domain,
//! composite and range types, a partitioned table with two partitions and
//! a default one, sequences no column owns (one a key default uses), a
//! view, a materialized view, functions and triggers, a rule and a
//! row-level security policy. Snapshot → restore into an empty database:
//! every table identical row by row (compared with the source by query),
//! the partitioning and the types identical; code only with
//! `--trust-schema`, created after the data (no trigger fires during the
//! load); a second restore changes nothing; what cannot be recorded is a
//! warning of the snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod sql_support;

use common::Work;
use sql_support::Server;

const SCHEMA: &str = r#"
CREATE EXTENSION citext;
CREATE EXTENSION dblink;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'it''s');
CREATE DOMAIN year AS integer CONSTRAINT year_check CHECK (VALUE >= 1901 AND VALUE <= 2155);
CREATE DOMAIN posint AS integer NOT NULL DEFAULT 1 CHECK (VALUE > 0);
CREATE TYPE address AS (street text, zip integer);
CREATE TYPE floatrange AS RANGE (subtype = float8, subtype_diff = float8mi);
CREATE SCHEMA shop;
CREATE TYPE shop.size AS ENUM ('S', 'M', 'L');
CREATE DOMAIN shop.sizes AS shop.size[];
CREATE SEQUENCE film_ids START WITH 100 INCREMENT BY 5;
CREATE SEQUENCE invoice_no START 1000;
CREATE TABLE film (id int PRIMARY KEY DEFAULT nextval('film_ids'), title text NOT NULL,
  release year, rating mood DEFAULT 'ok', moods mood[], home address, span floatrange,
  size shop.size, sizes shop.sizes, copies posint, email citext, last_update timestamptz);
CREATE TABLE measurement (city int, logdate date, peak int, PRIMARY KEY (city, logdate))
  PARTITION BY RANGE (logdate);
CREATE TABLE measurement_2023 PARTITION OF measurement FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE measurement_2024 PARTITION OF measurement FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE measurement_other PARTITION OF measurement DEFAULT;
CREATE INDEX measurement_peak ON measurement (peak);
CREATE TABLE city (id int PRIMARY KEY);
ALTER TABLE measurement_2023 ADD CONSTRAINT m2023_city FOREIGN KEY (city) REFERENCES city (id);
ALTER TABLE measurement_2024 ADD CONSTRAINT m2024_peak CHECK (peak < 1000);
CREATE INDEX measurement_2024_city ON measurement_2024 (city);
CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER m_other_keep BEFORE INSERT ON measurement_other FOR EACH ROW EXECUTE FUNCTION keep();
CREATE TABLE reading (id int PRIMARY KEY, city int, logdate date,
  FOREIGN KEY (city, logdate) REFERENCES measurement);
CREATE UNLOGGED TABLE audit (id serial PRIMARY KEY, note text COLLATE "C");
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW.last_update := '2099-01-01'; RETURN NEW; END $$;
CREATE FUNCTION log_film() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO audit (note) VALUES (NEW.title); RETURN NEW; END $$;
CREATE FUNCTION film_count(m mood) RETURNS bigint LANGUAGE sql AS
  $$ SELECT count(*) FROM film WHERE rating = m $$;
CREATE FUNCTION happy() RETURNS SETOF film LANGUAGE sql AS
  $$ SELECT * FROM film WHERE rating = 'happy' $$;
CREATE TRIGGER film_touch BEFORE INSERT OR UPDATE ON film FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TRIGGER film_audit AFTER INSERT ON film FOR EACH ROW EXECUTE FUNCTION log_film();
CREATE VIEW happy_films AS SELECT id, title FROM film WHERE rating = 'happy';
CREATE VIEW happy_titles WITH (security_barrier) AS SELECT title FROM happy_films
  WITH CASCADED CHECK OPTION;
CREATE MATERIALIZED VIEW not_yet AS SELECT id FROM film WITH NO DATA;
CREATE MATERIALIZED VIEW films_by_mood AS SELECT rating, count(*) AS n FROM film GROUP BY rating;
CREATE UNIQUE INDEX films_by_mood_rating ON films_by_mood (rating);
COMMENT ON TABLE film IS 'It''s a film; DROP TABLE audit; -- \ back\slash ''';
COMMENT ON COLUMN film.rating IS E'line one\nline two';
COMMENT ON TYPE mood IS 'feelings';
COMMENT ON SEQUENCE invoice_no IS 'invoices';
COMMENT ON VIEW happy_films IS 'the happy ones';
COMMENT ON FUNCTION touch() IS 'not recorded';
"#;

/// Rows written by the triggers (two films, two audit rows), and rows
/// written with the triggers off, so that a trigger firing during the
/// restore would show.
const DATA: &str = r#"
INSERT INTO film (title, release, rating, moods, home, span, size, sizes, copies, email) VALUES
  ('Alien', 1979, 'happy', ARRAY['sad', 'it''s']::mood[], ROW('1 Main St', 12345), '[1.5,2.5)', 'M', '{S,L}', 3, 'Ripley@Nostromo'),
  ('Brazil', 1985, 'sad', NULL, NULL, 'empty', NULL, NULL, 1, NULL);
SET session_replication_role = replica;
INSERT INTO film (title, release, rating, last_update) VALUES ('Heat', 1995, 'happy', '2020-01-01');
INSERT INTO audit (note) VALUES ('by hand');
SET session_replication_role = DEFAULT;
INSERT INTO city VALUES (1), (2), (3), (9);
INSERT INTO measurement VALUES (1, '2023-05-01', 20), (2, '2023-12-31', 25), (1, '2024-01-01', 30),
  (3, '2022-07-04', 40), (3, '2031-01-01', 50);
INSERT INTO reading VALUES (1, 1, '2023-05-01'), (2, 3, '2031-01-01');
SELECT nextval('invoice_no'), nextval('invoice_no');
REFRESH MATERIALIZED VIEW films_by_mood;
"#;

/// What the snapshot cannot record.
const UNSUPPORTED: &str = r#"
CREATE RULE keep_audit AS ON DELETE TO audit DO INSTEAD NOTHING;
ALTER TABLE audit ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_all ON audit USING (true);
"#;

const TABLES: &[&str] = &[
    "film",
    "city",
    "reading",
    "audit",
    "measurement",
    "measurement_2023",
    "measurement_2024",
    "measurement_other",
];

/// Every row of `table`, in text form, sorted.
fn rows(pg: &Server, db: &str, table: &str) -> String {
    pg.psql(
        db,
        &format!("SELECT string_agg(t::text, E'\\n' ORDER BY t::text) FROM ONLY {table} t"),
    )
}

/// The types, partitioning, sequences and indexes of a database.
const STRUCTURE: &str = r#"
SELECT string_agg(x, E'\n' ORDER BY x) FROM (
  SELECT 'type ' || n.nspname || '.' || t.typname || ' ' || t.typtype::text || ' '
    || coalesce(format_type(t.typbasetype, t.typtypmod), '-') || ' ' || t.typnotnull || ' '
    || coalesce(t.typdefault, '-')
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname IN ('public', 'shop') AND t.typtype IN ('e', 'c', 'd', 'r', 'm')
      AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
      AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = t.oid AND e.deptype = 'e')
  UNION ALL SELECT 'enum ' || enumtypid::regtype || ' ' || string_agg(enumlabel, ',' ORDER BY enumsortorder)
    FROM pg_enum GROUP BY enumtypid
  UNION ALL SELECT 'check ' || contypid::regtype || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE contypid <> 0
  UNION ALL SELECT 'range ' || rngtypid::regtype || ' ' || rngsubtype::regtype || ' ' || rngsubdiff::text
    FROM pg_range WHERE rngtypid::regtype::text NOT LIKE '%range' OR rngtypid::regtype::text = 'floatrange'
  UNION ALL SELECT 'attr ' || t.typname || ' ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
    FROM pg_type t JOIN pg_class c ON c.oid = t.typrelid AND c.relkind = 'c'
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
    WHERE NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = t.oid AND e.deptype = 'e')
  UNION ALL SELECT 'partition ' || c.relname || ' of ' || p.relname || ' ' || pg_get_expr(c.relpartbound, c.oid)
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
  UNION ALL SELECT 'partitioned ' || partrelid::regclass || ' ' || pg_get_partkeydef(partrelid)
    FROM pg_partitioned_table
  UNION ALL SELECT 'sequence ' || sequencename || ' ' || data_type || ' ' || start_value || ' '
    || increment_by || ' ' || coalesce(last_value, -1) FROM pg_sequences
  UNION ALL SELECT 'owned ' || d.objid::regclass || ' by ' || d.refobjid::regclass || '.' || d.refobjsubid
    FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' WHERE d.deptype = 'a'
  UNION ALL SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    || ' ' || convalidated FROM pg_constraint WHERE conrelid <> 0
      AND connamespace = 'public'::regnamespace
  UNION ALL SELECT 'index ' || indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
    AND tablename <> 'films_by_mood'
  UNION ALL SELECT 'extension ' || extname FROM pg_extension WHERE extname = 'citext'
  UNION ALL SELECT 'comment ' || c.relname || '.' || d.objsubid || ' ' || d.description
    FROM pg_description d JOIN pg_class c ON d.classoid = 'pg_class'::regclass AND c.oid = d.objoid
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'S')
  UNION ALL SELECT 'comment ' || t.typname || ' ' || d.description
    FROM pg_description d JOIN pg_type t ON d.classoid = 'pg_type'::regclass AND t.oid = d.objoid
    WHERE t.typnamespace = 'public'::regnamespace
  UNION ALL SELECT 'table ' || relname || ' ' || relpersistence::text FROM pg_class
    WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')
  UNION ALL SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
    || ' ' || coalesce((SELECT collname FROM pg_collation WHERE oid = a.attcollation), '-')
    || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-')
    FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
) s(x)
"#;

/// Functions, triggers, views and materialized views.
const CODE: &str = r#"
SELECT coalesce(string_agg(x, E'\n' ORDER BY x), '') FROM (
  SELECT 'function ' || p.oid::regprocedure || ' ' || md5(p.prosrc) FROM pg_proc p
    WHERE p.pronamespace = 'public'::regnamespace AND NOT EXISTS (SELECT 1 FROM pg_depend d
      WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype IN ('i', 'e'))
  UNION ALL SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text FROM pg_trigger t
    WHERE NOT t.tgisinternal
  UNION ALL SELECT 'index ' || indexname || ' ' || indexdef FROM pg_indexes WHERE tablename = 'films_by_mood'
  UNION ALL SELECT 'extension ' || extname FROM pg_extension WHERE extname <> 'citext'
  UNION ALL SELECT 'view comment ' || c.relname || ' ' || obj_description(c.oid, 'pg_class')
    FROM pg_class c WHERE c.relkind = 'v' AND obj_description(c.oid, 'pg_class') IS NOT NULL
  UNION ALL SELECT 'view ' || c.relname || ' ' || c.relkind::text || ' ' || c.relispopulated || ' '
    || coalesce(array_to_string(c.reloptions, ','), '-') || ' ' || pg_get_viewdef(c.oid)
    FROM pg_class c WHERE c.relkind IN ('v', 'm') AND c.relnamespace = 'public'::regnamespace
) s(x)
"#;

fn assert_same_tables(pg: &Server, src: &str, dst: &str) {
    for t in TABLES {
        assert_eq!(rows(pg, dst, t), rows(pg, src, t), "table {t}");
    }
    assert_eq!(pg.psql(dst, STRUCTURE), pg.psql(src, STRUCTURE));
}

fn source(pg: &Server) -> String {
    let src = pg.create_db("whole_src");
    pg.psql(&src, SCHEMA);
    pg.psql(&src, DATA);
    pg.psql(&src, UNSUPPORTED);
    src
}

#[test]
fn postgres_whole_schema_restores_into_an_empty_database() {
    let pg = sql_support::server();
    let src = source(pg);
    let w = Work::new();
    w.init();

    // The snapshot says what it cannot record, in text and JSON.
    let text = w.ok(&["snapshot", "--from", &src, "--name", "s"]);
    for want in [
        "warning: rule `keep_audit` on `audit` is not recorded",
        "warning: policy `audit_all` on table `audit` is not recorded",
        "warning: row-level security of table `audit`",
        "warning: 1 comment(s) (COMMENT ON functions,",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&w.ok(&["snapshot", "--from", &src, "--name", "s2", "--json"]))
            .unwrap();
    let warnings = json["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 4, "{warnings:?}");
    // One kind for the partitioned table, read through its parent.
    let stats = w.ok(&["stats", "s"]);
    assert!(
        stats.lines().any(|l| l.starts_with("measurement ")),
        "{stats}"
    );
    assert!(!stats.contains("measurement_2023"), "{stats}");

    // Without --trust-schema: the data and the types, no code.
    let plain = pg.create_db("whole_plain");
    let out = w.ok(&["restore", "s", "--to", &plain]);
    assert_same_tables(pg, &src, &plain);
    for skipped in [
        "function `public.touch()` was not recreated: it is code",
        "function `public.film_count(m public.mood)` was not recreated",
        "view `public.happy_films` was not recreated",
        "view `public.happy_titles` was not recreated",
        "materialized view `public.films_by_mood` was not recreated",
        "materialized view `public.not_yet` was not recreated",
        "trigger `film_touch` of table `film` was not recreated",
        "trigger `film_audit` of table `film` was not recreated",
        "trigger `m_other_keep` of table `measurement` was not recreated",
    ] {
        assert!(out.contains(skipped), "{skipped}: {out}");
    }
    assert!(
        out.contains("extension `dblink` was not recreated: it is code"),
        "{out}"
    );
    assert_eq!(pg.psql(&plain, CODE), "extension plpgsql");

    // With it: the code too, created after the data (no trigger fired:
    // the rows are the source's), and working afterwards.
    let dst = pg.create_db("whole_dst");
    let out = w.ok(&["restore", "s", "--to", &dst, "--trust-schema"]);
    assert!(!out.contains("was not recreated"), "{out}");
    assert_same_tables(pg, &src, &dst);
    assert_eq!(pg.psql(&dst, CODE), pg.psql(&src, CODE));
    for q in [
        "SELECT string_agg(title, ',' ORDER BY title) FROM happy_titles",
        "SELECT string_agg(rating || '=' || n, ',' ORDER BY rating) FROM films_by_mood",
        "SELECT film_count('happy')",
        "SELECT string_agg(title, ',' ORDER BY title) FROM happy()",
    ] {
        assert_eq!(pg.psql(&dst, q), pg.psql(&src, q), "{q}");
    }
    assert_eq!(
        pg.psql(
            &dst,
            "SELECT to_regclass('kindsnap_pending_constraints') IS NULL"
        ),
        "t"
    );

    // A second restore changes nothing in the schema, writes the rows
    // back and refreshes the materialized view (not the unpopulated one).
    let before = (pg.psql(&dst, STRUCTURE), pg.psql(&dst, CODE));
    let per_mood = "SELECT string_agg(rating || '=' || n, ',' ORDER BY rating) FROM films_by_mood";
    pg.psql(
        &dst,
        "UPDATE film SET rating = 'sad'; REFRESH MATERIALIZED VIEW films_by_mood",
    );
    assert_ne!(pg.psql(&dst, per_mood), pg.psql(&src, per_mood));
    w.ok(&["restore", "s", "--to", &dst, "--trust-schema", "--merge"]);
    assert_eq!((pg.psql(&dst, STRUCTURE), pg.psql(&dst, CODE)), before);
    assert_same_tables(pg, &src, &dst);
    assert_eq!(pg.psql(&dst, per_mood), pg.psql(&src, per_mood));

    // Sequences go on where the source's do; rows land in partitions.
    let next = "SELECT nextval('invoice_no') || ',' || nextval('film_ids')";
    assert_eq!(pg.psql(&dst, next), pg.psql(&src, next));
    let insert = "INSERT INTO film (title) VALUES ('new') RETURNING id, last_update::date";
    assert_eq!(pg.psql(&dst, insert), pg.psql(&src, insert));
    assert_eq!(
        pg.psql(&dst, "SELECT note FROM audit ORDER BY id DESC LIMIT 1"),
        "new"
    );
    let routed = "INSERT INTO measurement VALUES (9, '2024-06-01', 1) RETURNING tableoid::regclass";
    assert_eq!(pg.psql(&dst, routed), "measurement_2024");
}

#[test]
fn postgres_kinds_keep_the_types_and_tampered_objects_are_refused() {
    let pg = sql_support::server();
    let src = pg.create_db("obj_src");
    pg.psql(
        &src,
        "CREATE TYPE mood AS ENUM ('a', 'b'); CREATE TABLE film (id int PRIMARY KEY, m mood); \
         CREATE TABLE other (id int PRIMARY KEY); CREATE VIEW other_ids AS SELECT id FROM other; \
         CREATE VIEW film_ids AS SELECT id FROM film; CREATE VIEW both_ids AS \
         SELECT id FROM film_ids UNION SELECT id FROM other_ids; \
         INSERT INTO film VALUES (1, 'a'), (2, 'b'); INSERT INTO other VALUES (1); \
         CREATE AGGREGATE group_concat(text) (SFUNC = textcat, STYPE = text); \
         CREATE VIEW moods AS SELECT group_concat(m::text) AS all FROM film;",
    );
    let w = Work::new();
    w.init();
    // --kinds: the types come along; views reading a table left out are
    // warnings (also those reading such a view).
    let out = w.ok(&["snapshot", "--from", &src, "--kinds", "film", "--name", "k"]);
    for view in [
        "other_ids` is not recorded: it reads `other`",
        "both_ids` is not recorded",
    ] {
        assert!(
            out.contains(&format!("warning: view `public.{view}")),
            "{view}: {out}"
        );
    }
    assert!(
        out.contains(
            "warning: aggregate or window function `public.group_concat(text)` is not recorded"
        ),
        "{out}"
    );
    // A view the target refuses (its aggregate was not recorded) is a
    // warning; the rest is restored.
    let dst = pg.create_db("obj_dst");
    let out = w.ok(&["restore", "k", "--to", &dst, "--trust-schema"]);
    assert!(
        out.contains("warning: `CREATE VIEW \"public\".\"moods\" AS…` from the snapshot could not be created")
            && out.contains("group_concat"),
        "{out}"
    );
    assert_eq!(rows(pg, &dst, "film"), rows(pg, &src, "film"));
    assert_eq!(
        pg.psql(
            &dst,
            "SELECT to_regclass('film_ids') IS NOT NULL, to_regclass('other_ids') IS NULL, \
             to_regclass('other') IS NULL, enum_range(NULL::mood)::text"
        ),
        "t|t|t|{a,b}"
    );

    // A recorded type whose statement does more than create it refuses
    // the restore, trusted or not, before anything is written.
    let file = w.path("k.jsonl");
    w.ok(&["export", "k", "--to", &format!("jsonl:{}", file.display())]);
    let text = std::fs::read_to_string(&file).unwrap();
    let mut edited = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let mut e: serde_json::Value = serde_json::from_str(line).unwrap();
            if e["key"]["path"][0]["name"] != "type" {
                return line.to_string();
            }
            edited += 1;
            e["properties"]["ddl"] = serde_json::json!({"arrayValue": {"values": [{
                "stringValue": "CREATE TYPE public.mood AS ENUM ('a'); CREATE TABLE public.evil (x int)",
                "excludeFromIndexes": true
            }]}});
            e.to_string()
        })
        .collect();
    assert_eq!(edited, 1, "{text}");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let jsonl = format!("jsonl:{}", file.display());
    w.ok(&["snapshot", "--from", &jsonl, "--name", "evil"]);
    for trust in [false, true] {
        let fresh = pg.create_db("obj_evil");
        let mut args = vec!["restore", "evil", "--to", &fresh];
        if trust {
            args.push("--trust-schema");
        }
        let err = w.fails(&args);
        assert!(
            err.contains("snapshot `evil`: refusing the recorded schema of type `public.mood`: 2 statements in one entry"),
            "{err}"
        );
        assert_eq!(
            pg.psql(
                &fresh,
                "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            ),
            "0"
        );
    }
}

/// A trusted restore killed at several points and run again gives the
/// same database as one that was not interrupted: views and triggers that
/// waited for the end of the load are created by the resumed run.
#[test]
fn postgres_whole_schema_restore_killed_and_resumed() {
    let pg = sql_support::server();
    let src = pg.create_db("whole_resume_src");
    pg.psql(
        &src,
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE TABLE m (id int, at date, mood mood, body text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
         CREATE TABLE m_old PARTITION OF m FOR VALUES FROM ('2000-01-01') TO ('2020-01-01');
         CREATE TABLE m_new PARTITION OF m DEFAULT;
         CREATE TABLE log (id serial PRIMARY KEY, note text);
         CREATE FUNCTION log_m() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO log (note) VALUES (NEW.id); RETURN NEW; END $$;
         CREATE TRIGGER m_log AFTER INSERT ON m FOR EACH ROW EXECUTE FUNCTION log_m();
         INSERT INTO m SELECT i, date '2010-01-01' + i % 7000, CASE WHEN i % 3 = 0 THEN 'sad' ELSE 'happy' END::mood,
           repeat('x', 200) FROM generate_series(1, 40000) i;
         CREATE VIEW sad AS SELECT id, at FROM m WHERE mood = 'sad';
         CREATE MATERIALIZED VIEW per_mood AS SELECT mood, count(*) FROM m GROUP BY mood;",
    );
    let w = Work::new();
    w.init();
    w.ok(&["snapshot", "--from", &src, "--name", "s"]);
    let check = |to: &str| {
        for t in ["m_old", "m_new", "log"] {
            assert_eq!(rows(pg, to, t), rows(pg, &src, t), "{t} in {to}");
        }
        assert_eq!(pg.psql(to, STRUCTURE), pg.psql(&src, STRUCTURE), "{to}");
        assert_eq!(pg.psql(to, CODE), pg.psql(&src, CODE), "{to}");
        assert_eq!(
            pg.psql(
                to,
                "SELECT to_regclass('kindsnap_pending_constraints') IS NULL"
            ),
            "t"
        );
    };
    let t = std::time::Instant::now();
    let first = pg.create_db("whole_resume");
    w.ok(&["restore", "s", "--to", &first, "--trust-schema"]);
    let full = t.elapsed();
    check(&first);
    let mut resumed = 0;
    for i in 1..=3 {
        let to = pg.create_db("whole_resume");
        let mut child = std::process::Command::new(common::bin())
            .current_dir(w.dir.path())
            .arg("--repo")
            .arg(w.repo())
            .env("KINDSNAP_CHECKPOINT_EVERY", "700")
            .args(["restore", "s", "--to", &to, "--trust-schema"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(i as f64 / 4.0));
        let _ = child.kill();
        let _ = child.wait();
        let out = w.ok(&["restore", "s", "--to", &to, "--trust-schema", "--merge"]);
        if out.contains("resumed an interrupted restore") {
            resumed += 1;
        }
        check(&to);
    }
    eprintln!("{resumed} of 3 whole-schema restores resumed");
}
