//! The PostgreSQL schema (`migrations/postgres/`), in a private cluster (`common::postgres`),
//! before any server runs on it: that its append lock keeps ids in commit order, so a reader
//! resuming from its cursor skips nothing, and that without the lock the same reader does skip
//! (what the test would catch); that it refuses what would undo that; and that it is SQLite's
//! schema, tables, columns and views, for people at the prompt.
//!
//! Issue 17's first proof, in Rust: SCALE-OUT.md §2.1 and §2.2(a), `skiptest_trigger.py`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chat::eventlog::postgres::{self, APPEND_LOCK, MIGRATIONS};
use chat::eventlog::sqlite::{self, Durability};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Connection, Row};

use crate::common::TestDb;
use crate::common::postgres::{PgDb, database};

/// Concurrent writers, as in SCALE-OUT.md's measurement (14,363 of 44,070 skipped without a lock).
const WRITERS: u64 = 16;
/// How long the writers write, in each half.
const RUN: Duration = Duration::from_secs(5);

/// A database in the shared cluster with the schema applied by the server's migrator.
async fn migrated() -> (PgDb, PgPool) {
    let db = database().await;
    let pool = db.pool().await;
    MIGRATIONS.run(&pool).await.expect("apply migrations/postgres");
    (db, pool)
}

/// A tiny xorshift, so that each writer's choices differ and no crate is needed for it.
struct Dice(u64);

impl Dice {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in [0, 1).
    fn roll(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What a reader that resumed from its cursor saw, against what the table holds.
#[derive(Debug)]
struct Race {
    /// Rows the writers committed.
    committed: u64,
    /// Rows in `events` afterwards: the same, or the run measured nothing.
    stored: usize,
    /// Ids in the table the reader never saw: what a stream resuming from its cursor loses.
    skipped: usize,
    /// Ids the reader saw twice, and ids that came after a higher one.
    duplicated: usize,
    out_of_order: usize,
    /// Ids the reader saw while the writers were writing (not only in the catch-up after), and
    /// the reads it made meanwhile: without these the race was not run.
    seen_while_writing: usize,
    reads_while_writing: u64,
}

/// One read of the reader: the ids after `cursor`, in id order; the cursor moves to the last.
async fn read_after(conn: &mut PgConnection, cursor: &mut i64, seen: &mut Vec<i64>) -> usize {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM events WHERE id > $1 ORDER BY id LIMIT 1000")
        .bind(*cursor)
        .fetch_all(conn)
        .await
        .expect("read after the cursor");
    if let Some(&last) = ids.last() {
        *cursor = last;
    }
    seen.extend_from_slice(&ids);
    ids.len()
}

/// The skip test: `WRITERS` connections commit small transactions of a few events for `RUN`
/// (half of them write another table first, one in five waits up to 2 ms before its commit, as
/// a batch would); one reader polls `id > cursor ORDER BY id` and moves its cursor to the last
/// id it got, as a node's tailer or a stream does. Then it catches up once more.
async fn race(db: &PgDb, pool: &PgPool) -> Race {
    sqlx::raw_sql(
        "CREATE TABLE touch (k integer PRIMARY KEY, n integer NOT NULL); \
         INSERT INTO touch SELECT g, 0 FROM generate_series(0, 7) AS g; \
         INSERT INTO users (username, password_hash) VALUES ('writer', 'x');",
    )
    .execute(pool)
    .await
    .expect("set up the race");
    let (user, room): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT id FROM users WHERE username = 'writer'), (SELECT id FROM rooms WHERE name = 'general')",
    )
    .fetch_one(pool)
    .await
    .expect("user and room");

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let mut conn = db.connect().await;
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut cursor = 0i64;
            let mut reads = 0u64;
            while !stop.load(Ordering::Acquire) {
                read_after(&mut conn, &mut cursor, &mut seen).await;
                reads += 1;
            }
            let while_writing = seen.len();
            while read_after(&mut conn, &mut cursor, &mut seen).await > 0 {}
            (seen, while_writing, reads)
        })
    };

    let deadline = Instant::now() + RUN;
    let mut writers = Vec::new();
    for seed in 0..WRITERS {
        let mut conn = db.connect().await;
        writers.push(tokio::spawn(async move {
            let mut dice = Dice::new(seed + 1);
            let mut committed = 0u64;
            while Instant::now() < deadline {
                let mut tx = conn.begin().await.expect("BEGIN");
                if dice.roll() < 0.5 {
                    sqlx::query("UPDATE touch SET n = n + 1 WHERE k = $1")
                        .bind((seed % 8) as i32)
                        .execute(&mut *tx)
                        .await
                        .expect("UPDATE touch");
                }
                let rows = 1 + (dice.roll() * 3.0) as i64;
                // No lock taken here: the writer forgets it, as someone at psql would.
                sqlx::query(
                    "INSERT INTO events (kind, scope, room_id, user_id, body) \
                     SELECT 'message', 'room', $1, $2, 'x' FROM generate_series(1, $3)",
                )
                .bind(room)
                .bind(user)
                .bind(rows)
                .execute(&mut *tx)
                .await
                .expect("INSERT INTO events");
                if dice.roll() < 0.2 {
                    tokio::time::sleep(Duration::from_secs_f64(dice.roll() * 0.002)).await;
                }
                tx.commit().await.expect("COMMIT");
                committed += rows as u64;
            }
            committed
        }));
    }
    let mut committed = 0;
    for writer in writers {
        committed += writer.await.expect("writer");
    }
    stop.store(true, Ordering::Release);
    let (seen, seen_while_writing, reads_while_writing) = reader.await.expect("reader");

    let stored: Vec<i64> = sqlx::query_scalar("SELECT id FROM events")
        .fetch_all(pool)
        .await
        .expect("every id");
    let unique: BTreeSet<i64> = seen.iter().copied().collect();
    Race {
        committed,
        stored: stored.len(),
        skipped: stored.iter().filter(|id| !unique.contains(id)).count(),
        duplicated: seen.len() - unique.len(),
        out_of_order: seen.windows(2).filter(|pair| pair[1] <= pair[0]).count(),
        seen_while_writing,
        reads_while_writing,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_append_lock_a_resuming_reader_skips_nothing_and_without_it_it_does() {
    let (db, pool) = migrated().await;
    let locked = race(&db, &pool).await;
    eprintln!("with the trigger: {locked:?}");
    assert_eq!(locked.stored as u64, locked.committed, "{locked:?}");
    assert!(locked.committed >= 500, "too few events to show anything: {locked:?}");
    assert!(
        locked.seen_while_writing * 2 >= locked.stored && locked.reads_while_writing >= 100,
        "the reader did not read while the writers wrote: {locked:?}"
    );
    assert_eq!(
        locked.skipped, 0,
        "ids out of commit order under the append lock: {locked:?}"
    );
    assert_eq!((locked.duplicated, locked.out_of_order), (0, 0), "{locked:?}");

    let (db, pool) = migrated().await;
    sqlx::query("DROP TRIGGER events_append_lock ON events")
        .execute(&pool)
        .await
        .expect("drop the trigger");
    let unlocked = race(&db, &pool).await;
    eprintln!("without the trigger: {unlocked:?}");
    assert_eq!(unlocked.stored as u64, unlocked.committed, "{unlocked:?}");
    assert!(
        unlocked.skipped > 0,
        "without the append lock the reader skipped nothing, so the test cannot tell: {unlocked:?}"
    );
}

/// Whether another session could take the append lock right now. In autocommit, a lock it
/// gets is released as the statement ends.
async fn lock_is_free(other: &mut PgConnection) -> bool {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(APPEND_LOCK)
        .fetch_one(other)
        .await
        .expect("pg_try_advisory_xact_lock")
}

#[tokio::test]
async fn a_plain_insert_takes_the_append_lock_and_ids_cannot_be_given_by_hand() {
    let (db, pool) = migrated().await;
    sqlx::query("INSERT INTO users (username, password_hash) VALUES ('ann', 'x')")
        .execute(&pool)
        .await
        .expect("a user");
    let insert = "INSERT INTO events (kind, scope, user_id, body) \
                  SELECT 'status', 'everyone', id, 'online' FROM users WHERE username = 'ann'";

    // What psql would send: BEGIN, an INSERT, nothing about locks.
    let mut psql = db.connect().await;
    let mut other = db.connect().await;
    assert!(lock_is_free(&mut other).await);
    sqlx::raw_sql("BEGIN").execute(&mut psql).await.expect("BEGIN");
    assert!(lock_is_free(&mut other).await, "BEGIN alone takes no lock");
    sqlx::raw_sql(insert).execute(&mut psql).await.expect("INSERT");
    assert!(
        !lock_is_free(&mut other).await,
        "an INSERT into events did not take the append lock"
    );
    sqlx::raw_sql("COMMIT").execute(&mut psql).await.expect("COMMIT");
    assert!(lock_is_free(&mut other).await, "the lock outlived the transaction");

    // ENABLE ALWAYS: the trigger fires for a replica's apply and for anyone who turns
    // ordinary triggers off this way.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET session_replication_role = replica; BEGIN; {insert}"
    )))
    .execute(&mut psql)
    .await
    .expect("INSERT as a replica");
    assert!(
        !lock_is_free(&mut other).await,
        "the trigger did not fire under session_replication_role = replica"
    );
    sqlx::raw_sql("ROLLBACK; RESET session_replication_role")
        .execute(&mut psql)
        .await
        .expect("ROLLBACK");

    // Sign-outs are read after a cursor too, so they are drawn under the same lock.
    sqlx::raw_sql("BEGIN; INSERT INTO session_ends (token_hash) VALUES ('\\x00')")
        .execute(&mut psql)
        .await
        .expect("INSERT INTO session_ends");
    assert!(
        !lock_is_free(&mut other).await,
        "an INSERT into session_ends did not take the append lock"
    );
    sqlx::raw_sql("ROLLBACK").execute(&mut psql).await.expect("ROLLBACK");

    // The trigger is the statement-level one: a row trigger fires after the id is drawn.
    let triggers: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT event_object_table::text, action_timing::text, action_orientation::text, event_manipulation::text \
         FROM information_schema.triggers WHERE trigger_name LIKE '%append_lock' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("triggers");
    let statement = |table: &str| {
        (
            table.to_owned(),
            "BEFORE".to_owned(),
            "STATEMENT".to_owned(),
            "INSERT".to_owned(),
        )
    };
    assert_eq!(triggers, vec![statement("events"), statement("session_ends")]);
    let enabled: Vec<String> =
        sqlx::query_scalar("SELECT tgenabled::text FROM pg_trigger WHERE tgname LIKE '%append_lock' ORDER BY tgname")
            .fetch_all(&pool)
            .await
            .expect("pg_trigger");
    assert_eq!(enabled, ["A", "A"], "ENABLE ALWAYS");

    // CACHE 1: with a cache, a session draws ids it set aside before it took the lock.
    let sequences: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT sequencename::text, cache_size, increment_by FROM pg_sequences \
         WHERE sequencename IN ('events_id_seq', 'session_ends_seq_seq') ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("pg_sequences");
    assert_eq!(
        sequences,
        [
            ("events_id_seq".to_owned(), 1, 1),
            ("session_ends_seq_seq".to_owned(), 1, 1)
        ]
    );

    // GENERATED ALWAYS: an id given by hand is refused, not slipped in below the head.
    let error = sqlx::query(
        "INSERT INTO events (id, kind, scope, user_id, body) \
         SELECT 1000, 'status', 'everyone', id, 'away' FROM users WHERE username = 'ann'",
    )
    .execute(&pool)
    .await
    .expect_err("an explicit id is refused");
    assert_eq!(
        error.as_database_error().and_then(|db| db.code()).as_deref(),
        Some("428C9"),
        "{error}"
    );

    // The head is the newest id handed out (here by the committed insert), and stays there
    // when a later transaction rolls back: an id is never handed out twice.
    let newest: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{insert} RETURNING id")))
        .fetch_one(&pool)
        .await
        .expect("INSERT");
    assert_eq!(postgres::head(&pool).await.expect("head"), newest);
    let mut tx = pool.begin().await.expect("BEGIN");
    sqlx::raw_sql(insert).execute(&mut *tx).await.expect("INSERT");
    tx.rollback().await.expect("ROLLBACK");
    assert_eq!(
        postgres::head(&pool).await.expect("head"),
        newest + 1,
        "an id is never handed out twice"
    );
}

#[tokio::test]
async fn the_schema_applies_to_an_empty_database_and_reads_at_the_prompt_as_on_sqlite() {
    let db = database().await;
    let pool = postgres::open(&db.url).await.expect("open an empty database");
    let applied: Vec<(i64, bool)> = sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&pool)
        .await
        .expect("_sqlx_migrations");
    let shipped: Vec<(i64, bool)> = MIGRATIONS.iter().map(|migration| (migration.version, true)).collect();
    assert_eq!(applied, shipped);
    pool.close().await;
    // A second start (another node, a restart) finds it done.
    let pool = postgres::open(&db.url).await.expect("open it again");
    assert_eq!(postgres::head(&pool).await.expect("head"), 0);

    // Case-insensitive names, as COLLATE NOCASE; the look-alike skeleton.
    sqlx::raw_sql(
        "INSERT INTO users (username, password_hash) VALUES ('Alice', 'x'), ('b0b', 'y'); \
         INSERT INTO sessions (token_hash, user_id) SELECT '\\x01', id FROM users WHERE username = 'Alice';",
    )
    .execute(&pool)
    .await
    .expect("users");
    let taken = sqlx::query("INSERT INTO users (username, password_hash) VALUES ('ALICE', 'z')")
        .execute(&pool)
        .await
        .expect_err("ALICE is Alice");
    assert!(
        taken.as_database_error().is_some_and(|db| db.is_unique_violation()),
        "{taken}"
    );
    let skeletons: Vec<String> = sqlx::query_scalar("SELECT skeleton FROM users ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("skeletons");
    assert_eq!(skeletons, ["alice", "bob"]);
    let session_id: String = sqlx::query_scalar("SELECT id FROM sessions")
        .fetch_one(&pool)
        .await
        .expect("session id");
    assert!(
        session_id.len() == 16 && session_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{session_id}"
    );

    // A message, its edit, a status, a membership and a read cursor, written as SQL.
    sqlx::raw_sql(
        "INSERT INTO events (kind, scope, room_id, user_id, body) \
             SELECT 'message', 'room', r.id, u.id, 'Café at noon' FROM rooms r, users u WHERE r.name = 'general' AND u.username = 'Alice'; \
         INSERT INTO events (kind, scope, room_id, user_id, message_id, body) \
             SELECT 'edit', 'room', room_id, user_id, id, 'Café at one' FROM events WHERE kind = 'message'; \
         INSERT INTO events (kind, scope, user_id, body) SELECT 'status', 'everyone', id, 'online' FROM users WHERE username = 'b0b'; \
         INSERT INTO room_access (room_id, user_id, from_id) \
             SELECT r.id, u.id, (SELECT max(id) FROM events) FROM rooms r, users u WHERE r.name = 'general' AND u.username = 'b0b'; \
         INSERT INTO reads (user_id, room_id, up_to) SELECT u.id, r.id, 1 FROM rooms r, users u WHERE r.name = 'general' AND u.username = 'b0b';",
    )
    .execute(&pool)
    .await
    .expect("write as an operator would");

    let time = |text: &str| {
        let bytes = text.as_bytes();
        text.len() == 24
            && bytes.iter().enumerate().all(|(i, b)| match i {
                4 | 7 => *b == b'-',
                10 => *b == b'T',
                13 | 16 => *b == b':',
                19 => *b == b'.',
                23 => *b == b'Z',
                _ => b.is_ascii_digit(),
            })
    };
    let row = sqlx::query("SELECT id, room, username, content, created_at, edited_at, reply_to FROM messages")
        .fetch_one(&pool)
        .await
        .expect("SELECT * FROM messages");
    assert_eq!(row.get::<i64, _>("id"), 1);
    assert_eq!(row.get::<String, _>("room"), "general");
    assert_eq!(row.get::<String, _>("username"), "Alice");
    assert_eq!(row.get::<String, _>("content"), "Café at one", "the newest edit's text");
    let created: String = row.get("created_at");
    let edited: String = row.get("edited_at");
    assert!(
        time(&created) && time(&edited) && edited >= created,
        "{created} {edited}"
    );
    assert_eq!(row.get::<Option<i64>, _>("reply_to"), None);

    let edits: Vec<(i64, String)> = sqlx::query_as("SELECT message_id, content FROM message_edits")
        .fetch_all(&pool)
        .await
        .expect("message_edits");
    assert_eq!(edits, [(1, "Café at one".to_owned())]);
    let statuses: Vec<(String, String)> = sqlx::query_as("SELECT username, status FROM status_changes")
        .fetch_all(&pool)
        .await
        .expect("status_changes");
    assert_eq!(statuses, [("b0b".to_owned(), "online".to_owned())]);
    let members: Vec<(String, String, String)> = sqlx::query_as("SELECT room, username, joined_at FROM memberships")
        .fetch_all(&pool)
        .await
        .expect("memberships");
    assert!(
        matches!(members.as_slice(), [(room, user, at)] if room == "general" && user == "b0b" && time(at)),
        "{members:?}"
    );
    let cursors: Vec<(String, String, i64, String)> =
        sqlx::query_as("SELECT username, room, up_to, notify FROM read_cursors")
            .fetch_all(&pool)
            .await
            .expect("read_cursors");
    assert_eq!(
        cursors,
        [("b0b".to_owned(), "general".to_owned(), 1, "mentions".to_owned())]
    );

    // Search as FTS5's `unicode61 remove_diacritics 2` searches: any script, no case, no
    // accents, prefixes.
    sqlx::raw_sql(
        "INSERT INTO message_search (message_id, text) VALUES (1, 'Café au lait, deploy at noon'); \
         INSERT INTO events (kind, scope, room_id, user_id, body) SELECT 'message', 'room', 1, 1, 'x' FROM generate_series(1, 2); \
         INSERT INTO message_search (message_id, text) VALUES (4, 'שלום עולם مرحبا 🎉'), (5, 'ΣΟΦΙΑ release notes');",
    )
    .execute(&pool)
    .await
    .expect("index messages");
    for (query, found) in [
        ("cafe", vec![1]),
        ("CAFÉ & deploy", vec![1]),
        ("dep:*", vec![1]),
        ("שלום", vec![4]),
        ("مرحبا", vec![4]),
        ("σοφια", vec![5]),
        ("rel:* | noon", vec![5, 1]),
        ("notes & !release", vec![]),
    ] {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT message_id FROM message_search WHERE words @@ to_tsquery('chat_search', $1) ORDER BY message_id DESC",
        )
        .bind(query)
        .fetch_all(&pool)
        .await
        .expect(query);
        assert_eq!(ids, found, "{query}");
    }
    // With three rows the planner rightly scans the table; told not to, it must find the GIN
    // index usable for the query the server will send.
    let mut conn = db.connect().await;
    sqlx::raw_sql("SET enable_seqscan = off")
        .execute(&mut conn)
        .await
        .expect("SET");
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN (COSTS OFF) SELECT message_id FROM message_search WHERE words @@ to_tsquery('chat_search', 'dep:*')",
    )
    .fetch_all(&mut conn)
    .await
    .expect("EXPLAIN");
    assert!(
        plan.iter().any(|line| line.contains("message_search_words")),
        "{plan:?}"
    );
}

/// Every table and view of the SQLite schema, with its columns, on the Postgres side: a SQLite
/// migration that is not mirrored in `migrations/postgres/` fails here. What Postgres has beyond
/// it is listed, and only that.
#[tokio::test]
async fn every_sqlite_table_and_column_is_in_the_postgres_schema() {
    let file = TestDb::new();
    let opened = sqlite::open(&file.path(), Durability::Normal)
        .await
        .expect("open SQLite");
    let mut lite = opened.writer;
    let rows: Vec<(String, String)> = sqlx::query_as(
        // `xinfo`, for generated columns (`skeleton`); hidden 1 is FTS5's own (`rank`).
        "SELECT m.name, p.name FROM sqlite_schema AS m, pragma_table_xinfo(m.name) AS p \
         WHERE p.hidden <> 1 AND m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE 'message_search_%'",
    )
    .fetch_all(&mut lite)
    .await
    .expect("SQLite's columns");
    let mut sqlite_schema: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (table, column) in rows {
        sqlite_schema.entry(table).or_default().insert(column);
    }
    assert!(sqlite_schema.len() > 10, "{sqlite_schema:?}");

    let (_db, pool) = migrated().await;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = 'public'",
    )
    .fetch_all(&pool)
    .await
    .expect("Postgres's columns");
    let mut pg_schema: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (table, column) in rows {
        pg_schema.entry(table).or_default().insert(column);
    }

    // What several nodes share, and what stands for FTS5's rowid and index.
    let beyond: BTreeMap<&str, &[&str]> = [
        ("message_search", &["message_id", "words"][..]),
        ("nodes", &["node_id", "started_at", "heartbeat_at"][..]),
        ("presence_streams", &["node_id", "user_id", "streams"][..]),
        ("session_ends", &["seq", "token_hash", "at"][..]),
    ]
    .into_iter()
    .collect();
    for (table, columns) in &sqlite_schema {
        let Some(pg) = pg_schema.get(table) else {
            panic!("SQLite's {table} is not in migrations/postgres/");
        };
        let missing: Vec<&String> = columns.difference(pg).collect();
        assert!(missing.is_empty(), "{table} has no {missing:?} on Postgres");
    }
    for (table, columns) in &pg_schema {
        let extra: BTreeSet<&str> = columns
            .iter()
            .map(String::as_str)
            .filter(|column| !sqlite_schema.get(table).is_some_and(|lite| lite.contains(*column)))
            .collect();
        let allowed: BTreeSet<&str> = beyond
            .get(table.as_str())
            .copied()
            .unwrap_or_default()
            .iter()
            .copied()
            .collect();
        assert_eq!(extra, allowed, "{table}: Postgres has columns SQLite has not");
    }
}
