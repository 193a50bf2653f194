//! Messages that change: edits, deletions, reactions and replies (issue 14).
//!
//! - Replay is exact: four people edit, delete, react and reply at once, in a public room, a
//!   private room and a direct room, while streams of both kinds and both formats follow live;
//!   streams opened afterwards at the same cursor get exactly what the database says they may
//!   see (a deleted message's own rows are skipped, its `delete` stays); live ones get at least
//!   that, in order, once; and applying what any stream got gives history's current state, in
//!   JSON and in the page's HTML. The same after a SIGKILL and a restart, and for streams that
//!   were open at the kill and come back with their `Last-Event-ID`.
//! - The rules of who may change what, answered with the statuses the contract gives.
//! - Deleted means gone: no byte of any version of a deleted message stays in the database
//!   file or its WAL, nor in the search index.
//!
//! The mix of changes comes from a seeded PRNG; the seed is printed, and `CHANGES_SEED=<seed>`
//! replays the same choices (the interleaving of the four people still varies).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsource_stream::{Event as SseEvent, Eventsource};
use futures_util::{Stream, StreamExt};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use scraper::{ElementRef, Html, Selector};
use serde_json::{Value, json};

use crate::common::{Client, Rng, Server, TestDb, WAIT, seed};

// ---------------------------------------------------------------------------------------------
// Requests

/// What a request was answered.
struct Answer {
    status: u16,
    body: String,
    retry_after: Option<String>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("not JSON ({error}): {:?}", self.body))
    }
}

async fn send(client: &Client, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
    let mut request = client.request(method.clone(), path).timeout(WAIT);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().expect("Retry-After is text").to_owned());
    let body = response.text().await.expect("answer body");
    Answer {
        status,
        body,
        retry_after,
    }
}

fn reaction_path(id: i64, emoji: &str) -> String {
    format!(
        "/api/messages/{id}/reactions/{}",
        utf8_percent_encode(emoji, NON_ALPHANUMERIC)
    )
}

async fn edit(client: &Client, id: i64, content: &str) -> Answer {
    send(
        client,
        reqwest::Method::PATCH,
        &format!("/api/messages/{id}"),
        Some(json!({ "content": content })),
    )
    .await
}

async fn delete(client: &Client, id: i64) -> Answer {
    send(client, reqwest::Method::DELETE, &format!("/api/messages/{id}"), None).await
}

/// `PUT` (`add`) or `DELETE` the caller's reaction `emoji` to message `id`.
async fn react(client: &Client, id: i64, emoji: &str, add: bool) -> Answer {
    let method = if add {
        reqwest::Method::PUT
    } else {
        reqwest::Method::DELETE
    };
    send(client, method, &reaction_path(id, emoji), None).await
}

async fn get_message(client: &Client, id: i64) -> Answer {
    send(client, reqwest::Method::GET, &format!("/api/messages/{id}"), None).await
}

async fn post(client: &Client, room: &str, content: &str, reply_to: Option<i64>) -> Answer {
    let mut body = json!({ "content": content });
    if let Some(to) = reply_to {
        body["reply_to"] = json!(to);
    }
    send(
        client,
        reqwest::Method::POST,
        &format!("/api/rooms/{room}/messages"),
        Some(body),
    )
    .await
}

fn id_of(event: &Value) -> i64 {
    event["id"].as_i64().unwrap_or_else(|| panic!("no id in {event}"))
}

/// The newest event id in the database.
async fn newest_event(db: &TestDb) -> i64 {
    let mut conn = db.connect().await;
    sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM events")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Streams

type Events = std::pin::Pin<
    Box<dyn Stream<Item = Result<SseEvent, eventsource_stream::EventStreamError<reqwest::Error>>> + Send>,
>;

/// An open event stream that, unlike the harness's, takes a broken connection (a killed
/// server) as its end rather than as a failure.
struct Feed {
    events: Events,
}

impl Feed {
    async fn open(client: &Client, path: &str, last_event_id: Option<i64>) -> Self {
        let mut request = client.request(reqwest::Method::GET, path);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = tokio::time::timeout(WAIT, request.send())
            .await
            .expect("stream opens in time")
            .expect("GET events");
        assert_eq!(response.status(), 200, "opening {path}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            events: Box::pin(response.bytes_stream().eventsource()),
        }
    }

    /// The next event but `ping`s; `None` once the stream has ended or broken.
    async fn next(&mut self) -> Option<Got> {
        loop {
            match self.events.next().await {
                Some(Ok(event)) if event.event == "ping" => {}
                Some(Ok(event)) => return Some(Got::from(event)),
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// A stored event as a stream delivered it.
#[derive(Clone, Debug)]
struct Got {
    id: i64,
    kind: String,
    data: String,
}

impl From<SseEvent> for Got {
    fn from(event: SseEvent) -> Self {
        assert!(
            !matches!(event.event.as_str(), "reset" | "logout"),
            "no stream here is reset or logged out: {event:?}"
        );
        Self {
            id: event
                .id
                .parse()
                .unwrap_or_else(|_| panic!("a stored event has a numeric id: {event:?}")),
            kind: event.event,
            data: event.data,
        }
    }
}

fn ids(got: &[Got]) -> Vec<i64> {
    got.iter().map(|g| g.id).collect()
}

/// One stream the test follows: whose, which (`room`, or the user's if `None`), which format.
#[derive(Clone, Debug)]
struct Spec {
    who: usize,
    room: Option<String>,
    html: bool,
}

impl Spec {
    fn path(&self, after: Option<i64>) -> String {
        let format = if self.html { "html" } else { "json" };
        let mut path = match &self.room {
            Some(room) => format!("/api/rooms/{room}/events?format={format}"),
            None => format!("/api/events?format={format}"),
        };
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        path
    }

    fn name(&self) -> String {
        let format = if self.html { "html" } else { "json" };
        match &self.room {
            Some(room) => format!("{}'s stream of {room} ({format})", PEOPLE[self.who]),
            None => format!("{}'s user stream ({format})", PEOPLE[self.who]),
        }
    }

    /// The rooms whose state the stream's events build.
    fn rooms(&self, dm: &str) -> Vec<String> {
        match &self.room {
            Some(room) => vec![room.clone()],
            None => rooms_of(self.who, dm),
        }
    }
}

/// A stream read by a task of its own as events come, so that it stays live.
struct Live {
    spec: Spec,
    got: Arc<Mutex<Vec<Got>>>,
    /// How many events it has read, and the newest id among them.
    newest: tokio::sync::watch::Receiver<(usize, i64)>,
    task: tokio::task::JoinHandle<Option<Feed>>,
}

impl Live {
    /// Opens `spec` at `after` (as `?after=`) or `last_event_id` (as the header), and reads it
    /// until it ends, or, with `stop_after`, until that many events have come (then the
    /// stream stays open, unread).
    async fn start(
        client: &Client,
        spec: &Spec,
        after: Option<i64>,
        last_event_id: Option<i64>,
        stop_after: Option<usize>,
    ) -> Self {
        let mut feed = Feed::open(client, &spec.path(after), last_event_id).await;
        let got = Arc::new(Mutex::new(Vec::new()));
        let (tell, newest) = tokio::sync::watch::channel((0, 0));
        let task = tokio::spawn({
            let got = got.clone();
            async move {
                let mut count = 0;
                while let Some(event) = feed.next().await {
                    let id = event.id;
                    got.lock().unwrap().push(event);
                    count += 1;
                    tell.send_replace((count, id));
                    if stop_after.is_some_and(|stop| count >= stop) {
                        return Some(feed);
                    }
                }
                None
            }
        });
        Self {
            spec: spec.clone(),
            got,
            newest,
            task,
        }
    }

    /// Waits until the stream has delivered an event with id `last` or above.
    async fn reach(&mut self, last: i64) {
        let name = self.spec.name();
        tokio::time::timeout(WAIT, self.newest.wait_for(|(_, newest)| *newest >= last))
            .await
            .unwrap_or_else(|_| panic!("{name} reaches {last} in time"))
            .unwrap_or_else(|_| panic!("{name} ended before {last}"));
    }

    /// Waits until the stream has delivered `count` events.
    async fn read(&mut self, count: usize) {
        let name = self.spec.name();
        tokio::time::timeout(WAIT, self.newest.wait_for(|(read, _)| *read >= count))
            .await
            .unwrap_or_else(|_| panic!("{name} reads {count} events in time"))
            .unwrap_or_else(|_| panic!("{name} ended before {count} events"));
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits for the reading task to end (the stream broke) and returns all it read.
    async fn finish(self) -> Vec<Got> {
        let name = self.spec.name();
        let feed = tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap_or_else(|_| panic!("{name} ends once the server is gone"))
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        drop(feed);
        Arc::try_unwrap(self.got)
            .map(|got| got.into_inner().unwrap())
            .unwrap_or_else(|got| got.lock().unwrap().clone())
    }
}

/// Opens `spec` at `after` and reads it up to the last of `expected`, which it must be exactly.
async fn replay(client: &Client, spec: &Spec, after: i64, expected: &[i64], when: &str) -> Vec<Got> {
    let last = *expected.last().expect("something to replay");
    let mut feed = Feed::open(client, &spec.path(Some(after)), None).await;
    let mut got = Vec::new();
    loop {
        let event = tokio::time::timeout(WAIT, feed.next())
            .await
            .unwrap_or_else(|_| panic!("{} {when}: an event arrives in time; got {:?}", spec.name(), ids(&got)))
            .unwrap_or_else(|| panic!("{} {when} ended early", spec.name()));
        let done = event.id >= last;
        got.push(event);
        if done {
            break;
        }
    }
    assert_ids(
        &ids(&got),
        expected,
        &format!("{} replayed from {after} {when}", spec.name()),
    );
    got
}

/// Asserts two lists of ids are equal, naming the differences if not.
fn assert_ids(got: &[i64], expected: &[i64], what: &str) {
    if got != expected {
        let got_set: HashSet<i64> = got.iter().copied().collect();
        let expected_set: HashSet<i64> = expected.iter().copied().collect();
        let mut missing: Vec<i64> = expected_set.difference(&got_set).copied().collect();
        let mut extra: Vec<i64> = got_set.difference(&expected_set).copied().collect();
        missing.sort();
        extra.sort();
        panic!(
            "{what}: {} ids, {} expected; missing {missing:?}, not expected {extra:?}; in order: {}",
            got.len(),
            expected.len(),
            got.windows(2).all(|w| w[0] < w[1])
        );
    }
}

// ---------------------------------------------------------------------------------------------
// What the database says a stream may see

struct LogRow {
    id: i64,
    scope: String,
    room_id: Option<i64>,
    user_id: i64,
    public: bool,
    /// A message's own row (`message`, `edit`, `reaction`) whose text was erased: the message
    /// has been deleted since.
    erased: bool,
}

/// An event row as read: id, scope, room, user, the room's kind, whether erased.
type RawRow = (i64, String, Option<i64>, i64, Option<String>, i64);

/// The event log, the stints in members-only rooms, and the ids of names.
struct Log {
    rows: Vec<LogRow>,
    stints: Vec<(i64, i64, i64, Option<i64>)>,
    users: HashMap<String, i64>,
    rooms: HashMap<String, i64>,
}

impl Log {
    async fn read(db: &TestDb) -> Self {
        let mut conn = db.connect().await;
        let rows: Vec<RawRow> = sqlx::query_as(
            "SELECT e.id, e.scope, e.room_id, e.user_id, r.kind, \
                    (e.body IS NULL AND e.kind IN ('message', 'edit', 'reaction')) \
             FROM events AS e LEFT JOIN rooms AS r ON r.id = e.room_id ORDER BY e.id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let stints = sqlx::query_as("SELECT room_id, user_id, from_id, until_id FROM room_access")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let users: Vec<(String, i64)> = sqlx::query_as("SELECT username, id FROM users")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let rooms: Vec<(String, i64)> = sqlx::query_as("SELECT name, id FROM rooms")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        Self {
            rows: rows
                .into_iter()
                .map(|(id, scope, room_id, user_id, kind, erased)| LogRow {
                    id,
                    scope,
                    room_id,
                    user_id,
                    public: kind.as_deref() == Some("public"),
                    erased: erased != 0,
                })
                .collect(),
            stints,
            users: users.into_iter().collect(),
            rooms: rooms.into_iter().collect(),
        }
    }

    /// The events after `after` that `spec`'s stream may see, by DESIGN's rule (as in
    /// access.rs), each with whether it is erased.
    fn visible(&self, spec: &Spec, after: i64) -> Vec<(i64, bool)> {
        let user = self.users[PEOPLE[spec.who]];
        let room = spec.room.as_ref().map(|name| self.rooms[name]);
        self.rows
            .iter()
            .filter(|row| row.id > after)
            .filter(|row| match row.scope.as_str() {
                "everyone" => true,
                "user" => room.is_none() && row.user_id == user,
                "room" => {
                    room.is_none_or(|room| row.room_id == Some(room))
                        && (row.public
                            || self.stints.iter().any(|(r, u, from, until)| {
                                Some(*r) == row.room_id
                                    && *u == user
                                    && *from <= row.id
                                    && until.is_none_or(|until| row.id <= until)
                            }))
                }
                other => panic!("unknown scope {other}"),
            })
            .map(|row| (row.id, row.erased))
            .collect()
    }

    /// What a stream replaying from `after` sends: the visible events but the erased ones.
    fn replayed(&self, spec: &Spec, after: i64) -> Vec<i64> {
        self.visible(spec, after)
            .into_iter()
            .filter(|(_, erased)| !erased)
            .map(|(id, _)| id)
            .collect()
    }
}

/// A live stream's events up to `last`: strictly increasing, each one the stream may see,
/// and every one that a replay would send.
fn assert_live(spec: &Spec, got: &[i64], log: &Log, after: i64, last: i64, when: &str) {
    let name = spec.name();
    for pair in got.windows(2) {
        assert!(
            pair[0] < pair[1],
            "{name} {when}: id {} came after {}",
            pair[1],
            pair[0]
        );
    }
    let visible: HashSet<i64> = log.visible(spec, after).into_iter().map(|(id, _)| id).collect();
    let got: Vec<i64> = got.iter().copied().filter(|id| *id <= last).collect();
    let stray: Vec<i64> = got.iter().copied().filter(|id| !visible.contains(id)).collect();
    assert!(stray.is_empty(), "{name} {when} got events it may not see: {stray:?}");
    let got: HashSet<i64> = got.into_iter().collect();
    let missed: Vec<i64> = log
        .replayed(spec, after)
        .into_iter()
        .filter(|id| *id <= last && !got.contains(id))
        .collect();
    assert!(missed.is_empty(), "{name} {when} missed {missed:?}");
}

/// Every JSON frame with the same id is the same bytes, on every stream, live or replayed,
/// before or after a restart: an event is encoded once.
#[derive(Default)]
struct Encodings(HashMap<i64, String>);

impl Encodings {
    fn check(&mut self, spec: &Spec, got: &[Got]) {
        if spec.html {
            // A replayed message renders its quote as the original is now, so HTML may differ.
            return;
        }
        for event in got {
            let first = self.0.entry(event.id).or_insert_with(|| event.data.clone());
            assert_eq!(
                *first,
                event.data,
                "{} got event {} encoded otherwise",
                spec.name(),
                event.id
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The state a stream's events build, and history's

/// Messages by id, as applying JSON events in order makes them.
#[derive(Default)]
struct JsonState {
    messages: BTreeMap<i64, Value>,
    /// Each message's current reactions: (reaction event id, emoji, username).
    reactions: HashMap<i64, Vec<(i64, String, String)>>,
}

impl JsonState {
    fn apply(&mut self, event: &Got) -> Result<(), String> {
        if !matches!(event.kind.as_str(), "message" | "edit" | "delete" | "reaction") {
            return Ok(());
        }
        let data: Value = serde_json::from_str(&event.data).map_err(|e| format!("{e}: {}", event.data))?;
        if data["id"].as_i64() != Some(event.id) || data["type"] != event.kind.as_str() {
            return Err(format!("event {} named {} carries {data}", event.id, event.kind));
        }
        let target = data["message_id"].as_i64();
        match event.kind.as_str() {
            "message" => {
                if data["reactions"] != json!([]) || data.get("edited_at").is_some() {
                    return Err(format!("a message event is the message as posted: {data}"));
                }
                if self.messages.insert(event.id, data.clone()).is_some() {
                    return Err(format!("message {} twice", event.id));
                }
            }
            "edit" => {
                let target = target.ok_or_else(|| format!("edit without message_id: {data}"))?;
                let message = self
                    .messages
                    .get_mut(&target)
                    .ok_or_else(|| format!("edit {} of message {target}, never seen or gone", event.id))?;
                message["content"] = data["content"].clone();
                message["mentions"] = data["mentions"].clone();
                message["edited_at"] = data["created_at"].clone();
            }
            "delete" => {
                // The message itself is not replayed if deleted since; its deletion is.
                let target = target.ok_or_else(|| format!("delete without message_id: {data}"))?;
                self.messages.remove(&target);
                self.reactions.remove(&target);
            }
            _ => {
                let target = target.ok_or_else(|| format!("reaction without message_id: {data}"))?;
                if !self.messages.contains_key(&target) {
                    return Err(format!("reaction {} to message {target}, never seen or gone", event.id));
                }
                let emoji = data["emoji"].as_str().ok_or("reaction without emoji")?.to_owned();
                let username = data["username"].as_str().ok_or("reaction without username")?.to_owned();
                let list = self.reactions.entry(target).or_default();
                let at = list.iter().position(|(_, e, u)| *e == emoji && *u == username);
                match (data["added"].as_bool(), at) {
                    (Some(true), None) => list.push((event.id, emoji, username)),
                    (Some(false), Some(at)) => {
                        list.remove(at);
                    }
                    _ => return Err(format!("reaction {} changes nothing: {data}", event.id)),
                }
            }
        }
        Ok(())
    }

    /// The room's messages as history shows them: reactions grouped by emoji in order of
    /// each emoji's first (current) reaction, usernames in the order they reacted.
    fn room(&self, room: &str) -> Vec<Value> {
        self.messages
            .iter()
            .filter(|(_, message)| message["room"] == room)
            .map(|(id, message)| {
                let mut message = message.clone();
                let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
                let mut list = self.reactions.get(id).cloned().unwrap_or_default();
                list.sort();
                for (_, emoji, username) in list {
                    match grouped.iter_mut().find(|(e, _)| *e == emoji) {
                        Some((_, users)) => users.push(username),
                        None => grouped.push((emoji, vec![username])),
                    }
                }
                message["reactions"] = grouped
                    .into_iter()
                    .map(|(emoji, usernames)| json!({ "emoji": emoji, "usernames": usernames }))
                    .collect();
                message
            })
            .collect()
    }
}

/// A message as the page shows it: the parts that events replace.
#[derive(Clone, Debug, PartialEq)]
struct HtmlMessage {
    room: String,
    /// Whether it shows as edited (`data-edited` on the message).
    edited: bool,
    /// The class and the inner HTML of `#text-N`.
    text_class: String,
    text: String,
    /// The inner HTML of `#reactions-N`.
    reactions: String,
    quote: Option<Quote>,
}

#[derive(Clone, Debug, PartialEq)]
struct Quote {
    of: i64,
    gone: bool,
    /// The quoted excerpt, while the original is there.
    text: Option<String>,
}

fn selector(css: &str) -> Selector {
    Selector::parse(css).unwrap_or_else(|error| panic!("selector {css}: {error:?}"))
}

/// The first element of a fragment.
fn fragment_root(html: &Html) -> Result<ElementRef<'_>, String> {
    html.root_element()
        .children()
        .find_map(ElementRef::wrap)
        .ok_or_else(|| "an empty fragment".to_owned())
}

/// The number in a DOM id `prefix-N`.
fn dom_number(element: &ElementRef, prefix: &str) -> Result<i64, String> {
    element
        .value()
        .attr("id")
        .and_then(|id| id.strip_prefix(prefix))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no id {prefix}N on {}", element.html()))
}

/// A message element `<li id="msg-N" class="message">` read as the page shows it.
fn html_message(li: ElementRef) -> Result<(i64, HtmlMessage), String> {
    let id = dom_number(&li, "msg-")?;
    let part = |css: String| {
        li.select(&selector(&css))
            .next()
            .ok_or_else(|| format!("no {css} in {}", li.html()))
    };
    let text = part(format!("#text-{id}"))?;
    let quote = li
        .children()
        .filter_map(ElementRef::wrap)
        .find(|child| child.value().name() == "a" && child.value().classes().any(|class| class == "quote"))
        .map(|a| {
            let of = a
                .value()
                .attr("data-quote-of")
                .and_then(|of| of.parse().ok())
                .ok_or_else(|| format!("a quote without data-quote-of: {}", a.html()))?;
            let gone = a.value().classes().any(|class| class == "gone");
            let text = a
                .select(&selector(".quote-text"))
                .next()
                .map(|span| span.text().collect::<String>());
            Ok::<_, String>(Quote {
                of,
                gone,
                text: if gone { None } else { text },
            })
        })
        .transpose()?;
    Ok((
        id,
        HtmlMessage {
            room: li.value().attr("data-room").unwrap_or_default().to_owned(),
            edited: li.value().attr("data-edited").is_some(),
            text_class: text.value().attr("class").unwrap_or_default().to_owned(),
            text: text.inner_html(),
            reactions: part(format!("#reactions-{id}"))?.inner_html(),
            quote,
        },
    ))
}

/// Messages by id, as applying HTML frames in order makes them: a frame replaces the element
/// with its root's id, a `delete` frame removes the message and turns its quotes into gone ones.
#[derive(Default)]
struct HtmlState(BTreeMap<i64, HtmlMessage>);

impl HtmlState {
    fn apply(&mut self, event: &Got) -> Result<(), String> {
        if !matches!(event.kind.as_str(), "message" | "edit" | "delete" | "reaction") {
            return Ok(());
        }
        if event.data.contains(['\n', '\r']) {
            return Err(format!("a frame of more than one line: {:?}", event.data));
        }
        let fragment = Html::parse_fragment(&event.data);
        let root = fragment_root(&fragment)?;
        match event.kind.as_str() {
            "message" => {
                let (id, message) = html_message(root)?;
                if id != event.id {
                    return Err(format!("event {} renders message {id}", event.id));
                }
                if self.0.insert(id, message).is_some() {
                    return Err(format!("message {id} twice"));
                }
            }
            "edit" => {
                let id = dom_number(&root, "text-")?;
                let message = self
                    .0
                    .get_mut(&id)
                    .ok_or_else(|| format!("edit {} of message {id}, never seen or gone", event.id))?;
                // The page replaces `#text-N` with the frame and marks the message edited.
                message.text = root.inner_html();
                message.text_class = root.value().attr("class").unwrap_or_default().to_owned();
                message.edited = true;
                let excerpt = root
                    .value()
                    .attr("data-excerpt")
                    .ok_or_else(|| format!("an edit frame without data-excerpt: {}", event.data))?
                    .to_owned();
                for quote in self.0.values_mut().filter_map(|m| m.quote.as_mut()) {
                    if quote.of == id && !quote.gone {
                        quote.text = Some(excerpt.clone());
                    }
                }
            }
            "reaction" => {
                let id = dom_number(&root, "reactions-")?;
                let message = self
                    .0
                    .get_mut(&id)
                    .ok_or_else(|| format!("reaction {} to message {id}, never seen or gone", event.id))?;
                message.reactions = root.inner_html();
            }
            _ => {
                let id = dom_number(&root, "msg-")?;
                if root.value().attr("data-deleted") != Some("true") {
                    return Err(format!("a delete frame without data-deleted: {}", event.data));
                }
                self.0.remove(&id);
                for quote in self.0.values_mut().filter_map(|m| m.quote.as_mut()) {
                    if quote.of == id {
                        quote.gone = true;
                        quote.text = None;
                    }
                }
            }
        }
        Ok(())
    }

    fn room(&self, room: &str) -> BTreeMap<i64, HtmlMessage> {
        self.0
            .iter()
            .filter(|(_, message)| message.room == room)
            .map(|(id, message)| (*id, message.clone()))
            .collect()
    }
}

async fn get_page(client: &Client, path: &str) -> String {
    let answer = send(client, reqwest::Method::GET, path, None).await;
    assert_eq!(answer.status, 200, "GET {path}");
    answer.body
}

/// The room's messages on its page and every "load older" fragment after it.
async fn page_state(client: &Client, room: &str) -> BTreeMap<i64, HtmlMessage> {
    let mut found = BTreeMap::new();
    let page = Html::parse_document(&get_page(client, &format!("/rooms/{room}")).await);
    let mut older = collect_page(&page, "#messages li.message", &mut found);
    while let Some(path) = older {
        let fragment = Html::parse_fragment(&get_page(client, &path).await);
        older = collect_page(&fragment, "li.message", &mut found);
    }
    found
}

/// Adds the messages of `html` to `found`; the path of "load older", if any.
fn collect_page(html: &Html, messages: &str, found: &mut BTreeMap<i64, HtmlMessage>) -> Option<String> {
    for li in html.select(&selector(messages)) {
        let (id, message) = html_message(li).unwrap_or_else(|error| panic!("{error}"));
        assert!(found.insert(id, message).is_none(), "message {id} shown twice");
    }
    html.select(&selector("#older [hx-get]"))
        .next()
        .map(|button| button.value().attr("hx-get").unwrap().to_owned())
}

/// Panics naming the first few differences between two maps.
fn assert_same<V: PartialEq + std::fmt::Debug>(got: &BTreeMap<i64, V>, expected: &BTreeMap<i64, V>, what: &str) {
    if got == expected {
        return;
    }
    let mut differences = Vec::new();
    for (id, value) in expected {
        match got.get(id) {
            None => differences.push(format!("{id} missing, expected {value:?}")),
            Some(other) if other != value => differences.push(format!("{id}: {other:?}\n    expected {value:?}")),
            Some(_) => {}
        }
    }
    for (id, value) in got {
        if !expected.contains_key(id) {
            differences.push(format!("{id} is extra: {value:?}"));
        }
    }
    let shown: Vec<&String> = differences.iter().take(5).collect();
    panic!(
        "{what}: {} differences, the first:\n  {}",
        differences.len(),
        shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  ")
    );
}

/// Applies a stream's events in order and compares the result with history (JSON) or the
/// room's page (HTML), for every room the stream covers.
async fn assert_final_state(people: &[Client], spec: &Spec, got: &[Got], dm: &str, when: &str) {
    let client = &people[spec.who];
    let what = |room: &str| format!("{} {when}: the state of {room}", spec.name());
    if spec.html {
        let mut state = HtmlState::default();
        for event in got {
            state
                .apply(event)
                .unwrap_or_else(|error| panic!("{} {when}: {error}", spec.name()));
        }
        for room in spec.rooms(dm) {
            let page = page_state(client, &room).await;
            assert!(!page.is_empty(), "{}: messages on the page", what(&room));
            assert_same(&state.room(&room), &page, &what(&room));
        }
    } else {
        let mut state = JsonState::default();
        for event in got {
            state
                .apply(event)
                .unwrap_or_else(|error| panic!("{} {when}: {error}", spec.name()));
        }
        for room in spec.rooms(dm) {
            let history = history_of(client, &room).await;
            assert!(!history.is_empty(), "{}: messages in history", what(&room));
            let by_id = |list: Vec<Value>| list.into_iter().map(|m| (id_of(&m), m)).collect::<BTreeMap<_, _>>();
            assert_same(&by_id(state.room(&room)), &by_id(history), &what(&room));
        }
    }
}

/// The whole history of a room (fewer than 200 messages here).
async fn history_of(client: &Client, room: &str) -> Vec<Value> {
    let history = client.history(room, "?limit=200").await;
    assert!(history.len() < 200, "the history of {room} fits one page");
    history
}

// ---------------------------------------------------------------------------------------------
// The mix

const PEOPLE: [&str; 4] = ["ada", "bob", "cat", "dan"];
const ADA: usize = 0;
const EMOJI: [&str; 6] = ["👍", "🎉", "❤️", "👍🏽", "ok", "+1"];

/// The rooms a person reads: everyone `general`; ada, bob and cat the private `den`; bob and
/// dan their direct room.
fn rooms_of(who: usize, dm: &str) -> Vec<String> {
    let mut rooms = vec!["general".to_owned()];
    if who != 3 {
        rooms.push("den".to_owned());
    }
    if who == 1 || who == 3 {
        rooms.push(dm.to_owned());
    }
    rooms
}

fn members_of(room: &str) -> &'static [&'static str] {
    match room {
        "general" => &PEOPLE,
        "den" => &["ada", "bob", "cat"],
        _ => &["bob", "dan"],
    }
}

/// A text no one else sends, in one of the shapes Markdown renders, sometimes mentioning
/// someone who reads the room.
fn text(rng: &mut Rng, tag: &str, room: &str, first: bool) -> String {
    match rng.below(10) {
        0 => tag.to_owned(),
        1 => format!("**{tag}** and _more_"),
        2 => format!("{tag} with `code` and ~~struck~~"),
        3 => format!("@{} {tag}", rng.pick(members_of(room))),
        4 => format!("{tag}\nsecond line"),
        5 => format!("> quoted\n\n{tag}"),
        6 => format!("- {tag}\n- two"),
        7 => format!("{tag} <b>not bold</b> & https://example.com/x?a=1"),
        // Emoji alone, which may render otherwise; only as a first version, since an edit to
        // the text a message has already stores nothing.
        8 if first => format!("{}🦀", rng.pick(&EMOJI[..4])),
        _ => format!("{tag} 🦀 naïve — «ok»"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Post,
    Reply,
    Edit,
    Delete,
    /// An admin deletes someone else's message.
    DeleteOther,
    React,
    Unreact,
}

/// One request of the mix and how it was answered.
struct Note {
    who: usize,
    op: Op,
    target: Option<i64>,
    status: u16,
    /// The status the request must get while its target is there.
    expected: u16,
    /// The status it may get instead if its target has been deleted (by the end).
    gone: u16,
    /// Something wrong in a successful answer's body.
    problem: Option<String>,
}

/// What the mix has done so far, shared by the people doing it.
#[derive(Default)]
struct Book {
    /// Every message posted: id, room, author.
    posted: Vec<(i64, String, usize)>,
    deleted: HashSet<i64>,
    /// Each person's reactions, as they made them: (message, emoji).
    reacted: [HashSet<(i64, String)>; 4],
    said: usize,
}

/// One person's part of the mix: `ops` requests, each a post, a reply, an edit of their own,
/// a deletion (of their own, or for an admin anyone's), or a reaction added or removed.
async fn act(who: usize, client: Client, dm: String, book: Arc<Mutex<Book>>, mut rng: Rng, ops: usize) -> Vec<Note> {
    let rooms = rooms_of(who, &dm);
    let mut notes = Vec::new();
    for _ in 0..ops {
        let room = rng.pick(&rooms).clone();
        let (live, own, n) = {
            let mut book = book.lock().unwrap();
            book.said += 1;
            let live: Vec<(i64, usize)> = book
                .posted
                .iter()
                .filter(|(id, r, _)| *r == room && !book.deleted.contains(id))
                .map(|(id, _, author)| (*id, *author))
                .collect();
            let own: Vec<i64> = live.iter().filter(|(_, a)| *a == who).map(|(id, _)| *id).collect();
            (live, own, book.said)
        };
        let tag = format!("{} #{n}", PEOPLE[who]);
        let roll = rng.below(100);
        let deletes_below = if who == ADA { 68 } else { 58 };
        let note = if live.is_empty() || roll < 30 {
            let reply_to = (!live.is_empty() && rng.below(3) == 0).then(|| rng.pick(&live).0);
            let content = text(&mut rng, &tag, &room, true);
            let answer = post(&client, &room, &content, reply_to).await;
            let mut problem = None;
            if answer.status == 201 {
                let event = answer.json();
                let shaped = event["type"] == "message"
                    && event["room"] == room.as_str()
                    && event["content"] == content.as_str()
                    && event.get("reply_to").and_then(Value::as_i64) == reply_to;
                if !shaped {
                    problem = Some(format!("posted {content:?} replying to {reply_to:?}: {event}"));
                }
                book.lock().unwrap().posted.push((id_of(&event), room.clone(), who));
            }
            Note {
                who,
                op: if reply_to.is_some() { Op::Reply } else { Op::Post },
                target: reply_to,
                status: answer.status,
                expected: 201,
                gone: if reply_to.is_some() { 422 } else { 0 },
                problem,
            }
        } else if roll < 48 && !own.is_empty() {
            let target = *rng.pick(&own);
            let content = text(&mut rng, &format!("{tag} edits {target}"), &room, false);
            let answer = edit(&client, target, &content).await;
            let mut problem = None;
            if answer.status == 200 {
                let event = answer.json();
                if event["type"] != "edit"
                    || event["message_id"] != target
                    || event["username"] != PEOPLE[who]
                    || event["content"] != content.as_str()
                {
                    problem = Some(format!("edited {target}: {event}"));
                }
            }
            Note {
                who,
                op: Op::Edit,
                target: Some(target),
                status: answer.status,
                expected: 200,
                gone: 404,
                problem,
            }
        } else if roll < deletes_below && (!own.is_empty() || who == ADA) {
            // The admin mostly deletes someone else's.
            let others: Vec<(i64, usize)> = live.iter().copied().filter(|(_, a)| *a != who).collect();
            let (target, author) = if who == ADA && !others.is_empty() && (own.is_empty() || rng.below(4) > 0) {
                *rng.pick(&others)
            } else if own.is_empty() {
                *rng.pick(&live)
            } else {
                (*rng.pick(&own), who)
            };
            let answer = delete(&client, target).await;
            let mut problem = None;
            if answer.status == 200 {
                let event = answer.json();
                if event["type"] != "delete" || event["message_id"] != target || event["username"] != PEOPLE[who] {
                    problem = Some(format!("deleted {target}: {event}"));
                }
                book.lock().unwrap().deleted.insert(target);
            }
            Note {
                who,
                op: if author == who { Op::Delete } else { Op::DeleteOther },
                target: Some(target),
                status: answer.status,
                expected: 200,
                gone: 404,
                problem,
            }
        } else {
            let add = roll < 85;
            // Removing, mostly one of one's own; otherwise any, which may not be there.
            let mine: Vec<(i64, String)> = book.lock().unwrap().reacted[who]
                .iter()
                .filter(|(id, _)| live.iter().any(|(l, _)| l == id))
                .cloned()
                .collect();
            // Adding, now and then one already there.
            let again = if add { rng.below(4) == 0 } else { rng.below(5) < 3 };
            let (target, emoji) = if again && !mine.is_empty() {
                rng.pick(&mine).clone()
            } else {
                (rng.pick(&live).0, (*rng.pick(&EMOJI)).to_owned())
            };
            let had = book.lock().unwrap().reacted[who].contains(&(target, emoji.clone()));
            let answer = react(&client, target, &emoji, add).await;
            let expected = if had == add { 204 } else { 200 };
            let mut problem = None;
            if answer.status == 200 {
                let event = answer.json();
                if event["type"] != "reaction"
                    || event["message_id"] != target
                    || event["emoji"] != emoji.as_str()
                    || event["added"] != add
                    || event["username"] != PEOPLE[who]
                {
                    problem = Some(format!("reacted {emoji} to {target}: {event}"));
                }
            }
            if answer.status == 204 && !answer.body.is_empty() {
                problem = Some(format!("a 204 with a body: {}", answer.body));
            }
            if answer.status == 200 {
                let mut book = book.lock().unwrap();
                if add {
                    book.reacted[who].insert((target, emoji));
                } else {
                    book.reacted[who].remove(&(target, emoji));
                }
            }
            Note {
                who,
                op: if add { Op::React } else { Op::Unreact },
                target: Some(target),
                status: answer.status,
                expected,
                gone: 404,
                problem,
            }
        };
        notes.push(note);
    }
    notes
}

/// Runs the four people's parts at once; checks every answer against the database: the
/// expected status, or the "gone" one only for a target deleted by then.
async fn mix(
    db: &TestDb,
    people: &[Client],
    dm: &str,
    book: &Arc<Mutex<Book>>,
    rng: &mut Rng,
    ops: usize,
) -> Vec<Note> {
    let tasks: Vec<_> = people
        .iter()
        .enumerate()
        .map(|(who, client)| {
            tokio::spawn(act(
                who,
                client.clone(),
                dm.to_owned(),
                book.clone(),
                Rng::new(rng.next()),
                ops,
            ))
        })
        .collect();
    let mut notes = Vec::new();
    for task in tasks {
        notes.extend(task.await.expect("a person's part of the mix"));
    }
    let mut conn = db.connect().await;
    let current: HashSet<i64> = sqlx::query_scalar::<_, i64>("SELECT id FROM messages")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let mut problems = Vec::new();
    for note in &notes {
        let gone = note.target.is_some_and(|target| !current.contains(&target));
        if note.status != note.expected && !(gone && note.status == note.gone) {
            problems.push(format!(
                "{} {:?} {:?}: {} (expected {}{})",
                PEOPLE[note.who],
                note.op,
                note.target,
                note.status,
                note.expected,
                if gone {
                    format!(" or {}", note.gone)
                } else {
                    String::new()
                }
            ));
        }
        if let Some(problem) = &note.problem {
            problems.push(format!("{} {:?}: {problem}", PEOPLE[note.who], note.op));
        }
    }
    assert!(
        problems.is_empty(),
        "{} answers wrong:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
    notes
}

fn count(notes: &[Note], op: Op, status: u16) -> usize {
    notes.iter().filter(|n| n.op == op && n.status == status).count()
}

/// One reader of each room, for history and pages.
fn reader_of(room: &str) -> usize {
    match room {
        "general" | "den" => 0,
        _ => 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_replays_exactly_and_ends_in_the_state_of_history_across_a_sigkill() {
    replays_exactly(false).await;
}

/// The same with feeds of two events: every live stream falls behind again and again, and
/// catches up from the database, where the events of messages deleted since are skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_keep_falling_behind_end_in_the_state_of_history_too() {
    replays_exactly(true).await;
}

async fn replays_exactly(lagging: bool) {
    let seed = seed("CHANGES_SEED");
    println!("seed {seed} (replay with CHANGES_SEED={seed})");
    let mut rng = Rng::new(seed);
    let db = TestDb::new();
    let mut args = vec!["--rate-limits", "off"];
    if lagging {
        args.extend(["--hub-capacity", "2"]);
    }
    let server = Server::start(&db, &args).await;
    let mut people = Vec::new();
    for name in PEOPLE {
        people.push(server.user(name).await);
    }
    people[ADA].create_private_room("den").await;
    people[ADA].add_member("den", "bob").await;
    people[ADA].add_member("den", "cat").await;
    let (status, room) = people[3].dm(&["bob"]).await;
    assert_eq!(status, 201, "{room}");
    let dm = room["name"].as_str().unwrap().to_owned();
    let cursor = newest_event(&db).await;

    let spec = |who: usize, room: Option<&str>, html: bool| Spec {
        who,
        room: room.map(str::to_owned),
        html,
    };
    let specs = vec![
        spec(1, None, false),
        spec(2, None, true),
        spec(3, None, false),
        spec(ADA, Some("den"), true),
        spec(1, Some(&dm), false),
        spec(2, Some("general"), false),
        spec(3, Some(&dm), true),
    ];
    // Bob's user stream stops reading part way, and comes back only after the restart.
    const PAUSED: usize = 0;
    let mut live = Vec::new();
    for (n, spec) in specs.iter().enumerate() {
        let stop = (n == PAUSED).then_some(60);
        live.push(Live::start(&people[spec.who], spec, Some(cursor), None, stop).await);
    }

    let book = Arc::new(Mutex::new(Book::default()));
    let started = std::time::Instant::now();
    let mut notes = mix(&db, &people, &dm, &book, &mut rng, 70).await;
    println!("{} changes in {:?}", notes.len(), started.elapsed());
    for (op, status) in [
        (Op::Reply, 201),
        (Op::Edit, 200),
        (Op::Delete, 200),
        (Op::DeleteOther, 200),
        (Op::React, 200),
        (Op::React, 204),
        (Op::Unreact, 200),
        (Op::Unreact, 204),
    ] {
        assert!(
            count(&notes, op, status) > 0,
            "the mix has a {op:?} answered {status} (seed {seed})"
        );
    }

    // Live streams hold what a replay would send, and perhaps since-erased events.
    let log = Log::read(&db).await;
    let mut encodings = Encodings::default();
    let mut lasts = Vec::new();
    let mut erased_seen_live = 0;
    for (n, stream) in live.iter_mut().enumerate() {
        let last = *log.replayed(&stream.spec, cursor).last().unwrap();
        lasts.push(last);
        if n == PAUSED {
            continue;
        }
        stream.reach(last).await;
        let got = stream.got();
        assert_live(&stream.spec, &ids(&got), &log, cursor, last, "live");
        let erased: HashSet<i64> = log
            .visible(&stream.spec, cursor)
            .into_iter()
            .filter_map(|(id, erased)| erased.then_some(id))
            .collect();
        erased_seen_live += got.iter().filter(|event| erased.contains(&event.id)).count();
        encodings.check(&stream.spec, &got);
        assert_final_state(&people, &stream.spec, &got, &dm, "live").await;
    }
    assert!(
        erased_seen_live > 0,
        "live streams got events of messages deleted since, which no replay sends"
    );
    live[PAUSED].read(60).await;
    let paused = live[PAUSED].got();
    assert_eq!(paused.len(), 60, "bob's paused stream read its first 60 events");
    assert!(paused.last().unwrap().id < lasts[PAUSED], "it stopped before the end");
    // Streams opened afterwards at the same cursor: exactly the database's events.
    let mut replays = Vec::new();
    for spec in &specs {
        let expected = log.replayed(spec, cursor);
        let got = replay(&people[spec.who], spec, cursor, &expected, "after the mix").await;
        encodings.check(spec, &got);
        assert_final_state(&people, spec, &got, &dm, "replayed after the mix").await;
        replays.push(expected);
    }
    // History is not trivial, and each message reads the same on its own.
    let mut histories = BTreeMap::new();
    for room in ["general", "den", dm.as_str()] {
        let reader = &people[reader_of(room)];
        let history = history_of(reader, room).await;
        for message in &history {
            let answer = get_message(reader, id_of(message)).await;
            assert_eq!((answer.status, answer.json()), (200, message.clone()));
        }
        histories.insert(room.to_owned(), history);
    }
    let all: Vec<&Value> = histories.values().flatten().collect();
    assert!(all.iter().any(|m| m.get("edited_at").is_some()), "some are edited");
    assert!(all.iter().any(|m| m["reactions"] != json!([])), "some have reactions");
    assert!(all.iter().any(|m| m.get("reply_to").is_some()), "some are replies");
    let deleted: Vec<i64> = book.lock().unwrap().deleted.iter().copied().collect();
    for id in &deleted {
        assert_eq!(get_message(&people[ADA], *id).await.status, 404, "deleted {id}");
    }
    println!(
        "{} messages left, {} deleted; replays of {:?} events",
        all.len(),
        deleted.len(),
        replays.iter().map(Vec::len).collect::<Vec<_>>()
    );

    if lagging {
        assert!(
            server.metric("chat_lag_recoveries_total").await > 0.0,
            "the streams fell behind"
        );
    }

    // SIGKILL, and the same again on the same file.
    server.kill().await;
    let mut before_kill = Vec::new();
    for stream in live {
        let spec = stream.spec.clone();
        before_kill.push((spec, stream.finish().await));
    }
    let server = Server::start(&db, &args).await;
    // The address is announced before the database is opened; `/healthz` answers once it is.
    let health = tokio::time::timeout(WAIT, reqwest::get(server.url("/healthz")))
        .await
        .expect("the restarted server answers in time")
        .expect("GET /healthz");
    assert_eq!(health.status(), 200, "the restarted server is healthy");
    let people: Vec<Client> = people.iter().map(|p| p.against(&server)).collect();
    let log = Log::read(&db).await;
    for (spec, expected_before) in specs.iter().zip(&replays) {
        let last = *expected_before.last().unwrap();
        let expected: Vec<i64> = log
            .replayed(spec, cursor)
            .into_iter()
            .filter(|id| *id <= last)
            .collect();
        assert_eq!(&expected, expected_before, "{}: the log is as it was", spec.name());
        let got = replay(&people[spec.who], spec, cursor, &expected, "after the restart").await;
        encodings.check(spec, &got);
        assert_final_state(&people, spec, &got, &dm, "replayed after the restart").await;
    }
    for (room, history) in &histories {
        assert_eq!(
            &history_of(&people[reader_of(room)], room).await,
            history,
            "{room} after the restart"
        );
    }

    // The streams that were open at the kill come back with their Last-Event-ID, and follow
    // more changes live, some of them to what they saw before.
    let mut live = Vec::new();
    for (spec, got) in &before_kill {
        let last_seen = got.last().map_or(cursor, |event| event.id);
        live.push(Live::start(&people[spec.who], spec, None, Some(last_seen), None).await);
    }
    notes.extend(mix(&db, &people, &dm, &book, &mut rng, 15).await);
    let log = Log::read(&db).await;
    for (stream, (spec, before)) in live.iter_mut().zip(&before_kill) {
        let last = *log.replayed(spec, cursor).last().unwrap();
        stream.reach(last).await;
        let mut got = before.clone();
        got.extend(stream.got());
        assert_live(spec, &ids(&got), &log, cursor, last, "across the kill");
        encodings.check(spec, &got);
        assert_final_state(&people, spec, &got, &dm, "across the kill").await;
    }
    for spec in &specs {
        let expected = log.replayed(spec, cursor);
        let got = replay(&people[spec.who], spec, cursor, &expected, "at the end").await;
        encodings.check(spec, &got);
        assert_final_state(&people, spec, &got, &dm, "replayed at the end").await;
    }
    println!("{} changes in all", notes.len());
}

// ---------------------------------------------------------------------------------------------
// The rules

#[tokio::test]
async fn only_the_author_edits_the_author_or_an_admin_deletes_and_a_deleted_message_is_gone() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--rate-limits", "off"]).await;
    let ada = server.user("ada").await; // the first account: an admin
    let bob = server.user("bob").await;
    let cat = server.user("cat").await;

    let first = id_of(&bob.say("general", "bob's first").await);
    for (who, status, what) in [(&cat, 403, "another member"), (&ada, 403, "an admin")] {
        let answer = edit(who, first, "not yours").await;
        assert_eq!(answer.status, status, "{what} edits bob's message: {}", answer.body);
    }
    let edited = edit(&bob, first, "bob's first, **edited** for @cat").await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    let edited = edited.json();
    assert_eq!(
        (
            &edited["type"],
            &edited["room"],
            &edited["message_id"],
            &edited["username"],
            &edited["content"],
            &edited["mentions"]
        ),
        (
            &json!("edit"),
            &json!("general"),
            &json!(first),
            &json!("bob"),
            &json!("bob's first, **edited** for @cat"),
            &json!(["cat"])
        ),
        "{edited}"
    );
    assert!(id_of(&edited) > first && edited["created_at"].is_string(), "{edited}");
    // The same content again stores nothing.
    let newest = newest_event(&db).await;
    let again = edit(&bob, first, "bob's first, **edited** for @cat").await;
    assert_eq!((again.status, again.body.as_str()), (204, ""));
    assert_eq!(newest_event(&db).await, newest, "an unchanged edit stores no event");
    let shown = get_message(&bob, first).await.json();
    assert_eq!(shown["content"], "bob's first, **edited** for @cat");
    assert_eq!(shown["edited_at"], edited["created_at"]);
    assert_eq!(shown["mentions"], json!(["cat"]));

    let second = id_of(&bob.say("general", "bob's second").await);
    let answer = delete(&cat, second).await;
    assert_eq!(
        answer.status, 403,
        "another member deletes bob's message: {}",
        answer.body
    );
    for (who, id) in [(&ada, second), (&bob, first)] {
        let answer = delete(who, id).await;
        assert_eq!(answer.status, 200, "{} deletes {id}: {}", who.username, answer.body);
        let event = answer.json();
        assert_eq!(
            (&event["type"], &event["message_id"], &event["username"], &event["room"]),
            (&json!("delete"), &json!(id), &json!(who.username), &json!("general")),
            "{event}"
        );
    }
    // A deleted message is gone for every route, whoever asks.
    for who in [&bob, &ada] {
        for (what, answer) in [
            ("GET", get_message(who, first).await),
            ("PATCH", edit(who, first, "back again").await),
            ("DELETE", delete(who, first).await),
            ("PUT reaction", react(who, first, "👍", true).await),
            ("DELETE reaction", react(who, first, "👍", false).await),
        ] {
            assert_eq!(
                answer.status, 404,
                "{} {what} of a deleted message: {}",
                who.username, answer.body
            );
        }
    }
    let page = send(
        &bob,
        reqwest::Method::GET,
        &format!("/rooms/general/messages/{first}"),
        None,
    )
    .await;
    assert_eq!(page.status, 404, "the permalink of a deleted message");

    // Reactions: any reader; again or absent changes nothing.
    let third = id_of(&bob.say("general", "bob's third").await);
    let added = react(&cat, third, "👍", true).await;
    assert_eq!(added.status, 200, "{}", added.body);
    let added = added.json();
    assert_eq!(
        (
            &added["type"],
            &added["message_id"],
            &added["username"],
            &added["emoji"],
            &added["added"]
        ),
        (
            &json!("reaction"),
            &json!(third),
            &json!("cat"),
            &json!("👍"),
            &json!(true)
        ),
        "{added}"
    );
    for (who, emoji, add, status, what) in [
        (&cat, "👍", true, 204, "reacting twice"),
        (&cat, "🎉", false, 204, "removing a reaction not there"),
        (&bob, "🎉", true, 200, "the author reacts"),
        (&ada, "👍", true, 200, "an admin reacts"),
    ] {
        let answer = react(who, third, emoji, add).await;
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
    }
    let reactions = |answer: Answer| answer.json()["reactions"].clone();
    assert_eq!(
        reactions(get_message(&bob, third).await),
        json!([{"emoji": "👍", "usernames": ["cat", "ada"]}, {"emoji": "🎉", "usernames": ["bob"]}])
    );
    let removed = react(&cat, third, "👍", false).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.json()["added"], false);
    assert_eq!(react(&cat, third, "👍", false).await.status, 204, "removing it again");
    // Emoji go by their first reaction that is still there: ada's 👍 came after bob's 🎉.
    assert_eq!(
        reactions(get_message(&bob, third).await),
        json!([{"emoji": "🎉", "usernames": ["bob"]}, {"emoji": "👍", "usernames": ["ada"]}])
    );
    // An emoji is 1 to 16 characters, without white space or control characters.
    for (emoji, status) in [
        ("a".repeat(16), 200),
        ("🦀".repeat(16), 200),
        ("❤️".to_owned(), 200),
        ("a".repeat(17), 422),
        ("🦀".repeat(17), 422),
        ("👍 👍".to_owned(), 422),
        ("ok\t".to_owned(), 422),
        ("\u{a0}".to_owned(), 422),
        ("\u{7}".to_owned(), 422),
        ("\u{85}".to_owned(), 422),
    ] {
        for add in [true, false] {
            let answer = react(&cat, third, &emoji, add).await;
            assert_eq!(answer.status, status, "{emoji:?} (add: {add}): {}", answer.body);
        }
    }

    // The permalink page shows the message highlighted among the others.
    let page = Html::parse_document(&get_page(&cat, &format!("/rooms/general/messages/{third}")).await);
    let highlighted: Vec<String> = page
        .select(&selector("li.message.highlight"))
        .map(|li| li.value().attr("id").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(highlighted, [format!("msg-{third}")]);

    // Replies: to a current message of the same room only.
    let (status, reply) = bob
        .post_json("general", json!({"content": "as I said", "reply_to": third}))
        .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["reply_to"], third);
    assert_eq!(
        history_of(&bob, "general").await.last().unwrap()["reply_to"],
        third,
        "history shows what it replies to"
    );
    bob.create_room("other").await;
    let elsewhere = id_of(&bob.say("other", "in another room").await);
    for (to, what) in [
        (elsewhere, "a message of another room"),
        (first, "a deleted message"),
        (third + 1_000_000, "no message at all"),
    ] {
        let (status, body) = bob
            .post_json("general", json!({"content": "replying", "reply_to": to}))
            .await;
        assert_eq!(status, 422, "a reply to {what}: {body}");
    }

    // Editing is over in an archived room; deleting is not.
    bob.create_room("attic").await;
    let stored = id_of(&bob.say("attic", "before the archive").await);
    assert_eq!(react(&cat, stored, "👍", true).await.status, 200);
    let archived = send(
        &bob,
        reqwest::Method::PATCH,
        "/api/rooms/attic",
        Some(json!({"archived": true})),
    )
    .await;
    assert_eq!(archived.status, 200, "{}", archived.body);
    for (what, answer) in [
        ("an edit", edit(&bob, stored, "after the archive").await),
        ("a reaction", react(&cat, stored, "🎉", true).await),
        ("removing a reaction", react(&cat, stored, "👍", false).await),
    ] {
        assert_eq!(answer.status, 409, "{what} in an archived room: {}", answer.body);
    }
    assert_eq!(delete(&bob, stored).await.status, 200, "deleting in an archived room");
}

#[tokio::test]
async fn a_message_of_a_room_one_cannot_read_answers_exactly_as_no_message() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--rate-limits", "off"]).await;
    let ada = server.user("ada").await; // an admin, who deletes anything she can read
    let bob = server.user("bob").await;
    let dan = server.user("dan").await;
    ada.create_private_room("vault").await;
    ada.add_member("vault", "bob").await;
    let secret = id_of(&bob.say("vault", "the combination").await);
    let (_, dm) = dan.dm(&["bob"]).await;
    let whisper = id_of(&bob.say(dm["name"].as_str().unwrap(), "just us").await);
    let nowhere = secret + 1_000_000;

    use reqwest::Method;
    let routes = |id: i64| {
        vec![
            (Method::GET, format!("/api/messages/{id}"), None),
            (
                Method::PATCH,
                format!("/api/messages/{id}"),
                Some(json!({"content": "mine now"})),
            ),
            (Method::DELETE, format!("/api/messages/{id}"), None),
            (Method::PUT, reaction_path(id, "👍"), None),
            (Method::DELETE, reaction_path(id, "👍"), None),
            (
                Method::POST,
                "/api/rooms/general/messages".to_owned(),
                Some(json!({"content": "re", "reply_to": id})),
            ),
        ]
    };
    // Dan is not in the private room; the admin is not in bob and dan's direct room.
    for (outsider, hidden) in [(&dan, secret), (&ada, whisper)] {
        for ((method, path, body), (_, nowhere_path, _)) in routes(hidden).into_iter().zip(routes(nowhere)) {
            let answer = send(outsider, method.clone(), &path, body.clone()).await;
            let none = send(outsider, method.clone(), &nowhere_path, body).await;
            let expected = if method == Method::POST { 422 } else { 404 };
            assert_eq!(answer.status, expected, "{method} {path}: {}", answer.body);
            assert_eq!(none.status, expected, "{method} {nowhere_path}");
            assert_eq!(
                answer.body.replace(&hidden.to_string(), &nowhere.to_string()),
                none.body,
                "{method} {path} answers {} as {nowhere_path}",
                outsider.username
            );
        }
    }
    let page = send(&dan, Method::GET, &format!("/rooms/vault/messages/{secret}"), None).await;
    assert_eq!(page.status, 404, "the permalink page");
    // Nothing of them changed.
    for (id, content) in [(secret, "the combination"), (whisper, "just us")] {
        let kept = get_message(&bob, id).await;
        assert_eq!(kept.status, 200);
        let kept = kept.json();
        assert_eq!(
            (&kept["content"], kept.get("edited_at"), &kept["reactions"]),
            (&json!(content), None, &json!([]))
        );
    }
}

#[tokio::test]
async fn history_around_a_message_is_centred_on_it() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--rate-limits", "off"]).await;
    let ada = server.user("ada").await;
    ada.create_room("line").await;
    let mut said = Vec::new();
    for n in 0..11 {
        said.push(id_of(&ada.say("line", &format!("number {n}")).await));
    }
    for (limit, at) in [(5, 5), (6, 5), (4, 3), (7, 6), (3, 1)] {
        let around = said[at];
        let got: Vec<i64> = ada
            .history("line", &format!("?around={around}&limit={limit}"))
            .await
            .iter()
            .map(id_of)
            .collect();
        assert_eq!(got.len(), limit, "around {around}, limit {limit}: {got:?}");
        let start = said.iter().position(|id| *id == got[0]).expect("ids of the room");
        assert_eq!(
            got,
            said[start..start + limit],
            "a run of the room's messages, oldest first"
        );
        let place = got.iter().position(|id| *id == around).expect("the message itself") as i64;
        assert!(
            (limit as i64 - 1 - 2 * place).abs() <= 2,
            "around {around} (limit {limit}) is in the middle: {got:?}"
        );
    }
}

#[tokio::test]
async fn edits_and_reactions_are_rate_limited_per_person() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--edit-rate", "3", "--reaction-rate", "3"]).await;
    let bob = server.user("bob").await;
    let cat = server.user("cat").await;
    let said = id_of(&bob.say("general", "version 0").await);
    for n in 1..=3 {
        let answer = edit(&bob, said, &format!("version {n}")).await;
        assert_eq!(answer.status, 200, "edit {n}: {}", answer.body);
    }
    let retry_after = |answer: &Answer, what: &str| {
        assert_eq!(answer.status, 429, "{what}: {}", answer.body);
        let seconds: u64 = answer
            .retry_after
            .as_deref()
            .unwrap_or_else(|| panic!("{what}: no Retry-After"))
            .parse()
            .expect("Retry-After in seconds");
        assert!(seconds >= 1, "{what}: Retry-After {seconds}");
    };
    retry_after(&edit(&bob, said, "version 4").await, "a fourth edit in a minute");
    retry_after(&delete(&bob, said).await, "a deletion after three edits");
    assert_eq!(
        get_message(&bob, said).await.json()["content"],
        "version 3",
        "nothing stored"
    );
    let mine = id_of(&cat.say("general", "cat's").await);
    assert_eq!(
        edit(&cat, mine, "cat's, edited").await.status,
        200,
        "another person edits"
    );

    // Reactions have a limit of their own.
    for emoji in ["👍", "🎉", "ok"] {
        let answer = react(&bob, mine, emoji, true).await;
        assert_eq!(answer.status, 200, "{emoji}: {}", answer.body);
    }
    retry_after(&react(&bob, mine, "+1", true).await, "a fourth reaction in a minute");
    retry_after(&react(&bob, mine, "👍", false).await, "removing one after three");
    assert_eq!(react(&cat, said, "👍", true).await.status, 200, "another person reacts");
    let kept = get_message(&bob, mine).await.json();
    assert_eq!(kept["reactions"].as_array().unwrap().len(), 3, "{kept}");
}

// ---------------------------------------------------------------------------------------------
// Deleted means gone

/// 24 random lowercase letters and digits, starting with a letter and ending with a digit, so
/// that a full-text index keeps it as one token, unchanged.
pub(crate) fn marker() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("random bytes");
    let mut marker: String = bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    marker.replace_range(0..1, &(LETTERS[bytes[0] as usize % 26] as char).to_string());
    marker.replace_range(23..24, &((b'0' + bytes[23] % 10) as char).to_string());
    marker
}

/// Which of `markers` the database file or its WAL hold, byte for byte (or the tail of one,
/// in case an index keeps a word's start apart), with the file it was found in.
pub(crate) fn markers_in_files(db: &TestDb, markers: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let path = db.path();
    for file in [path.clone(), path.with_extension("db-wal")] {
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => panic!("reading {}: {error}", file.display()),
        };
        for marker in markers {
            let holds = |needle: &[u8]| bytes.windows(needle.len()).any(|window| window == needle);
            if holds(marker.as_bytes()) || holds(&marker.as_bytes()[6..]) {
                found.push(format!("{marker} in {}", file.display()));
            }
        }
    }
    found
}

/// Long enough that a row's text outlasts the shorter row written over the end of its space
/// when the text is erased: without `secure_delete` the start of it would stay in the file.
const FILLER: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor \
    incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation \
    ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit \
    in voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur sint occaecat \
    cupidatat non proident, sunt in culpa qui officia deserunt mollit anim id est laborum.";

#[tokio::test]
async fn a_deleted_message_leaves_no_byte_of_any_version_in_the_database_files() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--rate-limits", "off"]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let markers: Vec<String> = (0..3).map(|_| marker()).collect();
    let said = id_of(
        &ada.say(
            "general",
            &format!("{} the first version, for @bob. {FILLER}", markers[0]),
        )
        .await,
    );
    for (n, marker) in markers.iter().enumerate().skip(1) {
        let answer = edit(&ada, said, &format!("{marker} version {}. {FILLER}", n + 1)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert_eq!(react(&bob, said, "👍", true).await.status, 200);
    let (status, reply) = bob
        .post_json("general", json!({"content": "what do you mean?", "reply_to": said}))
        .await;
    assert_eq!(status, 201, "{reply}");
    let reply = id_of(&reply);
    let quote = |page: &str| {
        let page = Html::parse_document(page);
        let li = page
            .select(&selector(&format!("#msg-{reply}")))
            .next()
            .expect("the reply on the page");
        html_message(li).unwrap().1.quote.expect("the reply quotes")
    };
    let quoted = quote(&get_page(&bob, "/rooms/general").await);
    assert!(
        !quoted.gone && quoted.text.as_deref().is_some_and(|text| text.contains(&markers[2])),
        "the reply quotes the latest version: {quoted:?}"
    );
    // The check sees them while they are there.
    let found = markers_in_files(&db, &markers);
    for marker in &markers {
        assert!(
            found.iter().any(|f| f.starts_with(marker.as_str())),
            "{marker} not found: {found:?}"
        );
    }

    let answer = delete(&ada, said).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = markers_in_files(&db, &markers);
        if found.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still in the files {WAIT:?} after the deletion: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut conn = db.connect().await;
    let listed: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE id = ?")
        .bind(said)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(listed, 0, "the messages view no longer lists it");
    let edits: i64 = sqlx::query_scalar("SELECT count(*) FROM message_edits WHERE message_id = ?")
        .bind(said)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(edits, 0, "message_edits has none of its edits");
    let left: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM reactions WHERE message_id = ?1), \
                (SELECT count(*) FROM mentions WHERE event_id = ?1 \
                    OR event_id IN (SELECT id FROM events WHERE message_id = ?1))",
    )
    .bind(said)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(left, (0, 0), "its reactions and mentions are gone");
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT kind, body FROM events WHERE id = ? OR message_id = ? ORDER BY id")
            .bind(said)
            .bind(said)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let kinds: Vec<&str> = rows.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds, ["message", "edit", "edit", "reaction", "delete"], "{rows:?}");
    assert!(
        rows.iter().all(|(kind, body)| kind == "delete" || body.is_none()),
        "no text left in its rows: {rows:?}"
    );
    sqlx::Connection::close(conn).await.unwrap();

    let page = get_page(&bob, "/rooms/general").await;
    assert!(
        markers.iter().all(|m| !page.contains(m.as_str())),
        "the page holds none of it"
    );
    let quoted = quote(&page);
    assert!(
        quoted.gone && quoted.of == said,
        "the quote says it was deleted: {quoted:?}"
    );
    let history = history_of(&bob, "general").await;
    assert!(history.iter().all(|m| id_of(m) != said));
    assert_eq!(get_message(&bob, said).await.status, 404);

    assert!(server.terminate().await.success(), "a clean shutdown");
    let found = markers_in_files(&db, &markers);
    assert!(found.is_empty(), "after the shutdown: {found:?}");
}

/// The words the search index holds for `markers`: each marker it has as a term (read through
/// `fts5vocab`), and each whose bytes are in the index's own blocks or its copy of the text.
async fn markers_in_index(db: &TestDb, markers: &[String]) -> Vec<String> {
    let mut conn = db.connect().await;
    sqlx::query("CREATE VIRTUAL TABLE IF NOT EXISTS temp.search_terms USING fts5vocab(main, message_search, row)")
        .execute(&mut conn)
        .await
        .unwrap();
    let mut found = Vec::new();
    for marker in markers {
        let (term, blocks, text): (bool, bool, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM temp.search_terms WHERE term = ?1), \
                    EXISTS (SELECT 1 FROM message_search_data WHERE instr(block, CAST(?2 AS BLOB)) > 0), \
                    EXISTS (SELECT 1 FROM message_search_content WHERE instr(c0, ?1) > 0)",
        )
        .bind(marker.to_lowercase())
        .bind(&marker[6..])
        .fetch_one(&mut conn)
        .await
        .unwrap();
        for (held, where_) in [(term, "a term"), (blocks, "index blocks"), (text, "indexed text")] {
            if held {
                found.push(format!("{marker} in {where_}"));
            }
        }
    }
    sqlx::Connection::close(conn).await.unwrap();
    found
}

/// The search index keeps no copy of what was deleted, nor of what an edit replaced: its
/// terms go from the index itself (FTS5's secure-delete), not only from view, and after the
/// checkpoint that follows an erasure no byte of them is in the database file or its WAL.
#[tokio::test]
async fn the_search_index_keeps_no_copy_of_a_deleted_message_or_an_edited_away_version() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--rate-limits", "off"]).await;
    let ada = server.user("ada").await;
    let [first, second, other] = [marker(), marker(), marker()];
    let said = id_of(&ada.say("general", &format!("{first} said first. {FILLER}")).await);
    ada.say("general", &format!("{other} stays. {FILLER}")).await;
    let all = [first.clone(), second.clone(), other.clone()];
    let held = markers_in_index(&db, &all).await;
    for where_ in ["a term", "index blocks", "indexed text"] {
        assert!(
            held.contains(&format!("{first} in {where_}")),
            "the check sees it: {held:?}"
        );
    }

    let answer = edit(&ada, said, &format!("{second} said second. {FILLER}")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let held = markers_in_index(&db, &all).await;
    assert!(
        !held.iter().any(|h| h.starts_with(first.as_str())),
        "an edit takes the old words out of the index: {held:?}"
    );
    assert!(held.contains(&format!("{second} in a term")), "{held:?}");

    let answer = delete(&ada, said).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let held = markers_in_index(&db, &all).await;
    assert_eq!(
        held,
        [
            format!("{other} in a term"),
            format!("{other} in index blocks"),
            format!("{other} in indexed text")
        ],
        "only what is still said is indexed"
    );
    let search = |word: String| {
        let ada = ada.clone();
        async move {
            let response = ada
                .request(reqwest::Method::GET, "/api/search")
                .query(&[("q", word)])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            body["results"].as_array().unwrap().len()
        }
    };
    assert_eq!(search(first.clone()).await, 0);
    assert_eq!(search(second.clone()).await, 0);
    assert_eq!(search(other.clone()).await, 1);

    // And nowhere in the files once the erasure's checkpoint has run.
    let gone = [first.clone(), second.clone()];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = markers_in_files(&db, &gone);
        if found.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still in the files {WAIT:?} after the deletion: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !markers_in_files(&db, std::slice::from_ref(&other)).is_empty(),
        "what stays is found"
    );
    assert!(server.terminate().await.success());
    assert!(markers_in_files(&db, &gone).is_empty(), "after the shutdown");
}

/// The routes that change a message, given what no page would send: ids that are no id,
/// emoji that are not text, bodies of the wrong shape and texts past their bounds. Each gets a
/// fitting 4xx with a JSON error, never a 5xx, and nothing is stored.
#[tokio::test]
async fn hostile_input_to_the_routes_that_change_messages_is_refused_plainly() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--rate-limits", "off"]).await;
    let ada = server.user("ada").await;
    let id = ada.say("general", "the one message").await["id"].as_i64().unwrap();
    let too_long = "x".repeat(4_001);
    let cases: Vec<(reqwest::Method, String, Option<Value>, &[u16])> = vec![
        (reqwest::Method::GET, "/api/messages/0".into(), None, &[404]),
        (reqwest::Method::GET, "/api/messages/-1".into(), None, &[404]),
        (reqwest::Method::GET, "/api/messages/1e3".into(), None, &[404]),
        (
            reqwest::Method::GET,
            "/api/messages/99999999999999999999999".into(),
            None,
            &[404],
        ),
        (
            reqwest::Method::PATCH,
            format!("/api/messages/{id}"),
            Some(json!({"content": ""})),
            &[422],
        ),
        (
            reqwest::Method::PATCH,
            format!("/api/messages/{id}"),
            Some(json!({"content": "   "})),
            &[422],
        ),
        (
            reqwest::Method::PATCH,
            format!("/api/messages/{id}"),
            Some(json!({"content": too_long})),
            &[422, 413],
        ),
        (
            reqwest::Method::PATCH,
            format!("/api/messages/{id}"),
            Some(json!({"content": 5})),
            &[400, 422],
        ),
        (
            reqwest::Method::PATCH,
            format!("/api/messages/{id}"),
            Some(json!({})),
            &[400, 422],
        ),
        (
            reqwest::Method::PUT,
            format!("/api/messages/{id}/reactions/%FF"),
            None,
            &[400, 404, 422],
        ),
        (
            reqwest::Method::PUT,
            format!("/api/messages/{id}/reactions/%E2%80%AE"),
            None,
            &[422],
        ),
        (
            reqwest::Method::PUT,
            format!("/api/messages/{id}/reactions/a%0Ab"),
            None,
            &[422],
        ),
        (
            reqwest::Method::PUT,
            format!("/api/messages/{id}/reactions/%3Cb%3E"),
            None,
            &[422],
        ),
        (
            reqwest::Method::PUT,
            format!("/api/messages/{id}/reactions/{}", "x".repeat(17)),
            None,
            &[422],
        ),
        (reqwest::Method::DELETE, "/api/messages/x".into(), None, &[404]),
        (
            reqwest::Method::POST,
            "/api/rooms/general/messages".into(),
            Some(json!({"content": "r", "reply_to": -4})),
            &[422],
        ),
        (
            reqwest::Method::POST,
            "/api/rooms/general/messages".into(),
            Some(json!({"content": "r", "reply_to": "4"})),
            &[400, 422],
        ),
        (
            reqwest::Method::POST,
            "/api/rooms/general/messages".into(),
            Some(json!({"content": "r", "reply_to": 1.5})),
            &[400, 422],
        ),
        (
            reqwest::Method::GET,
            "/api/rooms/general/messages?around=x".into(),
            None,
            &[400],
        ),
        (
            reqwest::Method::GET,
            "/api/rooms/general/messages?around=-1".into(),
            None,
            &[400],
        ),
    ];
    for (method, path, body, allowed) in cases {
        let mut request = ada.request(method.clone(), &path);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!(allowed.contains(&status), "{method} {path} {body:?}: {status} {text}");
        let error: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: {text}"));
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: {text}"
        );
    }
    // Nothing was stored: the one message, as it was, and no change to it.
    let history = ada.history("general", "").await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["content"], "the one message");
    assert_eq!(history[0]["reactions"], json!([]));
    let mut conn = db.connect().await;
    let changes: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE kind IN ('edit', 'delete', 'reaction')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(changes, 0);
}
