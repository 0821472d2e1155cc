//! Two writers race for one object in a folder (or any store URL): exactly one create wins,
//! and an update on a stale version is refused, the two guarantees kbs's commit protocol is
//! built on.
//!
//! ```sh
//! cargo run -p kbs-storage --example conditional_writes -- /tmp/kbs-storage-example
//! cargo run -p kbs-storage --example conditional_writes -- memory://
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)]

use bytes::Bytes;
use kbs_storage::StorageOptions;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(location) = std::env::args().nth(1) else {
        eprintln!("usage: conditional_writes FOLDER_OR_URL");
        std::process::exit(2);
    };
    let store = kbs_storage::open(&location, &StorageOptions::default()).await?;
    let key = format!("example-{}/state.json", std::process::id());

    // Two writers create the same object at once: one wins, the other learns it exists.
    let (first, second) = tokio::join!(
        store.put_if_absent(&key, Bytes::from(r#"{"writer":1}"#)),
        store.put_if_absent(&key, Bytes::from(r#"{"writer":2}"#)),
    );
    let created = match (first, second) {
        (Ok(created), Err(e)) | (Err(e), Ok(created)) => {
            println!("one create won; the other was refused: {e}");
            created
        }
        (first, second) => return Err(format!("expected exactly one winner: {first:?} {second:?}").into()),
    };

    // Compare-and-swap: an update on the version just written succeeds once; the same stale
    // version is refused afterwards, so a fenced writer cannot overwrite a newer state.
    let updated = store
        .put_if_match(&key, Bytes::from(r#"{"step":2}"#), &created.version)
        .await?;
    let stale = store
        .put_if_match(&key, Bytes::from(r#"{"step":"stale"}"#), &created.version)
        .await;
    println!(
        "update on the current version: ok; on the stale one: {}",
        match &stale {
            Ok(_) => "accepted (this store ignores conditional writes!)".to_owned(),
            Err(e) => format!("refused ({e})"),
        }
    );
    let now = store.get(&key).await?;
    println!("{key} holds {}", String::from_utf8_lossy(&now.bytes));
    assert_eq!(now.meta.version, updated.version);
    store.delete(&key).await?;
    if stale.is_ok() {
        std::process::exit(1);
    }
    Ok(())
}
