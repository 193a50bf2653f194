//! A real headless Chromium, driven through chromedriver (Debian's `chromium` and
//! `chromium-driver`; `.ci/run` installs them). Every browser a test opens logs its console,
//! and `Page::finish` fails the test on any error a page or script reported.

use std::process::Stdio;
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::WAIT;

/// One chromedriver for one test; every browser it opens has its own profile (cookies).
pub struct Driver {
    _process: Child,
    url: String,
    profiles: tempfile::TempDir,
}

impl Driver {
    pub async fn start() -> Self {
        let port = free_port();
        let process = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver is installed (apt-get install chromium chromium-driver)");
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if reqwest::get(format!("{url}/status")).await.is_ok() {
                return Self {
                    _process: process,
                    url,
                    profiles: tempfile::tempdir().unwrap(),
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start");
    }

    pub async fn browser(&self, name: &str) -> Browser {
        self.browser_with(name, json!({}), &[]).await
    }

    /// A browser emulating a phone's screen (390×844 CSS pixels, touch).
    pub async fn phone(&self, name: &str) -> Browser {
        let emulation = json!({
            "mobileEmulation": {
                "deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2, "touch": true},
                "userAgent": "Mozilla/5.0 (Linux; Android 14) Mobile",
            }
        });
        self.browser_with(name, emulation, &[]).await
    }

    /// A browser whose profile has granted every site the permission to show notifications,
    /// as a person who pressed "Allow" once has: the page's own request is then answered
    /// "granted" without a prompt (which headless Chromium could not show).
    pub async fn browser_allowing_notifications(&self, name: &str) -> Browser {
        let prefs = json!({
            "prefs": { "profile.default_content_setting_values.notifications": 1 }
        });
        self.browser_with(name, prefs, &[]).await
    }

    /// A browser that takes any certificate, as one whose user accepted a self-signed one:
    /// for a server on https with a certificate the test made.
    pub async fn ignoring_certificate_errors(&self, name: &str) -> Browser {
        self.browser_with(name, json!({}), &["--ignore-certificate-errors"])
            .await
    }

    /// A browser that reaches 127.0.0.1 as `host`: a plain-http origin that is not
    /// `localhost`, so not a secure context, as a team's server on its network is.
    pub async fn on_network(&self, name: &str, host: &str) -> Browser {
        let rule = format!("--host-resolver-rules=MAP {host} 127.0.0.1");
        self.browser_with(name, json!({}), &[&rule]).await
    }

    async fn browser_with(&self, name: &str, extra_options: Value, extra_args: &[&str]) -> Browser {
        let profile = self.profiles.path().join(name);
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,800",
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend(extra_args.iter().map(|arg| arg.to_string()));
        let mut caps = json!({
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        if let Value::Object(extra) = extra_options {
            caps["goog:chromeOptions"].as_object_mut().unwrap().extend(extra);
        }
        let Value::Object(caps) = caps else { unreachable!() };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a browser session")
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver's log of every page's console since it was last read.
#[derive(Debug)]
struct ReadLog;

impl WebDriverCompatibleCommand for ReadLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({"type": "browser"}).to_string()))
    }
}

/// What pages of `browser` reported as errors: script errors, `console.error`, and, unless
/// `network_allowed` (a test that breaks the network on purpose), failed loads.
pub async fn page_errors(browser: &Browser, network_allowed: bool) -> Vec<String> {
    let log = browser.issue_cmd(ReadLog).await.expect("read the browser's log");
    log.as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["level"] == "SEVERE" || entry["level"] == "WARNING" && entry["source"] == "javascript")
        .filter(|entry| !(network_allowed && entry["source"] == "network"))
        .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Fails on any error a page reported, then closes the browser.
pub async fn finish(browser: Browser) {
    let errors = page_errors(&browser, false).await;
    assert!(errors.is_empty(), "the pages reported errors: {errors:#?}");
    browser.close().await.unwrap();
}

/// As `finish`, for a test that cuts connections on purpose: failed loads are expected then.
pub async fn finish_with_network_errors(browser: Browser) {
    let errors = page_errors(&browser, true).await;
    assert!(errors.is_empty(), "the pages reported errors: {errors:#?}");
    browser.close().await.unwrap();
}

/// Signs in to an existing account through the form at `home` (the server's or a proxy's
/// `/`) and lands in `general`.
pub async fn sign_in(browser: &Browser, home: &str, username: &str) {
    browser.goto(home).await.unwrap();
    submit_sign_in(browser, username, "correct horse battery").await;
    wait_until_connected(browser).await;
}

/// Makes the account through the sign-up form at `home` + `signup` (a server with
/// `--signup open`, the harness's default, or one with no account yet) and lands in `general`.
pub async fn sign_up(browser: &Browser, home: &str, username: &str) {
    browser.goto(&format!("{home}signup")).await.unwrap();
    submit_sign_in(browser, username, "correct horse battery").await;
    wait_until_connected(browser).await;
}

pub async fn wait_until_connected(browser: &Browser) {
    wait_for(
        browser,
        "the stream is connected",
        "document.getElementById('connection')?.dataset.state === 'connected'",
    )
    .await;
}

/// Fills in and submits the sign-in or sign-up form on the page the browser is at.
pub async fn submit_sign_in(browser: &Browser, username: &str, password: &str) {
    browser
        .find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys(username)
        .await
        .unwrap();
    browser
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    browser
        .find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Polls a JavaScript condition until it holds.
pub async fn wait_for(browser: &Browser, what: &str, condition: &str) {
    let script = format!("return !!({condition});");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // While a navigation is under way the script may fail to run: that is "not yet".
        if let Ok(value) = browser.execute(&script, vec![]).await
            && value.as_bool() == Some(true)
        {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `script` (a function body whose last argument is a callback it calls with its
/// answer) in the current tab, waiting for the answer.
pub async fn eval_async<T: serde::de::DeserializeOwned>(browser: &Browser, script: &str) -> T {
    let value = browser.execute_async(script, vec![]).await.unwrap();
    serde_json::from_value(value).unwrap()
}

/// Runs `script` (a function body that returns a value) in the current tab.
pub async fn eval<T: serde::de::DeserializeOwned>(browser: &Browser, script: &str) -> T {
    let value = browser.execute(script, vec![]).await.unwrap();
    serde_json::from_value(value).unwrap()
}

/// The texts of the messages on the page, in order (a message still being sent aside).
pub async fn shown(browser: &Browser) -> Vec<String> {
    eval(
        browser,
        "return [...document.querySelectorAll('#messages .message:not(.pending) .text')].map(e => e.textContent);",
    )
    .await
}

/// Types `text` into the message box and presses Enter.
pub async fn type_and_send(browser: &Browser, text: &str) {
    let content = browser.find(Locator::Id("content")).await.unwrap();
    content.send_keys(text).await.unwrap();
    content.send_keys("\u{E007}").await.unwrap(); // Enter
}
