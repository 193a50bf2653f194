//! A database the server cannot use stops it at start-up with one readable line and a non-zero
//! exit, before it says it is listening.

use std::path::Path;
use std::process::{Output, Stdio};

use crate::common::{Server, TestDb};
use tokio::process::Command;

async fn start_on(db: &Path) -> Output {
    let run = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .arg("--db")
        .arg(db)
        .env("CHAT_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(crate::common::WAIT, run)
        .await
        .expect("the server gives up in time")
        .expect("run chat-server")
}

fn assert_refused(output: &Output, says: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exit status {:?}", output.status);
    assert!(
        output.stdout.is_empty(),
        "said it was listening: {:?}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(stderr.contains(says), "stderr: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused() {
    let db = TestDb::new();
    std::fs::write(db.path(), "these are someone's notes, not a database\n".repeat(200)).unwrap();
    let output = start_on(&db.path()).await;
    assert_refused(&output, "is not a chat database");
    // And it is left as it was.
    assert!(
        std::fs::read_to_string(db.path())
            .unwrap()
            .starts_with("these are someone's notes")
    );
}

#[tokio::test]
async fn a_damaged_database_is_refused() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    server.user("ada").await.say("general", "hello").await;
    assert!(server.terminate().await.success());
    // Scribble over the file header.
    let mut bytes = std::fs::read(db.path()).unwrap();
    bytes[..16].copy_from_slice(b"definitely not!!");
    std::fs::write(db.path(), bytes).unwrap();
    let output = start_on(&db.path()).await;
    assert_refused(&output, "is not a chat database");
}

#[tokio::test]
async fn a_database_in_a_missing_directory_is_refused() {
    let db = TestDb::new();
    let output = start_on(&db.path().join("no/such/dir/chat.db")).await;
    assert_refused(&output, "cannot be opened");
}
