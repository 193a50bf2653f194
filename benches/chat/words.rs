//! Plain message texts over a vocabulary with a Zipf-like distribution, for the search corpus:
//! the word of rank `r` comes up in proportion to `1 / r`, so a few words are in nearly every
//! other message and most are in a handful. The first ranks are the words a team's chat is made
//! of; after them come made-up words (`kolami`, `ruvetsa`), distinct and pronounceable, so that a
//! rare word is really rare. Each room also has a code name of its own, said in a fifth of its
//! messages and nowhere else, and a few set phrases (`release notes`) come up as phrases.
//! Everything is drawn from a seeded `Rng`: every run writes the same corpus.

use crate::stats::Rng;

/// The most frequent words, most frequent first.
const COMMON: &[&str] = &[
    "the",
    "to",
    "i",
    "it",
    "a",
    "is",
    "and",
    "that",
    "we",
    "in",
    "for",
    "on",
    "this",
    "you",
    "of",
    "be",
    "can",
    "with",
    "not",
    "so",
    "but",
    "do",
    "if",
    "have",
    "just",
    "are",
    "was",
    "at",
    "think",
    "now",
    "what",
    "there",
    "will",
    "yes",
    "ok",
    "one",
    "no",
    "deploy",
    "build",
    "test",
    "fix",
    "merge",
    "review",
    "branch",
    "release",
    "server",
    "error",
    "log",
    "main",
    "query",
    "index",
    "today",
    "tomorrow",
    "meeting",
    "please",
    "thanks",
    "issue",
    "bug",
    "change",
    "check",
    "looks",
    "good",
    "again",
    "after",
    "before",
    "still",
    "works",
    "broken",
    "latency",
    "database",
    "writer",
    "stream",
    "page",
    "client",
    "config",
    "deployed",
    "deploying",
    "deployment",
    "depends",
    "dependency",
    "cache",
    "timeout",
    "retry",
    "metrics",
    "alert",
    "incident",
    "rollback",
    "staging",
    "production",
    "ticket",
    "sprint",
    "standup",
    "lunch",
    "coffee",
    "weekend",
    "docs",
    "schema",
    "migration",
    "benchmark",
    "profile",
    "memory",
    "disk",
    "network",
    "socket",
    "handler",
    "route",
    "template",
    "search",
    "cursor",
    "unread",
    "mention",
    "room",
    "channel",
    "message",
    "thread",
    "reply",
    "edit",
    "delete",
    "reaction",
    "design",
    "proposal",
    "feedback",
    "customer",
    "support",
    "outage",
    "patch",
    "version",
    "upgrade",
    "compile",
    "warning",
    "clippy",
    "format",
    "linter",
    "pipeline",
    "runner",
    "flaky",
    "green",
    "red",
    "ship",
    "monday",
    "friday",
    "morning",
    "afternoon",
    "tonight",
    "soon",
    "later",
    "maybe",
    "probably",
    "exactly",
    "agreed",
];

/// Syllables of the made-up words: 20 × 3 = 60 of them, so three make 216,000 words.
const ONSETS: &[&str] = &[
    "k", "l", "m", "n", "r", "s", "t", "v", "b", "d", "g", "p", "f", "h", "z", "ch", "sh", "tr", "pl", "gr",
];
const VOWELS: &[&str] = &["a", "o", "i"];

/// Set phrases, each put into about one message in twenty as written.
pub const PHRASES: &[&str] = &[
    "release notes",
    "pull request",
    "merge conflict",
    "on call",
    "root cause",
];

/// A room's code name: the project it is about, said in about a fifth of its messages.
pub fn code_name(room: usize) -> String {
    const NAMES: &[&str] = &[
        "atlas", "borealis", "cobalt", "dynamo", "ember", "falcon", "granite", "helios", "iris", "juniper", "kestrel",
        "lumen", "meridian", "nimbus", "onyx", "pegasus", "quasar", "raven", "sequoia", "tundra",
    ];
    match NAMES.get(room) {
        Some(name) => (*name).to_owned(),
        None => format!("project{room}"),
    }
}

/// The vocabulary and its cumulative distribution.
pub struct Vocabulary {
    words: Vec<String>,
    /// `cumulative[r]`: the probability of a rank at most `r`.
    cumulative: Vec<f64>,
}

impl Vocabulary {
    /// `size` words (at least the common ones), Zipf-distributed with exponent 1.
    pub fn new(size: usize) -> Self {
        let size = size.max(COMMON.len());
        let mut words: Vec<String> = COMMON.iter().map(|w| (*w).to_owned()).collect();
        let mut n = 0;
        while words.len() < size {
            words.push(made_up(n));
            n += 1;
        }
        let mut cumulative = Vec::with_capacity(size);
        let mut total = 0.0;
        for rank in 1..=size {
            total += 1.0 / rank as f64;
            cumulative.push(total);
        }
        for c in &mut cumulative {
            *c /= total;
        }
        Self { words, cumulative }
    }

    /// The word of `rank` (0 the most frequent).
    pub fn word(&self, rank: usize) -> &str {
        &self.words[rank.min(self.words.len() - 1)]
    }

    fn draw(&self, rng: &mut Rng) -> &str {
        let u = (rng.below(1 << 30) as f64 + 0.5) / f64::from(1u32 << 30);
        let rank = self.cumulative.partition_point(|&c| c < u);
        self.word(rank)
    }

    /// One message of 4 to 24 words for `room`, into `text` (cleared first).
    pub fn message(&self, rng: &mut Rng, room: usize, text: &mut String) {
        text.clear();
        let words = 4 + rng.below(21);
        let code = (rng.below(5) == 0).then(|| rng.below(words));
        let phrase = (rng.below(20) == 0).then(|| (rng.below(words), PHRASES[rng.below(PHRASES.len())]));
        for k in 0..words {
            if k > 0 {
                text.push(' ');
            }
            if code == Some(k) {
                text.push_str(&code_name(room));
            } else if let Some((_, phrase)) = phrase.filter(|(at, _)| *at == k) {
                text.push_str(phrase);
            } else {
                text.push_str(self.draw(rng));
            }
        }
    }
}

/// The `n`th made-up word: three syllables, `n` written in base 60.
fn made_up(n: usize) -> String {
    let syllable = |s: usize| format!("{}{}", ONSETS[s / VOWELS.len()], VOWELS[s % VOWELS.len()]);
    let count = ONSETS.len() * VOWELS.len();
    let mut word = String::with_capacity(9);
    for digit in [n / (count * count) % count, n / count % count, n % count] {
        word.push_str(&syllable(digit));
    }
    word
}

/// Checks the distribution's shape once, at start-up: the top word is in most messages, a word
/// far down the tail in almost none.
pub fn self_check() {
    let vocabulary = Vocabulary::new(50_000);
    let mut rng = Rng::new(11);
    let (mut with_top, mut with_tail, mut text) = (0, 0, String::new());
    for _ in 0..2_000 {
        vocabulary.message(&mut rng, 3, &mut text);
        let words: Vec<&str> = text.split(' ').collect();
        with_top += usize::from(words.contains(&vocabulary.word(0)));
        with_tail += usize::from(words.contains(&vocabulary.word(40_000)));
    }
    assert!(with_top > 600, "the top word is in {with_top} of 2,000 messages");
    assert!(with_tail < 5, "a tail word is in {with_tail} of 2,000 messages");
    assert_ne!(made_up(0), made_up(1));
}
