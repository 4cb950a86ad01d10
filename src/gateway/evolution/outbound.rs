//! Evolution's outbound half: `POST {base_url}/chat/markMessageAsRead/{instance}` with the `apikey` header and
//! `{"readMessages":[{"remoteJid","fromMe":false,"id"},…]}`; success is 201.
//!
//! Evolution's schema sets no upper bound on `readMessages`; autoseen sends at most [`MAX_PER_CALL`] keys per
//! call, a chat's batch being one call per hundred. Evolution 2.3.x answers 201 yet reads nothing for `@lid`
//! chats (fixed in 2.4.0): when a LID chat has its phone number, the keys name the phone form
//! (`…@s.whatsapp.net`).

use serde::Serialize;
use std::time::Duration;

use super::EvolutionSettings;
use crate::domain::{ChatId, MessageId, SessionName};
use crate::gateway::outbound::{
    MarkRead, SendError, SendResult, Verdict, answer, check_get, classify, http_client,
};
use reqwest::StatusCode;

/// Most message keys per markMessageAsRead call (autoseen's choice; Evolution sets only a minimum of 1).
pub const MAX_PER_CALL: usize = 100;

/// Marks read through Evolution.
#[derive(Debug, Clone)]
pub struct EvolutionClient {
    http: reqwest::Client,
    settings: EvolutionSettings,
}

#[derive(Serialize)]
struct ReadMessages<'a> {
    #[serde(rename = "readMessages")]
    read_messages: Vec<ReadKey<'a>>,
}

#[derive(Serialize)]
struct ReadKey<'a> {
    #[serde(rename = "remoteJid")]
    remote_jid: &'a str,
    #[serde(rename = "fromMe")]
    from_me: bool,
    id: &'a str,
}

impl EvolutionClient {
    pub fn new(settings: &EvolutionSettings) -> anyhow::Result<Self> {
        Ok(Self {
            http: http_client(settings.timeout)?,
            settings: settings.clone(),
        })
    }
}

/// The JID Evolution reads: a LID chat's phone form when known (2.3.x drops `@lid` keys silently), else the
/// chat as received; a phone in autoseen's `@c.us` form goes back as `@s.whatsapp.net`.
fn remote_jid(chat: &ChatId, phone: Option<&ChatId>) -> String {
    let id = match phone {
        Some(p) if chat.is_lid() => p.as_str(),
        _ => chat.as_str(),
    };
    match id.strip_suffix("@c.us") {
        Some(user) => format!("{user}@s.whatsapp.net"),
        None => id.to_string(),
    }
}

#[async_trait::async_trait]
impl MarkRead for EvolutionClient {
    fn calls_for(&self, _: &SessionName, ids: usize) -> usize {
        ids.div_ceil(MAX_PER_CALL)
    }

    /// `GET {base_url}/instance/connectionState/{instance}` with the key: reads the instance, marks nothing.
    async fn check_credentials(&self, session: &SessionName) -> Verdict {
        let (base, key) = self.settings.instance(session.as_str());
        let Some(key) = key else {
            return Verdict::Refused("evolution.api_key is not set for this instance".into());
        };
        let url = format!(
            "{}/instance/connectionState/{}",
            base.trim_end_matches('/'),
            session.as_str()
        );
        let request = self.http.get(url).header("apikey", key.expose());
        check_get(request, "Evolution knows the instance and takes the key").await
    }

    async fn mark_read(
        &self,
        session: &SessionName,
        chat: &ChatId,
        phone: Option<&ChatId>,
        ids: &[MessageId],
    ) -> Vec<SendResult> {
        if self.settings.dry_run {
            return ids.iter().map(|_| Ok(None)).collect();
        }
        let (base, key) = self.settings.instance(session.as_str());
        let Some(key) = key else {
            let missing = SendError::NoApiKey {
                session: session.clone(),
                key: "evolution.api_key",
            };
            return vec![Err(missing); ids.len()];
        };
        let url = format!(
            "{}/chat/markMessageAsRead/{}",
            base.trim_end_matches('/'),
            session.as_str()
        );
        let jid = remote_jid(chat, phone);
        let calls = ids.chunks(MAX_PER_CALL).map(|chunk| {
            let body = ReadMessages {
                read_messages: chunk
                    .iter()
                    .map(|id| ReadKey {
                        remote_jid: &jid,
                        from_me: false,
                        id: id.as_str(),
                    })
                    .collect(),
            };
            let request = self
                .http
                .post(&url)
                .header("apikey", key.expose())
                .json(&body);
            async move { vec![answer(request, classify_evolution).await; chunk.len()] }
        });
        futures_util::future::join_all(calls).await.concat()
    }
}

/// Evolution's documented errors: 401 is the key and 404 an instance it does not know (both pause the
/// session, saying which); 400 is permanent; 5xx retries.
fn classify_evolution(
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
) -> SendError {
    match status.as_u16() {
        404 => SendError::Unauthorized {
            status: 404,
            message: format!("Evolution does not know this instance: {message}"),
        },
        _ => classify(status, message, retry_after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lid_chat_is_read_by_its_phone_form_and_phones_in_whatsapps_form() {
        let lid = ChatId::parse("123456789012345@lid").unwrap();
        let phone = ChatId::parse("5511999990001@c.us").unwrap();
        assert_eq!(
            remote_jid(&lid, Some(&phone)),
            "5511999990001@s.whatsapp.net"
        );
        assert_eq!(remote_jid(&lid, None), "123456789012345@lid");
        let direct = ChatId::parse("5511999990001@s.whatsapp.net").unwrap();
        assert_eq!(remote_jid(&direct, None), "5511999990001@s.whatsapp.net");
        let group = ChatId::parse("120363000000000000@g.us").unwrap();
        assert_eq!(remote_jid(&group, None), "120363000000000000@g.us");
    }

    #[test]
    fn evolutions_answers_are_classified_as_documented() {
        let c =
            |code: u16| classify_evolution(StatusCode::from_u16(code).unwrap(), "x".into(), None);
        assert!(matches!(c(401), SendError::Unauthorized { .. }));
        assert!(
            matches!(c(404), SendError::Unauthorized { message, .. } if message.contains("instance"))
        );
        assert!(matches!(c(400), SendError::Permanent { .. }));
        assert!(matches!(c(500), SendError::Retryable { .. }));
    }
}
