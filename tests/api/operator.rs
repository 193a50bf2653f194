//! `chat-server admin ...` against the database file, beside the running server: the operator
//! who lost the admin password resets it, makes accounts and promotes, and every mistake
//! is a readable line and a failing exit status.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::common::{Server, TestDb, WAIT};

/// Runs `chat-server --db DB admin ARGS`, writing `stdin` to it.
fn admin(db: &TestDb, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .arg("--db")
        .arg(db.path())
        .arg("admin")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run chat-server admin");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn said(output: &Output) -> (bool, String, String) {
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    )
}

#[tokio::test]
async fn the_operator_resets_a_password_makes_accounts_promotes_and_deactivates_beside_the_running_server() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;

    let (ok, out, _) = said(&admin(&db, &["reset-password", "ADA"], "a fresh password\n"));
    assert!(ok, "{out}");
    assert_eq!(out, "ADA: password reset; 1 session(s) ended");
    // Her old session stops working within the seconds the server trusts a checked session.
    let deadline = tokio::time::Instant::now() + WAIT;
    while ada.request(Method::GET, "/api/me").send().await.unwrap().status() == 200 {
        assert!(tokio::time::Instant::now() < deadline, "the old session still works");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        server
            .anonymous()
            .sign_in("ada", "correct horse battery")
            .await
            .status(),
        401
    );
    assert_eq!(
        server.anonymous().sign_in("ada", "a fresh password").await.status(),
        200
    );

    let (ok, out, _) = said(&admin(&db, &["promote", "bob"], ""));
    assert!(ok);
    assert_eq!(out, "bob: now an active admin");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let me: Value = bob.get_json("/api/me").await;
        if me["role"] == "admin" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob never became an admin: {me}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (ok, out, _) = said(&admin(
        &db,
        &["create-user", "carol", "--admin"],
        "carol's password\r\n",
    ));
    assert!(ok);
    assert_eq!(out, "carol: account made (admin)");
    let signed_in: Value = server
        .anonymous()
        .sign_in("carol", "carol's password")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(signed_in["role"], "admin");

    // Mistakes: a readable line on stderr and a failing status, and nothing changed.
    for (args, stdin, says) in [
        (
            &["reset-password", "nobody"][..],
            "a long password\n",
            "no account called \"nobody\"",
        ),
        (&["reset-password", "bob"][..], "short\n", "8 to 1,024 characters"),
        (&["create-user", "carol"][..], "another password\n", "taken"),
        (&["create-user", "bad name!"][..], "another password\n", "a username is"),
        (&["promote", "nobody"][..], "", "no account"),
        (&["deactivate", "nobody"][..], "", "no account"),
    ] {
        let (ok, _, err) = said(&admin(&db, args, stdin));
        assert!(!ok, "{args:?} should fail");
        assert!(err.starts_with("chat-server admin: "), "{err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(
        server
            .anonymous()
            .sign_in("bob", "correct horse battery")
            .await
            .status(),
        200
    );

    // Deactivating: the account's sessions end and it cannot sign in; the last admin stays.
    let (ok, out, _) = said(&admin(&db, &["deactivate", "bob"], ""));
    assert!(ok, "{out}");
    assert!(out.starts_with("bob: deactivated; "), "{out}");
    assert_eq!(
        server
            .anonymous()
            .sign_in("bob", "correct horse battery")
            .await
            .status(),
        403
    );
    // Bob was an admin too; of ada and carol, one may go, the other is the last.
    let (ok, _, _) = said(&admin(&db, &["deactivate", "ada"], ""));
    assert!(ok);
    let (ok, _, err) = said(&admin(&db, &["deactivate", "carol"], ""));
    assert!(!ok && err.contains("last active admin"), "{err}");
}

/// Runs `chat-server --db DB admin ARGS` with `CHAT_PUBLIC_ORIGIN` set to `origin`.
fn admin_with_origin(db: &TestDb, args: &[&str], origin: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .arg("--db")
        .arg(db.path())
        .arg("admin")
        .args(args)
        .env("CHAT_PUBLIC_ORIGIN", origin)
        .stdin(Stdio::null())
        .output()
        .expect("run chat-server admin")
}

#[tokio::test]
async fn the_operator_makes_an_invite_that_signs_someone_up() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--signup", "invite"]).await;
    server.user("ada").await;

    let (ok, out, err) = said(&admin(&db, &["invite", "--uses", "2", "--expires-in-hours", "5"], ""));
    assert!(ok, "{err}");
    let (first, path) = out.split_once('\n').expect("two lines");
    let code = path.strip_prefix("/join/").expect("the join page's path");
    assert_eq!(code.len(), 22);
    assert!(
        first.starts_with(&format!("invite {code}: 2 use(s), until ")),
        "{first}"
    );
    for name in ["bob", "carol"] {
        let joined = server
            .anonymous()
            .sign_up_with(serde_json::json!({"username": name, "password": "correct horse battery", "invite": code}))
            .await;
        assert_eq!(joined.status(), 201, "{name}");
    }
    let third = server
        .anonymous()
        .sign_up_with(serde_json::json!({"username": "dave", "password": "correct horse battery", "invite": code}))
        .await;
    assert_eq!(third.status(), 403);
    let mut conn = db.connect().await;
    let made_by: Option<i64> = sqlx::query_scalar("SELECT created_by FROM invites WHERE code = ?")
        .bind(code)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(made_by, None, "made by the operator, not an account");

    // With the public origin known, the whole link; the defaults are one use for a week.
    let output = admin_with_origin(&db, &["invite"], "https://chat.example.com/");
    let (ok, out, _) = said(&output);
    assert!(ok);
    let link = out.lines().nth(1).unwrap();
    assert!(link.starts_with("https://chat.example.com/join/"), "{link}");
    assert!(
        out.starts_with("invite ") && out.contains(": 1 use(s), until "),
        "{out}"
    );

    // Mistakes: a readable line and a failing status.
    for (args, says) in [
        (&["invite", "--uses", "0"][..], "1 to 1,000 uses"),
        (&["invite", "--uses", "1001"][..], "1 to 1,000 uses"),
        (&["invite", "--expires-in-hours", "8761"][..], "8,760 hours"),
    ] {
        let (ok, _, err) = said(&admin(&db, args, ""));
        assert!(!ok, "{args:?} should fail");
        assert!(err.starts_with("chat-server admin: "), "{err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let (ok, _, err) = said(&admin(&db, &["invite", "--uses", "many"], ""));
    assert!(!ok);
    assert!(err.contains("--uses"), "{err}");
    let (ok, help, _) = said(&admin(&db, &["invite", "--help"], ""));
    assert!(ok);
    assert!(help.contains("--uses") && help.contains("--expires-in-hours"), "{help}");
}
