//! Green API's outbound half: `POST {apiUrl}/waInstance{idInstance}/readChat/{apiTokenInstance}` with
//! `{"chatId","idMessage"}`, which reads the chat up to and including that message, at most 100 per call.
//!
//! A chat's batch is one call per hundred ids, each with the newest id of its hundred; each call's answer is
//! its ids'. The token is in the path, so the URL is never logged, counted or put in an error: errors name
//! the status and the answer only. Green allows 10 readChat calls per second per instance.

use serde::Serialize;
use std::time::Duration;

use super::GreenSettings;
use crate::domain::{ChatId, MessageId, SessionName};
use crate::gateway::outbound::{
    MarkRead, SendError, SendResult, Verdict, answer, check_get, classify, http_client,
};
use reqwest::StatusCode;

/// Most messages one readChat call reads.
const MAX_PER_CALL: usize = 100;

/// Marks read through Green's readChat.
#[derive(Debug, Clone)]
pub struct GreenClient {
    http: reqwest::Client,
    settings: GreenSettings,
}

#[derive(Serialize)]
struct ReadChat<'a> {
    #[serde(rename = "chatId")]
    chat_id: &'a str,
    #[serde(rename = "idMessage")]
    id_message: &'a str,
}

impl GreenClient {
    pub fn new(settings: &GreenSettings) -> anyhow::Result<Self> {
        Ok(Self {
            http: http_client(settings.timeout)?,
            settings: settings.clone(),
        })
    }

    /// The URL of `method` for instance `session`, with its token; `None` without a token.
    fn url(&self, session: &SessionName, method: &str) -> Option<String> {
        let (base, token) = self.settings.instance(session.as_str());
        let token = token?;
        Some(format!(
            "{}/waInstance{}/{method}/{}",
            base.trim_end_matches('/'),
            session.as_str(),
            token.expose()
        ))
    }
}

#[async_trait::async_trait]
impl MarkRead for GreenClient {
    fn calls_for(&self, _: &SessionName, ids: usize) -> usize {
        ids.div_ceil(MAX_PER_CALL)
    }

    /// `getStateInstance` reads the instance's state and marks nothing.
    async fn check_credentials(&self, session: &SessionName) -> Verdict {
        match self.url(session, "getStateInstance") {
            Some(url) => {
                check_get(
                    self.http.get(url),
                    "Green knows the instance and takes the token",
                )
                .await
            }
            None => Verdict::Refused("green.api_token is not set for this instance".into()),
        }
    }

    async fn mark_read(
        &self,
        session: &SessionName,
        chat: &ChatId,
        _phone: Option<&ChatId>,
        ids: &[MessageId],
    ) -> Vec<SendResult> {
        if self.settings.dry_run {
            return ids.iter().map(|_| Ok(None)).collect();
        }
        let Some(url) = self.url(session, "readChat") else {
            let missing = SendError::NoApiKey {
                session: session.clone(),
                key: "green.api_token",
            };
            return vec![Err(missing); ids.len()];
        };
        let calls = ids.chunks(MAX_PER_CALL).map(|chunk| {
            let newest = chunk.last().expect("chunks are never empty");
            let body = ReadChat {
                chat_id: chat.as_str(),
                id_message: newest.as_str(),
            };
            let request = self.http.post(&url).json(&body);
            async move { vec![answer(request, classify_green).await; chunk.len()] }
        });
        futures_util::future::join_all(calls).await.concat()
    }
}

/// Green's documented errors: 401 and 403 are the token or the instance (pause); 466 is the plan's quota
/// (pause, said so); 429 retries after; a 400 "instance is starting or not authorized" retries, other 400s are
/// permanent; 5xx retries.
fn classify_green(status: StatusCode, message: String, retry_after: Option<Duration>) -> SendError {
    let http = status.as_u16();
    match http {
        466 => SendError::Unauthorized {
            status: http,
            message: format!("Green's quota for this instance is used up (466): {message}"),
        },
        400 if message.contains("instance is starting or not authorized") => SendError::Retryable {
            reason: format!("HTTP 400: {message}"),
            status: Some(http),
            retry_after,
        },
        _ => classify(status, message, retry_after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greens_answers_are_classified_as_documented() {
        let c = |code: u16, body: &str| {
            classify_green(StatusCode::from_u16(code).unwrap(), body.into(), None)
        };
        assert!(matches!(c(401, ""), SendError::Unauthorized { .. }));
        assert!(matches!(c(403, ""), SendError::Unauthorized { .. }));
        assert!(
            matches!(c(466, "{}"), SendError::Unauthorized { message, .. } if message.contains("quota"))
        );
        assert!(matches!(c(429, ""), SendError::Retryable { .. }));
        assert!(matches!(c(502, ""), SendError::Retryable { .. }));
        assert!(matches!(
            c(
                400,
                r#"{"message":"instance is starting or not authorized"}"#
            ),
            SendError::Retryable { .. }
        ));
        assert!(matches!(
            c(
                400,
                r#"{"message":"Validation failed. Details: 'chatId' is required"}"#
            ),
            SendError::Permanent { .. }
        ));
    }
}
