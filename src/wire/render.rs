//! Events as their two renderings: a JSON object for API clients, an HTML fragment for the page.
//! The page renders the same fragments, so a message, a member or a room looks the same however
//! it arrived. Each fragment's root element carries the DOM id it replaces (`msg-42`,
//! `member-ada`, `room-general`), so applying a frame twice changes nothing.

use std::borrow::Cow;

use askama::Template;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::markdown;
use crate::domain::{Event, EventId, EventKind, MATCH_END, MATCH_START, Reactions, Status};

/// One message as the page shows it, in its state as read (or as just posted).
#[derive(Template)]
#[template(path = "_message.html")]
pub struct MessagePartial<'a> {
    pub id: EventId,
    pub room: &'a str,
    pub username: &'a str,
    pub created_at: &'a str,
    pub edited_at: Option<&'a str>,
    /// The rendered Markdown: safe HTML.
    pub html: &'a str,
    pub emoji_only: bool,
    pub mentions: &'a [String],
    /// It says `@here` or `@room`.
    pub mentions_room: bool,
    pub quote: Option<QuoteView<'a>>,
    pub reactions: &'a [Reactions],
    /// The message a permalink points at.
    pub highlight: bool,
}

/// A reply's quote of the message it answers.
pub struct QuoteView<'a> {
    pub id: EventId,
    pub username: &'a str,
    /// `None`: that message was deleted.
    pub excerpt: Option<String>,
}

/// A message's reactions, which a `reaction` frame replaces whole.
#[derive(Template)]
#[template(path = "_reactions.html")]
pub struct ReactionsPartial<'a> {
    pub id: EventId,
    pub room: &'a str,
    pub reactions: &'a [Reactions],
}

/// A message's new text, which replaces its old one in place; it carries what the page also
/// updates: the "edited" mark and the quotes of replies to it.
#[derive(Template)]
#[template(path = "_edit.html")]
pub struct EditPartial<'a> {
    pub id: EventId,
    pub room: &'a str,
    pub edited_at: &'a str,
    pub html: &'a str,
    pub emoji_only: bool,
    pub excerpt: String,
    pub mentions: &'a [String],
    pub mentions_room: bool,
}

/// A deleted message: the page removes it, and says so in the replies that quote it.
#[derive(Template)]
#[template(path = "_delete.html")]
pub struct DeletePartial<'a> {
    pub id: EventId,
    pub room: &'a str,
}

/// A message's or an edit's HTML: as its maker rendered it, or rendered now (read back from
/// the database).
fn rendering<'a>(rendered: Option<&'a str>, content: &str, mentions: &[String]) -> Cow<'a, str> {
    match rendered {
        Some(html) => Cow::Borrowed(html),
        None => Cow::Owned(markdown::render(content, mentions)),
    }
}

/// How long a reply's quote of a message is, in characters.
pub const EXCERPT_CHARS: usize = 100;

/// The excerpt of `content` a reply's quote shows: plain text, with no character that could
/// reorder what follows it (the page sets it as text).
pub fn excerpt(content: &str) -> String {
    markdown::excerpt(content, EXCERPT_CHARS)
        .chars()
        .filter(|c| !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
        .collect()
}

/// One member and their status, in the member list.
#[derive(Template)]
#[template(path = "_member.html")]
pub struct MemberPartial<'a> {
    pub username: &'a str,
    pub status: Status,
}

/// One room in the sidebar. A direct room is shown by its people's names, the reader's own
/// left out by the page (a frame is the same for everyone).
#[derive(Template)]
#[template(path = "_room.html")]
pub struct RoomPartial<'a> {
    pub room: &'a str,
    pub kind: &'a str,
    pub topic: Option<&'a str>,
    pub archived: bool,
    pub members: &'a [String],
    /// What the reader has not read of it, when it is rendered for one reader's page; `None`
    /// in a `room` frame, which is the same for everyone.
    pub counts: Option<RoomCounts>,
}

/// What one reader has not read of a room, as the sidebar carries it (`data-unread`, ...).
#[derive(Debug, Clone, Copy)]
pub struct RoomCounts {
    pub unread: u32,
    pub mentions: u32,
    /// Where they have read to.
    pub read: EventId,
    /// The room's newest message.
    pub last_id: EventId,
    /// `all`, `mentions` or `none`.
    pub notify: &'static str,
}

/// A room read up to an event, on its reader's own streams: the page moves the room's cursor
/// and clears or recounts its badge.
#[derive(Template)]
#[template(
    source = r#"<div id="read-{{ room }}" class="read" data-room="{{ room }}" data-up-to="{{ up_to }}" hidden></div>"#,
    ext = "html"
)]
pub struct ReadPartial<'a> {
    pub room: &'a str,
    pub up_to: EventId,
}

/// Someone joined or left a room: the page updates its member list and, when it is the
/// reader, its room list.
#[derive(Template)]
#[template(path = "_membership.html")]
pub struct MembershipPartial<'a> {
    pub room: &'a str,
    pub username: &'a str,
    pub by: &'a str,
    pub joined: bool,
}

/// The JSON shape of an event, for the API and `?format=json` streams, fields in the order the
/// contract lists them:
///
/// - `{"id":42,"type":"message","room":"general","username":"ada","content":"hi","created_at":"…"}`
/// - `{"id":43,"type":"status","username":"ada","status":"away","created_at":"…"}`
/// - `{"id":44,"type":"room","room":"rust","kind":"public","topic":null,"archived":false,"created_at":"…"}`
///   (a direct room's also has `"members":[...]`)
/// - `{"id":45,"type":"member","room":"ops","username":"bob","joined":true,"by":"ada","created_at":"…"}`
pub struct Json<'a>(pub &'a Event);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &event.id)?;
        map.serialize_entry("type", event.name())?;
        match &event.kind {
            EventKind::Message {
                room,
                content,
                reply_to,
                mentions,
                mentions_room,
                edited_at,
                reactions,
                ..
            } => {
                map.serialize_entry("room", room)?;
                map.serialize_entry("username", &event.username)?;
                map.serialize_entry("content", content)?;
                map.serialize_entry("created_at", &event.created_at)?;
                if let Some(edited_at) = edited_at {
                    map.serialize_entry("edited_at", edited_at)?;
                }
                if let Some(quote) = reply_to {
                    map.serialize_entry("reply_to", &quote.id)?;
                }
                map.serialize_entry("mentions", mentions)?;
                if *mentions_room {
                    map.serialize_entry("mentions_room", &true)?;
                }
                map.serialize_entry("reactions", &ReactionsJson(reactions))?;
                return map.end();
            }
            EventKind::Edit {
                room,
                message_id,
                content,
                mentions,
                mentions_room,
                ..
            } => {
                map.serialize_entry("room", room)?;
                map.serialize_entry("message_id", message_id)?;
                map.serialize_entry("username", &event.username)?;
                map.serialize_entry("content", content)?;
                map.serialize_entry("mentions", mentions)?;
                if *mentions_room {
                    map.serialize_entry("mentions_room", &true)?;
                }
            }
            EventKind::Delete { room, message_id, .. } => {
                map.serialize_entry("room", room)?;
                map.serialize_entry("message_id", message_id)?;
                map.serialize_entry("username", &event.username)?;
            }
            EventKind::Reaction {
                room,
                message_id,
                emoji,
                added,
                ..
            } => {
                map.serialize_entry("room", room)?;
                map.serialize_entry("message_id", message_id)?;
                map.serialize_entry("username", &event.username)?;
                map.serialize_entry("emoji", emoji)?;
                map.serialize_entry("added", added)?;
            }
            EventKind::Status { status } => {
                map.serialize_entry("username", &event.username)?;
                map.serialize_entry("status", status)?;
            }
            EventKind::Room {
                room,
                kind,
                topic,
                archived,
                members,
                ..
            } => {
                map.serialize_entry("room", room)?;
                map.serialize_entry("kind", kind.as_str())?;
                map.serialize_entry("topic", topic)?;
                map.serialize_entry("archived", archived)?;
                if !members.is_empty() {
                    map.serialize_entry("members", members)?;
                }
            }
            EventKind::Member {
                room,
                member_name,
                joined,
                ..
            } => {
                map.serialize_entry("room", room)?;
                map.serialize_entry("username", member_name)?;
                map.serialize_entry("joined", joined)?;
                map.serialize_entry("by", &event.username)?;
            }
            EventKind::Read { room, up_to, .. } => {
                map.serialize_entry("room", room)?;
                map.serialize_entry("up_to", up_to)?;
            }
        }
        map.serialize_entry("created_at", &event.created_at)?;
        map.end()
    }
}

/// `[{"emoji","usernames"}]`.
struct ReactionsJson<'a>(&'a [Reactions]);

impl Serialize for ReactionsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for reactions in self.0 {
            seq.serialize_element(&serde_json::json!({
                "emoji": reactions.emoji,
                "usernames": reactions.usernames,
            }))?;
        }
        seq.end()
    }
}

/// A room as `chat-server export` describes it before the room's first message, for `import`
/// to make it again: the `room` event's JSON, with `members` for a private room as well as a
/// direct one, and `by`, the account whose event it is (who made the room). The event is the
/// room's first `room` event with the room's state now:
/// `{"id":44,"type":"room","room":"ops","kind":"private","topic":null,"archived":false,
/// "members":["ada","bob"],"by":"ada","created_at":"…"}`.
pub struct RoomLine<'a>(pub &'a Event);

impl Serialize for RoomLine<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event = self.0;
        let EventKind::Room {
            room,
            kind,
            topic,
            archived,
            members,
            ..
        } = &event.kind
        else {
            return Json(event).serialize(serializer);
        };
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &event.id)?;
        map.serialize_entry("type", event.name())?;
        map.serialize_entry("room", room)?;
        map.serialize_entry("kind", kind.as_str())?;
        map.serialize_entry("topic", topic)?;
        map.serialize_entry("archived", archived)?;
        if !members.is_empty() {
            map.serialize_entry("members", members)?;
        }
        map.serialize_entry("by", &event.username)?;
        map.serialize_entry("created_at", &event.created_at)?;
        map.end()
    }
}

/// The event as JSON text.
pub fn json(event: &Event) -> String {
    // A map of strings, numbers and booleans cannot fail to serialise.
    serde_json::to_string(&Json(event)).unwrap_or_default()
}

/// The event as the page's HTML fragment.
pub fn html(event: &Event) -> Result<String, askama::Error> {
    message_html(event, false)
}

/// The event as the page's HTML fragment; a message `highlight`ed is the one a permalink
/// points at.
pub fn message_html(event: &Event, highlight: bool) -> Result<String, askama::Error> {
    match &event.kind {
        EventKind::Message {
            room,
            content,
            reply_to,
            mentions,
            mentions_room,
            edited_at,
            reactions,
            rendered,
            ..
        } => {
            let html = rendering(rendered.as_deref(), content, mentions);
            MessagePartial {
                id: event.id,
                room,
                username: &event.username,
                created_at: &event.created_at,
                edited_at: edited_at.as_deref(),
                html: &html,
                emoji_only: markdown::emoji_only(content),
                mentions,
                mentions_room: *mentions_room,
                quote: reply_to.as_ref().map(|quote| QuoteView {
                    id: quote.id,
                    username: &quote.username,
                    excerpt: quote.content.as_deref().map(excerpt),
                }),
                reactions,
                highlight,
            }
            .render()
        }
        EventKind::Edit {
            room,
            message_id,
            content,
            mentions,
            mentions_room,
            rendered,
            ..
        } => {
            let html = rendering(rendered.as_deref(), content, mentions);
            EditPartial {
                id: *message_id,
                room,
                edited_at: &event.created_at,
                html: &html,
                emoji_only: markdown::emoji_only(content),
                excerpt: excerpt(content),
                mentions,
                mentions_room: *mentions_room,
            }
            .render()
        }
        EventKind::Delete { room, message_id, .. } => DeletePartial { id: *message_id, room }.render(),
        EventKind::Reaction {
            room,
            message_id,
            reactions,
            ..
        } => ReactionsPartial {
            id: *message_id,
            room,
            reactions,
        }
        .render(),
        EventKind::Status { status } => MemberPartial {
            username: &event.username,
            status: *status,
        }
        .render(),
        EventKind::Room {
            room,
            kind,
            topic,
            archived,
            members,
            ..
        } => RoomPartial {
            room,
            kind: kind.as_str(),
            topic: topic.as_deref(),
            archived: *archived,
            members,
            counts: None,
        }
        .render(),
        EventKind::Member {
            room,
            member_name,
            joined,
            ..
        } => MembershipPartial {
            room,
            username: member_name,
            by: &event.username,
            joined: *joined,
        }
        .render(),
        EventKind::Read { room, up_to, .. } => ReadPartial { room, up_to: *up_to }.render(),
    }
}

/// A search snippet as HTML: the text escaped, on one line, without the characters that
/// could reorder the page around it, and each match (between `MATCH_START` and `MATCH_END`, as
/// the index marks them) in `<mark>`.
pub fn snippet_html(snippet: &str) -> String {
    let mut html = String::with_capacity(snippet.len() + 32);
    let mut open = false;
    let mut space = false;
    for c in snippet.chars() {
        if c.is_whitespace() || (c.is_control() && c != MATCH_START && c != MATCH_END) {
            space = true;
            continue;
        }
        if matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') {
            continue;
        }
        if space && !html.is_empty() {
            html.push(' ');
        }
        space = false;
        match c {
            MATCH_START if !open => {
                html.push_str("<mark>");
                open = true;
            }
            MATCH_END if open => {
                html.push_str("</mark>");
                open = false;
            }
            MATCH_START | MATCH_END => {}
            '&' => html.push_str("&amp;"),
            '<' => html.push_str("&lt;"),
            '>' => html.push_str("&gt;"),
            '"' => html.push_str("&quot;"),
            '\'' => html.push_str("&#39;"),
            c => html.push(c),
        }
    }
    if open {
        html.push_str("</mark>");
    }
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{RoomId, RoomKind, UserId};

    fn message(content: &str) -> Event {
        Event {
            id: EventId(42),
            user_id: UserId(1),
            username: "ada".into(),
            created_at: "2026-11-21T09:30:00.123Z".into(),
            kind: EventKind::said(RoomId(1), "general", content),
        }
    }

    #[test]
    fn json_matches_the_contract() {
        assert_eq!(
            json(&message("hi")),
            r#"{"id":42,"type":"message","room":"general","username":"ada","content":"hi","created_at":"2026-11-21T09:30:00.123Z","mentions":[],"reactions":[]}"#
        );
        let status = Event {
            kind: EventKind::Status { status: Status::Away },
            ..message("")
        };
        assert_eq!(
            json(&status),
            r#"{"id":42,"type":"status","username":"ada","status":"away","created_at":"2026-11-21T09:30:00.123Z"}"#
        );
        let room = Event {
            kind: EventKind::Room {
                room_id: RoomId(2),
                room: "rust".into(),
                kind: RoomKind::Public,
                topic: None,
                archived: false,
                members: Vec::new(),
            },
            ..message("")
        };
        assert_eq!(
            json(&room),
            r#"{"id":42,"type":"room","room":"rust","kind":"public","topic":null,"archived":false,"created_at":"2026-11-21T09:30:00.123Z"}"#
        );
        let direct = Event {
            kind: EventKind::Room {
                room_id: RoomId(3),
                room: "dm-00000000000000ff".into(),
                kind: RoomKind::Direct,
                topic: None,
                archived: false,
                members: vec!["ada".into(), "bob".into()],
            },
            ..message("")
        };
        assert_eq!(
            json(&direct),
            r#"{"id":42,"type":"room","room":"dm-00000000000000ff","kind":"direct","topic":null,"archived":false,"members":["ada","bob"],"created_at":"2026-11-21T09:30:00.123Z"}"#
        );
        let member = Event {
            kind: EventKind::Member {
                room_id: RoomId(4),
                room: "ops".into(),
                member: UserId(2),
                member_name: "bob".into(),
                joined: true,
            },
            ..message("")
        };
        assert_eq!(
            json(&member),
            r#"{"id":42,"type":"member","room":"ops","username":"bob","joined":true,"by":"ada","created_at":"2026-11-21T09:30:00.123Z"}"#
        );
        let html = html(&member).unwrap();
        assert!(html.starts_with(r#"<li id="member-bob" "#), "{html}");
        assert!(html.contains(r#"data-room="ops""#), "{html}");
    }

    #[test]
    fn a_snippet_is_escaped_text_with_its_matches_marked() {
        assert_eq!(
            snippet_html("…say <b>\u{2}hello\u{3}</b> & \"bye\"\r\n\u{202E}there\u{2}…"),
            "…say &lt;b&gt;<mark>hello</mark>&lt;/b&gt; &amp; &quot;bye&quot; there<mark>…</mark>"
        );
        assert_eq!(snippet_html("\u{3}a\u{2}\u{2}b\u{3}\u{3}"), "a<mark>b</mark>");
    }

    #[test]
    fn html_escapes_markup_and_keeps_line_ends_out_of_the_frame() {
        let html = html(&message("<script>alert('x')</script>\r\n&\r")).unwrap();
        assert!(
            html.contains("<p>&lt;script&gt;alert('x')&lt;/script&gt;<br></p><p>&amp;</p>"),
            "{html}"
        );
        assert!(!html.contains("<script"));
        assert!(!html.contains(['\r', '\n']), "one data line per frame: {html:?}");
        assert!(html.starts_with(r#"<li id="msg-42" "#), "{html}");
        assert!(html.contains(r#" data-room="general""#), "{html}");
    }

    #[test]
    fn each_direction_control_is_isolated_in_an_element_of_its_own() {
        let html = html(&message("invoice\u{202E}fdp.exe \u{2067}x\u{2069}")).unwrap();
        assert!(
            html.contains(concat!(
                r#"invoice<span class="bidi" data-cp="U+202E">"#,
                "\u{202E}</span>fdp.exe ",
                r#"<span class="bidi" data-cp="U+2067">"#,
                "\u{2067}</span>x",
                r#"<span class="bidi" data-cp="U+2069">"#,
                "\u{2069}</span></p>"
            )),
            "{html}"
        );
    }

    #[test]
    fn a_read_event_and_a_message_to_the_whole_room_match_the_contract() {
        let read = Event {
            kind: EventKind::Read {
                room_id: RoomId(1),
                room: "general".into(),
                up_to: EventId(40),
            },
            ..message("")
        };
        assert_eq!(read.scope(), crate::domain::Scope::User(UserId(1)));
        assert_eq!(
            json(&read),
            r#"{"id":42,"type":"read","room":"general","up_to":40,"created_at":"2026-11-21T09:30:00.123Z"}"#
        );
        assert_eq!(
            html(&read).unwrap(),
            r#"<div id="read-general" class="read" data-room="general" data-up-to="40" hidden></div>"#
        );

        let mut calling = message("@here look");
        if let EventKind::Message { mentions_room, .. } = &mut calling.kind {
            *mentions_room = true;
        }
        assert!(json(&calling).contains(r#""mentions":[],"mentions_room":true,"reactions""#));
        let fragment = html(&calling).unwrap();
        assert!(
            fragment.contains(r#"data-mentions="" data-mentions-room"#),
            "{fragment}"
        );
        assert!(
            fragment.contains(r#"<span class="mention mention-room">@here</span>"#),
            "{fragment}"
        );
        assert!(!json(&message("@here")).contains("mentions_room"));
    }

    #[test]
    fn changes_to_a_message_match_the_contract_and_replace_their_elements() {
        let base = message("");
        let edit = Event {
            id: EventId(50),
            kind: EventKind::Edit {
                room_id: RoomId(1),
                room: "general".into(),
                message_id: EventId(42),
                content: "now **this** @bob".into(),
                mentions: vec!["bob".into()],
                mentions_room: false,
                rendered: None,
            },
            ..base.clone()
        };
        assert_eq!(
            json(&edit),
            r#"{"id":50,"type":"edit","room":"general","message_id":42,"username":"ada","content":"now **this** @bob","mentions":["bob"],"created_at":"2026-11-21T09:30:00.123Z"}"#
        );
        let html = html(&edit).unwrap();
        assert!(
            html.starts_with(r#"<div id="text-42" class="text" data-room="general" data-message="42" "#),
            "{html}"
        );
        assert!(html.contains(r#"data-excerpt="now this @bob""#), "{html}");
        assert!(html.contains("<strong>this</strong>"), "{html}");
        assert!(
            html.contains(r#"<span class="mention" data-user="bob">@bob</span>"#),
            "{html}"
        );

        let delete = Event {
            id: EventId(51),
            kind: EventKind::Delete {
                room_id: RoomId(1),
                room: "general".into(),
                message_id: EventId(42),
            },
            ..base.clone()
        };
        assert_eq!(
            json(&delete),
            r#"{"id":51,"type":"delete","room":"general","message_id":42,"username":"ada","created_at":"2026-11-21T09:30:00.123Z"}"#
        );
        assert!(html_of(&delete).starts_with(r#"<li id="msg-42" class="message deleted" "#));

        let reaction = Event {
            id: EventId(52),
            kind: EventKind::Reaction {
                room_id: RoomId(1),
                room: "general".into(),
                message_id: EventId(42),
                emoji: "👍".into(),
                added: true,
                reactions: vec![Reactions {
                    emoji: "👍".into(),
                    usernames: vec!["ada".into(), "bob".into()],
                }],
            },
            ..base
        };
        assert_eq!(
            json(&reaction),
            r#"{"id":52,"type":"reaction","room":"general","message_id":42,"username":"ada","emoji":"👍","added":true,"created_at":"2026-11-21T09:30:00.123Z"}"#
        );
        let html = html_of(&reaction);
        assert!(
            html.starts_with(r#"<div id="reactions-42" class="reactions" data-room="general""#),
            "{html}"
        );
        assert!(html.contains(r#"data-emoji="👍" data-users="ada bob""#), "{html}");
    }

    #[test]
    fn a_message_in_its_current_state_shows_its_edit_its_quote_and_its_reactions() {
        let mut now = message("hi");
        now.kind = EventKind::Message {
            room_id: RoomId(1),
            room: "general".into(),
            content: "hi".into(),
            reply_to: Some(crate::domain::Quote {
                id: EventId(41),
                username: "bob".into(),
                content: None,
            }),
            mentions: Vec::new(),
            mentions_room: false,
            edited_at: Some("2026-11-21T09:31:00.000Z".into()),
            reactions: vec![Reactions {
                emoji: "🎉".into(),
                usernames: vec!["bob".into()],
            }],
            rendered: None,
        };
        assert_eq!(
            json(&now),
            r#"{"id":42,"type":"message","room":"general","username":"ada","content":"hi","created_at":"2026-11-21T09:30:00.123Z","edited_at":"2026-11-21T09:31:00.000Z","reply_to":41,"mentions":[],"reactions":[{"emoji":"🎉","usernames":["bob"]}]}"#
        );
        let html = html_of(&now);
        assert!(html.contains(r#"data-edited="2026-11-21T09:31:00.000Z""#), "{html}");
        assert!(html.contains(r#"<span class="edited">(edited)</span>"#), "{html}");
        assert!(
            html.contains(r#"<a class="quote gone" data-quote-of="41">"#),
            "the original was deleted: {html}"
        );
        assert!(html.contains(r#"data-emoji="🎉" data-users="bob""#), "{html}");
    }

    fn html_of(event: &Event) -> String {
        html(event).unwrap()
    }
}
