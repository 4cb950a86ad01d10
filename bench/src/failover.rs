//! Failover: two replicas with default settings on one PostgreSQL under steady traffic (forty sessions, a
//! webhook every 100 ms to either live replica, each due 2 s after it is posted), one replica killed with
//! SIGKILL at a time and started again, at least ten times. For each kill: how late the receipts of the
//! sessions it held went out, counted from the moment each fell due, over those due from the kill until a
//! lease TTL and a heartbeat later (the time a lost replica can be felt); a receipt never sent counts as
//! missed. And what an idle replica costs the database: its transactions per second, from
//! `pg_stat_database`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::*;

const SESSIONS: usize = 40;
const DELAY_MS: i64 = 2_000;

/// What the failover runs measured.
pub struct Failover {
    /// Per kill, the latest of the killed replica's receipts due in the failover window (ms after due).
    pub worst_per_kill: Vec<i64>,
    /// Receipts due in the failover windows, over all kills.
    pub receipts: usize,
    /// Receipts in those windows that were accepted but never sent.
    pub missing: usize,
    /// Transactions per second that one idle replica runs on the database.
    pub idle_transactions_per_replica: f64,
}

/// A receipt the traffic saw accepted: its session and due time.
type Accepted = Arc<Mutex<Vec<(String, i64)>>>;

pub async fn failover(url: &str, quick: bool) -> anyhow::Result<Failover> {
    let store = autoseen::settings::StoreSettings::default();
    let window_ms = (store.lease_ttl + store.heartbeat()).as_millis() as i64;
    let api = spawn(Command::new(bin("fakeapi")))?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config");
    let rules = format!("[defaults]\ndelay = \"{DELAY_MS}ms\"\n");
    autoseen_config(
        &config,
        &format!("http://{}", api.addr),
        &dir.path().join("unused.db"),
        "",
        Some(&rules),
    )?;
    let replica = || {
        let mut command = autoseen(&config);
        command.env("AUTOSEEN__STORE__URL", url);
        spawn(command)
    };
    let (db, connection) =
        tokio_postgres::connect(bench_connection_url(url), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let mut replicas = vec![replica()?, replica()?];
    let idle = idle_transactions(&db, replicas.len(), quick).await?;

    let live = Arc::new(Mutex::new(replicas.iter().map(|r| r.addr).collect()));
    let accepted: Accepted = Arc::default();
    let traffic = tokio::spawn(post_steadily(live.clone(), accepted.clone()));
    let mut kills = Vec::new();
    for k in 0..if quick { 3 } else { 12 } {
        eprintln!("postgres: failover: kill {} ...", k + 1);
        wait_for_owners(&db, 2).await?;
        // Kills land at different points of the victim's heartbeat: a fixed wait after a replica took its
        // share would always kill it just after a renewal.
        let jitter = (k as u64 * 137) % store.heartbeat().as_millis() as u64;
        tokio::time::sleep(Duration::from_millis(2_500 + jitter)).await;
        let before = owners(&db).await?;
        let victim = k % 2;
        live.lock().unwrap().retain(|a| *a != replicas[victim].addr);
        replicas.remove(victim); // dropping the process kills it: SIGKILL
        let killed_at = now_ms();
        tokio::time::sleep(Duration::from_millis(window_ms as u64 + 3_000)).await;
        let after = owners(&db).await?;
        let moved: HashSet<String> = before
            .into_iter()
            .filter(|(session, owner)| after.get(session) != Some(owner))
            .map(|(session, _)| session)
            .collect();
        kills.push((killed_at, moved));
        let back = replica()?;
        live.lock().unwrap().push(back.addr);
        replicas.insert(victim, back);
    }
    traffic.abort();
    tokio::time::sleep(Duration::from_millis(window_ms as u64 + 3_000)).await;
    let calls: Vec<(String, i64, i64)> = reqwest::get(format!("http://{}/calls", api.addr))
        .await?
        .json()
        .await?;
    let accepted = accepted.lock().unwrap().clone();
    Ok(judge(&kills, &accepted, &calls, window_ms, idle))
}

/// For each kill, the receipts of the sessions it moved that fell due in its window, and how late each went
/// out (its first arrival at the API).
fn judge(
    kills: &[(i64, HashSet<String>)],
    accepted: &[(String, i64)],
    calls: &[(String, i64, i64)],
    window_ms: i64,
    idle: f64,
) -> Failover {
    let mut first: HashMap<(&str, i64), i64> = HashMap::new();
    for (session, due, at) in calls {
        let seen = first.entry((session.as_str(), *due)).or_insert(*at);
        *seen = (*seen).min(*at);
    }
    let (mut worst_per_kill, mut receipts, mut missing) = (Vec::new(), 0, 0);
    for (killed_at, moved) in kills {
        let mut worst = 0;
        for (session, due) in accepted.iter().filter(|(session, due)| {
            moved.contains(session) && (*killed_at..killed_at + window_ms).contains(due)
        }) {
            receipts += 1;
            match first.get(&(session.as_str(), *due)) {
                Some(at) => worst = worst.max(at - due),
                None => {
                    missing += 1;
                    worst = i64::MAX;
                }
            }
        }
        worst_per_kill.push(worst);
    }
    Failover {
        worst_per_kill,
        receipts,
        missing,
        idle_transactions_per_replica: idle,
    }
}

/// Posts one webhook every 100 ms, sessions in turn, each to one of the live replicas, and records those
/// answered 200 (accepted, so durable) by session and due time.
async fn post_steadily(live: Arc<Mutex<Vec<SocketAddr>>>, accepted: Accepted) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut every = tokio::time::interval(Duration::from_millis(100));
    for i in 0usize.. {
        every.tick().await;
        let addrs = live.lock().unwrap().clone();
        if addrs.is_empty() {
            continue;
        }
        let addr = addrs[(i + i / SESSIONS) % addrs.len()];
        let session = format!("fo{}", i % SESSIONS);
        let due = now_ms() + DELAY_MS;
        let request = signed_message(&client, addr, &session, &format!("bench_{due}_{i}"), i);
        let accepted = accepted.clone();
        tokio::spawn(async move {
            if request.send().await.is_ok_and(|r| r.status().is_success()) {
                accepted.lock().unwrap().push((session, due));
            }
        });
    }
}

/// The owner of every live lease, by session.
async fn owners(db: &tokio_postgres::Client) -> anyhow::Result<HashMap<String, String>> {
    let rows = db
        .query(
            "SELECT session, owner FROM leases WHERE owner IS NOT NULL AND expires_at > $1",
            &[&now_ms()],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Waits until `n` replicas hold leases (a started replica has taken its share).
async fn wait_for_owners(db: &tokio_postgres::Client, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held: HashSet<String> = owners(db).await?.into_values().collect();
        if held.len() >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {} replicas hold leases after 60 s", held.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Transactions per second per replica on the database while `replicas` replicas idle, from the commits
/// `pg_stat_database` counts (flushed by each backend within about a second; a long window evens that out).
async fn idle_transactions(
    db: &tokio_postgres::Client,
    replicas: usize,
    quick: bool,
) -> anyhow::Result<f64> {
    let commits = async || -> anyhow::Result<i64> {
        let row = db
            .query_one(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await?;
        Ok(row.get(0))
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = Duration::from_secs(if quick { 5 } else { 20 });
    let (start, at) = (commits().await?, Instant::now());
    tokio::time::sleep(window).await;
    let end = commits().await?;
    // Less the one transaction of the first reading.
    let per_second = (end - start - 1) as f64 / at.elapsed().as_secs_f64();
    Ok(per_second / replicas as f64)
}
