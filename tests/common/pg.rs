//! A PostgreSQL database of a test's own on `AUTOSEEN_TEST_DATABASE_URL` (default the local server), dropped
//! when the value is dropped, also when the test fails. Without a server a test says `skipped: …` and passes,
//! unless `AUTOSEEN_TEST_REQUIRE_POSTGRES=1` (set by `.ci/run`).

use tokio_postgres::NoTls;

use super::{FakeWasend, Options, TestApp};

fn server_url() -> String {
    std::env::var("AUTOSEEN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct Database {
    pub name: String,
    admin: tokio_postgres::Client,
}

impl Database {
    /// A name for a database on the server (not created yet); `None` when there is no server to be had.
    pub async fn reserve() -> Option<Self> {
        let url = server_url();
        match tokio_postgres::connect(&url, NoTls).await {
            Ok((admin, connection)) => {
                tokio::spawn(connection);
                let name = format!("autoseen_t{}", rand::random::<u32>());
                Some(Self { name, admin })
            }
            Err(e) if std::env::var("AUTOSEEN_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1") => {
                println!("skipped: no PostgreSQL at {url} ({e})");
                None
            }
            Err(e) => {
                panic!("PostgreSQL is required (AUTOSEEN_TEST_REQUIRE_POSTGRES=1) at {url}: {e}")
            }
        }
    }

    /// A new, empty database.
    pub async fn create() -> Option<Self> {
        let db = Self::reserve().await?;
        db.create_now().await;
        Some(db)
    }

    pub async fn create_now(&self) {
        self.admin
            .batch_execute(&format!("CREATE DATABASE {}", self.name))
            .await
            .unwrap();
    }

    pub fn url(&self) -> String {
        let server = server_url();
        let (base, _) = server.rsplit_once('/').expect("a URL with a database");
        format!("{base}/{}", self.name)
    }

    /// autoseen in this process with its store in this database.
    pub async fn app(&self, fake: &FakeWasend) -> TestApp {
        TestApp::spawn(fake, Options::default().set("store.url", &self.url())).await
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (url, name) = (server_url(), self.name.clone());
        // Dropped inside a runtime, which cannot block on another: a thread of its own does it.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok((client, connection)) = tokio_postgres::connect(&url, NoTls).await {
                    tokio::spawn(connection);
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = client.batch_execute(&sql).await;
                }
            });
        })
        .join();
    }
}
