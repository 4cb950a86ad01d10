//! Each `sslmode` against the machine's PostgreSQL, which serves TLS with Debian's snakeoil certificate
//! (self-signed, for `localhost`). Whether a session is encrypted is the server's word: `pg_stat_ssl`.

use super::tests::{required, test_url};
use super::*;

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
/// A root that did not sign the snakeoil certificate.
const OTHER_ROOT: &str = "/etc/ssl/certs/ISRG_Root_X1.pem";

/// The test server's URL with `host` in place of its own and `options` appended, or `None` (having said
/// `skipped: …`) when this machine has no server or no snakeoil certificate and neither is required.
async fn url_with(host: &str, options: &str) -> Option<String> {
    let url = test_url();
    let reachable = tokio_postgres::connect(&url, tokio_postgres::NoTls).await;
    let cert = std::fs::metadata(SNAKEOIL);
    match (reachable, cert) {
        (Ok(_), Ok(_)) => {}
        (reachable, cert) if !required() => {
            println!(
                "skipped: needs PostgreSQL at {url} and {SNAKEOIL} ({:?}, {:?})",
                reachable.err(),
                cert.err()
            );
            return None;
        }
        (reachable, cert) => panic!(
            "PostgreSQL with TLS is required (AUTOSEEN_TEST_REQUIRE_POSTGRES=1): {:?}, {:?}",
            reachable.err(),
            cert.err()
        ),
    }
    let url = url.replace("127.0.0.1", host);
    let separator = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{separator}{options}"))
}

/// Whether the server says the store's session is encrypted; the store's error when it cannot connect.
async fn encrypted(url: &str) -> Result<bool, StoreError> {
    let store = PostgresStore::new(&StoreUrl::new(url)).unwrap();
    let client = store.pool.get().await.map_err(unavailable)?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(unavailable)?;
    Ok(row.get(0))
}

#[tokio::test]
async fn require_encrypts_the_session() {
    let Some(url) = url_with("127.0.0.1", "sslmode=require").await else {
        return;
    };
    assert!(encrypted(&url).await.unwrap());
}

#[tokio::test]
async fn prefer_encrypts_when_the_server_offers_tls_and_disable_does_not() {
    let Some(prefer) = url_with("127.0.0.1", "sslmode=prefer").await else {
        return;
    };
    let disable = prefer.replace("sslmode=prefer", "sslmode=disable");
    assert!(encrypted(&prefer).await.unwrap());
    assert!(!encrypted(&disable).await.unwrap());
}

#[tokio::test]
async fn verify_ca_accepts_the_server_signed_by_the_given_root_whatever_the_host_name() {
    let options = format!("sslmode=verify-ca&sslrootcert={SNAKEOIL}");
    let Some(url) = url_with("127.0.0.1", &options).await else {
        return;
    };
    assert!(encrypted(&url).await.unwrap());
}

#[tokio::test]
async fn verify_full_accepts_the_host_name_the_certificate_carries() {
    let options = format!("sslmode=verify-full&sslrootcert={SNAKEOIL}&hostaddr=127.0.0.1");
    let Some(url) = url_with("localhost", &options).await else {
        return;
    };
    assert!(encrypted(&url).await.unwrap());
}

#[tokio::test]
async fn verify_full_refuses_a_host_name_the_certificate_does_not_carry() {
    let options = format!("sslmode=verify-full&sslrootcert={SNAKEOIL}");
    let Some(url) = url_with("127.0.0.1", &options).await else {
        return;
    };
    let err = encrypted(&url).await.unwrap_err().to_string();
    assert!(
        err.contains("not for host `127.0.0.1`") && err.contains("verify-full"),
        "{err}"
    );
}

#[tokio::test]
async fn verify_ca_refuses_a_server_the_root_did_not_sign() {
    let options = format!("sslmode=verify-ca&sslrootcert={OTHER_ROOT}");
    let Some(url) = url_with("127.0.0.1", &options).await else {
        return;
    };
    let err = encrypted(&url).await.unwrap_err().to_string();
    assert!(
        err.contains("not signed by a CA in sslrootcert") && err.contains(OTHER_ROOT),
        "{err}"
    );
}

#[test]
fn a_root_file_without_certificates_is_refused_when_the_store_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("ca.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let url = format!(
        "postgres://postgres@db/x?sslmode=verify-ca&sslrootcert={}",
        empty.display()
    );
    let err = PostgresStore::new(&StoreUrl::new(url))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("holds no PEM certificate"), "{err}");
}

#[tokio::test]
async fn wakes_reach_the_listener_over_tls_each_once_and_in_order() {
    use crate::store::cluster::Cluster;
    let Some(url) = url_with("127.0.0.1", "sslmode=require").await else {
        return;
    };
    let store = PostgresStore::new(&StoreUrl::new(url.as_str())).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = store.clone();
    tokio::spawn(async move { listener.listen(tx).await });
    let chat = chat_key("s1", "491511234567@c.us").unwrap();
    // The listener is up once a wake announced now arrives.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        store.announce(&chat, Timestamp::now()).await.unwrap();
        if tokio::time::timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no wake over TLS in 10 s"
        );
    }
    // Wakes of the readiness loop above may still come; these are told apart by their due time.
    const FIRST: i64 = 1_800_000_000_000;
    for n in 1..=20 {
        let due = Timestamp::from_millisecond(FIRST + n).unwrap();
        store.announce(&chat, due).await.unwrap();
        let woken = loop {
            let (chat, due) = rx.recv().await.unwrap();
            if due.as_millisecond() > FIRST {
                break (chat, due);
            }
        };
        assert_eq!(woken, (chat.clone(), due));
    }
}
