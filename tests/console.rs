//! The console over plain HTTP: it exists only with `admin.token`, serves nothing but the sign-in form
//! without a session, refuses forms without the session's CSRF token, and never shows, logs or streams a
//! message's text. (The browser tests in `browser.rs` drive the same pages in Chromium.)

mod common;

use std::time::Duration;

use common::{ADMIN_TOKEN, FakeWasend, META_NUMBER, Options, TestApp, eventually, waha_message};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;

const PAGES: [&str; 6] = [
    "/ui",
    "/ui/pending",
    "/ui/dead",
    "/ui/rules",
    "/ui/explain",
    "/ui/live",
];

/// A text no page, log line or event may ever hold.
const TEXT: &str = "PRIVATE-TEXT-7d1f-do-not-show";

/// An HTTP client of the console that does not follow redirects, with the session cookie once signed in.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.url(""),
            cookie: None,
        }
    }

    async fn signed_in(app: &TestApp) -> Self {
        let mut b = Self::new(app);
        let r = b.post("/ui/login", &[("token", ADMIN_TOKEN)]).await;
        assert_eq!(r.status(), 303, "signed in");
        let cookie = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
        b.cookie = Some(cookie.split(';').next().unwrap().to_string());
        b
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.cookie {
            Some(c) => r.header(COOKIE, c),
            None => r,
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.request(reqwest::Method::POST, path)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// The CSRF token the pages' forms carry.
    async fn csrf(&self) -> String {
        let (_, html) = self.get("/ui").await;
        let re = regex::Regex::new(r#"name="csrf" value="([0-9a-f]{64})""#).unwrap();
        re.captures(&html).expect("a form with the CSRF token")[1].to_string()
    }
}

fn hour_delay() -> Options {
    Options::default().rules("[defaults]\naction = \"seen\"\ndelay = \"1h\"\n")
}

#[tokio::test]
async fn without_an_admin_token_there_is_no_console() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default().without_admin()).await;
    let b = Browser::new(&app);

    for page in PAGES {
        assert_eq!(b.get(page).await.0, 404, "{page}");
    }
    let login = b.post("/ui/login", &[("token", ADMIN_TOKEN)]).await;
    assert_eq!(login.status(), 404);
    let body: Value = login.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn without_a_valid_session_only_the_sign_in_form_is_served() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, hour_delay()).await;
    assert_eq!(
        app.send(&waha_message("491511234567@c.us", "AAA1", "hi"))
            .await
            .0,
        200
    );
    let mut stranger = Browser::new(&app);
    stranger.cookie = Some(format!("console_session={}", "0".repeat(64)));

    for page in PAGES {
        let (status, html) = stranger.get(page).await;
        assert_eq!(status, 401, "{page}");
        assert!(html.contains(r#"action="/ui/login""#), "{page}: {html}");
        assert!(
            !html.contains("/ui/pending") && !html.contains("AAA1"),
            "{page}: {html}"
        );
    }
    let wrong = stranger.post("/ui/login", &[("token", "guess")]).await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get(SET_COOKIE).is_none());

    let b = Browser::signed_in(&app).await;
    let (status, pending) = b.get("/ui/pending").await;
    assert_eq!(status, 200);
    assert!(
        pending.contains("false_491511234567@c.us_AAA1"),
        "{pending}"
    );

    let csrf = b.csrf().await;
    let out = b.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), 303);
    assert_eq!(b.get("/ui/pending").await.0, 401, "signed out");
}

/// Signs in saying the browser came over HTTPS; answers the session cookie set.
async fn sign_in_over_tls(app: &TestApp) -> String {
    let r = Browser::new(app)
        .request(reqwest::Method::POST, "/ui/login")
        .header("x-forwarded-proto", "https")
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    r.headers()[SET_COOKIE].to_str().unwrap().to_string()
}

#[tokio::test]
async fn the_session_cookie_is_http_only_and_same_site_strict_and_secure_only_behind_a_trusted_proxy()
 {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;
    let proxied = TestApp::spawn(
        &fake,
        Options::default().set("server.trusted_proxies", "127.0.0.1"),
    )
    .await;

    let b = Browser::new(&app);
    let r = b.post("/ui/login", &[("token", ADMIN_TOKEN)]).await;
    let untrusted_claim = sign_in_over_tls(&app).await;
    let trusted_claim = sign_in_over_tls(&proxied).await;

    assert_eq!(r.headers()[LOCATION], "/ui");
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let cookie = r.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert!(!cookie.contains(ADMIN_TOKEN), "{cookie}");
    assert!(
        !untrusted_claim.contains("Secure"),
        "X-Forwarded-Proto from an untrusted peer: {untrusted_claim}"
    );
    assert!(
        trusted_claim.starts_with("__Secure-console_session=")
            && trusted_claim.contains("; Secure"),
        "{trusted_claim}"
    );
}

#[tokio::test]
async fn signing_out_clears_the_cookie_and_closes_the_sessions_live_feeds() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;
    let b = Browser::signed_in(&app).await;
    let csrf = b.csrf().await;
    let mut feeds = Vec::new();
    for _ in 0..4 {
        let feed = b
            .request(reqwest::Method::GET, "/ui/live/events")
            .send()
            .await
            .unwrap();
        assert_eq!(feed.status(), 200);
        feeds.push(feed);
    }
    let fifth = b
        .request(reqwest::Method::GET, "/ui/live/events")
        .send()
        .await
        .unwrap();

    let out = b.post("/ui/logout", &[("csrf", &csrf)]).await;
    let mut ended = Vec::new();
    for mut feed in feeds {
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(_)) = feed.chunk().await {}
        })
        .await;
        ended.push(drained.is_ok());
    }

    assert_eq!(fifth.status(), 429, "four feeds a session at most");
    assert_eq!(out.status(), 303);
    let cleared: Vec<&str> = out
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|c| c.to_str().unwrap())
        .collect();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("console_session=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    assert_eq!(ended, [true; 4], "every feed ends with the session");
}

#[tokio::test]
async fn a_state_changing_form_without_the_csrf_token_is_refused_and_changes_nothing() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, hour_delay()).await;
    let chat = "491511234567@c.us";
    assert_eq!(app.send(&waha_message(chat, "AAA1", "hi")).await.0, 200);
    let b = Browser::signed_in(&app).await;
    let send = |csrf: Option<&'static str>| {
        let mut form = vec![("session", "default"), ("chat", chat)];
        form.extend(csrf.map(|c| ("csrf", c)));
        form
    };

    let without = b.post("/ui/pending/send", &send(None)).await;
    let wrong = b.post("/ui/pending/send", &send(Some("f00d"))).await;
    let replay = b.post("/ui/dead/replay", &[]).await;
    let logout = b.post("/ui/logout", &[]).await;

    for r in [without, wrong, replay, logout] {
        assert_eq!(r.status(), 403);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "forbidden");
    }
    let (_, pending) = app.admin(reqwest::Method::GET, "/admin/pending").await;
    assert_eq!(
        pending["pending"].as_array().unwrap().len(),
        1,
        "still pending"
    );
    assert!(fake.calls().is_empty(), "nothing sent");
    assert_eq!(b.get("/ui").await.0, 200, "still signed in");

    let csrf = b.csrf().await;
    let mut form = send(None);
    form.push(("csrf", &csrf));
    let with = b.post("/ui/pending/send", &form).await;
    assert_eq!(with.status(), 303);
    fake.wait_for_calls(1, Duration::from_secs(10)).await;
}

/// Reads a server-sent event stream into `into` until dropped.
async fn read_stream(mut r: reqwest::Response, into: std::sync::Arc<std::sync::Mutex<String>>) {
    while let Ok(Some(chunk)) = r.chunk().await {
        into.lock()
            .unwrap()
            .push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn no_message_text_reaches_a_page_a_log_line_or_the_live_feed() {
    let fake = FakeWasend::start().await;
    // The rule decides by the text (so explain must use it) without quoting it.
    let rules = "[defaults]\naction = \"seen\"\ndelay = \"0s\"\n\n[[rules]]\nname = \"hold-secret\"\ntext = \"held$\"\ndelay = \"1h\"\n";
    let options = Options::default().rules(rules).set("log.level", "debug");
    let app = TestApp::spawn_process(&fake, options).await;
    let b = Browser::signed_in(&app).await;
    let stream = b
        .request(reqwest::Method::GET, "/ui/live/events")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let events = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = tokio::spawn(read_stream(stream, events.clone()));

    let held = waha_message("491511234567@c.us", "HELD1", &format!("{TEXT} held"));
    let sent = waha_message("491517654321@c.us", "SENT1", &format!("{TEXT} sent"));
    assert_eq!(app.send(&held).await.1["rule"], "hold-secret");
    assert_eq!(app.send(&sent).await.1["status"], "scheduled");
    fake.wait_for_calls(1, Duration::from_secs(10)).await;
    let csrf = b.csrf().await;
    let explained = b
        .post(
            "/ui/explain",
            &[
                ("csrf", &csrf),
                ("chat", "+49 151 1234567"),
                ("text", &format!("{TEXT} held")),
            ],
        )
        .await
        .text()
        .await
        .unwrap();
    let body = waha_message("491511234567@c.us", "EXPL1", &format!("{TEXT} held"));
    let pasted = b
        .post("/ui/explain", &[("csrf", &csrf), ("body", &body)])
        .await
        .text()
        .await
        .unwrap();

    let feed = eventually(
        Duration::from_secs(10),
        "the live feed to show the send",
        async || {
            let text = events.lock().unwrap().clone();
            text.contains(r#""what":"sent""#).then_some(text)
        },
    )
    .await;
    reader.abort();
    assert!(
        feed.contains("HELD1") && feed.contains(r#""what":"scheduled""#),
        "{feed}"
    );
    assert!(
        explained.contains("hold-secret") && pasted.contains("hold-secret"),
        "{explained}"
    );
    let mut seen = vec![
        ("live feed", feed),
        ("explain", explained),
        ("explain body", pasted),
    ];
    for page in PAGES {
        let (status, html) = b.get(page).await;
        assert_eq!(status, 200, "{page}");
        seen.push((page, html));
    }
    assert!(
        seen.iter().any(|(_, html)| html.contains("HELD1")),
        "the pending page lists it"
    );
    seen.push(("logs", app.logs().join("\n")));
    for (place, text) in &seen {
        assert!(!text.contains(TEXT), "{place} holds the message text");
    }
}

#[tokio::test]
async fn the_overview_shows_each_sessions_gateway() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(
        &fake,
        hour_delay().set(&format!("gateway.sessions.{META_NUMBER}"), "meta"),
    )
    .await;
    app.send(&waha_message("491511234567@c.us", "GW1", "hi"))
        .await;
    let b = Browser::signed_in(&app).await;

    let (_, html) = b.get("/ui").await;
    let row = |session: &str| {
        let start = html
            .find(&format!(r#"data-session="{session}""#))
            .unwrap_or_else(|| panic!("no row for {session}: {html}"));
        html[start..].split("</tr>").next().unwrap().to_string()
    };
    assert!(
        row("default").contains(r#"<td class="gateway">wasend</td>"#),
        "{}",
        row("default")
    );
    assert!(
        row(META_NUMBER).contains(r#"<td class="gateway">meta</td>"#),
        "{}",
        row(META_NUMBER)
    );
}
