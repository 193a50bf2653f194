//! Search: `GET /api/search` for API clients and `GET /search`, the page with the same
//! filters as a form. Both read the same parameters and call `app::search`.

use askama::Template;
use poem::http::StatusCode;
use poem::web::{Data, Html, Json};
use poem::{IntoResponse, Request, Response, handler};
use serde::{Deserialize, Serialize};

use super::State;
use super::assets::{self, AssetUrls};
use super::auth::CurrentUser;
use super::error::ApiError;
use super::reply::see_other;
use crate::app::search::{DEFAULT_RESULTS, MAX_RESULTS, Results, Search};
use crate::app::{self, Error};
use crate::domain::{EventId, RoomKind, Timestamp};
use crate::wire::render;

/// Query parameters arrive as text so that a bad one gets a clear message. An empty one (a
/// form's field left blank) is as good as none.
#[derive(Debug, Default, Deserialize)]
pub struct SearchParams {
    #[serde(default)]
    q: String,
    room: Option<String>,
    from: Option<String>,
    after: Option<String>,
    before: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

impl SearchParams {
    /// The parameters of `req`'s query string. Text that is not UTF-8, raw or
    /// percent-encoded, is a `400`, as in a form: it is never replaced. So is a parameter
    /// given twice.
    fn of(req: &Request) -> Result<Self, ApiError> {
        let query = req.uri().query().unwrap_or_default();
        let utf8 = |part: &[u8]| percent_encoding::percent_decode(part).decode_utf8().is_ok();
        if !query.as_bytes().split(|&b| b == b'&' || b == b'=').all(utf8) {
            return Err(ApiError::BadRequest("the query string is not valid UTF-8".into()));
        }
        serde_urlencoded::from_str(query)
            .map_err(|error| ApiError::BadRequest(format!("the query string does not fit: {error}")))
    }
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|value| !value.is_empty())
}

impl SearchParams {
    /// The search these parameters ask for; `400` for a filter that is not one.
    fn read(&self) -> Result<Search, ApiError> {
        let bad = |error: crate::domain::Invalid| ApiError::BadRequest(error.to_string());
        let limit = match given(&self.limit) {
            None => DEFAULT_RESULTS,
            Some(raw) => raw
                .parse::<u32>()
                .ok()
                .filter(|limit| (1..=MAX_RESULTS).contains(limit))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("`limit` must be a whole number from 1 to {MAX_RESULTS}"))
                })?,
        };
        let below = match given(&self.cursor) {
            None => None,
            Some(raw) => Some(
                raw.parse::<i64>()
                    .ok()
                    .filter(|id| *id > 0)
                    .map(EventId)
                    .ok_or_else(|| ApiError::BadRequest("`cursor` must be the `next` of an earlier page".into()))?,
            ),
        };
        Ok(Search {
            query: self.q.clone(),
            room: given(&self.room).map(str::to_owned),
            from: given(&self.from).map(|from| from.trim_start_matches('@').to_owned()),
            after: given(&self.after)
                .map(|raw| Timestamp::parse("after", raw))
                .transpose()
                .map_err(bad)?,
            before: given(&self.before)
                .map(|raw| Timestamp::parse("before", raw))
                .transpose()
                .map_err(bad)?,
            below,
            limit,
        })
    }
}

/// One result in JSON: the message object, and its snippet.
#[derive(Serialize)]
struct HitJson<'a> {
    #[serde(flatten)]
    message: render::Json<'a>,
    snippet: &'a str,
}

#[derive(Serialize)]
struct ResultsJson<'a> {
    results: Vec<HitJson<'a>>,
    /// Opaque: passed back as `cursor` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// `GET /api/search?q=&room=&from=&after=&before=&limit=&cursor=`: `{"results": [...],
/// "next"?}`, newest first.
#[handler]
pub async fn search_messages(
    req: &Request,
    Data(state): Data<&State>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    let search = SearchParams::of(req)?.read()?;
    let found = app::search::search(&state.app, &user, &search).await?;
    let results = found
        .hits
        .iter()
        .map(|hit| HitJson {
            message: render::Json(&hit.message),
            snippet: &hit.snippet,
        })
        .collect();
    Ok(Json(ResultsJson {
        results,
        next: found.next.map(|next| next.to_string()),
    })
    .into_response())
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage<'a> {
    assets: &'static AssetUrls,
    params: &'a SearchParams,
    /// The rooms to choose from: name and how the page names it.
    rooms: Vec<(String, String)>,
    /// Where "back to chat" goes.
    back: &'a str,
    error: Option<String>,
    /// A search was run (so "nothing found" can be said).
    searched: bool,
    hits: Vec<HitView>,
    /// The next page's address.
    more: Option<String>,
}

impl SearchPage<'_> {
    fn value<'v>(&self, value: &'v Option<String>) -> &'v str {
        value.as_deref().unwrap_or_default()
    }

    /// A date field shows a date picker for a date, and plain text for a time typed in the
    /// address (which a date picker would throw away).
    fn date_type(&self, value: &Option<String>) -> &'static str {
        match given(value) {
            Some(value) if value.len() > 10 => "text",
            _ => "date",
        }
    }
}

struct HitView {
    id: EventId,
    room: String,
    /// `#general`, `🔒 ops`, or a direct room's people.
    place: String,
    username: String,
    created_at: String,
    edited: bool,
    snippet: String,
}

/// `GET /search`: the search form, and the results of what it asks. A query that cannot be
/// run is said on the page, which answers `200` (it is the form, working as meant); only a
/// refusal to wait for keeps its status (`429`).
#[handler]
pub async fn search_page(
    req: &Request,
    Data(state): Data<&State>,
    user: Option<CurrentUser>,
) -> Result<Response, ApiError> {
    let Some(user) = user else { return Ok(see_other("/")) };
    let params = SearchParams::of(req)?;
    let app = &state.app;
    let listed = app::rooms::list(app, &user, None, app::rooms::MAX_ROOMS).await?;
    let rooms: Vec<(String, String)> = listed
        .rooms
        .iter()
        .map(|room| {
            let place = match room.kind() {
                RoomKind::Public => format!("#{}", room.name),
                RoomKind::Private => format!("🔒 {}", room.name),
                RoomKind::Direct => {
                    let people: Vec<&str> = listed
                        .members
                        .get(&room.id)
                        .map(|names| {
                            names
                                .iter()
                                .map(String::as_str)
                                .filter(|name| *name != user.username)
                                .collect()
                        })
                        .unwrap_or_default();
                    if people.is_empty() {
                        "yourself".to_owned()
                    } else {
                        people.join(", ")
                    }
                }
            };
            (room.name.clone(), place)
        })
        .collect();
    let searching = !params.q.trim().is_empty();
    let mut error = None;
    let mut status = StatusCode::OK;
    let mut retry_after = None;
    let mut hits = Vec::new();
    let mut more = None;
    if searching {
        match run(state, &user, &params).await {
            Ok(found) => {
                more = found.next.map(|next| more_url(&params, next));
                hits = found
                    .hits
                    .into_iter()
                    .filter_map(|hit| {
                        let room = hit.message.room()?.to_owned();
                        let place = rooms
                            .iter()
                            .find(|(name, _)| *name == room)
                            .map_or_else(|| format!("#{room}"), |(_, place)| place.clone());
                        let edited = matches!(
                            &hit.message.kind,
                            crate::domain::EventKind::Message { edited_at: Some(_), .. }
                        );
                        Some(HitView {
                            id: hit.message.id,
                            room,
                            place,
                            username: hit.message.username,
                            created_at: hit.message.created_at,
                            edited,
                            snippet: hit.snippet,
                        })
                    })
                    .collect();
            }
            Err(refused) => {
                let refused_status = poem::error::ResponseError::status(&refused);
                if !refused_status.is_client_error() {
                    return Err(refused);
                }
                if refused_status == StatusCode::TOO_MANY_REQUESTS {
                    status = refused_status;
                    retry_after = refused.retry_after();
                }
                error = Some(refused.to_string());
            }
        }
    }
    let back = given(&params.room)
        .filter(|room| rooms.iter().any(|(name, _)| name == room))
        .unwrap_or("general")
        .to_owned();
    let page = SearchPage {
        assets: assets::urls(),
        params: &params,
        rooms,
        back: &back,
        searched: searching && error.is_none(),
        error,
        hits,
        more,
    };
    let mut response = Html(page.render()?).with_status(status).into_response();
    if let Some(wait) = retry_after {
        response.headers_mut().insert("retry-after", wait.into());
    }
    Ok(response)
}

async fn run(state: &State, user: &CurrentUser, params: &SearchParams) -> Result<Results, ApiError> {
    let search = params.read()?;
    app::search::search(&state.app, user, &search)
        .await
        .map_err(|error| match error {
            // On the page, an unknown room is a filter that finds nothing to search.
            Error::NotFound(what) => ApiError::Unprocessable(format!("there is no {what} that you can read")),
            other => ApiError::App(other),
        })
}

/// The address of the page after this one: the same search, from `next` on.
fn more_url(params: &SearchParams, next: EventId) -> String {
    let next = next.to_string();
    let pairs: Vec<(&str, &str)> = [
        ("q", Some(params.q.as_str())),
        ("room", given(&params.room)),
        ("from", given(&params.from)),
        ("after", given(&params.after)),
        ("before", given(&params.before)),
        ("limit", given(&params.limit)),
        ("cursor", Some(next.as_str())),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|value| (name, value)))
    .collect();
    format!("/search?{}", serde_urlencoded::to_string(pairs).unwrap_or_default())
}
