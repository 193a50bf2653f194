//! Search on the page, in real headless Chromium: Ctrl+K (or `/` when not typing) puts the
//! cursor in the room header's search box; a search shows its results with the matches
//! highlighted, pages on with "More results", says what is wrong with a query it cannot run,
//! and a result opens the message's permalink with the message highlighted. Every test fails
//! on any error a page reports.

use fantoccini::Client as Browser;
use fantoccini::Locator;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;

use crate::common::browser::{Driver, eval, finish, sign_in, wait_for, wait_until_connected};
use crate::common::{Server, TestDb};

/// Presses `key` with Control held, as a person does.
async fn control(browser: &Browser, key: char) {
    let actions = KeyActions::new("keyboard".into())
        .then(KeyAction::Down {
            value: Key::Control.into(),
        })
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key })
        .then(KeyAction::Up {
            value: Key::Control.into(),
        });
    browser.perform_actions(actions).await.unwrap();
    browser.release_actions().await.unwrap();
}

/// Types `text` wherever the keyboard's focus is.
async fn type_keys(browser: &Browser, text: &str) {
    browser.active_element().await.unwrap().send_keys(text).await.unwrap();
}

async fn active_id(browser: &Browser) -> String {
    eval(
        browser,
        "return document.activeElement ? document.activeElement.id : '';",
    )
    .await
}

#[tokio::test]
async fn a_search_from_the_header_shows_marked_results_that_open_the_message_in_place() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--rate-limits", "off"]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let mut target = 0;
    for n in 0..80 {
        let text = match n {
            20 => "the quarterly report is ready for review".to_owned(),
            _ => format!("filler message {n}"),
        };
        let event = bob.say("general", &text).await;
        if n == 20 {
            target = event["id"].as_i64().unwrap();
        }
    }
    for n in 0..23 {
        ada.say("general", &format!("paged result number {n}")).await;
    }

    let driver = Driver::start().await;
    let browser = driver.browser("ada").await;
    sign_in(&browser, &server.url("/"), "ada").await;

    // `/` in the message box is just a character; Control+K from there goes to search.
    browser
        .find(Locator::Id("content"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    type_keys(&browser, "/").await;
    assert_eq!(active_id(&browser).await, "content");
    control(&browser, 'k').await;
    assert_eq!(
        active_id(&browser).await,
        "search-box-q",
        "Ctrl+K focuses the search box"
    );
    // Escape gives the keys back; `/` with nothing being typed in comes back to the box.
    type_keys(&browser, "\u{E00C}").await;
    assert_ne!(active_id(&browser).await, "search-box-q");
    browser.execute("document.activeElement.blur();", vec![]).await.unwrap();
    let actions = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: '/' })
        .then(KeyAction::Up { value: '/' });
    browser.perform_actions(actions).await.unwrap();
    assert_eq!(active_id(&browser).await, "search-box-q", "/ focuses the search box");
    let typed: String = eval(&browser, "return document.getElementById('search-box-q').value;").await;
    assert_eq!(typed, "", "and is not typed into it");
    let composer: String = eval(&browser, "return document.getElementById('content').value;").await;
    assert_eq!(composer, "/");

    type_keys(&browser, "quarterly\u{E007}").await;
    wait_for(
        &browser,
        "the results show",
        "location.pathname === '/search' && document.querySelector('.search-result mark')",
    )
    .await;
    let marked: Vec<String> = eval(
        &browser,
        "return [...document.querySelectorAll('.search-result mark')].map(m => m.textContent);",
    )
    .await;
    assert_eq!(marked, ["quarterly"]);
    std::fs::create_dir_all("target/screenshots").unwrap();
    std::fs::write(
        "target/screenshots/search-results.png",
        browser.screenshot().await.unwrap(),
    )
    .unwrap();
    let query: String = eval(&browser, "return document.getElementById('search-q').value;").await;
    assert_eq!(query, "quarterly", "the form keeps the query");

    browser
        .find(Locator::Css(".search-result a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &browser,
        "the permalink opens with the message marked",
        &format!(
            "location.pathname === '/rooms/general/messages/{target}' && document.querySelector('#msg-{target}.highlight')"
        ),
    )
    .await;
    wait_until_connected(&browser).await;
    let in_view: bool = eval(
        &browser,
        &format!(
            "const r = document.getElementById('msg-{target}').getBoundingClientRect(); \
             const list = document.getElementById('messages').getBoundingClientRect(); \
             return r.top >= list.top && r.bottom <= list.bottom;"
        ),
    )
    .await;
    assert!(in_view, "the message is on screen");

    // More than a page: "More results" goes on from where the first page ended.
    browser.goto(&server.url("/search?q=paged")).await.unwrap();
    let first: usize = eval(&browser, "return document.querySelectorAll('.search-result').length;").await;
    assert_eq!(first, 20);
    browser
        .find(Locator::Css("a.search-more"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&browser, "the next page shows", "location.search.includes('cursor=')").await;
    let rest: Vec<String> = eval(
        &browser,
        "return [...document.querySelectorAll('.search-result .snippet')].map(s => s.textContent);",
    )
    .await;
    assert_eq!(
        rest,
        [
            "paged result number 2",
            "paged result number 1",
            "paged result number 0"
        ]
    );
    let more: usize = eval(&browser, "return document.querySelectorAll('a.search-more').length;").await;
    assert_eq!(more, 0, "and there is no more");

    // A query that cannot be run says why, on the page, with the form to fix it.
    browser.goto(&server.url("/search?q=%22release+notes")).await.unwrap();
    let said: String = eval(&browser, "return document.querySelector('.search-error').textContent;").await;
    assert!(said.contains("not closed"), "{said}");
    let results: usize = eval(&browser, "return document.querySelectorAll('.search-result').length;").await;
    assert_eq!(results, 0);
    finish(browser).await;
}
