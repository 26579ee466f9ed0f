//! The demo front end in a real browser: Debian's Chromium, headless,
//! driven through chromedriver, which each test starts for itself.

use std::process::Stdio;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::json;
use tempfile::TempDir;

use crate::support::keys::{FRONTEND, SCRAPER};
use crate::support::{PATIENCE, TestApp, eventually, free_port, keyed_app, settled};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// WebDriver's codes for the Tab and Enter keys.
const TAB: char = '\u{E004}';
const ENTER: char = '\u{E007}';

/// A headless Chromium with a fresh profile, and the chromedriver that runs
/// it; both end when dropped.
struct Browser {
    client: Client,
    _driver: tokio::process::Child,
    _profile: TempDir,
}

impl Browser {
    async fn start() -> Browser {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
            "the browser tests need Debian's chromium and chromium-driver: \
             apt-get install chromium chromium-driver (scripts/test does)"
        );
        let port = free_port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        eventually("chromedriver answers", || async {
            reqwest::get(format!("{url}/status")).await.is_ok()
        })
        .await;
        let profile = tempfile::tempdir().expect("a profile dir");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--window-size=412,915",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::rustls()
            .expect("a WebDriver client")
            .capabilities(capabilities)
            .connect(&url)
            .await
            .expect("a browser session");
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Opens the page and follows `customer` on a gateway without keys,
    /// where the page starts its own session.
    async fn follow(&self, app: &TestApp, customer: &str) {
        self.sign_in(app, customer, "").await;
        self.until_text("#connection", "Live").await;
    }

    /// Opens the page and types a customer and a session, with the keyboard
    /// alone: Enter sends the form.
    async fn sign_in(&self, app: &TestApp, customer: &str, session: &str) {
        self.client
            .goto(&format!("{}/", app.base))
            .await
            .expect("the page opens");
        self.client
            .find(Locator::Id("customer"))
            .await
            .expect("the customer field")
            .send_keys(&format!("{customer}{TAB}{session}{ENTER}"))
            .await
            .expect("typed");
    }

    /// Opens the link TesBack would send the customer to.
    async fn open_link(&self, app: &TestApp, session: &str) {
        self.client
            .goto(&format!("{}/#session={session}", app.base))
            .await
            .expect("the page opens");
    }

    /// The status the page gets for `path` with its own session.
    async fn fetch_as_the_page(&self, path: &str) -> u64 {
        let script = r#"const [path, done] = arguments;
            const { credential } = JSON.parse(sessionStorage.getItem("twofa-demo"));
            fetch(path, { headers: { Authorization: `Bearer ${credential}` } })
              .then((r) => done(r.status), () => done(0));"#;
        self.client
            .execute_async(script, vec![json!(path)])
            .await
            .expect("the page's fetch")
            .as_u64()
            .expect("a status")
    }

    /// The page's whole text.
    async fn page_text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .expect("a body")
            .text()
            .await
            .expect("its text")
    }

    async fn click(&self, css: &str) {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Waits until the element's text contains `text`.
    async fn until_text(&self, css: &str, text: &str) {
        eventually(&format!("{css} says {text:?}"), || async {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.is_ok_and(|t| t.contains(text)),
                Err(_) => false,
            }
        })
        .await;
    }

    /// A scraper waits on `access`; the user types `code` in its card and
    /// presses Enter. Returns the token the scraper received.
    async fn answer(&self, app: &TestApp, access: &str, code: &str) -> serde_json::Value {
        let waiter = app.spawn_wait(access, 30.0);
        app.until_waiting(1).await;
        let field = format!("{} input[name=token]", card(access));
        self.type_into(&field, &format!("{code}{ENTER}")).await;
        settled(waiter).await.body["token"].clone()
    }

    async fn close(self) {
        self.client.close().await.expect("the browser closes");
    }
}

/// A gateway, and a page following customer c1 on it.
async fn following_c1() -> (TestApp, Browser) {
    let app = TestApp::spawn().await;
    let browser = Browser::start().await;
    browser.follow(&app, "c1").await;
    (app, browser)
}

/// Posts a challenge as a scraper would; it must be taken.
async fn post(app: &TestApp, access: &str, body: serde_json::Value) {
    let posted = app.challenge_with(access, body).await;
    assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
}

/// The card of one access.
fn card(access: &str) -> String {
    format!("li.challenge[data-access=\"{access}\"]")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_typed_on_the_page_reaches_the_waiting_scraper() {
    let (app, browser) = following_c1().await;

    // The scraper posts; the page shows it without a reload.
    let posted = app
        .challenge("b1", "c1", "Type the code we sent by SMS")
        .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
    browser
        .until_text(&card("b1"), "Type the code we sent by SMS")
        .await;
    browser.until_text(&card("b1"), "expires in").await;
    // A reload keeps the customer (sessionStorage) and shows what waits.
    browser.client.refresh().await.expect("reloaded");
    browser.until_text("#connection", "Live").await;
    browser
        .until_text(&card("b1"), "Type the code we sent by SMS")
        .await;
    let input = format!("{} input[name=token]", card("b1"));
    let field = browser
        .client
        .find(Locator::Css(&input))
        .await
        .expect("a code field");
    assert_eq!(
        field.attr("inputmode").await.expect("attr").as_deref(),
        Some("numeric")
    );
    assert_eq!(
        field.attr("autocomplete").await.expect("attr").as_deref(),
        Some("one-time-code")
    );

    let waiter = app.spawn_wait("b1", 30.0);
    app.until_waiting(1).await;
    browser.type_into(&input, "482913").await;
    browser
        .click(&format!("{} button[type=submit]", card("b1")))
        .await;
    let answer = settled(waiter).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["token"], "482913");
    browser
        .until_text(&card("b1"), "sent, waiting for the bank")
        .await;

    assert_eq!(app.report("b1", "ok").await.status, StatusCode::OK);
    browser
        .until_text(&card("b1"), "accepted by the bank (ok)")
        .await;

    if let Ok(path) = std::env::var("TWOFA_SCREENSHOT") {
        app.challenge("b2", "c1", "Type the code from your card reader")
            .await;
        browser.until_text(&card("b2"), "card reader").await;
        let png = browser.client.screenshot().await.expect("a screenshot");
        std::fs::write(&path, png).expect("screenshot written");
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_code_shows_its_message_inline_and_a_good_one_goes_through() {
    let (app, browser) = following_c1().await;
    let body = json!({
        "customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "Your 6-digit code",
        "validation": "^[0-9]{6}$", "validationMessage": "The code has six digits"
    });
    post(&app, "v1", body).await;
    let input = format!("{} input[name=token]", card("v1"));
    let send = format!("{} button[type=submit]", card("v1"));
    let waiter = app.spawn_wait("v1", 30.0);
    app.until_waiting(1).await;

    browser.type_into(&input, "12ab").await;
    browser.click(&send).await;
    browser
        .until_text(&format!("{} .error", card("v1")), "The code has six digits")
        .await;
    assert_eq!(app.hash("v1").await["status"], "question_sent");

    let field = browser
        .client
        .find(Locator::Css(&input))
        .await
        .expect("the field");
    field.clear().await.expect("cleared");
    field.send_keys("654321").await.expect("typed");
    browser.click(&send).await;
    let answer = settled(waiter).await;
    assert_eq!(answer.body["token"], "654321", "{answer:?}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_choice_is_answered_with_a_radio_button() {
    let (app, browser) = following_c1().await;
    let body = json!({
        "customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "Where should we send the code?",
        "kind": "choice",
        "choices": [{"value": "sms", "label": "By SMS"}, {"value": "app", "label": "In the app"}]
    });
    post(&app, "ch1", body).await;
    let waiter = app.spawn_wait("ch1", 30.0);
    app.until_waiting(1).await;
    browser.until_text(&card("ch1"), "In the app").await;
    // The label is what a person clicks.
    let label = browser
        .client
        .find(Locator::XPath(
            "//li[@data-access='ch1']//label[text()='In the app']",
        ))
        .await
        .expect("the choice's label");
    label.click().await.expect("clicked");
    browser
        .click(&format!("{} button[type=submit]", card("ch1")))
        .await;
    let answer = settled(waiter).await;
    assert_eq!(answer.body["token"], "app", "{answer:?}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decoupled_challenge_shows_the_waiting_state_until_the_bank_approves() {
    let (app, browser) = following_c1().await;
    let body = json!({
        "customer": "c1", "finEntityName": "Real",
        "doubleAuthQuestion": "Approve the login", "kind": "decoupled"
    });
    post(&app, "dc1", body).await;
    browser
        .until_text(&card("dc1"), "Waiting for your approval in the bank's app")
        .await;
    let spinner = format!("{} .spinner", card("dc1"));
    browser
        .client
        .find(Locator::Css(&spinner))
        .await
        .expect("a spinner");
    let send = format!("{} button[type=submit]", card("dc1"));
    assert!(
        browser.client.find(Locator::Css(&send)).await.is_err(),
        "nothing to type, nothing to send"
    );
    assert_eq!(app.report("dc1", "ok").await.status, StatusCode::OK);
    browser
        .until_text(&card("dc1"), "accepted by the bank (ok)")
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expiring_challenge_counts_down_and_shows_expired() {
    let (app, browser) = following_c1().await;
    let body = json!({
        "customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "Quick!", "expiresIn": 2
    });
    post(&app, "x1", body).await;
    browser.until_text(&card("x1"), "expires in 0:0").await;
    browser.until_text(&card("x1"), "Status: expired").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_on_the_page_wakes_the_scraper_with_cancelled() {
    let (app, browser) = following_c1().await;
    assert_eq!(
        app.challenge("k1", "c1", "q").await.status,
        StatusCode::CREATED
    );
    let waiter = app.spawn_wait("k1", 30.0);
    app.until_waiting(1).await;
    browser
        .click(&format!("{} button.secondary", card("k1")))
        .await;
    let answer = settled(waiter).await;
    answer.assert_error(StatusCode::GONE, "cancelled");
    browser.until_text(&card("k1"), "Status: cancelled").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_reconnects_its_feed_after_the_gateway_restarts() {
    let redis = crate::support::start_redis();
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("an address");
    let on_port = |config: &mut twofa_bridge::config::Config| config.listen = listen;
    let mut first = TestApp::spawn_with(redis.clone(), on_port).await;
    let browser = Browser::start().await;
    browser.follow(&first, "c1").await;
    assert_eq!(
        first.challenge("r1", "c1", "before").await.status,
        StatusCode::CREATED
    );
    browser.until_text(&card("r1"), "before").await;

    first.stop().await;
    browser.until_text("#connection", "reconnecting").await;
    let second = TestApp::spawn_with(redis, on_port).await;
    browser.until_text("#connection", "Live").await;
    assert_eq!(
        second.challenge("r2", "c1", "after").await.status,
        StatusCode::CREATED
    );
    browser.until_text(&card("r2"), "after").await;
    assert_eq!(
        second.report("r1", "rejected").await.status,
        StatusCode::CONFLICT
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_keys_the_page_follows_the_session_in_its_link_and_never_sees_another_customer() {
    let mut app = keyed_app(Some(FRONTEND)).await;
    let session = app.mint("c1", None).await;
    let browser = Browser::start().await;

    // Without a session, a keyed gateway lets the page start none.
    browser.sign_in(&app, "c1", "").await;
    browser
        .until_text("#sign-in-error", "needs a session from TesBack")
        .await;

    // TesBack's link: the page follows c1, and the session leaves the
    // address bar.
    browser.open_link(&app, &session).await;
    browser.until_text("#connection", "Live").await;
    browser.until_text("#board-title", "c1").await;
    let address = browser.client.current_url().await.expect("a URL");
    assert!(!address.as_str().contains("tfs_"), "{address}");

    app.authorize(SCRAPER);
    for (access, customer, question) in [
        ("theirs", "c2", "c2's own question"),
        ("kb1", "c1", "c1's question"),
    ] {
        assert_eq!(
            app.challenge(access, customer, question).await.status,
            StatusCode::CREATED
        );
    }
    browser.until_text(&card("kb1"), "c1's question").await;
    // A reload keeps the session (sessionStorage) and shows what waits.
    browser.client.refresh().await.expect("reloaded");
    browser.until_text(&card("kb1"), "c1's question").await;
    // Keyboard only: the code field, then Enter.
    assert_eq!(browser.answer(&app, "kb1", "111222").await, "111222");
    assert!(!browser.page_text().await.contains("c2's own question"));
    // Nor could the page have asked: its own session, used from the page,
    // is refused c2's list and finds no access of c2's.
    assert_eq!(
        browser
            .fetch_as_the_page("/v1/customers/c2/challenges")
            .await,
        403
    );
    assert_eq!(browser.fetch_as_the_page("/v1/accesses/theirs").await, 404);
    assert_eq!(
        app.hash("theirs").await["status"],
        "need",
        "c2's was never shown"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_or_expired_session_says_so_and_asks_for_a_new_one() {
    let app = keyed_app(Some(FRONTEND)).await;
    let browser = Browser::start().await;
    let session = app.mint("c1", None).await;
    browser.open_link(&app, &session).await;
    browser.until_text("#connection", "Live").await;

    // TesBack revokes the customer's sessions: the feed ends, and the page
    // says why and asks for a new session.
    app.end_sessions("c1").await;
    browser
        .until_text("#sign-in-error", "Your session has ended")
        .await;
    let asks = browser
        .client
        .find(Locator::Id("session"))
        .await
        .expect("the session field");
    assert!(asks.is_displayed().await.expect("visible"));

    // A session that expires while the page is open: the same.
    let short = app.mint("c1", Some(serde_json::json!({"ttl": 5}))).await;
    browser.open_link(&app, &short).await;
    browser.until_text("#connection", "Live").await;
    browser
        .until_text("#sign-in-error", "Your session has ended")
        .await;

    // One that ended before it was opened, pasted into the page.
    browser.sign_in(&app, "", &session).await;
    browser
        .until_text("#sign-in-error", "not known, or has ended")
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_code_brings_the_new_attempt_and_an_image_shows_on_a_narrow_phone() {
    let (app, browser) = following_c1().await;
    // A 1x1 PNG, as a bank's QR code would come.
    let image = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    let body = json!({
        "customer": "c1", "finEntityName": "A bank with a rather long name, as some have",
        "doubleAuthQuestion": "Scan the picture with your card reader and type the code it shows",
        "kind": "image", "image": image, "instructions": "The reader is the small device the bank sent you"
    });
    post(&app, "im1", body.clone()).await;
    let img = format!("{} img.bank-image", card("im1"));
    eventually("the image is shown", || async {
        match browser.client.find(Locator::Css(&img)).await {
            Ok(element) => element.attr("src").await.ok().flatten().as_deref() == Some(image),
            Err(_) => false,
        }
    })
    .await;
    browser
        .until_text(
            &card("im1"),
            "The reader is the small device the bank sent you",
        )
        .await;
    browser
        .client
        .set_window_size(360, 800)
        .await
        .expect("resized");
    let width = browser
        .client
        .execute("return document.documentElement.scrollWidth", vec![])
        .await
        .expect("script");
    assert!(
        width.as_u64().is_some_and(|w| w <= 360),
        "the page is {width} px wide at 360"
    );

    assert_eq!(browser.answer(&app, "im1", "000000").await, "000000");
    assert_eq!(app.report("im1", "rejected").await.status, StatusCode::OK);
    browser
        .until_text(&card("im1"), "refused by the bank (rejected)")
        .await;
    post(&app, "im1", body).await;
    browser.until_text(&card("im1"), "Attempt 2").await;
    browser.until_text(&card("im1"), "waiting for you").await;
    browser.close().await;
}
