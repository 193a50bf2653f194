//! One stream per browser: many tabs of one browser share the user's stream, on plain
//! HTTP/1.1 where a browser allows six connections per host. One tab leads (Web Locks) or a
//! SharedWorker holds the stream (where Web Locks are missing: plain http on a network), and
//! every tab shows every event exactly once: leading or following, opened mid-flow, or just
//! become the leader. A stream that goes silent is reopened without a reload.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fantoccini::Client as Browser;
use fantoccini::Locator;
use fantoccini::wd::WindowHandle;
use serde_json::Value;

use crate::common::browser::{
    Driver, eval, finish, finish_with_network_errors, free_port, shown, sign_up, type_and_send, wait_for,
    wait_until_connected,
};
use crate::common::proxy::ProxyAddress;
use crate::common::{Client, Server, TestDb, WAIT};

const ROOMS: [&str; 4] = ["general", "alpha", "beta", "gamma"];

/// The tabs of one browser, each on its room.
struct Tabs {
    browser: Browser,
    tabs: Vec<(WindowHandle, String)>,
}

impl Tabs {
    /// Opens a tab on `path` and waits until it is connected.
    async fn open(&mut self, base: &str, room: &str) {
        let tab = self.browser.new_window(true).await.unwrap().handle;
        self.browser.switch_to_window(tab.clone()).await.unwrap();
        self.browser.goto(&format!("{base}/rooms/{room}")).await.unwrap();
        let n = self.tabs.len();
        wait_for(
            &self.browser,
            &format!("tab {n} is connected"),
            "document.getElementById('connection')?.dataset.state === 'connected'",
        )
        .await;
        self.tabs.push((tab, room.to_owned()));
    }

    async fn switch(&self, n: usize) -> &str {
        let (tab, room) = &self.tabs[n];
        self.browser.switch_to_window(tab.clone()).await.unwrap();
        room
    }

    /// Each tab's role in sharing the stream.
    async fn roles(&self) -> Vec<String> {
        let mut roles = Vec::new();
        for n in 0..self.tabs.len() {
            self.switch(n).await;
            roles.push(
                eval(
                    &self.browser,
                    "return document.documentElement.dataset.streamRole || '';",
                )
                .await,
            );
        }
        roles
    }

    /// Waits until every tab on `room` shows exactly `expected`, and none is still sending.
    async fn all_show(&self, room: &str, expected: &[String]) {
        let last = expected.last().cloned().unwrap_or_default();
        for n in 0..self.tabs.len() {
            if self.switch(n).await != room {
                continue;
            }
            wait_for(
                &self.browser,
                &format!("tab {n} on #{room} shows {last:?}"),
                &format!(
                    "[...document.querySelectorAll('#messages .message:not(.pending) .text')].some(e => e.textContent === {})",
                    Value::from(last.as_str())
                ),
            )
            .await;
            wait_for(
                &self.browser,
                "nothing is left sending",
                "!document.querySelector('.pending')",
            )
            .await;
            let seen = shown(&self.browser).await;
            let tail = &expected[expected.len().saturating_sub(seen.len())..];
            assert_eq!(seen, tail, "tab {n} on #{room} shows every message once, in order");
        }
    }
}

/// The texts of a room's newest messages, oldest first, as the API has them.
async fn history(api: &Client, room: &str) -> Vec<String> {
    api.history(room, "?limit=200")
        .await
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_tabs_of_one_browser_are_all_live_on_one_stream() {
    let db = TestDb::new();
    let server = Server::start(&db, &[]).await;
    let bob = server.user("bob").await;
    for room in &ROOMS[1..] {
        assert_eq!(bob.create_room(room).await.status(), 201);
    }
    let driver = Driver::start().await;
    let browser = driver.browser("ada").await;
    sign_up(&browser, &server.url("/"), "ada").await;
    let first = browser.window().await.unwrap();
    let mut tabs = Tabs {
        browser,
        tabs: vec![(first, "general".to_owned())],
    };
    for n in 1..20 {
        tabs.open(&server.base, ROOMS[n % ROOMS.len()]).await;
    }
    let roles = tabs.roles().await;
    assert_eq!(roles.iter().filter(|r| *r == "leader").count(), 1, "{roles:?}");
    assert_eq!(roles.iter().filter(|r| *r == "follower").count(), 19, "{roles:?}");
    server.wait_for_metric("chat_open_streams", 1.0).await;

    // A new room appears in every tab.
    assert_eq!(bob.create_room("delta").await.status(), 201);
    for n in 0..tabs.tabs.len() {
        tabs.switch(n).await;
        wait_for(
            &tabs.browser,
            "the new room is listed",
            "document.getElementById('room-delta') !== null",
        )
        .await;
    }

    // A message reaches every tab of its room, and every other tab marks that room.
    let mut said: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for room in ROOMS {
        let text = format!("bob in {room}");
        bob.say(room, &text).await;
        said.entry(room).or_default().push(text);
    }
    for room in ROOMS {
        tabs.all_show(room, &said[room]).await;
    }
    for n in 0..tabs.tabs.len() {
        let here = tabs.switch(n).await.to_owned();
        let marked: Vec<String> = eval(
            &tabs.browser,
            "return [...document.querySelectorAll('#rooms .room.activity')].map(e => e.dataset.room).sort();",
        )
        .await;
        let mut others: Vec<String> = ROOMS.iter().filter(|r| **r != here).map(|r| r.to_string()).collect();
        others.sort();
        assert_eq!(marked, others, "tab {n} on #{here} marks the other rooms");
    }

    // Sending works in every tab.
    for n in 0..tabs.tabs.len() {
        let room = tabs.switch(n).await.to_owned();
        let text = format!("ada from tab {n}");
        type_and_send(&tabs.browser, &text).await;
        wait_for(
            &tabs.browser,
            "the box is cleared",
            "document.getElementById('content').value === ''",
        )
        .await;
        said.entry(ROOMS.iter().find(|r| **r == room).unwrap())
            .or_default()
            .push(text);
    }
    for room in ROOMS {
        assert_eq!(history(&bob, room).await, said[room], "stored once each");
        tabs.all_show(room, &said[room]).await;
    }

    // The status switch works in every tab, and every tab shows the stored status.
    for n in 0..tabs.tabs.len() {
        tabs.switch(n).await;
        let status = if n % 2 == 0 { "away" } else { "online" };
        tabs.browser
            .find(Locator::Id("status"))
            .await
            .unwrap()
            .select_by_value(status)
            .await
            .unwrap();
        for m in [n, (n + 7) % tabs.tabs.len()] {
            tabs.switch(m).await;
            wait_for(
                &tabs.browser,
                &format!("tab {m} shows ada {status} after tab {n} chose it"),
                &format!(
                    "document.getElementById('status').value === '{status}' && \
                     document.getElementById('member-ada')?.dataset.status === '{status}'"
                ),
            )
            .await;
        }
    }

    // Room links work in every tab.
    for n in 0..tabs.tabs.len() {
        let room = tabs.switch(n).await.to_owned();
        let next = ROOMS[(ROOMS.iter().position(|r| *r == room).unwrap() + 1) % ROOMS.len()];
        tabs.browser
            .find(Locator::Css(&format!("#room-{next} a")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for(
            &tabs.browser,
            "the room opens",
            &format!("location.pathname === '/rooms/{next}'"),
        )
        .await;
        wait_until_connected(&tabs.browser).await;
        tabs.tabs[n].1 = next.to_owned();
    }
    for room in ROOMS {
        tabs.all_show(room, &said[room]).await;
    }

    // The leading tab closes while messages are posted: another takes over, and every tab
    // still shows each message once.
    let roles = tabs.roles().await;
    let leader = roles.iter().position(|r| r == "leader").expect("a leader");
    tabs.switch(leader).await;
    let poster = {
        let bob = bob.clone();
        tokio::spawn(async move {
            let mut sent = Vec::new();
            for n in 0..20 {
                let text = format!("during the handover {n}");
                bob.say("general", &text).await;
                sent.push(text);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    tabs.browser.close_window().await.unwrap();
    tabs.tabs.remove(leader);
    said.get_mut("general").unwrap().extend(poster.await.unwrap());
    let deadline = Instant::now() + WAIT;
    loop {
        let roles = tabs.roles().await;
        if roles.iter().filter(|r| *r == "leader").count() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no new leader: {roles:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for room in ROOMS {
        tabs.all_show(room, &said[room]).await;
    }

    // A tab opened while messages are being posted shows every one exactly once.
    let poster = {
        let bob = bob.clone();
        tokio::spawn(async move {
            let mut sent = Vec::new();
            for n in 0..40 {
                let text = format!("while a tab opens {n}");
                bob.say("general", &text).await;
                sent.push(text);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    tabs.open(&server.base, "general").await;
    said.get_mut("general").unwrap().extend(poster.await.unwrap());
    assert_eq!(history(&bob, "general").await, said["general"]);
    tabs.all_show("general", &said["general"]).await;

    server.wait_for_metric("chat_open_streams", 1.0).await;
    finish(tabs.browser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_plain_http_across_a_network_a_shared_worker_holds_the_one_stream() {
    let db = TestDb::new();
    // A server on the network, by name: its operator says so with --public-origin.
    let port = free_port();
    let base = format!("http://chat.test:{port}");
    let server = Server::start(&db, &["--bind", &format!("127.0.0.1:{port}"), "--public-origin", &base]).await;
    let bob = server.user("bob").await;
    let driver = Driver::start().await;
    let browser = driver.on_network("ada", "chat.test").await;
    sign_up(&browser, &format!("{base}/"), "ada").await;
    let secure: bool = eval(&browser, "return window.isSecureContext;").await;
    assert!(!secure, "http://chat.test is not a secure context: no Web Locks");
    let first = browser.window().await.unwrap();
    let mut tabs = Tabs {
        browser,
        tabs: vec![(first, "general".to_owned())],
    };
    // More tabs than a browser has connections for one host.
    for _ in 1..8 {
        tabs.open(&base, "general").await;
    }
    assert!(tabs.roles().await.iter().all(|r| r == "worker"));
    server.wait_for_metric("chat_open_streams", 1.0).await;
    let mut said = Vec::new();
    for n in 0..5 {
        let text = format!("to every tab {n}");
        bob.say("general", &text).await;
        said.push(text);
    }
    tabs.all_show("general", &said).await;
    // Tabs come and go; the worker stays while any tab is open.
    tabs.switch(0).await;
    tabs.browser.close_window().await.unwrap();
    tabs.tabs.remove(0);
    tabs.switch(0).await;
    type_and_send(&tabs.browser, "from a worker's tab").await;
    said.push("from a worker's tab".into());
    tabs.open(&base, "general").await;
    tabs.all_show("general", &said).await;
    finish(tabs.browser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_gone_silent_is_reopened_and_nothing_is_missed() {
    let db = TestDb::new();
    let keepalive = Duration::from_secs(1);
    let address = ProxyAddress::bind().await;
    let server = Server::start(&db, &["--public-origin", &address.base, "--keepalive", "1"]).await;
    let proxy = address.forward_to(&server.base).await;
    let bob = server.user("bob").await;
    let driver = Driver::start().await;
    let browser = driver.browser("ada").await;
    sign_up(&browser, &proxy.url("/"), "ada").await;
    bob.say("general", "before the silence").await;
    wait_for(
        &browser,
        "the first message shows",
        "document.querySelectorAll('#messages .message').length === 1",
    )
    .await;
    browser.execute("window.notReloaded = true;", vec![]).await.unwrap();
    let opened = proxy.events_requests().len();

    // The connection stays open but nothing more comes through: a sleeping laptop's.
    proxy.stall_open_responses();
    let silent = Instant::now();
    let mut said = vec!["before the silence".to_owned()];
    for n in 0..5 {
        let text = format!("while it was silent {n}");
        bob.say("general", &text).await;
        said.push(text);
    }
    let deadline = silent + WAIT;
    while proxy.events_requests().len() == opened {
        assert!(Instant::now() < deadline, "the silent stream was never reopened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Two intervals without a ping from the last one heard, checked every quarter interval.
    let reopened_after = silent.elapsed();
    assert!(
        reopened_after <= 2 * keepalive + keepalive / 2,
        "reopened {reopened_after:?} after the stream went silent"
    );
    let last = proxy.events_requests().pop().unwrap();
    assert!(
        last.after.is_some(),
        "the new stream resumes from the newest id: {last:?}"
    );
    wait_for(
        &browser,
        "everything said meanwhile shows",
        "document.querySelectorAll('#messages .message').length === 6",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(shown(&browser).await, said);
    let kept: bool = eval(&browser, "return window.notReloaded === true;").await;
    assert!(kept, "caught up without a reload");
    finish_with_network_errors(browser).await;
}
