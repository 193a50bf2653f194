//! Markdown as the page shows it: the one place a message's source becomes HTML.
//!
//! What it promises: the HTML it returns is safe to put inside an element, has no raw `\r` or
//! `\n` (an SSE frame's data stays one line), and takes time and space linear in the source.
//! Two walls stand between the text and the page. The first is our own writer over
//! pulldown-cmark's events, which knows only a chat subset (paragraphs, emphasis, code, quotes,
//! lists, links) and writes raw HTML as text; the second is ammonia with an allowlist of exactly
//! what the first can write, so a mistake in the writer is cut out rather than shipped.
//!
//! Links are only `http`, `https` and `mailto`; bare URLs and addresses become links too, and
//! `@name` of a mentioned account a `<span class="mention">`. Each bidirectional control is
//! isolated in a `<span class="bidi">`, which the page's style labels, so no message can show
//! its characters in another order than they were written (`invoice\u{202E}fdp.exe`).
//!
//! Most chat messages have no Markdown at all. Those skip both parsers (`plain`), and a
//! property test holds the shortcut to the same output as the full path.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::LazyLock;

use linkify::{LinkFinder, LinkKind};
use pulldown_cmark::{CodeBlockKind, CowStr, Event, LinkType, Options, Parser, Tag, TagEnd};
use unicode_segmentation::UnicodeSegmentation;

use crate::domain::ROOM_MENTIONS;

/// At most this many `@name`s are looked up for one message.
pub const MAX_MENTIONS: usize = 32;

/// Elements nested deeper than this are not written (their text is): nobody quotes a quote
/// of a quote twenty times, and a bound keeps `>` × 4,000 from becoming 4,000 elements.
const MAX_DEPTH: usize = 24;

/// At most this many emoji make a message "only emoji".
const MAX_EMOJI: usize = 8;

/// Markdown source, as stored, to the HTML the page shows: safe to put inside an element.
/// `mentions`: the account names (canonical spelling) this text mentions; each `@name` of
/// one of them (matched without regard to case, not inside code or a link) becomes
/// `<span class="mention" data-user="Canonical">@name</span>`.
pub fn render(source: &str, mentions: &[String]) -> String {
    if plain(source) {
        return render_plain(source);
    }
    render_full(source, mentions)
}

/// Candidate `@name` mentions in `source`, as written (without the `@`), in order of first
/// appearance, deduplicated without regard to case, at most 32; none inside inline code or
/// code blocks. A name is what DESIGN.md allows for usernames: 1–32 ASCII letters, digits,
/// `_`, `-`, `.`, starting and ending with a letter or digit (so "@ada." mentions "ada").
/// `@` must not be preceded by a letter/digit (so "x@y.com" is not a mention).
///
/// These are exactly the `@name`s that `render` would mark if each were an account: none
/// inside a link either (`https://x.y/@ada`, `[@ada](https://x.y)`), so a person is only
/// notified by what the page shows them as a mention.
pub fn mentioned_names(source: &str) -> Vec<String> {
    if !source.contains('@') {
        return Vec::new();
    }
    let mut writer = Writer::new(source, &[]);
    writer.run();
    writer.found
}

/// Whether `name` (as `mentioned_names` finds it) is `here` or `room`: a mention of everyone
/// who can read the room, whatever accounts there are.
pub fn is_room_mention(name: &str) -> bool {
    ROOM_MENTIONS.iter().any(|word| word.eq_ignore_ascii_case(name))
}

/// Whether the message is only emoji (1 to 8 of them, whitespace allowed between): the
/// page shows it large.
///
/// An emoji is a grapheme that Unicode's emoji list names (with or without its variation
/// selector), skin tones, flags and ZWJ sequences included; a digit or `#` alone is not one.
pub fn emoji_only(source: &str) -> bool {
    let mut count = 0;
    for grapheme in source.graphemes(true) {
        if grapheme.chars().all(char::is_whitespace) {
            continue;
        }
        count += 1;
        if count > MAX_EMOJI || emojis::get(grapheme).is_none() {
            return false;
        }
    }
    count > 0
}

/// A short plain-text excerpt of the message for a reply's quote: the rendered text without
/// markup, whitespace (line ends too) collapsed to single spaces, at most `max_chars`
/// characters, ending in "…" when cut. Never contains '\r' or '\n'.
pub fn excerpt(source: &str, max_chars: usize) -> String {
    let text = if plain(source) {
        source.to_owned()
    } else {
        shown_text(source)
    };
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max_chars {
        return collapsed;
    }
    let Some(budget) = max_chars.checked_sub(1) else {
        return String::new();
    };
    // Cut between graphemes, so that no flag, family or accented letter is split.
    let mut end = 0;
    let mut used = 0;
    for (at, grapheme) in collapsed.grapheme_indices(true) {
        used += grapheme.chars().count();
        if used > budget {
            break;
        }
        end = at + grapheme.len();
    }
    let mut cut = collapsed[..end].trim_end().to_owned();
    cut.push('…');
    cut
}

/// Whether `source` renders as one paragraph of its own text, escaped: no character that can
/// start Markdown, an entity, a link, an address or a mention, no bidi or other control
/// character, and nothing for the parser to trim. Conservative on purpose: a false "no" costs
/// a parse, a false "yes" would show the wrong thing.
fn plain(source: &str) -> bool {
    let (Some(first), Some(last)) = (source.chars().next(), source.chars().next_back()) else {
        return false;
    };
    // Block markers only count at the start of a line, and a plain text is one line.
    if first.is_whitespace() || last.is_whitespace() || matches!(first, '>' | '-' | '+' | '=') {
        return false;
    }
    let after_digits = source.trim_start_matches(|c: char| c.is_ascii_digit());
    if after_digits.len() < source.len() && after_digits.starts_with('.') {
        return false; // "1. " starts an ordered list
    }
    let special = |c: char| {
        matches!(
            c,
            '*' | '_'
                | '~'
                | '`'
                | '#'
                | '<'
                | '&'
                | '['
                | ']'
                | '('
                | ')'
                | '@'
                | ':'
                | '\\'
                | '|'
                | '$'
                | '^'
                | '{'
                | '}'
        ) || c.is_control()
            || is_bidi_control(c)
    };
    if source.contains(special) {
        return false;
    }
    // `www.` starts a bare link; `:` and `@` (already refused) start the others.
    !source.as_bytes().windows(4).any(|w| w.eq_ignore_ascii_case(b"www."))
}

/// What `render_full` makes of a `plain` text, without parsing it: escaped as ammonia's
/// serialiser escapes text (`&`, `<`, `>` and no-break space; quotes stay as they are).
fn render_plain(source: &str) -> String {
    let mut out = String::with_capacity(source.len() + 8);
    out.push_str("<p>");
    for c in source.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\u{A0}' => out.push_str("&nbsp;"),
            c => out.push(c),
        }
    }
    out.push_str("</p>");
    out
}

fn render_full(source: &str, mentions: &[String]) -> String {
    let mut writer = Writer::new(source, mentions);
    writer.run();
    let clean = SANITIZER.clean(&writer.out).to_string();
    // The serialiser writes the line ends that `&#10;` and `&#13;` stood for; put them back.
    if !clean.contains(['\r', '\n']) {
        return clean;
    }
    let mut out = String::with_capacity(clean.len() + 64);
    for c in clean.chars() {
        match c {
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            c => out.push(c),
        }
    }
    out
}

/// The chat subset: CommonMark with strikethrough. Tables, footnotes, task lists, math and
/// heading attributes stay off, so their syntax shows as the text it is.
fn parser(source: &str) -> Parser<'_> {
    Parser::new_ext(source, Options::ENABLE_STRIKETHROUGH)
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// One element the writer has started, or chose not to write.
struct Open {
    /// What ends it, when it was written.
    close: &'static str,
    /// Whether it was written (not too deep, a link with an allowed scheme).
    written: bool,
    /// Whether it is the `<a>` being written (links cannot nest).
    anchor: bool,
    /// Whether it is a `<pre>` being written (its line ends are kept).
    pre: bool,
    /// What stands between its text and what follows when it was not written: a block keeps
    /// its lines apart.
    separator: &'static str,
}

/// Markdown events to HTML for the sanitiser; also finds the `@name`s it marks, so that
/// `mentioned_names` and `render` agree on what a mention is.
struct Writer<'a> {
    source: &'a str,
    mentions: &'a [String],
    out: String,
    /// Prose text not yet written: pulldown-cmark splits text at characters that might have
    /// been markup, and links and mentions are found in the whole run.
    pending: String,
    stack: Vec<Open>,
    /// How many written elements are open.
    depth: usize,
    /// Links and images open, written or not: their text is not searched for links or mentions.
    links: usize,
    anchor_open: bool,
    /// Code blocks open: their text is literal.
    code_blocks: usize,
    pre_open: bool,
    /// Inside a block of raw HTML: how many of its lines have been written.
    html_lines: Option<usize>,
    found: Vec<String>,
}

impl<'a> Writer<'a> {
    fn new(source: &'a str, mentions: &'a [String]) -> Self {
        Writer {
            source,
            mentions,
            out: String::with_capacity(source.len() * 2 + 16),
            pending: String::new(),
            stack: Vec::new(),
            depth: 0,
            links: 0,
            anchor_open: false,
            code_blocks: 0,
            pre_open: false,
            html_lines: None,
            found: Vec::new(),
        }
    }

    fn run(&mut self) {
        for (event, range) in parser(self.source).into_offset_iter() {
            match event {
                Event::Text(text) if self.code_blocks == 0 => self.pending.push_str(&text),
                event => {
                    self.flush();
                    self.event(event, range);
                }
            }
        }
        self.flush();
        // pulldown-cmark balances its events; should it not, close what is open anyway.
        while let Some(open) = self.stack.pop() {
            if open.written {
                self.out.push_str(open.close);
            }
        }
    }

    fn event(&mut self, event: Event<'_>, range: std::ops::Range<usize>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) => self.literal(&text),
            Event::Code(code) => {
                if self.depth < MAX_DEPTH {
                    self.out.push_str("<code>");
                    self.literal(&code);
                    self.out.push_str("</code>");
                } else {
                    self.literal(&code);
                }
            }
            Event::Html(line) => match self.html_lines {
                // A line of an HTML block, its line end included: shown as the line it is.
                Some(lines) => {
                    if lines > 0 {
                        self.out.push_str("<br>");
                    }
                    self.literal(line.trim_end_matches(['\r', '\n']));
                    self.html_lines = Some(lines + 1);
                }
                None => self.literal(&line),
            },
            Event::InlineHtml(html) => self.literal(&html),
            Event::SoftBreak | Event::HardBreak => self.out.push_str("<br>"),
            // A thematic break is not part of chat: show what was typed.
            Event::Rule => {
                let typed = self.source.get(range).unwrap_or("---").trim();
                self.block("<p>", "</p>");
                self.literal(typed);
                self.end_block();
            }
            // Not enabled, so not produced; written as text should that change.
            Event::InlineMath(text) | Event::DisplayMath(text) | Event::FootnoteReference(text) => self.literal(&text),
            Event::TaskListMarker(checked) => self.literal(if checked { "[x] " } else { "[ ] " }),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => self.block("<p>", "</p>"),
            // No headings in chat: a heading is a paragraph in bold.
            Tag::Heading { .. } => self.block("<p><strong>", "</strong></p>"),
            Tag::BlockQuote(_) => self.block("<blockquote>", "</blockquote>"),
            Tag::CodeBlock(kind) => {
                self.code_blocks += 1;
                let language = match &kind {
                    CodeBlockKind::Fenced(info) => info.split([' ', '\t', ',']).next().filter(|l| language_ok(l)),
                    CodeBlockKind::Indented => None,
                };
                let open = match language {
                    Some(language) => format!(r#"<pre><code class="language-{language}">"#),
                    None => "<pre><code>".to_owned(),
                };
                let written = self.push(&open, "</code></pre>", "<br>");
                if written {
                    self.pre_open = true;
                    if let Some(open) = self.stack.last_mut() {
                        open.pre = true;
                    }
                }
            }
            Tag::HtmlBlock => {
                self.html_lines = Some(0);
                self.block("<p>", "</p>");
            }
            Tag::List(None) => self.block("<ul>", "</ul>"),
            Tag::List(Some(1)) => self.block("<ol>", "</ol>"),
            Tag::List(Some(start)) => {
                self.push(&format!(r#"<ol start="{start}">"#), "</ol>", "<br>");
            }
            Tag::Item => self.block("<li>", "</li>"),
            Tag::Emphasis => self.inline("<em>", "</em>"),
            Tag::Strong => self.inline("<strong>", "</strong>"),
            Tag::Strikethrough => self.inline("<del>", "</del>"),
            // An image is not loaded: it is a link to its address, labelled with its alt text.
            Tag::Link {
                link_type, dest_url, ..
            }
            | Tag::Image {
                link_type, dest_url, ..
            } => {
                self.links += 1;
                let href = href(link_type, &dest_url).filter(|_| !self.anchor_open);
                match href {
                    Some(href) => {
                        let open = format!(r#"<a href="{}">"#, Attribute(&href));
                        if self.push(&open, "</a>", "") {
                            self.anchor_open = true;
                            if let Some(open) = self.stack.last_mut() {
                                open.anchor = true;
                            }
                        }
                    }
                    None => self.skip(""),
                }
            }
            // Off in `parser`; their text shows without them.
            Tag::Table(_)
            | Tag::TableHead
            | Tag::TableRow
            | Tag::TableCell
            | Tag::FootnoteDefinition(_)
            | Tag::DefinitionList
            | Tag::DefinitionListTitle
            | Tag::DefinitionListDefinition
            | Tag::MetadataBlock(_) => self.skip("<br>"),
            Tag::Superscript | Tag::Subscript => self.skip(""),
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::CodeBlock => self.code_blocks = self.code_blocks.saturating_sub(1),
            TagEnd::HtmlBlock => self.html_lines = None,
            TagEnd::Link | TagEnd::Image => self.links = self.links.saturating_sub(1),
            _ => {}
        }
        self.end_block();
    }

    /// Closes the innermost element, or writes what separates it when it was not written.
    fn end_block(&mut self) {
        let Some(open) = self.stack.pop() else { return };
        if open.written {
            self.out.push_str(open.close);
            self.depth = self.depth.saturating_sub(1);
        } else {
            self.out.push_str(open.separator);
        }
        if open.anchor {
            self.anchor_open = false;
        }
        if open.pre {
            self.pre_open = false;
        }
    }

    fn block(&mut self, open: &str, close: &'static str) {
        self.push(open, close, "<br>");
    }

    fn inline(&mut self, open: &str, close: &'static str) {
        self.push(open, close, "");
    }

    fn skip(&mut self, separator: &'static str) {
        self.stack.push(Open {
            close: "",
            written: false,
            anchor: false,
            pre: false,
            separator,
        });
    }

    /// Starts an element unless it would be too deep; whether it was written.
    fn push(&mut self, open: &str, close: &'static str, separator: &'static str) -> bool {
        let written = self.depth < MAX_DEPTH;
        if written {
            self.out.push_str(open);
            self.depth += 1;
        }
        self.stack.push(Open {
            close,
            written,
            anchor: false,
            pre: false,
            separator,
        });
        written
    }

    /// Text shown as it is: escaped, line ends kept (in `<pre>`) or made breaks.
    fn literal(&mut self, text: &str) {
        escape_text(&mut self.out, text, self.pre_open);
    }

    /// Writes the pending prose, with its bare links and mentions.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.pending);
        if self.links > 0 {
            self.literal(&text);
        } else {
            for span in LINKS.spans(&text) {
                let piece = span.as_str();
                match span.kind() {
                    Some(LinkKind::Url) if web_url(piece) => self.bare_link(piece, piece),
                    Some(LinkKind::Email) => self.bare_link(&format!("mailto:{piece}"), piece),
                    _ => self.prose(&text, span.start(), span.end()),
                }
            }
        }
        self.pending = text;
        self.pending.clear();
    }

    /// `text[start..end]`, which has no link with a scheme: its `www.` links and mentions.
    fn prose(&mut self, text: &str, start: usize, end: usize) {
        let bytes = text.as_bytes();
        let mut written = start; // text before this is in `out`
        let mut at = start;
        while let Some(offset) = text[at..end].find(['@', 'w', 'W']) {
            let here = at + offset;
            at = here + 1;
            let before = text[..here].chars().next_back();
            if bytes[here] == b'@' {
                if before.is_some_and(|c| c.is_alphanumeric()) {
                    continue;
                }
                let Some(name) = mention_at(&text[here + 1..end]) else {
                    continue;
                };
                at = here + 1 + name.len();
                self.found_name(name);
                if self.depth >= MAX_DEPTH {
                    continue;
                }
                if is_room_mention(name) {
                    self.literal(&text[written..here]);
                    let _ = write!(self.out, r#"<span class="mention mention-room">@{name}</span>"#);
                    written = at;
                    continue;
                }
                let Some(canonical) = self.mentions.iter().find(|m| m.eq_ignore_ascii_case(name)) else {
                    continue;
                };
                self.literal(&text[written..here]);
                let _ = write!(
                    self.out,
                    r#"<span class="mention" data-user="{}">@{name}</span>"#,
                    Attribute(canonical)
                );
                written = at;
            } else {
                let starts_word =
                    !before.is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '@'));
                if !starts_word
                    || !bytes[here..end]
                        .get(..4)
                        .is_some_and(|w| w.eq_ignore_ascii_case(b"www."))
                {
                    continue;
                }
                let Some(link) = WWW_LINKS.links(&text[here..end]).next().filter(|l| l.start() == 0) else {
                    continue;
                };
                let label = link.as_str();
                self.literal(&text[written..here]);
                self.bare_link(&format!("https://{label}"), label);
                at = here + label.len();
                written = at;
            }
        }
        self.literal(&text[written..end]);
    }

    fn bare_link(&mut self, href: &str, label: &str) {
        if self.depth < MAX_DEPTH && !label.contains(is_bidi_control) {
            let _ = write!(self.out, r#"<a href="{}">"#, Attribute(href));
            self.literal(label);
            self.out.push_str("</a>");
        } else {
            self.literal(label);
        }
    }

    fn found_name(&mut self, name: &str) {
        if self.found.len() < MAX_MENTIONS && !self.found.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            self.found.push(name.to_owned());
        }
    }
}

/// The name of a mention whose `@` is just before `after`: the longest run of name characters,
/// less the dots, dashes and underscores at its end; `None` when that is no username.
fn mention_at(after: &str) -> Option<&str> {
    let run = after
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        .unwrap_or(after.len());
    let name = after[..run].trim_end_matches(['_', '-', '.']);
    let starts_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric());
    (starts_ok && name.len() <= 32).then_some(name)
}

/// Bare URLs with a scheme, and addresses.
static LINKS: LazyLock<LinkFinder> = LazyLock::new(LinkFinder::new);

/// A URL without a scheme, where one starts with `www.`: linkify knows where it ends.
static WWW_LINKS: LazyLock<LinkFinder> = LazyLock::new(|| {
    let mut finder = LinkFinder::new();
    finder.kinds(&[LinkKind::Url]).url_must_have_scheme(false);
    finder
});

fn web_url(url: &str) -> bool {
    let lower = |n: usize| url.get(..n).map(str::to_ascii_lowercase);
    lower(7).is_some_and(|s| s == "http://") || lower(8).is_some_and(|s| s == "https://")
}

/// Where a Markdown link may point: `http`, `https` or `mailto` (in any case); nothing
/// relative, protocol-relative or with a space or control character in it.
fn href(link_type: LinkType, dest: &CowStr<'_>) -> Option<String> {
    if dest.is_empty() || dest.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return None;
    }
    if link_type == LinkType::Email {
        return Some(format!("mailto:{dest}"));
    }
    let (scheme, rest) = dest.split_once(':')?;
    let web = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    let ok = (web && rest.starts_with("//") && rest.len() > 2)
        || (scheme.eq_ignore_ascii_case("mailto") && !rest.is_empty());
    ok.then(|| dest.to_string())
}

/// A code block's language, safe as a class name.
fn language_ok(language: &str) -> bool {
    (1..=20).contains(&language.len())
        && language
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-'))
}

/// HTML-escapes `text` into `out`, each bidi control isolated in a span of its own; line ends
/// are character references inside `<pre>`, breaks elsewhere.
fn escape_text(out: &mut String, text: &str, pre: bool) {
    for c in text.chars() {
        match c {
            c if is_bidi_control(c) => {
                let _ = write!(out, r#"<span class="bidi" data-cp="U+{:04X}">{c}</span>"#, u32::from(c));
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\n' if pre => out.push_str("&#10;"),
            '\n' => out.push_str("<br>"),
            c => out.push(c),
        }
    }
}

/// A value for a double-quoted attribute; a bidi control is percent-encoded (a URL means the
/// same either way, and nothing can reorder the status bar).
struct Attribute<'a>(&'a str);

impl std::fmt::Display for Attribute<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '"' => f.write_str("&quot;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                c if is_bidi_control(c) || c.is_control() => {
                    let mut utf8 = [0; 4];
                    for b in c.encode_utf8(&mut utf8).bytes() {
                        write!(f, "%{b:02X}")?;
                    }
                }
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// The second wall: exactly what the writer may produce, and nothing else.
static SANITIZER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let set = |items: &[&'static str]| items.iter().copied().collect::<HashSet<_>>();
    let mut builder = ammonia::Builder::empty();
    builder
        .tags(set(&[
            "p",
            "br",
            "em",
            "strong",
            "del",
            "code",
            "pre",
            "blockquote",
            "ul",
            "ol",
            "li",
            "a",
            "span",
        ]))
        .clean_content_tags(set(&["script", "style"]))
        .generic_attributes(HashSet::new())
        .tag_attributes(HashMap::from([
            ("a", set(&["href"])),
            ("code", set(&["class"])),
            ("span", set(&["data-user", "data-cp"])),
            ("ol", set(&["start"])),
        ]))
        .tag_attribute_values(HashMap::new())
        .allowed_classes(HashMap::from([("span", set(&["mention", "mention-room", "bidi"]))]))
        .set_tag_attribute_value("a", "target", "_blank")
        .link_rel(Some("noopener noreferrer"))
        .url_schemes(set(&["http", "https", "mailto"]))
        .url_relative(ammonia::UrlRelative::Deny)
        .strip_comments(true)
        .attribute_filter(|element, attribute, value| {
            let ok = match (element, attribute) {
                ("code", "class") => value.strip_prefix("language-").is_some_and(language_ok),
                ("ol", "start") => (1..=9).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit()),
                ("span", "data-cp") => value.strip_prefix("U+").is_some_and(|hex| {
                    u32::from_str_radix(hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .is_some_and(is_bidi_control)
                }),
                ("span", "data-user") => mention_at(value) == Some(value),
                _ => true,
            };
            ok.then_some(value.into())
        });
    builder
});

/// The text a reader sees, without markup: blocks apart by a space, inline markup gone.
fn shown_text(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    for (event, range) in parser(source).into_offset_iter() {
        match event {
            Event::Text(text)
            | Event::Code(text)
            | Event::Html(text)
            | Event::InlineHtml(text)
            | Event::InlineMath(text)
            | Event::DisplayMath(text)
            | Event::FootnoteReference(text) => out.push_str(&text),
            Event::SoftBreak | Event::HardBreak => out.push(' '),
            Event::Rule => {
                out.push(' ');
                out.push_str(source.get(range).unwrap_or_default());
                out.push(' ');
            }
            Event::TaskListMarker(_) => {}
            Event::Start(tag) => {
                if !inline(tag.to_end()) {
                    out.push(' ');
                }
            }
            Event::End(tag) => {
                if !inline(tag) {
                    out.push(' ');
                }
            }
        }
    }
    out
}

fn inline(tag: TagEnd) -> bool {
    matches!(
        tag,
        TagEnd::Emphasis
            | TagEnd::Strong
            | TagEnd::Strikethrough
            | TagEnd::Superscript
            | TagEnd::Subscript
            | TagEnd::Link
            | TagEnd::Image
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn md(source: &str) -> String {
        render(source, &[])
    }

    #[test]
    fn plain_text_is_one_escaped_paragraph() {
        assert_eq!(md("hello there"), "<p>hello there</p>");
        assert_eq!(md("a > b, it's \"fine\""), "<p>a &gt; b, it's \"fine\"</p>");
        assert_eq!(md("x < y & z"), "<p>x &lt; y &amp; z</p>");
        assert_eq!(md(""), "");
    }

    #[test]
    fn emphasis_strong_strikethrough_and_code() {
        assert_eq!(md("**bold**"), "<p><strong>bold</strong></p>");
        assert_eq!(md("_em_ and *em*"), "<p><em>em</em> and <em>em</em></p>");
        assert_eq!(md("~~gone~~"), "<p><del>gone</del></p>");
        assert_eq!(md("`a <b> & c`"), "<p><code>a &lt;b&gt; &amp; c</code></p>");
    }

    #[test]
    fn a_fenced_block_keeps_its_lines_and_a_safe_language() {
        assert_eq!(
            md("```rust\nfn main() {\n    x < 1;\n}\n```"),
            r#"<pre><code class="language-rust">fn main() {&#10;    x &lt; 1;&#10;}&#10;</code></pre>"#
        );
        assert_eq!(
            md("```\"><script>\nx\n```"),
            "<pre><code>x&#10;</code></pre>",
            "a language that is no class name is dropped"
        );
        assert_eq!(
            md("    indented\n    code"),
            "<pre><code>indented&#10;code</code></pre>"
        );
        assert_eq!(md("```\nunclosed"), "<pre><code>unclosed</code></pre>");
    }

    #[test]
    fn quotes_lists_and_line_breaks() {
        assert_eq!(md("> quoted\n> more"), "<blockquote><p>quoted<br>more</p></blockquote>");
        assert_eq!(md("- one\n- two"), "<ul><li>one</li><li>two</li></ul>");
        assert_eq!(md("1. one\n2. two"), "<ol><li>one</li><li>two</li></ol>");
        assert_eq!(
            md("3. three\n4. four"),
            r#"<ol start="3"><li>three</li><li>four</li></ol>"#
        );
        assert_eq!(md("line one\nline two"), "<p>line one<br>line two</p>");
        assert_eq!(md("para one\n\npara two"), "<p>para one</p><p>para two</p>");
    }

    #[test]
    fn headings_tables_rules_and_images_are_not_chat() {
        assert_eq!(md("# Title"), "<p><strong>Title</strong></p>");
        assert_eq!(md("Title\n==="), "<p><strong>Title</strong></p>");
        assert_eq!(
            md("| a | b |\n|---|---|\n| 1 | 2 |"),
            "<p>| a | b |<br>|---|---|<br>| 1 | 2 |</p>"
        );
        assert_eq!(md("---"), "<p>---</p>");
        assert_eq!(
            md("![a cat](https://x.y/cat.png)"),
            r#"<p><a href="https://x.y/cat.png" target="_blank" rel="noopener noreferrer">a cat</a></p>"#
        );
        assert_eq!(md("![a cat](javascript:x)"), "<p>a cat</p>");
    }

    #[test]
    fn raw_html_is_shown_as_text() {
        assert_eq!(md("<b>hi</b>"), "<p>&lt;b&gt;hi&lt;/b&gt;</p>");
        assert_eq!(
            md("<div>\nhello\n</div>"),
            "<p>&lt;div&gt;<br>hello<br>&lt;/div&gt;</p>"
        );
        assert_eq!(md("a <!-- c --> b"), "<p>a &lt;!-- c --&gt; b</p>");
    }

    #[test]
    fn links_with_allowed_schemes_open_in_a_new_tab() {
        let attrs = r#"target="_blank" rel="noopener noreferrer""#;
        assert_eq!(
            md("[label](https://x.y)"),
            format!(r#"<p><a href="https://x.y" {attrs}>label</a></p>"#)
        );
        assert_eq!(
            md("see https://example.com/a?b=1&c=2."),
            format!(
                r#"<p>see <a href="https://example.com/a?b=1&amp;c=2" {attrs}>https://example.com/a?b=1&amp;c=2</a>.</p>"#
            )
        );
        assert_eq!(
            md("go to www.example.com/x now"),
            format!(r#"<p>go to <a href="https://www.example.com/x" {attrs}>www.example.com/x</a> now</p>"#)
        );
        assert_eq!(
            md("[mail me](mailto:ada@example.com)"),
            format!(r#"<p><a href="mailto:ada@example.com" {attrs}>mail me</a></p>"#)
        );
        assert_eq!(
            md("write to ada@example.com"),
            format!(r#"<p>write to <a href="mailto:ada@example.com" {attrs}>ada@example.com</a></p>"#)
        );
        assert_eq!(
            md("<https://x.y/z>"),
            format!(r#"<p><a href="https://x.y/z" {attrs}>https://x.y/z</a></p>"#)
        );
        assert_eq!(
            md("<ada@example.com>"),
            format!(r#"<p><a href="mailto:ada@example.com" {attrs}>ada@example.com</a></p>"#)
        );
        assert_eq!(
            md("[x](HTTPS://X.Y)"),
            format!(r#"<p><a href="HTTPS://X.Y" {attrs}>x</a></p>"#)
        );
        assert_eq!(
            md("(www.rust-lang.org), WWW.EXAMPLE.COM"),
            format!(
                r#"<p>(<a href="https://www.rust-lang.org" {attrs}>www.rust-lang.org</a>), <a href="https://WWW.EXAMPLE.COM" {attrs}>WWW.EXAMPLE.COM</a></p>"#
            )
        );
        assert_eq!(
            md("foo.www.x.com awww.x.com ftp://x.com"),
            "<p>foo.www.x.com awww.x.com ftp://x.com</p>"
        );
    }

    #[test]
    fn links_with_other_schemes_are_their_label() {
        for source in [
            "[x](javascript:alert(1))",
            "[x](JaVaScRiPt:alert(1))",
            "[x]( javascript:alert(1))",
            "[x](&#106;avascript:alert(1))",
            "[x](data:text/html,hi)",
            "[x](vbscript:msgbox)",
            "[x](file:///etc/passwd)",
            "[x](/relative)",
            "[x](//evil.example)",
            "[x](ftp://x.y)",
            "[x](http:no-slashes)",
        ] {
            assert_eq!(md(source), "<p>x</p>", "{source}");
        }
        assert_eq!(
            md("`https://x.y` and ```a@b.cd```"),
            "<p><code>https://x.y</code> and <code>a@b.cd</code></p>"
        );
        assert_eq!(
            md("[see https://a.b](https://c.d)"),
            r#"<p><a href="https://c.d" target="_blank" rel="noopener noreferrer">see https://a.b</a></p>"#,
            "no link inside a link"
        );
    }

    #[test]
    fn a_mention_keeps_its_spelling_and_names_the_account() {
        let ada = names(&["ada"]);
        assert_eq!(
            render("hi @Ada!", &ada),
            r#"<p>hi <span class="mention" data-user="ada">@Ada</span>!</p>"#
        );
        assert_eq!(
            render("@ada.", &ada),
            r#"<p><span class="mention" data-user="ada">@ada</span>.</p>"#
        );
        assert_eq!(render("`@ada`", &ada), "<p><code>@ada</code></p>");
        assert_eq!(render("```\n@ada\n```", &ada), "<pre><code>@ada&#10;</code></pre>");
        assert_eq!(render("@bob", &ada), "<p>@bob</p>");
        assert_eq!(render("@ada.lovelace", &ada), "<p>@ada.lovelace</p>");
        assert_eq!(
            render("x@y.com", &names(&["y.com", "y"])),
            r#"<p><a href="mailto:x@y.com" target="_blank" rel="noopener noreferrer">x@y.com</a></p>"#
        );
        assert_eq!(render("x@ada", &ada), "<p>x@ada</p>");
        assert_eq!(
            render("**@ada**", &ada),
            r#"<p><strong><span class="mention" data-user="ada">@ada</span></strong></p>"#
        );
    }

    #[test]
    fn here_and_room_mention_the_room_whatever_the_accounts_and_not_in_code() {
        assert_eq!(
            render("@here and @Room, not `@room`", &[]),
            "<p><span class=\"mention mention-room\">@here</span> and \
             <span class=\"mention mention-room\">@Room</span>, not <code>@room</code></p>"
        );
        assert_eq!(mentioned_names("@here and @Room, not `@room`"), ["here", "Room"]);
        assert!(is_room_mention("HERE") && is_room_mention("room"));
        assert!(!is_room_mention("rooms") && !is_room_mention("everyone"));
    }

    #[test]
    fn mentioned_names_are_what_render_would_mark() {
        assert_eq!(
            mentioned_names("hi @Ada and @bob, @ADA again; @ada."),
            names(&["Ada", "bob"])
        );
        assert_eq!(
            mentioned_names("`@ada` and\n```\n@bob\n```\n    @carol"),
            Vec::<String>::new()
        );
        assert_eq!(mentioned_names("x@y.com a@b @.x @-x @_x"), Vec::<String>::new());
        assert_eq!(
            mentioned_names("(@ada) \"@bob\" @c-d_e.f-"),
            names(&["ada", "bob", "c-d_e.f"])
        );
        assert_eq!(mentioned_names("@ab.-"), names(&["ab"]));
        assert_eq!(
            mentioned_names(&format!("@{}", "a".repeat(32))),
            names(&[&"a".repeat(32)])
        );
        assert_eq!(mentioned_names(&format!("@{}", "a".repeat(33))), Vec::<String>::new());
        let many: String = (0..40).map(|i| format!("@user{i} ")).collect();
        assert_eq!(mentioned_names(&many).len(), 32);
        assert_eq!(mentioned_names("no mentions"), Vec::<String>::new());
    }

    #[test]
    fn bidi_controls_are_isolated_everywhere() {
        let isolated = concat!(r#"<span class="bidi" data-cp="U+202E">"#, "\u{202E}</span>");
        assert_eq!(md("a\u{202E}b"), format!("<p>a{isolated}b</p>"));
        assert_eq!(md("`a\u{202E}b`"), format!("<p><code>a{isolated}b</code></p>"));
        assert_eq!(
            md("```\na\u{202E}b\n```"),
            format!("<pre><code>a{isolated}b&#10;</code></pre>")
        );
        assert_eq!(md("**\u{202E}**"), format!("<p><strong>{isolated}</strong></p>"));
        assert_eq!(md("&#x202E;"), format!("<p>{isolated}</p>"));
        assert_eq!(
            md("\u{2066}\u{2067}\u{2068}\u{2069}\u{202A}\u{202B}\u{202C}\u{202D}")
                .matches("class=\"bidi\"")
                .count(),
            8
        );
    }

    #[test]
    fn line_ends_never_reach_the_output() {
        for source in [
            "a\nb",
            "a\r\nb",
            "a\rb",
            "```\na\r\nb\rc\n```",
            "> a\n> b\n\n- c\n- d",
            "<div>\r\nx\r\n</div>",
            "`a\nb`",
            "a  \nb",
            "a\\\nb",
            "&#10;&#13;",
        ] {
            let html = md(source);
            assert!(!html.contains(['\r', '\n']), "{source:?} → {html:?}");
        }
        assert_eq!(md("```\na\r\nb\n```"), "<pre><code>a&#10;b&#10;</code></pre>");
    }

    #[test]
    fn emoji_only_is_one_to_eight_emoji() {
        for yes in ["👍", "🎉 🎉", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", " 😀\n😀 ", "🤷‍♀️", &"👍".repeat(8)]
        {
            assert!(emoji_only(yes), "{yes}");
        }
        for no in ["hi 👍", "", "   ", "1", "#", "a", "👍!", &"👍".repeat(9), "**👍**"] {
            assert!(!emoji_only(no), "{no}");
        }
    }

    #[test]
    fn an_excerpt_is_the_shown_text_on_one_line() {
        assert_eq!(excerpt("**Hello**\n\nworld `x`", 100), "Hello world x");
        assert_eq!(excerpt("plain words", 100), "plain words");
        assert_eq!(
            excerpt("> quote\n\n- a\n- b\n\n```\ncode\nlines\n```", 100),
            "quote a b code lines"
        );
        assert_eq!(excerpt("[label](javascript:x) <b>", 100), "label <b>");
        assert_eq!(excerpt("hello world", 8), "hello w…");
        assert_eq!(excerpt("hello world", 7), "hello…", "no space before the ellipsis");
        assert_eq!(excerpt("hello world", 11), "hello world");
        assert_eq!(excerpt("hello world", 1), "…");
        assert_eq!(excerpt("hello world", 0), "");
        assert_eq!(excerpt("🇫🇷🇫🇷🇫🇷", 4), "🇫🇷…", "a flag is two characters and is not split");
        assert_eq!(excerpt("ééééé", 3), "éé…");
        let long = excerpt(&"word\r\n".repeat(100), 50);
        assert!(
            !long.contains(['\r', '\n']) && long.chars().count() <= 50 && long.ends_with('…'),
            "{long}"
        );
    }

    /// The tags and attributes that may appear, as the test reads the output; hrefs only to
    /// the allowed schemes.
    fn assert_only_allowed_markup(source: &str, html: &str) {
        let mut rest = html;
        while let Some(at) = rest.find('<') {
            let tag_end = rest[at..]
                .find('>')
                .map(|e| at + e)
                .unwrap_or_else(|| panic!("unclosed tag in {html}"));
            let tag = &rest[at + 1..tag_end];
            rest = &rest[tag_end + 1..];
            let tag = tag.strip_prefix('/').unwrap_or(tag);
            let (name, mut attrs) = tag.split_once(' ').unwrap_or((tag, ""));
            let allowed: &[&str] = match name {
                "p" | "br" | "em" | "strong" | "del" | "pre" | "blockquote" | "ul" | "li" => &[],
                "a" => &["href", "rel", "target"],
                "code" => &["class"],
                "ol" => &["start"],
                "span" => &["class", "data-user", "data-cp"],
                _ => panic!("tag {name:?} from {source:?}: {html}"),
            };
            while !attrs.is_empty() {
                let (attr, after) = attrs.split_once("=\"").unwrap_or_else(|| panic!("attribute in {html}"));
                let (value, after) = after.split_once('"').unwrap_or_else(|| panic!("value in {html}"));
                attrs = after.trim_start();
                assert!(allowed.contains(&attr), "{name} {attr} from {source:?}: {html}");
                let lower = value.to_ascii_lowercase();
                assert!(!lower.contains("javascript:"), "{source:?}: {html}");
                match attr {
                    "href" => assert!(
                        ["http://", "https://", "mailto:"].iter().any(|s| lower.starts_with(s)),
                        "{source:?}: {html}"
                    ),
                    "rel" => assert_eq!(value, "noopener noreferrer"),
                    "target" => assert_eq!(value, "_blank"),
                    "class" if name == "span" => assert!(
                        value == "mention" || value == "mention mention-room" || value == "bidi",
                        "{html}"
                    ),
                    "class" => assert!(value.starts_with("language-"), "{html}"),
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn hostile_inputs_render_safely_and_in_bounded_time() {
        let nested_under = format!("{}a{}", "_a ".repeat(1000), " a_".repeat(1000));
        let inputs: Vec<String> = vec![
            "<script>alert(1)</script>".into(),
            "x <script>alert(1)</script> y".into(),
            "[x](javascript:alert(1))".into(),
            "[x](JaVaScRiPt:alert(1))".into(),
            "[x]( javascript:alert(1))".into(),
            "[x](java\tscript:alert(1))".into(),
            "[x](<javascript:alert(1)>)".into(),
            "[x][r]\n\n[r]: javascript:alert(1)".into(),
            "<a href=\"javascript:x\">x</a>".into(),
            "text <a href=\"javascript:x\">x</a>".into(),
            "<img src=x onerror=alert(1)>".into(),
            "x <img src=x onerror=alert(1)> y".into(),
            "[x](data:text/html,<script>alert(1)</script>)".into(),
            "<javascript:alert(1)>".into(),
            "&#106;avascript:alert(1)".into(),
            "[x](&#106;avascript:alert(1))".into(),
            "![x](javascript:x)".into(),
            "![x](https://x.y/\" onerror=\"alert(1))".into(),
            "[x](https://x.y/\"onmouseover=\"alert(1)\")".into(),
            "[x](https://x.y \"title\" onclick=x)".into(),
            "# heading <iframe src=x>".into(),
            "<!-- comment --> after".into(),
            "<![CDATA[<script>x</script>]]>".into(),
            "<style>p{color:red}</style>".into(),
            "<p style=\"color:red\">x</p>".into(),
            "<table><tr><td>x</td></tr></table>".into(),
            "| a | b |\n|---|---|\n| <img src=x> | 2 |\n".repeat(200),
            "<svg><animate onbegin=alert(1)>".into(),
            "<math><mi xlink:href=\"javascript:x\">x</mi></math>".into(),
            "```\"><script>alert(1)</script>\nx\n```".into(),
            "```js onload=x\nx\n```".into(),
            "*".repeat(5000),
            "*a".repeat(4000),
            "[".repeat(4000),
            "[a](".repeat(2000),
            "]".repeat(4000),
            ">".repeat(4000),
            "> ".repeat(4000) + "x",
            "`".repeat(4000),
            "` ".repeat(4000),
            "_a_".repeat(1000),
            nested_under,
            "**a ".repeat(1000) + &" a**".repeat(1000),
            "~~a ".repeat(1000),
            "```\n".to_owned() + &"unclosed fence\n".repeat(300),
            "- item\n".repeat(4000),
            (0..200).map(|i| format!("{}- x\n", "  ".repeat(i % 40))).collect(),
            (0..150).map(|i| format!("{}1. x\n", "   ".repeat(i % 30))).collect(),
            "&#x202E;".repeat(1000),
            "&#xFFFFFF;&#0;&#x0;".repeat(300),
            "&amp;".repeat(1600),
            "\u{202E}".repeat(2600),
            "@ada ".repeat(1600),
            "a@b.cd ".repeat(1100),
            "www.a.bc ".repeat(880),
            "https://a.b/ ".repeat(600),
            "<https://a.b> ".repeat(550),
            "\\".repeat(8000),
            "\r\n".repeat(4000),
            "\n".repeat(8000),
            "\0".repeat(4000),
            "<".repeat(8000),
            "<a ".repeat(2600),
            "[x]: https://a.b\n".repeat(400) + &"[x] ".repeat(400),
        ];
        let mentions = names(&["ada"]);
        // Only the rendering is timed, not the checks; the slowest input is named on failure.
        let mut rendering = std::time::Duration::ZERO;
        let mut slowest = (std::time::Duration::ZERO, String::new());
        for input in &inputs {
            let head: String = input.chars().take(60).collect();
            let started = std::time::Instant::now();
            let html = render(input, &mentions);
            let names = mentioned_names(input);
            let quote = excerpt(input, 100);
            let _ = emoji_only(input);
            let took = started.elapsed();
            rendering += took;
            if took > slowest.0 {
                slowest = (took, head.clone());
            }
            // Text has every `<` escaped, so these can only be markup; attributes (`style`,
            // `on…`, `href`) are read by `assert_only_allowed_markup`.
            for banned in [
                "<script", "<img", "<table", "<iframe", "<style", "<svg", "<math", "<!--",
            ] {
                assert!(!html.contains(banned), "{banned} from {head:?}");
            }
            assert!(!html.contains(['\r', '\n']), "a line end from {head:?}");
            assert!(
                html.len() <= 20 * input.len() + 1024,
                "{} bytes from {} of {head:?}",
                html.len(),
                input.len()
            );
            assert_only_allowed_markup(&head, &html);
            assert!(names.len() <= MAX_MENTIONS);
            assert!(
                !quote.contains(['\r', '\n']) && quote.chars().count() <= 100,
                "{head:?}"
            );
        }
        assert!(
            rendering < std::time::Duration::from_secs(2),
            "the table took {rendering:?}, {:?} of it for {:?}",
            slowest.0,
            slowest.1
        );
    }

    proptest::proptest! {
        /// The shortcut is only taken where it changes nothing: on texts made of the characters
        /// chat is mostly made of, plus the borderline ones (quotes, `.`, `-`, `!`, `>`, digits,
        /// no-break space, `w`), its output is the full path's.
        #[test]
        fn plain_text_renders_as_the_full_path_would(
            source in "[a-zA-Z0-9 .,;!?'\"=+>|%/\u{A0}\u{3000}é€ß中👍🏽wW.\\-]{1,40}"
        ) {
            if plain(&source) {
                proptest::prop_assert_eq!(render_plain(&source), render_full(&source, &[]));
            }
            proptest::prop_assert_eq!(excerpt(&source, 1000), shown_text_or_source(&source));
        }

        #[test]
        fn any_text_renders_as_the_full_path_would(source in "\\PC{0,30}") {
            if plain(&source) {
                proptest::prop_assert_eq!(render_plain(&source), render_full(&source, &[]));
            }
        }

        #[test]
        fn no_text_breaks_the_rules(source in "[\\PC\r\n\t]{0,60}") {
            let html = render(&source, &names(&["ada"]));
            proptest::prop_assert!(!html.contains(['\r', '\n']));
            assert_only_allowed_markup(&source, &html);
            let quote = excerpt(&source, 20);
            proptest::prop_assert!(!quote.contains(['\r', '\n']) && quote.chars().count() <= 20);
        }
    }

    fn shown_text_or_source(source: &str) -> String {
        shown_text(source).split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn most_plain_texts_take_the_shortcut() {
        for source in [
            "hello there",
            "ok.",
            "thanks!",
            "see you at 5pm",
            "well-known",
            "it's 3 > 2",
            "ça va ?",
        ] {
            assert!(plain(source), "{source}");
        }
        for source in [
            "1. first", " lead", "trail ", "- item", "> quote", "a*b", "www.x.y", "a:b", "a\nb",
        ] {
            assert!(!plain(source), "{source}");
        }
    }
}
