//! Messages that change, on the page, in real headless Chromium: two people in one room, each
//! edit, reaction, reply and deletion made on one page showing live and in place on the other,
//! once; and a page cut off during a series of changes showing their end state when it is
//! back, without a reload, exactly as a freshly read page does. Every test fails on any error a
//! page reports.

use std::time::Duration;

use fantoccini::Client as Browser;
use fantoccini::Locator;
use fantoccini::actions::{InputSource, MouseActions, PointerAction, TouchActions};
use serde_json::{Value, json};

use crate::common::browser::{
    Driver, eval, finish, finish_with_network_errors, sign_in, type_and_send, wait_for, wait_until_connected,
};
use crate::common::proxy::ProxyAddress;
use crate::common::{Client, Server, TestDb};

/// How many elements match `css` on the page.
async fn count(browser: &Browser, css: &str) -> usize {
    eval(
        browser,
        &format!("return document.querySelectorAll({}).length;", Value::from(css)),
    )
    .await
}

/// The id of the newest message the page shows.
async fn newest_id(browser: &Browser) -> i64 {
    eval(
        browser,
        "return Number([...document.querySelectorAll('#messages > .message[data-id]')].pop().dataset.id);",
    )
    .await
}

/// Puts the mouse over the element `css`, as a reader pointing at it does.
async fn hover(browser: &Browser, css: &str) {
    browser
        .execute(
            "document.querySelector(arguments[0]).scrollIntoView({block: 'center'});",
            vec![Value::from(css)],
        )
        .await
        .unwrap();
    let element = browser.find(Locator::Css(css)).await.unwrap();
    let actions = MouseActions::new("mouse".into()).then(PointerAction::MoveToElement {
        element,
        duration: None,
        x: 0.0,
        y: 0.0,
    });
    browser.perform_actions(actions).await.unwrap();
}

/// Points at message `id` and picks `action` (`edit`, `delete`, `react`, `reply`) from the
/// toolbar that shows on it.
async fn act(browser: &Browser, id: i64, action: &str) {
    hover(browser, &format!("#msg-{id}")).await;
    wait_for(
        browser,
        &format!("the toolbar shows on message {id}"),
        &format!("document.querySelector('#msg-{id} > #actions:not([hidden]) [data-action={action}]:not([hidden])')"),
    )
    .await;
    click(browser, &format!("#actions [data-action={action}]")).await;
}

/// Touches the element `css` with a finger and lifts it: a tap on a phone's screen.
async fn tap(browser: &Browser, css: &str) {
    browser
        .execute(
            "document.querySelector(arguments[0]).scrollIntoView({block: 'center'});",
            vec![Value::from(css)],
        )
        .await
        .unwrap();
    let element = browser.find(Locator::Css(css)).await.unwrap();
    let actions = TouchActions::new("finger".into())
        .then(PointerAction::MoveToElement {
            element,
            duration: None,
            x: 0.0,
            y: 0.0,
        })
        .then(PointerAction::Down { button: 0 })
        .then(PointerAction::Up { button: 0 });
    browser.perform_actions(actions).await.unwrap();
}

async fn click(browser: &Browser, css: &str) {
    browser.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
}

/// Waits on every page in `browsers` for `condition`.
async fn wait_all(browsers: &[&Browser], what: &str, condition: &str) {
    for browser in browsers {
        wait_for(browser, what, condition).await;
    }
}

/// Message `id`'s reactions as the page shows them: `emoji:count:users`, with `*` when the
/// reader's own reaction is among them.
async fn reactions(browser: &Browser, id: i64) -> Vec<String> {
    eval(
        browser,
        &format!(
            "return [...document.querySelectorAll('#reactions-{id} .reaction')].map((b) =>
               b.dataset.emoji + ':' + b.querySelector('.count').textContent + ':' + b.dataset.users
               + (b.classList.contains('mine') ? '*' : ''));"
        ),
    )
    .await
}

/// Waits until the editing box of message `id` holds what was written, then writes `text`
/// in its place and presses Enter.
async fn rewrite(browser: &Browser, id: i64, was: &str, text: &str) {
    wait_for(
        browser,
        &format!("message {id} opens for editing"),
        &format!(
            "(() => {{ const area = document.querySelector('#msg-{id} .edit-box textarea');
                return area && !area.disabled && area.value === {} && document.activeElement === area; }})()",
            Value::from(was)
        ),
    )
    .await;
    let area = browser
        .find(Locator::Css(&format!("#msg-{id} .edit-box textarea")))
        .await
        .unwrap();
    area.clear().await.unwrap();
    area.send_keys(text).await.unwrap();
    area.send_keys("\u{E007}").await.unwrap(); // Enter
}

/// Every message on the page once, and nothing the page added in between with a message's id.
async fn assert_each_message_once(browser: &Browser) {
    let ok: bool = eval(
        browser,
        "const ids = [...document.querySelectorAll('#messages [id^=\"msg-\"]')].map((e) => e.id);
         return new Set(ids).size === ids.length
           && document.querySelectorAll('#messages [id^=\"msg-\"]:not(.message)').length === 0
           && [...document.querySelectorAll('#messages [id^=\"text-\"], #messages [id^=\"reactions-\"]')]
                .every((e) => document.querySelectorAll('[id=\"' + e.id + '\"]').length === 1);",
    )
    .await;
    assert!(ok, "a message or a part of one shows twice");
}

/// The ids of the messages the page shows, in order.
async fn shown_ids(browser: &Browser) -> Vec<i64> {
    eval(
        browser,
        "return [...document.querySelectorAll('#messages > .message[data-id]')].map((e) => Number(e.dataset.id));",
    )
    .await
}

async fn history_ids(api: &Client) -> Vec<i64> {
    api.history("general", "")
        .await
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_reactions_replies_and_deletions_made_on_one_page_show_live_and_in_place_on_another() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    // The first account is the admin; ada and bob are members, who change only their own.
    server.user("root").await;
    let ada_api = server.user("ada").await;
    server.user("bob").await;
    let driver = Driver::start().await;
    let ada = driver.browser("ada").await;
    let bob = driver.browser("bob").await;
    sign_in(&ada, &server.url("/"), "ada").await;
    sign_in(&bob, &server.url("/"), "bob").await;
    let both = [&ada, &bob];
    assert_eq!(
        eval::<String>(&ada, "return document.querySelector('.app').dataset.role;").await,
        "member"
    );

    // Ada writes Markdown that names bob: it shows rendered, the link safe, the mention marked
    // on bob's page alone.
    type_and_send(
        &ada,
        "hello @bob, **bold** news: see [the docs](https://example.com/docs)",
    )
    .await;
    wait_for(&ada, "ada's message is stored", "!document.querySelector('.pending')").await;
    let first = newest_id(&ada).await;
    wait_for(
        &bob,
        "bob sees it rendered",
        &format!("document.querySelector('#text-{first} strong')?.textContent === 'bold'"),
    )
    .await;
    let link: Value = eval(
        &bob,
        &format!(
            "const a = document.querySelector('#text-{first} a');
             return [a.getAttribute('href'), a.getAttribute('rel'), a.textContent];"
        ),
    )
    .await;
    assert_eq!(
        link,
        json!(["https://example.com/docs", "noopener noreferrer", "the docs"])
    );
    assert_eq!(
        count(&bob, &format!("#msg-{first}.mentions-me:not(.mine) .mention.me")).await,
        1
    );
    assert_eq!(count(&ada, &format!("#msg-{first}.mine:not(.mentions-me)")).await, 1);
    // Bob cannot change ada's message; he may react and reply.
    hover(&bob, &format!("#msg-{first}")).await;
    wait_for(
        &bob,
        "bob's toolbar shows",
        &format!("document.querySelector('#msg-{first} > #actions:not([hidden])')"),
    )
    .await;
    let offered: Vec<String> = eval(
        &bob,
        "return [...document.querySelectorAll('#actions button:not([hidden])')].map((b) => b.dataset.action);",
    )
    .await;
    assert_eq!(offered, ["react", "reply"]);

    // Ada edits it from the toolbar: the box holds the Markdown she wrote.
    act(&ada, first, "edit").await;
    rewrite(
        &ada,
        first,
        "hello @bob, **bold** news: see [the docs](https://example.com/docs)",
        "hello @bob, **bolder** news",
    )
    .await;
    let edited = format!(
        "document.querySelector('#text-{first} strong')?.textContent === 'bolder' \
         && !document.querySelector('#msg-{first} > .edited').hidden \
         && document.getElementById('msg-{first}').dataset.edited \
         && !document.querySelector('#msg-{first} .edit-box')"
    );
    wait_all(&both, "the edit shows in place", &edited).await;
    for browser in both {
        assert_eq!(count(browser, &format!("#messages [id=\"text-{first}\"]")).await, 1);
    }

    // A second message close after the first shares its header (the first is edited, so it
    // keeps its own); the up arrow in the empty box edits it, the newest of hers.
    type_and_send(&ada, "second thought").await;
    wait_for(&ada, "it is stored", "!document.querySelector('.pending')").await;
    let second = newest_id(&ada).await;
    wait_for(
        &bob,
        "bob sees it grouped under the first",
        &format!("document.getElementById('msg-{second}')?.classList.contains('continued')"),
    )
    .await;
    ada.find(Locator::Id("content"))
        .await
        .unwrap()
        .send_keys("\u{E013}") // ArrowUp
        .await
        .unwrap();
    rewrite(&ada, second, "second thought", "second thought, edited").await;
    wait_all(
        &both,
        "the up arrow's edit shows",
        &format!(
            "document.getElementById('text-{second}')?.textContent === 'second thought, edited' \
             && !document.querySelector('#msg-{second} .edit-box')"
        ),
    )
    .await;

    // Bob asks; ada reacts from the picker, and each toggles a reaction with its button.
    type_and_send(&bob, "a question from bob").await;
    wait_for(&bob, "it is stored", "!document.querySelector('.pending')").await;
    let question = newest_id(&bob).await;
    wait_for(
        &ada,
        "ada sees it",
        &format!("document.getElementById('msg-{question}')"),
    )
    .await;
    act(&ada, question, "react").await;
    wait_for(&ada, "the picker opens", "!document.getElementById('picker').hidden").await;
    click(&ada, "#picker [data-emoji=\"🎉\"]").await;
    let party = |n: usize| {
        format!(
            "document.querySelector('#reactions-{question} .reaction[data-emoji=\"🎉\"] .count')?.textContent === '{n}'"
        )
    };
    wait_all(&both, "the reaction shows", &party(1)).await;
    assert_eq!(reactions(&ada, question).await, ["🎉:1:ada*"]);
    assert_eq!(reactions(&bob, question).await, ["🎉:1:ada"]);
    assert!(eval::<bool>(&ada, "return document.getElementById('picker').hidden;").await);

    click(&bob, &format!("#reactions-{question} .reaction[data-emoji=\"🎉\"]")).await;
    wait_all(&both, "bob's joins it", &party(2)).await;
    assert_eq!(reactions(&bob, question).await, ["🎉:2:ada bob*"]);
    click(&ada, &format!("#reactions-{question} .reaction[data-emoji=\"🎉\"]")).await;
    wait_all(&both, "ada's is taken back", &party(1)).await;
    assert_eq!(reactions(&ada, question).await, ["🎉:1:bob"]);
    assert_eq!(reactions(&bob, question).await, ["🎉:1:bob*"]);
    click(&ada, &format!("#reactions-{question} .reaction[data-emoji=\"🎉\"]")).await;
    wait_all(&both, "and given again", &party(2)).await;
    assert_eq!(reactions(&ada, question).await, ["🎉:2:bob ada*"]);

    // Any emoji, typed into the picker (chromedriver types only the Basic Multilingual Plane).
    act(&ada, question, "react").await;
    let field = ada.find(Locator::Id("picker-input")).await.unwrap();
    field.send_keys("☕").await.unwrap();
    field.send_keys("\u{E007}").await.unwrap();
    wait_all(
        &both,
        "the typed emoji shows",
        &format!("document.querySelector('#reactions-{question} .reaction[data-emoji=\"☕\"]')"),
    )
    .await;
    assert_eq!(reactions(&bob, question).await, ["🎉:2:bob ada*", "☕:1:ada"]);

    // Ada answers bob: the quote of his question comes with her reply.
    act(&ada, question, "reply").await;
    wait_for(
        &ada,
        "the reply bar says what is answered",
        "!document.getElementById('replying').hidden \
         && document.getElementById('replying-who').textContent === 'bob' \
         && document.getElementById('replying-text').textContent === 'a question from bob'",
    )
    .await;
    type_and_send(&ada, "an answer").await;
    wait_for(&ada, "it is stored", "!document.querySelector('.pending')").await;
    let answer = newest_id(&ada).await;
    assert!(eval::<bool>(&ada, "return document.getElementById('replying').hidden;").await);
    let quoted = format!(
        "document.querySelector('#msg-{answer} > .quote[data-quote-of=\"{question}\"] .quote-who')?.textContent === 'bob' \
         && document.getElementById('msg-{answer}').dataset.replyTo === '{question}' \
         && document.getElementById('text-{answer}').textContent === 'an answer'"
    );
    wait_all(&both, "the reply shows its quote", &quoted).await;
    // Bob rewrites his question with the up arrow: the quote on ada's page follows.
    bob.find(Locator::Id("content"))
        .await
        .unwrap()
        .send_keys("\u{E013}")
        .await
        .unwrap();
    rewrite(&bob, question, "a question from bob", "a better question from bob").await;
    wait_all(
        &both,
        "the quote shows the new text",
        &format!(
            "document.querySelector('#msg-{answer} .quote .quote-text')?.textContent === 'a better question from bob'"
        ),
    )
    .await;

    // Bob replies to ada's first message; then she deletes it, with a yes to the question.
    act(&bob, first, "reply").await;
    type_and_send(&bob, "re: the news").await;
    wait_for(&bob, "it is stored", "!document.querySelector('.pending')").await;
    let re = newest_id(&bob).await;
    wait_for(
        &ada,
        "ada sees bob's reply",
        &format!("document.querySelector('#msg-{re} > .quote[data-quote-of=\"{first}\"][href]')"),
    )
    .await;
    act(&ada, first, "delete").await;
    wait_for(
        &ada,
        "the page asks first",
        "!document.getElementById('confirm-delete').hidden",
    )
    .await;
    assert!(
        eval::<bool>(&ada, &format!("return !!document.getElementById('msg-{first}');")).await,
        "nothing goes before the yes"
    );
    click(&ada, "#confirm-yes").await;
    let gone = format!(
        "!document.getElementById('msg-{first}') && (() => {{
           const quote = document.querySelector('#msg-{re} > .quote[data-quote-of=\"{first}\"]');
           return quote.classList.contains('gone') && !quote.hasAttribute('href')
             && quote.textContent === 'This message was deleted.';
         }})()"
    );
    wait_all(&both, "the message goes and its quote says so", &gone).await;

    // A long message folds, and unfolds.
    let long: Vec<String> = (1..=30).map(|n| format!("paragraph {n}")).collect();
    let long_id = ada_api.say("general", &long.join("\n\n")).await["id"].as_i64().unwrap();
    wait_for(
        &bob,
        "the long message shows folded",
        &format!(
            "document.getElementById('msg-{long_id}')?.classList.contains('folded') \
             && document.querySelector('#msg-{long_id} > .fold').textContent === 'Show more'"
        ),
    )
    .await;
    let folded: f64 = eval(
        &bob,
        &format!("return document.getElementById('text-{long_id}').getBoundingClientRect().height;"),
    )
    .await;
    click(&bob, &format!("#msg-{long_id} > .fold")).await;
    wait_for(
        &bob,
        "it unfolds",
        &format!(
            "!document.getElementById('msg-{long_id}').classList.contains('folded') \
             && document.querySelector('#msg-{long_id} > .fold').textContent === 'Show less'"
        ),
    )
    .await;
    let unfolded: f64 = eval(
        &bob,
        &format!("return document.getElementById('text-{long_id}').getBoundingClientRect().height;"),
    )
    .await;
    assert!(unfolded > folded * 1.5, "unfolded {unfolded}px, folded {folded}px");

    // Both pages show what the history holds, each message once, under one day's separator.
    let expected = history_ids(&ada_api).await;
    assert_eq!(expected, [second, question, answer, re, long_id]);
    for browser in both {
        assert_eq!(shown_ids(browser).await, expected);
        assert_each_message_once(browser).await;
        assert_eq!(count(browser, "#messages > .day").await, 1);
    }
    std::fs::create_dir_all("target/screenshots").unwrap();
    hover(&ada, &format!("#msg-{answer}")).await;
    std::fs::write("target/screenshots/changes.png", ada.screenshot().await.unwrap()).unwrap();
    for browser in [ada, bob] {
        finish(browser).await;
    }
}

/// `PATCH`, `DELETE` and the reactions routes, as a client of the API makes them: the event
/// stored, asserting `200`.
async fn change(api: &Client, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut request = api.request(method.clone(), path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{method} {path}");
    response.json().await.unwrap()
}

/// Edits message `id`; the id of the `edit` event.
async fn edit(api: &Client, id: i64, content: &str) -> i64 {
    change(
        api,
        reqwest::Method::PATCH,
        &format!("/api/messages/{id}"),
        Some(json!({ "content": content })),
    )
    .await["id"]
        .as_i64()
        .unwrap()
}

async fn react(api: &Client, id: i64, emoji: &str, add: bool) {
    let method = if add {
        reqwest::Method::PUT
    } else {
        reqwest::Method::DELETE
    };
    change(api, method, &format!("/api/messages/{id}/reactions/{emoji}"), None).await;
}

async fn delete(api: &Client, id: i64) {
    change(api, reqwest::Method::DELETE, &format!("/api/messages/{id}"), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_cut_off_during_changes_shows_their_end_state_when_it_is_back_without_a_reload() {
    let db = TestDb::new();
    let address = ProxyAddress::bind().await;
    let server = Server::start(&db, &["--public-origin", &address.base]).await;
    let proxy = address.forward_to(&server.base).await;
    server.user("root").await;
    let ada = server.user("ada").await;
    let bob_api = server.user("bob").await;
    let driver = Driver::start().await;
    let bob = driver.browser("bob").await;
    sign_in(&bob, &proxy.url("/"), "bob").await;

    let say = |content: &'static str| {
        let ada = &ada;
        async move { ada.say("general", content).await["id"].as_i64().unwrap() }
    };
    let one = say("one").await;
    let two = say("two").await;
    let three = say("three").await;
    react(&ada, one, "👍", true).await;
    wait_for(
        &bob,
        "bob's page shows it all",
        &format!("document.querySelector('#reactions-{one} .reaction[data-emoji=\"👍\"]') && document.getElementById('msg-{three}')"),
    )
    .await;
    let newest_seen: i64 = eval(
        &bob,
        "return Math.max(...[...document.querySelectorAll('#messages > .message[data-id]')].map((e) => Number(e.dataset.id)));",
    )
    .await;
    assert_eq!(newest_seen, three);
    // A marker that a reload would wipe.
    bob.execute("window.notReloaded = true;", vec![]).await.unwrap();

    // The proxy cuts bob's stream and refuses every new one until the changes are made: his
    // page hears of none of them live.
    let opened = proxy.events_requests().len();
    proxy.fail_next_events(usize::MAX);
    proxy.cut_open_responses();
    wait_for(
        &bob,
        "bob's page knows it is cut off",
        "document.getElementById('connection').dataset.state !== 'connected'",
    )
    .await;
    let first_change = edit(&ada, one, "one, **edited**").await;
    edit(&ada, one, "one, **edited** twice").await;
    react(&ada, one, "👍", false).await;
    react(&ada, one, "❤️", true).await;
    react(&bob_api, one, "❤️", true).await;
    react(&bob_api, three, "👀", true).await;
    let four = ada
        .post_json("general", json!({ "content": "four, answering two", "reply_to": two }))
        .await;
    assert_eq!(four.0, 201, "{:?}", four.1);
    let four = four.1["id"].as_i64().unwrap();
    delete(&ada, two).await;
    let five = say("five, soon gone").await;
    edit(&ada, five, "five, edited and soon gone").await;
    react(&bob_api, five, "👍", true).await;
    delete(&ada, five).await;
    let six = say("six").await;
    edit(&ada, three, "three, edited").await;
    assert!(
        proxy.events_requests()[opened..].iter().all(|r| r.status == 503),
        "no stream was open during the changes: {:?}",
        &proxy.events_requests()[opened..]
    );
    // Let the page back in.
    proxy.fail_next_events(0);
    wait_until_connected(&bob).await;
    let back = proxy
        .events_requests()
        .into_iter()
        .skip(opened)
        .find(|r| r.status == 200)
        .unwrap();
    let resumed_from: i64 = back.after.or(back.last_event_id).unwrap().parse().unwrap();
    assert!(
        resumed_from < first_change,
        "the page resumed from before the changes: {resumed_from}"
    );

    wait_for(
        &bob,
        "bob's page shows the end state",
        &format!(
            "document.getElementById('text-{three}')?.textContent === 'three, edited' \
             && document.getElementById('msg-{six}') && !document.getElementById('msg-{two}')"
        ),
    )
    .await;
    // Nothing more is on its way; settle any frame still being applied.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        eval::<bool>(&bob, "return window.notReloaded === true;").await,
        "caught up without a reload"
    );
    assert_eq!(shown_ids(&bob).await, [one, three, four, six]);
    assert_eq!(shown_ids(&bob).await, history_ids(&ada).await);
    assert_each_message_once(&bob).await;
    assert_eq!(
        eval::<String>(
            &bob,
            &format!("return document.getElementById('text-{one}').innerHTML;")
        )
        .await,
        "<p>one, <strong>edited</strong> twice</p>"
    );
    assert_eq!(reactions(&bob, one).await, ["❤️:2:ada bob*"]);
    assert_eq!(reactions(&bob, three).await, ["👀:1:bob*"]);
    assert_eq!(
        count(
            &bob,
            &format!("#msg-{four} > .quote.gone[data-quote-of=\"{two}\"]:not([href])")
        )
        .await,
        1
    );
    for id in [one, three] {
        assert!(
            eval::<bool>(
                &bob,
                &format!("return !document.querySelector('#msg-{id} > .edited').hidden;")
            )
            .await,
            "message {id} shows it was edited"
        );
    }

    // And it is what a freshly read page shows, part for part, read here without a reload.
    bob.execute(
        "window.fresh = null;
         fetch('/rooms/general', {credentials: 'same-origin'}).then((r) => r.text()).then((t) => { window.fresh = t; });",
        vec![],
    )
    .await
    .unwrap();
    wait_for(&bob, "the fresh page is read", "window.fresh").await;
    let compared: Value = eval(
        &bob,
        "const summary = (root) => [...root.querySelectorAll('#messages > .message[data-id]')].map((m) => ({
           id: m.id,
           user: m.dataset.user,
           edited: !m.querySelector(':scope > .edited')?.hidden,
           text: m.querySelector(':scope > .text').innerHTML,
           textClass: m.querySelector(':scope > .text').className,
           quote: [...m.querySelectorAll(':scope > .quote')].map((q) =>
             [q.className, q.getAttribute('href'), q.textContent].join('|')),
           reactions: [...m.querySelectorAll(':scope > .reactions .reaction')].map((b) =>
             b.dataset.emoji + ':' + b.dataset.users + ':' + b.textContent),
         }));
         const fresh = new DOMParser().parseFromString(window.fresh, 'text/html');
         return {live: summary(document), fresh: summary(fresh)};",
    )
    .await;
    assert_eq!(compared["live"], compared["fresh"]);
    std::fs::create_dir_all("target/screenshots").unwrap();
    std::fs::write(
        "target/screenshots/changes-caught-up.png",
        bob.screenshot().await.unwrap(),
    )
    .unwrap();
    finish_with_network_errors(bob).await;
}

/// On a phone nothing hovers: a tap on a message opens its toolbar, and a second tap closes
/// it; the emoji picker fits the screen; an edit is saved with its button.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_phone_a_tap_opens_the_toolbar_and_the_picker_fits_the_screen() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    server.user("root").await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let asked = bob.say("general", "tap me").await["id"].as_i64().unwrap();
    let mine = ada.say("general", "mine to fix").await["id"].as_i64().unwrap();
    let driver = Driver::start().await;
    let phone = driver.phone("ada").await;
    sign_in(&phone, &server.url("/"), "ada").await;

    let toolbar_on = |id: i64| format!("document.querySelector('#msg-{id} > #actions:not([hidden])')");
    tap(&phone, &format!("#text-{asked}")).await;
    wait_for(&phone, "a tap opens the toolbar", &toolbar_on(asked)).await;
    tap(&phone, &format!("#text-{asked}")).await;
    wait_for(
        &phone,
        "a second tap closes it",
        "document.getElementById('actions').hidden",
    )
    .await;
    tap(&phone, &format!("#text-{asked}")).await;
    wait_for(&phone, "and a third opens it again", &toolbar_on(asked)).await;
    tap(&phone, "#actions [data-action=react]").await;
    wait_for(&phone, "the picker opens", "!document.getElementById('picker').hidden").await;
    let fits: bool = eval(
        &phone,
        "const r = document.getElementById('picker').getBoundingClientRect();
         const box = document.getElementById('composer').getBoundingClientRect();
         return r.left >= 0 && r.right <= innerWidth + 0.5 && r.top >= 0 && r.bottom <= box.top + 0.5
           && document.documentElement.scrollWidth <= innerWidth;",
    )
    .await;
    assert!(fits, "the picker is on the screen, above the message box");
    std::fs::create_dir_all("target/screenshots").unwrap();
    std::fs::write("target/screenshots/phone-picker.png", phone.screenshot().await.unwrap()).unwrap();
    tap(&phone, "#picker [data-emoji=\"👍\"]").await;
    wait_for(
        &phone,
        "the reaction shows, marked mine",
        &format!("document.querySelector('#reactions-{asked} .reaction.mine[data-emoji=\"👍\"]')"),
    )
    .await;

    tap(&phone, &format!("#text-{mine}")).await;
    wait_for(&phone, "the toolbar opens on her message", &toolbar_on(mine)).await;
    tap(&phone, "#actions [data-action=edit]").await;
    wait_for(
        &phone,
        "the edit box opens",
        &format!("document.querySelector('#msg-{mine} .edit-box textarea:not([disabled])')?.value === 'mine to fix'"),
    )
    .await;
    let area = phone
        .find(Locator::Css(&format!("#msg-{mine} .edit-box textarea")))
        .await
        .unwrap();
    area.clear().await.unwrap();
    area.send_keys("mine, fixed").await.unwrap();
    tap(&phone, &format!("#msg-{mine} .edit-save")).await;
    wait_for(
        &phone,
        "the edit shows",
        &format!(
            "document.getElementById('text-{mine}').textContent === 'mine, fixed' \
             && !document.querySelector('#msg-{mine} .edit-box')"
        ),
    )
    .await;
    assert_eq!(
        ada.get_json(&format!("/api/messages/{mine}")).await["content"],
        "mine, fixed"
    );
    finish(phone).await;
}

/// Whether the page's day separators are exactly where the local day changes between two
/// messages (and above the first), above the "new messages" line if that is there too; and
/// each day's first message, and the first below that line, keeps its header while the rest
/// of one person's run close together shares it.
const DAYS_ARE_RIGHT: &str = "(() => {
  const items = [...document.getElementById('messages').children];
  const marker = (item) => item?.classList.contains('new-marker');
  let day = null;
  for (const [i, item] of items.entries()) {
    if (item.classList.contains('day')) {
      let next = i + 1;
      while (marker(items[next])) next++;
      if (!items[next]?.matches('.message[data-id]')) return false;
    }
    if (!item.matches('.message[data-id]')) continue;
    const today = new Date(item.querySelector(':scope > time').getAttribute('datetime')).toDateString();
    let before = i - 1;
    while (marker(items[before])) before--;
    const separated = items[before]?.classList.contains('day') === true;
    if (separated !== (today !== day)) return false;
    if (item.classList.contains('continued') === (separated || before !== i - 1)) return false;
    day = today;
  }
  return true;
})()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_keeps_their_place_across_days_older_messages_new_ones_and_a_permalink() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    server.user("root").await;
    server.user("ada").await;
    let bob = server.user("bob").await;
    let mut ids = Vec::new();
    for n in 0..120 {
        ids.push(
            bob.say("general", &format!("message {n:03}")).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    // The first forty were said three days ago, the next forty two days ago.
    let mut file = db.connect().await;
    for (range, days) in [(0..40, 3), (40..80, 2)] {
        sqlx::query(
            "UPDATE events SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', created_at, ?) WHERE id BETWEEN ? AND ?",
        )
        .bind(format!("-{days} days"))
        .bind(ids[range.start])
        .bind(ids[range.end - 1])
        .execute(&mut file)
        .await
        .unwrap();
    }
    let driver = Driver::start().await;
    let ada = driver.browser("ada").await;
    sign_in(&ada, &server.url("/"), "ada").await;
    assert_eq!(shown_ids(&ada).await, ids[70..]);
    assert!(eval::<bool>(&ada, &format!("return {DAYS_ARE_RIGHT};")).await);
    assert_eq!(count(&ada, "#messages > .day").await, 2);

    // Older messages load above the one read, which stays where it was; focus stays on the
    // control.
    for (loaded, days) in [(100, 3), (120, 3)] {
        let before: Value = eval(
            &ada,
            "const list = document.getElementById('messages');
             list.scrollTop = 0;
             const top = list.getBoundingClientRect().top;
             const first = [...list.querySelectorAll(':scope > .message')].find((m) => m.getBoundingClientRect().bottom > top);
             return [first.id, first.getBoundingClientRect().top - top];",
        )
        .await;
        click(&ada, "#older button").await;
        wait_for(
            &ada,
            "older messages load",
            &format!("document.querySelectorAll('#messages > .message').length === {loaded}"),
        )
        .await;
        let after: f64 = eval(
            &ada,
            &format!(
                "const list = document.getElementById('messages');
                 return document.getElementById({}).getBoundingClientRect().top - list.getBoundingClientRect().top;",
                before[0]
            ),
        )
        .await;
        let was = before[1].as_f64().unwrap();
        assert!(
            (after - was).abs() <= 1.0,
            "the message read moved from {was}px to {after}px"
        );
        let focused: bool = eval(
            &ada,
            "const older = document.querySelector('#older button');
             return older ? document.activeElement === older : document.activeElement === document.getElementById('messages');",
        )
        .await;
        assert!(
            focused,
            "focus stays on the control, or on the list when nothing older remains"
        );
        assert!(eval::<bool>(&ada, &format!("return {DAYS_ARE_RIGHT};")).await);
        assert_eq!(count(&ada, "#messages > .day").await, days);
    }
    assert_eq!(shown_ids(&ada).await, ids);

    // Scrolled up, the reader is told of a new message below and taken to it.
    ada.execute("document.getElementById('messages').scrollTop = 0;", vec![])
        .await
        .unwrap();
    let new = bob.say("general", "while you read").await["id"].as_i64().unwrap();
    wait_for(
        &ada,
        "the page says something new came",
        &format!(
            "document.getElementById('msg-{new}')?.previousElementSibling?.classList.contains('new-marker') \
             && !document.getElementById('jump').hidden \
             && document.getElementById('jump').textContent === '1 new message ↓'"
        ),
    )
    .await;
    click(&ada, "#jump").await;
    wait_for(
        &ada,
        "the page is at the newest",
        "(() => { const l = document.getElementById('messages');
           return l.scrollHeight - l.scrollTop - l.clientHeight < 2 && document.getElementById('jump').hidden; })()",
    )
    .await;
    assert!(eval::<bool>(&ada, &format!("return {DAYS_ARE_RIGHT};")).await);

    // A message's own page shows it, marked, in view, with the way to the newest.
    let focus = ids[30];
    ada.goto(&server.url(&format!("/rooms/general/messages/{focus}")))
        .await
        .unwrap();
    wait_until_connected(&ada).await;
    let shown: Value = eval(
        &ada,
        "const list = document.getElementById('messages').getBoundingClientRect();
         const marked = document.querySelector('#messages > .message.highlight');
         const r = marked.getBoundingClientRect();
         const latest = document.getElementById('latest');
         return [marked.id, r.top >= list.top && r.bottom <= list.bottom, !latest.hidden,
                 latest.getAttribute('href'), document.getElementById('jump').hidden];",
    )
    .await;
    assert_eq!(
        shown,
        json!([format!("msg-{focus}"), true, true, "/rooms/general", true])
    );
    assert!(eval::<bool>(&ada, &format!("return {DAYS_ARE_RIGHT};")).await);
    std::fs::create_dir_all("target/screenshots").unwrap();
    std::fs::write("target/screenshots/permalink.png", ada.screenshot().await.unwrap()).unwrap();
    finish(ada).await;
}
