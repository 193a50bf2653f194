//! Private rooms and direct messages on the page, in real headless Chromium: the sidebar's
//! three lists, making a private room and adding someone, a direct message started from a
//! member's name, leaving, and a room an outsider cannot open even by its address. Every
//! test fails on any error a page reports.

use fantoccini::Locator;

use crate::common::browser::{Driver, eval, finish, page_errors, sign_in, type_and_send, wait_for};
use crate::common::{Server, TestDb};

/// The names listed in the sidebar list `list` (`rooms`, `private-rooms`, `direct-rooms`), as
/// the reader sees them: a direct room's people that are displayed, or the room's name.
async fn listed(browser: &fantoccini::Client, list: &str) -> Vec<String> {
    eval(
        browser,
        &format!(
            "return [...document.querySelectorAll('#{list} .room a')].map((a) => {{
               const people = a.querySelector('.people');
               if (!people) return a.textContent.trim();
               return [...people.querySelectorAll('.dm-person')]
                 .filter((p) => getComputedStyle(p).display !== 'none')
                 .map((p) => p.textContent)
                 .join(', ');
             }});"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_room_and_a_direct_message_made_on_the_page_stay_among_their_people() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    for name in ["ada", "bob", "cat"] {
        server.user(name).await;
    }
    let driver = Driver::start().await;
    let ada = driver.browser("ada").await;
    let bob = driver.browser("bob").await;
    let cat = driver.browser("cat").await;
    for (browser, name) in [(&ada, "ada"), (&bob, "bob"), (&cat, "cat")] {
        sign_in(browser, &server.url("/"), name).await;
    }

    // Ada makes a private room from the sidebar and lands in it, its only member.
    ada.find(Locator::Id("new-room"))
        .await
        .unwrap()
        .send_keys("plans")
        .await
        .unwrap();
    ada.find(Locator::Css(".private-choice input"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    ada.find(Locator::Css(".new-room button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &ada,
        "ada is in plans",
        "document.querySelector('.app')?.dataset.room === 'plans'",
    )
    .await;
    wait_for(
        &ada,
        "the stream is connected",
        "document.getElementById('connection')?.dataset.state === 'connected'",
    )
    .await;
    assert_eq!(listed(&ada, "private-rooms").await, ["🔒plans"]);
    assert_eq!(
        eval::<Vec<String>>(
            &ada,
            "return [...document.querySelectorAll('#members .member')].map((m) => m.dataset.user);"
        )
        .await,
        ["ada"]
    );

    // She adds bob by name: his open page lists the room at once, and her member list grows.
    ada.find(Locator::Id("add-name"))
        .await
        .unwrap()
        .send_keys("bob")
        .await
        .unwrap();
    ada.find(Locator::Css("#add-member button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &bob,
        "bob's sidebar lists plans",
        "document.getElementById('room-plans')",
    )
    .await;
    wait_for(
        &ada,
        "ada's member list shows bob",
        "document.getElementById('member-bob')",
    )
    .await;
    type_and_send(&ada, "only for us").await;

    // Cat sees none of it, and its address is no room for cat.
    assert!(listed(&cat, "private-rooms").await.is_empty());
    cat.goto(&server.url("/rooms/plans")).await.unwrap();
    let title = cat.find(Locator::Css("h1")).await.unwrap().text().await.unwrap();
    assert_eq!(title, "No such room");
    let page = cat.source().await.unwrap();
    assert!(!page.contains("only for us"));
    // The one error the browser reports so far is that answer.
    let errors = page_errors(&cat, false).await;
    assert!(
        errors.len() == 1 && errors[0].contains("/rooms/plans") && errors[0].contains("404"),
        "{errors:#?}"
    );
    cat.goto(&server.url("/rooms/general")).await.unwrap();
    wait_for(
        &cat,
        "cat is back",
        "document.getElementById('connection')?.dataset.state === 'connected'",
    )
    .await;

    // Bob opens the room, reads what was said, and starts a direct message from ada's name.
    bob.find(Locator::Css("#room-plans a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &bob,
        "bob reads plans",
        "[...document.querySelectorAll('#messages .text')].some((e) => e.textContent === 'only for us')",
    )
    .await;
    bob.find(Locator::Css("#member-ada .who"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &bob,
        "bob is in the direct room",
        "document.querySelector('.app')?.dataset.kind === 'direct'",
    )
    .await;
    wait_for(
        &bob,
        "the stream is connected",
        "document.getElementById('connection')?.dataset.state === 'connected'",
    )
    .await;
    let direct: String = eval(&bob, "return document.querySelector('.app').dataset.room;").await;
    assert_eq!(
        listed(&bob, "direct-rooms").await,
        ["ada"],
        "a direct room shows the other people"
    );
    type_and_send(&bob, "just you and me").await;
    wait_for(
        &ada,
        "ada's sidebar lists the direct room",
        &format!("document.getElementById('room-{direct}')"),
    )
    .await;
    assert_eq!(listed(&ada, "direct-rooms").await, ["bob"]);
    assert!(listed(&cat, "direct-rooms").await.is_empty());

    // Bob leaves plans from its page and lands in general, the room gone from his list.
    bob.find(Locator::Css("#room-plans a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&bob, "bob is in plans", "document.getElementById('leave')").await;
    bob.find(Locator::Id("leave")).await.unwrap().click().await.unwrap();
    wait_for(
        &bob,
        "bob is in general",
        "document.querySelector('.app')?.dataset.room === 'general'",
    )
    .await;
    assert!(listed(&bob, "private-rooms").await.is_empty());
    wait_for(
        &ada,
        "ada's member list loses bob",
        "!document.getElementById('member-bob')",
    )
    .await;

    for browser in [ada, bob, cat] {
        finish(browser).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maker_sets_the_topic_and_archives_the_room_and_open_pages_follow() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    server.user("ada").await;
    let bob_api = server.user("bob").await;
    let made = bob_api.create_room("garden").await;
    assert_eq!(made.status(), 201);
    let driver = Driver::start().await;
    let ada = driver.browser("ada").await;
    let bob = driver.browser("bob").await;
    sign_in(&ada, &server.url("/"), "ada").await;
    sign_in(&bob, &server.url("/"), "bob").await;
    for browser in [&ada, &bob] {
        browser.goto(&server.url("/rooms/garden")).await.unwrap();
        wait_for(
            browser,
            "the stream is connected",
            "document.getElementById('connection')?.dataset.state === 'connected'",
        )
        .await;
    }
    // Bob made it, so he has its settings; ada is an admin (the first account), so has she.
    bob.find(Locator::Css(".room-settings summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let topic = bob.find(Locator::Id("topic-input")).await.unwrap();
    topic.send_keys("tomatoes & <b>beans</b>").await.unwrap();
    bob.find(Locator::Css("#room-settings button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &ada,
        "ada's page shows the topic",
        "document.getElementById('topic')?.textContent === 'tomatoes & <b>beans</b>'",
    )
    .await;

    ada.find(Locator::Css(".room-settings summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    ada.find(Locator::Id("archive")).await.unwrap().click().await.unwrap();
    wait_for(
        &bob,
        "bob's message box goes when the room is archived",
        "document.getElementById('composer').hidden && document.querySelector('.archived-note')",
    )
    .await;
    let archived = bob_api.post("garden", "still open?").await;
    assert_eq!(archived.status(), 409);
    ada.find(Locator::Id("archive")).await.unwrap().click().await.unwrap();
    wait_for(
        &bob,
        "and comes back when it is not",
        "!document.getElementById('composer').hidden && !document.querySelector('.archived-note')",
    )
    .await;
    type_and_send(&bob, "open again").await;
    for browser in [ada, bob] {
        finish(browser).await;
    }
}
