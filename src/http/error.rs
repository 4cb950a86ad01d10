//! Every error answer, in one place: one type, one status per kind, one JSON shape
//! (`{"status":"error","error":<code>,"message":<sentence>}`), so the same failure gets the same answer from
//! every route (a store that cannot write is `503` with `Retry-After` for the webhook and the admin endpoints
//! alike). Handlers return `Result<_, ApiError>` and use `?` on store and rule errors.

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::gateway::Refused;
use crate::rules::RulesError;
use crate::store::StoreError;

/// How long a client is asked to wait before retrying after a store failure.
const STORE_RETRY_AFTER_SECS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong credentials. One answer for every check, so it reveals nothing about which failed.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A route that is switched off by the settings.
    #[error("{0}")]
    NotFound(&'static str),
    /// Signed in, but the request lacks what proves it came from our own page (the console's CSRF token).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The request itself is wrong; `code` is stable for machines, `message` says what to fix.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("the body did not arrive in time (server.body_timeout)")]
    Timeout,
    #[error("body is larger than the limit of {limit} bytes (server.max_body_bytes)")]
    TooLarge { limit: usize },
    #[error("send the event as JSON with `Content-Type: application/json`")]
    UnsupportedMediaType,
    /// Too many wrong credentials from this client address: every attempt waits `retry_after` seconds.
    #[error("too many failed attempts from this address; retry after {retry_after} s")]
    TooManyAttempts { retry_after: u64 },
    /// The store cannot commit now: the client should retry, and nothing was changed. The answer names the
    /// cause by its code only; the error's text goes to the log.
    #[error("the store cannot commit right now; retry later")]
    Store(#[from] StoreError),
    /// New rules were refused; the running ones stay.
    #[error("the running rules stay in force: {0}")]
    InvalidRules(#[from] RulesError),
}

impl ApiError {
    /// The answer to a failed webhook signature or token check.
    pub fn bad_credentials() -> Self {
        Self::Unauthorized("missing or invalid credentials (webhook token or signature)")
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            code: "bad_request",
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Timeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            // Retrying will not help a store that holds a row it cannot read: an operator must look.
            ApiError::Store(StoreError::Corrupt(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InvalidRules(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// The stable code in the body and in metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::BadRequest { code, .. } => code,
            ApiError::Timeout => "request_timeout",
            ApiError::TooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::TooManyAttempts { .. } => "too_many_attempts",
            ApiError::Store(e) => e.code(),
            ApiError::InvalidRules(_) => "invalid_rules",
        }
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        let code = match &refused {
            Refused::Credentials => return ApiError::bad_credentials(),
            Refused::Invalid(_) => "bad_request",
            Refused::Stale(_) => "stale_event",
            Refused::WrongGateway { .. } => "wrong_gateway",
        };
        ApiError::BadRequest {
            code,
            message: refused.to_string(),
        }
    }
}

/// `axum::extract::Query`, refusing with our JSON error answer instead of axum's plain text.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// `axum::extract::Path`, refusing with our JSON error answer instead of axum's plain text.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// Every error answer's body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub status: ErrorStatus,
    /// A stable code: `unauthorized`, `not_found`, `forbidden`, `bad_request`, `request_timeout`,
    /// `payload_too_large`, `unsupported_media_type`, `too_many_attempts`, `store_unavailable`,
    /// `store_read_only`, `store_corrupt`, `invalid_rules`; from the webhook also `stale_event` and
    /// `wrong_gateway` (the session is served by another gateway).
    pub error: &'static str,
    /// What is wrong and what to do, in a sentence.
    pub message: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ErrorStatus {
    Error,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Store(e) = &self {
            tracing::error!(error = %e, status = self.status().as_u16(), "store refused the request");
        }
        let body = ErrorBody {
            status: ErrorStatus::Error,
            error: self.code(),
            message: self.to_string(),
        };
        let mut response = (self.status(), Json(body)).into_response();
        let retry_after = match self {
            ApiError::Store(StoreError::Corrupt(_)) => None,
            ApiError::Store(_) => Some(u64::from(STORE_RETRY_AFTER_SECS)),
            ApiError::TooManyAttempts { retry_after } => Some(retry_after),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_failure_is_a_503_with_retry_after_and_only_its_code() {
        let busy = ApiError::from(StoreError::Unavailable("database is locked".into()));
        let read_only = ApiError::from(StoreError::ReadOnly(
            "attempt to write a readonly database".into(),
        ));

        assert_eq!(
            (busy.code(), read_only.code()),
            ("store_unavailable", "store_read_only")
        );
        assert!(!busy.to_string().contains("locked"), "{busy}");
        let response = busy.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
    }

    #[test]
    fn a_corrupt_store_is_a_500_without_retry_after() {
        let response = ApiError::from(StoreError::Corrupt("bad due_at".into())).into_response();

        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn each_kind_has_its_status_and_code() {
        let cases = [
            (ApiError::bad_credentials(), 401, "unauthorized"),
            (ApiError::NotFound("off"), 404, "not_found"),
            (ApiError::bad_request("x"), 400, "bad_request"),
            (ApiError::Timeout, 408, "request_timeout"),
            (
                ApiError::TooManyAttempts { retry_after: 2 },
                429,
                "too_many_attempts",
            ),
            (ApiError::TooLarge { limit: 1 }, 413, "payload_too_large"),
            (
                ApiError::UnsupportedMediaType,
                415,
                "unsupported_media_type",
            ),
            (
                ApiError::InvalidRules(RulesError(vec![])),
                422,
                "invalid_rules",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!((e.status().as_u16(), e.code()), (status, code), "{e}");
        }
    }
}
