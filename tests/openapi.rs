//! The OpenAPI document: served at `/openapi.json` without credentials, and covering every route the router
//! has (console pages and `/metrics` aside), as the router itself lists them.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use axum::routing::{get, put};
use common::{FakeWasend, Options, TestApp};
use serde_json::Value;

/// Each path of `router` with the methods it answers, read from the router's own description of itself
/// (axum's `Debug`: route ids with their allowed methods, and the path of each route id).
fn router_routes<S>(router: &axum::Router<S>) -> BTreeMap<String, BTreeSet<String>> {
    let text = format!("{router:?}");
    // The routes, not the fallback router's (whose route ids count from zero again).
    let text = text.split("fallback_router:").next().unwrap();
    let methods = regex::Regex::new(
        r#"RouteId\((\d+)\): MethodRouter\(MethodRouter \{.*?allow_header: Bytes\(b"([A-Z,]*)"\)"#,
    )
    .unwrap();
    let paths = regex::Regex::new(r#"RouteId\((\d+)\): "(/[^"]*)""#).unwrap();
    let allowed: BTreeMap<&str, BTreeSet<String>> = methods
        .captures_iter(text)
        .map(|c| {
            let list = c.get(2).unwrap().as_str().split(',');
            let methods = list.filter(|m| !m.is_empty() && *m != "HEAD");
            (
                c.get(1).unwrap().as_str(),
                methods.map(str::to_lowercase).collect(),
            )
        })
        .collect();
    let routes: BTreeMap<String, BTreeSet<String>> = paths
        .captures_iter(text)
        .map(|c| {
            let id = c.get(1).unwrap().as_str();
            let methods = allowed.get(id).cloned().unwrap_or_default();
            (c.get(2).unwrap().as_str().to_string(), methods)
        })
        .collect();
    assert!(
        routes.len() > 10 && routes.values().all(|m| !m.is_empty()),
        "the router's description changed shape: {routes:?}"
    );
    routes
}

/// `(method, path)` pairs of the router the document lacks; console pages (GET under `/ui`) and `/metrics`
/// are not part of the API.
fn undocumented<S>(router: &axum::Router<S>, document: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    for (path, methods) in router_routes(router) {
        for method in methods {
            let page = method == "get" && (path == "/ui" || path.starts_with("/ui/"));
            if page || path == "/metrics" {
                continue;
            }
            if document["paths"][&path][&method].is_null() {
                missing.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    missing
}

#[test]
fn every_route_of_the_router_is_in_the_document() {
    let router = autoseen::http::routes(true);
    let document = autoseen::http::openapi_document();

    assert_eq!(undocumented(&router, &document), Vec::<String>::new());
    assert_eq!(document["openapi"], "3.1.0");
    for path in [
        "/webhook",
        "/chats/{session}/{chat}/read",
        "/admin/pending",
        "/ui/login",
    ] {
        assert!(document["paths"][path].is_object(), "{path} is documented");
    }
}

#[test]
fn a_route_added_without_documentation_is_found() {
    let router = autoseen::http::routes(true)
        .route("/admin/purge", put(|| async {}))
        .route("/ui/secret", get(|| async {}).post(|| async {}));
    let document = autoseen::http::openapi_document();

    assert_eq!(
        undocumented(&router, &document),
        ["PUT /admin/purge", "POST /ui/secret"]
    );
}

#[test]
fn the_webhook_body_schema_comes_from_the_event_wire_types() {
    let document = autoseen::http::openapi_document();
    let schemas = &document["components"]["schemas"];
    let body = &document["paths"]["/webhook"]["post"]["requestBody"]["content"]["application/json"];

    assert_eq!(body["schema"]["$ref"], "#/components/schemas/WebhookEvent");
    let event = &schemas["WebhookEvent"]["properties"];
    for field in ["event", "session", "engine", "timestamp", "payload"] {
        assert!(event[field].is_object(), "WebhookEvent.{field}: {event}");
    }
    let message = &schemas["WireMessage"]["properties"];
    for field in ["id", "from", "fromMe", "participant", "ack", "_data"] {
        assert!(message[field].is_object(), "WireMessage.{field}: {message}");
    }
}

#[tokio::test]
async fn the_document_is_served_without_credentials() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(&fake, Options::default()).await;

    let r = app.http.get(app.url("/openapi.json")).send().await.unwrap();

    assert_eq!(r.status(), 200);
    let served: Value = r.json().await.unwrap();
    assert_eq!(served, autoseen::http::openapi_document());
}

#[tokio::test]
async fn every_route_but_the_public_ones_answers_401_without_credentials() {
    let fake = FakeWasend::start().await;
    let app = TestApp::spawn(
        &fake,
        Options::default().set("bot.token", "test-bot-token-0123456789"),
    )
    .await;
    let public = |path: &str| {
        [
            "/healthz",
            "/readyz",
            "/openapi.json",
            "/metrics",
            "/ui/login",
        ]
        .contains(&path)
            || path.starts_with("/ui/assets/")
    };
    let routes = router_routes(&autoseen::http::routes(true));

    let mut answers = BTreeMap::new();
    for (path, methods) in routes.iter().filter(|(p, _)| !public(p)) {
        let concrete = path
            .replace("{session}", "default")
            .replace("{chat}", "491511234567")
            .replace("{token}", "not-the-token");
        for method in methods {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            // A JSON body, so the webhook gets as far as its signature check.
            let r = app
                .http
                .request(method.clone(), app.url(&concrete))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            answers.insert(format!("{method} {path}"), r.status().as_u16());
        }
    }

    assert!(answers.len() >= 15, "{answers:?}");
    // Meta's handshake refuses with 403, as Meta's docs and its SDKs do; every other route with 401.
    let refusal = |route: &str| {
        if route == "GET /webhook/meta" {
            403
        } else {
            401
        }
    };
    let not_401: Vec<_> = answers
        .iter()
        .filter(|(route, s)| **s != refusal(route))
        .collect();
    assert!(
        not_401.is_empty(),
        "answered without credentials: {not_401:?}"
    );
}
