//! The PostgreSQL store's side of [`Cluster`]: session leases with a heartbeat, a fair share of the sessions
//! per replica, fencing tokens, pauses kept for the next owner, and the `NOTIFY` wakes between replicas.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use super::{PostgresStore, chat_key, corrupt, get, ms, notify_wake, unavailable};
use crate::domain::{ChatKey, SessionName};
use crate::store::StoreError;
use crate::store::cluster::{Cluster, FenceToken, Lease, ReplicaId};
use crate::time::from_millis;

/// The chat and due time a wake's payload names (as `notify_wake!` builds it), if it is one.
pub fn parse_wake(payload: &str) -> Option<(ChatKey, Timestamp)> {
    let mut parts = payload.split('\t');
    let (session, chat, due) = (parts.next()?, parts.next()?, parts.next()?);
    let chat = chat_key(session, chat).ok()?;
    Some((chat, from_millis(due.parse().ok()?)))
}

#[async_trait]
impl Cluster for PostgresStore {
    async fn heartbeat(
        &self,
        replica: &ReplicaId,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Vec<Lease>, StoreError> {
        let (me, now, ttl) = (replica.as_str(), ms(now), ttl.as_millis() as i64);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let step = |r: Result<u64, tokio_postgres::Error>| r.map_err(unavailable);
        step(
            tx.execute(
                "INSERT INTO replicas (id, heartbeat_at) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                &[&me, &now],
            )
            .await,
        )?;
        step(
            tx.execute(
                "DELETE FROM replicas WHERE heartbeat_at < $1",
                &[&(now - 10 * ttl)],
            )
            .await,
        )?;
        step(
            tx.execute(
                "UPDATE leases SET expires_at = $2::bigint + $3::bigint WHERE owner = $1 AND expires_at > $2",
                &[&me, &now, &ttl],
            )
            .await,
        )?;
        take_fair_share(&tx, me, now, ttl).await?;
        let rows = tx
            .query(
                "SELECT session, token, paused_until FROM leases WHERE owner = $1 AND expires_at > $2",
                &[&me, &now],
            )
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let paused: i64 = get(row, "paused_until")?;
                Ok(Lease {
                    session: SessionName::parse(get(row, "session")?).map_err(corrupt)?,
                    token: FenceToken::from_row(get(row, "token")?),
                    paused_until: (paused > 0).then(|| from_millis(paused)),
                })
            })
            .collect()
    }

    async fn announce(&self, chat: &ChatKey, due: Timestamp) -> Result<(), StoreError> {
        let sql = concat!("SELECT ", notify_wake!("$1", "$2", "$3"));
        self.execute(
            sql,
            &[&chat.session.as_str(), &chat.chat.as_str(), &ms(due)],
        )
        .await
        .map(drop)
    }

    async fn release(&self, replica: &ReplicaId) -> Result<(), StoreError> {
        self.execute(
            "UPDATE leases SET owner = NULL, expires_at = 0 WHERE owner = $1",
            &[&replica.as_str()],
        )
        .await?;
        self.execute("DELETE FROM replicas WHERE id = $1", &[&replica.as_str()])
            .await
            .map(drop)
    }

    async fn pause(&self, session: &SessionName, until: Timestamp) -> Result<(), StoreError> {
        self.execute(
            "UPDATE leases SET paused_until = GREATEST(paused_until, $2) WHERE session = $1",
            &[&session.as_str(), &ms(until)],
        )
        .await
        .map(drop)
    }

    async fn listen(&self, wake: tokio::sync::mpsc::UnboundedSender<(ChatKey, Timestamp)>) {
        use futures_util::StreamExt;
        while !wake.is_closed() {
            let (client, mut connection) = match self.config.connect(self.tls.clone()).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for other replicas' work; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let (tx, mut payloads) = tokio::sync::mpsc::unbounded_channel::<String>();
            let connection = tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                            let _ = tx.send(n.payload().to_string());
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "the connection listening for other replicas' work failed; reconnecting");
                            break;
                        }
                    }
                }
            });
            if client.batch_execute("LISTEN autoseen_wake").await.is_ok() {
                while let Some(payload) = payloads.recv().await {
                    let Some(woken) = parse_wake(&payload) else {
                        continue;
                    };
                    if wake.send(woken).is_err() {
                        break;
                    }
                }
            }
            connection.abort();
            drop(client);
            if !wake.is_closed() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Takes free sessions until this replica holds its fair share (sessions over live replicas, rounded up), or
/// gives back what is more than one over it, inside the heartbeat's transaction.
async fn take_fair_share(
    tx: &tokio_postgres::Transaction<'_>,
    me: &str,
    now: i64,
    ttl: i64,
) -> Result<(), StoreError> {
    let step = |r: Result<u64, tokio_postgres::Error>| r.map_err(unavailable);
    let counts = tx
        .query_one(
            "SELECT (SELECT COUNT(*) FROM replicas WHERE heartbeat_at > $2::bigint - $3::bigint) AS live,
                    (SELECT COUNT(*) FROM (SELECT session FROM pending
                                           UNION SELECT session FROM leases WHERE owner IS NOT NULL AND expires_at > $2) s) AS sessions,
                    (SELECT COUNT(*) FROM leases WHERE owner = $1 AND expires_at > $2) AS mine",
            &[&me, &now, &ttl],
        )
        .await
        .map_err(unavailable)?;
    let (live, sessions, mine): (i64, i64, i64) = (
        counts.get("live"),
        counts.get("sessions"),
        counts.get("mine"),
    );
    let share = sessions.div_euclid(live.max(1)) + i64::from(sessions % live.max(1) != 0);
    if mine < share {
        step(
            tx.execute(
                "INSERT INTO leases (session, owner, token, expires_at)
                 SELECT s.session, $1, 1, $2::bigint + $3::bigint
                 FROM (SELECT DISTINCT session FROM pending) s LEFT JOIN leases l USING (session)
                 WHERE l.session IS NULL OR l.owner IS NULL OR l.expires_at <= $2
                 ORDER BY random() LIMIT $4
                 ON CONFLICT (session) DO UPDATE SET owner = excluded.owner, token = leases.token + 1,
                     expires_at = excluded.expires_at
                 WHERE leases.owner IS NULL OR leases.expires_at <= $2",
                &[&me, &now, &ttl, &(share - mine)],
            )
            .await,
        )?;
    } else if mine > share + 1 {
        step(
            tx.execute(
                "UPDATE leases SET owner = NULL, expires_at = 0 WHERE session IN (
                     SELECT session FROM leases WHERE owner = $1 AND expires_at > $2 ORDER BY random() LIMIT $3)",
                &[&me, &now, &(mine - share)],
            )
            .await,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_names_its_chat_and_due_time_and_anything_else_is_skipped() {
        let sql = notify_wake!("session", "chat", "$3");
        let (chat, due) = parse_wake("sales\t491511234567@c.us\t1764000000000").unwrap();

        assert_eq!(
            sql,
            "pg_notify('autoseen_wake', session || chr(9) || chat || chr(9) || $3::bigint::text)"
        );
        assert_eq!(
            (chat.session.as_str(), chat.chat.as_str()),
            ("sales", "491511234567@c.us")
        );
        assert_eq!(due.as_millisecond(), 1_764_000_000_000);
        for bad in [
            "",
            "sales",
            "sales\t491511234567@c.us",
            "sales\tnot-a-chat\t1",
            "sales\t1@c.us\tsoon",
        ] {
            assert!(parse_wake(bad).is_none(), "{bad:?}");
        }
    }
}
