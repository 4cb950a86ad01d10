//! Meta's outbound half: `POST {base}/{version}/{phone_number_id}/messages` with
//! `{"messaging_product":"whatsapp","status":"read","message_id":…}` and the access token as a bearer.
//!
//! Marking a message read also reads the earlier ones of the conversation, so a chat's batch is one call with
//! its newest id, and that call's answer is every id's. Error answers are read by Meta's error `code`, as Meta
//! says to branch (not on titles or, alone, the HTTP status).

use serde::{Deserialize, Serialize};

use super::MetaSettings;
use crate::domain::{ChatId, MessageId, SessionName};
use crate::gateway::outbound::{
    MarkRead, SendError, SendResult, Verdict, answer, check_get, classify, http_client,
};
use crate::secret::Secret;
use reqwest::StatusCode;
use std::time::Duration;

/// Marks read through the Graph API.
#[derive(Debug, Clone)]
pub struct MetaClient {
    http: reqwest::Client,
    /// `{base_url}/{api_version}`.
    base: String,
    token: Option<Secret>,
    dry_run: bool,
}

#[derive(Serialize)]
struct ReadBody<'a> {
    messaging_product: &'static str,
    status: &'static str,
    message_id: &'a str,
}

impl MetaClient {
    pub fn new(settings: &MetaSettings) -> anyhow::Result<Self> {
        Ok(Self {
            http: http_client(settings.timeout)?,
            base: format!(
                "{}/{}",
                settings.base_url.trim_end_matches('/'),
                settings.api_version
            ),
            token: settings.access_token.clone(),
            dry_run: settings.dry_run,
        })
    }

    /// The mark-read URL of a business number.
    pub fn url(&self, phone_number_id: &SessionName) -> String {
        format!("{}/{}/messages", self.base, phone_number_id.as_str())
    }
}

#[async_trait::async_trait]
impl MarkRead for MetaClient {
    /// `GET {base}/{version}/{phone_number_id}?fields=id` with the token: reads the number, marks nothing.
    async fn check_credentials(&self, session: &SessionName) -> Verdict {
        let Some(token) = &self.token else {
            return Verdict::Refused("meta.access_token is not set".into());
        };
        let url = format!("{}/{}", self.base, session.as_str());
        let request = self
            .http
            .get(url)
            .query(&[("fields", "id")])
            .bearer_auth(token.expose());
        check_get(request, "the access token reads this phone number id").await
    }

    fn calls_for(&self, _: &SessionName, ids: usize) -> usize {
        ids.min(1)
    }

    async fn mark_read(
        &self,
        session: &SessionName,
        _chat: &ChatId,
        _phone: Option<&ChatId>,
        ids: &[MessageId],
    ) -> Vec<SendResult> {
        let Some(newest) = ids.last() else {
            return Vec::new();
        };
        if self.dry_run {
            return ids.iter().map(|_| Ok(None)).collect();
        }
        let Some(token) = &self.token else {
            let missing = SendError::NoApiKey {
                session: session.clone(),
                key: "meta.access_token",
            };
            return vec![Err(missing); ids.len()];
        };
        let body = ReadBody {
            messaging_product: "whatsapp",
            status: "read",
            message_id: newest.as_str(),
        };
        let request = self
            .http
            .post(self.url(session))
            .bearer_auth(token.expose())
            .json(&body);
        let result = answer(request, classify_meta).await;
        vec![result; ids.len()]
    }
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: GraphError,
}

#[derive(Deserialize)]
struct GraphError {
    code: Option<i64>,
}

/// Meta's error codes: any 5xx, throttling and server trouble retry; the token's trouble pauses the session;
/// parameters are permanent; a code not listed falls back to the HTTP status.
fn classify_meta(status: StatusCode, message: String, retry_after: Option<Duration>) -> SendError {
    let code = serde_json::from_str::<ErrorAnswer>(&message)
        .ok()
        .and_then(|a| a.error.code);
    let http = status.as_u16();
    if status.is_server_error() {
        return classify(status, message, retry_after);
    }
    match code {
        Some(4 | 80007 | 130429 | 131048 | 131056 | 131064 | 131000 | 131016) => {
            SendError::Retryable {
                reason: format!("HTTP {http}: {message}"),
                status: Some(http),
                retry_after,
            }
        }
        Some(0 | 3 | 10 | 190 | 200..=299) => SendError::Unauthorized {
            status: http,
            message,
        },
        Some(100 | 131008 | 131009) => SendError::Permanent {
            status: http,
            message,
        },
        _ => classify(status, message, retry_after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(http: u16, code: i64) -> SendError {
        let body = format!(
            r#"{{"error":{{"message":"m","type":"OAuthException","code":{code},"fbtrace_id":"A"}}}}"#
        );
        classify_meta(StatusCode::from_u16(http).unwrap(), body, None)
    }

    #[test]
    fn meta_error_codes_decide_over_the_http_status() {
        for code in [4, 80007, 130429, 131048, 131056, 131064, 131000, 131016] {
            assert!(
                matches!(error(400, code), SendError::Retryable { .. }),
                "{code}"
            );
        }
        for code in [0, 3, 10, 190, 200, 299] {
            assert!(
                matches!(error(400, code), SendError::Unauthorized { .. }),
                "{code}"
            );
        }
        for code in [100, 131008, 131009] {
            assert!(
                matches!(error(400, code), SendError::Permanent { .. }),
                "{code}"
            );
        }
        // Any 5xx retries, whatever its code; an unknown code, or no JSON at all: the status decides.
        assert!(matches!(error(500, 100), SendError::Retryable { .. }));
        assert!(matches!(error(503, 1), SendError::Retryable { .. }));
        assert!(matches!(error(400, 1), SendError::Permanent { .. }));
        assert!(matches!(
            classify_meta(StatusCode::BAD_GATEWAY, "<html>".into(), None),
            SendError::Retryable { .. }
        ));
    }
}
