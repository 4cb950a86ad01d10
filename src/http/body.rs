//! Reading a request body, for every route that reads one: within `server.body_timeout` (else 408) and
//! `server.max_body_bytes` (else 413), never buffering more than the limit.
//!
//! An oversized body is refused, but what the client already sends is read and dropped (up to
//! [`DRAIN_BYTES`] and [`DRAIN_TIME`]) before the answer goes out: a client that writes its whole body before
//! reading (Python's urllib, many HTTP libraries) would otherwise find the socket reset under it and never see
//! the 413. A client that asked `Expect: 100-continue` has sent nothing yet and is answered at once.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use super::{ApiError, AppState};

/// Most bytes of an oversized body read and dropped before the 413.
pub const DRAIN_BYTES: u64 = 16 * 1024 * 1024;
/// Longest time spent reading and dropping an oversized body before the 413.
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Reads a webhook's JSON body within the server's limits: 415 unless it is JSON, then as [`read`].
pub async fn read_json(
    headers: &HeaderMap,
    body: Body,
    server: &crate::settings::ServerSettings,
) -> Result<Bytes, ApiError> {
    check_content_type(headers)?;
    read(headers, body, server.max_body_bytes, server.body_timeout).await
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        });
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// Reads the whole body: 408 after `timeout`, 413 past `limit` bytes (declared or sent), 400 when the
/// connection fails mid-body.
pub async fn read(
    headers: &HeaderMap,
    mut body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let result = if declared.is_some_and(|n| n > limit as u64) {
        Err(ApiError::TooLarge { limit })
    } else {
        tokio::time::timeout(timeout, collect(&mut body, limit))
            .await
            .map_err(|_| ApiError::Timeout)?
    };
    if matches!(result, Err(ApiError::TooLarge { .. })) {
        drain(headers, declared, body).await;
    }
    result
}

/// The body's bytes, refused as soon as they pass `limit`. One frame (the common case) is not copied.
async fn collect(body: &mut Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ApiError::bad_request("could not read the request body"))?;
        if let Ok(data) = frame.into_data() {
            len += data.len();
            if len > limit {
                return Err(ApiError::TooLarge { limit });
            }
            chunks.push(data);
        }
    }
    Ok(match chunks.len() {
        1 => chunks.pop().expect("one chunk"),
        _ => chunks.concat().into(),
    })
}

/// Reads and drops what is left of a refused body, within the drain bounds.
async fn drain(headers: &HeaderMap, declared: Option<u64>, mut body: Body) {
    let waits_for_us = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if waits_for_us || declared.is_some_and(|n| n > DRAIN_BYTES) {
        return;
    }
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut dropped = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            dropped += frame.data_ref().map_or(0, |d| d.len() as u64);
            if dropped > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// A form body (`application/x-www-form-urlencoded`), read within the server's body limits.
pub struct Form<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for Form<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let server = &state.settings.server;
        let (parts, body) = request.into_parts();
        let bytes = read(
            &parts.headers,
            body,
            server.max_body_bytes,
            server.body_timeout,
        )
        .await?;
        serde_urlencoded::from_bytes(&bytes).map(Form).map_err(|e| {
            ApiError::bad_request(format!("the form is not one this route takes: {e}"))
        })
    }
}
