//! What a person types into the search box, parsed once into a `SearchQuery` that no text can
//! turn into an operator of the index, and the times the date filters name. No I/O: the
//! storage turns a `SearchQuery` into its own query language (`eventlog::sqlite::search`).
//!
//! The grammar, in full:
//!
//! ```text
//! query  = item { space item }            at most MAX_QUERY_CHARS characters, MAX_TERMS terms
//! item   = "-" term                       leave out messages with it
//!        | term { space "OR" space term } any one of them
//! term   = '"' { any but '"' } '"'        these words, in this order (a phrase)
//!        | word [ "*" ]                   this word, or (with "*") any word it begins
//! word   = any run of characters but space and '"'
//! ```
//!
//! Everything else is a word: `AND`, `NOT`, `NEAR(…)`, `col:x`, `^x`, `(`, `)`, `+` are text to
//! look for, never operators. Only letters and digits are indexed (the rest separate words),
//! so a term of punctuation or emoji alone finds nothing and is left out.

use std::borrow::Cow;

use super::Invalid;

/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Most terms (words, phrases and prefixes, left out or not) in one query.
pub const MAX_TERMS: usize = 10;
/// Most words in one phrase (or in one term that the index splits into several words).
pub const MAX_TERM_WORDS: usize = 10;
/// Fewest letters or digits before a prefix's `*`: a shorter prefix matches too much of the
/// index to be worth the work, and the index keeps 3-character prefixes ready.
pub const MIN_PREFIX_CHARS: usize = 3;

/// What the index puts around each match in a snippet. The index stores both as spaces (they
/// are control characters, which separate words anyway), so no text can forge a match.
pub const MATCH_START: char = '\u{2}';
pub const MATCH_END: char = '\u{3}';

/// What the index is asked for: every one of `all` (each satisfied by any of its terms), and
/// none of `none`. `all` is never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub all: Vec<Vec<Term>>,
    pub none: Vec<Term>,
}

/// A word, or several in a row (a phrase), and whether the last may be the start of a longer
/// one. Its `text` holds no `"` and no control character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub text: String,
    pub prefix: bool,
}

/// One piece of the query as typed.
#[derive(Debug)]
enum Piece {
    Term { term: Term, excluded: bool },
    Or,
}

impl SearchQuery {
    /// Parses `raw`, refusing with a message for the person who typed it.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.chars().nth(MAX_QUERY_CHARS).is_some() {
            return Err(invalid(format!(
                "a search is at most {MAX_QUERY_CHARS} characters: leave some words out"
            )));
        }
        let pieces = pieces(raw)?;
        let terms = pieces.iter().filter(|p| matches!(p, Piece::Term { .. })).count();
        if terms > MAX_TERMS {
            return Err(invalid(format!(
                "a search has at most {MAX_TERMS} words or phrases: leave some out"
            )));
        }
        let mut all: Vec<Vec<Term>> = Vec::new();
        let mut none = Vec::new();
        // Whether the last piece was `OR`, joining the next term to the last group.
        let mut joining = false;
        let misplaced_or = || invalid("`OR` goes between two words or phrases to look for, as in `cat OR dog`");
        for (at, piece) in pieces.into_iter().enumerate() {
            match piece {
                Piece::Or if joining || at == 0 || all.is_empty() => return Err(misplaced_or()),
                Piece::Or => joining = true,
                Piece::Term { excluded: true, .. } if joining => return Err(misplaced_or()),
                Piece::Term { term, excluded: true } => none.push(term),
                Piece::Term { term, excluded: false } => match all.last_mut() {
                    Some(group) if joining => {
                        group.push(term);
                        joining = false;
                    }
                    _ => all.push(vec![term]),
                },
            }
        }
        if joining {
            return Err(misplaced_or());
        }
        // Terms with nothing the index keeps (punctuation, emoji) find nothing: left out.
        for group in &mut all {
            group.retain(|term| words(&term.text) > 0);
        }
        all.retain(|group| !group.is_empty());
        none.retain(|term| words(&term.text) > 0);
        if all.is_empty() {
            return Err(invalid(if none.is_empty() {
                "nothing to search for: type a word (letters or digits; punctuation and emoji on their own are not indexed)"
            } else {
                "say what to look for as well as what to leave out: `-word` alone finds nothing"
            }));
        }
        Ok(Self { all, none })
    }
}

/// `raw` cut into terms and `OR`s, in order.
fn pieces(raw: &str) -> Result<Vec<Piece>, Invalid> {
    let mut pieces = Vec::new();
    let mut rest = raw;
    // The previous piece was an exclusion: `-x OR y` is refused.
    let mut after_excluded = false;
    loop {
        rest = rest.trim_start_matches(is_space);
        if rest.is_empty() {
            break;
        }
        let (excluded, body) = match rest.strip_prefix('-') {
            Some(body) if body.starts_with(|c: char| !is_space(c)) => (true, body),
            _ => (false, rest),
        };
        if let Some(phrase) = body.strip_prefix('"') {
            let Some(end) = phrase.find('"') else {
                return Err(invalid(
                    "a quotation mark is not closed: end the phrase with another `\"`",
                ));
            };
            let term = Term {
                text: clean(&phrase[..end]),
                prefix: false,
            };
            check_words(&term)?;
            pieces.push(Piece::Term { term, excluded });
            after_excluded = excluded;
            rest = &phrase[end + 1..];
            continue;
        }
        let end = body.find(|c: char| is_space(c) || c == '"').unwrap_or(body.len());
        let word = &body[..end];
        rest = &body[end..];
        if word == "OR" && !excluded {
            if after_excluded {
                return Err(invalid(
                    "`OR` goes between two words or phrases to look for, as in `cat OR dog`",
                ));
            }
            pieces.push(Piece::Or);
            continue;
        }
        if word.is_empty() {
            // Cannot happen (a quote starts a phrase, space was skipped), but never loop.
            rest = body.get(1..).unwrap_or_default();
            continue;
        }
        let stem = word.trim_end_matches('*');
        let prefix = stem.len() < word.len();
        if prefix && !stem.is_empty() {
            let last = stem
                .trim_end_matches(|c: char| !c.is_alphanumeric())
                .split(|c: char| !c.is_alphanumeric())
                .next_back()
                .unwrap_or_default();
            if last.chars().count() < MIN_PREFIX_CHARS {
                return Err(invalid(format!(
                    "`{}` is too short to look for words it begins: put at least {MIN_PREFIX_CHARS} letters before the `*`",
                    shown(word)
                )));
            }
        }
        let term = Term {
            text: clean(stem),
            prefix: prefix && !stem.is_empty(),
        };
        check_words(&term)?;
        pieces.push(Piece::Term { term, excluded });
        after_excluded = excluded;
    }
    Ok(pieces)
}

fn check_words(term: &Term) -> Result<(), Invalid> {
    if words(&term.text) > MAX_TERM_WORDS {
        return Err(invalid(format!(
            "a phrase has at most {MAX_TERM_WORDS} words: shorten `{}`",
            shown(&term.text)
        )));
    }
    Ok(())
}

/// How many words the index finds in `text`: runs of letters and digits.
fn words(text: &str) -> usize {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .count()
}

/// White space and control characters (NUL among them) separate terms.
fn is_space(c: char) -> bool {
    c.is_whitespace() || c.is_control()
}

/// `text` without control characters (each becomes a space), which the index ignores and
/// which could end the query early on their way to it.
fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// A term as an error message quotes it: at most 40 characters.
fn shown(text: &str) -> String {
    let mut shown: String = text.chars().take(40).collect();
    if text.chars().nth(40).is_some() {
        shown.push('…');
    }
    shown
}

fn invalid(message: impl Into<Cow<'static, str>>) -> Invalid {
    Invalid(message.into())
}

/// A point in time as the log stores them: `2026-11-21T09:30:00.123Z`, in UTC, so that text
/// order is time order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(String);

impl Timestamp {
    /// An ISO 8601 date (`2026-11-21`, its first moment in UTC) or date and time
    /// (`2026-11-21T09:30`, with seconds and fractions if wanted, and `Z` or an offset such as
    /// `+01:00`; UTC without one). `name` is the parameter, for the message.
    pub fn parse(name: &str, raw: &str) -> Result<Self, Invalid> {
        let refuse = || {
            invalid(format!(
                "`{name}` must be a date such as 2026-11-21, or a date and time such as 2026-11-21T09:30Z"
            ))
        };
        let raw = raw.trim();
        if !raw.is_ascii() || raw.len() > 40 {
            return Err(refuse());
        }
        let number = |from: usize, len: usize| -> Option<i64> {
            let digits = raw.get(from..from + len)?;
            digits
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| digits.parse().ok())?
        };
        let at = |i: usize| raw.as_bytes().get(i).copied();
        let (year, month, day) = match (number(0, 4), at(4), number(5, 2), at(7), number(8, 2)) {
            (Some(y), Some(b'-'), Some(m), Some(b'-'), Some(d)) => (y, m, d),
            _ => return Err(refuse()),
        };
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(refuse());
        }
        let (mut hour, mut minute, mut second, mut millis) = (0, 0, 0, 0);
        let mut offset_minutes = 0;
        if raw.len() > 10 {
            if !matches!(at(10), Some(b'T' | b't' | b' ')) {
                return Err(refuse());
            }
            let (h, m) = match (number(11, 2), at(13), number(14, 2)) {
                (Some(h), Some(b':'), Some(m)) => (h, m),
                _ => return Err(refuse()),
            };
            hour = h;
            minute = m;
            let mut i = 16;
            if at(i) == Some(b':') {
                second = number(i + 1, 2).ok_or_else(refuse)?;
                i += 3;
                if at(i) == Some(b'.') {
                    let digits = raw[i + 1..].bytes().take_while(u8::is_ascii_digit).count();
                    if digits == 0 {
                        return Err(refuse());
                    }
                    let kept = &raw[i + 1..i + 1 + digits.min(3)];
                    millis = format!("{kept:0<3}").parse().map_err(|_| refuse())?;
                    i += 1 + digits;
                }
            }
            match at(i) {
                None => {}
                Some(b'Z' | b'z') if i + 1 == raw.len() => {}
                Some(sign @ (b'+' | b'-')) => {
                    let (h, m) = match (number(i + 1, 2), at(i + 3), number(i + 4, 2)) {
                        (Some(h), Some(b':'), Some(m)) if i + 6 == raw.len() => (h, m),
                        _ => match (number(i + 1, 2), number(i + 3, 2)) {
                            (Some(h), Some(m)) if i + 5 == raw.len() => (h, m),
                            _ => return Err(refuse()),
                        },
                    };
                    if h > 23 || m > 59 {
                        return Err(refuse());
                    }
                    offset_minutes = (h * 60 + m) * if sign == b'+' { 1 } else { -1 };
                }
                _ => return Err(refuse()),
            }
            if hour > 23 || minute > 59 || second > 59 {
                return Err(refuse());
            }
        }
        // To UTC: seconds since 1970, less the offset, and back to a calendar date.
        let seconds =
            days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
        let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        if !(0..=9999).contains(&year) {
            return Err(refuse());
        }
        Ok(Self(format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let of_era = year - era * 400;
    let of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let of_cycle = of_era * 365 + of_era / 4 - of_era / 100 + of_year;
    era * 146_097 + of_cycle - 719_468
}

/// The date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let of_era = days - era * 146_097;
    let year_of_era = (of_era - of_era / 1460 + of_era / 36_524 - of_era / 146_096) / 365;
    let of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * of_year + 2) / 153;
    let day = of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(text: &str) -> Term {
        Term {
            text: text.into(),
            prefix: false,
        }
    }

    fn prefix(text: &str) -> Term {
        Term {
            text: text.into(),
            prefix: true,
        }
    }

    #[test]
    fn words_phrases_prefixes_exclusions_and_or() {
        let query = SearchQuery::parse(r#"deploy "release notes" conf* -draft cat OR dog"#).unwrap();
        assert_eq!(
            query.all,
            vec![
                vec![term("deploy")],
                vec![term("release notes")],
                vec![prefix("conf")],
                vec![term("cat"), term("dog")],
            ]
        );
        assert_eq!(query.none, vec![term("draft")]);
        let query = SearchQuery::parse(r#"a OR "b c" OR dee* -"x y""#).unwrap();
        assert_eq!(query.all, vec![vec![term("a"), term("b c"), prefix("dee")]]);
        assert_eq!(query.none, vec![term("x y")]);
    }

    #[test]
    fn operators_of_the_index_are_words() {
        let query = SearchQuery::parse("NEAR(a b) AND NOT ^c text:d {e}").unwrap();
        let texts: Vec<&str> = query.all.iter().map(|group| group[0].text.as_str()).collect();
        assert_eq!(texts, ["NEAR(a", "b)", "AND", "NOT", "^c", "text:d", "{e}"]);
        assert!(query.none.is_empty());
        // Lower-case `or` is a word; so is `OR` inside quotes.
        let query = SearchQuery::parse(r#"this or "OR" that"#).unwrap();
        assert_eq!(query.all.len(), 4);
    }

    #[test]
    fn control_characters_separate_and_never_reach_the_index() {
        let query = SearchQuery::parse("a\0b \"c\u{1}d\"").unwrap();
        assert_eq!(query.all, vec![vec![term("a")], vec![term("b")], vec![term("c d")]]);
    }

    #[test]
    fn what_finds_nothing_is_left_out() {
        let query = SearchQuery::parse("🎉 hello !!! -??? \"\" OR *").unwrap();
        assert_eq!(query.all, vec![vec![term("hello")]]);
        assert!(query.none.is_empty());
    }

    #[test]
    fn refusals_say_what_to_do() {
        for (raw, says) in [
            ("", "nothing to search for"),
            ("   ", "nothing to search for"),
            ("🎉 !!!", "nothing to search for"),
            ("-draft", "as well as what to leave out"),
            ("\"release notes", "not closed"),
            ("a \"b\" \"c", "not closed"),
            ("ab*", "at least 3 letters"),
            ("x-y*", "at least 3 letters"),
            ("OR cat", "`OR` goes between"),
            ("cat OR", "`OR` goes between"),
            ("cat OR OR dog", "`OR` goes between"),
            ("cat OR -dog", "`OR` goes between"),
            ("-cat OR dog", "`OR` goes between"),
            ("a b c d e f g h i j k", "at most 10 words or phrases"),
            ("\"a b c d e f g h i j k\"", "at most 10 words"),
        ] {
            let refused = SearchQuery::parse(raw).expect_err(raw);
            assert!(refused.0.contains(says), "{raw:?}: {refused}");
        }
        let long = "word ".repeat(41);
        assert!(
            SearchQuery::parse(&long)
                .unwrap_err()
                .0
                .contains("at most 200 characters")
        );
    }

    #[test]
    fn instants_are_read_in_utc_as_the_log_writes_them() {
        let read = |raw: &str| Timestamp::parse("after", raw).map(|at| at.as_str().to_owned());
        assert_eq!(read("2026-11-21").unwrap(), "2026-11-21T00:00:00.000Z");
        assert_eq!(read("2026-11-21T09:30").unwrap(), "2026-11-21T09:30:00.000Z");
        assert_eq!(read("2026-11-21T09:30:05.12345Z").unwrap(), "2026-11-21T09:30:05.123Z");
        assert_eq!(read("2026-11-21T00:30+01:00").unwrap(), "2026-11-20T23:30:00.000Z");
        assert_eq!(read("2024-02-29T23:00-0200").unwrap(), "2024-03-01T01:00:00.000Z");
        assert_eq!(read("1999-12-31T23:59:59z").unwrap(), "1999-12-31T23:59:59.000Z");
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2023-02-29",
            "2026-11-21T25:00",
            "2026-11-21T09",
            "2026-11-21X09:30",
            "2026-11-21T09:30:00.",
            "2026-11-21T09:30Zx",
            "2026-11-21T09:30+1",
            "١٢٣٤-11-21",
            "+2026-11-21",
        ] {
            let refused = read(bad).expect_err(bad);
            assert!(refused.0.contains("`after` must be a date"), "{bad}: {refused}");
        }
    }
}
