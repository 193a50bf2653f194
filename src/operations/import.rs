//! `chat-server import --db NEW.db FILE`: an export in JSON lines (`chat-server export
//! --format jsonl`) into a database with no history yet. Lines are read one at a time and
//! written in batches, each one transaction (`eventlog::sqlite::import` says how each line
//! becomes the rows and events the server writes); memory holds one batch.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::domain::{Emoji, EventId, Reactions, RoomKind, RoomName, Timestamp, Username};
use crate::eventlog::sqlite::import::{ImportLine, ImportMessage, ImportRoom, Importer};
use crate::eventlog::sqlite::{self, Durability};

/// Lines written in one transaction, at most.
const BATCH_LINES: usize = 1_000;
/// Bytes of lines in one transaction, at most (unless one line is longer).
const BATCH_BYTES: usize = 4 << 20;
/// The longest line read: a message of the longest text with ten thousand reactions fits.
const MAX_LINE: usize = 16 << 20;

/// Imports `file` (`-`: standard input) into the database at `db`, made if there is none.
/// Returns what to tell the operator.
pub async fn run(db: &Path, file: &Path) -> anyhow::Result<String> {
    // The input first: a mistyped name makes no database.
    let input: Box<dyn Read> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?)
    };
    let source = if file == Path::new("-") {
        "standard input".to_owned()
    } else {
        file.display().to_string()
    };
    let mut input = BufReader::with_capacity(1 << 16, input);
    let mut conn = sqlite::open(db, Durability::Full).await?.writer;
    let mut importer = Importer::start(&mut conn)
        .await
        .with_context(|| format!("cannot import into {}", db.display()))?;

    let mut batch: Vec<ImportLine> = Vec::with_capacity(BATCH_LINES);
    // The line number of each line of the batch.
    let mut numbers: Vec<usize> = Vec::with_capacity(BATCH_LINES);
    let mut bytes = 0usize;
    let mut number = 0usize;
    let mut buffer = Vec::new();
    let mut imported = 0u64;
    let stop = |number: usize, imported: u64, error: &dyn std::fmt::Display| {
        let kept = if imported == 0 {
            "nothing was imported".to_owned()
        } else {
            format!(
                "the {imported} messages before it are in {}: remove it to start again",
                db.display()
            )
        };
        anyhow::anyhow!("{source}, line {number}: {error} ({kept})")
    };
    loop {
        buffer.clear();
        let read = (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buffer)
            .with_context(|| format!("cannot read {source}"))?;
        let end = read == 0;
        if !end {
            number += 1;
            if buffer.len() > MAX_LINE {
                return Err(stop(number, imported, &"the line is longer than 16 MiB"));
            }
            let text = std::str::from_utf8(&buffer).map_err(|_| stop(number, imported, &"the line is not UTF-8"))?;
            let text = text.trim();
            if !text.is_empty() {
                let line = parse(text).map_err(|error| stop(number, imported, &error))?;
                bytes += text.len();
                batch.push(line);
                numbers.push(number);
            }
        }
        if (end && !batch.is_empty()) || batch.len() >= BATCH_LINES || bytes >= BATCH_BYTES {
            match importer.apply(&mut conn, &batch).await {
                Ok(()) => {}
                Err((Some(at), error)) => {
                    return Err(stop(numbers.get(at).copied().unwrap_or(number), imported, &error));
                }
                Err((None, error)) => {
                    let through = numbers.last().copied().unwrap_or(number);
                    return Err(stop(
                        through,
                        imported,
                        &format!("cannot write to {}: {error}", db.display()),
                    ));
                }
            }
            imported += batch
                .iter()
                .filter(|line| matches!(line, ImportLine::Message(_)))
                .count() as u64;
            batch.clear();
            numbers.clear();
            bytes = 0;
        }
        if end {
            break;
        }
    }
    let done = importer
        .finish(&mut conn)
        .await
        .with_context(|| format!("cannot finish the import into {}", db.display()))?;
    let mut said = format!(
        "{} messages imported into {}; {} rooms and {} accounts made",
        done.messages,
        db.display(),
        done.rooms_made,
        done.accounts_made
    );
    if done.accounts_made > 0 {
        said.push_str(
            "\nthe accounts made have no password: `chat-server admin reset-password NAME` gives one, \
             `chat-server admin promote NAME` makes an admin",
        );
    }
    Ok(said)
}

/// A line of an export as written, before its names and times are checked.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Line {
    Message(MessageLine),
    Room(RoomLine),
}

#[derive(Deserialize)]
struct MessageLine {
    id: i64,
    room: String,
    username: String,
    content: String,
    created_at: String,
    #[serde(default)]
    edited_at: Option<String>,
    #[serde(default)]
    reply_to: Option<i64>,
    #[serde(default)]
    mentions: Vec<String>,
    #[serde(default)]
    mentions_room: bool,
    #[serde(default)]
    reactions: Vec<ReactionLine>,
}

#[derive(Deserialize)]
struct ReactionLine {
    emoji: String,
    usernames: Vec<String>,
}

#[derive(Deserialize)]
struct RoomLine {
    id: i64,
    room: String,
    kind: String,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    members: Vec<String>,
    by: String,
    created_at: String,
}

/// One line, its names, times and ids checked.
fn parse(text: &str) -> Result<ImportLine, String> {
    let line: Line = serde_json::from_str(text).map_err(|error| {
        // serde_json says where on the line; the line is already named.
        let error = error.to_string();
        match error.rsplit_once(" at line ") {
            Some((what, _)) => what.to_owned(),
            None => error,
        }
    })?;
    let name = |raw: &str| {
        Username::parse(raw)
            .map(|name| name.as_str().to_owned())
            .map_err(|e| e.to_string())
    };
    let time = |field: &str, raw: &str| {
        Timestamp::parse(field, raw)
            .map(|at| at.as_str().to_owned())
            .map_err(|e| e.to_string())
    };
    let id = |field: &str, raw: i64| {
        (raw >= 1)
            .then_some(EventId(raw))
            .ok_or_else(|| format!("`{field}` must be a positive id"))
    };
    match line {
        Line::Room(room) => {
            let kind = match room.kind.as_str() {
                "public" => RoomKind::Public,
                "private" => RoomKind::Private,
                "direct" => RoomKind::Direct,
                _ => return Err("a room's `kind` is `public`, `private` or `direct`".into()),
            };
            let mut members = room.members.iter().map(|m| name(m)).collect::<Result<Vec<_>, _>>()?;
            members.sort_by_key(|name| name.to_lowercase());
            members.dedup_by_key(|name| name.to_lowercase());
            if kind == RoomKind::Direct && members.is_empty() {
                return Err("a direct room needs its `members`".into());
            }
            Ok(ImportLine::Room(ImportRoom {
                id: id("id", room.id)?,
                name: RoomName::parse(&room.room)
                    .map_err(|e| e.to_string())?
                    .as_str()
                    .to_owned(),
                kind,
                topic: room.topic.filter(|topic| !topic.trim().is_empty()),
                archived: room.archived,
                members,
                by: name(&room.by)?,
                created_at: time("created_at", &room.created_at)?,
            }))
        }
        Line::Message(message) => {
            let own = id("id", message.id)?;
            let reply_to = message.reply_to.map(|quoted| id("reply_to", quoted)).transpose()?;
            if reply_to.is_some_and(|quoted| quoted >= own) {
                return Err("a message answers an older one: `reply_to` must be below its `id`".into());
            }
            if message.content.trim().is_empty() {
                return Err("`content` is empty".into());
            }
            let mut mentions = message
                .mentions
                .iter()
                .map(|m| name(m))
                .collect::<Result<Vec<_>, _>>()?;
            mentions.dedup();
            let mut reactions: Vec<Reactions> = Vec::with_capacity(message.reactions.len());
            for reaction in message.reactions {
                let emoji = Emoji::parse(&reaction.emoji).map_err(|e| e.to_string())?.into_string();
                if reactions.iter().any(|r| r.emoji == emoji) {
                    return Err(format!("the reaction {emoji} is listed twice"));
                }
                let mut usernames = Vec::with_capacity(reaction.usernames.len());
                for who in &reaction.usernames {
                    let who = name(who)?;
                    if usernames.iter().any(|u: &String| u.eq_ignore_ascii_case(&who)) {
                        return Err(format!("{who} reacted with {emoji} twice"));
                    }
                    usernames.push(who);
                }
                if !usernames.is_empty() {
                    reactions.push(Reactions { emoji, usernames });
                }
            }
            Ok(ImportLine::Message(ImportMessage {
                id: own,
                room: RoomName::parse(&message.room)
                    .map_err(|e| e.to_string())?
                    .as_str()
                    .to_owned(),
                username: name(&message.username)?,
                content: message.content,
                created_at: time("created_at", &message.created_at)?,
                edited_at: message.edited_at.map(|at| time("edited_at", &at)).transpose()?,
                reply_to,
                mentions,
                mentions_room: message.mentions_room,
                reactions,
            }))
        }
    }
}
