//! Markdown-heavy message texts, as a team writes them when it formats: emphasis, inline code,
//! a link, a bare URL, a short list or a quote, now and then a fenced code block, and an
//! `@mention` of an account of the run. 200 to 400 characters, put together from pieces picked
//! by a seeded `Rng`, so that no two texts in a row are alike and every run sends the same ones.

use crate::stats::Rng;

const OPENERS: &[&str] = &[
    "**Heads up:** I looked into",
    "_Quick question_ about",
    "~~Ignore that~~, the real issue is",
    "**Done:** I finished",
    "Can someone *please* review",
    "Following up on",
];
const TOPICS: &[&str] = &[
    "the writer's group commit",
    "`Last-Event-ID` replay",
    "the session cache",
    "the reconnect storm",
    "`--sync full` on SSDs",
    "the hub's feeds",
];
const CODE: &[&str] = &[
    "`cargo build --release`",
    "`PRAGMA wal_checkpoint`",
    "`RUST_LOG=debug`",
    "`git rebase -i main`",
    "`SELECT count(*) FROM events`",
];
const LINKS: &[&str] = &[
    "[the design notes](https://example.com/docs/design#writer)",
    "[issue 14](https://example.com/chat/issues/14)",
    "[the runbook](https://wiki.example.org/ops/deploy)",
    "[this comment](https://example.com/pull/212#r1)",
];
const URLS: &[&str] = &[
    "https://example.com/d/latency?from=now-1h",
    "https://status.example.org/incidents/4711",
    "https://example.com/ci/builds/98213/log",
    "https://example.net/notes/2026-12-01",
];
const ITEMS: &[&str] = &[
    "check p99 after the merge",
    "rerun the **flaky** test",
    "update `BENCHMARKS.md`",
    "ask ops about the disk",
    "_don't_ touch the schema",
    "write it down in the wiki",
];
const QUOTES: &[&str] = &[
    "> it works on my machine",
    "> the WAL was checkpointed *before* the copy",
    "> we can ship on **Thursday** if CI is green",
];
const BLOCKS: &[&str] = &[
    "```rust\nlet batch = queue.drain(256);\ncommit(&batch)?;\n```",
    "```sh\ncargo bench --bench chat -- ingest\n```",
    "```sql\nSELECT id, kind FROM events LIMIT 5;\n```",
];
const CLOSERS: &[&str] = &[
    "Thanks!",
    "**Please** answer in thread.",
    "More _tomorrow_.",
    "Ping me if it breaks again.",
];

/// One Markdown-heavy text naming `mention` as given (`@bench-3`, a mention), ending with `tag`
/// (which makes it unique: an edit to the text a message already has is not stored).
pub fn markdown(rng: &mut Rng, mention: &str, tag: &str) -> String {
    let mut pick = |pieces: &[&'static str]| pieces[rng.below(pieces.len())];
    let (opener, topic, code, link, url) = (pick(OPENERS), pick(TOPICS), pick(CODE), pick(LINKS), pick(URLS));
    let mut text = format!("{opener} {topic}: {mention}, does {code} still do it? See {link} and {url}\n\n");
    if rng.below(2) == 0 {
        let mut pick = |pieces: &[&'static str]| pieces[rng.below(pieces.len())];
        let (first, second) = (pick(ITEMS), pick(ITEMS));
        text.push_str(&format!("- {first}\n- {second}\n\n"));
    } else {
        text.push_str(QUOTES[rng.below(QUOTES.len())]);
        text.push_str("\n\n");
    }
    if rng.below(4) == 0 {
        text.push_str(BLOCKS[rng.below(BLOCKS.len())]);
        text.push_str("\n\n");
    }
    text.push_str(CLOSERS[rng.below(CLOSERS.len())]);
    text.push_str(" (");
    text.push_str(tag);
    text.push(')');
    text
}

/// Checks the texts' length once, at start-up (a `harness = false` bench has no `#[test]`s).
pub fn self_check() {
    let mut rng = Rng::new(7);
    for n in 0..1_000 {
        let text = markdown(&mut rng, "@bench-123", &format!("63 {n}"));
        let chars = text.chars().count();
        assert!((200..=400).contains(&chars), "{chars} characters: {text}");
    }
}
