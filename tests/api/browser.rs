//! The chat page in one tab of a real headless Chromium: chatting, reconnecting, history,
//! escaping, the phone layout, sign-in and sign-out. Every test fails on any error a page
//! reports (`common::browser::finish`).

use std::time::Duration;

use fantoccini::Locator;
use serde_json::json;

use crate::common::browser::{
    Driver, eval, finish, finish_with_network_errors, page_errors, shown, sign_in, sign_up, submit_sign_in,
    type_and_send, wait_for, wait_until_connected,
};
use crate::common::proxy::{EventsRequest, Proxy, ProxyAddress};
use crate::common::{Client, Server, TestDb};

/// An API client for `username`, whose account the browser made.
async fn api_user(server: &Server, username: &str) -> Client {
    server.user(username).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_chat_live_and_see_each_others_status() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let driver = Driver::start().await;
    let ada = driver.browser("ada").await;
    let bob = driver.browser("bob").await;
    sign_up(&ada, &server.url("/"), "ada").await;
    sign_up(&bob, &server.url("/"), "bob").await;

    let content = ada.find(Locator::Id("content")).await.unwrap();
    content.send_keys("hello bob").await.unwrap();
    content.send_keys("\u{E007}").await.unwrap(); // Enter
    wait_for(
        &bob,
        "bob sees ada's message",
        "[...document.querySelectorAll('#messages .text')].some(e => e.textContent === 'hello bob')",
    )
    .await;
    wait_for(
        &ada,
        "the message box cleared",
        "document.getElementById('content').value === ''",
    )
    .await;
    assert_eq!(shown(&bob).await, ["hello bob"]);
    assert_eq!(shown(&ada).await, ["hello bob"]);

    ada.find(Locator::Css("select[name=status]"))
        .await
        .unwrap()
        .select_by_value("away")
        .await
        .unwrap();
    wait_for(
        &bob,
        "bob sees ada away",
        "document.getElementById('member-ada')?.dataset.status === 'away'",
    )
    .await;

    let screenshot = ada.screenshot().await.unwrap();
    std::fs::create_dir_all("target/screenshots").unwrap();
    std::fs::write("target/screenshots/room.png", screenshot).unwrap();
    finish(ada).await;
    finish(bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_server_loses_and_doubles_nothing_on_the_open_page() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    let driver = Driver::start().await;
    let browser = driver.browser("ada").await;
    sign_up(&browser, &server.url("/"), "ada").await;
    let api = api_user(&server, "ada").await;
    api.say("general", "before the crash").await;
    wait_for(
        &browser,
        "the first message shows",
        "document.querySelectorAll('#messages .message').length === 1",
    )
    .await;
    // A marker that a reload would wipe.
    browser.execute("window.notReloaded = true;", vec![]).await.unwrap();

    server.kill().await;
    wait_for(
        &browser,
        "the page notices",
        "document.getElementById('connection').dataset.state !== 'connected'",
    )
    .await;
    let server = Server::start(&db, &["--bind", &format!("127.0.0.1:{port}")]).await;
    let api = api.against(&server);
    let mut expected = vec!["before the crash".to_owned()];
    for n in 0..5 {
        let text = format!("while away {n}");
        api.say("general", &text).await;
        expected.push(text);
    }
    wait_for(
        &browser,
        "the page reconnects and catches up",
        "document.querySelectorAll('#messages .message').length >= 6",
    )
    .await;
    api.say("general", "live again").await;
    expected.push("live again".into());
    wait_for(
        &browser,
        "live messages keep coming",
        "document.querySelectorAll('#messages .message').length >= 7",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(shown(&browser).await, expected);
    let kept = browser
        .execute("return window.notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(kept.as_bool(), Some(true), "caught up without a reload");
    finish_with_network_errors(browser).await;
}

/// Waits until the proxy has seen `n` event-stream requests.
async fn events_requests(proxy: &Proxy, n: usize) -> Vec<EventsRequest> {
    let deadline = tokio::time::Instant::now() + crate::common::WAIT;
    loop {
        let seen = proxy.events_requests();
        if seen.len() >= n {
            return seen;
        }
        assert!(tokio::time::Instant::now() < deadline, "the page opened only {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_event_source_after_a_503_resumes_from_the_newest_message_on_the_page() {
    let db = TestDb::new();
    let address = ProxyAddress::bind().await;
    let server = Server::start(&db, &["--public-origin", &address.base]).await;
    let proxy = address.forward_to(&server.base).await;
    let driver = Driver::start().await;
    let browser = driver.browser("ada").await;
    sign_up(&browser, &proxy.url("/"), "ada").await;
    let api = api_user(&server, "ada").await;
    let first = api.say("general", "before the deploy").await["id"].as_i64().unwrap();
    let mut expected = vec!["before the deploy".to_owned()];
    wait_for(
        &browser,
        "the first message shows",
        "document.querySelectorAll('#messages .message').length === 1",
    )
    .await;
    browser.execute("window.notReloaded = true;", vec![]).await.unwrap();

    // A deploy: the proxy ends the stream, and answers the browser's reconnect with 503, so
    // the SSE extension gives up on that EventSource and opens a fresh one.
    proxy.fail_next_events(1);
    proxy.cut_open_responses();
    let mut last = first;
    for n in 0..5 {
        let text = format!("during the deploy {n}");
        last = api.say("general", &text).await["id"].as_i64().unwrap();
        expected.push(text);
    }
    let seen = events_requests(&proxy, 3).await;
    let (reconnect, fresh) = (&seen[1], &seen[2]);
    assert_eq!(reconnect.status, 503);
    assert_eq!(reconnect.last_event_id.as_deref(), Some(first.to_string().as_str()));
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.last_event_id, None, "a fresh EventSource sends no Last-Event-ID");
    assert_eq!(
        fresh.after.as_deref(),
        Some(first.to_string().as_str()),
        "it resumes from the page's newest id"
    );
    wait_for(
        &browser,
        "the page catches up",
        &format!("document.getElementById('msg-{last}') !== null"),
    )
    .await;

    // A proxy that replays the stream from the start: every frame already on the page must
    // change nothing.
    proxy.rewind_next_events();
    proxy.cut_open_responses();
    let seen = events_requests(&proxy, 4).await;
    assert_eq!(seen[3].status, 200);
    api.say("general", "after the deploy").await;
    expected.push("after the deploy".into());
    wait_for(
        &browser,
        "live messages keep coming",
        &format!(
            "document.querySelectorAll('#messages .message').length >= {}",
            expected.len()
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(shown(&browser).await, expected);
    let kept = browser
        .execute("return window.notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(kept.as_bool(), Some(true), "caught up without a reload");
    finish_with_network_errors(browser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_load_older_show_every_message_once() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let api = server.user("ada").await;
    let mut expected = Vec::new();
    for n in 0..120 {
        let text = format!("message {n:03}");
        api.say("general", &text).await;
        expected.push(text);
    }
    let driver = Driver::start().await;
    let browser = driver.browser("ada").await;
    sign_in(&browser, &server.url("/"), "ada").await;
    assert_eq!(shown(&browser).await, expected[70..]);
    for loaded in [100, 120] {
        browser
            .find(Locator::Css("#older button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for(
            &browser,
            "older messages load",
            &format!("document.querySelectorAll('#messages .message').length === {loaded}"),
        )
        .await;
    }
    assert_eq!(shown(&browser).await, expected);
    let has_control = browser
        .execute("return document.getElementById('older') !== null;", vec![])
        .await
        .unwrap();
    assert_eq!(has_control.as_bool(), Some(false), "nothing older remains");

    browser.refresh().await.unwrap();
    wait_for(
        &browser,
        "reconnected after reload",
        "document.getElementById('connection')?.dataset.state === 'connected'",
    )
    .await;
    assert_eq!(shown(&browser).await, expected[70..]);
    finish(browser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_and_script_in_a_message_are_shown_as_text() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let driver = Driver::start().await;
    let browser = driver.browser("ada").await;
    let api = server.user("mallory").await;
    let hostile = "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script>\r\n<b>bold</b>";
    api.say("general", hostile).await;
    sign_up(&browser, &server.url("/"), "ada").await;
    api.say("general", hostile).await; // once in the history, once live
    wait_for(
        &browser,
        "both messages show",
        "document.querySelectorAll('#messages .message').length === 2",
    )
    .await;
    // The text as written, its line end a line break.
    let as_text = hostile.replace("\r\n", "");
    assert_eq!(shown(&browser).await, [as_text.as_str(), as_text.as_str()]);
    let breaks: Vec<u32> = eval(
        &browser,
        "return [...document.querySelectorAll('#messages .message .text')].map(e => e.querySelectorAll('br').length);",
    )
    .await;
    assert_eq!(breaks, [1, 1]);
    let pwned = browser.execute("return window.pwned === undefined && document.querySelectorAll('#messages img, #messages script, #messages b').length === 0;", vec![]).await.unwrap();
    assert_eq!(pwned.as_bool(), Some(true), "nothing ran, nothing became markup");
    finish(browser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_gets_a_readable_message() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    server.user("ada").await;
    let driver = Driver::start().await;
    let browser = driver.browser("intruder").await;
    browser.goto(&server.url("/")).await.unwrap();
    submit_sign_in(&browser, "ada", "not the password").await;
    // The click starts a navigation; wait for the page it lands on.
    let error = browser
        .wait()
        .at_most(crate::common::WAIT)
        .for_element(Locator::Css(".error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(error, "wrong name or password");
    assert_eq!(browser.current_url().await.unwrap().path(), "/");
    // And the room stays closed to this browser.
    browser.goto(&server.url("/rooms/general")).await.unwrap();
    assert_eq!(browser.current_url().await.unwrap().path(), "/");
    // The refused sign-in is answered 401: a failed load, as the browser logs it.
    finish_with_network_errors(browser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_page_fits_a_phone() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    server.user("bob").await.say("general", "hello from the desktop").await;
    let driver = Driver::start().await;
    let phone = driver.phone("ada").await;
    sign_up(&phone, &server.url("/"), "ada").await;
    let content = phone.find(Locator::Id("content")).await.unwrap();
    content.send_keys("hello from a phone").await.unwrap();
    content.send_keys("\u{E007}").await.unwrap(); // Enter
    wait_for(
        &phone,
        "the message shows",
        "document.querySelectorAll('#messages .message').length === 2",
    )
    .await;
    // Nothing sticks out sideways, and the parts a reader needs are on screen.
    let layout = phone
        .execute(
            r#"
            const inView = (el) => {
              const r = el.getBoundingClientRect();
              return r.width > 0 && r.height > 0 && r.left >= 0 && r.right <= innerWidth + 0.5
                && r.top >= 0 && r.bottom <= innerHeight + 0.5;
            };
            return {
              overflow: document.documentElement.scrollWidth > innerWidth,
              composer: inView(document.getElementById('composer')),
              message: inView(document.querySelector('#messages .message:last-child')),
              rooms: inView(document.querySelector('.rooms a[aria-current=page]')),
              members: inView(document.getElementById('member-ada')),
              status: inView(document.querySelector('select[name=status]')),
            };
            "#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        layout,
        json!({"overflow": false, "composer": true, "message": true, "rooms": true, "members": true, "status": true})
    );
    let screenshot = phone.screenshot().await.unwrap();
    std::fs::create_dir_all("target/screenshots").unwrap();
    std::fs::write("target/screenshots/phone.png", screenshot).unwrap();
    finish(phone).await;
}

/// The largest messages the server takes, each built to take up a screen (one unbroken word,
/// every line break allowed, letters carrying every combining mark allowed), stay inside their
/// share of a phone's screen; and a right-to-left override reorders nothing after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_messages_fit_a_phone_and_no_message_reorders_its_text() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let mallory = server.user("mallory").await;
    let marks = "\u{301}\u{302}\u{303}\u{304}\u{30a}\u{30b}\u{30c}\u{36f}";
    for text in [
        "W".repeat(4000),
        format!("{}x", "x\n".repeat(300)),
        format!("Z{marks}").repeat(444),
        "invoice\u{202E}fdp.exe".to_owned(),
    ] {
        mallory.say("general", &text).await;
    }
    let driver = Driver::start().await;
    let phone = driver.phone("ada").await;
    sign_up(&phone, &server.url("/"), "ada").await;
    wait_for(
        &phone,
        "every message shows",
        "document.querySelectorAll('#messages .message').length === 4",
    )
    .await;
    let layout = phone
        .execute(
            r#"
            const list = document.getElementById('messages').getBoundingClientRect();
            const texts = [...document.querySelectorAll('#messages .message .text')];
            const control = document.querySelector('#messages .bidi');
            // The letters after the override, in the order the screen shows them.
            const after = control.nextSibling;
            const at = (i) => {
              const range = document.createRange();
              range.setStart(after, i);
              range.setEnd(after, i + 1);
              return range.getBoundingClientRect().left;
            };
            return {
              overflow: document.documentElement.scrollWidth > innerWidth,
              composer: document.getElementById('composer').getBoundingClientRect().bottom <= innerHeight + 0.5,
              contained: texts.every((t) => {
                const r = t.getBoundingClientRect();
                return r.height <= 0.6 * innerHeight + 1 && r.left >= list.left - 0.5 && r.right <= list.right + 0.5;
              }),
              written_order: at(0) < at(1) && at(1) < at(2),
              labelled: getComputedStyle(control, '::before').content,
            };
            "#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        layout,
        json!({"overflow": false, "composer": true, "contained": true, "written_order": true, "labelled": "\"U+202E\""})
    );
    // The text is still the text that was sent, control and all.
    assert_eq!(shown(&phone).await[3], "invoice\u{202E}fdp.exe");
    let screenshot = phone.screenshot().await.unwrap();
    std::fs::create_dir_all("target/screenshots").unwrap();
    std::fs::write("target/screenshots/largest-messages.png", screenshot).unwrap();
    finish(phone).await;
}

/// Thousands of rooms do not make every page huge: the page lists a hundred and "more rooms"
/// brings the rest a page at a time, each room once, in order; a room made meanwhile that
/// sorts past what is shown arrives with its page, and one within it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_list_comes_a_page_at_a_time() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let maker = server.user("maker").await;
    let mut names = vec!["general".to_owned()];
    for n in 0..230 {
        let name = format!("r{n:03}");
        assert_eq!(maker.create_room(&name).await.status(), 201);
        names.push(name);
    }
    let page = maker
        .request(reqwest::Method::GET, "/rooms/general")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(page.matches(r#"class="room""#).count(), 100);
    assert!(page.len() < 40_000, "the page is {} bytes", page.len());

    let driver = Driver::start().await;
    let browser = driver.browser("ada").await;
    sign_up(&browser, &server.url("/"), "ada").await;
    let listed = "[...document.querySelectorAll('#rooms .room')].map((r) => r.dataset.room)";
    assert_eq!(
        eval::<Vec<String>>(&browser, &format!("return {listed};")).await,
        names[..100]
    );

    // Made while the page is open: `r050a` is within the page shown, `r200a` past it.
    for name in ["r050a", "r200a"] {
        maker.create_room(name).await;
        names.push(name.to_owned());
    }
    names.sort();
    wait_for(
        &browser,
        "the room within the page shows",
        "document.getElementById('room-r050a')",
    )
    .await;
    assert!(eval::<bool>(&browser, "return !document.getElementById('room-r200a');").await);

    for shown_after in [201, 233] {
        browser
            .find(Locator::Css("#more-rooms button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for(
            &browser,
            "the next page shows",
            &format!("document.querySelectorAll('#rooms .room').length === {shown_after}"),
        )
        .await;
    }
    assert_eq!(eval::<Vec<String>>(&browser, &format!("return {listed};")).await, names);
    assert!(eval::<bool>(&browser, "return !document.getElementById('more-rooms');").await);
    finish(browser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_elsewhere_sends_the_open_page_to_sign_in() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let driver = Driver::start().await;
    let browser = driver.browser("ada").await;
    sign_up(&browser, &server.url("/"), "ada").await;
    // The browser's own session, revoked from somewhere else.
    let cookie = browser.get_named_cookie("chat_session").await.unwrap();
    let mut elsewhere = server.anonymous();
    elsewhere.token = Some(cookie.value().to_owned());
    let response = elsewhere
        .request(reqwest::Method::DELETE, "/api/sessions")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    wait_for(
        &browser,
        "the page goes to sign-in",
        "location.pathname === '/' && document.getElementById('password') !== null",
    )
    .await;
    finish(browser).await;
}

/// The account page, without script: a laptop and a phone signed in as ada; the laptop lists
/// both, changes the password, and the phone's open page goes to sign-in; the old password no
/// longer signs in, the new one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_password_on_the_account_page_signs_the_other_browser_out() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let driver = Driver::start().await;
    let laptop = driver.browser("laptop").await;
    let phone = driver.phone("phone").await;
    sign_up(&laptop, &server.url("/"), "ada").await;
    sign_in(&phone, &server.url("/"), "ada").await;

    laptop
        .find(Locator::Css("a.account-link"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &laptop,
        "the account page shows both sessions",
        "document.querySelectorAll('#sessions .session').length === 2",
    )
    .await;
    assert_eq!(
        eval::<String>(&laptop, "return document.querySelector('#sessions .current').closest('.session').querySelector('.agent').textContent;").await,
        eval::<String>(&laptop, "return navigator.userAgent;").await,
        "this browser is the one marked current"
    );
    let fill = |id: &'static str, text: &'static str| {
        let laptop = &laptop;
        async move {
            laptop
                .find(Locator::Id(id))
                .await
                .unwrap()
                .send_keys(text)
                .await
                .unwrap()
        }
    };
    fill("current", "correct horse battery").await;
    fill("new", "a brand new password").await;
    laptop
        .find(Locator::Css("#password-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &laptop,
        "the page says it is done",
        "document.querySelector('.notice') !== null",
    )
    .await;
    assert_eq!(
        eval::<usize>(
            &laptop,
            "return document.querySelectorAll('#sessions .session').length;"
        )
        .await,
        1
    );
    wait_for(
        &phone,
        "the phone's page goes to sign-in",
        "location.pathname === '/' && document.getElementById('password') !== null",
    )
    .await;
    assert_eq!(
        server
            .anonymous()
            .sign_in("ada", "correct horse battery")
            .await
            .status(),
        401
    );
    assert_eq!(
        server.anonymous().sign_in("ada", "a brand new password").await.status(),
        200
    );
    finish(laptop).await;
    finish(phone).await;
}

/// The admin's page of people: ada, the first account, deactivates bob, whose open page goes
/// to sign-in at once and who cannot sign in again; she cannot demote herself, the only admin;
/// and the page is not for members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_deactivates_someone_from_the_people_page() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let driver = Driver::start().await;
    let admin = driver.browser("ada").await;
    let member = driver.browser("bob").await;
    sign_up(&admin, &server.url("/"), "ada").await;
    sign_up(&member, &server.url("/"), "bob").await;
    assert!(
        eval::<bool>(&member, "return !document.querySelector('a.admin-link');").await,
        "no link for members"
    );

    admin
        .find(Locator::Css("a.admin-link"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &admin,
        "the people page lists both",
        "document.querySelectorAll('#people .person').length === 2",
    )
    .await;
    admin
        .find(Locator::Css("#person-bob button[name=active]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &admin,
        "bob shows as deactivated",
        "document.getElementById('person-bob')?.dataset.active === 'false'",
    )
    .await;
    wait_for(
        &member,
        "bob's page goes to sign-in",
        "location.pathname === '/' && document.getElementById('password') !== null",
    )
    .await;
    assert_eq!(
        server
            .anonymous()
            .sign_in("bob", "correct horse battery")
            .await
            .status(),
        403
    );

    // The only admin cannot make herself a member: the page says why.
    admin
        .find(Locator::Css("#person-ada button[name=role]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&admin, "the refusal shows", "document.querySelector('.error') !== null").await;
    let said = eval::<String>(&admin, "return document.querySelector('.error').textContent;").await;
    assert!(said.contains("admin"), "{said}");
    assert_eq!(
        eval::<String>(&admin, "return document.getElementById('person-ada').dataset.role;").await,
        "admin"
    );

    let carol = server.user("carol").await;
    let page = carol.request(reqwest::Method::GET, "/admin").send().await.unwrap();
    assert_eq!(page.status(), 403);
    // The refused change is answered 409: a failed load, as the browser logs it.
    finish_with_network_errors(admin).await;
    finish(member).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_again_from_the_page_shows_once() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let driver = Driver::start().await;
    let browser = driver.browser("ada").await;
    sign_up(&browser, &server.url("/"), "ada").await;
    // The message sent twice with its client id, as a retry after a lost answer does.
    browser
        .execute(
            "const send = () => fetch('/api/rooms/general/messages', {method: 'POST', \
               headers: {'content-type': 'application/json'}, \
               body: JSON.stringify({content: 'only once', client_id: '3f2b8c1e-9a4d-4e7b-8c2f-1d5e6a7b8c9d'})});\
             send(); send();",
            vec![],
        )
        .await
        .unwrap();
    wait_for(
        &browser,
        "the message shows",
        "document.querySelectorAll('#messages .message').length >= 1",
    )
    .await;
    api_user(&server, "ada").await.say("general", "and the next").await;
    wait_for(
        &browser,
        "the next message shows",
        "[...document.querySelectorAll('#messages .text')].some(e => e.textContent === 'and the next')",
    )
    .await;
    assert_eq!(shown(&browser).await, ["only once", "and the next"]);
    finish(browser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_in_flight_shows_as_sending_and_what_is_typed_meanwhile_stays() {
    let db = TestDb::new();
    let address = ProxyAddress::bind().await;
    let server = Server::start(&db, &["--public-origin", &address.base]).await;
    let proxy = address.forward_to(&server.base).await;
    let driver = Driver::start().await;
    let browser = driver.browser("ada").await;
    sign_up(&browser, &proxy.url("/"), "ada").await;
    proxy.hold_posts();
    type_and_send(&browser, "first").await;
    wait_for(
        &browser,
        "the message shows as sending",
        "document.querySelector('#messages .pending .sending')?.textContent === 'sending…' && \
         document.querySelector('#messages .pending .text').textContent === 'first'",
    )
    .await;
    let content = browser.find(Locator::Id("content")).await.unwrap();
    content.send_keys("second, not yet sent").await.unwrap();
    proxy.release_posts();
    wait_for(
        &browser,
        "the message is sent",
        "!document.querySelector('#messages .pending')",
    )
    .await;
    assert_eq!(shown(&browser).await, ["first"]);
    let kept: String = eval(&browser, "return document.getElementById('content').value;").await;
    assert_eq!(kept, "second, not yet sent", "what was typed meanwhile is not cleared");
    finish(browser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_cannot_reach_the_server_is_kept_and_the_notice_goes_when_it_is_back() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    let driver = Driver::start().await;
    let browser = driver.browser("ada").await;
    sign_up(&browser, &server.url("/"), "ada").await;
    server.kill().await;
    type_and_send(&browser, "said while it was down").await;
    wait_for(
        &browser,
        "the page says it cannot reach the server",
        "!document.getElementById('notice').hidden && \
         document.getElementById('notice').textContent.includes('Cannot reach the server')",
    )
    .await;
    let kept: String = eval(&browser, "return document.getElementById('content').value;").await;
    assert_eq!(kept, "said while it was down", "the text is back in the box");
    let server = Server::start(&db, &["--bind", &format!("127.0.0.1:{port}")]).await;
    wait_until_connected(&browser).await;
    wait_for(
        &browser,
        "the stale notice is gone",
        "document.getElementById('notice').hidden",
    )
    .await;
    type_and_send(&browser, "").await;
    wait_for(
        &browser,
        "the message is sent",
        "document.querySelectorAll('#messages .message:not(.pending)').length === 1",
    )
    .await;
    assert_eq!(shown(&browser).await, ["said while it was down"]);
    let stored = server.user("bob").await.history("general", "").await;
    assert_eq!(stored.len(), 1, "stored once");
    finish_with_network_errors(browser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appearing_offline_sticks_and_away_comes_back_away() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let bob = server.user("bob").await;
    assert_eq!(bob.create_room("rust").await.status(), 201);
    let driver = Driver::start().await;
    let browser = driver.browser("ada").await;
    sign_up(&browser, &server.url("/"), "ada").await;
    let shows = |status: &str| {
        format!(
            "document.getElementById('status').value === '{status}' && \
             document.getElementById('member-ada')?.dataset.status === '{status}'"
        )
    };
    browser
        .find(Locator::Id("status"))
        .await
        .unwrap()
        .select_by_value("offline")
        .await
        .unwrap();
    wait_for(&browser, "ada appears offline", &shows("offline")).await;
    let mut watcher = bob.open_stream("general", "", None).await;
    // To another room and back: a page, and its stream, anew each time.
    for room in ["rust", "general"] {
        browser
            .find(Locator::Css(&format!("#room-{room} a")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for(
            &browser,
            "the room opens",
            &format!("location.pathname === '/rooms/{room}'"),
        )
        .await;
        wait_until_connected(&browser).await;
        wait_for(&browser, "ada still appears offline", &shows("offline")).await;
    }
    // Past the grace of the streams the room switches closed: nothing about ada was stored.
    let seen = watcher.collect_for(Duration::from_millis(1500)).await;
    assert!(
        !seen
            .iter()
            .any(|event| event.event == "status" && event.data.contains(r#""username":"ada""#)),
        "nothing turned ada online: {seen:?}"
    );

    browser
        .find(Locator::Id("status"))
        .await
        .unwrap()
        .select_by_value("away")
        .await
        .unwrap();
    wait_for(&browser, "ada is away", &shows("away")).await;
    // Gone: every stream of hers closed, so after the grace she is offline.
    browser.goto("about:blank").await.unwrap();
    loop {
        let (_, status) = watcher.expect_json().await;
        if status["username"] == "ada" && status["status"] == "offline" {
            break;
        }
    }
    browser.goto(&server.url("/rooms/general")).await.unwrap();
    wait_until_connected(&browser).await;
    wait_for(&browser, "ada comes back away", &shows("away")).await;
    finish(browser).await;
}

/// A new server, end to end in the browser: the first visit gets the first-run screen, which
/// makes the admin; the admin page makes an invite; a second browser opens its link, joins,
/// and lands in the chat; the two talk in a direct message; the admin makes a private room
/// for both, which a third person, invited later, cannot see, even by typing its address. No
/// page reports an error but that `404`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_an_invite_a_direct_message_and_a_private_room_a_third_person_cannot_see() {
    let db = TestDb::new();
    let server = Server::start(&db, &["--signup", "invite"]).await;
    let driver = Driver::start().await;
    let admin = driver.browser("ada").await;
    admin.goto(&server.url("/")).await.unwrap();
    let screen: String = eval(&admin, "return document.getElementById('signup-form').dataset.form;").await;
    assert_eq!(screen, "first-run");
    submit_sign_in(&admin, "ada", "correct horse battery").await;
    wait_until_connected(&admin).await;
    assert_eq!(
        api_user(&server, "ada").await.get_json("/api/me").await["role"],
        "admin"
    );

    // The admin page: make an invite for one person, lasting a day.
    admin
        .find(Locator::Css("a.admin-link"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &admin,
        "the admin page",
        "document.getElementById('invite-form') !== null",
    )
    .await;
    let uses = admin.find(Locator::Id("uses")).await.unwrap();
    uses.clear().await.unwrap();
    uses.send_keys("1").await.unwrap();
    let hours = admin.find(Locator::Id("expires_in_hours")).await.unwrap();
    hours.clear().await.unwrap();
    hours.send_keys("24").await.unwrap();
    admin
        .find(Locator::Css("#invite-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &admin,
        "the invite is listed with its link and a copy button",
        "document.querySelectorAll('#invites .invite').length === 1 \
         && !document.querySelector('#invites button.copy').hidden",
    )
    .await;
    let link: String = eval(&admin, "return document.querySelector('#invites .invite-url').value;").await;
    assert!(link.starts_with(&format!("{}/join/", server.base)), "{link}");

    // A second browser opens the link and joins.
    let newcomer = driver.browser("bob").await;
    newcomer.goto(&link).await.unwrap();
    let screen: String = eval(&newcomer, "return document.getElementById('signup-form').dataset.form;").await;
    assert_eq!(screen, "join");
    submit_sign_in(&newcomer, "bob", "correct horse battery").await;
    wait_until_connected(&newcomer).await;
    assert_eq!(newcomer.current_url().await.unwrap().path(), "/rooms/general");
    type_and_send(&newcomer, "hello, I was invited").await;
    wait_for(
        &newcomer,
        "bob's message shows",
        "[...document.querySelectorAll('#messages .message .text')].some(e => e.textContent === 'hello, I was invited')",
    )
    .await;

    // The invite is used up: the admin page lists none, and its link says so.
    admin.refresh().await.unwrap();
    wait_for(
        &admin,
        "no live invites",
        "document.getElementById('no-invites') !== null",
    )
    .await;
    let bob = api_user(&server, "bob").await;
    assert_eq!(bob.get_json("/api/me").await["role"], "member");
    let page = reqwest::get(&link).await.unwrap();
    assert_eq!(page.status(), 410);

    // Bob starts a direct message from ada's name; it shows on both pages as the other one.
    newcomer
        .find(Locator::Css("#member-ada .who"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &newcomer,
        "bob is in the direct room",
        "document.querySelector('.app')?.dataset.kind === 'direct'",
    )
    .await;
    wait_until_connected(&newcomer).await;
    type_and_send(&newcomer, "a word in private").await;
    let direct: String = eval(&newcomer, "return document.querySelector('.app').dataset.room;").await;
    admin.goto(&server.url("/rooms/general")).await.unwrap();
    wait_until_connected(&admin).await;
    admin
        .find(Locator::Css(&format!("#room-{direct} a")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &admin,
        "ada reads bob's direct message",
        "[...document.querySelectorAll('#messages .text')].some(e => e.textContent === 'a word in private')",
    )
    .await;
    let title: String = eval(&admin, "return document.getElementById('room-title').innerText;").await;
    assert_eq!(title, "bob");

    // Ada makes a private room and adds bob; cat, invited later, cannot see it, even by its
    // address.
    admin
        .find(Locator::Id("new-room"))
        .await
        .unwrap()
        .send_keys("board")
        .await
        .unwrap();
    admin
        .find(Locator::Css(".private-choice input"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    admin
        .find(Locator::Css(".new-room button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&admin, "ada is in board", "document.getElementById('add-member')").await;
    wait_until_connected(&admin).await;
    admin
        .find(Locator::Id("add-name"))
        .await
        .unwrap()
        .send_keys("bob")
        .await
        .unwrap();
    admin
        .find(Locator::Css("#add-member button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &newcomer,
        "bob's sidebar lists board",
        "document.getElementById('room-board')",
    )
    .await;
    type_and_send(&admin, "board business").await;

    let invite = api_user(&server, "ada")
        .await
        .request(reqwest::Method::POST, "/api/invites")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let third = driver.browser("cat").await;
    third.goto(invite["url"].as_str().unwrap()).await.unwrap();
    submit_sign_in(&third, "cat", "correct horse battery").await;
    wait_until_connected(&third).await;
    let private_rooms: usize = eval(
        &third,
        "return document.querySelectorAll('#private-rooms .room, #direct-rooms .room').length;",
    )
    .await;
    assert_eq!(private_rooms, 0);
    third.goto(&server.url("/rooms/board")).await.unwrap();
    let heading = third.find(Locator::Css("h1")).await.unwrap().text().await.unwrap();
    assert_eq!(heading, "No such room");
    assert!(!third.source().await.unwrap().contains("board business"));
    let errors = page_errors(&third, false).await;
    assert!(
        errors.len() == 1 && errors[0].contains("/rooms/board") && errors[0].contains("404"),
        "the one error is that answer: {errors:#?}"
    );

    finish(admin).await;
    finish(newcomer).await;
    finish(third).await;
}
