//! Search: the messages a user can read now that say what they look for, newest first, with
//! snippets. The query is parsed (`domain::SearchQuery`) before anything touches the database,
//! so a query that could only fail costs nothing; each search, or page of one, counts against
//! `--search-rate`. A room filter names a room the user can read, or is answered `404` as if it
//! did not exist.

use super::{App, Error, rooms, sessions::Session};
use crate::domain::{Event, EventId, Invalid, SearchQuery, Timestamp, Username};
use crate::eventlog::sqlite::{SearchPage, refused_query};
use crate::wire::render;

/// Results a page holds unless asked, and the most it holds.
pub const DEFAULT_RESULTS: u32 = 20;
pub const MAX_RESULTS: u32 = 50;

/// What to look for, as the front end read it: the query as typed, the filters parsed.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub query: String,
    /// A room's name.
    pub room: Option<String>,
    /// An author's username.
    pub from: Option<String>,
    pub after: Option<Timestamp>,
    pub before: Option<Timestamp>,
    /// The `next` of the page before.
    pub below: Option<EventId>,
    pub limit: u32,
}

/// One message found: in its current state, and its snippet as safe HTML (matches in
/// `<mark>`).
pub struct Hit {
    pub message: Event,
    pub snippet: String,
}

/// A page of results, and where the next one starts if there may be more. A page may hold
/// fewer than asked (even none) and still have a `next`: each page looks at a bounded number
/// of matches.
pub struct Results {
    pub hits: Vec<Hit>,
    pub next: Option<EventId>,
}

/// Runs `search` for `session`'s user over the rooms they can read now.
pub async fn search(app: &App, session: &Session, search: &Search) -> Result<Results, Error> {
    let query = SearchQuery::parse(&search.query)?;
    if let (Some(after), Some(before)) = (&search.after, &search.before)
        && after >= before
    {
        return Err(Error::Invalid(Invalid("`after` must be earlier than `before`".into())));
    }
    let from = search.from.as_deref().map(Username::parse).transpose()?;
    app.limits.search(session.user_id)?;
    let room = match &search.room {
        Some(name) => Some(rooms::find(app, session, name).await?.id),
        None => None,
    };
    let author = match &from {
        Some(name) => Some(
            app.log
                .store
                .account(name.as_str())
                .await?
                .ok_or_else(|| Error::Invalid(Invalid(format!("nobody is called `{}`", name.as_str()).into())))?
                .id,
        ),
        None => None,
    };
    let page = SearchPage {
        query: &query,
        reader: session.user_id,
        room,
        author,
        after: search.after.as_ref(),
        before: search.before.as_ref(),
        below: search.below,
        limit: search.limit.clamp(1, MAX_RESULTS),
    };
    let found = app.log.store.search(page).await.map_err(|error| {
        if refused_query(&error) {
            // The parser is meant to make only queries FTS5 takes; should one slip through, it
            // is still the query's fault, said as such.
            tracing::warn!(%error, "the search index refused a parsed query");
            Error::Invalid(Invalid(
                "this search cannot be run as typed: try plain words, or a phrase in quotes".into(),
            ))
        } else {
            Error::Db(error)
        }
    })?;
    Ok(Results {
        hits: found
            .hits
            .into_iter()
            .map(|(message, snippet)| Hit {
                snippet: render::snippet_html(&snippet),
                message,
            })
            .collect(),
        next: found.next,
    })
}
