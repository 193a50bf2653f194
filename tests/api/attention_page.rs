//! Attention on the page, in real headless Chromium: unread and mention counts in the
//! sidebar, the tab's title and icon, kept by each page from the frames and synced across a
//! person's devices by `read` events; `@name` completion and mentions marked for the one
//! named; desktop notifications shown once per event by a browser none of whose tabs is
//! looked at, and none from a muted room. Every test fails on any error a page reports.
//!
//! What a hidden page is in headless Chromium (156, `--headless=new`), as found by trying:
//! every tab of a browser is in one window, and only the tab in front is `visible`; a tab
//! that chromedriver switches to is brought to the front, so reading a tab's state by
//! switching to it changes that state. Minimizing the window (WebDriver's "minimize") makes
//! every tab of it `hidden` and not focused, and they stay so while chromedriver switches
//! between them and runs scripts in them; setting the window's size brings it back. A new
//! tab opened in front (CDP `Target.createTarget`) hides the one behind it too, and CDP
//! `Emulation.setFocusEmulationEnabled` makes a page report itself focused and visible.
//! Of the tabs of a window only the first opened reports `document.hasFocus()`. Persistent
//! notifications work: with the permission granted in the profile, a service worker
//! registration's `showNotification` shows one and `getNotifications()` lists it (one per
//! `tag`), so a test can count what the page showed without replacing anything of the page.

use std::time::{Duration, Instant};

use fantoccini::Client as Browser;
use fantoccini::Locator;
use serde_json::{Value, json};

use crate::common::browser::{
    Driver, eval, eval_async, finish, finish_with_network_errors, sign_in, type_and_send, wait_for,
    wait_until_connected,
};
use crate::common::proxy::ProxyAddress;
use crate::common::{Client, Server, TestDb};

/// Waits until the sidebar entry of `room` shows `unread` unread messages and `mentions`
/// mentions (as the page keeps them, on the entry's data attributes and its badge).
async fn wait_for_counts(browser: &Browser, who: &str, room: &str, unread: u32, mentions: u32) {
    let badge = if mentions > 0 {
        format!("b && b.classList.contains('mention') && b.firstChild.textContent === '{mentions}'")
    } else if unread > 0 {
        format!("b && b.firstChild.textContent === '{unread}'")
    } else {
        "!b".to_owned()
    };
    wait_for(
        browser,
        &format!("{who} shows #{room} with {unread} unread, {mentions} mentions"),
        &format!(
            "(() => {{ const e = document.getElementById('room-{room}'); if (!e) return false; \
             const b = e.querySelector('.badge'); \
             return e.dataset.unread === '{unread}' && e.dataset.mentions === '{mentions}' && ({badge}); }})()"
        ),
    )
    .await;
}

async fn title(browser: &Browser) -> String {
    eval(browser, "return document.title;").await
}

async fn icon(browser: &Browser) -> String {
    eval(
        browser,
        "return document.querySelector('link[rel=icon]').getAttribute('href');",
    )
    .await
}

/// `PUT /api/rooms/{room}/read` as `client`.
async fn read_up_to(client: &Client, room: &str, up_to: i64) -> u16 {
    client
        .request(reqwest::Method::PUT, &format!("/api/rooms/{room}/read"))
        .json(&json!({ "up_to": up_to }))
        .send()
        .await
        .expect("PUT read")
        .status()
        .as_u16()
}

/// The room as `client` sees it in `GET /api/rooms/{room}`.
async fn room_counts(client: &Client, room: &str) -> Value {
    client.get_json(&format!("/api/rooms/{room}")).await
}

async fn click(browser: &Browser, css: &str) {
    browser.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
}

/// Opens `room` from the sidebar, as a reader does, and waits until its page is live.
async fn open_room(browser: &Browser, room: &str) {
    click(browser, &format!("#room-{room} a")).await;
    wait_for(
        browser,
        &format!("#{room} opens"),
        &format!("location.pathname === '/rooms/{room}'"),
    )
    .await;
    wait_until_connected(browser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_room_on_one_device_clears_it_on_the_others_and_one_that_was_away_catches_up() {
    let db = TestDb::new();
    let address = ProxyAddress::bind().await;
    let server = Server::start(&db, &["--public-origin", &address.base, "--keepalive", "1"]).await;
    let proxy = address.forward_to(&server.base).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    for room in ["alpha", "beta", "gamma"] {
        assert_eq!(bob.create_room(room).await.status(), 201);
    }
    bob.say("alpha", "one").await;
    bob.say("alpha", "two").await;

    // Three devices of ada's: two browsers, and a third behind a proxy that will lose its
    // connection. Each reads the counts from its page.
    let driver = Driver::start().await;
    let first = driver.browser("first").await;
    let second = driver.browser("second").await;
    let away = driver.browser("away").await;
    sign_in(&first, &server.url("/"), "ada").await;
    sign_in(&second, &server.url("/"), "ada").await;
    sign_in(&away, &proxy.url("/"), "ada").await;
    for (who, browser) in [("first", &first), ("second", &second), ("away", &away)] {
        wait_for_counts(browser, who, "alpha", 2, 0).await;
    }
    // A message that arrives counts, on every page, from the frame alone.
    bob.say("alpha", "three").await;
    for (who, browser) in [("first", &first), ("second", &second), ("away", &away)] {
        wait_for_counts(browser, who, "alpha", 3, 0).await;
        assert_eq!(title(browser).await, "(3) #general · chat", "{who}'s title");
    }
    away.execute("window.notReloaded = true;", vec![]).await.unwrap();

    // The third device goes quiet, as a laptop closed on a lost network does, and stays away
    // a while (its first tries to reconnect are refused).
    proxy.stall_open_responses();
    proxy.fail_next_events(2);

    // Reading #alpha on the first device: its cursor moves once the room is on screen, and
    // the second device clears the room within a second of that.
    open_room(&first, "alpha").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while room_counts(&ada, "alpha").await["unread"] != 0 {
        assert!(Instant::now() < deadline, "the first page never read #alpha");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let read_at = Instant::now();
    wait_for_counts(&second, "second", "alpha", 0, 0).await;
    assert!(
        read_at.elapsed() < Duration::from_secs(1),
        "the second device cleared #alpha {:?} after it was read",
        read_at.elapsed()
    );
    assert_eq!(title(&second).await, "#general · chat");

    // Reading from the API, the third session: both pages clear #beta at once.
    bob.say("beta", "for everyone").await;
    let mention = bob.say("beta", "@ada a question").await;
    wait_for_counts(&second, "second", "beta", 2, 1).await;
    wait_for_counts(&first, "first", "beta", 2, 1).await;
    assert_eq!(read_up_to(&ada, "beta", mention["id"].as_i64().unwrap()).await, 204);
    wait_for_counts(&second, "second", "beta", 0, 0).await;
    wait_for_counts(&first, "first", "beta", 0, 0).await;

    // While the third device is away, a mention in #gamma that is deleted again stops
    // counting; one that stays counts.
    let gone = bob.say("gamma", "@ada never mind").await;
    bob.say("gamma", "@ada this one stays").await;
    let deleted = bob
        .request(reqwest::Method::DELETE, &format!("/api/messages/{}", gone["id"]))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    wait_for_counts(&second, "second", "gamma", 1, 1).await;
    let api = room_counts(&ada, "gamma").await;
    assert_eq!((api["unread"].clone(), api["mentions"].clone()), (json!(1), json!(1)));

    // The third device has heard nothing of it yet (it is refused for a few seconds more).
    let stale: Value = eval(
        &away,
        "return ['alpha', 'beta'].map(r => document.getElementById('room-' + r).dataset.unread);",
    )
    .await;
    assert_eq!(stale, json!(["3", "0"]), "the third device was away");

    // Back: the replay brings everything it missed; the counts are right, without a reload.
    wait_for_counts(&away, "away", "alpha", 0, 0).await;
    wait_for_counts(&away, "away", "beta", 0, 0).await;
    wait_for_counts(&away, "away", "gamma", 1, 1).await;
    let requests = proxy.events_requests();
    assert!(
        requests.iter().filter(|r| r.status == 503).count() == 2 && requests.last().unwrap().status == 200,
        "the third device was refused while away, then let back: {requests:?}"
    );
    assert_eq!(title(&away).await, "(1) #general · chat");
    let kept: bool = eval(&away, "return window.notReloaded === true;").await;
    assert!(kept, "caught up without a reload");

    finish(first).await;
    finish(second).await;
    finish_with_network_errors(away).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mention_picked_from_the_list_is_marked_and_counted_for_the_one_named_only() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    for name in ["ada", "bob", "boris"] {
        server.user(name).await;
    }
    let dan = server.user("dan").await;
    assert_eq!(dan.create_room("random").await.status(), 201);
    let driver = Driver::start().await;
    let ada = driver.browser("ada").await;
    let bob = driver.browser("bob").await;
    let dan_page = driver.browser("dan").await;
    sign_in(&ada, &server.url("/"), "ada").await;
    for (browser, name) in [(&bob, "bob"), (&dan_page, "dan")] {
        sign_in(browser, &server.url("/"), name).await;
        browser.goto(&server.url("/rooms/random")).await.unwrap();
        wait_until_connected(browser).await;
    }

    // Ada types "@bo": the list offers bob and boris; the arrows move, Tab takes the choice.
    let content = ada.find(Locator::Id("content")).await.unwrap();
    content.send_keys("hi @bo").await.unwrap();
    wait_for(
        &ada,
        "the list offers bob and boris",
        "[...document.querySelectorAll('#mention-list [role=option]')].map(o => o.dataset.name).join() === 'bob,boris'",
    )
    .await;
    let listbox: Value = eval(
        &ada,
        "const box = document.getElementById('content'); \
         return [box.getAttribute('aria-expanded'), box.getAttribute('aria-activedescendant'), \
                 document.querySelector('#mention-list [aria-selected=true]').dataset.name];",
    )
    .await;
    assert_eq!(listbox, json!(["true", "mention-option-0", "bob"]));
    content.send_keys("\u{E015}").await.unwrap(); // ArrowDown
    wait_for(
        &ada,
        "boris is chosen",
        "document.querySelector('#mention-list [aria-selected=true]').dataset.name === 'boris'",
    )
    .await;
    content.send_keys("\u{E013}").await.unwrap(); // ArrowUp
    content.send_keys("\u{E004}").await.unwrap(); // Tab
    wait_for(
        &ada,
        "the name is put in and the list closes",
        "document.getElementById('content').value === 'hi @bob ' && document.getElementById('mention-list').hidden",
    )
    .await;
    // Escape closes the list and keeps what was typed.
    content.send_keys("@bo").await.unwrap();
    wait_for(
        &ada,
        "the list opens again",
        "!document.getElementById('mention-list').hidden",
    )
    .await;
    content.send_keys("\u{E00C}").await.unwrap(); // Escape
    wait_for(
        &ada,
        "the list closes",
        "document.getElementById('mention-list').hidden && document.getElementById('content').value === 'hi @bob @bo'",
    )
    .await;
    content.send_keys("\u{E003}\u{E003}\u{E003}look").await.unwrap(); // Backspace ×3
    content.send_keys("\u{E007}").await.unwrap(); // Enter sends
    wait_for(
        &ada,
        "the message is sent",
        "[...document.querySelectorAll('#messages .message:not(.pending) .text')].some(e => e.textContent === 'hi @bob look')",
    )
    .await;

    // Bob, in another room, counts it as a mention; dan as a message. Then one for boris,
    // and one for everyone.
    wait_for_counts(&bob, "bob", "general", 1, 1).await;
    wait_for_counts(&dan_page, "dan", "general", 1, 0).await;
    type_and_send(&ada, "@boris, just for you").await;
    wait_for_counts(&bob, "bob", "general", 2, 1).await;
    wait_for_counts(&dan_page, "dan", "general", 2, 0).await;
    type_and_send(&ada, "@here standup").await;
    wait_for_counts(&bob, "bob", "general", 3, 2).await;
    wait_for_counts(&dan_page, "dan", "general", 3, 1).await;

    // Each page marks what names its reader, and nothing else; the author's marks nothing.
    let marked = "return [...document.querySelectorAll('#messages .message')].map(m => \
                  [m.classList.contains('mentions-me'), [...m.querySelectorAll('.mention.me')].map(e => e.textContent).join()]);";
    open_room(&bob, "general").await;
    wait_for_counts(&bob, "bob", "general", 0, 0).await;
    assert_eq!(
        eval::<Value>(&bob, marked).await,
        json!([[true, "@bob"], [false, ""], [true, "@here"]])
    );
    open_room(&dan_page, "general").await;
    assert_eq!(
        eval::<Value>(&dan_page, marked).await,
        json!([[false, ""], [false, ""], [true, "@here"]])
    );
    assert_eq!(
        eval::<Value>(&ada, marked).await,
        json!([[false, ""], [false, ""], [false, ""]])
    );

    finish(ada).await;
    finish(bob).await;
    finish(dan_page).await;
}

/// The notifications the chat's service worker registration shows now, as
/// `[tag, title, url]`.
async fn notifications(browser: &Browser) -> Vec<(String, String, String)> {
    eval_async(
        browser,
        "const done = arguments[arguments.length - 1]; \
         navigator.serviceWorker.getRegistration('/').then(r => r ? r.getNotifications() : []) \
           .then(list => done(list.map(n => [n.tag, n.title, (n.data && n.data.url) || ''])), e => done(String(e)));",
    )
    .await
}

/// Waits until the browser shows `n` notifications, then a while more, and returns them: a
/// second notification for one event would have shown by then.
async fn settled_notifications(browser: &Browser, n: usize) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + crate::common::WAIT;
    loop {
        let shown = notifications(browser).await;
        if shown.len() >= n {
            break;
        }
        assert!(Instant::now() < deadline, "only {shown:?} shown, waiting for {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    notifications(browser).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mention_while_the_browser_is_hidden_shows_one_notification_across_three_tabs_and_a_muted_room_none() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    server.user("ada").await;
    let bob = server.user("bob").await;
    assert_eq!(bob.create_room("quiet").await.status(), 201);
    let driver = Driver::start().await;
    let browser = driver.browser_allowing_notifications("ada").await;
    sign_in(&browser, &server.url("/"), "ada").await;
    // Granted already: the page offers no button to ask.
    let asked: Value = eval(
        &browser,
        "return [Notification.permission, document.getElementById('notify-permission').hidden];",
    )
    .await;
    assert_eq!(asked, json!(["granted", true]));

    // Three tabs: #general twice and #quiet, which is muted from its page; the other tabs
    // hear of it at once.
    let mut tabs = vec![browser.window().await.unwrap()];
    for room in ["general", "quiet"] {
        let tab = browser.new_window(true).await.unwrap().handle;
        browser.switch_to_window(tab.clone()).await.unwrap();
        browser.goto(&server.url(&format!("/rooms/{room}"))).await.unwrap();
        wait_until_connected(&browser).await;
        tabs.push(tab);
    }
    browser
        .find(Locator::Id("notify-level"))
        .await
        .unwrap()
        .select_by_value("none")
        .await
        .unwrap();
    for tab in &tabs {
        browser.switch_to_window(tab.clone()).await.unwrap();
        wait_for(
            &browser,
            "every tab shows #quiet muted",
            "document.getElementById('room-quiet').classList.contains('muted')",
        )
        .await;
        let ready: bool = eval_async(
            &browser,
            "const done = arguments[arguments.length - 1]; navigator.serviceWorker.ready.then(() => done(true));",
        )
        .await;
        assert!(ready);
    }
    let server_side = bob.get_json("/api/rooms/quiet").await;
    assert_eq!(server_side["notify"], "mentions", "bob's level is his own");

    // The browser is minimized: every tab is hidden, none focused.
    browser.minimize_window().await.unwrap();
    for tab in &tabs {
        browser.switch_to_window(tab.clone()).await.unwrap();
        wait_for(&browser, "the tab is hidden", "document.visibilityState === 'hidden'").await;
    }

    // A mention in #general: one notification, from the tab that holds the stream, naming
    // who and where, and opening the message's own page.
    let mention = bob.say("general", "@ada are you there?").await;
    let id = mention["id"].as_i64().unwrap();
    let shown = settled_notifications(&browser, 1).await;
    assert_eq!(
        shown,
        vec![(
            format!("msg-{id}"),
            "bob in #general".to_owned(),
            format!("/rooms/general/messages/{id}")
        )]
    );
    // Every tab counted it, all the same.
    for tab in &tabs {
        browser.switch_to_window(tab.clone()).await.unwrap();
        wait_for_counts(&browser, "a tab", "general", 1, 1).await;
    }

    // A mention in the muted room shows its badge but no notification; a message that names
    // nobody in a room at the default level ("mentions and DMs") none either.
    bob.say("quiet", "@ada psst").await;
    bob.say("general", "just chatting").await;
    for tab in &tabs {
        browser.switch_to_window(tab.clone()).await.unwrap();
        wait_for_counts(&browser, "a tab", "quiet", 1, 1).await;
        wait_for_counts(&browser, "a tab", "general", 2, 1).await;
        // Muted: not in the title.
        assert_eq!(title(&browser).await.split(' ').next(), Some("(2)"));
    }
    // A direct message does.
    let (status, direct) = bob.dm(&["ada"]).await;
    assert!(status == 201 || status == 200);
    let dm = bob.say(direct["name"].as_str().unwrap(), "a word in private").await;
    let shown = settled_notifications(&browser, 2).await;
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert_eq!(shown[1].0, format!("msg-{}", dm["id"]));
    assert_eq!(shown[1].1, "bob in a direct message");

    browser.set_window_size(1200, 800).await.unwrap();
    finish(browser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_title_and_icon_follow_the_counts_and_a_room_opens_at_its_first_unread_message() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    server.user("ada").await;
    let bob = server.user("bob").await;
    assert_eq!(bob.create_room("alpha").await.status(), 201);
    let driver = Driver::start().await;
    let browser = driver.browser("ada").await;
    sign_in(&browser, &server.url("/"), "ada").await;
    assert_eq!(title(&browser).await, "#general · chat");
    let plain = icon(&browser).await;
    assert!(plain.starts_with("/static/favicon.svg"), "{plain}");

    // Read before: five messages, read by opening the room.
    for n in 0..5 {
        bob.say("alpha", &format!("old {n}")).await;
    }
    wait_for(
        &browser,
        "the title counts five",
        "document.title === '(5) #general · chat'",
    )
    .await;
    assert!(icon(&browser).await.starts_with("/static/favicon-unread.svg"));
    open_room(&browser, "alpha").await;
    wait_for(&browser, "#alpha is read", "document.title === '#alpha · chat'").await;
    assert!(icon(&browser).await.starts_with("/static/favicon.svg"));
    open_room(&browser, "general").await;

    // Then forty more, more than a screen holds; one deleted stops counting, an edit that
    // names ada makes a mention.
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(bob.say("alpha", &format!("new {n}")).await["id"].as_i64().unwrap());
    }
    wait_for(
        &browser,
        "the title counts forty",
        "document.title === '(40) #general · chat'",
    )
    .await;
    let deleted = bob
        .request(reqwest::Method::DELETE, &format!("/api/messages/{}", ids[39]))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    wait_for(
        &browser,
        "the title counts 39",
        "document.title === '(39) #general · chat'",
    )
    .await;
    let edited = bob
        .request(reqwest::Method::PATCH, &format!("/api/messages/{}", ids[38]))
        .json(&json!({"content": "new 38, @ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(edited.status(), 200);
    wait_for_counts(&browser, "ada", "alpha", 39, 1).await;

    // Opening #alpha: the line is above the first unread message, on screen; the newest
    // messages are not, so the room is read only as far as the screen shows, and what is
    // below still counts.
    open_room(&browser, "alpha").await;
    wait_for(
        &browser,
        "the line shows",
        "document.querySelector('.new-marker.since')",
    )
    .await;
    let line: Value = eval(
        &browser,
        "const line = document.querySelector('.new-marker.since'); \
         const list = document.getElementById('messages').getBoundingClientRect(); \
         const at = line.getBoundingClientRect(); \
         return [line.textContent, Number(line.nextElementSibling.dataset.id), \
                 at.top >= list.top && at.bottom <= list.bottom];",
    )
    .await;
    assert_eq!(line, json!(["New since you were here", ids[0], true]));
    let below: usize = eval(
        &browser,
        "const list = document.getElementById('messages').getBoundingClientRect(); \
         return [...document.querySelectorAll('#messages > .message[data-id]')] \
           .filter(m => m.getBoundingClientRect().top >= list.bottom).length;",
    )
    .await;
    assert!(below > 0 && below < 39, "{below} messages below the screen");
    wait_for(
        &browser,
        "the title counts what is below the screen",
        &format!("document.title === '({below}) #alpha · chat'"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        title(&browser).await,
        format!("({below}) #alpha · chat"),
        "not read further"
    );

    // Scrolling to the newest reads the room: the title and icon go back.
    click(&browser, "#jump").await;
    wait_for(&browser, "#alpha is read", "document.title === '#alpha · chat'").await;
    assert!(icon(&browser).await.starts_with("/static/favicon.svg"));
    wait_for_counts(&browser, "ada", "alpha", 0, 0).await;
    finish(browser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_room_watched_on_screen_is_read_in_a_few_writes_within_a_tight_limit() {
    let db = TestDb::new();
    // Six cursor writes a minute: a page that wrote one per message would be refused (a
    // `429`, which the page reports as an error and fails the test).
    let server = Server::start(&db, &["--read-rate", "6"]).await;
    let ada = server.user("ada").await;
    let bob = server.user("bob").await;
    let driver = Driver::start().await;
    let browser = driver.browser("ada").await;
    sign_in(&browser, &server.url("/"), "ada").await;
    let mut last = 0;
    for n in 0..40 {
        last = bob.say("general", &format!("busy {n}")).await["id"].as_i64().unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + crate::common::WAIT;
    loop {
        let general = room_counts(&ada, "general").await;
        if general["read"] == last {
            assert_eq!(general["unread"], 0);
            break;
        }
        assert!(Instant::now() < deadline, "never read to the newest: {general}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(title(&browser).await, "#general · chat");
    finish(browser).await;
}

#[tokio::test]
async fn the_manifest_and_the_service_worker_are_served_from_the_root_with_their_types() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let http = reqwest::Client::new();
    let manifest = http.get(server.url("/manifest.webmanifest")).send().await.unwrap();
    assert_eq!(manifest.status(), 200);
    assert_eq!(manifest.headers()["content-type"], "application/manifest+json");
    let manifest: Value = manifest.json().await.unwrap();
    assert_eq!(manifest["start_url"], "/");
    let mut sizes = Vec::new();
    for icon in manifest["icons"].as_array().unwrap() {
        let src = icon["src"].as_str().unwrap();
        let answer = http.get(server.url(src)).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{src}");
        assert_eq!(
            answer.headers()["content-type"],
            icon["type"].as_str().unwrap(),
            "{src}"
        );
        let body = answer.bytes().await.unwrap();
        if icon["type"] == "image/png" {
            // A PNG's header says its size: width and height at bytes 16 and 20.
            let side = |at: usize| u32::from_be_bytes(body[at..at + 4].try_into().unwrap());
            assert_eq!(format!("{}x{}", side(16), side(20)), icon["sizes"].as_str().unwrap());
        }
        sizes.push(icon["sizes"].as_str().unwrap().to_owned());
    }
    assert_eq!(sizes, ["192x192", "512x512", "any"]);
    let worker = http.get(server.url("/sw.js")).send().await.unwrap();
    assert_eq!(worker.status(), 200);
    assert_eq!(worker.headers()["content-type"], "text/javascript");
    assert_eq!(worker.headers()["cache-control"], "no-cache");
    let csp = worker.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(
        csp.contains("worker-src 'self'") && csp.contains("manifest-src 'self'"),
        "{csp}"
    );
    assert!(worker.text().await.unwrap().contains("notificationclick"));
}
