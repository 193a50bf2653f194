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
async fn the_operator_resets_a_password_makes_accounts_and_promotes_beside_the_running_server() {
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
}
