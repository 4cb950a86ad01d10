//! The Wasend/WAHA gateway's outbound half: sendSeen in Wasend's shape or WAHA's.
//!
//! The scheduler hands over a chat's batch ([`MarkRead`]). Wasend's API (`POST /sendSeen`, bearer key) marks one
//! message per call, so the client makes one call per message of the batch, concurrently; WAHA's own API
//! (`POST /api/sendSeen`, `X-Api-Key`) takes up to 100 message ids of one chat per call. It makes a single attempt of each and
//! classifies the result; retrying, backing off and pacing are the
//! scheduler's job, because retries must survive restarts. Error bodies are read only up to a few KiB, so a
//! misbehaving upstream cannot make us buffer megabytes. One connection pool serves every session.

use std::collections::HashMap;

use serde::Serialize;

use super::config::{Flavor, WasendSettings, origin};
use crate::domain::{ChatId, MessageId, SessionName};
use crate::gateway::outbound::{
    MarkRead, SendError, SendResult, Verdict, answer, check_get, classify, http_client,
};
use crate::secret::Secret;

#[derive(Debug, Clone)]
struct Endpoint {
    url: String,
    api_key: Option<Secret>,
    flavor: Flavor,
}

/// Most message ids WAHA takes in one sendSeen call.
const WAHA_MAX_IDS: usize = 100;

/// Calls sendSeen for any session, with that session's base URL, key and flavor.
#[derive(Debug, Clone)]
pub struct WasendClient {
    http: reqwest::Client,
    default: Endpoint,
    sessions: HashMap<String, Endpoint>,
    dry_run: bool,
}

/// Wasend's body: one message.
#[derive(Serialize)]
struct WasendBody<'a> {
    session: &'a str,
    to: &'a str,
    #[serde(rename = "messageId")]
    message_id: &'a str,
}

/// WAHA's body: several messages of one chat, and the group sender when they share one.
#[derive(Serialize)]
struct WahaBody<'a> {
    session: &'a str,
    #[serde(rename = "chatId")]
    chat_id: &'a str,
    #[serde(rename = "messageIds")]
    message_ids: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    participant: Option<ChatId>,
}

fn send_seen_url(flavor: Flavor, base: &str) -> String {
    let base = base.trim_end_matches('/');
    match flavor {
        Flavor::Wasend => format!("{base}/sendSeen"),
        Flavor::Waha => format!("{base}/api/sendSeen"),
    }
}

impl WasendClient {
    pub fn new(settings: &WasendSettings) -> anyhow::Result<Self> {
        let http = http_client(settings.timeout)?;
        let default = Endpoint {
            url: send_seen_url(settings.flavor, &settings.base_url),
            api_key: settings.api_key.clone(),
            flavor: settings.flavor,
        };
        let sessions = settings
            .sessions
            .iter()
            .map(|(name, o)| {
                let flavor = o.flavor.unwrap_or(settings.flavor);
                let base = o.base_url.as_deref().unwrap_or(&settings.base_url);
                // The default key goes only to the default's server (`check` refuses an override elsewhere
                // without a key of its own).
                let same_server = origin(base) == origin(&settings.base_url);
                let endpoint = Endpoint {
                    url: send_seen_url(flavor, base),
                    api_key: o
                        .api_key
                        .clone()
                        .or_else(|| default.api_key.clone().filter(|_| same_server)),
                    flavor,
                };
                (name.clone(), endpoint)
            })
            .collect();
        Ok(Self {
            http,
            default,
            sessions,
            dry_run: settings.dry_run,
        })
    }

    fn endpoint(&self, session: &SessionName) -> &Endpoint {
        self.sessions.get(session.as_str()).unwrap_or(&self.default)
    }

    /// One Wasend call for one message.
    async fn send_one(
        &self,
        endpoint: &Endpoint,
        session: &SessionName,
        chat: &ChatId,
        message_id: &MessageId,
    ) -> SendResult {
        let Some(key) = &endpoint.api_key else {
            return Err(SendError::NoApiKey {
                session: session.clone(),
                key: "wasend.api_key",
            });
        };
        let body = WasendBody {
            session: session.as_str(),
            to: chat.as_str(),
            message_id: message_id.as_str(),
        };
        let request = self
            .http
            .post(&endpoint.url)
            .bearer_auth(key.expose())
            .json(&body);
        answer(request, classify).await
    }

    /// One WAHA call for up to [`WAHA_MAX_IDS`] messages of one chat.
    async fn send_chunk(
        &self,
        endpoint: &Endpoint,
        session: &SessionName,
        chat: &ChatId,
        ids: &[MessageId],
    ) -> SendResult {
        let senders: Vec<Option<ChatId>> = ids
            .iter()
            .map(|id| id.parts().and_then(|p| p.participant))
            .collect();
        let participant = match senders.split_first() {
            Some((first @ Some(_), rest)) if rest.iter().all(|s| s == first) => first.clone(),
            _ => None,
        };
        let body = WahaBody {
            session: session.as_str(),
            chat_id: chat.as_str(),
            message_ids: ids.iter().map(MessageId::as_str).collect(),
            participant,
        };
        let mut request = self.http.post(&endpoint.url).json(&body);
        if let Some(key) = &endpoint.api_key {
            request = request.header("X-Api-Key", key.expose());
        }
        answer(request, classify).await
    }
}

#[async_trait::async_trait]
impl MarkRead for WasendClient {
    /// WAHA: `GET {base_url}/api/sessions/{session}` with the key, which reads the session and marks nothing.
    /// Wasend's hosted API has no such call: the first sendSeen tells (a 401 pauses the session).
    async fn check_credentials(&self, session: &SessionName) -> Verdict {
        let endpoint = self.endpoint(session);
        if endpoint.flavor == Flavor::Wasend {
            return Verdict::NotOffered(
                "Wasend's API has no call that checks a key without marking a message; the first sendSeen \
                 tells (a 401 pauses the session and is logged)"
                    .into(),
            );
        }
        let root = endpoint.url.trim_end_matches("/api/sendSeen");
        let mut request = self
            .http
            .get(format!("{root}/api/sessions/{}", session.as_str()));
        if let Some(key) = &endpoint.api_key {
            request = request.header("X-Api-Key", key.expose());
        }
        check_get(request, "WAHA knows the session and takes the key").await
    }

    fn calls_for(&self, session: &SessionName, ids: usize) -> usize {
        match self.endpoint(session).flavor {
            Flavor::Wasend => ids,
            Flavor::Waha => ids.div_ceil(WAHA_MAX_IDS),
        }
    }

    async fn mark_read(
        &self,
        session: &SessionName,
        chat: &ChatId,
        _phone: Option<&ChatId>,
        ids: &[MessageId],
    ) -> Vec<SendResult> {
        if self.dry_run {
            return ids.iter().map(|_| Ok(None)).collect();
        }
        let endpoint = self.endpoint(session);
        match endpoint.flavor {
            Flavor::Wasend => {
                let calls = ids
                    .iter()
                    .map(|id| self.send_one(endpoint, session, chat, id));
                futures_util::future::join_all(calls).await
            }
            Flavor::Waha => {
                let chunks = ids.chunks(WAHA_MAX_IDS);
                let calls = chunks.map(|chunk| async move {
                    let result = self.send_chunk(endpoint, session, chat, chunk).await;
                    vec![result; chunk.len()]
                });
                futures_util::future::join_all(calls).await.concat()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_get_their_flavors_path_appended_once() {
        let url = send_seen_url;
        assert_eq!(
            url(Flavor::Wasend, "https://api.wasend.dev"),
            "https://api.wasend.dev/sendSeen"
        );
        assert_eq!(
            url(Flavor::Wasend, "http://127.0.0.1:3000/x/"),
            "http://127.0.0.1:3000/x/sendSeen"
        );
        assert_eq!(
            url(Flavor::Waha, "http://waha:3000/"),
            "http://waha:3000/api/sendSeen"
        );
    }
}
