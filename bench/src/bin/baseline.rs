//! The ingest baseline: a bare axum server that reads the body and answers 200, built from the same workspace
//! (same axum, tokio and allocator) as autoseen. Prints `listening ADDR`.

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let app = Router::new().fallback(post(|body: Bytes| async move {
        std::hint::black_box(body);
        "{}"
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
