//! A parsed search as an FTS5 query. Every term becomes an FTS5 string (`"…"`, its own `"`
//! doubled), which FTS5 reads as text for the tokenizer and never as an operator, column filter
//! or `NEAR` group; the only syntax written around them is `AND`, `OR`, `NOT`, `*` and
//! parentheses, from the query's structure. So no text a person types becomes FTS5 syntax.

use crate::domain::{SearchQuery, Term};

/// The FTS5 `MATCH` expression for `query`: its groups `AND`ed (each an `OR` of its terms),
/// then `NOT` the terms to leave out.
pub fn fts5_expression(query: &SearchQuery) -> String {
    let all: Vec<String> = query
        .all
        .iter()
        .map(|group| match group.as_slice() {
            [one] => string(one),
            several => format!("({})", several.iter().map(string).collect::<Vec<_>>().join(" OR ")),
        })
        .collect();
    let all = all.join(" AND ");
    if query.none.is_empty() {
        return all;
    }
    let none: Vec<String> = query.none.iter().map(string).collect();
    format!("({all}) NOT ({})", none.join(" OR "))
}

/// One term as an FTS5 string, `*` after it for a prefix.
fn string(term: &Term) -> String {
    let quoted = format!("\"{}\"", term.text.replace('"', "\"\""));
    if term.prefix { format!("{quoted} *") } else { quoted }
}

/// Whether `error` is FTS5 refusing a query (rather than the database failing): the
/// person's to fix, a `422`, never a `500`. The parser is meant never to let one through.
/// FTS5 says so with SQLite's generic `SQLITE_ERROR` and messages of many shapes
/// (`fts5: syntax error near …`, `unterminated string`, `no such column: …`); a failure of the
/// database (I/O, a full disk, a damaged file, a lock) has a code of its own.
pub fn refused_query(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|db| db.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 1)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, SqliteConnection};

    use super::*;

    /// An in-memory index made as `migrations/sqlite/0010_search.sql` makes it, with a few rows.
    async fn index() -> SqliteConnection {
        let mut conn = SqliteConnectOptions::new()
            .in_memory(true)
            .connect()
            .await
            .expect("in-memory database");
        sqlx::raw_sql(
            "CREATE VIRTUAL TABLE message_search USING fts5 (text, tokenize = 'unicode61 remove_diacritics 2', \
                 prefix = '3', columnsize = 0); \
             INSERT INTO message_search (message_search, rank) VALUES ('secure-delete', 1); \
             INSERT INTO message_search (rowid, text) VALUES (1, 'Café au lait, deploy at noon'), \
                 (2, 'release notes: NEAR the end AND after'), (3, 'שלום עולם مرحبا 🎉 emoji'), \
                 (4, 'text:col ^start (paren) \"quoted\" * star');",
        )
        .execute(&mut conn)
        .await
        .expect("make the index");
        conn
    }

    async fn run(conn: &mut SqliteConnection, expression: &str) -> Result<Vec<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT rowid FROM message_search WHERE message_search MATCH ? ORDER BY rowid DESC")
            .bind(expression)
            .fetch_all(conn)
            .await
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn queries_find_what_they_say() {
        runtime().block_on(async {
            let mut conn = index().await;
            for (raw, found) in [
                ("cafe", vec![1]),
                ("CAFÉ deploy", vec![1]),
                ("\"au lait\"", vec![1]),
                ("\"lait au\"", vec![]),
                ("dep*", vec![1]),
                ("rel* OR cafe", vec![2, 1]),
                ("NEAR AND", vec![2]),
                ("notes -after", vec![]),
                ("noon -after", vec![1]),
                ("text:col", vec![4]),
                ("^start", vec![4]),
                ("(paren)", vec![4]),
                ("שלום", vec![3]),
                ("مرحبا emoji", vec![3]),
            ] {
                let query = SearchQuery::parse(raw).expect(raw);
                let expression = fts5_expression(&query);
                assert_eq!(
                    run(&mut conn, &expression).await.expect(&expression),
                    found,
                    "{raw} as {expression}"
                );
            }
        });
    }

    /// Pieces of the query syntaxes people and attackers reach for.
    fn hostile() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("\"".to_owned()),
            Just("-".to_owned()),
            Just("*".to_owned()),
            Just(" ".to_owned()),
            Just("OR".to_owned()),
            Just("AND".to_owned()),
            Just("NOT".to_owned()),
            Just("NEAR(".to_owned()),
            Just("NEAR/2".to_owned()),
            Just("(".to_owned()),
            Just(")".to_owned()),
            Just("^".to_owned()),
            Just(":".to_owned()),
            Just("text:".to_owned()),
            Just("{text}".to_owned()),
            Just("+".to_owned()),
            Just("\0".to_owned()),
            Just("\u{2}".to_owned()),
            Just("''".to_owned()),
            Just("🎉".to_owned()),
            Just("👩‍👩‍👧".to_owned()),
            Just("\u{202E}".to_owned()),
            Just("שלום".to_owned()),
            Just("مرحبا".to_owned()),
            Just("e\u{301}".to_owned()),
            Just("abc".to_owned()),
            Just("deploy".to_owned()),
            "[a-z]{1,6}",
            any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Whatever is typed, the parser refuses it or FTS5 runs what it made of it.
        #[test]
        fn no_text_makes_an_expression_fts5_refuses(raw in prop_oneof![hostile(), any::<String>()]) {
            let Ok(query) = SearchQuery::parse(&raw) else { return Ok(()) };
            let expression = fts5_expression(&query);
            let outcome = runtime().block_on(async {
                let mut conn = index().await;
                run(&mut conn, &expression).await
            });
            prop_assert!(outcome.is_ok(), "{raw:?} became {expression:?}: {outcome:?}");
        }
    }

    #[test]
    fn fts5_syntax_errors_are_told_apart_from_failures() {
        runtime().block_on(async {
            let mut conn = index().await;
            for bad in [
                "\"unclosed",
                "NEAR(",
                "a AND",
                "nosuchcolumn:x",
                "*",
                "a NOT",
                "(a",
                "text:",
            ] {
                let error = run(&mut conn, bad).await.expect_err(bad);
                assert!(refused_query(&error), "{bad}: {error}");
            }
            assert!(!refused_query(&sqlx::Error::RowNotFound));
        });
    }
}
